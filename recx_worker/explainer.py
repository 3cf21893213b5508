"""The explainer contract: batch-first, one outcome per request, warm-up and close.

An explainer receives a list of ``ExplainRequest`` and returns a list of the same length
whose entries are ``Explanation`` or ``ExplainFailure``; one bad request never fails the batch.
Plugins provide explainers through the ``recx_explainers`` hook (see ``hookspecs``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from recx_worker.events import Evidence, RecommendationEvent


@dataclass(slots=True)
class ExplainRequest:
    """One recommendation with its evidence, ready to be explained."""

    event: RecommendationEvent
    evidence: Evidence
    max_words: int = 25

    @property
    def user_id(self) -> str:
        return self.event.user_id

    @property
    def item_id(self) -> str:
        return self.event.item_id


@dataclass(slots=True)
class Explanation:
    text: str
    model: str | None = None
    adapter_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ExplainFailure:
    """A per-request failure; the chain hands the request to the next stage."""

    error_class: str
    message: str

    @classmethod
    def from_exception(cls, exc: BaseException) -> ExplainFailure:
        return cls(type(exc).__name__, str(exc) or type(exc).__name__)


Outcome = Explanation | ExplainFailure


@runtime_checkable
class Explainer(Protocol):
    """What every explainer plugin implements."""

    name: ClassVar[str]
    version: ClassVar[str]

    def warm_up(self) -> None:
        """Load models, compile, allocate; called once before the first batch."""

    def explain_batch(self, requests: list[ExplainRequest]) -> list[Outcome]:
        """One outcome per request, in order."""
        ...

    def close(self) -> None:
        """Release resources."""


class BaseExplainer:
    """Convenience base: no-op warm-up/close and per-item isolation for simple explainers."""

    name: ClassVar[str] = "base"
    version: ClassVar[str] = "0"

    def __init__(self, **options: Any) -> None:
        self.options = options

    def warm_up(self) -> None:
        return None

    def close(self) -> None:
        return None

    def explain_one(self, request: ExplainRequest) -> Explanation:
        raise NotImplementedError

    def explain_batch(self, requests: list[ExplainRequest]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for request in requests:
            try:
                outcomes.append(self.explain_one(request))
            except Exception as exc:  # one bad request must not fail the batch
                outcomes.append(ExplainFailure.from_exception(exc))
        return outcomes
