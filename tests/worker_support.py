"""Helpers for the worker and dead-letter tests: prepared data, events, worker processes,
reading topics back. Event counts come from environment variables so CI runs small numbers
and a developer can run the issue's full ones (``RECX_TEST_EVENTS=10000``)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from recx_worker.config import settings_env

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
PYTHON = sys.executable


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


# ---------------------------------------------------------------------------------- data
def prepared_tiny(base: Path) -> tuple[Path, Path]:
    """Prepared data + item index from the tiny review fixture, built once under ``base``."""
    data, index = base / "tiny", base / "tiny-index"
    if (index / "manifest.json").exists():
        return data, index
    from recx_worker.prepared import PreparedData
    from recx_worker.retrieval.embedder import default_embedder
    from recx_worker.retrieval.index import build_item_index
    from training.data.prepare import prepare

    reviews, features = FIXTURES / "reviews_tiny.json", FIXTURES / "features_tiny.txt"
    prepare(reviews, data, features=features, progress=False)
    build_item_index(PreparedData(data), default_embedder()).save(index)
    return data, index


def catalog(data: Path) -> tuple[list[str], list[str]]:
    """Users and items of a prepared-data directory."""
    from recx_worker.prepared import PreparedData

    prepared = PreparedData(data)
    return sorted(prepared.user_histories), sorted(prepared.item_profiles)


MALFORMED = (
    b'{"event_id": "broken", ',  # not JSON
    b"\xff\xfe not utf-8",
    b"[1, 2, 3]",
    b'{"event_id": "", "user_id": "u", "item_id": "i"}',
    b'{"user_id": "u", "item_id": "i"}',
    b'{"event_id": "x", "user_id": "u", "item_id": "i", "score": NaN}',
    b'{"event_id": "x", "user_id": "u", "item_id": "i", "schema_version": 9}',
)


@dataclass
class EventSet:
    """What was published: valid event ids and malformed (partition-free) payload indices."""

    valid: list[str] = field(default_factory=list)
    malformed: int = 0
    unknown_items: list[str] = field(default_factory=list)


def make_events(
    n: int, users: list[str], items: list[str], *, malformed_share: float = 0.0, seed: int = 7
) -> list[tuple[bytes, bytes, str | None]]:
    """``n`` (key, value, event_id-or-None) triples; ``malformed_share`` of them invalid."""
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:8]
    out: list[tuple[bytes, bytes, str | None]] = []
    for i in range(n):
        key = f"k{i}".encode()
        if malformed_share and rng.random() < malformed_share:
            out.append((key, MALFORMED[i % len(MALFORMED)], None))
            continue
        event_id = f"{run}-{i}"
        event = {
            "event_id": event_id,
            "user_id": rng.choice(users),
            "item_id": rng.choice(items),
            "history": [{"item_id": rng.choice(items), "rating": 5.0}],
            "score": round(rng.random(), 4),
        }
        out.append((key, json.dumps(event).encode(), event_id))
    return out


# -------------------------------------------------------------------------------- topics
def create_topics(bootstrap: str, *names: str, partitions: int = 6) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        admin.close()


def publish(bootstrap: str, topic: str, events: list[tuple[bytes, bytes, Any]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    for key, value, _ in events:
        producer.send(topic, value=value, key=key)
    producer.flush()
    producer.close()


def read_topic(bootstrap: str, topic: str, *, read_committed: bool = True) -> list[Any]:
    """Every record of ``topic`` up to its current end offsets."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed" if read_committed else "read_uncommitted",
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        records: list[Any] = []
        deadline = time.monotonic() + 120
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} did not reach its end offsets")
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        return {tp.partition: o for tp, o in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str) -> dict[int, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
        return {tp.partition: o.offset for tp, o in offsets.items() if o.offset >= 0}
    finally:
        admin.close()


def explained_ids(bootstrap: str, topic: str, *, read_committed: bool = True) -> Counter:
    records = read_topic(bootstrap, topic, read_committed=read_committed)
    return Counter(json.loads(r.value)["event_id"] for r in records)


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def output_count(bootstrap: str, *topics: str) -> int:
    """Records in ``topics`` (end offsets; transactional markers count too, fine for waiting)."""
    return sum(sum(end_offsets(bootstrap, t).values()) for t in topics)


# ------------------------------------------------------------------------------- workers
@dataclass
class Topics:
    input: str
    output: str
    dlq: str
    group: str

    @classmethod
    def fresh(cls, bootstrap: str, prefix: str, partitions: int = 6) -> Topics:
        run = f"{prefix}-{uuid.uuid4().hex[:6]}"
        topics = cls(f"{run}.in", f"{run}.out", f"{run}.in.dlq", f"{run}-group")
        create_topics(bootstrap, topics.input, topics.output, topics.dlq, partitions=partitions)
        return topics


def worker_env(
    bootstrap: str, topics: Topics, data: Path, index: Path, **worker: Any
) -> dict[str, str]:
    """Environment for a ``recx worker`` process (settings travel as RECX_* variables)."""
    sections: dict[str, dict[str, Any]] = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "input_topic": topics.input,
            "output_topic": topics.output,
            "dlq_topic": topics.dlq,
            "group_id": topics.group,
        },
        "paths": {"data_dir": data, "index_dir": index},
        "chain": {"explainers": ["template"]},
        "worker": {
            "metrics_port": 0,
            "session_timeout_ms": 6000,
            "heartbeat_interval_ms": 1000,
            "max_wait_ms": 20,
            "lag_interval_s": 0.5,
        },
    }
    for key, value in worker.items():  # "kafka__x" / "chain__x", else a worker setting
        section, _, name = key.rpartition("__")
        sections.setdefault(section or "worker", {})[name] = value
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECX_")}
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), str(ROOT)])
    return env | settings_env(sections)


class WorkerProcess:
    """One ``recx worker`` subprocess with its log file."""

    def __init__(self, env: dict[str, str], log_path: Path, worker_id: str) -> None:
        self.worker_id = worker_id
        self.log_path = log_path
        self.env = {**env, "RECX_WORKER__WORKER_ID": worker_id}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> WorkerProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "recx_worker.cli", "worker"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.starts += 1
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait()

    def stop(self, timeout_s: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                obj = json.loads(line)
                if isinstance(obj, dict):
                    events.append(obj)
        return events

    def events_named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.log_events() if e.get("event") == name]

    def metrics_port(self, timeout_s: float = 60.0) -> int:
        def found() -> bool:
            return bool(self.events_named("metrics_listening"))

        wait_for(found, timeout_s, f"{self.worker_id} metrics port")
        return int(self.events_named("metrics_listening")[-1]["port"])

    def scrape(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port()}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()

    def wait_assigned(self, timeout_s: float = 60.0) -> None:
        wait_for(
            lambda: bool(self.events_named("partitions_assigned")),
            timeout_s,
            f"{self.worker_id} assignment",
        )


def metric_values(text: str, name: str) -> dict[str, float]:
    """``{label-string: value}`` of one metric family in Prometheus text format."""
    values: dict[str, float] = {}
    pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})?\s+(\S+)$")
    for line in text.splitlines():
        if match := pattern.match(line):
            values[match.group(1) or ""] = float(match.group(2))
    return values


def stop_all(workers: list[WorkerProcess]) -> None:
    for w in workers:
        w.stop()
