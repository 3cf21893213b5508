"""``recx bench worker``: worker throughput and end-to-end latency against the ceiling.

For each worker count: fresh topics, then
1. throughput: ``events`` recommendation events (from the prepared test split, with the
   users' histories) are written first; the workers start and drain that backlog;
   events/s = events / (last output appended - first output appended); the CPU the worker
   processes (and their children: core processes) used meanwhile gives CPU microseconds per
   event (a measure the machine's other load hardly moves); ``rss_mib`` is the resident memory
   of each of those processes at the end of the drain;
2. latency: events are published at a steady rate (``load`` x the measured throughput) and
   end-to-end latency = output appended by the broker (the output topic uses
   ``LogAppendTime``; the broker acknowledges right after) - event record timestamp.
The ceiling runs the same two phases with the same clients (kafka-python's consumer; the
worker's producer, ``worker.producer_client``) doing nothing but consume -> produce
(acks=all) -> commit.

With ``--rates`` the workers start warm (no backlog) and each rate is a latency run at that
absolute rate (events/s): end-to-end and in-worker latency (the chain's own ``latency_ms``),
the share of events each explainer answered, and why earlier stages did not (the stages each
event skipped, with their reasons, e.g. ``lora: deadline_skipped``).
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import typer

from recx_worker.config import PRODUCER_CLIENTS
from recx_worker.devtools.benchio import percentile
from recx_worker.signals import interrupt_on_sigterm

MODES = ("worker", "ceiling")
#: The extra ceiling run when the workers' producer is librdkafka: the issue's reference,
#: kafka-python's consume+produce, beside the ceiling with the workers' own clients.
KAFKA_PYTHON_CEILING = "ceiling-kafka-python"
LABELS = {
    "worker": "recx worker",
    "ceiling": "ceiling (consume+produce)",
    KAFKA_PYTHON_CEILING: "ceiling (consume+produce, kafka-python)",
}
#: Fewest events of one ``--rates`` latency run.
MIN_RATE_EVENTS = 5


class Output(NamedTuple):
    """One output record as the benchmark reads it."""

    appended_ms: int  # broker LogAppendTime
    explainer: str | None = None  # None: the ceiling echoes the input event
    latency_ms: float | None = None  # the chain's own latency (in-worker)
    skipped: tuple[tuple[str, str], ...] = ()  # (explainer, reason) of the stages skipped
    dead_letter: str | None = None  # error class, for an event dead-lettered instead


def bench_worker(
    events: Annotated[int, typer.Option(min=100, help="Events per throughput run")] = 20_000,
    workers: Annotated[str, typer.Option(help="Comma-separated worker counts")] = "1,2",
    partitions: Annotated[int, typer.Option(min=1, help="Input partitions")] = 6,
    chain: Annotated[str, typer.Option(help="Explainer chain (comma-separated)")] = "template",
    max_batch: Annotated[int, typer.Option(min=1, help="worker.max_batch")] = 64,
    load: Annotated[
        float, typer.Option(min=0.05, max=1.0, help="Latency run rate, share of throughput")
    ] = 0.5,
    rates: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated absolute rates (events/s), e.g. 0.5,1,2,4: one latency run "
            "per rate on warm workers, no throughput run (`--load` is then unused)"
        ),
    ] = None,
    latency_seconds: Annotated[float, typer.Option(min=2, help="Latency run length")] = 10.0,
    latency_target_ms: Annotated[
        int | None, typer.Option(min=0, help="worker.latency_target_ms (default: settings)")
    ] = None,
    core_processes: Annotated[
        int | None,
        typer.Option(min=0, help="worker.core_processes (default: settings)"),
    ] = None,
    producer_client: Annotated[
        str | None,
        typer.Option(help="worker.producer_client of workers and ceiling (default: settings)"),
    ] = None,
    commit_interval_ms: Annotated[
        int | None,
        typer.Option(
            min=0, help="worker.commit_interval_ms of workers and ceiling (default: settings)"
        ),
    ] = None,
    ceiling: Annotated[bool, typer.Option(help="Also run the consume+produce ceiling")] = True,
    bootstrap: Annotated[
        str | None, typer.Option(help="Kafka to use (default: a temporary local broker)")
    ] = None,
    data: Annotated[Path | None, typer.Option(help="Prepared data (default: settings)")] = None,
    index: Annotated[Path | None, typer.Option(help="Item index (default: settings)")] = None,
    out: Annotated[Path, typer.Option(help="JSON report")] = Path("reports/bench/worker.json"),
) -> None:
    """Events/s and p50/p99 end-to-end latency of 1..N workers vs raw consume+produce."""
    import faulthandler
    import signal

    from recx_worker.config import Settings
    from recx_worker.devtools.benchio import report

    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` dumps every thread's stack
    settings = Settings()
    data = data or settings.paths.data_dir
    index = index or settings.paths.index_dir
    if not (Path(data) / "manifest.json").exists():
        typer.secho(f"error: no prepared data in {data}; run `recx data prepare`", err=True)
        raise typer.Exit(2)
    try:
        counts = [int(c) for c in workers.split(",") if c.strip()]
        rate_list = parse_rates(rates) if rates is not None else None
    except ValueError as exc:
        typer.secho(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if producer_client not in (None, *PRODUCER_CLIENTS):
        typer.secho(
            f"error: --producer-client must be one of {', '.join(PRODUCER_CLIENTS)}", err=True
        )
        raise typer.Exit(2)
    payloads = _events_from_data(Path(data), events)
    interrupt_on_sigterm()  # a terminated bench still stops its workers and broker
    broker = None
    if bootstrap is None:
        from recx_worker.devtools.kafka_local import LocalKafka

        broker = LocalKafka(Path(tempfile.mkdtemp(prefix="recx-bench-kafka-")), nodes=1).start()
        bootstrap = broker.bootstrap
    options = {
        "partitions": partitions,
        "data": Path(data),
        "index": Path(index),
        "chain": chain,
        "max_batch": max_batch,
        "load": load,
        "rates": rate_list,
        "latency_seconds": latency_seconds,
        "latency_target_ms": latency_target_ms,
        "core_processes": core_processes,
        "producer_client": producer_client or settings.worker.producer_client,
        "commit_interval_ms": settings.worker.commit_interval_ms
        if commit_interval_ms is None
        else commit_interval_ms,
    }
    modes = list(MODES if ceiling else MODES[:1])
    producer = resolved_producer(options["producer_client"])
    if ceiling and producer != "kafka-python":
        modes.append(KAFKA_PYTHON_CEILING)
    rows: list[dict[str, Any]] = []
    try:
        for count in counts:
            for mode in modes:
                rows.extend(_run_once_more_if_stalled(mode, count, bootstrap, payloads, options))
    finally:
        if broker is not None:
            broker.stop()
    report(
        "worker",
        add_share_of_ceiling(rows),
        out=out,
        events=events,
        partitions=partitions,
        chain=chain,
        max_batch=max_batch,
        load=None if rate_list else load,
        rates=rate_list,
        latency_target_ms=latency_target_ms,
        core_processes=core_processes,
        producer_client=producer,
        commit_interval_ms=options["commit_interval_ms"],
        latency="output LogAppendTime - event record timestamp",
        in_worker_latency="the explanation event's latency_ms (the chain, for its micro-batch)",
    )


def resolved_producer(choice: str) -> str:
    """The producer the bench's workers and ceiling use for ``choice`` (at-least-once)."""
    from recx_worker.config import Settings
    from recx_worker.worker.clients import producer_client

    return producer_client(Settings(worker={"producer_client": choice}))


def parse_rates(text: str) -> list[float]:
    """``"0.5,1,2"`` -> ``[0.5, 1.0, 2.0]``; raises ValueError for anything but positive
    finite numbers."""
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--rates must be comma-separated numbers: {text!r}") from None
    if not rates or not all(math.isfinite(r) and r > 0 for r in rates):
        raise ValueError(f"--rates must be positive events/s: {text!r}")
    return rates


def rate_events(rate: float, seconds: float) -> int:
    """Events of one latency run at ``rate`` for ``seconds`` (at least ``MIN_RATE_EVENTS``)."""
    return max(math.ceil(rate * seconds), MIN_RATE_EVENTS)


def send_offsets(n: int, rate: float) -> list[float]:
    """When (seconds after the start) each of ``n`` events is due at a steady ``rate``."""
    return [i / rate for i in range(n)]


def latency_stats(sent: dict[str, int], outputs: dict[str, Output]) -> dict[str, Any]:
    """End-to-end and in-worker p50/p99, and who answered, for the events of ``sent``
    (``{event_id: record timestamp ms}``) found in ``outputs``."""
    mine = [outputs[e] for e in sent if e in outputs]
    e2e = [outputs[e].appended_ms - ts for e, ts in sent.items() if e in outputs]
    in_worker = [o.latency_ms for o in mine if o.latency_ms is not None]
    stats: dict[str, Any] = {
        "p50_ms": round(percentile(e2e, 50), 1),
        "p99_ms": round(percentile(e2e, 99), 1),
    }
    if in_worker:
        stats["in_worker_p50_ms"] = round(percentile(in_worker, 50), 1)
        stats["in_worker_p99_ms"] = round(percentile(in_worker, 99), 1)
    answered = Counter(o.explainer for o in mine if o.explainer is not None)
    if dead := sum(o.dead_letter is not None for o in mine):
        stats["dead_letters"] = dead
    if answered:
        stats["answered"] = {k: round(v / len(mine), 4) for k, v in answered.most_common()}
        skips = Counter(f"{name}: {reason}" for o in mine for name, reason in o.skipped)
        stats["skipped"] = dict(skips.most_common())
    return stats


def add_share_of_ceiling(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each worker throughput row gets ``share_of_ceiling``: its events/s over the ceiling's
    with the same clients and worker count (same run); with a librdkafka producer also
    ``share_of_kafka_python_ceiling``, over kafka-python's ceiling."""
    shares = {
        LABELS["ceiling"]: "share_of_ceiling",
        LABELS[KAFKA_PYTHON_CEILING]: "share_of_kafka_python_ceiling",
    }
    ceilings = {
        (r["mode"], r["workers"]): r["events_per_s"]
        for r in rows
        if r["mode"] in shares and r.get("events_per_s")
    }
    for row in rows:
        if row["mode"] != LABELS["worker"] or not row.get("events_per_s"):
            continue
        for label, field in shares.items():
            if top := ceilings.get((label, row["workers"])):
                row[field] = round(row["events_per_s"] / top, 3)
    return rows


# ------------------------------------------------------------------------------ one run
class Stalled(RuntimeError):
    """No new output for ``STALL_S`` seconds: a benchmark process stopped making progress."""


#: Outputs must keep coming: a run with none for this long is void (and run once more).
STALL_S = 150.0


def _run_once_more_if_stalled(
    mode: str, count: int, bootstrap: str, payloads: list[dict], options: dict[str, Any]
) -> list[dict]:
    """``_run``, again on fresh topics if it stalled (kafka-python 3.0.12's consumer has been
    seen spinning in its coordinator lookup right after a join, for good); the row says so."""
    try:
        return _run(mode, count, bootstrap, payloads, **options)
    except Stalled as exc:
        typer.secho(f"warning: {LABELS[mode]}: {exc}; running it again", err=True)
    return [row | {"stalled_runs": 1} for row in _run(mode, count, bootstrap, payloads, **options)]


def _run(mode: str, count: int, bootstrap: str, payloads: list[dict], **kw: Any) -> list[dict]:
    run = f"bench-{mode}-{count}-{uuid.uuid4().hex[:6]}"
    topics = _create_topics(bootstrap, run, kw["partitions"])
    base = {"mode": LABELS[mode], "workers": count}
    if kw["rates"] is None:  # a backlog of every event, drained by processes started after it
        _publish(bootstrap, topics["input"], payloads, rate=None)
    procs = [_start(mode, i, bootstrap, topics, run, kw) for i in range(count)]
    try:
        if kw["rates"] is not None:
            _wait_assigned(procs, bootstrap, f"{run}-group", count, timeout_s=900)
            rows, done = [], 0
            for rate in kw["rates"]:
                k = rate_events(rate, kw["latency_seconds"])
                stats = _latency(bootstrap, topics, payloads, rate, k, done, kw)
                rows.append(base | {"rate_per_s": rate, "events": k} | stats)
                done += k
            return rows
        n = len(payloads)
        cpu = _CpuMeter(procs)
        appended = _collect(
            bootstrap,
            topics["output"],
            n,
            max(300, n / 20),
            on_first=cpu.start,
            first_within_s=None if mode == "worker" else STALL_S,  # the ceiling starts at once
        )
        cpu_s = cpu.seconds()
        memory = rss_mib([p.pid for p in procs]) if sys.platform == "linux" else []
        stamps = [o.appended_ms for o in appended.values()]
        throughput = (n - 1) / ((max(stamps) - min(stamps)) / 1000)
        _wait_assigned(procs, bootstrap, f"{run}-group", count)
        # latency: a steady rate below the throughput just measured
        rate = throughput * kw["load"]
        k = max(int(rate * kw["latency_seconds"]), 100)
        stats = _latency(bootstrap, topics, payloads, rate, k, n, kw)
        return [
            base
            | {
                "events": n,
                "events_per_s": round(throughput, 1),
                "cpu_us_per_event": round(cpu_s / n * 1e6, 1) if cpu_s is not None else None,
                "cpu_us_per_event_by_process": [round(v / n * 1e6, 1) for v in cpu.used.values()],
                "rss_mib": memory,
                "latency_rate_per_s": round(rate, 1),
                "latency_events": k,
                "dead_letters": sum(o.dead_letter is not None for o in appended.values()),
            }
            | stats
        ]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _create_topics(bootstrap: str, run: str, partitions: int) -> dict[str, str]:
    from kafka.admin import KafkaAdminClient, NewTopic

    topics = {"input": f"{run}.in", "output": f"{run}.out", "dlq": f"{run}.in.dlq"}
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics(
        [
            NewTopic(topics["input"], partitions, 1),
            NewTopic(topics["output"], partitions, 1,
                     topic_configs={"message.timestamp.type": "LogAppendTime"}),
            NewTopic(topics["dlq"], 1, 1,
                     topic_configs={"message.timestamp.type": "LogAppendTime"}),
        ]
    )  # fmt: skip
    admin.close()
    return topics


def _latency(
    bootstrap: str,
    topics: dict[str, str],
    payloads: list[dict],
    rate: float,
    k: int,
    done: int,
    kw: dict[str, Any],
) -> dict[str, Any]:
    """Publish ``k`` fresh events at ``rate``; wait until the ``done`` earlier outputs and
    theirs are out; their latency statistics."""
    tag = uuid.uuid4().hex[:4]
    picked = [payloads[i % len(payloads)] for i in range(k)]
    steady = [dict(p, event_id=f"lat-{tag}-{i}-{p['event_id']}") for i, p in enumerate(picked)]
    sent = _publish(bootstrap, topics["input"], steady, rate=rate, stamps=True)
    timeout = max(120, k / 20, 3 * k / rate)
    outputs = _collect(bootstrap, topics["output"], done + k, timeout_s=timeout)
    return latency_stats(sent, outputs)


class _CpuMeter:
    """CPU seconds (user + system) the benchmark's processes and their children (a worker's
    core processes) use from ``start`` on, in all and per process (Linux ``/proc``; None
    elsewhere)."""

    def __init__(self, procs: Sequence[Any]) -> None:
        self.pids = [p.pid for p in procs]
        self.begin: dict[int, float] | None = None
        self.used: dict[int, float] = {}  # per process, set by ``seconds``

    def _per_process(self) -> dict[int, float] | None:
        try:
            ticks = {}
            for pid in process_tree(self.pids):
                fields = _stat(pid)
                ticks[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            return ticks
        except (OSError, ValueError, IndexError):
            return None

    def start(self) -> None:
        self.begin = self._per_process()

    def seconds(self) -> float | None:
        end = self._per_process()
        if end is None or self.begin is None:
            return None
        self.used = {pid: s - self.begin.get(pid, 0.0) for pid, s in end.items()}
        return sum(self.used.values())


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_tree(pids: Sequence[int]) -> list[int]:
    """``pids`` and all their descendants, parents first (Linux ``/proc``)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                children.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue  # the process ended meanwhile
    out: list[int] = []
    todo = list(pids)
    while todo:
        pid = todo.pop(0)
        out.append(pid)
        todo.extend(sorted(children.get(pid, [])))
    return out


def rss_mib(pids: Sequence[int]) -> list[float]:
    """Resident memory (MiB) of each process of ``process_tree(pids)``, in that order."""
    out = []
    for pid in process_tree(pids):
        try:
            pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        out.append(round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1))
    return out


def worker_env(
    bootstrap: str,
    topics: dict,
    run: str,
    *,
    data: Path,
    index: Path,
    explainers: list[str],
    worker: dict[str, Any],
) -> dict[str, str]:
    """The environment of one bench process: this one's, less its ``RECX_*`` settings, plus
    the run's topics, group, data, chain and ``worker.*`` settings (one BLAS thread)."""
    from recx_worker.config import settings_env

    env = {k: v for k, v in os.environ.items() if not k.startswith("RECX_")}
    env["OMP_NUM_THREADS"] = "1"
    return env | settings_env(
        {
            "kafka": {
                "bootstrap_servers": bootstrap,
                "input_topic": topics["input"],
                "output_topic": topics["output"],
                "dlq_topic": topics["dlq"],
                "group_id": f"{run}-group",
            },
            "paths": {"data_dir": data, "index_dir": index},
            "chain": {"explainers": explainers},
            "worker": worker,
        }
    )


def _start(mode: str, i: int, bootstrap: str, topics: dict, run: str, kw: dict) -> Any:
    from recx_worker.config import config_file_in_use

    worker: dict[str, Any] = {
        "worker_id": f"bench-{i}",
        "metrics_port": -1,
        "max_batch": kw["max_batch"],
        "log_level": "WARNING",
    }
    if kw["latency_target_ms"] is not None:
        worker["latency_target_ms"] = kw["latency_target_ms"]
    if kw.get("core_processes") is not None:
        worker["core_processes"] = kw["core_processes"]
    if kw.get("producer_client") is not None:
        worker["producer_client"] = kw["producer_client"]
    if mode == KAFKA_PYTHON_CEILING:
        worker["producer_client"] = "kafka-python"
    if kw.get("commit_interval_ms") is not None:  # the ceiling commits as the workers do
        worker["commit_interval_ms"] = kw["commit_interval_ms"]
    env = worker_env(
        bootstrap,
        topics,
        run,
        data=kw["data"],
        index=kw["index"],
        explainers=kw["chain"].split(","),
        worker=worker,
    )
    if (config := config_file_in_use()) is not None:  # `recx --config X bench worker`
        env["RECX_CONFIG"] = str(Path(config).resolve())
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
    from kafka.errors import KafkaError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for proc in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"a benchmark process exited early ({proc.returncode})")
            try:
                desc = admin.describe_groups([group]).get(group) or {}
            except KafkaError:  # e.g. no coordinator yet on a broker that just started
                desc = {}
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
    due = send_offsets(len(payloads), rate) if rate is not None else None
    started = time.monotonic()
    for i, payload in enumerate(payloads):
        if due is not None:
            delay = started + due[i] - time.monotonic()
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


def read_output(value: bytes, appended_ms: int) -> tuple[str, Output]:
    """``(event_id, Output)`` of one output record: an explanation event, a dead letter (its
    original event's id), or the ceiling's echo of the input event."""
    doc = json.loads(value)
    if "error_class" in doc and "original" in doc:
        event_id = json.loads(doc["original"])["event_id"]
        return event_id, Output(appended_ms, dead_letter=doc["error_class"])
    skipped = tuple((s["explainer"], s["reason"]) for s in doc.get("skipped") or ())
    return doc["event_id"], Output(
        appended_ms, doc.get("explainer"), doc.get("latency_ms"), skipped
    )


def _collect(
    bootstrap: str,
    topic: str,
    n: int,
    timeout_s: float,
    on_first: Callable[[], None] | None = None,
    first_within_s: float | None = None,
) -> dict[str, Output]:
    """``{event_id: Output}`` once ``n`` distinct outputs are on ``topic`` and its dead-letter
    topic (``<topic minus .out>.in.dlq``; a dead letter is an outcome too, so a benchmark
    never waits for an event that was dead-lettered); ``on_first`` is called when the first
    one is seen. ``Stalled`` when none comes for ``STALL_S`` seconds after the first (or for
    ``first_within_s`` before it)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    dlq = topic.removesuffix(".out") + ".in.dlq"
    tps = [
        TopicPartition(t, p)
        for t in (topic, dlq)
        for p in sorted(consumer.partitions_for_topic(t) or ())
    ]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    seen: dict[str, Output] = {}
    deadline = time.monotonic() + timeout_s
    progress_at = time.monotonic()
    try:
        while len(seen) < n:
            now = time.monotonic()
            if now > deadline:
                raise RuntimeError(f"only {len(seen)} of {n} outputs after {timeout_s:.0f} s")
            # none yet: a worker may still be warming up (a language model takes minutes)
            limit = STALL_S if seen else first_within_s
            if limit is not None and now - progress_at > limit:
                raise Stalled(f"no new output for {now - progress_at:.0f} s ({len(seen)} of {n})")
            for records in consumer.poll(timeout_ms=500).values():
                if on_first is not None:
                    on_first()
                    on_first = None
                for r in records:
                    event_id, output = read_output(r.value, r.timestamp)
                    seen.setdefault(event_id, output)
                progress_at = time.monotonic()
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
def passthrough(pad: bytes = b"") -> None:
    """Consume -> produce the same bytes (acks=all) -> commit: no processing at all (``pad``
    appended to each output: ``devtools.kafka_cost`` sizes outputs like explanations). It
    commits as the worker does (``CommitCadence``: at most every ``worker.commit_interval_ms``,
    sooner once ``max_buffered`` delivered events wait)."""
    import faulthandler
    import signal

    from kafka import KafkaConsumer

    from recx_worker.config import Settings
    from recx_worker.worker.clients import KafkaClients
    from recx_worker.worker.offsets import CommitCadence

    settings = Settings()
    kafka, cfg = settings.kafka, settings.worker
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>`: every thread's stack, to its log
    consumer = KafkaConsumer(
        kafka.input_topic,
        **kafka.client_config(),
        group_id=kafka.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=cfg.max_batch,
    )
    producer = KafkaClients(settings).producer()  # the worker's (worker.producer_client)
    cadence = CommitCadence(cfg.commit_interval_ms / 1000, cfg.max_buffered)
    waiting = 0  # delivered, not committed
    while not stop["now"]:
        polled = consumer.poll(timeout_ms=100)
        for records in polled.values():
            for r in records:
                value = r.value + pad if pad else r.value
                producer.send(kafka.output_topic, value=value, key=r.key)
            waiting += len(records)
        if polled:
            producer.flush()
        if cadence.due(waiting):
            consumer.commit()
            cadence.committed(True)
            waiting = 0
    consumer.close()
    producer.close()


if __name__ == "__main__" and sys.argv[1:] == ["passthrough"]:
    passthrough()
