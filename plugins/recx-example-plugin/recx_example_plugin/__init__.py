"""An example recx plugin: one explainer and one guard, provided through the recx hooks."""

from __future__ import annotations

from typing import ClassVar

from recx_worker.explainer import (
    BaseExplainer,
    ExplainerContext,
    ExplainFailure,
    ExplainRequest,
    Explanation,
)
from recx_worker.hookspecs import hookimpl

__version__ = "0.1.0"


def _join(features: list[str]) -> str:
    named = [f"the {f}" for f in features]
    return named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]


class FeatureListExplainer(BaseExplainer):
    """Names up to ``max_features`` of the item's real features, user's favourites first.

    recx creates it as ``FeatureListExplainer(context=..., **chain.options["feature-list"])``;
    ``context`` (an ``ExplainerContext``) holds the declared paths, the lexicon and the
    evidence source, should an explainer need more than its requests carry.
    """

    name: ClassVar[str] = "feature-list"
    version: ClassVar[str] = __version__

    def __init__(self, *, context: ExplainerContext | None = None, max_features: int = 3) -> None:
        super().__init__(context=context)
        self.max_features = max_features

    def explain_batch(self, requests: list[ExplainRequest]) -> list[Explanation | ExplainFailure]:
        outcomes: list[Explanation | ExplainFailure] = []
        for request in requests:
            evidence = request.evidence
            ordered = list(dict.fromkeys([*evidence.user_features, *evidence.item_features]))
            if not ordered:
                outcomes.append(ExplainFailure("NoFeatures", "the item has no known features"))
                continue
            chosen = _join(ordered[: self.max_features])
            outcomes.append(Explanation(f"People who bought this one mention {chosen}."))
        return outcomes


class NoShoutingGuard:
    """Rejects text that is mostly upper-case letters."""

    def check(self, request: ExplainRequest, text: str) -> str | None:
        letters = list(filter(str.isalpha, text))
        upper = sum(map(str.isupper, letters))
        if letters and upper / len(letters) > 0.5:
            return f"mostly upper-case ({upper} of {len(letters)} letters)"
        return None


@hookimpl
def recx_explainers() -> list[type]:
    return [FeatureListExplainer]


@hookimpl
def recx_guards() -> list[type]:
    return [NoShoutingGuard]
