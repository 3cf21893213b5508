"""Input validation that says exactly what is wrong, and dead letters that carry the reason.

``validate_recommendation`` turns raw message bytes into a ``RecommendationEvent`` or an
``Invalid`` naming the error class, the failing field and a specific human-readable reason.
A valid message is parsed once by the model (strict JSON mode). A rejected one is diagnosed in
order: size, UTF-8, JSON syntax, object shape, non-finite numbers (``json`` accepts
``NaN``/``Infinity``; we do not), schema version, history length, then the model's first
error (missing/empty ids, wrong types, text limits, ranges, unknown fields).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from recx_worker.events import (
    SCHEMA_VERSION,
    DeadLetter,
    ExplanationFeedback,
    RecommendationEvent,
    SourceRef,
)

_Event = TypeVar("_Event", bound=BaseModel)

DEFAULT_MAX_BYTES = 64 * 1024
DEFAULT_MAX_HISTORY = 50
DEAD_LETTER_MAX_ORIGINAL_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why an input was rejected: a stable error class, a precise reason, the failing field."""

    error_class: str
    reason: str
    field: str | None = None

    def __str__(self) -> str:
        return f"{self.error_class}: {self.reason}"


_JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    type(None): "null",
}

_TYPE_ERRORS = {
    "string_type": "a string",
    "float_type": "a number",
    "float_parsing": "a number",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "bool_type": "a boolean",
    "list_type": "an array",
    "model_type": "an object",
    "dict_type": "an object",
    "datetime_type": "an ISO-8601 date-time string",
    "datetime_parsing": "an ISO-8601 date-time string",
    "datetime_from_date_parsing": "an ISO-8601 date-time string",
}


def _describe(value: Any) -> str:
    kind = _JSON_TYPES.get(type(value), type(value).__name__)
    shown = json.dumps(value, default=str)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"{kind} ({shown})" if not isinstance(value, dict | list) else kind


def field_path(loc: tuple[str | int, ...]) -> str:
    """``('history', 3, 'rating')`` -> ``'history[3].rating'``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _find_non_finite(value: Any, loc: tuple[str | int, ...] = ()) -> tuple[tuple, float] | None:
    if isinstance(value, float) and not math.isfinite(value):
        return loc, value
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, child in items:
        if (found := _find_non_finite(child, (*loc, key))) is not None:
            return found
    return None


def _from_pydantic(error: dict[str, Any], more: int) -> Invalid:
    kind, loc, value = error["type"], tuple(error["loc"]), error.get("input")
    field = field_path(loc)
    ctx = error.get("ctx") or {}
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    if kind == "missing":
        return Invalid("MissingField", f"required field '{field}' is missing{suffix}", field)
    if kind == "extra_forbidden":
        return Invalid(
            "UnknownField",
            f"unknown field '{field}' (not part of schema_version {SCHEMA_VERSION}){suffix}",
            field,
        )
    blank = kind == "value_error" and "blank" in str(ctx.get("error", ""))
    if blank or (kind == "string_too_short" and value == ""):
        return Invalid("EmptyField", f"field '{field}' must not be empty or blank{suffix}", field)
    if kind == "string_too_long":
        return Invalid(
            "TextTooLong",
            f"field '{field}' is {len(value)} characters; the limit is {ctx['max_length']}{suffix}",
            field,
        )
    if kind in _TYPE_ERRORS:
        return Invalid(
            "WrongType",
            f"field '{field}' must be {_TYPE_ERRORS[kind]}, got {_describe(value)}{suffix}",
            field,
        )
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        op = {"greater_than_equal": ">=", "less_than_equal": "<=", "greater_than": ">"}.get(
            kind, "<"
        )
        bound = next(iter(ctx.values()))
        return Invalid(
            "OutOfRange", f"field '{field}' must be {op} {bound}, got {value!r}{suffix}", field
        )
    return Invalid("InvalidValue", f"field '{field}': {error['msg']}{suffix}", field)


def validate_recommendation(
    raw: bytes | str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_history: int = DEFAULT_MAX_HISTORY,
) -> RecommendationEvent | Invalid:
    """Parse and validate one recommendation message; never raises for bad input."""
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    if len(data) > max_bytes:
        return Invalid(
            "MessageTooLarge", f"message is {len(data)} bytes; the limit is {max_bytes} bytes"
        )
    try:  # fast path: a valid message is parsed once; only failures are diagnosed below
        event = RecommendationEvent.model_validate_json(data, strict=True)
    except ValidationError:
        pass
    else:
        if len(event.history) <= max_history:
            return event

    def history_limit(obj: dict[str, Any]) -> Invalid | None:
        history = obj.get("history")
        if isinstance(history, list) and len(history) > max_history:
            return Invalid(
                "HistoryTooLong",
                f"field 'history' has {len(history)} entries; the limit is {max_history}",
                "history",
            )
        return None

    return _diagnose(data, RecommendationEvent, history_limit)


def validate_feedback(
    raw: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> ExplanationFeedback | Invalid:
    """Parse and validate one explanation-feedback message; never raises for bad input."""
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    if len(data) > max_bytes:
        return Invalid(
            "MessageTooLarge", f"message is {len(data)} bytes; the limit is {max_bytes} bytes"
        )
    try:
        return ExplanationFeedback.model_validate_json(data, strict=True)
    except ValidationError:
        return _diagnose(data, ExplanationFeedback, lambda _obj: None)


def _diagnose(
    data: bytes, model: type[_Event], extra_check: Callable[[dict[str, Any]], Invalid | None]
) -> _Event | Invalid:
    """Why ``data`` is not a valid ``model`` (UTF-8, JSON, shape, numbers, version, fields)."""
    if not data.strip():
        return Invalid("NotJSON", "message is empty; expected a JSON object")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Invalid(
            "InvalidUTF8", f"message is not valid UTF-8: {exc.reason} at byte {exc.start}"
        )
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return Invalid(
            "NotJSON",
            f"message is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        )
    if not isinstance(obj, dict):
        return Invalid("NotAnObject", f"message is {_describe(obj)}; expected a JSON object")
    if (bad := _find_non_finite(obj)) is not None:
        loc, value = bad
        field = field_path(loc)
        shown = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        return Invalid(
            "NonFiniteNumber",
            f"field '{field}' is {shown}; numbers must be finite",
            field,
        )
    version = obj.get("schema_version", SCHEMA_VERSION)
    if isinstance(version, bool) or not isinstance(version, int):
        return Invalid(
            "WrongType",
            f"field 'schema_version' must be an integer, got {_describe(version)}",
            "schema_version",
        )
    if version != SCHEMA_VERSION:
        return Invalid(
            "UnknownSchemaVersion",
            f"schema_version {version} is not supported (this worker reads {SCHEMA_VERSION})",
            "schema_version",
        )
    if (invalid := extra_check(obj)) is not None:
        return invalid
    try:
        return model.model_validate_json(data, strict=True)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        return _from_pydantic(errors[0], len(errors) - 1)


def make_dead_letter(
    raw: bytes | str | None,
    *,
    error_class: str,
    reason: str,
    worker_id: str,
    field: str | None = None,
    source: SourceRef | None = None,
    attempts: int = 1,
    max_original_bytes: int = DEAD_LETTER_MAX_ORIGINAL_BYTES,
) -> DeadLetter:
    """A dead letter carrying the original bytes (or only ``source`` when they are too big)."""
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    original: str | None = None
    original_b64: str | None = None
    if data is not None and len(data) <= max_original_bytes:
        try:
            original = data.decode("utf-8")
        except UnicodeDecodeError:
            original = data.decode("utf-8", errors="backslashreplace")
            original_b64 = base64.b64encode(data).decode("ascii")
    return DeadLetter(
        original=original,
        original_base64=original_b64,
        source=source,
        error_class=error_class,
        reason=reason,
        field=field,
        attempts=attempts,
        worker_id=worker_id,
    )


def dead_letter_for(
    raw: bytes | str | None,
    invalid: Invalid,
    *,
    worker_id: str,
    source: SourceRef | None = None,
    attempts: int = 1,
) -> DeadLetter:
    """The dead letter for an input that failed validation."""
    return make_dead_letter(
        raw,
        error_class=invalid.error_class,
        reason=invalid.reason,
        field=invalid.field,
        worker_id=worker_id,
        source=source,
        attempts=attempts,
    )
