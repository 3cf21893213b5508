"""``recx data prepare`` on a tiny hand-written fixture (fast, no shared data needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recx_worker.checksums import sha256_file as sha256
from recx_worker.cli import app
from recx_worker.features import Lexicon, words
from recx_worker.prepared import SPLITS, PreparedData
from training.data.extract import extract
from training.data.prepare import prepare
from training.data.readers import Review
from training.data.split import split_indices
from training.data.text import feature_sentiment, sentences

FIXTURES = Path(__file__).parent / "fixtures"
REVIEWS = FIXTURES / "reviews_tiny.json"
FEATURES = FIXTURES / "features_tiny.txt"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> PreparedData:
    out = tmp_path_factory.mktemp("data") / "tiny"
    prepare(REVIEWS, out, features=FEATURES, progress=False)
    return PreparedData(out)


def test_layout_and_manifest(prepared: PreparedData) -> None:
    for name in (
        *(f"{s}.jsonl" for s in SPLITS),
        "item_profiles.json",
        "user_histories.json",
        "lexicon.txt",
        "stats.json",
        "manifest.json",
    ):
        assert (prepared.root / name).is_file(), name
    manifest = prepared.manifest
    assert manifest["inputs"]["reviews"]["sha256"] == sha256(REVIEWS)
    assert manifest["inputs"]["features"]["sha256"] == sha256(FEATURES)
    assert manifest["seed"] == 42
    assert prepared.lexicon.features == Lexicon.load(FEATURES).features


def test_every_explanation_contains_its_feature(prepared: PreparedData) -> None:
    for name in SPLITS:
        for record in prepared.split(name):
            assert record.feature in prepared.lexicon.find(record.explanation)
            assert 4 <= len(words(record.explanation)) <= 30
            assert "http" not in record.explanation


def test_reviewer_names_never_written(prepared: PreparedData) -> None:
    text = "".join(p.read_text() for p in prepared.root.iterdir())
    for name in ("Alice", "Smith", "Carol", "Jones", "Lopez"):
        assert name not in text
    # The only review mentioning its author yields nothing, and is counted by reason.
    assert sum(prepared.stats["no_explanation"].values()) == 1


def test_split_is_deterministic_and_covered(prepared: PreparedData, tmp_path: Path) -> None:
    again = tmp_path / "again"
    prepare(REVIEWS, again, features=FEATURES, progress=False)
    for name in SPLITS:
        assert (again / f"{name}.jsonl").read_bytes() == (
            prepared.root / f"{name}.jsonl"
        ).read_bytes()
    train = prepared.split("train")
    users, items = {r.user_id for r in train}, {r.item_id for r in train}
    for name in ("valid", "test"):
        for record in prepared.split(name):
            assert record.user_id in users and record.item_id in items
    ids = [r.record_id for s in SPLITS for r in prepared.split(s)]
    assert len(ids) == len(set(ids)) == prepared.stats["records"]


def test_split_ratios_and_seed() -> None:
    class R:
        def __init__(self, u: int, i: int):
            self.user_id, self.item_id = f"u{u}", f"i{i}"

    records = [R(u, i) for u in range(50) for i in range(20)]
    parts = split_indices(records, seed=1)
    assert [len(parts[s]) for s in SPLITS] == [800, 100, 100]
    assert split_indices(records, seed=1) == parts
    assert split_indices(records, seed=2) != parts


def test_profiles_use_train_only(prepared: PreparedData) -> None:
    train_ids = {(r.user_id, r.item_id) for r in prepared.split("train")}
    train_sentences = {r.explanation for r in prepared.split("train")}
    for profile in prepared.item_profiles.values():
        n_train = sum(1 for _, item in train_ids if item == profile.item_id)
        assert profile.n_reviews == n_train
        assert set(profile.snippets) <= train_sentences
    for history in prepared.user_histories.values():
        for item in history.items:
            assert (history.user_id, item.item_id) in train_ids


def test_extraction_prefers_opinion_sentence() -> None:
    lexicon = Lexicon(["tuner", "display", "battery"])
    review = Review(
        line=1,
        user_id="u",
        item_id="i",
        rating=5.0,
        text="I ordered the tuner from a seller in March and it arrived on a Monday. "
        "The tuner is accurate and easy to read. Check www.example.com for the tuner.",
    )
    found = extract(review, lexicon)
    assert not isinstance(found, str)
    assert found.explanation == "The tuner is accurate and easy to read."
    assert (found.feature, found.sentiment) == ("tuner", 1)


def test_sentiment_and_sentences() -> None:
    assert feature_sentiment(words("the display is not very good"), "display") == -1
    assert feature_sentiment(words("the battery lasts and is great"), "battery") == 1
    assert sentences("affordable.It did not. It is 1.5 m long!Great") == [
        "affordable.",
        "It did not.",
        "It is 1.5 m long!",
        "Great",
    ]


def test_cli_prepare_generic_format_auto_lexicon(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in REVIEWS.read_text().splitlines()]
    generic = tmp_path / "generic.jsonl"
    generic.write_text(
        "".join(
            json.dumps(
                {
                    "user_id": r["reviewerID"],
                    "item_id": r["asin"],
                    "rating": r["overall"],
                    "text": r["reviewText"],
                    "title": r["summary"],
                }
            )
            + "\n"
            for r in rows
        )
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["data", "prepare", "--reviews", str(generic), "--out", str(out), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    data = PreparedData(out)
    assert data.manifest["lexicon"]["source"] == "auto"
    assert {"tuner", "strings", "cable"} <= set(data.lexicon.features)
    # The fixture repeats sentences across users of one item: deduplication drops those.
    assert data.stats["dedup"]["records_before"] > 20
    assert data.stats["records"] >= 10
