"""CLI: ``recx ui`` (the console)."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("ui")(ui)


def ui(
    host: Annotated[str, typer.Option(help="Bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port")] = 8700,
    explainers: Annotated[
        str, typer.Option(help="Comma-separated explainers for explain-this and rating ('' = off)")
    ] = "template",
    group_id: Annotated[str, typer.Option(help="Consumer group of the live view")] = "recx-console",
) -> None:
    """The console: live explanations with evidence, explain-this, blind rating, experiment."""
    import uvicorn

    from recx_worker.config import load_settings
    from recx_worker.console.app import create_app

    names = [n.strip() for n in explainers.split(",") if n.strip()]
    app = create_app(load_settings(), explainers=names or None, group_id=group_id)
    uvicorn.run(app, host=host, port=port, log_level="warning")
