"""Plugin loading: every explainer, built-in or third-party, arrives via ``recx`` entry points."""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from functools import cache
from typing import Any

import pluggy

from recx_worker import hookspecs

ENTRY_POINT_GROUP = "recx"


class UnknownExplainerError(KeyError):
    """The configuration names an explainer no installed plugin provides."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


@dataclass(frozen=True, slots=True)
class RegisteredExplainer:
    name: str
    version: str
    cls: type
    plugin: str
    package: str


@cache
def plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("recx")
    pm.add_hookspecs(hookspecs)
    pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    return pm


def _package_of(plugin: object) -> str:
    pm = plugin_manager()
    for plug, dist in pm.list_plugin_distinfo():
        if plug is plugin:
            return f"{dist.metadata['Name']} {dist.version}"
    return "unknown"


def registered_explainers() -> dict[str, RegisteredExplainer]:
    """All explainers provided by installed plugins, keyed by name."""
    pm = plugin_manager()
    found: dict[str, RegisteredExplainer] = {}
    for impl in pm.hook.recx_explainers.get_hookimpls():
        for cls in impl.function() or []:
            found[cls.name] = RegisteredExplainer(
                name=cls.name,
                version=cls.version,
                cls=cls,
                plugin=impl.plugin_name,
                package=_package_of(impl.plugin),
            )
    return found


def create_explainer(name: str, **options: Any):
    """Instantiate the explainer called ``name`` with its options (not yet warmed up)."""
    available = registered_explainers()
    if name not in available:
        raise UnknownExplainerError(
            f"no explainer named {name!r}; installed: {', '.join(sorted(available)) or 'none'}"
        )
    return available[name].cls(**options)


def entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def registered_guards() -> list[type]:
    """Extra guard classes provided by installed plugins through the ``recx_guards`` hook."""
    pm = plugin_manager()
    return [cls for impl in pm.hook.recx_guards.get_hookimpls() for cls in impl.function() or []]
