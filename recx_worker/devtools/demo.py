"""``make demo``: recx doing its real job end to end on one machine.

Starts a local Kafka (KRaft), prepares data and index if missing, creates the topics, starts
N ``recx worker`` processes with the explainer chain, publishes recommendation events built
from held-out TEST interactions (with each user's TRAIN history) plus a few malformed ones,
prints every explanation as it arrives, then a summary. Everything it started is stopped on
exit, Ctrl-C and errors included. Exit code 0 only when every valid event was explained and
every malformed one was dead-lettered.

    python -m recx_worker.devtools.demo [--events 200] [--workers 2] [--chain lora,prompt,template]
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from recx_worker.config import DEFAULT_RAW_DATA, Settings, load_settings, settings_env
from recx_worker.devtools.benchio import percentile
from recx_worker.events import (
    DeadLetter,
    ExplanationEvent,
    RecommendationEvent,
    utc_now,
)
from recx_worker.signals import interrupt_on_sigterm
from recx_worker.topics import ensure_topics

DEMO_DIR = Path("var/demo")
REVIEWS_FILE = "reviews_Musical_Instruments_5.json.gz"
FEATURES_FILE = "features.txt"
# The public source files (see docs/data.md) and their checksums.
RAW_SHA256 = {
    REVIEWS_FILE: "03f9cc27ae13a454cb4ea6cb620fb10546cc1194ef921441d1c5f34addff2748",
    FEATURES_FILE: "3e00e8c050b485fe4cb8ab3b2fed93fdbfa0ceaa98053e383501f2cd76719249",
}
HISTORY_LIMIT = 20

console = Console(highlight=False)


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and what to do."""


# --------------------------------------------------------------------------- data


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_raw_data(raw_dir: Path) -> None:
    """Check the sha256 of the public Musical Instruments files (the default raw data)."""
    for name, expected in RAW_SHA256.items():
        path = raw_dir / name
        if not path.exists():
            raise DemoError(
                f"{path} is missing: download it as described in docs/data.md "
                "(Amazon 2014 5-core Musical Instruments, McAuley lab)"
            )
        actual = sha256_file(path)
        if actual != expected:
            raise DemoError(f"{path}: sha256 {actual} != expected {expected}; re-download it")


def recx_command(*args: str) -> list[str]:
    """The ``recx`` CLI run by this interpreter (works without the venv's bin/ on PATH)."""
    return [sys.executable, "-m", "recx_worker.cli", *args]


def _run_step(title: str, command: list[str], log: Path) -> None:
    console.print(f"[bold]{title}[/bold]: {' '.join(command[2:])}  (log: {log})")
    started = time.monotonic()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise DemoError(f"{title} failed (exit {done.returncode}); last lines of {log}:\n{tail}")
    console.print(f"  done in {time.monotonic() - started:.1f} s")


def ensure_prepared(settings: Settings, logs: Path) -> None:
    """Prepare data and build the index unless they are already cached under var/."""
    paths = settings.paths
    if (paths.data_dir / "train.jsonl").exists():
        console.print(f"data: cached in {paths.data_dir}")
    else:
        args = ["data", "prepare", "--out", str(paths.data_dir), "--no-progress"]
        if paths.raw_data.resolve() == DEFAULT_RAW_DATA.resolve():
            verify_raw_data(paths.raw_data)
            console.print("data: sha256 of the raw files verified")
        args += [
            "--reviews",
            str(paths.raw_data / REVIEWS_FILE),
            "--features",
            str(paths.raw_data / FEATURES_FILE),
        ]
        _run_step("data prepare", recx_command(*args), logs / "data-prepare.log")
    if _index_ready(paths.index_dir):
        console.print(f"index: cached in {paths.index_dir}")
    else:
        args = ["index", "build", "--data", str(paths.data_dir), "--out", str(paths.index_dir)]
        args.append("--no-progress")
        _run_step("index build", recx_command(*args), logs / "index-build.log")


def _index_ready(index_dir: Path) -> bool:
    return (index_dir / "manifest.json").exists()


# --------------------------------------------------------------------------- events


@dataclass
class Malformed:
    """A bad input and the dead letter it must produce (error class, failing field)."""

    label: str
    payload: bytes
    error_class: str
    field: str | None


def build_events(data_dir: Path, n: int, seed: int = 0) -> list[RecommendationEvent]:
    """``n`` events from distinct held-out TEST (user, item) pairs, each with the user's TRAIN
    history (its most recent items). Pairs whose item has no TRAIN profile are left out: the
    worker has no evidence for them."""
    from recx_worker.prepared import PreparedData, recommendation_event

    data = PreparedData(data_dir)
    profiles, histories = data.item_profiles, data.user_histories
    pairs: dict[tuple[str, str], Any] = {}
    for record in data.split("test"):
        key = (record.user_id, record.item_id)
        if key not in pairs and record.item_id in profiles and record.user_id in histories:
            pairs[key] = record
    chosen = sorted(pairs)
    random.Random(seed).shuffle(chosen)
    if len(chosen) < n:
        raise DemoError(f"only {len(chosen)} usable test interactions, asked for {n} events")
    return [
        recommendation_event(
            pairs[pair],
            histories,
            history=HISTORY_LIMIT,
            event_id=f"demo-{index:04d}-{uuid.uuid4().hex[:8]}",
            score=round(pairs[pair].rating / 5, 3),
            rank=index % 10,
            source_model="demo-heldout-test",
        )
        for index, pair in enumerate(chosen[:n])
    ]


def malformed_events(valid: RecommendationEvent) -> list[Malformed]:
    """Inputs the worker must dead-letter (with their reason) while it keeps going."""
    base = json.loads(valid.model_dump_json())
    missing_user = {k: v for k, v in base.items() if k != "user_id"} | {"event_id": "bad-user"}
    nan_score = base | {"event_id": "bad-score", "score": float("nan")}
    unknown_item = base | {"event_id": "bad-item", "item_id": "B0NOSUCHITEM"}
    future = base | {"event_id": "bad-version", "schema_version": 2}
    return [
        Malformed("not JSON", b'{"event_id": "bad-json", "user_id": ', "NotJSON", None),
        Malformed("missing user_id", _json(missing_user), "MissingField", "user_id"),
        Malformed("NaN score", _json(nan_score), "NonFiniteNumber", "score"),
        Malformed("unknown item", _json(unknown_item), "UnknownItem", "item_id"),
        Malformed("schema_version 2", _json(future), "UnknownSchemaVersion", "schema_version"),
    ]


def _json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


# --------------------------------------------------------------------------- processes


@contextmanager
def local_kafka(data_dir: Path, keep: bool) -> Iterator[str]:
    """A fresh single-node KRaft broker under ``data_dir``; yields its bootstrap string.

    A broker left running there by an earlier ``--keep-kafka`` run is stopped and its data
    wiped first, so every demo starts from empty topics.
    """
    from recx_worker.devtools.kafka_local.cluster import LocalKafka

    if (data_dir / "state.json").exists():
        LocalKafka(data_dir).stop()
    shutil.rmtree(data_dir, ignore_errors=True)
    kafka = LocalKafka(data_dir, nodes=1, detach=True)
    console.print(f"[bold]kafka[/bold]: starting a local KRaft broker in {data_dir}")
    started = time.monotonic()
    kafka.start()
    try:
        console.print(f"  {kafka.bootstrap} up in {time.monotonic() - started:.1f} s")
        yield kafka.bootstrap
    finally:
        if keep:
            console.print(
                f"kafka: left running at {kafka.bootstrap} "
                f"(stop it: recx kafka down --data-dir {data_dir})"
            )
        else:
            kafka.stop()
            console.print("kafka: stopped")


@dataclass
class Workers:
    """``recx worker`` subprocesses, each in its own session, with a log file."""

    processes: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)

    def start(self, env: dict[str, str], ports: list[int], log_dir: Path) -> None:
        """One worker per metrics port in ``ports``."""
        log_dir.mkdir(parents=True, exist_ok=True)
        for index, port in enumerate(ports):
            log = log_dir / f"worker-{index}.log"
            worker_env = env | {
                "RECX_WORKER__WORKER_ID": f"demo-worker-{index}",
                "RECX_WORKER__METRICS_PORT": str(port),
                "RECX_WORKER__METRICS_HOST": "127.0.0.1",
            }
            with log.open("w") as out:
                process = subprocess.Popen(
                    recx_command("worker"),
                    env=worker_env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self.processes.append(process)
            self.logs.append(log)
            self.ports.append(port)

    def wait_ready(self, timeout_s: float) -> None:
        """Block until every worker answers 200 on /readyz (warmed up, partitions assigned)."""
        deadline = time.monotonic() + timeout_s
        waiting = set(self.ports)
        while waiting:
            self.check_alive()
            for port in sorted(waiting):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                        waiting.discard(port)
                except OSError:  # not listening yet, or 503 (HTTPError is an OSError)
                    pass
            if waiting and time.monotonic() > deadline:
                raise DemoError(
                    f"{len(waiting)} worker(s) not ready after {timeout_s:.0f} s; see {self.logs}"
                )
            if waiting:
                time.sleep(1.0)

    def check_alive(self) -> None:
        for process, log in zip(self.processes, self.logs, strict=True):
            if process.poll() is not None:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
                raise DemoError(f"a worker exited with code {process.returncode}; {log}:\n{tail}")

    def stop(self, grace_s: float = 30.0) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.processes:
            codes = [p.returncode for p in self.processes]
            note = "" if not any(codes) else f"; exit codes {codes}, see {self.logs}"
            console.print(f"workers: stopped ({len(self.processes)}{note})")


# CPU serving settings for the LM stages, measured on 2 cores (one torch thread per worker,
# two workers, adapter v2 at its defaults, micro-batches of 16): in make demo the in-worker
# latency of an event was 42.5 s p50 / 54.5 s p99. Deadlines leave room for a busy machine;
# an expired deadline hands the batch to the next stage.
DEMO_MAX_BATCH = 16
DEMO_LM_OPTIONS = {"batch_size": DEMO_MAX_BATCH, "threads": 1, "max_new_tokens": 32}


def describe_adapter(adapter_dir: Path) -> None:
    """Say which adapter the lora stage serves (or that it will be skipped)."""
    manifest = adapter_dir / "manifest.json"
    if not manifest.exists():
        console.print(
            f"  [yellow]no adapter in {adapter_dir}: the lora stage will be unavailable and "
            "its events fall back to the next explainer[/yellow]"
        )
        return
    info = json.loads(manifest.read_text())
    base = info.get("base_model", {})
    base_name = base.get("name") if isinstance(base, dict) else base
    console.print(f"  adapter {adapter_dir} (version {info.get('version')}, base {base_name})")


def worker_env(settings: Settings, chain: list[str]) -> dict[str, str]:
    """The environment of a demo worker: this run's Kafka, topics, data, chain and batching."""
    kafka, paths = settings.kafka, settings.paths
    options = {name: DEMO_LM_OPTIONS for name in ("lora", "prompt")} | settings.chain.options
    deadlines = settings.chain.deadline_ms  # the defaults in config.py, or as configured
    env = dict(os.environ)
    env.setdefault("RECX_WORKER__MAX_BATCH", str(DEMO_MAX_BATCH))
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update({"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"})
    topics = ("bootstrap_servers", "input_topic", "output_topic", "dlq_topic", "group_id")
    env.update(
        settings_env(
            {
                "chain": {"options": options, "deadline_ms": deadlines, "explainers": chain},
                "kafka": {key: getattr(kafka, key) for key in topics},
                "paths": {
                    key: getattr(paths, key).resolve()
                    for key in ("data_dir", "index_dir", "adapter_dir")
                },
            }
        )
    )
    return env


def wait_for_group(settings: Settings, workers: Workers, members: int, timeout_s: float) -> None:
    """Block until the consumer group has ``members`` members (the workers are consuming)."""
    from kafka.admin import KafkaAdminClient

    kafka = settings.kafka
    admin = KafkaAdminClient(**kafka.client_config(), client_id="recx-demo-admin")
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            workers.check_alive()
            group = admin.describe_groups([kafka.group_id]).get(kafka.group_id) or {}
            state = group.get("group_state") or group.get("state") or ""
            count = len(group.get("members") or [])
            if count >= members and state == "Stable":
                return
            if time.monotonic() > deadline:
                raise DemoError(
                    f"workers did not join group {kafka.group_id!r} within {timeout_s:.0f} s "
                    f"({count}/{members} members, state {state!r}); see {workers.logs}"
                )
            time.sleep(1.0)
    finally:
        admin.close()


# --------------------------------------------------------------------------- run


@dataclass
class Outcome:
    """What came back: explanations by event id, dead letters, latencies."""

    explanations: dict[str, ExplanationEvent] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    first_sent: float = 0.0
    last_received: float = 0.0
    duplicates: int = 0
    dead: list[DeadLetter] = field(default_factory=list)


def show_explanation(index: int, total: int, event: ExplanationEvent, latency_ms: float) -> None:
    header = Text()
    header.append(f"[{index:>3}/{total}] ", style="dim")
    header.append(f"user {event.user_id}", style="cyan")
    header.append(" -> ")
    header.append(f"item {event.item_id}", style="magenta")
    header.append(f"  {event.explainer}", style="bold green" if event.grounded else "bold red")
    header.append(f"  {latency_ms:,.0f} ms", style="dim")
    if event.skipped:
        fell = ", ".join(f"{s.explainer} {s.reason}" for s in event.skipped)
        header.append(f"  (fell back: {fell})", style="yellow")
    console.print(header)
    console.print(Text(f"      “{event.text}”", style="bold"))
    evidence = event.evidence
    support = ", ".join(
        f"{s.item_id} ({s.similarity:.2f}"
        + (f"; {', '.join(s.features[:3])}" if s.features else "")
        + ")"
        for s in evidence.supporting_items[:3]
    )
    features = ", ".join(evidence.item_features[:6])
    line = Text("      evidence: ", style="dim")
    line.append(f"liked {support or '-'}", style="dim")
    line.append(f" | item features: {features or '-'}", style="dim")
    if event.mentioned_features:
        line.append(f" | mentions: {', '.join(event.mentioned_features)}", style="dim")
    console.print(line)


def _event_id_of(letter: DeadLetter) -> str | None:
    try:
        value = json.loads(letter.original or "")
    except json.JSONDecodeError:
        return None
    return value.get("event_id") if isinstance(value, dict) else None


def collect(
    settings: Settings,
    sent_at: dict[str, float],
    malformed: list[Malformed],
    workers: Workers,
    consumer: Any,
    timeout_s: float,
) -> Outcome:
    """Read explanations and dead letters until every input is accounted for (or timeout)."""
    outcome = Outcome(first_sent=min(sent_at.values(), default=0.0))
    deadline = time.monotonic() + timeout_s
    output_topic = settings.kafka.output_topic
    pending_bad = {bad.payload.decode("utf-8", errors="replace") for bad in malformed}
    dead_valid: set[str] = set()
    while time.monotonic() < deadline:
        if not pending_bad and len(outcome.explanations) + len(dead_valid) >= len(sent_at):
            break
        workers.check_alive()
        for tp, records in consumer.poll(timeout_ms=500).items():
            for record in records:
                received = time.time()
                if tp.topic == output_topic:
                    event = ExplanationEvent.model_validate_json(record.value)
                    if event.event_id not in sent_at:
                        continue
                    if event.event_id in outcome.explanations:
                        outcome.duplicates += 1
                        continue
                    latency = (received - sent_at[event.event_id]) * 1000
                    outcome.explanations[event.event_id] = event
                    outcome.latency_ms[event.event_id] = latency
                    outcome.last_received = received
                    show_explanation(len(outcome.explanations), len(sent_at), event, latency)
                else:
                    dead = DeadLetter.model_validate_json(record.value)
                    outcome.dead.append(dead)
                    pending_bad.discard(dead.original or "")
                    if (event_id := _event_id_of(dead)) in sent_at:
                        dead_valid.add(event_id)
                    console.print(
                        Text(f"[dead letter] {dead.error_class}: {dead.reason}", style="yellow")
                    )
    return outcome


def open_consumer(settings: Settings) -> Any:
    """A group-less consumer on the output and dead-letter topics, from their beginning."""
    from kafka import KafkaConsumer, TopicPartition

    kafka = settings.kafka
    consumer = KafkaConsumer(
        **kafka.client_config(), enable_auto_commit=False, client_id="recx-demo-reader"
    )
    partitions = []
    for topic in (kafka.output_topic, kafka.dlq_topic):
        found = None
        for _ in range(50):
            found = consumer.partitions_for_topic(topic)
            if found:
                break
            time.sleep(0.2)
        if not found:
            raise DemoError(f"topic {topic!r} has no partitions")
        partitions += [TopicPartition(topic, p) for p in sorted(found)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    return consumer


def publish(
    settings: Settings, events: list[RecommendationEvent], malformed: list[Malformed], rate: float
) -> dict[str, float]:
    """Send valid events (paced at ``rate``/s when > 0), then the malformed ones."""
    from kafka import KafkaProducer

    producer = KafkaProducer(**settings.kafka.client_config(), acks="all", linger_ms=5)
    sent_at: dict[str, float] = {}
    topic = settings.kafka.input_topic
    try:
        started = time.monotonic()
        for index, event in enumerate(events):
            if rate > 0:
                time.sleep(max(0.0, started + index / rate - time.monotonic()))
            event.timestamp = utc_now()
            sent_at[event.event_id] = time.time()
            producer.send(topic, key=event.user_id.encode(), value=event.model_dump_json().encode())
        for bad in malformed:
            producer.send(topic, key=bad.label.encode(), value=bad.payload)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)
    return sent_at


def match_dead_letters(
    malformed: list[Malformed], dead: list[DeadLetter]
) -> list[tuple[Malformed, DeadLetter | None, bool]]:
    """Pair each malformed input with its dead letter (by original payload); check its class."""
    by_original = {d.original: d for d in dead}
    rows = []
    for bad in malformed:
        letter = by_original.get(bad.payload.decode("utf-8", errors="replace"))
        as_expected = (
            letter is not None
            and letter.error_class == bad.error_class
            and (bad.field is None or letter.field == bad.field)
        )
        rows.append((bad, letter, as_expected))
    return rows


def summarize(
    events: list[RecommendationEvent],
    malformed: list[Malformed],
    outcome: Outcome,
    wall_s: float,
    startup_s: float | None = None,
) -> dict[str, Any]:
    latencies = list(outcome.latency_ms.values())
    worker_latencies = [e.latency_ms for e in outcome.explanations.values()]
    shares = Counter(e.explainer for e in outcome.explanations.values())
    dead_rows = match_dead_letters(malformed, outcome.dead)
    valid_ids = {e.event_id for e in events}
    valid_dead = [d for d in outcome.dead if _event_id_of(d) in valid_ids]
    explained = len(outcome.explanations)
    span = outcome.last_received - outcome.first_sent
    summary = {
        "events": len(events),
        "explained": explained,
        "duplicates": outcome.duplicates,
        "grounded": sum(e.grounded for e in outcome.explanations.values()),
        "throughput_eps": round(explained / span, 2) if span > 0 else None,
        "latency_ms": {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99)},
        "worker_latency_ms": {
            "p50": percentile(worker_latencies, 50),
            "p99": percentile(worker_latencies, 99),
        },
        "explainers": dict(shares),
        "malformed": len(malformed),
        "dead_lettered": sum(1 for _, letter, _ in dead_rows if letter is not None),
        "dead_letters": [
            {
                "input": bad.label,
                "error_class": letter.error_class if letter else None,
                "reason": letter.reason if letter else None,
                "reason_ok": ok,
            }
            for bad, letter, ok in dead_rows
        ],
        "valid_dead_lettered": len(valid_dead),
        "wall_s": round(wall_s, 1),
        "startup_s": None if startup_s is None else round(startup_s, 1),
    }
    summary["ok"] = (
        explained == len(events) and all(ok for _, _, ok in dead_rows) and not valid_dead
    )
    return summary


def print_summary(summary: dict[str, Any]) -> None:
    table = Table(title="recx demo summary", show_header=False)
    table.add_column("what")
    table.add_column("value", overflow="fold")
    table.add_row("events explained", f"{summary['explained']} / {summary['events']}")
    table.add_row("duplicates (at-least-once)", str(summary["duplicates"]))
    table.add_row("grounded", f"{summary['grounded']} / {summary['explained']}")
    lat, wlat = summary["latency_ms"], summary["worker_latency_ms"]
    if summary["throughput_eps"]:
        table.add_row(
            "throughput (first publish -> last explanation)",
            f"{summary['throughput_eps']} events/s",
        )
    table.add_row("end-to-end latency p50 / p99", f"{lat['p50']:,.0f} ms / {lat['p99']:,.0f} ms")
    table.add_row("in-worker latency p50 / p99", f"{wlat['p50']:,.0f} ms / {wlat['p99']:,.0f} ms")
    total = max(1, summary["explained"])
    for name, count in sorted(summary["explainers"].items(), key=lambda kv: -kv[1]):
        table.add_row(f"answered by {name}", f"{count} ({count / total:.0%})")
    table.add_row("malformed dead-lettered", f"{summary['dead_lettered']} / {summary['malformed']}")
    for row in summary["dead_letters"]:
        mark = "[green]ok[/green]" if row["reason_ok"] else "[red]unexpected[/red]"
        reason = f"{row['error_class']}: {row['reason']}" if row["reason"] else "[red]missing[/red]"
        table.add_row(f"  {row['input']}", f"{reason}  {mark}")
    if summary["valid_dead_lettered"]:
        table.add_row("[red]valid events dead-lettered[/red]", str(summary["valid_dead_lettered"]))
    startup = summary.get("startup_s")
    detail = f" ({startup} s until the workers were consuming)" if startup is not None else ""
    table.add_row("wall time", f"{summary['wall_s']} s{detail}")
    console.print(table)
    verdict = "[bold green]OK[/bold green]" if summary["ok"] else "[bold red]FAILED[/bold red]"
    console.print(f"demo {verdict}")


def run_demo(
    settings: Settings,
    *,
    events: int,
    workers: int,
    chain: list[str],
    partitions: int,
    rate: float,
    timeout_s: float,
    keep_kafka: bool,
    external_bootstrap: str | None,
    demo_dir: Path,
) -> dict[str, Any]:
    """The whole demo; returns the summary. Stops everything it started before returning."""
    started = time.monotonic()
    logs = demo_dir / "logs"
    ensure_prepared(settings, logs)
    valid = build_events(settings.paths.data_dir, events)
    malformed = malformed_events(valid[0])
    with ExitStack() as stack:
        if external_bootstrap:
            run_id = uuid.uuid4().hex[:8]
            kafka = settings.kafka.model_copy(
                update={
                    "bootstrap_servers": external_bootstrap,
                    "input_topic": f"demo-{run_id}.recommendations",
                    "output_topic": f"demo-{run_id}.explanations",
                    "dlq_topic": f"demo-{run_id}.recommendations.dlq",
                    "group_id": f"recx-demo-{run_id}",
                }
            )
        else:
            bootstrap = stack.enter_context(local_kafka(demo_dir / "kafka", keep_kafka))
            kafka = settings.kafka.model_copy(update={"bootstrap_servers": bootstrap})
        kafka = kafka.model_copy(update={"partitions": partitions, "replication_factor": 1})
        settings = settings.model_copy(update={"kafka": kafka})
        for topic in ensure_topics(kafka):  # what `recx topics create` does
            console.print(f"topics: {topic.describe()}")
        console.print(f"group: {kafka.group_id}")
        pool = Workers()
        stack.callback(pool.stop)
        console.print(f"[bold]workers[/bold]: starting {workers} with chain {' -> '.join(chain)}")
        if "lora" in chain:
            describe_adapter(settings.paths.adapter_dir)
        from recx_worker.devtools.kafka_local.cluster import free_ports

        pool.start(worker_env(settings, chain), free_ports(workers), logs)
        pool.wait_ready(timeout_s=300)
        wait_for_group(settings, pool, workers, timeout_s=60)
        startup_s = time.monotonic() - started
        console.print(f"  {workers} workers consuming ({startup_s:.0f} s so far)")
        consumer = open_consumer(settings)
        stack.callback(consumer.close)
        console.print(
            f"[bold]publishing[/bold] {len(valid)} events from held-out test interactions "
            f"+ {len(malformed)} malformed ones"
        )
        sent_at = publish(settings, valid, malformed, rate)
        outcome = collect(settings, sent_at, malformed, pool, consumer, timeout_s)
    return summarize(valid, malformed, outcome, time.monotonic() - started, startup_s)


def main(
    events: Annotated[int, typer.Option(min=1, help="Valid events to publish")] = 200,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes")] = 2,
    chain: Annotated[str, typer.Option(help="Explainer chain, comma-separated")] = (
        "lora,prompt,template"
    ),
    partitions: Annotated[int, typer.Option(min=1, help="Partitions of the input topic")] = 4,
    rate: Annotated[float, typer.Option(help="Events per second (0: all at once)")] = 0.0,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for all results after publishing")
    ] = 1800.0,
    keep_kafka: Annotated[bool, typer.Option(help="Leave the local Kafka running")] = False,
    bootstrap: Annotated[
        str | None, typer.Option(help="Use this Kafka instead of starting one (own topics)")
    ] = None,
    work_dir: Annotated[
        Path, typer.Option(help="Kafka data, worker logs and summary.json go here")
    ] = DEMO_DIR,
) -> None:
    """Run recx end to end on a local Kafka and print what it explains."""
    from recx_worker.devtools.kafka_local.jars import KafkaSetupError

    names = [name.strip() for name in chain.split(",") if name.strip()]
    if not names:
        console.print("[red]error:[/red] --chain needs at least one explainer")
        raise typer.Exit(2)
    from recx_worker.plugins import registered_explainers

    known = registered_explainers()
    if unknown := [name for name in names if name not in known]:
        console.print(
            f"[red]error:[/red] unknown explainer(s) {', '.join(unknown)}; "
            f"registered: {', '.join(sorted(known))}"
        )
        raise typer.Exit(2)
    interrupt_on_sigterm()
    try:
        summary = run_demo(
            load_settings(),
            events=events,
            workers=workers,
            chain=names,
            partitions=partitions,
            rate=rate,
            timeout_s=timeout,
            keep_kafka=keep_kafka,
            external_bootstrap=bootstrap,
            demo_dir=work_dir,
        )
    except (DemoError, KafkaSetupError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; everything the demo started is stopped[/yellow]")
        raise typer.Exit(130) from None
    print_summary(summary)
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    raise typer.Exit(0 if summary["ok"] else 1)


def cli() -> None:
    app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)
    app.command()(main)
    app()


if __name__ == "__main__":
    cli()
