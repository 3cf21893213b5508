"""CLI commands (stub: filled in by the owning module)."""

import typer


def register(app: typer.Typer) -> None:
    """Add this module's top-level commands."""


def register_bench(bench_app: typer.Typer) -> None:
    """Add this module's ``recx bench`` commands."""
