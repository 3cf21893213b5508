"""The demo's output side: publishing events, collecting explanations and dead letters as they
arrive, and the summary with its verdict."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from recx_worker.config import Settings
from recx_worker.devtools.benchio import percentile
from recx_worker.devtools.demo_data import DemoError, Malformed, console
from recx_worker.worker.clients import wait_for_partitions

if TYPE_CHECKING:
    from recx_worker.devtools.demo import Workers
from recx_worker.events import (
    DeadLetter,
    ExplanationEvent,
    RecommendationEvent,
    utc_now,
)


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
        found = wait_for_partitions(consumer, topic, timeout_s=10)
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
    if (loop := summary.get("experiment")) is not None:
        truth = ", ".join(f"{arm} {rate:.2f}" for arm, rate in loop["true_rates"].items())
        console.print(
            f"[bold]experiment[/bold] (simulated users, true helpful rates {truth}; "
            f"{loop['feedback_events']} feedback events aggregated in {loop['aggregated_s']} s): "
            f"{loop['verdict']}\n  report: {loop['report']}"
        )
    verdict = "[bold green]OK[/bold green]" if summary["ok"] else "[bold red]FAILED[/bold red]"
    console.print(f"demo {verdict}")
