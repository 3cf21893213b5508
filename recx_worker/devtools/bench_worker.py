"""``recx bench worker``: worker throughput and end-to-end latency against the ceiling.

For each worker count: fresh topics, then
1. throughput: ``events`` recommendation events (from the prepared test split, with the
   users' histories) are written first; the workers start and drain that backlog;
   events/s = events / (last output appended - first output appended);
2. latency: events are published at a steady rate (``load`` x the measured throughput) and
   end-to-end latency = output appended by the broker (the output topic uses
   ``LogAppendTime``; the broker acknowledges right after) - event record timestamp.
The ceiling runs the same two phases with the same kafka-python clients doing nothing but
consume -> produce (acks=all) -> commit.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from recx_worker.devtools.benchio import percentile
from recx_worker.signals import interrupt_on_sigterm

MODES = ("worker", "ceiling")


def bench_worker(
    events: Annotated[int, typer.Option(min=100, help="Events per throughput run")] = 20_000,
    workers: Annotated[str, typer.Option(help="Comma-separated worker counts")] = "1,2",
    partitions: Annotated[int, typer.Option(min=1, help="Input partitions")] = 6,
    chain: Annotated[str, typer.Option(help="Explainer chain (comma-separated)")] = "template",
    max_batch: Annotated[int, typer.Option(min=1, help="worker.max_batch")] = 64,
    load: Annotated[
        float, typer.Option(min=0.05, max=1.0, help="Latency run rate, share of throughput")
    ] = 0.5,
    latency_seconds: Annotated[float, typer.Option(min=2, help="Latency run length")] = 10.0,
    bootstrap: Annotated[
        str | None, typer.Option(help="Kafka to use (default: a temporary local broker)")
    ] = None,
    data: Annotated[Path | None, typer.Option(help="Prepared data (default: settings)")] = None,
    index: Annotated[Path | None, typer.Option(help="Item index (default: settings)")] = None,
    out: Annotated[Path, typer.Option(help="JSON report")] = Path("reports/bench/worker.json"),
) -> None:
    """Events/s and p50/p99 end-to-end latency of 1..N workers vs raw consume+produce."""
    from recx_worker.config import Settings
    from recx_worker.devtools.benchio import report

    settings = Settings()
    data = data or settings.paths.data_dir
    index = index or settings.paths.index_dir
    if not (Path(data) / "manifest.json").exists():
        typer.secho(f"error: no prepared data in {data}; run `recx data prepare`", err=True)
        raise typer.Exit(2)
    try:
        counts = [int(c) for c in workers.split(",") if c.strip()]
    except ValueError:
        typer.secho(f"error: --workers must be comma-separated integers: {workers!r}", err=True)
        raise typer.Exit(2) from None
    payloads = _events_from_data(Path(data), events)
    interrupt_on_sigterm()  # a terminated bench still stops its workers and broker
    broker = None
    if bootstrap is None:
        from recx_worker.devtools.kafka_local import LocalKafka

        broker = LocalKafka(Path(tempfile.mkdtemp(prefix="recx-bench-kafka-")), nodes=1).start()
        bootstrap = broker.bootstrap
    rows: list[dict[str, Any]] = []
    try:
        for count in counts:
            for mode in MODES:
                options = {
                    "partitions": partitions,
                    "data": Path(data),
                    "index": Path(index),
                    "chain": chain,
                    "max_batch": max_batch,
                    "load": load,
                    "latency_seconds": latency_seconds,
                }
                rows.append(_run(mode, count, bootstrap, payloads, **options))
    finally:
        if broker is not None:
            broker.stop()
    report(
        "worker",
        rows,
        out=out,
        events=events,
        partitions=partitions,
        chain=chain,
        max_batch=max_batch,
        load=load,
        latency="output LogAppendTime - event record timestamp",
    )


# ------------------------------------------------------------------------------ one run
def _run(mode: str, count: int, bootstrap: str, payloads: list[dict], **kw: Any) -> dict:
    from kafka.admin import KafkaAdminClient, NewTopic

    run = f"bench-{mode}-{count}-{uuid.uuid4().hex[:6]}"
    topics = {"input": f"{run}.in", "output": f"{run}.out", "dlq": f"{run}.in.dlq"}
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics(
        [
            NewTopic(topics["input"], kw["partitions"], 1),
            NewTopic(topics["output"], kw["partitions"], 1,
                     topic_configs={"message.timestamp.type": "LogAppendTime"}),
            NewTopic(topics["dlq"], 1, 1),
        ]
    )  # fmt: skip
    admin.close()
    n = len(payloads)
    # throughput: a backlog of every event, drained by processes started after it was written
    _publish(bootstrap, topics["input"], payloads, rate=None)
    procs = [_start(mode, i, bootstrap, topics, run, kw) for i in range(count)]
    try:
        appended = _collect(bootstrap, topics["output"], n, timeout_s=max(300, n / 20))
        span = (max(appended.values()) - min(appended.values())) / 1000
        throughput = (n - 1) / span
        _wait_assigned(procs, bootstrap, f"{run}-group", count)
        # latency: a steady rate below the throughput just measured
        rate = throughput * kw["load"]
        k = max(int(rate * kw["latency_seconds"]), 100)
        steady = [dict(p, event_id=f"lat-{i}-{p['event_id']}") for i, p in enumerate(payloads[:k])]
        sent = _publish(bootstrap, topics["input"], steady, rate=rate, stamps=True)
        appended = _collect(bootstrap, topics["output"], n + k, timeout_s=max(120, k / 20))
        lat = sorted(appended[e] - sent[e] for e in sent)  # type: ignore[index]
        return {
            "mode": "recx worker" if mode == "worker" else "ceiling (consume+produce)",
            "workers": count,
            "events": n,
            "events_per_s": round(throughput, 1),
            "latency_rate_per_s": round(rate, 1),
            "latency_events": k,
            "p50_ms": round(percentile(lat, 50), 1),
            "p99_ms": round(percentile(lat, 99), 1),
        }
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _start(mode: str, i: int, bootstrap: str, topics: dict, run: str, kw: dict) -> Any:
    from recx_worker.config import settings_env

    env = {k: v for k, v in os.environ.items() if not k.startswith("RECX_")}
    env["OMP_NUM_THREADS"] = "1"
    env |= settings_env(
        {
            "kafka": {
                "bootstrap_servers": bootstrap,
                "input_topic": topics["input"],
                "output_topic": topics["output"],
                "dlq_topic": topics["dlq"],
                "group_id": f"{run}-group",
            },
            "paths": {"data_dir": kw["data"], "index_dir": kw["index"]},
            "chain": {"explainers": kw["chain"].split(",")},
            "worker": {
                "worker_id": f"bench-{i}",
                "metrics_port": -1,
                "max_batch": kw["max_batch"],
                "log_level": "WARNING",
            },
        }
    )
    if mode == "worker":
        cmd = [sys.executable, "-m", "recx_worker.cli", "worker"]
    else:
        cmd = [sys.executable, "-m", "recx_worker.devtools.bench_worker", "passthrough"]
    log = open(Path(tempfile.gettempdir()) / f"{run}-{i}.log", "wb")  # noqa: SIM115
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)


def _wait_assigned(
    procs: list[Any], bootstrap: str, group: str, count: int, timeout_s: float = 180
) -> None:
    """Wait until the group is stable with ``count`` members (all warmed up and assigned)."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for proc in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"a benchmark process exited early ({proc.returncode})")
            desc = admin.describe_groups([group]).get(group) or {}
            if (
                str(desc.get("group_state", "")).lower() == "stable"
                and len(desc.get("members") or []) == count
            ):
                time.sleep(1.0)
                return
            time.sleep(0.5)
    finally:
        admin.close()
    raise RuntimeError(f"the group {group} did not settle with {count} members")


def _publish(
    bootstrap: str, topic: str, payloads: list[dict], *, rate: float | None, stamps: bool = False
) -> Any:
    """Publish; returns the first record timestamp (ms), or ``{event_id: timestamp}``."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    sent: dict[str, int] = {}
    first = int(time.time() * 1000)
    started = time.monotonic()
    for i, payload in enumerate(payloads):
        if rate is not None:
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        ts = int(time.time() * 1000)
        producer.send(
            topic, value=json.dumps(payload).encode(), key=payload["user_id"].encode(),
            timestamp_ms=ts,
        )  # fmt: skip
        sent[payload["event_id"]] = ts
    producer.flush()
    producer.close()
    return sent if stamps else first


def _collect(bootstrap: str, topic: str, n: int, timeout_s: float) -> dict[str, int]:
    """``{event_id: append timestamp}`` once ``n`` distinct outputs are on ``topic``."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    seen: dict[str, int] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(seen) < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(seen)} of {n} outputs after {timeout_s:.0f} s")
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    event_id = json.loads(r.value)["event_id"]
                    seen.setdefault(event_id, r.timestamp)
    finally:
        consumer.close()
    return seen


def _events_from_data(data: Path, n: int) -> list[dict]:
    """``n`` recommendation events from the test split, each with the user's history."""
    from recx_worker.prepared import PreparedData

    prepared = PreparedData(data)
    pairs = [(r.user_id, r.item_id) for r in prepared.split("test")]
    if not pairs:
        raise typer.BadParameter(f"{data} has an empty test split")
    histories = prepared.user_histories
    rng = random.Random(0)
    events = []
    for i in range(n):
        user, item = pairs[i % len(pairs)]
        history = histories.get(user)
        items = history.items[-10:] if history is not None else []
        events.append(
            {
                "event_id": f"bench-{i}",
                "user_id": user,
                "item_id": item,
                "history": [{"item_id": h.item_id, "rating": h.rating} for h in items],
                "score": round(rng.random(), 4),
            }
        )
    return events


# ------------------------------------------------------------------- the ceiling process
def passthrough() -> None:
    """Consume -> produce the same bytes (acks=all) -> commit: no processing at all."""
    import signal

    from kafka import KafkaConsumer, KafkaProducer

    from recx_worker.config import Settings

    settings = Settings()
    kafka, cfg = settings.kafka, settings.worker
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    consumer = KafkaConsumer(
        kafka.input_topic,
        **kafka.client_config(),
        group_id=kafka.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=cfg.max_batch,
    )
    producer = KafkaProducer(
        **kafka.client_config(), acks="all", enable_idempotence=True, linger_ms=cfg.linger_ms
    )
    while not stop["now"]:
        polled = consumer.poll(timeout_ms=100)
        if not polled:
            continue
        for records in polled.values():
            for r in records:
                producer.send(kafka.output_topic, value=r.value, key=r.key)
        producer.flush()
        consumer.commit()
    consumer.close()
    producer.close()


if __name__ == "__main__" and sys.argv[1:] == ["passthrough"]:
    passthrough()
