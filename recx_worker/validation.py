"""Input validation that says exactly what is wrong, and dead letters that carry the reason.

``validate_recommendation`` turns raw message bytes into a ``RecommendationEvent`` or an
``Rejection`` naming the error class, the failing field and a specific human-readable reason.
A valid message is parsed once by the model (strict JSON mode). A rejected one is diagnosed in
order: size, UTF-8, JSON syntax, object shape, lone UTF-16 surrogate escapes (``"\\ud800"``
is valid JSON syntax but no Unicode text), non-finite numbers (``json`` accepts
``NaN``/``Infinity``; we do not), schema version, history length, then the model's first
error (missing/empty ids, wrong types, text limits, ranges, unknown fields).
``ERROR_CLASSES`` lists every error class a dead letter can carry; ``dead_letter`` is the one
place a ``DeadLetter`` is built.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from recx_worker.config import DEFAULT_MAX_HISTORY, DEFAULT_MAX_MESSAGE_BYTES
from recx_worker.events import SCHEMA_VERSION, DeadLetter, RecommendationEvent, SourceRef

DEAD_LETTER_MAX_ORIGINAL_BYTES = 256 * 1024

# Every error class a dead letter (or a `recx explain --in` rejects line) can carry.
ERROR_CLASSES: dict[str, str] = {
    "MessageTooLarge": "the message is larger than validation.max_message_bytes",
    "InvalidUTF8": "the message bytes are not UTF-8",
    "NotJSON": "the message is empty or not JSON",
    "NotAnObject": "the JSON value is not an object",
    "InvalidUnicode": "a string holds a lone UTF-16 surrogate escape (e.g. \\ud800)",
    "NonFiniteNumber": "a number is NaN or infinite",
    "UnknownSchemaVersion": "schema_version is not one this worker reads",
    "HistoryTooLong": "history has more entries than validation.max_history",
    "MissingField": "a required field is missing",
    "EmptyField": "an id is empty or blank",
    "WrongType": "a field has the wrong JSON type",
    "TextTooLong": "a string is longer than its limit",
    "OutOfRange": "a number is outside its range",
    "UnknownField": "a field is not part of the schema version",
    "InvalidValue": "a field's value is not accepted (the reason says why)",
    "UnknownItem": "the item has no profile in the prepared data",
    "NoExplanation": "no explainer stage answered (the reason lists each stage's)",
    "ProcessingError": "the worker crashed on this record (isolated from its batch)",
}


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an input gets no explanation: a stable error class (one of ``ERROR_CLASSES``),
    a precise reason, the failing field."""

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


Loc = tuple[str | int, ...]


def _find_non_finite(value: Any, loc: Loc = ()) -> tuple[Loc, float] | None:
    if isinstance(value, float) and not math.isfinite(value):
        return loc, value
    items: Iterable[tuple[str | int, Any]]
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


def _find_surrogate(value: Any, loc: Loc = ()) -> tuple[Loc, str] | None:
    """The first string (or key) holding a lone surrogate code point, with its location."""
    if isinstance(value, str):
        bad = next((c for c in value if "\ud800" <= c <= "\udfff"), None)
        return (loc, bad) if bad is not None else None
    if isinstance(value, dict):
        for key, child in value.items():
            if (found := _find_surrogate(key, loc)) is not None:
                return (*loc, key), found[1]
            if (found := _find_surrogate(child, (*loc, key))) is not None:
                return found
    elif isinstance(value, list):
        for index, child in enumerate(value):
            if (found := _find_surrogate(child, (*loc, index))) is not None:
                return found
    return None


def _from_pydantic(error: ErrorDetails, more: int) -> Rejection:
    kind, loc, value = error["type"], tuple(error["loc"]), error.get("input")
    field = field_path(loc)
    ctx = error.get("ctx") or {}
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    if kind == "missing":
        return Rejection("MissingField", f"required field '{field}' is missing{suffix}", field)
    if kind == "extra_forbidden":
        return Rejection(
            "UnknownField",
            f"unknown field '{field}' (not part of schema_version {SCHEMA_VERSION}){suffix}",
            field,
        )
    blank = kind == "value_error" and "blank" in str(ctx.get("error", ""))
    if blank or (kind == "string_too_short" and value == ""):
        return Rejection("EmptyField", f"field '{field}' must not be empty or blank{suffix}", field)
    if kind == "string_too_long":
        return Rejection(
            "TextTooLong",
            f"field '{field}' is {len(str(value))} characters; "
            f"the limit is {ctx['max_length']}{suffix}",
            field,
        )
    if kind in _TYPE_ERRORS:
        return Rejection(
            "WrongType",
            f"field '{field}' must be {_TYPE_ERRORS[kind]}, got {_describe(value)}{suffix}",
            field,
        )
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        op = {"greater_than_equal": ">=", "less_than_equal": "<=", "greater_than": ">"}.get(
            kind, "<"
        )
        bound = next(iter(ctx.values()))
        return Rejection(
            "OutOfRange", f"field '{field}' must be {op} {bound}, got {value!r}{suffix}", field
        )
    return Rejection("InvalidValue", f"field '{field}': {error['msg']}{suffix}", field)


def _json_object(data: bytes) -> dict[str, Any] | Rejection:
    """The message as a JSON object, or why it is not one (empty, not UTF-8, not JSON...)."""
    if not data.strip():
        return Rejection("NotJSON", "message is empty; expected a JSON object")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(
            "InvalidUTF8", f"message is not valid UTF-8: {exc.reason} at byte {exc.start}"
        )
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return Rejection(
            "NotJSON",
            f"message is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        )
    if not isinstance(obj, dict):
        return Rejection("NotAnObject", f"message is {_describe(obj)}; expected a JSON object")
    return obj


def _check_values(obj: dict[str, Any], max_history: int) -> Rejection | None:
    """What the strict parser would report less clearly: lone surrogates, non-finite numbers,
    the schema version and the history limit."""
    if (lone := _find_surrogate(obj)) is not None:
        loc, char = lone
        field = field_path(loc)
        return Rejection(
            "InvalidUnicode",
            f"field '{field}' holds a lone UTF-16 surrogate escape (\\u{ord(char):04x}); "
            "strings must be valid Unicode (escape a pair, e.g. \\ud83c\\udfb8, or none)",
            field,
        )
    if (bad := _find_non_finite(obj)) is not None:
        loc, value = bad
        field = field_path(loc)
        shown = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        return Rejection(
            "NonFiniteNumber",
            f"field '{field}' is {shown}; numbers must be finite",
            field,
        )
    version = obj.get("schema_version", SCHEMA_VERSION)
    if isinstance(version, bool) or not isinstance(version, int):
        return Rejection(
            "WrongType",
            f"field 'schema_version' must be an integer, got {_describe(version)}",
            "schema_version",
        )
    if version != SCHEMA_VERSION:
        return Rejection(
            "UnknownSchemaVersion",
            f"schema_version {version} is not supported (this worker reads {SCHEMA_VERSION})",
            "schema_version",
        )
    history = obj.get("history")
    if isinstance(history, list) and len(history) > max_history:
        return Rejection(
            "HistoryTooLong",
            f"field 'history' has {len(history)} entries; the limit is {max_history}",
            "history",
        )
    return None


def validate_recommendation(
    raw: bytes | str,
    *,
    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_history: int = DEFAULT_MAX_HISTORY,
) -> RecommendationEvent | Rejection:
    """Parse and validate one recommendation message; never raises for bad input."""
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    if len(data) > max_bytes:
        return Rejection(
            "MessageTooLarge", f"message is {len(data)} bytes; the limit is {max_bytes} bytes"
        )
    try:  # fast path: a valid message is parsed once; only failures are diagnosed below
        event = RecommendationEvent.model_validate_json(data, strict=True)
    except ValidationError:
        pass
    else:
        if len(event.history) <= max_history:
            return event
    obj = _json_object(data)
    if isinstance(obj, Rejection):
        return obj
    if (rejection := _check_values(obj, max_history)) is not None:
        return rejection
    try:
        return RecommendationEvent.model_validate_json(data, strict=True)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if errors[0]["type"] == "json_invalid":  # json accepted it, the strict parser did not
            return Rejection("NotJSON", f"message is not valid JSON: {errors[0]['msg']}")
        return _from_pydantic(errors[0], len(errors) - 1)


def dead_letter(
    raw: bytes | str | None,
    rejection: Rejection,
    *,
    worker_id: str,
    source: SourceRef | None = None,
    attempts: int = 1,
    max_original_bytes: int = DEAD_LETTER_MAX_ORIGINAL_BYTES,
) -> DeadLetter:
    """The dead letter for ``raw``: the rejection, provenance and the original bytes (only
    ``source`` when they are larger than ``max_original_bytes``)."""
    data = raw.encode("utf-8", errors="surrogatepass") if isinstance(raw, str) else raw
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
        error_class=rejection.error_class,
        reason=rejection.reason,
        field=rejection.field,
        attempts=attempts,
        worker_id=worker_id,
    )
