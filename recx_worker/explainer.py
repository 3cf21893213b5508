"""The explainer contract: batch-first, one outcome per request, warm-up and close.

An explainer class is created as ``cls(context=ExplainerContext, **options)``: the context
is all it may rely on (declared paths, the feature lexicon, an evidence source), the options
come from ``chain.options.<name>``. It receives a list of ``ExplainRequest`` and returns a
list of the same length whose entries are ``Explanation`` or ``ExplainFailure`` (a deliberate
"not this one", reported as ``declined``); an exception fails the whole batch for that stage
(reported as ``error``, as is a per-request exception ``BaseExplainer`` catches). Plugins
provide explainers through the ``recx_explainers`` hook (see ``hookspecs``, docs/plugins.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from recx_worker.config import DEFAULT_EVIDENCE_K, DEFAULT_MAX_WORDS, PathSettings
from recx_worker.events import Evidence, HistoryEntry, RecommendationEvent

if TYPE_CHECKING:
    from recx_worker.config import Settings
    from recx_worker.features import Lexicon


class EvidenceSource(Protocol):
    """Where evidence comes from (``recx_worker.retrieval.evidence.EvidenceStore``)."""

    lexicon: Lexicon

    def evidence(
        self,
        user_id: str,
        item_id: str,
        history: list[HistoryEntry] | None = None,
        k: int = DEFAULT_EVIDENCE_K,
        exclude_items: set[str] | None = None,
    ) -> Evidence:
        """The evidence for one recommendation; raises ``LookupError`` for an unknown item."""
        ...

    def neighbours(self, item_id: str, k: int = 5) -> Sequence[tuple[str, float]]:
        """The ``k`` items most similar to ``item_id`` with their similarity, best first."""
        ...


@dataclass(frozen=True, slots=True)
class ExplainerPaths:
    """The files an explainer may read (from ``paths.*`` settings)."""

    data_dir: Path = field(
        metadata={"doc": "Prepared data (`recx data prepare`): splits, profiles"}
    )
    index_dir: Path = field(metadata={"doc": "The FAISS item index (`recx index build`)"})
    adapter_dir: Path = field(metadata={"doc": "The LoRA adapter directory (`recx train lora`)"})
    model_cache: Path = field(metadata={"doc": "Converted base-model checkpoints"})

    @classmethod
    def from_settings(cls, paths: PathSettings) -> ExplainerPaths:
        return cls(paths.data_dir, paths.index_dir, paths.adapter_dir, paths.model_cache)

    @classmethod
    def defaults(cls) -> ExplainerPaths:
        """The default ``paths.*`` settings."""
        return cls.from_settings(PathSettings())


@dataclass(frozen=True, slots=True)
class ExplainerContext:
    """Everything recx hands an explainer besides its own options."""

    paths: ExplainerPaths = field(
        default_factory=ExplainerPaths.defaults,
        metadata={"doc": "The files an explainer may read (`ExplainerPaths`)"},
    )
    evidence: EvidenceSource | None = field(
        default=None,
        metadata={"doc": "Evidence for other (user, item) pairs, e.g. few-shot examples"},
    )
    lexicon: Lexicon | None = field(
        default=None, metadata={"doc": "The feature lexicon the guard checks explanations with"}
    )

    @classmethod
    def from_settings(
        cls, settings: Settings, evidence: EvidenceSource | None = None
    ) -> ExplainerContext:
        """The context for ``settings``; the lexicon is the evidence source's."""
        lexicon = evidence.lexicon if evidence is not None else None
        return cls(ExplainerPaths.from_settings(settings.paths), evidence, lexicon)


@dataclass(slots=True)
class ExplainRequest:
    """One recommendation with its evidence, ready to be explained."""

    event: RecommendationEvent = field(metadata={"doc": "The validated recommendation"})
    evidence: Evidence = field(
        metadata={"doc": "The facts the explanation may use (and nothing else)"}
    )
    max_words: int = field(
        default=DEFAULT_MAX_WORDS,
        metadata={"doc": "Longest answer in words (the event's `max_words`, else chain.max_words)"},
    )

    @property
    def user_id(self) -> str:
        return self.event.user_id

    @property
    def item_id(self) -> str:
        return self.event.item_id


@dataclass(slots=True)
class Explanation:
    """An answer: the text, and which model (and adapter) wrote it."""

    text: str = field(metadata={"doc": "One sentence; the guard checks it before publishing"})
    model: str | None = field(default=None, metadata={"doc": "The model that wrote it"})
    adapter_version: str | None = field(
        default=None, metadata={"doc": "The adapter version, for fine-tuned models"}
    )
    extra: dict[str, Any] = field(
        default_factory=dict, metadata={"doc": "Free-form details (not published)"}
    )


@dataclass(slots=True)
class ExplainFailure:
    """No answer for one request; the chain hands it to the next stage.

    Returned on purpose (e.g. the model's output was unusable) it is reported as ``declined``;
    made ``from_exception`` (a per-request crash caught by ``BaseExplainer``) as ``error``.
    """

    error_class: str = field(metadata={"doc": "A short class name, e.g. `CleaningError`"})
    message: str = field(metadata={"doc": "Why there is no answer"})
    crashed: bool = field(
        default=False, metadata={"doc": "True when made from an exception (reported as `error`)"}
    )

    @classmethod
    def from_exception(cls, exc: BaseException) -> ExplainFailure:
        return cls(type(exc).__name__, str(exc) or type(exc).__name__, crashed=True)


Outcome = Explanation | ExplainFailure


@runtime_checkable
class Explainer(Protocol):
    """What every explainer plugin implements."""

    name: ClassVar[str]
    version: ClassVar[str]

    def __init__(self, *, context: ExplainerContext, **options: Any) -> None:
        """``context`` from recx; ``options`` from ``chain.options.<name>``."""

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

    def __init__(self, *, context: ExplainerContext | None = None) -> None:
        """Options are the subclass's own keyword arguments; an unknown one is an error."""
        self.context = context or ExplainerContext()

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
