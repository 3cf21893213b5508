"""``recx feedback`` against a real broker: counts survive a restart (with lost Kafka offsets) and
a rebalance between two consumers, nothing is double counted, bad feedback is dead-lettered."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer

from recx_worker.config import load_settings
from recx_worker.events import Evidence, ExplanationEvent, ExplanationFeedback
from recx_worker.feedback.consumer import FeedbackConsumer
from recx_worker.feedback.store import FeedbackStore
from recx_worker.worker.records import H_ERROR_CLASS


def _events(lo: int, hi: int) -> list[ExplanationEvent | ExplanationFeedback]:
    """Explanation i (arm a for even i, b for odd) + shown + helpful when i % 3 == 0."""
    out: list[ExplanationEvent | ExplanationFeedback] = []
    for i in range(lo, hi):
        user, arm = f"u{i % 17}", "a" if i % 2 == 0 else "b"
        out.append(
            ExplanationEvent(
                event_id=f"e{i}", user_id=user, item_id="i", text="t", explainer="template",
                explainer_version="1", evidence=Evidence(), grounded=True, latency_ms=1.0,
                experiment="ab", arm=arm,
            )
        )  # fmt: skip
        kinds = ["shown"] + (["helpful"] if i % 3 == 0 else [])
        out += [
            ExplanationFeedback(
                feedback_id=f"f{i}-{k}", explanation_id=f"e{i}", user_id=user, item_id="i", kind=k
            )
            for k in kinds
        ]
    return out


def _expected(n: int) -> dict[str, tuple[int, int]]:
    counts = {"a": [0, 0], "b": [0, 0]}
    for i in range(n):
        arm = counts["a" if i % 2 == 0 else "b"]
        arm[0] += 1
        arm[1] += i % 3 == 0
    return {k: tuple(v) for k, v in counts.items()}


def _produce(bootstrap: str, settings, events, bad: list[bytes] = ()) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for e in events:
        topic = (
            settings.kafka.output_topic
            if isinstance(e, ExplanationEvent)
            else (settings.feedback.topic)
        )
        producer.send(topic, key=e.user_id.encode(), value=e.model_dump_json().encode())
    for raw in bad:
        producer.send(settings.feedback.topic, key=b"u0", value=raw)
    producer.flush()
    producer.close()


ERRORS: list[BaseException] = []


def _start(settings, name: str) -> tuple[FeedbackConsumer, threading.Thread]:
    consumer = FeedbackConsumer(settings, client_id=name)

    def run() -> None:
        try:
            consumer.run()
        except BaseException as exc:  # surfaced by _wait_for / _stop
            ERRORS.append(exc)
            raise

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return consumer, thread


def _wait_for(store_path: Path, total: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert not ERRORS, ERRORS
        store = FeedbackStore(store_path)
        seen = store.feedback_total() + store.tallies()["dead_letter"]
        store.close()
        if seen >= total:
            return
        time.sleep(0.5)
    raise AssertionError(f"store saw {seen} of {total} feedback records in {timeout} s")


def _counts(store_path: Path) -> dict[str, tuple[int, int]]:
    store = FeedbackStore(store_path)
    try:
        return {c.arm: (c.shown, c.helpful) for c in store.arm_counts("ab")}
    finally:
        store.close()


def _stop(*running: tuple[FeedbackConsumer, threading.Thread]) -> None:
    for consumer, _ in running:
        consumer.stop()
    for _, thread in running:
        thread.join(timeout=60)
        assert not thread.is_alive()
    assert not ERRORS, ERRORS


def test_counts_survive_restart_and_rebalance_without_double_counting(
    kafka_bootstrap: str, make_topic, tmp_path: Path
):
    topics = {"x": make_topic(3), "f": make_topic(3), "dlq": make_topic(1)}
    settings = load_settings(
        kafka={"bootstrap_servers": kafka_bootstrap, "output_topic": topics["x"]},
        feedback={
            "topic": topics["f"], "dlq_topic": topics["dlq"], "group_id": f"g-{topics['f']}",
            "store_path": tmp_path / "store.sqlite3",
        },
    )  # fmt: skip
    store_path = settings.feedback.store_path
    bad = [b"{not json", json.dumps({"feedback_id": "z", "kind": "helpful"}).encode()]
    # Phase 1: one consumer, 60 explanations (+ 2 bad feedback messages).
    _produce(kafka_bootstrap, settings, _events(0, 60), bad)
    first = _start(settings, "c1")
    _wait_for(store_path, 80 + 2)
    _stop(first)
    assert _counts(store_path) == _expected(60)

    # Phase 2: restart under a new group id (Kafka's committed offsets lost, auto reset to the
    # earliest offset): the consumer resumes from the offsets kept in the store instead.
    settings.feedback.group_id += "-restarted"
    _produce(kafka_bootstrap, settings, _events(60, 120))
    a = _start(settings, "c2")
    _wait_for(store_path, 160 + 2)
    # Phase 3: a second consumer joins the group (a rebalance) while more events arrive.
    b = _start(settings, "c3")
    deadline = time.monotonic() + 60
    while not (a[0].assigned and b[0].assigned) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert a[0].assigned and b[0].assigned, "the second consumer never got partitions"
    assert not a[0].assigned & b[0].assigned
    _produce(kafka_bootstrap, settings, _events(120, 200))
    _wait_for(store_path, 267 + 2)
    time.sleep(2)  # let any late replay land before comparing
    _stop(a, b)

    assert _counts(store_path) == _expected(200)
    store = FeedbackStore(store_path)
    tallies, total = store.tallies(), store.feedback_total()
    store.close()
    assert total == 267  # 200 shown + 67 helpful, each stored once
    assert tallies["duplicate"] == 0 and tallies["orphan_open"] == 0
    # Phase 2's group had no committed offsets: it resumed from the store's offsets (replays
    # that slip through, e.g. during a rebalance, are skipped by offset: tests/test_feedback_store)
    assert tallies["replayed"] < 20
    assert tallies["dead_letter"] == 2

    dlq = KafkaConsumer(
        topics["dlq"], bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )  # fmt: skip
    letters = list(dlq)
    dlq.close()
    assert len(letters) == 2
    classes = sorted(dict(m.headers)[H_ERROR_CLASS].decode() for m in letters)
    assert classes == ["MissingField", "NotJSON"]
    assert all(json.loads(m.value)["source"]["topic"] == topics["f"] for m in letters)


def test_recx_feedback_command_serves_metrics_and_stops_on_sigterm(
    kafka_bootstrap: str, make_topic, tmp_path: Path
):
    import os
    import re
    import signal
    import subprocess
    import sys
    import urllib.request

    topics = {"x": make_topic(1), "f": make_topic(1), "dlq": make_topic(1)}
    settings = load_settings(
        kafka={"bootstrap_servers": kafka_bootstrap, "output_topic": topics["x"]},
        feedback={"topic": topics["f"], "dlq_topic": topics["dlq"]},
    )
    _produce(kafka_bootstrap, settings, _events(0, 4))
    env = os.environ | {
        "RECX_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "RECX_KAFKA__OUTPUT_TOPIC": topics["x"],
        "RECX_FEEDBACK__TOPIC": topics["f"],
        "RECX_FEEDBACK__DLQ_TOPIC": topics["dlq"],
        "RECX_FEEDBACK__GROUP_ID": f"g-{topics['f']}",
        "RECX_FEEDBACK__METRICS_PORT": "0",
        "RECX_WORKER__LOG_FORMAT": "console",
    }
    store = tmp_path / "store.sqlite3"
    command = [sys.executable, "-m", "recx_worker.cli", "feedback", "--store", str(store)]
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        port = None
        while port is None:
            line = proc.stdout.readline()
            assert line, "recx feedback exited before serving metrics"
            if match := re.search(r"metrics on :(\d+)", line):
                port = int(match.group(1))
        _wait_for(store, 6)  # 4 shown + 2 helpful (i = 0, 3)
        wanted = (
            'recx_experiment_shown{arm="a",experiment="ab"} 2.0',
            'recx_feedback_records_total{outcome="explanation"} 4.0',
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the counters move just after the store commits
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
            if all(w in metrics for w in wanted):
                break
            time.sleep(0.3)
        assert all(w in metrics for w in wanted), metrics
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _counts(store) == _expected(4)
