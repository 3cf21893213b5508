"""CLI: ``recx explain``, ``recx plugins``, ``recx schemas`` (stub: filled in by its owner)."""

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
