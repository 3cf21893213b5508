"""Batched generation: left padding, attention masks, the KV cache, bounded new tokens.

``Generator.generate(prompts, batch_size)`` is the batched path used by the explainers and by
``recx bench generate``; ``Generator.generate_one_by_one(prompts)`` is the naive baseline
(one ``model.generate()`` call per prompt, no padding).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from recx_worker.lm.grounding import BanProcessor, Sequences

DEFAULT_MAX_NEW_TOKENS = 32
MAX_PROMPT_TOKENS = 512


@dataclass(frozen=True, slots=True)
class GenerationConfig:
    """Decoding: greedy by default; ``num_beams`` > 1 for beam search, ``top_p`` to sample
    (``temperature = 0`` turns sampling off: greedy, whatever ``top_p`` says)."""

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    num_beams: int = 1
    top_p: float | None = None
    top_k: int = 0  # sampling: only the k likeliest tokens (0: the whole vocabulary)
    temperature: float = 1.0
    repetition_penalty: float | None = None
    seed: int = 0
    candidates: int = 1  # sequences returned per prompt (beam search: at most num_beams)
    # Beam search ranks a hypothesis by its log-probability / length ** length_penalty: above 1
    # favours longer answers (the model's greedy answers are shorter than the references).
    length_penalty: float = 1.0
    # The answer may not end before this many new tokens: the end token and the tokens that
    # end a sentence (answers are cut to their first sentence) are held back until then.
    min_new_tokens: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.max_new_tokens <= 256:
            raise ValueError("max_new_tokens must be between 1 and 256")
        if self.num_beams < 1:
            raise ValueError("num_beams must be >= 1")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0 (0: no limit)")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0 (0: no sampling)")
        if self.candidates < 1:
            raise ValueError("candidates must be >= 1")
        if not 0 <= self.min_new_tokens < self.max_new_tokens:
            raise ValueError("min_new_tokens must be >= 0 and below max_new_tokens")
        if not 0 <= self.length_penalty <= 5:
            raise ValueError("length_penalty must be between 0 and 5")
        if self.candidates > 1 and not self.sampling and self.candidates > self.num_beams:
            raise ValueError("candidates must be <= num_beams without sampling (top_p)")

    @property
    def rows_per_prompt(self) -> int:
        """Rows each prompt occupies while decoding (beams, or sampled candidates)."""
        return self.num_beams if self.num_beams > 1 else self.candidates

    @property
    def sampling(self) -> bool:
        return self.top_p is not None and self.temperature > 0

    @property
    def samples_by_processor(self) -> bool:
        """Whether the torch engine samples with ``NucleusSampler`` (one row per prompt) and
        runs ``generate()`` greedily, instead of ``transformers``' own sampling."""
        return self.sampling and self.rows_per_prompt == 1

    def generate_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "num_beams": self.num_beams,
            "do_sample": self.sampling and not self.samples_by_processor,
            "use_cache": True,
            "num_return_sequences": self.candidates,
        }
        if kwargs["do_sample"]:
            kwargs |= {"top_p": self.top_p, "temperature": self.temperature, "top_k": self.top_k}
        if self.repetition_penalty:
            kwargs["repetition_penalty"] = self.repetition_penalty
        if self.num_beams > 1:
            kwargs["length_penalty"] = self.length_penalty
        if self.min_new_tokens:
            kwargs["min_new_tokens"] = self.min_new_tokens
        return kwargs

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Characters a sentence-ending token may consist of (``"."``, ``"!?"``, ``".\n"``, ``'."'``).
_SENTENCE_END_CHARS = frozenset(".!?\"'\n ")


def sentence_end_ids(tokenizer: Any) -> list[int]:
    """The end token's id and the ids of the vocabulary's tokens that end a sentence: made of
    ``.`` ``!`` ``?`` quotes, spaces and newlines only, with at least one of ``.!?`` or a
    newline. With ``min_new_tokens`` both engines stop at the first of them, so the held-back
    length is the first sentence's (the only one an explanation keeps)."""
    return _sentence_end_ids(tokenizer, tokenizer.eos_token_id)


@functools.lru_cache(maxsize=8)
def _sentence_end_ids(tokenizer: Any, eos_token_id: int) -> list[int]:
    size = len(tokenizer)
    texts = tokenizer.batch_decode([[i] for i in range(size)])
    ids = [
        i
        for i, text in enumerate(texts)
        if text.strip(" ") and set(text) <= _SENTENCE_END_CHARS and any(c in text for c in ".!?\n")
    ]
    return [eos_token_id, *(i for i in ids if i != eos_token_id)]


class NucleusSampler:
    """A ``transformers`` logits processor that draws each row's next token itself (the
    ``top_k`` likeliest, scaled by ``temperature``, cut to the ``top_p`` nucleus) and leaves
    only that token possible, so ``generate()`` runs greedily. ``transformers``' own sampling
    sorts and normalises the whole vocabulary at every step: about 0.1 s per step for 32 rows
    of SmolLM2's 49,152 tokens on 2 idle CPUs (sort 61 ms, softmax and draw 40 ms; top-20
    2 ms)."""

    def __init__(self, config: GenerationConfig, device: Any) -> None:
        import torch

        if config.top_p is None:
            raise ValueError("NucleusSampler needs top_p")
        self.top_k = config.top_k
        self.top_p = config.top_p
        self.temperature = config.temperature
        self.generator = torch.Generator(device=device).manual_seed(config.seed)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        k = min(self.top_k or scores.shape[-1], scores.shape[-1])
        values, indices = scores.float().topk(k, dim=-1)  # likeliest first
        probs = (values / self.temperature).softmax(dim=-1)
        # keep a token while the mass before it is under top_p (the likeliest always stays)
        probs = probs * ((probs.cumsum(dim=-1) - probs) < self.top_p)
        tokens = indices.gather(-1, torch.multinomial(probs, 1, generator=self.generator))
        chosen = torch.full_like(scores, float("-inf"))
        return chosen.scatter_(-1, tokens, 0.0)


class RowMinimum:
    """A ``transformers`` logits processor holding back the end tokens per row: prompt ``i``
    (``rows_per_prompt`` consecutive rows) may not stop before ``minimums[i]`` new tokens, so
    one call serves requests of different minimums (``min_new_tokens`` is one for a call)."""

    def __init__(
        self, minimums: Sequence[int], prompt_length: int, end_ids: list[int], rows_per_prompt: int
    ) -> None:
        import torch

        self.minimums = [m for m in minimums for _ in range(rows_per_prompt)]
        self.prompt_length = prompt_length
        self.ends = torch.tensor(end_ids)[None, :]  # once per call, not per step

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        produced = input_ids.shape[1] - self.prompt_length
        rows = [row for row, minimum in enumerate(self.minimums) if produced < minimum]
        if rows:
            scores[torch.tensor(rows)[:, None], self.ends] = float("-inf")
        return scores


def batch_by_length(
    lengths: Sequence[int],
    batch_size: int,
    bans: Sequence[Sequences] | None,
    run: Callable[[list[int], list[Sequences] | None], list[list[str]]],
    max_spread: int | None = None,
    groups: Sequence[int] | None = None,
) -> list[list[str]]:
    """Run ``run(indices, their bans)`` on batches of at most ``batch_size`` prompts of similar
    length (shortest first, so little padding), and return its outputs in prompt order. The one
    batching rule of every generation engine.

    ``max_spread``: a batch also ends where a prompt is more than this many tokens longer than
    the batch's shortest (``0``: prompts of one length only). CTranslate2 forwards only the
    shortest prompt's length at once and the rest token by token, beams included, so a spread
    batch is slow there (docs/engine.md). ``groups``: a batch holds prompts of one group only
    (an engine that takes one setting per call, e.g. CTranslate2's ``min_length``)."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    group = groups if groups is not None else [0] * len(lengths)
    order = sorted(range(len(lengths)), key=lambda i: (group[i], lengths[i]))
    chunks: list[list[int]] = []
    for index in order:
        if (
            not chunks
            or len(chunks[-1]) == batch_size
            or group[index] != group[chunks[-1][0]]
            or (max_spread is not None and lengths[index] - lengths[chunks[-1][0]] > max_spread)
        ):
            chunks.append([])
        chunks[-1].append(index)
    results: list[list[str]] = [[] for _ in lengths]
    for chunk in chunks:
        texts = run(chunk, [bans[i] for i in chunk] if bans is not None else None)
        for index, text in zip(chunk, texts, strict=True):
            results[index] = text
    return results


class Generator:
    """Generates continuations of text prompts with a causal LM and its tokenizer."""

    def __init__(self, model: Any, tokenizer: Any, config: GenerationConfig | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.config = config or GenerationConfig()
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token

    engine = "torch"

    @property
    def end_ids(self) -> int | list[int]:
        """Where an answer stops: the end token, or with ``min_new_tokens`` also at a sentence
        end (``sentence_end_ids``)."""
        if self.config.min_new_tokens:
            return sentence_end_ids(self.tokenizer)
        return self.tokenizer.eos_token_id

    def _mixed(self, minimums: Sequence[int] | None) -> bool:
        """Whether ``minimums`` (per prompt) differ from the configured ``min_new_tokens``."""
        return minimums is not None and set(minimums) != {self.config.min_new_tokens}

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    @property
    def parameters(self) -> dict[str, int]:
        """Per-token arithmetic weights (``recx_worker.lm.loading.parameter_counts``)."""
        from recx_worker.lm.loading import parameter_counts

        return parameter_counts(self.model)

    def describe(self) -> str:
        """Weights' dtype, for reports."""
        return str(next(self.model.parameters()).dtype)

    def _encode(self, prompts: Sequence[str]) -> Any:
        self.tokenizer.padding_side = "left"
        return self.tokenizer(
            list(prompts),
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=MAX_PROMPT_TOKENS,
            add_special_tokens=False,
        ).to(self.device)

    def _run(
        self,
        prompts: Sequence[str],
        bans: Sequence[Sequences] | None = None,
        minimums: Sequence[int] | None = None,
    ) -> list[list[str]]:
        """``config.candidates`` continuations per prompt (best first for beam search);
        ``minimums``: per prompt, its ``min_new_tokens`` (default: the configured one)."""
        import torch
        from transformers import LogitsProcessorList

        batch = self._encode(prompts)
        processors = LogitsProcessorList()
        kwargs = self.config.generate_kwargs()
        end_ids = self.end_ids
        if self._mixed(minimums):
            kwargs.pop("min_new_tokens", None)
            end_ids = sentence_end_ids(self.tokenizer)
            rows = self.config.rows_per_prompt
            prompt_length = batch["input_ids"].shape[1]
            processors.append(RowMinimum(minimums, prompt_length, end_ids, rows))
        if bans is not None and any(bans):
            processors.append(BanProcessor(bans, rows_per_prompt=self.config.rows_per_prompt))
        if self.config.samples_by_processor:
            processors.append(NucleusSampler(self.config, self.device))  # last: after the bans
        elif self.config.sampling:
            torch.manual_seed(self.config.seed)
        with torch.inference_mode():
            output = self.model.generate(
                **batch,
                **kwargs,
                logits_processor=processors,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=end_ids,
            )
        new_tokens = output[:, batch["input_ids"].shape[1] :]
        texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        k = self.config.candidates
        return [texts[i : i + k] for i in range(0, len(texts), k)]

    def generate(
        self,
        prompts: Sequence[str],
        batch_size: int = 32,
        bans: Sequence[Sequences] | None = None,
        minimums: Sequence[int] | None = None,
    ) -> list[str]:
        """Continuations of ``prompts`` (same order), ``batch_size`` prompts per forward pass.

        Prompts are grouped by token length so little padding is needed. ``bans[i]``: token
        sequences prompt ``i`` may not generate (see ``recx_worker.lm.grounding``);
        ``minimums[i]``: its ``min_new_tokens`` (default: the configured one). With
        ``config.candidates`` > 1 this is the first candidate of each prompt.
        """
        return [g[0] for g in self.generate_candidates(prompts, batch_size, bans, minimums)]

    def generate_candidates(
        self,
        prompts: Sequence[str],
        batch_size: int = 32,
        bans: Sequence[Sequences] | None = None,
        minimums: Sequence[int] | None = None,
    ) -> list[list[str]]:
        """``config.candidates`` continuations per prompt; see ``generate`` (different
        minimums share a batch: ``RowMinimum``)."""
        if not prompts:
            return []
        lengths = [
            len(ids) for ids in self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        ]

        def run(chunk: list[int], chunk_bans: list[Sequences] | None) -> list[list[str]]:
            chunk_minimums = [minimums[i] for i in chunk] if minimums is not None else None
            return self._run([prompts[i] for i in chunk], chunk_bans, chunk_minimums)

        return batch_by_length(lengths, batch_size, bans, run)

    def generate_one_by_one(
        self, prompts: Sequence[str], bans: Sequence[Sequences] | None = None
    ) -> list[str]:
        """The naive baseline: one unpadded ``generate()`` call per prompt."""
        return [
            self._run([prompt], [bans[i]] if bans is not None else None)[0][0]
            for i, prompt in enumerate(prompts)
        ]
