"""Register extra plugin modules named in ``worker.plugin_modules`` (besides entry points)."""

from __future__ import annotations

import importlib


def load_plugin_modules(names: list[str]) -> list[str]:
    """Import each module and register it with the recx plugin manager; returns new names."""
    from recx_worker.plugins import plugin_manager

    pm = plugin_manager()
    added: list[str] = []
    for name in names:
        module = importlib.import_module(name)
        if pm.is_registered(module) or pm.get_plugin(name) is not None:
            continue
        pm.register(module, name=name)
        added.append(name)
    return added
