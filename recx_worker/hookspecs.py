"""The recx plugin hooks. Built-in and third-party plugins implement them the same way.

See docs/plugins.md for the explainer contract (``recx_worker.explainer``) and a worked example.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("recx")
hookimpl = pluggy.HookimplMarker("recx")


@hookspec
def recx_explainers() -> list[type]:
    """Return explainer classes (``recx_worker.explainer.Explainer``), each made as
    ``cls(context=ExplainerContext, **options)``; names must be unique across plugins."""
    raise NotImplementedError  # a specification: plugins implement it


@hookspec
def recx_guards() -> list[type]:
    """Return extra guard classes with ``check(request, text) -> str | None`` (reason or None)."""
    raise NotImplementedError  # a specification: plugins implement it
