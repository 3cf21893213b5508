"""Every kind of bad input gets its own error class and a reason naming the failing field."""

from __future__ import annotations

import base64
import json

import pytest

from recx_worker.events import DeadLetter, RecommendationEvent, SourceRef
from recx_worker.validation import (
    ERROR_CLASSES,
    Rejection,
    dead_letter,
    field_path,
    validate_recommendation,
)

GOOD = {
    "event_id": "e-1",
    "user_id": "A1UPZM995ZAH90",
    "item_id": "B00004Y2UT",
    "history": [{"item_id": "B000068NW5", "rating": 4.0, "timestamp": "2014-01-02T03:04:05Z"}],
    "score": 0.93,
    "rank": 0,
    "source_model": "als-v3",
    "timestamp": "2014-02-01T00:00:00Z",
    "context": {"locale": "en-US", "surface": "home"},
}


def encode(obj: object) -> bytes:
    return json.dumps(obj).encode("utf-8")


def with_(**changes: object) -> bytes:
    return encode({**GOOD, **changes})


def without(key: str) -> bytes:
    return encode({k: v for k, v in GOOD.items() if k != key})


def test_valid_event_parses_into_the_model():
    event = validate_recommendation(encode(GOOD))
    assert isinstance(event, RecommendationEvent)
    assert event.history[0].item_id == "B000068NW5"
    assert event.context.surface == "home"
    assert event.schema_version == 1


def test_minimal_event_gets_defaults():
    event = validate_recommendation(b'{"event_id":"e","user_id":"u","item_id":"i"}')
    assert isinstance(event, RecommendationEvent)
    assert event.history == [] and event.score is None


# (raw message, error class, field, words the reason must contain)
BAD_CASES = {
    "not json": (b"user=U item=I", "NotJSON", None, ["not valid JSON", "line 1 column 1"]),
    "empty message": (b"  \n", "NotJSON", None, ["empty"]),
    "invalid utf-8": (b'{"event_id": "\xff\xfe"}', "InvalidUTF8", None, ["UTF-8", "byte 14"]),
    "json array": (b"[1, 2]", "NotAnObject", None, ["an array", "expected a JSON object"]),
    "json string": (b'"hello"', "NotAnObject", None, ["a string", "expected a JSON object"]),
    "missing user_id": (without("user_id"), "MissingField", "user_id", ["'user_id' is missing"]),
    "empty item_id": (with_(item_id=""), "EmptyField", "item_id", ["'item_id'", "empty"]),
    "blank event_id": (with_(event_id="   "), "EmptyField", "event_id", ["'event_id'", "blank"]),
    "user_id number": (
        with_(user_id=12345),
        "WrongType",
        "user_id",
        ["'user_id' must be a string", "an integer (12345)"],
    ),
    "score as text": (
        with_(score="high"),
        "WrongType",
        "score",
        ["'score' must be a number", '"high"'],
    ),
    "history not a list": (
        with_(history={"item_id": "x"}),
        "WrongType",
        "history",
        ["'history' must be an array", "an object"],
    ),
    "history rating wrong type": (
        with_(history=[{"item_id": "x", "rating": "five"}]),
        "WrongType",
        "history[0].rating",
        ["'history[0].rating' must be a number"],
    ),
    "bad timestamp": (
        with_(timestamp="yesterday"),
        "WrongType",
        "timestamp",
        ["'timestamp' must be an ISO-8601 date-time"],
    ),
    "NaN score": (
        b'{"event_id":"e","user_id":"u","item_id":"i","score":NaN}',
        "NonFiniteNumber",
        "score",
        ["'score' is NaN", "finite"],
    ),
    "infinite score": (
        b'{"event_id":"e","user_id":"u","item_id":"i","score":-Infinity}',
        "NonFiniteNumber",
        "score",
        ["'score' is -Infinity"],
    ),
    "overflowing rating": (
        b'{"event_id":"e","user_id":"u","item_id":"i","history":[{"item_id":"x","rating":1e999}]}',
        "NonFiniteNumber",
        "history[0].rating",
        ["'history[0].rating' is Infinity"],
    ),
    "history too long": (
        with_(history=[{"item_id": f"i{n}"} for n in range(51)]),
        "HistoryTooLong",
        "history",
        ["51 entries", "limit is 50"],
    ),
    "id too long": (
        with_(item_id="B" * 129),
        "TextTooLong",
        "item_id",
        ["'item_id' is 129 characters", "limit is 128"],
    ),
    "style too long": (
        with_(style="x" * 65),
        "TextTooLong",
        "style",
        ["'style' is 65 characters", "limit is 64"],
    ),
    "surface too long": (
        with_(context={"surface": "s" * 100}),
        "TextTooLong",
        "context.surface",
        ["'context.surface' is 100 characters"],
    ),
    "unknown schema_version": (
        with_(schema_version=2),
        "UnknownSchemaVersion",
        "schema_version",
        ["schema_version 2 is not supported"],
    ),
    "schema_version as text": (
        with_(schema_version="1"),
        "WrongType",
        "schema_version",
        ["'schema_version' must be an integer"],
    ),
    "unknown field": (
        with_(reviewer_name="Jane"),
        "UnknownField",
        "reviewer_name",
        ["unknown field 'reviewer_name'"],
    ),
    "negative rank": (with_(rank=-1), "OutOfRange", "rank", ["'rank' must be >= 0", "-1"]),
    "rating above 5": (
        with_(history=[{"item_id": "x", "rating": 7}]),
        "OutOfRange",
        "history[0].rating",
        ["must be <= 5"],
    ),
    "oversized message": (
        with_(source_model="m", padding="x" * 70_000),
        "MessageTooLarge",
        None,
        ["bytes; the limit is 65536 bytes"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_has_a_specific_reason(case: str):
    raw, error_class, field, fragments = BAD_CASES[case]
    result = validate_recommendation(raw)
    assert isinstance(result, Rejection), f"{case} was accepted"
    assert result.error_class == error_class, result
    assert result.field == field, result
    for fragment in fragments:
        assert fragment in result.reason, f"{fragment!r} not in {result.reason!r}"


def test_every_bad_case_has_a_distinct_reason():
    reasons = [validate_recommendation(raw).reason for raw, *_ in BAD_CASES.values()]
    assert len(set(reasons)) == len(reasons)


def test_limits_are_configurable():
    raw = with_(history=[{"item_id": "a"}, {"item_id": "b"}, {"item_id": "c"}])
    assert isinstance(validate_recommendation(raw), RecommendationEvent)
    limited = validate_recommendation(raw, max_history=2)
    assert isinstance(limited, Rejection) and limited.reason.endswith("limit is 2")
    small = validate_recommendation(raw, max_bytes=100)
    assert isinstance(small, Rejection) and small.error_class == "MessageTooLarge"


def test_several_problems_are_counted_in_the_reason():
    result = validate_recommendation(encode({"event_id": "", "user_id": 1, "item_id": "i"}))
    assert isinstance(result, Rejection)
    assert result.field == "event_id" and "(and 1 more problem)" in result.reason


def test_field_path_formats_nested_locations():
    assert field_path(("history", 3, "rating")) == "history[3].rating"
    assert field_path(("context", "locale")) == "context.locale"


def test_dead_letter_keeps_original_and_reason():
    raw = with_(score="high")
    invalid = validate_recommendation(raw)
    assert isinstance(invalid, Rejection)
    source = SourceRef(topic="recommendations", partition=2, offset=41)
    letter = dead_letter(raw, invalid, worker_id="w-1", source=source, attempts=3)
    assert letter.original == raw.decode()
    assert letter.original_base64 is None
    assert (letter.error_class, letter.field) == ("WrongType", "score")
    assert letter.reason == invalid.reason
    assert letter.attempts == 3 and letter.source == source
    again = DeadLetter.model_validate_json(letter.model_dump_json())
    assert again == letter


def test_dead_letter_of_non_utf8_bytes_is_lossless():
    raw = b'{"event_id": "\xff"}'
    invalid = validate_recommendation(raw)
    assert isinstance(invalid, Rejection)
    letter = dead_letter(raw, invalid, worker_id="w-1")
    assert base64.b64decode(letter.original_base64) == raw
    assert "\\xff" in letter.original


def test_dead_letter_of_oversized_message_keeps_only_the_reference():
    raw = b"x" * 300_000
    invalid = validate_recommendation(raw)
    assert isinstance(invalid, Rejection)
    source = SourceRef(topic="recommendations", partition=0, offset=7)
    letter = dead_letter(raw, invalid, worker_id="w-1", source=source)
    assert letter.original is None and letter.source == source


@pytest.mark.parametrize(
    "raw, field",
    [
        (b'{"event_id": "e1", "user_id": "\\ud800", "item_id": "i"}', "user_id"),
        (b'{"event_id": "e1", "user_id": "u", "item_id": "i", "style": "a\\udfffb"}', "style"),
        (b'{"event_id": "e1", "user_id": "u", "item_id": "i", "history": '
         b'[{"item_id": "ok"}, {"item_id": "x\\ud83c"}]}', "history[1].item_id"),
    ],
)  # fmt: skip
def test_lone_surrogate_escape_is_a_listed_class_with_a_true_reason(raw: bytes, field: str):
    result = validate_recommendation(raw)
    assert isinstance(result, Rejection)
    assert result.error_class == "InvalidUnicode" and result.error_class in ERROR_CLASSES
    assert result.field == field
    assert f"field '{field}' holds a lone UTF-16 surrogate escape" in result.reason
    assert "hex escape" not in result.reason
    letter = dead_letter(raw, result, worker_id="w")  # the original bytes survive as text
    assert letter.original == raw.decode() and letter.error_class == "InvalidUnicode"


def test_a_surrogate_pair_is_valid_unicode():
    raw = b'{"event_id": "e1", "user_id": "\\ud83c\\udfb8", "item_id": "i"}'
    event = validate_recommendation(raw)
    assert isinstance(event, RecommendationEvent) and event.user_id == "\U0001f3b8"


def test_every_bad_case_class_is_listed():
    for _raw, error_class, *_ in BAD_CASES.values():
        assert error_class in ERROR_CLASSES
