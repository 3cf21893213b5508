"""SIGTERM handled like Ctrl-C by commands that own child processes (a local broker, workers),
so their ``finally`` blocks stop those children instead of leaving them orphaned."""

from __future__ import annotations

import signal


def raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def interrupt_on_sigterm() -> None:
    """From now on SIGTERM (and SIGINT) raise ``KeyboardInterrupt`` in the main thread."""
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    signal.signal(signal.SIGINT, raise_keyboard_interrupt)
