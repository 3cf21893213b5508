"""The built-in ``lora`` explainer: the base LM with a fine-tuned LoRA adapter merged in.

The adapter directory (``ExplainerContext.paths.adapter_dir``, or the ``adapter_dir`` option) holds
``adapter_config.json``, ``adapter_model.safetensors`` and ``manifest.json`` as written by
``recx train lora``; a missing or incomplete adapter fails ``warm_up`` with a clear message,
so the chain marks the stage unavailable and falls back.

``selection`` says which of the decoded candidates is kept: ``"typical"`` (the default: the
candidate most like the others, with a bonus per word and for phrasing usual in the training
explanations; ``recx_worker.lm.selection``), ``"consensus"`` (the candidate most like the
others) or ``"reranker"`` (the learned scorer of ``recx_worker.lm.rerank``, read from the
adapter directory's ``reranker.json``, written by ``recx train reranker``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from recx_worker.events import Evidence
from recx_worker.explainer import ExplainerContext, ExplainRequest
from recx_worker.hookspecs import hookimpl
from recx_worker.lm.adapter import adapter_identity, load_merged, manifest_decoding
from recx_worker.lm.device import DeviceChoice
from recx_worker.lm.explainers import LMExplainer
from recx_worker.lm.prompting import focus_feature, lm_input
from recx_worker.lm.rerank import (
    CandidateGroup,
    Reranker,
    WordPrior,
    answer_logprobs,
    candidate_features,
)
from recx_worker.lm.selection import PhrasePrior, typical_index

LEAD_CHOICES = ("focus", "item", "none")
SELECTIONS = ("typical", "consensus", "reranker")


class LoraExplainer(LMExplainer):
    """Explanations from the fine-tuned model, prompted with the rendered evidence."""

    name: ClassVar[str] = "lora"
    version: ClassVar[str] = "1.0.0"
    # bf16 on AMX CPUs kept its quality (distilled adapter, 480 valid records: ROUGE-L F
    # -0.12 against ct2 int8); the prompt explainer lost 1.06 there, so it stays on ct2
    cpu_bf16_default: ClassVar[bool] = True

    def __init__(
        self,
        *,
        adapter_dir: str | Path | None = None,
        lead_feature: str = "item",
        selection: str = "typical",
        shopper_liked: bool = True,
        **options: Any,
    ) -> None:
        base = options.pop("base", None)
        context = options["context"] = options.get("context") or ExplainerContext()
        adapter_path = Path(adapter_dir or context.paths.adapter_dir)
        # The adapter's own recommendation (its manifest's "decoding": the default adapter, a
        # distilled student, is decoded in one row per request, docs/models.md) comes under
        # explicit options and over the defaults below.
        for key, value in manifest_decoding(adapter_path).items():
            options.setdefault(key, value)
        # Adapters without a recommendation (v2, v2.1): 4 beams ranked with length_penalty 2
        # (their answers were shorter than the references: BLEU's brevity penalty cost 14 %)
        # and the "typical" pick among the 4 (docs/results-quality.md, "Length and phrasing").
        options.setdefault("num_beams", 4)
        options.setdefault("candidates", options["num_beams"])
        options.setdefault("length_penalty", 2.0)
        super().__init__(**options)
        self.base_override = base
        self.adapter_dir = adapter_path
        if lead_feature not in LEAD_CHOICES:
            raise ValueError(f"lead_feature must be one of {', '.join(LEAD_CHOICES)}")
        self.lead_feature = lead_feature
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}")
        self.selection = selection
        # A missing or malformed reranker.json is a configuration error: say so now.
        self.reranker = Reranker.load(self.adapter_dir) if selection == "reranker" else None
        # The prompt's "Shopper liked:" line (the adapter's training format; a prompt without
        # liked items lacks it too): leaving it out cut 18% of the prompt tokens and cost no
        # quality (ROUGE-L F +0.48 [-0.10, +1.06] on 300 test records, ct2 greedy;
        # docs/engine.md). True restores the full training prompt.
        self.shopper_liked = shopper_liked
        self.manifest: dict[str, Any] | None = None
        self._guard: Any = None
        self._prior: WordPrior | None = None
        self._phrases: PhrasePrior | None = None
        self._train_texts: list[str] | None = None

    def _load(self, device: DeviceChoice) -> tuple[Any, Any]:
        model, tokenizer, resolved, manifest = load_merged(
            self.adapter_dir, base=self.base_override, cache_dir=self.model_cache, device=device
        )
        self.manifest = manifest
        self.model_name = resolved.name
        self.adapter_version = str(manifest["version"])
        return model, tokenizer

    def _identity(self) -> tuple[str, dict[str, Any]]:
        resolved, manifest, checksum = adapter_identity(
            self.adapter_dir, base=self.base_override, cache_dir=self.model_cache
        )
        self.manifest = manifest
        self.model_name = resolved.name
        self.adapter_version = str(manifest["version"])
        name = f"{resolved.name}-lora-{self.adapter_version}"
        return name, {"base": resolved.checksum, "adapter": checksum}

    def warm_up(self) -> None:
        if self.generator is not None:
            return
        if self.reranker is not None:
            from recx_worker.lm.adapter import adapter_checksum

            Reranker.load(self.adapter_dir, adapter_checksum(self.adapter_dir))
            # What the features read, loaded now rather than inside a stage deadline.
            self.word_prior()
            guard = self.guard()
            if guard is not None:
                guard.warm_up()
        if self.selection == "typical":
            self.phrase_prior()  # read the training explanations now, not inside a deadline
        super().warm_up()

    def select(self, requests: list[ExplainRequest], groups: list[list[str]]) -> list[int]:
        """Per request, the index of the candidate ``selection`` keeps."""
        if self.selection == "typical":
            prior = self.phrase_prior()
            return [typical_index(texts, prior) for texts in groups]
        if self.reranker is None:
            return super().select(requests, groups)
        logprobs = (
            self.candidate_logprobs(requests, groups) if self.reranker.needs_logprobs else None
        )
        return [
            self.reranker.choose(candidate_features(group, self.context.lexicon))
            for group in self.candidate_groups(requests, groups, logprobs)
        ]

    def candidate_groups(
        self,
        requests: list[ExplainRequest],
        groups: list[list[str]],
        logprobs: list[list[float]] | None = None,
    ) -> list[CandidateGroup]:
        """What the reranker's features need of each request's candidates: the guard's
        verdicts, the planned feature and, when given, the model's log-probabilities."""
        guard = self.guard()
        data = getattr(self.context.evidence, "data", None)
        profiles = data.item_profiles if data is not None else {}
        prior = self.word_prior()
        return [
            CandidateGroup(
                texts=texts,
                evidence=request.evidence,
                planned=planned,
                logprobs=lps or None,
                guard_ok=[guard.check(request, t).ok for t in texts] if guard else None,
                item_snippets=profiles[request.item_id].snippets
                if request.item_id in profiles
                else (),
                prior=prior,
            )
            for request, texts, planned, lps in zip(
                requests,
                groups,
                self.planned_features(requests),
                logprobs or [[] for _ in groups],
                strict=True,
            )
        ]

    def candidate_logprobs(
        self, requests: list[ExplainRequest], groups: list[list[str]]
    ) -> list[list[float]]:
        """Per request, each candidate's mean token log-probability after the model's input."""
        self.warm_up()
        contexts = [
            self.model_input(r.evidence)
            for r, texts in zip(requests, groups, strict=True)
            for _ in texts
        ]
        flat = answer_logprobs(
            self.generator, contexts, [t for texts in groups for t in texts], self.batch_size
        )
        out, start = [], 0
        for texts in groups:
            out.append(flat[start : start + len(texts)])
            start += len(texts)
        return out

    def guard(self) -> Any:
        """The default guard (``recx_worker.guard``) the ``guard_ok`` feature asks; ``None``
        without a lexicon."""
        if self._guard is None:
            from recx_worker.guard import Guard

            if self.context.evidence is not None:
                self._guard = Guard.for_store(self.context.evidence)
            elif self.context.lexicon is not None:
                self._guard = Guard.with_plugins(self.context.lexicon)
        return self._guard

    def decoding_identity(self) -> dict[str, Any]:
        """Every option that changes the candidates this explainer decodes for a request (its
        prompt and its decoding), e.g. to key a cache of them; the weights are keyed apart."""
        generation = self.generation.as_dict()
        if self.minimums.share:  # a per-request mix (lm.lengths): the mean, not the floor
            generation["min_new_tokens"] = self.minimums.mean
        return {
            "generation": generation,
            "lead_feature": self.lead_feature,
            "shopper_liked": self.shopper_liked,
            "grounded_decoding": self.grounded_decoding,
            "engine": self.engine_request,
            "quantization": self.quantization,
        }

    def training_explanations(self) -> list[str] | None:
        """The prepared data's training explanations, read once (``None`` without prepared
        data behind the evidence source); the word and phrase priors are built from them."""
        data = getattr(self.context.evidence, "data", None)
        if self._train_texts is None and data is not None:
            self._train_texts = [r.explanation for r in data.split("train")]
        return self._train_texts

    def word_prior(self) -> WordPrior | None:
        """Word frequencies of the training explanations (for the reranker's features)."""
        texts = self.training_explanations()
        if self._prior is None and texts is not None:
            self._prior = WordPrior(texts)
        return self._prior

    def phrase_prior(self) -> PhrasePrior | None:
        """Phrase counts of the training explanations (without prepared data ``typical``
        weighs similarity and length only)."""
        texts = self.training_explanations()
        if self._phrases is None and texts is not None:
            self._phrases = PhrasePrior(texts)
        return self._phrases

    def planned_features(self, requests: list[ExplainRequest]) -> list[str | None]:
        """The feature each answer is asked to be about (its forced lead, else the focus)."""
        prefixes = self.answer_prefixes(requests)
        return [
            p.removeprefix("The ") if p else focus_feature(r.evidence)
            for r, p in zip(requests, prefixes, strict=True)
        ]

    def answer_prefixes(self, requests: list[ExplainRequest]) -> list[str]:
        """The answer's forced start: "The <feature>" with the feature the shopper cares about
        (``lead_feature="focus"``) or the item's most mentioned one (``"item"``); none for
        ``"none"``."""
        if self.lead_feature == "none":
            return [""] * len(requests)
        out = []
        for request in requests:
            evidence = request.evidence
            if self.lead_feature == "item":
                feature = focus_feature(Evidence(item_features=evidence.item_features))
            else:
                feature = focus_feature(evidence)
            out.append(f"The {feature}" if feature else "")
        return out

    def model_input(self, evidence: Evidence) -> str:
        """The model's input for ``evidence`` with this explainer's prompt options, as decoded
        and as the reranker's log-probabilities read it (before any forced answer start)."""
        return lm_input(evidence, self.shopper_liked)

    def render_prompts(self, requests: list[ExplainRequest]) -> list[str]:
        prefixes = self.answer_prefixes(requests)
        return [
            self.model_input(r.evidence) + (f" {p}" if p else "")
            for r, p in zip(requests, prefixes, strict=True)
        ]


@hookimpl
def recx_explainers() -> list[type]:
    return [LoraExplainer]
