"""``recx bench worker`` (being written)."""

from __future__ import annotations

import typer


def bench_worker() -> None:
    """Throughput and end-to-end latency of the worker vs the raw consume+produce ceiling."""
    typer.secho("recx bench worker: not available yet", err=True)
    raise typer.Exit(1)
