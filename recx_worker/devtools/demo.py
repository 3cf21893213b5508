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

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from recx_worker.config import Settings, load_settings, settings_env
from recx_worker.devtools.demo_data import (
    DemoError,
    build_events,
    console,
    ensure_prepared,
    malformed_events,
    recx_command,
)
from recx_worker.devtools.demo_report import (
    collect,
    open_consumer,
    print_summary,
    publish,
    summarize,
)
from recx_worker.signals import interrupt_on_sigterm
from recx_worker.topics import ensure_topics

DEMO_DIR = Path("var/demo")
# --------------------------------------------------------------------------- data


# --------------------------------------------------------------------------- events


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


def worker_env(settings: Settings, chain: list[str], experiment: bool = True) -> dict[str, str]:
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
    if experiment:
        from recx_worker.devtools.demo_feedback import experiment_env

        env.update(experiment_env(chain))
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
    experiment: bool = True,
) -> dict[str, Any]:
    """The whole demo; returns the summary. Stops everything it started before returning."""
    started = time.monotonic()
    logs = demo_dir / "logs"
    ensure_prepared(settings, logs)
    valid = build_events(settings.paths.data_dir, events)
    malformed = malformed_events(valid[0])
    with ExitStack() as stack:
        run_id = None
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
        if experiment:
            from recx_worker.devtools import demo_feedback

            settings = demo_feedback.feedback_settings(settings, demo_dir, run_id)
            demo_feedback.create_feedback_topics(settings, partitions)
        pool = Workers()
        stack.callback(pool.stop)
        console.print(f"[bold]workers[/bold]: starting {workers} with chain {' -> '.join(chain)}")
        if "lora" in chain:
            describe_adapter(settings.paths.adapter_dir)
        from recx_worker.devtools.kafka_local.cluster import free_ports

        pool.start(worker_env(settings, chain, experiment), free_ports(workers), logs)
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
        loop = None
        if experiment and outcome.explanations:
            console.print(
                "[bold]feedback[/bold]: simulated users rate what they were shown; "
                "recx feedback aggregates it"
            )
            loop = demo_feedback.close_the_loop(settings, list(outcome.explanations.values()))
    summary = summarize(valid, malformed, outcome, time.monotonic() - started, startup_s)
    if loop is not None:
        summary["experiment"] = loop
    return summary


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
    experiment: Annotated[
        bool, typer.Option(help="A/B arms + simulated feedback + the experiment's verdict")
    ] = True,
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
            experiment=experiment,
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
