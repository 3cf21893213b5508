"""CLI commands (stub: filled in by the owning module)."""

import typer

app = typer.Typer(no_args_is_help=True)
