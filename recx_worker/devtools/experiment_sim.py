"""A simulated explainer experiment with a known truth, aggregated by the real store.

Users are assigned to arms by ``Assigner``; each gets one explanation, then a ``shown`` event and
``helpful`` with the arm's true probability (else ``not_helpful``). On top come redelivered
duplicates, late feedback (8 days after, always ``helpful``, so counting it would bias the
rates) and orphans (feedback for explanations never published). Records are interleaved so
some feedback arrives before its explanation. ``recx experiments simulate`` runs it.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from recx_worker.config import ExperimentArm, ExperimentSettings
from recx_worker.events import Evidence, ExplanationEvent, ExplanationFeedback
from recx_worker.feedback.assignment import Assigner
from recx_worker.feedback.store import Consumed, FeedbackStore

EXPLANATIONS_TOPIC, FEEDBACK_TOPIC = "sim.explanations", "sim.feedback"


@dataclass(frozen=True, slots=True)
class SimulationResult:
    feedback_events: int
    explanations: int
    true_rates: dict[str, float]
    apply_seconds: float
    store_path: Path


def simulated_events(
    *,
    feedback_events: int = 20_000,
    true_rates: dict[str, float] | None = None,
    duplicates: float = 0.05,
    late: float = 0.025,
    orphans: float = 0.025,
    experiment: str = "sim-ab",
    seed: int = 0,
) -> tuple[list[ExplanationEvent | ExplanationFeedback], int]:
    """The interleaved event stream and the number of explanations in it."""
    rates = true_rates or {"a-template": 0.30, "b-lora": 0.34}
    rng = random.Random(seed)
    assigner = Assigner(
        ExperimentSettings(name=experiment, salt="sim", arms=[ExperimentArm(name=n) for n in rates])
    )
    extra = duplicates + late + orphans
    n_expl = round(feedback_events * (1 - extra) / 2)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    explanations, feedback = [], []
    for i in range(n_expl):
        user, item = f"u{i}", f"i{rng.randrange(500)}"
        arm = assigner.arm(user).name
        at = t0 + timedelta(seconds=i)
        explanations.append(
            ExplanationEvent(
                event_id=f"e{i}", user_id=user, item_id=item, text="Simulated.", explainer=arm,
                explainer_version="sim", evidence=Evidence(), grounded=True, latency_ms=1.0,
                created_at=at, experiment=experiment, arm=arm,
            )
        )  # fmt: skip
        kind = "helpful" if rng.random() < rates[arm] else "not_helpful"
        for j, k in enumerate(("shown", kind)):
            feedback.append(_fb(f"f{i}-{j}", f"e{i}", user, item, k, at + timedelta(seconds=30)))
    total_extra = feedback_events - len(feedback)
    n_late = round(feedback_events * late)
    n_orphan = round(feedback_events * orphans)
    n_dup = total_extra - n_late - n_orphan
    not_helpful = [f for f in feedback if f.kind == "not_helpful"]
    for j, f in enumerate(rng.sample(not_helpful, n_late)):
        when = f.timestamp + timedelta(days=8)
        feedback.append(_fb(f"late{j}", f.explanation_id, f.user_id, f.item_id, "helpful", when))
    for j in range(n_orphan):
        feedback.append(_fb(f"orph{j}", f"missing{j}", f"x{j}", "i0", "helpful", t0))
    feedback += [f.model_copy() for f in rng.sample(feedback, n_dup)]
    # Interleave: each feedback lands near its explanation, sometimes before it.
    keyed = [(i + rng.uniform(0, 3), e) for i, e in enumerate(explanations)]
    position = {e.event_id: i for i, e in enumerate(explanations)}
    for f in feedback:
        base = position.get(f.explanation_id, rng.randrange(n_expl))
        keyed.append((base + rng.uniform(-2, 40), f))
    keyed.sort(key=lambda pair: pair[0])
    return [e for _, e in keyed], n_expl


def _fb(fid, eid, user, item, kind, at) -> ExplanationFeedback:
    return ExplanationFeedback(
        feedback_id=fid, explanation_id=eid, user_id=user, item_id=item, kind=kind,
        timestamp=at, source="simulation",
    )  # fmt: skip


def run_simulation(
    store_path: Path, *, feedback_events: int = 20_000, batch: int = 500, seed: int = 0,
    true_rates: dict[str, float] | None = None,
) -> SimulationResult:  # fmt: skip
    """Apply the simulated stream to a fresh store in ``batch``-sized transactions; timed."""
    rates = true_rates or {"a-template": 0.30, "b-lora": 0.34}
    events, n_expl = simulated_events(feedback_events=feedback_events, true_rates=rates, seed=seed)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store_path}{suffix}").unlink(missing_ok=True)
    store = FeedbackStore(store_path)
    offsets = {EXPLANATIONS_TOPIC: 0, FEEDBACK_TOPIC: 0}
    records = []
    for event in events:
        topic = EXPLANATIONS_TOPIC if isinstance(event, ExplanationEvent) else FEEDBACK_TOPIC
        records.append(Consumed(topic, 0, offsets[topic], event))
        offsets[topic] += 1
    start = time.perf_counter()
    for i in range(0, len(records), batch):
        store.apply(records[i : i + batch])
    elapsed = time.perf_counter() - start
    store.close()
    return SimulationResult(offsets[FEEDBACK_TOPIC], n_expl, rates, elapsed, store_path)


def run_simulation_kafka(
    store_path: Path, bootstrap: str, *, feedback_events: int = 20_000, partitions: int = 4,
    seed: int = 0, timeout_s: float = 600,
) -> SimulationResult:  # fmt: skip
    """The same stream through a real broker: publish to fresh topics, then time ``recx
    feedback``'s consumer from start until every feedback record is in the store."""
    import threading
    import uuid

    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    from recx_worker.config import load_settings
    from recx_worker.feedback.consumer import FeedbackConsumer

    rates = {"a-template": 0.30, "b-lora": 0.34}
    events, n_expl = simulated_events(feedback_events=feedback_events, true_rates=rates, seed=seed)
    run = uuid.uuid4().hex[:8]
    settings = load_settings(
        kafka={"bootstrap_servers": bootstrap, "output_topic": f"sim-{run}.explanations"},
        feedback={
            "topic": f"sim-{run}.feedback", "dlq_topic": f"sim-{run}.feedback.dlq",
            "group_id": f"sim-{run}", "store_path": store_path,
        },
    )  # fmt: skip
    admin = KafkaAdminClient(**settings.kafka.client_config())
    names = (settings.kafka.output_topic, settings.feedback.topic, settings.feedback.dlq_topic)
    admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    admin.close()
    producer = KafkaProducer(**settings.kafka.client_config(), acks="all", linger_ms=20)
    for event in events:
        topic = names[0] if isinstance(event, ExplanationEvent) else names[1]
        producer.send(topic, key=event.user_id.encode(), value=event.model_dump_json().encode())
    producer.flush()
    producer.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store_path}{suffix}").unlink(missing_ok=True)
    store = FeedbackStore(store_path)
    consumer = FeedbackConsumer(settings, client_id="recx-sim")
    start = time.perf_counter()
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    try:
        while (
            store.consumed(names[1]) < feedback_events and time.perf_counter() - start < timeout_s
        ):
            time.sleep(0.2)
        elapsed = time.perf_counter() - start
        if store.consumed(names[1]) < feedback_events:
            raise TimeoutError(f"the consumer read {store.consumed(names[1])} of {feedback_events}")
    finally:
        consumer.stop()
        thread.join(timeout=30)
        store.close()
    return SimulationResult(feedback_events, n_expl, rates, elapsed, store_path)
