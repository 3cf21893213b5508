"""CLI: ``recx topics create`` (the worker's topics with configured partitions/replication)."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(help="The worker's Kafka topics.", no_args_is_help=True)


@app.command("create")
def create(
    bootstrap: Annotated[
        str | None, typer.Option(help="Kafka bootstrap servers (default: kafka.bootstrap_servers)")
    ] = None,
    partitions: Annotated[
        int | None, typer.Option(min=1, help="Partitions per topic (default: kafka.partitions)")
    ] = None,
    replication_factor: Annotated[
        int | None,
        typer.Option(min=1, help="Replicas per topic (default: kafka.replication_factor)"),
    ] = None,
) -> None:
    """Create the input, output and dead-letter topics that do not exist yet; say what it did."""
    from kafka.errors import KafkaError

    from recx_worker.config import load_settings
    from recx_worker.topics import ensure_topics

    kafka = load_settings().kafka
    update = {
        key: value
        for key, value in {
            "bootstrap_servers": bootstrap,
            "partitions": partitions,
            "replication_factor": replication_factor,
        }.items()
        if value is not None
    }
    kafka = kafka.model_copy(update=update)
    try:
        states = ensure_topics(kafka)
    except KafkaError as exc:
        typer.echo(f"error: cannot create topics on {kafka.bootstrap_servers}: {exc}", err=True)
        raise typer.Exit(1) from None
    for state in states:
        typer.echo(state.describe())
        if state.partitions < kafka.partitions:
            typer.echo(
                f"  warning: fewer partitions than configured ({kafka.partitions}); recx does "
                "not add partitions (keys would move): use kafka-topics.sh --alter",
                err=True,
            )
