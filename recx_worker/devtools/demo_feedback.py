"""The demo closes the loop: the workers run an A/B experiment (arm ``a`` = the demo's chain,
arm ``b`` = the template alone), simulated users rate the explanations they were shown with a
known helpful probability per arm, ``recx feedback``'s consumer aggregates the feedback from
Kafka into its store, and the experiment report gives the verdict with its interval."""

from __future__ import annotations

import random
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from recx_worker.config import Settings
from recx_worker.events import ExplanationEvent, ExplanationFeedback

EXPERIMENT = "demo-ab"
# The simulated truth: users find arm a's explanations helpful more often.
TRUE_RATES = {"a": 0.45, "b": 0.30}


def experiment_env(chain: list[str]) -> dict[str, str]:
    """Worker environment for the demo experiment (arms a = ``chain``, b = template)."""
    from recx_worker.config import settings_env

    arms = [{"name": "a", "explainers": chain}, {"name": "b", "explainers": ["template"]}]
    return settings_env({"experiments": {"name": EXPERIMENT, "salt": "demo", "arms": arms}})


def feedback_settings(settings: Settings, demo_dir: Path, run_id: str | None) -> Settings:
    """This run's feedback topics and a fresh store under ``demo_dir``."""
    prefix = f"demo-{run_id}." if run_id else ""
    store = demo_dir / "feedback.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store}{suffix}").unlink(missing_ok=True)
    feedback = settings.feedback.model_copy(
        update={
            "topic": f"{prefix}explanation-feedback",
            "dlq_topic": f"{prefix}explanation-feedback.dlq",
            "group_id": f"recx-demo-feedback-{uuid.uuid4().hex[:8]}",
            "store_path": store,
        }
    )
    return settings.model_copy(update={"feedback": feedback})


def create_feedback_topics(settings: Settings, partitions: int) -> None:
    """Feedback topic co-partitioned with the explanations (same count, same key), and its DLQ."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(**settings.kafka.client_config(), client_id="recx-demo-admin")
    try:
        admin.create_topics(
            [
                NewTopic(settings.feedback.topic, partitions, 1),
                NewTopic(settings.feedback.dlq_topic, 1, 1),
            ]
        )
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


def simulate_users(
    explanations: list[ExplanationEvent], seed: int = 0
) -> list[ExplanationFeedback]:
    """``shown`` for each explanation, then ``helpful`` with its arm's true probability."""
    rng = random.Random(seed)
    out = []
    for e in explanations:
        helpful = rng.random() < TRUE_RATES.get(e.arm or "", 0.0)
        for kind in ("shown", "helpful" if helpful else "not_helpful"):
            out.append(
                ExplanationFeedback(
                    feedback_id=f"{e.event_id}:{kind}", explanation_id=e.event_id,
                    user_id=e.user_id, item_id=e.item_id, explainer=e.explainer, variant=e.arm,
                    kind=kind, source="simulation",
                )
            )  # fmt: skip
    return out


def close_the_loop(
    settings: Settings, explanations: list[ExplanationEvent], timeout_s: float = 120
) -> dict[str, Any]:
    """Publish simulated feedback, aggregate it with the feedback consumer, report."""
    from kafka import KafkaProducer

    from recx_worker.feedback.consumer import FeedbackConsumer
    from recx_worker.feedback.report import load_report, write_report
    from recx_worker.feedback.store import FeedbackStore

    feedback = simulate_users(explanations)
    producer = KafkaProducer(**settings.kafka.client_config(), acks="all", linger_ms=5)
    for fb in feedback:
        value = fb.model_dump_json().encode()
        producer.send(settings.feedback.topic, key=fb.user_id.encode(), value=value)
    producer.flush(timeout=30)
    producer.close(timeout=10)
    started = time.monotonic()
    consumer = FeedbackConsumer(settings, client_id="recx-demo-feedback")
    thread = threading.Thread(target=consumer.run, name="demo-feedback", daemon=True)
    thread.start()
    store_path = settings.feedback.store_path
    try:
        while time.monotonic() - started < timeout_s:
            time.sleep(0.5)
            if store_path.exists():
                store = FeedbackStore(store_path)
                seen = store.consumed(settings.feedback.topic)
                store.close()
                if seen >= len(feedback):
                    break
    finally:
        consumer.stop()
        thread.join(timeout=30)
    aggregated_s = time.monotonic() - started
    report = load_report(store_path, EXPERIMENT)
    md, png = write_report(report, store_path.parent / "experiment")
    return {
        "feedback_events": len(feedback),
        "aggregated_s": round(aggregated_s, 1),
        "true_rates": TRUE_RATES,
        "verdict": report.verdict(),
        "arms": {
            a.arm: {"shown": a.shown, "helpful": a.helpful, "p_best": a.p_best} for a in report.arms
        },
        "report": str(md),
        "plot": str(png),
    }
