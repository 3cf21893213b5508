"""The recx plugin hooks. Built-in and third-party plugins implement them the same way."""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("recx")
hookimpl = pluggy.HookimplMarker("recx")


@hookspec
def recx_explainers() -> list[type]:
    """Return explainer classes (see ``recx_worker.explainer.Explainer``)."""


@hookspec
def recx_guards() -> list[type]:
    """Return extra guard classes with ``check(request, text) -> str | None`` (reason or None)."""
