"""The demo driver: its event building and verdict (fast), and a reduced demo end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recx_worker.devtools import demo
from recx_worker.events import DeadLetter, Evidence, ExplanationEvent
from recx_worker.validation import Rejection, validate_recommendation

ROOT = Path(__file__).resolve().parents[1]


def _write_prepared(root: Path) -> Path:
    """A tiny prepared-data directory in the layout of recx_worker.prepared."""
    root.mkdir(parents=True)

    def record(rid: str, user: str, item: str, ts: int) -> dict:
        return {
            "record_id": rid,
            "user_id": user,
            "item_id": item,
            "rating": 4.0,
            "timestamp": ts,
            "feature": "tuner",
            "sentiment": 1,
            "explanation": "The tuner is accurate.",
        }

    train = [record("r1", "U1", "I1", 1), record("r2", "U1", "I2", 2), record("r3", "U2", "I1", 3)]
    test = [
        record("r4", "U1", "I3", 4),
        record("r5", "U2", "I2", 5),
        record("r6", "U2", "I2", 6),  # same pair again: one event only
        record("r7", "U2", "I9", 7),  # item without a train profile: left out
    ]
    for name, rows in (("train", train), ("valid", []), ("test", test)):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    profiles = {
        item: {"item_id": item, "n_reviews": 1, "mean_rating": 4.0, "features": []}
        for item in ("I1", "I2", "I3")
    }
    histories = {
        "U1": {
            "user_id": "U1",
            "items": [
                {"item_id": "I1", "rating": 5.0, "timestamp": 1},
                {"item_id": "I2", "rating": 3.0, "timestamp": 2},
            ],
            "features": [],
        },
        "U2": {
            "user_id": "U2",
            "items": [{"item_id": "I1", "rating": 4.0, "timestamp": 3}],
            "features": [],
        },
    }
    (root / "item_profiles.json").write_text(json.dumps(profiles))
    (root / "user_histories.json").write_text(json.dumps(histories))
    return root


def test_events_come_from_test_pairs_with_train_histories(tmp_path):
    data = _write_prepared(tmp_path / "data")
    events = demo.build_events(data, 2)
    assert {(e.user_id, e.item_id) for e in events} == {("U1", "I3"), ("U2", "I2")}
    by_user = {e.user_id: e for e in events}
    assert [h.item_id for h in by_user["U1"].history] == ["I1", "I2"]  # oldest first
    assert [h.item_id for h in by_user["U2"].history] == ["I1"]
    assert len({e.event_id for e in events}) == 2
    with pytest.raises(demo.DemoError, match="only 2 usable"):
        demo.build_events(data, 3)


def test_malformed_inputs_fail_validation_with_the_expected_class(tmp_path):
    (event,) = demo.build_events(_write_prepared(tmp_path / "data"), 1)
    malformed = demo.malformed_events(event)
    assert len({m.payload for m in malformed}) == len(malformed) >= 4
    for bad in malformed:
        result = validate_recommendation(bad.payload)
        if bad.error_class == "UnknownItem":  # valid JSON; the worker's enrich step rejects it
            assert not isinstance(result, Rejection)
        else:
            assert isinstance(result, Rejection), bad.label
            assert (result.error_class, result.field) == (bad.error_class, bad.field), bad.label


def test_summary_verdict_needs_every_event_explained_and_every_bad_one_dead_lettered(tmp_path):
    events = demo.build_events(_write_prepared(tmp_path / "data"), 2)
    malformed = demo.malformed_events(events[0])
    outcome = demo.Outcome()
    for event, explainer in zip(events, ("lora", "template"), strict=True):
        outcome.explanations[event.event_id] = ExplanationEvent(
            event_id=event.event_id,
            user_id=event.user_id,
            item_id=event.item_id,
            text="Recommended because you liked I1.",
            explainer=explainer,
            explainer_version="1",
            evidence=Evidence(),
            grounded=True,
            latency_ms=5.0,
        )
        outcome.latency_ms[event.event_id] = 10.0
    letters = [
        DeadLetter(
            original=bad.payload.decode(),
            error_class=bad.error_class,
            reason="because",
            field=bad.field,
            worker_id="w",
        )
        for bad in malformed
    ]
    outcome.dead = letters[:-1]
    partial = demo.summarize(events, malformed, outcome, wall_s=1.0)
    assert not partial["ok"] and partial["dead_lettered"] == len(malformed) - 1
    outcome.dead = letters
    summary = demo.summarize(events, malformed, outcome, wall_s=1.0)
    assert summary["ok"]
    assert summary["explained"] == 2 and summary["explainers"] == {"lora": 1, "template": 1}
    assert summary["latency_ms"]["p50"] == 10.0
    outcome.dead = [*letters[1:], letters[0].model_copy(update={"error_class": "Other"})]
    assert not demo.summarize(events, malformed, outcome, wall_s=1.0)["ok"]


def test_raw_data_checksums_are_verified(tmp_path):
    with pytest.raises(demo.DemoError, match="missing"):
        demo.verify_raw_data(tmp_path)
    for name in demo.RAW_SHA256:
        (tmp_path / name).write_bytes(b"not the real file")
    with pytest.raises(demo.DemoError, match="sha256"):
        demo.verify_raw_data(tmp_path)


@pytest.mark.kafka
@pytest.mark.slow
def test_reduced_demo_end_to_end(kafka_bootstrap, tmp_path):
    """20 events + the malformed ones through two real workers (template chain).

    Uses the prepared data and index cached in var/ (the demo builds them when missing).
    """
    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [
        sys.executable,
        "-m",
        "recx_worker.devtools.demo",
        "--events",
        "20",
        "--workers",
        "2",
    ]
    command += ["--chain", "template", "--bootstrap", kafka_bootstrap, "--timeout", "120"]
    command += ["--work-dir", str(tmp_path)]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["ok"] is True
    assert summary["events"] == summary["explained"] == 20
    assert summary["explainers"] == {"template": 20}
    assert summary["grounded"] == 20
    assert 0 < summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"]
    assert summary["throughput_eps"] > 0
    assert summary["dead_lettered"] == summary["malformed"] >= 4
    assert all(row["reason_ok"] for row in summary["dead_letters"])
    assert summary["valid_dead_lettered"] == 0
    assert "recx demo summary" in output and "demo OK" in output
    for log in (tmp_path / "logs").glob("worker-*.log"):
        assert log.stat().st_size > 0
