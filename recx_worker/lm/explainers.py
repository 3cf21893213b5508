"""The shared machinery of the language-model explainers (``prompt`` and ``lora``).

Subclasses load a model in ``_load`` and render one prompt per request in ``render_prompts``;
this base generates them in batches (with grounded decoding, ``recx_worker.lm.grounding``) and
cleans each output into one sentence; with ``candidates`` > 1 it keeps the candidate ``select``
picks: the consensus candidate (``recx_worker.lm.selection``) unless a subclass chooses otherwise
(the ``lora`` explainer's learned reranker, ``recx_worker.lm.rerank``).

``engine`` picks what generates: ``"torch"`` (transformers; training, GPU, the reference),
``"ct2"`` (CTranslate2, int8, converted once and cached: ``recx_worker.lm.ct2``) or ``"auto"``
(the default; ``recx_worker.lm.engine.resolve_engine``: where the CPU has bf16 matrix units,
one row per prompt on ct2 for small calls and torch in bfloat16 for large ones, else ct2 on
CPU when ``ctranslate2`` is installed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from recx_worker.explainer import (
    BaseExplainer,
    ExplainerContext,
    ExplainFailure,
    ExplainRequest,
    Explanation,
    Outcome,
)
from recx_worker.lm.cleaning import CleaningError, clean_explanation
from recx_worker.lm.device import DeviceChoice, select_device
from recx_worker.lm.engine import SPLIT, SplitGenerator, resolve_engine
from recx_worker.lm.generation import GenerationConfig, Generator
from recx_worker.lm.grounding import FeatureBans, Sequences
from recx_worker.lm.lengths import MinimumMix, request_key
from recx_worker.lm.selection import consensus_index

#: What ``warm_up`` generates from once (any short text: only the engine's first call matters).
WARM_UP_PROMPT = "Item features: sound, strings, tuner. Explanation:"


class LMExplainer(BaseExplainer):
    """Base for explainers backed by a causal LM (options: see ``__init__``)."""

    name: ClassVar[str] = "lm"
    #: Whether ``engine = "auto"`` may run this explainer's large one-row calls in bfloat16 on
    #: a CPU with bf16 matrix units (option ``cpu_bf16`` overrides): only where its quality
    #: was measured unchanged there (docs/engine.md); off for subclasses unless they say so.
    cpu_bf16_default: ClassVar[bool] = False
    version: ClassVar[str] = "1"

    def __init__(
        self,
        *,
        context: ExplainerContext | None = None,
        base: str = "smollm2",
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 32,
        max_new_tokens: int = 32,
        num_beams: int = 1,
        top_p: float | None = None,
        top_k: int = 0,
        temperature: float = 1.0,
        repetition_penalty: float | None = None,
        length_penalty: float = 1.0,
        min_new_tokens: float = 0,
        seed: int = 0,
        candidates: int = 1,
        threads: int | None = None,
        model_cache: str | Path | None = None,
        grounded_decoding: bool = True,
        engine: str = "auto",
        quantization: str = "int8",
        cpu_bf16: bool | None = None,
        **options: Any,
    ) -> None:
        super().__init__(context=context, **options)
        self.base = base
        self.device_request = (device, dtype)
        self.batch_size = batch_size
        self.threads = threads
        self.engine_request = engine
        self.engine: str | None = None  # resolved by warm_up
        self.quantization = quantization
        self.cpu_bf16 = self.cpu_bf16_default if cpu_bf16 is None else cpu_bf16
        self.grounded_decoding = grounded_decoding
        self._feature_bans: FeatureBans | None = None
        # a fractional minimum is a stable per-request mix of the two nearest (lm.lengths)
        self.minimums = MinimumMix(min_new_tokens)
        if self.minimums.high >= max_new_tokens:
            raise ValueError("min_new_tokens must be >= 0 and below max_new_tokens")
        self.generation = GenerationConfig(
            max_new_tokens=max_new_tokens,
            num_beams=num_beams,
            top_p=top_p,
            top_k=top_k,
            temperature=temperature,
            repetition_penalty=repetition_penalty,
            length_penalty=length_penalty,
            min_new_tokens=self.minimums.low,
            seed=seed,
            candidates=candidates,
        )
        self.model_cache = Path(model_cache or self.context.paths.model_cache).expanduser()
        self.generator: Any = None  # Generator (torch), Ct2Generator or SplitGenerator
        self.tokenizer: Any = None
        self.model_name: str | None = None
        self.adapter_version: str | None = None

    # -- subclass hooks -------------------------------------------------------------------
    def _load(self, device: DeviceChoice) -> tuple[Any, Any]:
        """Return ``(model, tokenizer)``; set ``model_name``/``adapter_version``."""
        raise NotImplementedError

    def _identity(self) -> tuple[str, dict[str, Any]]:
        """Without loading weights: a short name and the key identifying the weights ``_load``
        would return (names the CTranslate2 cache entry); set ``model_name``/``adapter_version``."""
        raise NotImplementedError

    def _ready(self, tokenizer: Any) -> None:
        """Check the loaded tokenizer (default: nothing to check)."""

    def render_prompts(self, requests: list[ExplainRequest]) -> list[str]:
        """The exact text each request's generation continues."""
        raise NotImplementedError

    def answer_prefixes(self, requests: list[ExplainRequest]) -> list[str]:
        """Text each prompt already ends with that belongs to the answer (default none)."""
        return [""] * len(requests)

    # -- explainer contract -----------------------------------------------------------------
    def warm_up(self) -> None:
        if self.generator is not None:
            return
        self.engine, device = resolve_engine(
            self.engine_request,
            select_device(*self.device_request),
            dtype=self.device_request[1],
            rows_per_prompt=self.generation.rows_per_prompt,
            allow_bf16=self.cpu_bf16,
        )
        small = large = None
        if self.engine in ("ct2", SPLIT):
            from recx_worker.lm.engine import load_ct2_generator

            name, key = self._identity()
            small = load_ct2_generator(
                name,
                key,
                lambda: self._load(select_device("cpu", "float32")),
                device=device,
                config=self.generation,
                cache_dir=self.model_cache,
                threads=self.threads,
                quantization=self.quantization,
            )
        if self.engine in ("torch", SPLIT):
            if self.threads:
                import torch

                torch.set_num_threads(self.threads)
            model, tokenizer = self._load(device)
            large = Generator(model, tokenizer, self.generation)
        if small is not None and large is not None:
            self.generator = SplitGenerator(small, large)
        else:
            self.generator = small or large
        self.tokenizer = self.generator.tokenizer
        self._ready(self.tokenizer)
        if self.grounded_decoding and self.context.lexicon is not None:
            self._feature_bans = FeatureBans(self.context.lexicon, self.tokenizer)
        # One generation now: the engine's first call (allocations, kernel selection) is
        # several times slower than the next ones and must not land inside a stage deadline.
        for generator in getattr(self.generator, "engines", (self.generator,)):
            generator.generate_candidates([WARM_UP_PROMPT], batch_size=1)

    def bans(self, requests: list[ExplainRequest]) -> list[Sequences] | None:
        """Per request, the token sequences of features its evidence does not support
        (``None`` without grounded decoding or a lexicon)."""
        if self._feature_bans is None:
            return None
        return [self._feature_bans.banned(r.evidence.allowed_features()) for r in requests]

    def raw_generate(
        self,
        prompts: list[str],
        bans: list[Sequences] | None = None,
        minimums: list[int] | None = None,
    ) -> list[list[str]]:
        """``candidates`` raw continuations per prompt; ``minimums[i]``: prompt ``i``'s
        ``min_new_tokens`` (default: the configured one for all)."""
        self.warm_up()
        assert self.generator is not None
        return self.generator.generate_candidates(
            prompts, batch_size=self.batch_size, bans=bans, minimums=minimums
        )

    def request_minimums(self, requests: list[ExplainRequest]) -> list[int] | None:
        """Per request, its ``min_new_tokens`` when the option is fractional (else None)."""
        if not self.minimums.share:
            return None
        return [self.minimums.minimum(request_key(r.user_id, r.item_id)) for r in requests]

    def candidate_texts(
        self, requests: list[ExplainRequest]
    ) -> list[tuple[list[str], CleaningError | None]]:
        """Per request, its cleaned candidates (best beam first; those the cleaner refuses
        left out) and the first refusal."""
        self.warm_up()
        prompts = self.render_prompts(requests)
        groups = self.raw_generate(prompts, self.bans(requests), self.request_minimums(requests))
        prefixes = self.answer_prefixes(requests)
        out: list[tuple[list[str], CleaningError | None]] = []
        for request, prompt, prefix, raws in zip(requests, prompts, prefixes, groups, strict=True):
            texts: list[str] = []
            error: CleaningError | None = None
            for raw in raws:
                try:
                    texts.append(clean_explanation(prefix + raw, request.max_words, prompt))
                except CleaningError as exc:
                    error = error or exc
            out.append((texts, error))
        return out

    def select(self, requests: list[ExplainRequest], groups: list[list[str]]) -> list[int]:
        """Per request, the index of the candidate to keep (default: the consensus rule)."""
        return [consensus_index(texts) for texts in groups]

    def explain_batch(self, requests: list[ExplainRequest]) -> list[Outcome]:
        if not requests:
            return []
        outcomes: list[Outcome] = []
        candidates = self.candidate_texts(requests)
        chosen = self.select(requests, [texts for texts, _ in candidates])
        for (texts, error), index in zip(candidates, chosen, strict=True):
            if not texts:
                assert error is not None
                # Unusable output is a deliberate "no answer" (declined), not a crash.
                outcomes.append(ExplainFailure(type(error).__name__, str(error)))
                continue
            outcomes.append(
                Explanation(
                    text=texts[index],
                    model=self.model_name,
                    adapter_version=self.adapter_version,
                )
            )
        return outcomes

    def close(self) -> None:
        self.generator = None
