"""``recx worker``, ``recx dlq replay`` and ``recx bench worker``."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="TOML settings file (else RECX_CONFIG); RECX_* env overrides"),
]

dlq_app = typer.Typer(no_args_is_help=True, help="Dead letters: inspect and re-inject.")


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def _settings(config: Path | None, **sections: dict[str, Any]) -> Any:
    from pydantic import ValidationError

    from recx_worker.config import load_settings

    if config is not None and not config.is_file():
        _fail(f"config file {config} does not exist")
    overrides = {name: values for name, values in sections.items() if values}
    try:
        return load_settings(config, **overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        _fail(f"invalid setting {where}: {first['msg']}")
    except (OSError, ValueError) as exc:  # unreadable or malformed TOML
        _fail(f"cannot read settings: {exc}")


def worker(
    config: ConfigOpt = None,
    bootstrap: Annotated[
        str | None, typer.Option(help="Kafka bootstrap servers (kafka.bootstrap_servers)")
    ] = None,
    group: Annotated[str | None, typer.Option(help="Consumer group (kafka.group_id)")] = None,
    worker_id: Annotated[str | None, typer.Option(help="Instance id (worker.worker_id)")] = None,
    chain: Annotated[
        str | None, typer.Option(help="Comma-separated explainers, e.g. lora,prompt,template")
    ] = None,
    exactly_once: Annotated[
        bool | None,
        typer.Option("--exactly-once/--at-least-once", help="Delivery mode (kafka.exactly_once)"),
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Metrics port; 0 = any free port, -1 = off")
    ] = None,
) -> None:
    """Consume recommendation events, publish explanations, dead-letter bad input."""
    from kafka.errors import KafkaError

    from recx_worker.logging_setup import configure_logging
    from recx_worker.plugins import UnknownExplainerError
    from recx_worker.worker.runner import Worker

    kafka: dict[str, Any] = {}
    if bootstrap is not None:
        kafka["bootstrap_servers"] = bootstrap
    if group is not None:
        kafka["group_id"] = group
    if exactly_once is not None:
        kafka["exactly_once"] = exactly_once
    work: dict[str, Any] = {}
    if worker_id is not None:
        work["worker_id"] = worker_id
    if metrics_port is not None:
        work["metrics_port"] = metrics_port
    names = [c.strip() for c in chain.split(",") if c.strip()] if chain else []
    chain_section = {"explainers": names} if names else {}
    settings = _settings(config, kafka=kafka, worker=work, chain=chain_section)
    try:
        configure_logging(settings.worker.log_level, settings.worker.log_format)
    except ValueError as exc:
        _fail(str(exc))
    if not Path(settings.paths.data_dir).is_dir():
        _fail(
            f"prepared data {settings.paths.data_dir} not found; run `recx data prepare` "
            "or set RECX_PATHS__DATA_DIR"
        )
    from recx_worker.worker.clients import KafkaClients

    try:
        KafkaClients(settings).check_producer()
    except ValueError as exc:
        _fail(str(exc))
    import faulthandler
    import signal

    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` dumps every thread's stack
    instance = Worker(settings)
    instance.install_signal_handlers()
    try:
        code = instance.run()
    except UnknownExplainerError as exc:
        _fail(str(exc))
        return
    except ModuleNotFoundError as exc:
        _fail(f"cannot load plugin module: {exc}")
        return
    except KafkaError as exc:  # e.g. unreachable cluster, a setting the broker rejects
        _fail(f"Kafka: {type(exc).__name__}: {exc}", code=1)
        return
    _exit_now_if_threads_linger(code)
    raise typer.Exit(code)


def _exit_now_if_threads_linger(code: int) -> None:
    """An explainer call that outlived the grace period must not hold the process open."""
    lingering = [
        t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon
    ]
    if lingering:
        import logging

        logging.getLogger(__name__).warning(
            "exiting with %d busy threads: %s", len(lingering), [t.name for t in lingering]
        )
        logging.shutdown()
        os._exit(code)


@dlq_app.command("replay")
def dlq_replay(
    config: ConfigOpt = None,
    reason: Annotated[
        list[str] | None,
        typer.Option(help="Replay letters whose error class or reason contains this (repeatable)"),
    ] = None,
    error_class: Annotated[
        list[str] | None, typer.Option(help="Replay only this exact error class (repeatable)")
    ] = None,
    to_topic: Annotated[
        str | None, typer.Option(help="Publish here instead of each letter's original topic")
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(help="Resume from (and commit to) this consumer group; default: whole topic"),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Re-publish at most this many")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count only; publish nothing")] = False,
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers")] = None,
    timeout_s: Annotated[float, typer.Option(help="Give up reading after this long")] = 60.0,
) -> None:
    """Re-publish dead letters (optionally filtered by reason) to their original topic."""
    from kafka.errors import KafkaError

    from recx_worker.worker.replay import ReplayError, ReplayFilter, replay

    kafka = {"bootstrap_servers": bootstrap} if bootstrap else {}
    settings = _settings(config, kafka=kafka)
    flt = ReplayFilter(reasons=reason or [], error_classes=error_class or [])
    try:
        stats = replay(
            settings,
            flt,
            to_topic=to_topic,
            group_id=group,
            dry_run=dry_run,
            limit=limit,
            timeout_s=timeout_s,
        )
    except (ReplayError, KafkaError) as exc:
        _fail(str(exc), code=1)
        return
    typer.echo(json.dumps({"dry_run": dry_run, **stats.as_dict()}, indent=1))


def register(app: typer.Typer) -> None:
    """Add ``recx worker`` and ``recx dlq``."""
    app.command("worker")(worker)
    app.add_typer(dlq_app, name="dlq")


def register_bench(bench_app: typer.Typer) -> None:
    """Add ``recx bench worker``."""
    from recx_worker.devtools.bench_worker import bench_worker

    bench_app.command("worker")(bench_worker)
