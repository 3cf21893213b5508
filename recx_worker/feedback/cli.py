"""CLI: ``recx feedback`` (the aggregating consumer) and ``recx experiments report|simulate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(stderr=True, soft_wrap=True)
feedback_app = typer.Typer(help="Feedback on explanations.", no_args_is_help=False)
experiments_app = typer.Typer(
    help="Explainer experiments: reports, simulation.", no_args_is_help=True
)

StoreOption = Annotated[
    Path | None,
    typer.Option("--store", help="Aggregation store (default: setting feedback.store_path)"),
]


def register(app: typer.Typer) -> None:
    app.add_typer(feedback_app, name="feedback", help="Consume and aggregate explanation feedback.")
    app.add_typer(experiments_app, name="experiments", help="Explainer experiments.")


@feedback_app.callback(invoke_without_command=True)
def feedback(ctx: typer.Context, store: StoreOption = None) -> None:
    """Consume explanations + feedback, aggregate per arm into the store, serve /metrics."""
    if ctx.invoked_subcommand is not None:
        return
    import signal

    from recx_worker.config import load_settings
    from recx_worker.feedback.consumer import FeedbackConsumer
    from recx_worker.logging_setup import configure_logging
    from recx_worker.metrics import MetricsServer

    settings = load_settings()
    configure_logging(settings.worker.log_level, settings.worker.log_format)
    if store is not None:
        settings.feedback.store_path = store
    consumer = FeedbackConsumer(settings)
    server = None
    if settings.feedback.metrics_port >= 0:
        server = MetricsServer(
            consumer.metrics, healthy=lambda: True, ready=lambda: True,
            host=settings.worker.metrics_host, port=settings.feedback.metrics_port,
        ).start()  # fmt: skip
        console.print(f"metrics on :{server.port}/metrics")
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: consumer.stop())
    try:
        consumer.run()
    finally:
        if server is not None:
            server.stop()


@feedback_app.command("export")
def export_command(
    store: StoreOption = None,
    out: Annotated[Path, typer.Option(help="Output folder")] = Path("var/feedback/export"),
    max_pairs_per_item: Annotated[int, typer.Option(min=1, help="Cap per item")] = 10,
) -> None:
    """Rated explanations -> an evaluation set and preference pairs (prompt/chosen/rejected)."""
    from recx_worker.config import load_settings
    from recx_worker.feedback.export import export

    path = store or load_settings().feedback.store_path
    if not path.exists():
        console.print(f"[red]error:[/red] no feedback store at {path}; run `recx feedback` first")
        raise typer.Exit(2)
    counts = export(path, out, max_pairs_per_item=max_pairs_per_item)
    typer.echo(
        f"{counts['rated']} rated explanations -> {out / 'feedback-eval.jsonl'}; "
        f"{counts['pairs']} preference pairs -> {out / 'preference-pairs.jsonl'}"
    )


@experiments_app.command("report")
def report(
    store: StoreOption = None,
    out: Annotated[Path, typer.Option(help="Folder for report.md + helpful-rate.png")] = Path(
        "reports/experiments"
    ),
    experiment: Annotated[str | None, typer.Option(help="Experiment (default: latest)")] = None,
) -> None:
    """Per arm: shown, helpful rate (Wilson CI), P(best), difference, sample size still needed."""
    from recx_worker.config import load_settings
    from recx_worker.feedback.report import load_report, write_report

    path = store or load_settings().feedback.store_path
    if not path.exists():
        console.print(f"[red]error:[/red] no feedback store at {path}; run `recx feedback` first")
        raise typer.Exit(2)
    try:
        result = load_report(path, experiment)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    md, png = write_report(result, out)
    typer.echo(result.verdict())
    console.print(f"wrote {md} and {png}")


@experiments_app.command("simulate")
def simulate(
    store: Annotated[Path, typer.Option(help="Fresh store to fill")] = Path(
        "var/feedback/sim.sqlite3"
    ),
    events: Annotated[int, typer.Option(help="Feedback events")] = 20_000,
    out: Annotated[Path, typer.Option(help="Report folder")] = Path("reports/experiments/sim"),
    seed: int = 0,
    bootstrap: Annotated[
        str | None,
        typer.Option(help="Go through this Kafka (fresh topics) and the feedback consumer"),
    ] = None,
) -> None:
    """Simulate an experiment with a known true difference; aggregate it; write the report."""
    from recx_worker.devtools.experiment_sim import run_simulation, run_simulation_kafka
    from recx_worker.feedback.report import load_report, write_report

    if bootstrap:
        result = run_simulation_kafka(store, bootstrap, feedback_events=events, seed=seed)
    else:
        result = run_simulation(store, feedback_events=events, seed=seed)
    rates = result.true_rates
    names = list(rates)
    typer.echo(
        f"simulated {result.feedback_events:,} feedback events on {result.explanations:,} "
        f"explanations; true helpful rates {rates} (true difference "
        f"{rates[names[1]] - rates[names[0]]:+.4f}); aggregated in {result.apply_seconds:.2f} s"
    )
    rep = load_report(store)
    md, png = write_report(rep, out)
    typer.echo(rep.verdict())
    console.print(f"wrote {md} and {png}")
