"""Choosing among decoded candidates with a learned reranker instead of the consensus rule.

An LM explainer with ``candidates`` > 1 has several cleaned candidates per request. This module
describes each candidate by reference-free features (what the model and the evidence say about
it, nothing that needs the reference) and scores it with a linear model fitted offline on the
validation split (``recx train reranker``, ``training/rerank.py``): the candidate with the
highest score is kept. The model lives in ``reranker.json`` in the adapter directory, with the
checksums of the adapter and the data it was fitted on; loading it for another adapter fails
with a clear message.

Features (``FEATURES``, one row per candidate, the same code at fitting and inference):

- ``rank``: position among the cleaned candidates (0 = best beam), ``first``: it is the first;
- ``logprob``: mean log-probability per token of the answer under the model (length-normalised
  model score), ``logprob_gap``: that minus the best of the group;
- ``consensus``: mean ROUGE-L F1 to the other candidates, ``is_consensus``: the consensus rule's
  pick (``recx_worker.lm.selection``), ``duplicates``: how many other candidates are identical;
- ``words``: length in words, ``words_gap``: that minus the group's mean;
- ``item_top``: names the item's most mentioned feature, ``item_features``: item features named,
  ``user_focus``: names a feature the shopper cares about, ``planned``: names the planned feature
  (the one the answer was asked to lead with), ``other_features``: lexicon features named that
  are not the item's;
- ``snippet_overlap``: ROUGE-L F1 with the review snippet of the evidence, ``item_reviews``:
  mean ROUGE-L F1 with the item's representative training sentences (its profile's snippets);
- ``train_words``: mean log-frequency of its words in the training explanations (``WordPrior``),
  ``zipf``: mean general-English frequency of its words (``wordfreq``, Zipf scale);
- ``sentiment``: VADER compound, ``negative``: at or below the negative cut;
- ``repetition``: share of repeated words;
- ``guard_ok``: passes the default guard (grounding, nouns, safety, sentiment).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recx_worker.events import Evidence
from recx_worker.features import Lexicon, words
from recx_worker.lm.generation import MAX_PROMPT_TOKENS
from recx_worker.lm.prompting import sanitize_snippet
from recx_worker.lm.selection import consensus_index, mean_similarities, rouge_l_f1
from recx_worker.sentiment import NEGATIVE_THRESHOLD, compound

RERANKER_FILE = "reranker.json"
FORMAT = 1
FEATURES = (
    "rank",
    "first",
    "logprob",
    "logprob_gap",
    "consensus",
    "is_consensus",
    "duplicates",
    "words",
    "words_gap",
    "item_top",
    "item_features",
    "user_focus",
    "planned",
    "other_features",
    "snippet_overlap",
    "item_reviews",
    "train_words",
    "zipf",
    "sentiment",
    "negative",
    "repetition",
    "guard_ok",
)

LOGPROB_FEATURES = ("logprob", "logprob_gap")


class RerankerError(RuntimeError):
    """No usable ``reranker.json``: missing, malformed, or fitted for another adapter."""


@dataclass(frozen=True, slots=True)
class CandidateGroup:
    """One request's cleaned candidates (best beam first) and what their features need."""

    texts: Sequence[str]
    evidence: Evidence
    planned: str | None = None
    logprobs: Sequence[float] | None = None
    guard_ok: Sequence[bool] | None = None
    item_snippets: Sequence[str] = ()
    prior: WordPrior | None = None


class WordPrior:
    """Log relative frequency of words in a corpus (the training explanations), add-one
    smoothed: how ordinary a candidate's wording is for an explanation."""

    def __init__(self, texts: Sequence[str]) -> None:
        counts: dict[str, int] = {}
        for text in texts:
            for word in words(text):
                counts[word] = counts.get(word, 0) + 1
        total = sum(counts.values()) + len(counts) + 1
        self._log = {w: math.log((c + 1) / total) for w, c in counts.items()}
        self._unseen = math.log(1 / total)

    def mean(self, text: str) -> float:
        tokens = words(text)
        if not tokens:
            return self._unseen
        return sum(self._log.get(w, self._unseen) for w in tokens) / len(tokens)


def _zipf(text: str) -> float:
    from recx_worker.nouns import zipf

    tokens = words(text)
    return sum(zipf(w) for w in tokens) / len(tokens) if tokens else 0.0


def _named(found: set[str], features: Sequence[str]) -> bool:
    return any(" ".join(words(f)) in found for f in features)


def candidate_features(group: CandidateGroup, lexicon: Lexicon | None) -> list[list[float]]:
    """One row of ``FEATURES`` per candidate of ``group``."""
    texts = list(group.texts)
    n = len(texts)
    if n == 0:
        return []
    logprobs = list(group.logprobs) if group.logprobs is not None else [0.0] * n
    guard_ok = list(group.guard_ok) if group.guard_ok is not None else [True] * n
    best_logprob = max(logprobs)
    similarities = mean_similarities(texts)
    pick = consensus_index(texts, similarities)
    lengths = [len(words(t)) for t in texts]
    mean_length = sum(lengths) / n
    item = [" ".join(words(f)) for f in group.evidence.item_features]
    snippet = sanitize_snippet(group.evidence.item_snippet)
    rows = []
    for i, text in enumerate(texts):
        tokens = words(text)
        found = set(lexicon.find(text)) if lexicon is not None else set(words(text))
        others = [t for j, t in enumerate(texts) if j != i]
        sentiment = compound(text)
        rows.append(
            [
                i / max(n - 1, 1),
                float(i == 0),
                logprobs[i],
                logprobs[i] - best_logprob,
                similarities[i],
                float(i == pick),
                float(sum(o == text for o in others)),
                float(lengths[i]),
                lengths[i] - mean_length,
                float(bool(item) and item[0] in found),
                float(sum(f in found for f in item)),
                float(_named(found, group.evidence.user_features)),
                float(bool(group.planned) and _named(found, [group.planned or ""])),
                float(len(found - set(item))) if lexicon is not None else 0.0,
                rouge_l_f1(text, snippet) if snippet else 0.0,
                sum(rouge_l_f1(text, s) for s in group.item_snippets) / len(group.item_snippets)
                if group.item_snippets
                else 0.0,
                group.prior.mean(text) if group.prior is not None else 0.0,
                _zipf(text),
                sentiment,
                float(bool(text.strip()) and sentiment <= NEGATIVE_THRESHOLD),
                1 - len(set(tokens)) / len(tokens) if tokens else 0.0,
                float(guard_ok[i]),
            ]
        )
    return rows


def answer_logprobs(
    generator: Any, contexts: Sequence[str], answers: Sequence[str], batch_size: int = 32
) -> list[float]:
    """Mean log-probability per token of each ``answers[i]`` (after a space) continuing
    ``contexts[i]``, under the generator's model (CTranslate2 ``score_batch`` or a torch
    forward pass)."""
    if not answers:
        return []
    tokenizer = generator.tokenizer
    context_ids = tokenizer(list(contexts), add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer([" " + a for a in answers], add_special_tokens=False)["input_ids"]
    rows = [
        (c[-(MAX_PROMPT_TOKENS - len(a)) :] if len(c) + len(a) > MAX_PROMPT_TOKENS else c) + a
        for c, a in zip(context_ids, answer_ids, strict=True)
    ]
    if getattr(generator, "engine", "torch") == "ct2":
        results = generator.model.score_batch(
            [tokenizer.convert_ids_to_tokens(r) for r in rows], max_batch_size=batch_size
        )
        per_token = [list(r.log_probs) for r in results]
    else:
        per_token = _torch_logprobs(generator.model, rows)
    return [
        sum(lp[-len(a) :]) / len(a) if a else 0.0
        for lp, a in zip(per_token, answer_ids, strict=True)
    ]


def _torch_logprobs(model: Any, rows: list[list[int]]) -> list[list[float]]:
    """Log-probability of each token given the ones before it (the first token unscored)."""
    import torch

    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for row in rows:
            ids = torch.tensor([row], device=device)
            logits = model(input_ids=ids).logits[0, :-1].float()
            lp = torch.log_softmax(logits, dim=-1).gather(1, ids[0, 1:, None])[:, 0]
            out.append(lp.tolist())
    return out


@dataclass(frozen=True, slots=True)
class Reranker:
    """A linear scorer over standardised ``features``; see the module docstring."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    guard_first: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [f for f in self.features if f not in FEATURES]
        if unknown:
            raise RerankerError(f"unknown reranker features {unknown}; known: {list(FEATURES)}")
        sizes = {len(self.features), len(self.mean), len(self.scale), len(self.weights)}
        if len(sizes) != 1:
            raise RerankerError("reranker features, mean, scale and weights differ in length")
        if not all(math.isfinite(v) for v in (*self.mean, *self.scale, *self.weights)):
            raise RerankerError("reranker parameters must be finite numbers")

    @property
    def needs_logprobs(self) -> bool:
        """Whether scoring needs the model's log-probabilities (a second pass of the model
        over every candidate: about as much CPU as decoding them)."""
        return any(f in LOGPROB_FEATURES for f in self.features)

    def scores(self, rows: Sequence[Sequence[float]]) -> list[float]:
        """The score of each candidate row (rows in ``FEATURES`` order)."""
        columns = [FEATURES.index(f) for f in self.features]
        return [
            sum(
                w * (row[c] - m) / (s or 1.0)
                for w, c, m, s in zip(self.weights, columns, self.mean, self.scale, strict=True)
            )
            for row in rows
        ]

    def choose(self, rows: Sequence[Sequence[float]]) -> int:
        """Index of the best-scored candidate (among those passing the guard first, with
        ``guard_first``; the earlier on ties)."""
        if len(rows) <= 1:
            return 0
        scores = self.scores(rows)
        pool = list(range(len(rows)))
        if self.guard_first:
            passing = [i for i in pool if rows[i][FEATURES.index("guard_ok")] > 0.5]
            pool = passing or pool
        return max(pool, key=lambda i: (scores[i], -i))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "features": list(self.features),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "weights": list(self.weights),
            "guard_first": self.guard_first,
            **self.meta,
        }

    def save(self, adapter_dir: Path) -> Path:
        path = Path(adapter_dir) / RERANKER_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reranker:
        if data.get("format") != FORMAT:
            raise RerankerError(f"reranker format {data.get('format')!r}, expected {FORMAT}")
        try:
            params = {k: tuple(data[k]) for k in ("features", "mean", "scale", "weights")}
        except (KeyError, TypeError) as exc:
            raise RerankerError(f"reranker lacks {exc}") from exc
        core = {"format", "features", "mean", "scale", "weights", "guard_first"}
        meta = {k: v for k, v in data.items() if k not in core}
        return cls(**params, guard_first=bool(data.get("guard_first")), meta=meta)

    @classmethod
    def load(cls, adapter_dir: Path, adapter_checksum: str | None = None) -> Reranker:
        """The adapter's reranker; ``adapter_checksum`` must match the one it was fitted for."""
        path = Path(adapter_dir) / RERANKER_FILE
        if not path.exists():
            raise RerankerError(
                f"selection 'reranker' needs {path}; fit one with "
                f"`recx train reranker --adapter {adapter_dir}` or use selection = 'consensus'"
            )
        try:
            reranker = cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except ValueError as exc:
            raise RerankerError(f"{path} is not valid: {exc}") from exc
        fitted_for = reranker.meta.get("adapter_checksum")
        if adapter_checksum and fitted_for and fitted_for != adapter_checksum:
            raise RerankerError(
                f"{path} was fitted on the candidates of adapter {fitted_for}, not of this "
                f"adapter ({adapter_checksum}); refit it with `recx train reranker`"
            )
        return reranker
