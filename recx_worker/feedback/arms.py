"""One explainer chain per experiment arm, behind the ``ExplainerChain`` interface the worker uses.

Each request goes to its user's arm (``Assigner``); the arm's chain is ``[chain]`` with the
arm's ``explainers`` and ``options`` applied; each published event names the experiment and
its arm. With ``adaptive = true`` the arm weights follow Thompson sampling on
the helpful rates in the feedback store (re-read every ``adaptive_refresh_s``; each arm keeps
``adaptive_floor``); assignment stays a pure function of (user, salt, current weights).
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from recx_worker.chain import ChainOutcome, ChainResult, ExplainerChain
from recx_worker.config import ExperimentArm, Settings
from recx_worker.explainer import ExplainerContext, ExplainRequest
from recx_worker.feedback.assignment import Assigner
from recx_worker.feedback.stats import thompson_weights

log = structlog.get_logger(__name__)


def arm_settings(settings: Settings, arm: ExperimentArm) -> Settings:
    """``settings`` with the arm's chain and option set applied (a copy)."""
    options = {k: dict(v) for k, v in settings.chain.options.items()}
    for name, extra in arm.options.items():
        options[name] = options.get(name, {}) | extra
    chain = settings.chain.model_copy(
        update={"options": options, "explainers": arm.explainers or settings.chain.explainers}
    )
    return settings.model_copy(update={"chain": chain})


class ArmChains:
    """Routes each request to its arm's chain; same methods as ``ExplainerChain``."""

    def __init__(self, assigner: Assigner, chains: dict[str, ExplainerChain], settings: Settings):
        self.assigner = assigner
        self.chains = chains
        self.settings = settings
        self._next_refresh = 0.0

    @classmethod
    def from_settings(cls, settings: Settings, store: Any) -> ArmChains:
        experiments = settings.experiments
        chains = {}
        for arm in experiments.arms:
            own = arm_settings(settings, arm)
            chains[arm.name] = ExplainerChain.from_settings(
                own, ExplainerContext.from_settings(own, store)
            )
        return cls(Assigner(experiments), chains, settings)

    @property
    def names(self) -> list[str]:
        return sorted({name for chain in self.chains.values() for name in chain.names})

    def warm_up(self, *, strict: bool = False) -> dict[str, str]:
        failed: dict[str, str] = {}
        for arm, chain in self.chains.items():
            for name, why in chain.warm_up(strict=strict).items():
                failed[f"{arm}/{name}"] = why
        return failed

    def close(self) -> None:
        for chain in self.chains.values():
            chain.close()

    def explain(self, requests: list[ExplainRequest]) -> list[ChainOutcome]:
        """One outcome per request, in order; each arm's requests form one micro-batch."""
        self._maybe_adapt()
        by_arm: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            by_arm.setdefault(self.assigner.arm(request.event.user_id).name, []).append(i)
        outcomes: list[Any] = [None] * len(requests)
        for arm, indexes in by_arm.items():
            answers = self.chains[arm].explain([requests[i] for i in indexes])
            for i, outcome in zip(indexes, answers, strict=True):
                if isinstance(outcome, ChainResult):  # the published event names its arm
                    outcome.event.experiment = self.assigner.experiment
                    outcome.event.arm = arm
                outcomes[i] = outcome
        return outcomes

    def _maybe_adapt(self) -> None:
        cfg = self.settings.experiments
        if not cfg.adaptive or time.monotonic() < self._next_refresh:
            return
        self._next_refresh = time.monotonic() + cfg.adaptive_refresh_s
        path = self.settings.feedback.store_path
        if not path.exists():
            return
        from recx_worker.feedback.store import FeedbackStore

        store = FeedbackStore(path)
        try:
            counts = {c.arm: c for c in store.arm_counts(cfg.name)}
        finally:
            store.close()
        names = [arm.name for arm in cfg.arms]
        helpful = [counts[n].helpful if n in counts else 0 for n in names]
        shown = [counts[n].shown if n in counts else 0 for n in names]
        self.assigner.weights = thompson_weights(helpful, shown, floor=cfg.adaptive_floor)
        log.info(
            "experiment_weights",
            experiment=cfg.name,
            weights=dict(zip(names, self.assigner.weights, strict=True)),
        )
