"""Read raw reviews: the Amazon 2014 format or a generic JSONL format, gzip or plain.

Unreadable input is either a clear :class:`DataInputError` (missing path, empty file, a gzip
stream that ends early, a file with no usable line at all) or a counted skip with its line
number (a line that is not JSON, a record missing a required field). ``reviewerName`` is read
only to keep it out of explanations: it is never logged, stored or written.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

Format = Literal["amazon", "generic", "auto"]

# Line numbers kept per skip reason (the counts are always complete).
MAX_LINES_KEPT = 20


class DataInputError(ValueError):
    """Input that cannot be read at all; the message says which file and why."""


@dataclass(frozen=True)
class Review:
    """One raw review, normalised across input formats."""

    line: int
    user_id: str
    item_id: str
    rating: float
    text: str
    title: str = ""
    timestamp: int | None = None
    reviewer_name: str = field(default="", repr=False)  # only used to filter sentences


@dataclass
class ReadReport:
    """Skipped input lines, counted by reason, with the first line numbers of each."""

    lines: int = 0
    reviews: int = 0
    skipped: Counter = field(default_factory=Counter)
    skipped_lines: dict[str, list[int]] = field(default_factory=dict)

    def skip(self, reason: str, line: int) -> None:
        self.skipped[reason] += 1
        kept = self.skipped_lines.setdefault(reason, [])
        if len(kept) < MAX_LINES_KEPT:
            kept.append(line)

    def as_dict(self) -> dict:
        return {
            "lines": self.lines,
            "reviews": self.reviews,
            "skipped": dict(self.skipped),
            "skipped_lines": self.skipped_lines,
        }


_AMAZON = {"user_id": "reviewerID", "item_id": "asin", "rating": "overall", "text": "reviewText"}
_GENERIC = {"user_id": "user_id", "item_id": "item_id", "rating": "rating", "text": "text"}


def _open(path: Path) -> IO[str]:
    with path.open("rb") as raw:
        magic = raw.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return path.open(encoding="utf-8", errors="replace")


def _detect(obj: dict) -> Literal["amazon", "generic"]:
    if "reviewerID" in obj or "asin" in obj:
        return "amazon"
    if "user_id" in obj or "item_id" in obj:
        return "generic"
    raise DataInputError(
        "cannot detect the input format from the first JSON line: expected Amazon fields "
        "(reviewerID, asin, overall, reviewText) or generic ones (user_id, item_id, rating, text);"
        " pass --format"
    )


def _convert(obj: dict, fmt: str, line: int, report: ReadReport) -> Review | None:
    keys = _AMAZON if fmt == "amazon" else _GENERIC
    missing = [src for src in keys.values() if obj.get(src) in (None, "")]
    if missing:
        report.skip(f"missing field: {', '.join(missing)}", line)
        return None
    try:
        rating = float(obj[keys["rating"]])
    except (TypeError, ValueError):
        report.skip(f"bad rating ({keys['rating']} is not a number)", line)
        return None
    if fmt == "amazon":
        title, ts, name = obj.get("summary"), obj.get("unixReviewTime"), obj.get("reviewerName")
    else:
        title, ts, name = obj.get("title"), obj.get("timestamp"), None
    try:
        timestamp = int(ts) if ts is not None else None
    except (TypeError, ValueError):
        timestamp = None
    return Review(
        line=line,
        user_id=str(obj[keys["user_id"]]),
        item_id=str(obj[keys["item_id"]]),
        rating=rating,
        text=str(obj[keys["text"]]),
        title=str(title or ""),
        timestamp=timestamp,
        reviewer_name=str(name or ""),
    )


def read_reviews(
    path: Path, fmt: Format = "auto", report: ReadReport | None = None
) -> Iterator[Review]:
    """Yield the valid reviews of ``path``; skipped lines are recorded in ``report``."""
    path = Path(path)
    if not path.exists():
        raise DataInputError(f"reviews file not found: {path}")
    if not path.is_file():
        raise DataInputError(f"reviews path is not a file: {path}")
    if path.stat().st_size == 0:
        raise DataInputError(f"reviews file is empty: {path}")
    report = report if report is not None else ReadReport()
    detected: str | None = None if fmt == "auto" else fmt
    line_no = 0
    try:
        with _open(path) as handle:
            for line_no, line in enumerate(handle, start=1):
                report.lines = line_no
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    report.skip(f"not JSON ({exc.msg})", line_no)
                    continue
                if not isinstance(obj, dict):
                    report.skip("not a JSON object", line_no)
                    continue
                if detected is None:
                    detected = _detect(obj)
                review = _convert(obj, detected, line_no, report)
                if review is not None:
                    report.reviews += 1
                    yield review
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataInputError(
            f"{path}: corrupt or truncated gzip after line {line_no} ({exc}); "
            "re-download the file or pass an uncompressed copy"
        ) from exc
    if report.reviews == 0:
        raise DataInputError(
            f"{path}: no usable review in {report.lines} lines "
            f"(skipped: {dict(report.skipped) or 'blank file'})"
        )
