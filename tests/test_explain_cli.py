"""`recx explain` (one-off, batch, --make-events) and `recx schemas` end to end, without Kafka.

Runs on a tiny prepared-data directory with a real FAISS index; its item vectors come from a
small hashing bag-of-words embedder so the test needs no model download.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import structlog
from typer.testing import CliRunner

from recx_worker.cli import app
from recx_worker.events import ExplanationEvent, RecommendationEvent
from recx_worker.prepared import PreparedData
from recx_worker.retrieval.index import build_item_index

ROOT = Path(__file__).resolve().parents[1]


class HashingEmbedder:
    """Bag of hashed words, L2-normalised: deterministic vectors without a model."""

    name = "test-hashing-32"

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), 32), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, hashlib.md5(word.encode()).digest()[0] % 32] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def _profile(item: str, features: list[str], snippet: str) -> dict:
    stats = [{"feature": f, "count": 3 - i, "sentiment": 1.0} for i, f in enumerate(features)]
    return {
        "item_id": item,
        "n_reviews": 5,
        "mean_rating": 4.5,
        "features": stats,
        "snippets": [snippet],
    }


def _record(n: int, user: str, item: str, feature: str, text: str) -> dict:
    return {
        "record_id": f"r{n:04d}",
        "user_id": user,
        "item_id": item,
        "rating": 5.0,
        "timestamp": 1390089600 + n,
        "feature": feature,
        "sentiment": 1,
        "explanation": text,
    }


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tiny")
    data_dir, index_dir = root / "data", root / "index"
    data_dir.mkdir()
    profiles = {
        "I1": _profile("I1", ["tuner", "display", "clip"], "The tuner is accurate."),
        "I2": _profile("I2", ["strings", "sound"], "These strings sound bright."),
        "I3": _profile("I3", ["strap", "fit"], "The strap fits well."),
    }
    histories = {
        "U1": {
            "user_id": "U1",
            "items": [{"item_id": "I2", "rating": 5.0, "timestamp": 1, "features": ["strings"]}],
            "features": [{"feature": "display", "count": 1, "sentiment": 1.0}],
        }
    }
    train = [_record(1, "U1", "I2", "strings", "The strings sound bright and last long.")]
    test = [
        _record(2, "U1", "I1", "tuner", "The tuner is accurate and easy to read."),
        _record(3, "U2", "I3", "strap", "The strap is comfortable."),
    ]
    (data_dir / "item_profiles.json").write_text(json.dumps(profiles))
    (data_dir / "user_histories.json").write_text(json.dumps(histories))
    for name, rows in (("train", train), ("valid", []), ("test", test)):
        (data_dir / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (data_dir / "lexicon.txt").write_text("tuner\ndisplay\nclip\nstrings\nsound\nstrap\nfit\n")
    build_item_index(PreparedData(data_dir), HashingEmbedder()).save(index_dir)
    return data_dir, index_dir


@pytest.fixture(autouse=True)
def restore_logging():
    """`recx explain` configures logging for its process; undo that for the other tests."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)


def run(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_batch_explains_good_lines_and_rejects_bad_ones(dirs, tmp_path: Path):
    data_dir, index_dir = dirs
    good = {"event_id": "e1", "user_id": "U1", "item_id": "I1", "history": [{"item_id": "I2"}]}
    lines = [
        json.dumps(good),
        "not json at all",
        json.dumps({**good, "event_id": "e2", "user_id": "stranger"}),  # cold start: fine
        "",  # blank lines are skipped, not rejected
        '{"event_id": "e3", "user_id": "U1", "item_id": "I1", "score": NaN}',
        json.dumps({**good, "event_id": "e4", "item_id": "NOPE"}),
        json.dumps({"event_id": "e5", "item_id": "I3"}),
        json.dumps({**good, "event_id": "e6", "item_id": "I3"}),
    ]
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out" / "explanations.jsonl"
    result = run(
        "explain", "--in", str(events), "--out", str(out),
        "--data", str(data_dir), "--index", str(index_dir), "--chain", "template",
        "--batch-size", "2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    explained = [ExplanationEvent.model_validate_json(x) for x in out.read_text().splitlines()]
    assert [e.event_id for e in explained] == ["e1", "e2", "e6"]
    assert all(e.explainer == "template" and e.grounded and e.text for e in explained)
    assert explained[0].evidence.supporting_items[0].item_id == "I2"
    assert "tuner" in explained[0].mentioned_features
    rejects = [json.loads(x) for x in Path(str(out) + ".rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["error_class"], r["field"]) for r in rejects] == [
        (2, "NotJSON", None),
        (5, "NonFiniteNumber", "score"),
        (6, "UnknownItem", "item_id"),
        (7, "MissingField", "user_id"),
    ]
    assert rejects[2]["reason"] == "unknown item_id 'NOPE': no profile in the prepared data"
    assert "7 events: 3 explained" in result.output and "4 rejected" in result.output
    assert "events/s" in result.output
    assert "explained by template" in result.output and "42.9%" in result.output


def test_batch_report_is_written_in_the_benchmark_format(dirs, tmp_path: Path):
    data_dir, index_dir = dirs
    events = tmp_path / "events.jsonl"
    run("explain", "--make-events", "4", "--out", str(events), "--data", str(data_dir))
    result = run(
        "explain", "--in", str(events), "--out", str(tmp_path / "out.jsonl"),
        "--data", str(data_dir), "--index", str(index_dir), "--chain", "template",
        "--report", str(tmp_path / "summary.json"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["benchmark"] == "explain" and "cpu_count" in summary["hardware"]
    assert (summary["events"], summary["explained"], summary["rejected"]) == (4, 4, 0)
    assert summary["rows"] == [{"outcome": "explained by template", "events": 4, "share": 1.0}]
    assert summary["events_per_s"] > 0


def test_one_off_prints_the_explanation(dirs):
    data_dir, index_dir = dirs
    common = ["--data", str(data_dir), "--index", str(index_dir), "--chain", "template"]
    result = run("explain", "--user", "U1", "--item", "I1", *common)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].startswith("The tuner ")
    as_json = run("explain", "--user", "U1", "--item", "I1", "--json", *common)
    event = ExplanationEvent.model_validate_json(as_json.stdout)
    assert event.user_id == "U1" and event.item_id == "I1" and event.grounded


def test_one_off_unknown_item_is_a_clear_error(dirs):
    data_dir, index_dir = dirs
    result = run(
        "explain", "--user", "U1", "--item", "NOPE", "--data", str(data_dir),
        "--index", str(index_dir), "--chain", "template",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "cannot explain (UnknownItem): unknown item_id 'NOPE'" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give either --user and --item"),
        (["--user", "U1"], "one-off mode needs both --user and --item"),
        (["--in", "missing.jsonl", "--out", "o.jsonl"], "input file missing.jsonl does not exist"),
        (["--user", "U1", "--item", "I1", "--chain", "nope"], "no explainer named 'nope'"),
        (["--make-events", "3"], "--make-events needs --out"),
    ],
)
def test_usage_errors_are_reported_without_traceback(dirs, args: list[str], message: str):
    data_dir, index_dir = dirs
    result = run("explain", *args, "--data", str(data_dir), "--index", str(index_dir))
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_missing_data_dir_is_reported(tmp_path: Path):
    result = run("explain", "--user", "U1", "--item", "I1", "--data", str(tmp_path))
    assert result.exit_code == 2
    assert "is not a prepared-data directory" in result.output


def test_make_events_cycles_the_split_with_unique_ids(dirs, tmp_path: Path):
    data_dir, _ = dirs
    out = tmp_path / "events.jsonl"
    result = run("explain", "--make-events", "5", "--out", str(out), "--data", str(data_dir))
    assert result.exit_code == 0, result.output
    events = [RecommendationEvent.model_validate_json(x) for x in out.read_text().splitlines()]
    assert [e.event_id for e in events] == ["r0002", "r0003", "r0002~1", "r0003~1", "r0002~2"]
    assert events[0].history[0].item_id == "I2"  # U1's training history, never the item
    assert events[1].history == []  # U2 has no training history: cold start


def test_schemas_check_and_write(tmp_path: Path):
    assert run("schemas", "check", "--dir", str(ROOT / "schemas")).exit_code == 0
    drift = run("schemas", "check", "--dir", str(tmp_path))
    assert drift.exit_code == 1 and "missing (run `recx schemas write`)" in drift.output
    assert run("schemas", "write", "--dir", str(tmp_path)).exit_code == 0
    assert run("schemas", "check", "--dir", str(tmp_path)).exit_code == 0


def test_one_off_shows_why_earlier_stages_did_not_answer(dirs):
    data_dir, index_dir = dirs
    result = CliRunner().invoke(
        app,
        ["explain", "--user", "U1", "--item", "I1", "--data", str(data_dir),
         "--index", str(index_dir), "--chain", "always-declines,always-fails,template"],
        env={"RECX_WORKER__PLUGIN_MODULES": "worker_test_plugins"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (
        "skipped: always-declines declined (NotConfident: declines every request); "
        "always-fails error (RuntimeError: explainer backend unavailable)"
    ) in result.output


def test_explain_and_eval_deliver_the_same_text_through_one_core(dirs, tmp_path: Path):
    """`recx explain --in` and `recx eval`'s delivered outputs come from the same core."""
    from recx_worker.config import load_settings
    from recx_worker.explainer import ExplainerContext
    from recx_worker.guard import Guard
    from recx_worker.plugins import create_explainer
    from recx_worker.retrieval.evidence import EvidenceStore
    from training.evaluation.evaluate import build_requests
    from training.evaluation.runner import deliver, record_event, run_explainer

    data_dir, index_dir = dirs
    settings = load_settings()
    store = EvidenceStore.open(data_dir, index_dir)
    records = PreparedData(data_dir).split("test")
    kept, requests, unknown = build_requests(records, store, settings.chain)
    assert unknown == 0 and len(requests) == 2
    template = create_explainer("template", ExplainerContext.from_settings(settings, store))
    run_ = run_explainer(template, requests, batch_size=8, progress=False)
    delivered = deliver([run_], requests, Guard.with_plugins(store.lexicon))

    events = tmp_path / "events.jsonl"
    events.write_text("".join(record_event(r).model_dump_json() + "\n" for r in kept))
    out = tmp_path / "out.jsonl"
    result = run(
        "explain", "--in", str(events), "--out", str(out), "--data", str(data_dir),
        "--index", str(index_dir), "--chain", "template",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    explained = [ExplanationEvent.model_validate_json(x) for x in out.read_text().splitlines()]
    assert [e.text for e in explained] == delivered.texts
    assert [e.explainer for e in explained] == delivered.stages == ["template", "template"]
