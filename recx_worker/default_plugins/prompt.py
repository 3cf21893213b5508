"""The built-in ``prompt`` explainer: an instruction-tuned LM, no parameter updates.

The prompt is the chat template of the base model (SmolLM2-135M-Instruct by default) around the
rendered evidence; with ``few_shot=k`` it first shows k examples: training explanations of the
items nearest to the recommended one (needs the evidence store and the prepared data).
"""

from __future__ import annotations

from collections import defaultdict
from functools import cached_property
from typing import Any, ClassVar

from recx_worker.events import Evidence
from recx_worker.explainer import ExplainRequest
from recx_worker.hookspecs import hookimpl
from recx_worker.lm.device import DeviceChoice
from recx_worker.lm.explainers import LMExplainer
from recx_worker.lm.loading import load_causal_lm, resolve_base
from recx_worker.lm.prompting import FewShot, chat_messages

FEW_SHOT_MAX_WORDS = 20


class PromptExplainer(LMExplainer):
    """Zero- or few-shot explanations from the base instruction model."""

    name: ClassVar[str] = "prompt"
    version: ClassVar[str] = "1.0.0"

    def __init__(self, *, few_shot: int = 0, **options: Any) -> None:
        super().__init__(**options)
        self.few_shot = few_shot

    def _load(self, device: DeviceChoice) -> tuple[Any, Any]:
        model, tokenizer, resolved = load_causal_lm(
            self.base, cache_dir=self.model_cache, device=device
        )
        self.model_name = resolved.name
        return model, tokenizer

    def _identity(self) -> tuple[str, dict[str, Any]]:
        from recx_worker.config import CACHE_HOME

        resolved = resolve_base(self.base, self.model_cache or CACHE_HOME / "models")
        self.model_name = resolved.name
        return resolved.name, {"base": resolved.checksum}

    def _ready(self, tokenizer: Any) -> None:
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError(f"base model {self.base!r} has no chat template")

    @cached_property
    def _train_by_item(self) -> dict[str, list[tuple[str, str]]]:
        """Short training (feature, explanation) pairs per item, for few-shot examples."""
        from recx_worker.prepared import PreparedData

        by_item: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for record in PreparedData(self.context.paths.data_dir).split("train"):
            if len(record.explanation.split()) <= FEW_SHOT_MAX_WORDS:
                by_item[record.item_id].append((record.feature, record.explanation.strip()))
        return dict(by_item)

    def examples(self, request: ExplainRequest) -> list[FewShot]:
        """Up to ``few_shot`` examples from the items nearest to the request's item."""
        source = self.context.evidence
        if self.few_shot <= 0 or source is None:
            return []
        try:
            neighbours = source.neighbours(request.item_id, k=self.few_shot * 3)
        except LookupError:
            return []
        shots: list[FewShot] = []
        for item_id, _similarity in neighbours:
            pairs = self._train_by_item.get(item_id)
            if not pairs:
                continue
            feature, explanation = pairs[0]
            evidence = source.evidence("", item_id, history=None, k=0)
            shots.append(
                FewShot(Evidence(item_features=evidence.item_features), feature, explanation)
            )
            if len(shots) == self.few_shot:
                break
        return shots

    def render_prompts(self, requests: list[ExplainRequest]) -> list[str]:
        if self.tokenizer is None:
            self.warm_up()
        return [
            self.tokenizer.apply_chat_template(
                chat_messages(r.evidence, r.max_words, self.examples(r)),
                tokenize=False,
                add_generation_prompt=True,
            )
            for r in requests
        ]


@hookimpl
def recx_explainers() -> list[type]:
    return [PromptExplainer]
