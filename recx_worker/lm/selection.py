"""Choosing one explanation among several decoded candidates (minimum Bayes risk).

With ``candidates`` > 1 an LM explainer decodes k sequences per request (beam search or
sampling). Two reference-free rules:

* ``consensus_index``: the candidate most similar to the rest (ROUGE-L F1 over words), the
  expected-best answer under the model's own distribution, less often an odd outlier than the
  single top beam;
* ``typical_index``: the same similarity, plus a bonus per word (the model's answers are
  shorter than a shopper's sentence) and the candidate's ``PhrasePrior`` (how usual its word
  triples and quadruples are among the training explanations). Its weights were chosen on
  the validation split (docs/results-quality.md, "Length and phrasing").
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

from recx_worker.features import words
from recx_worker.textsim import lcs_length


def rouge_l_f1(a: str, b: str) -> float:
    """ROUGE-L F1 between two texts over lower-cased words."""
    wa, wb = words(a), words(b)
    if not wa or not wb:
        return 0.0
    lcs = lcs_length(wa, wb)
    return 0.0 if lcs == 0 else 2 * lcs / (len(wa) + len(wb))


def mean_similarities(candidates: Sequence[str]) -> list[float]:
    """Each candidate's mean ROUGE-L F1 to the others (each pair compared once; 1.0 for a
    single candidate)."""
    n = len(candidates)
    if n <= 1:
        return [1.0] * n
    totals = [0.0] * n
    for i in range(n):
        for j in range(i + 1, n):
            similarity = rouge_l_f1(candidates[i], candidates[j])
            totals[i] += similarity
            totals[j] += similarity
    return [total / (n - 1) for total in totals]


def best_index(scores: Sequence[float]) -> int:
    """Index of the highest score, the first (better beam) on ties; 0 when empty."""
    return max(range(len(scores)), key=lambda i: (scores[i], -i)) if scores else 0


def consensus_index(candidates: Sequence[str], similarities: Sequence[float] | None = None) -> int:
    """Index of the candidate most similar to the others (the first such on ties, i.e. the
    better beam); with two or fewer, the first. ``similarities``: ``mean_similarities`` of
    ``candidates`` when the caller has them already."""
    if len(candidates) <= 2:
        return 0
    return best_index(similarities or mean_similarities(candidates))


#: ``typical_index`` weights (per word; per unit of ``PhrasePrior.score``), chosen on 480
#: validation records with adapter v2.1 among 0-0.2 per word and 0-1 for the prior.
WORD_BONUS = 0.1
PHRASE_WEIGHT = 0.3
PHRASE_ORDERS = (3, 4)


class PhrasePrior:
    """How usual a text's phrasing is for an explanation: for each order in ``PHRASE_ORDERS``,
    the mean of log(1 + count) of the text's word n-grams in a corpus (the training
    explanations, first 15 words each as the metrics read them), summed over the orders."""

    def __init__(self, texts: Iterable[str], max_words: int = 15) -> None:
        self._counts: Counter[tuple[str, ...]] = Counter()
        for text in texts:
            tokens = words(text)[:max_words]
            for n in PHRASE_ORDERS:
                self._counts.update(zip(*(tokens[k:] for k in range(n)), strict=False))

    def score(self, text: str) -> float:
        tokens = words(text)
        total = 0.0
        for n in PHRASE_ORDERS:
            grams = list(zip(*(tokens[k:] for k in range(n)), strict=False))
            if grams:
                total += sum(math.log1p(self._counts[g]) for g in grams) / len(grams)
        return total


def typical_scores(candidates: Sequence[str], prior: PhrasePrior | None = None) -> list[float]:
    """Each candidate's mean similarity to the others + ``WORD_BONUS`` per word +
    ``PHRASE_WEIGHT`` x its phrase prior (none without a prior)."""
    return [
        similarity
        + WORD_BONUS * len(words(text))
        + (PHRASE_WEIGHT * prior.score(text) if prior is not None else 0.0)
        for text, similarity in zip(candidates, mean_similarities(candidates), strict=True)
    ]


def typical_index(candidates: Sequence[str], prior: PhrasePrior | None = None) -> int:
    """Index of the candidate with the highest ``typical_scores``; the better beam on ties."""
    if len(candidates) <= 1:
        return 0
    return best_index(typical_scores(candidates, prior))
