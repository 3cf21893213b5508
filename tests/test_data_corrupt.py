"""Corrupt input: each case is a clear error (exit code 2, no traceback) or a counted skip."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recx_worker.cli import app
from recx_worker.prepared import PreparedData
from training.data.readers import DataInputError, ReadReport, read_reviews

FIXTURES = Path(__file__).parent / "fixtures"
REVIEWS = FIXTURES / "reviews_tiny.json"
FEATURES = FIXTURES / "features_tiny.txt"


def _prepare(reviews: Path, out: Path):
    return CliRunner().invoke(
        app,
        [
            "data",
            "prepare",
            "--reviews",
            str(reviews),
            "--features",
            str(FEATURES),
            "--out",
            str(out),
            "--no-progress",
        ],
    )


def test_missing_path(tmp_path: Path) -> None:
    result = _prepare(tmp_path / "nope.json.gz", tmp_path / "out")
    assert result.exit_code == 2
    assert "reviews file not found" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    result = _prepare(empty, tmp_path / "out")
    assert result.exit_code == 2
    assert "empty" in result.output


def test_empty_gzip_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.json.gz"
    with gzip.open(path, "wb"):
        pass
    with pytest.raises(DataInputError, match="no usable review"):
        list(read_reviews(path))


def test_truncated_gzip(tmp_path: Path) -> None:
    full = gzip.compress(REVIEWS.read_bytes() * 20)
    truncated = tmp_path / "truncated.json.gz"
    truncated.write_bytes(full[: len(full) // 2])
    result = _prepare(truncated, tmp_path / "out")
    assert result.exit_code == 2
    assert "truncated gzip after line" in result.output
    assert not (tmp_path / "out").exists()


def test_bad_lines_are_counted_with_line_numbers(tmp_path: Path) -> None:
    lines = REVIEWS.read_text().splitlines()
    first = json.loads(lines[0])
    no_text = {k: v for k, v in first.items() if k != "reviewText"}
    no_rating = {k: v for k, v in first.items() if k != "overall"}
    bad = [
        *lines[:3],
        "{not json",
        json.dumps(no_text),
        "[1, 2]",
        json.dumps(no_rating),
        *lines[3:],
    ]
    path = tmp_path / "bad.json.gz"
    path.write_bytes(gzip.compress(("\n".join(bad) + "\n").encode()))

    report = ReadReport()
    reviews = list(read_reviews(path, "amazon", report))
    assert len(reviews) == len(lines)
    assert report.skipped_lines == {
        "not JSON (Expecting property name enclosed in double quotes)": [4],
        "missing field: reviewText": [5],
        "not a JSON object": [6],
        "missing field: overall": [7],
    }

    out = tmp_path / "out"
    result = _prepare(path, out)
    assert result.exit_code == 0, result.output
    assert "skipped input" in result.output
    stats = PreparedData(out).stats
    assert stats["input"]["skipped"]["missing field: reviewText"] == 1
    assert stats["reviews_read"] == len(lines)


def test_only_garbage_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.json"
    path.write_text("hello\nworld\n")
    result = _prepare(path, tmp_path / "out")
    assert result.exit_code == 2
    assert "no usable review in 2 lines" in result.output


def test_unknown_format_fields(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"who": "u", "what": "i"}) + "\n")
    result = _prepare(path, tmp_path / "out")
    assert result.exit_code == 2
    assert "cannot detect the input format" in result.output


def test_missing_features_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "data",
            "prepare",
            "--reviews",
            str(REVIEWS),
            "--features",
            str(tmp_path / "none.txt"),
            "--out",
            str(tmp_path / "out"),
            "--no-progress",
        ],
    )
    assert result.exit_code == 2
    assert "features file not found" in result.output
