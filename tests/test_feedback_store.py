"""The aggregation store: duplicate, late and orphan feedback, replays; a simulated experiment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from recx_worker.devtools.experiment_sim import run_simulation
from recx_worker.events import Evidence, ExplanationEvent, ExplanationFeedback
from recx_worker.feedback.report import load_report, to_markdown, write_report
from recx_worker.feedback.store import Consumed, FeedbackStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def explanation(eid: str, arm: str) -> ExplanationEvent:
    return ExplanationEvent(
        event_id=eid, user_id="u", item_id="i", text="t", explainer="template",
        explainer_version="1", evidence=Evidence(), grounded=True, latency_ms=1.0,
        created_at=T0, experiment="ab", arm=arm,
    )  # fmt: skip


def fb(fid: str, eid: str, kind: str, after: timedelta = timedelta(minutes=1)):
    return ExplanationFeedback(
        feedback_id=fid, explanation_id=eid, user_id="u", item_id="i", kind=kind,
        timestamp=T0 + after,
    )  # fmt: skip


class Feed:
    """Assigns consecutive offsets per topic, like a one-partition topic would."""

    def __init__(self) -> None:
        self.next = {"x": 0, "f": 0}

    def __call__(self, *events) -> list[Consumed]:
        out = []
        for e in events:
            topic = "x" if isinstance(e, ExplanationEvent) else "f"
            out.append(Consumed(topic, 0, self.next[topic], e))
            self.next[topic] += 1
        return out


def test_duplicates_late_and_orphans_are_counted_not_double_counted(tmp_path: Path):
    store, feed = FeedbackStore(tmp_path / "s.db", late_after_s=3600), Feed()
    done = store.apply(
        feed(
            fb("f0", "e2", "helpful"),  # orphan: its explanation comes later
            explanation("e1", "a"),
            explanation("e2", "b"),
            fb("f1", "e1", "helpful"),
            fb("f1", "e1", "helpful"),  # same feedback redelivered
            fb("f2", "e1", "helpful"),  # second click, same explanation: counted once
            fb("f3", "e1", "not_helpful", timedelta(hours=2)),  # late
            fb("f4", "nope", "helpful"),  # orphan for good
        )
    )
    assert done == {
        "orphan": 2, "explanation": 2, "attributed": 2, "duplicate": 1, "late": 1
    }  # fmt: skip
    counts = {c.arm: c for c in store.arm_counts("ab")}
    assert (counts["a"].shown, counts["a"].helpful, counts["a"].not_helpful) == (1, 1, 0)
    assert (counts["b"].shown, counts["b"].helpful) == (1, 1)
    tallies = store.tallies()
    assert tallies["duplicate"] == 1 and tallies["late"] == 1
    assert tallies["orphan_resolved"] == 1 and tallies["orphan_open"] == 1


def test_replayed_offsets_are_skipped_and_the_state_survives_reopening(tmp_path: Path):
    feed = Feed()
    batch = feed(explanation("e1", "a"), fb("f1", "e1", "shown"), fb("f2", "e1", "helpful"))
    store = FeedbackStore(tmp_path / "s.db")
    store.apply(batch)
    store.close()
    store = FeedbackStore(tmp_path / "s.db")  # a restart
    assert store.next_offset("f", 0) == 2 and store.next_offset("x", 0) == 1
    done = store.apply(batch)  # Kafka redelivers from an older committed offset
    assert done == {"replayed": 3}
    (arm,) = store.arm_counts()
    assert (arm.explanations, arm.shown, arm.helpful) == (1, 1, 1)
    assert store.tallies()["duplicate"] == 0  # replays are not mistaken for duplicates


def test_dead_lettered_records_advance_offsets_and_are_counted(tmp_path: Path):
    store = FeedbackStore(tmp_path / "s.db")
    store.apply([Consumed("f", 0, 0, None), Consumed("f", 0, 1, None)], dead_letters=2)
    assert store.next_offset("f", 0) == 2 and store.tallies()["dead_letter"] == 2


def test_simulated_experiment_finds_the_better_arm_and_covers_the_true_difference(tmp_path):
    result = run_simulation(tmp_path / "sim.db", feedback_events=20_000, seed=0)
    assert result.feedback_events == 20_000
    report = load_report(tmp_path / "sim.db")
    a, b = report.arms
    true_diff = result.true_rates["b-lora"] - result.true_rates["a-template"]
    assert report.best.arm == "b-lora" and b.p_best > 0.95
    assert b.diff is not None and b.diff[1] <= true_diff <= b.diff[2]
    assert report.tallies["duplicate"] == 1000 and report.tallies["late"] == 500
    assert report.tallies["orphan_open"] == 500
    assert a.shown + b.shown == result.explanations  # every explanation shown exactly once
    md, png = write_report(report, tmp_path / "report")
    assert png.stat().st_size > 5000 and "b-lora is best" in md.read_text()
    assert "| a-template |" in to_markdown(report)


def test_export_writes_the_eval_set_and_preference_pairs_for_the_same_item(tmp_path: Path):
    import json

    from recx_worker.feedback.export import export

    store, feed = FeedbackStore(tmp_path / "s.db"), Feed()
    good = explanation("e1", "a").model_copy(update={"text": "Bright display.", "item_id": "I"})
    bad = explanation("e2", "b").model_copy(update={"text": "It is a product.", "item_id": "I"})
    both = explanation("e3", "b").model_copy(update={"text": "Mixed.", "item_id": "I"})
    other = explanation("e4", "a").model_copy(update={"item_id": "J"})
    store.apply(
        feed(
            good, bad, both, other,
            fb("f1", "e1", "helpful"), fb("f2", "e2", "not_helpful"), fb("f3", "e3", "helpful"),
            fb("f4", "e3", "not_helpful"), fb("f5", "e4", "shown"),
        )
    )  # fmt: skip
    store.close()
    counts = export(tmp_path / "s.db", tmp_path / "out")
    assert counts == {"rated": 3, "pairs": 1}
    rows = [json.loads(line) for line in (tmp_path / "out/feedback-eval.jsonl").open()]
    assert {r["id"]: r["helpful"] for r in rows} == {"e1": True, "e2": False, "e3": None}
    (pair,) = [json.loads(line) for line in (tmp_path / "out/preference-pairs.jsonl").open()]
    assert (pair["chosen"], pair["rejected"]) == ("Bright display.", "It is a product.")
    assert pair["prompt"].endswith("Explanation:") and pair["item_id"] == "I"


def test_metrics_read_per_arm_gauges_from_the_store(tmp_path: Path):
    from prometheus_client import generate_latest

    from recx_worker.feedback.consumer import FeedbackMetrics

    store, feed = FeedbackStore(tmp_path / "s.db"), Feed()
    store.apply(feed(explanation("e1", "a"), fb("f1", "e1", "helpful"), fb("f1", "e1", "helpful")))
    store.close()
    text = generate_latest(FeedbackMetrics(tmp_path / "s.db").registry).decode()
    assert 'recx_experiment_shown{arm="a",experiment="ab"} 1.0' in text
    assert 'recx_experiment_helpful{arm="a",experiment="ab"} 1.0' in text
    assert 'recx_feedback_anomalies{kind="duplicate"} 1.0' in text
