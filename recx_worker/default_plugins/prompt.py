"""Placeholder for the built-in `prompt` explainer (its owner replaces this module).

It registers the name so the entry point loads, and refuses to warm up, so a chain that lists
it hands every request to the next stage with a clear reason.
"""

from __future__ import annotations

from typing import ClassVar

from recx_worker.explainer import BaseExplainer, ExplainRequest, Explanation
from recx_worker.hookspecs import hookimpl


class PromptExplainer(BaseExplainer):
    name: ClassVar[str] = "prompt"
    version: ClassVar[str] = "0.0.0"

    def warm_up(self) -> None:
        raise RuntimeError("the prompt explainer is not available in this build yet")

    def explain_one(self, request: ExplainRequest) -> Explanation:
        raise RuntimeError("the prompt explainer is not available in this build yet")


@hookimpl
def recx_explainers() -> list[type]:
    return [PromptExplainer]
