"""Plugin loading: every explainer, built-in or third-party, arrives through the ``recx`` hooks.

Plugins come from ``recx`` entry points and from the modules named in
``worker.plugin_modules`` (loaded by every command, see ``recx_worker.cli``). Two plugins that
register the same explainer name are refused with both named; ``create_explainer`` checks
that the options fit the class and that the object it made is an ``Explainer``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

import pluggy

from recx_worker import hookspecs
from recx_worker.explainer import Explainer, ExplainerContext

ENTRY_POINT_GROUP = "recx"


class PluginError(Exception):
    """A plugin that cannot be used as it is (duplicate name, bad class, bad options)."""


class UnknownExplainerError(PluginError, KeyError):
    """The configuration names an explainer no installed plugin provides."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


class DuplicateExplainerError(PluginError):
    """Two plugins register an explainer under the same name."""


@dataclass(frozen=True, slots=True)
class RegisteredExplainer:
    name: str
    version: str
    cls: type[Explainer]
    plugin: str
    package: str

    @property
    def origin(self) -> str:
        return f"{self.package} (plugin {self.plugin})"


@cache
def plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("recx")
    pm.add_hookspecs(hookspecs)
    pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    return pm


def load_plugin_modules(names: list[str]) -> list[str]:
    """Import each module and register it (once) with the plugin manager; returns new names."""
    pm = plugin_manager()
    added: list[str] = []
    for name in names:
        module = importlib.import_module(name)
        if pm.is_registered(module) or pm.get_plugin(name) is not None:
            continue
        pm.register(module, name=name)
        added.append(name)
    return added


def _package_of(plugin: object, plugin_name: str) -> str:
    for plug, dist in plugin_manager().list_plugin_distinfo():
        if plug is plugin:
            return f"{dist.metadata['Name']} {dist.version}"
    return f"module {plugin_name}"


def registered_explainers() -> dict[str, RegisteredExplainer]:
    """All explainers provided by the loaded plugins, keyed by name.

    Raises :class:`DuplicateExplainerError` when two plugins provide the same name.
    """
    found: dict[str, RegisteredExplainer] = {}
    for impl in plugin_manager().hook.recx_explainers.get_hookimpls():
        classes = cast(list[type], impl.function() or [])
        for cls in classes:
            name = getattr(cls, "name", None)
            if not isinstance(name, str) or not name:
                raise PluginError(f"plugin {impl.plugin_name} registers {cls!r} without a name")
            reg = RegisteredExplainer(
                name=name,
                version=str(getattr(cls, "version", "?")),
                cls=cls,
                plugin=impl.plugin_name,
                package=_package_of(impl.plugin, impl.plugin_name),
            )
            if (other := found.get(name)) is not None and other.cls is not cls:
                raise DuplicateExplainerError(
                    f"two plugins provide an explainer named {name!r}: {other.origin} and "
                    f"{reg.origin}; uninstall one or rename its explainer"
                )
            found[name] = reg
    return found


def create_explainer(
    name: str, context: ExplainerContext | None = None, **options: Any
) -> Explainer:
    """The explainer called ``name``, made with ``context`` and its options (not warmed up).

    Raises :class:`PluginError` when no plugin provides ``name``, when an option does not fit
    the class's constructor, or when the object made is not an ``Explainer``.
    """
    available = registered_explainers()
    if name not in available:
        raise UnknownExplainerError(
            f"no explainer named {name!r}; installed: {', '.join(sorted(available)) or 'none'}"
        )
    reg = available[name]
    context = context or ExplainerContext()
    try:  # options passed on with **options are checked by the base classes they reach
        inspect.signature(reg.cls).bind(context=context, **options)
        explainer = reg.cls(context=context, **options)
    except TypeError as exc:
        raise PluginError(
            f"explainer {name!r} from {reg.origin} cannot take the options "
            f"{sorted(options)} (chain.options.{name}): {exc}"
        ) from None
    if not isinstance(explainer, Explainer):
        missing = [
            attr
            for attr in ("name", "version", "warm_up", "explain_batch", "close")
            if not hasattr(explainer, attr)
        ]
        raise PluginError(
            f"explainer {name!r} from {reg.origin} is not an Explainer (missing {missing})"
        )
    return explainer


def entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def registered_guards() -> list[type]:
    """Extra guard classes provided by installed plugins through the ``recx_guards`` hook."""
    pm = plugin_manager()
    found: list[type] = []
    for impl in pm.hook.recx_guards.get_hookimpls():
        found.extend(cast(list[type], impl.function() or []))
    return found
