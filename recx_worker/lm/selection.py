"""Choosing one explanation among several decoded candidates (minimum Bayes risk).

With ``candidates`` > 1 an LM explainer decodes k sequences per request (beam search or
sampling). The cleaned candidates are compared with each other and the one most similar to the
rest (ROUGE-L F1 over words) is kept: the consensus candidate is the expected-best answer under
the model's own distribution, and is less often an odd outlier than the single top beam.
"""

from __future__ import annotations

from collections.abc import Sequence

from recx_worker.features import words
from recx_worker.textsim import lcs_length


def rouge_l_f1(a: str, b: str) -> float:
    """ROUGE-L F1 between two texts over lower-cased words."""
    wa, wb = words(a), words(b)
    if not wa or not wb:
        return 0.0
    lcs = lcs_length(wa, wb)
    return 0.0 if lcs == 0 else 2 * lcs / (len(wa) + len(wb))


def consensus_index(candidates: Sequence[str]) -> int:
    """Index of the candidate with the highest total similarity to the others (the first such
    on ties, i.e. the better beam)."""
    if len(candidates) <= 2:
        return 0
    scores = [
        sum(rouge_l_f1(c, other) for j, other in enumerate(candidates) if j != i)
        for i, c in enumerate(candidates)
    ]
    return max(range(len(candidates)), key=lambda i: (scores[i], -i))
