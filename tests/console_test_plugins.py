"""A second cheap explainer for the console test, so blind pairs show two different texts:
``terse`` names only the item's first feature (grounded by construction)."""

from __future__ import annotations

from typing import ClassVar

from recx_worker.explainer import BaseExplainer, ExplainRequest, Explanation
from recx_worker.hookspecs import hookimpl


class TerseExplainer(BaseExplainer):
    name: ClassVar[str] = "terse"
    version: ClassVar[str] = "test"

    def explain_one(self, request: ExplainRequest) -> Explanation:
        features = request.evidence.item_features
        return Explanation(text=f"Reviewers praise its {features[0]}." if features else "Solid.")


@hookimpl
def recx_explainers() -> list[type]:
    return [TerseExplainer]
