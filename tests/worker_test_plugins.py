"""Explainer plugins used by the worker tests, loaded into real `recx worker` processes with
``RECX_WORKER__PLUGIN_MODULES='["worker_test_plugins"]'`` (this directory is on PYTHONPATH).

- ``slow-template``: the real template explainer after sleeping ``seconds`` per batch
  (an explainer slower than ``max.poll.interval.ms``).
- ``always-fails``: raises for every batch, so no explainer answers (dead letters).
- ``always-declines``: returns an ``ExplainFailure`` for every request (a deliberate no).
- ``dies-on-poison``: the real template explainer, but the process dies at once (SIGKILL, as
  a crash in native code would) when a request's event id starts with ``poison``.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any, ClassVar

from recx_worker.default_plugins.template import TemplateExplainer
from recx_worker.explainer import BaseExplainer, ExplainFailure, ExplainRequest, Outcome
from recx_worker.hookspecs import hookimpl


class SlowTemplateExplainer(TemplateExplainer):
    name: ClassVar[str] = "slow-template"
    version: ClassVar[str] = "test"

    def __init__(self, seconds: float = 1.0, **options: Any) -> None:
        super().__init__(**options)
        self.seconds = float(seconds)

    def explain_batch(self, requests: list[ExplainRequest]) -> list[Outcome]:
        time.sleep(self.seconds)
        return super().explain_batch(requests)


class AlwaysFailsExplainer(BaseExplainer):
    name: ClassVar[str] = "always-fails"
    version: ClassVar[str] = "test"

    def explain_batch(self, requests: list[ExplainRequest]) -> list[Outcome]:
        raise RuntimeError("explainer backend unavailable")


class AlwaysDeclinesExplainer(BaseExplainer):
    name: ClassVar[str] = "always-declines"
    version: ClassVar[str] = "test"

    def explain_batch(self, requests: list[ExplainRequest]) -> list[Outcome]:
        return [ExplainFailure("NotConfident", "declines every request") for _ in requests]


class DiesOnPoisonExplainer(TemplateExplainer):
    name: ClassVar[str] = "dies-on-poison"
    version: ClassVar[str] = "test"

    def explain_batch(self, requests: list[ExplainRequest]) -> list[Outcome]:
        if any(r.event.event_id.startswith("poison") for r in requests):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().explain_batch(requests)


@hookimpl
def recx_explainers() -> list[type]:
    return [
        SlowTemplateExplainer,
        AlwaysFailsExplainer,
        AlwaysDeclinesExplainer,
        DiesOnPoisonExplainer,
    ]
