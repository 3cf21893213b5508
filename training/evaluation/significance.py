"""Paired bootstrap: is system A's BLEU-4 / ROUGE-L F really different from system B's?

Both systems are scored on the same records. Each resample draws ``n`` record indices with
replacement and scores A and B on that same draw; the spread of A - B over the resamples gives
a 95 % percentile interval, and the share of draws with A > B the "win rate" (Koehn 2004).

Everything that depends on the texts is computed once per record: BLEU's clipped n-gram
matches, n-gram totals and lengths (corpus BLEU only needs their sums) and ROUGE-L F (the
metric is their mean). A resample is then a weighted sum of those arrays, the weight of a
record being how often the draw picked it; no text is tokenized or compared again. On the
full set (every weight 1) the numbers are exactly ``corpus_bleu`` and the ROUGE-L F mean of
``metrics.rouge``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from training.evaluation.metrics import Tokens, bleu_counts, bleu_from_counts, rouge_l

BLEU_ORDER = 4
DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 13
_CHUNK_CELLS = 4_000_000  # resamples x records per weight matrix (32 MB of int64)


class _System:
    """One system's per-record statistics on a fixed set of references."""

    def __init__(self, references: Sequence[Tokens], hypotheses: Sequence[Tokens]):
        if len(references) != len(hypotheses):
            raise ValueError("references and hypotheses differ in length")
        rows = []
        for ref, hyp in zip(references, hypotheses, strict=True):
            matches, possible = bleu_counts(ref, hyp, BLEU_ORDER)
            rows.append([*matches, *possible, len(hyp), len(ref)])
        # columns: matches (1..4), possible (1..4), hypothesis length, reference length
        self.counts = np.array(rows, dtype=np.int64).reshape(len(rows), 2 * BLEU_ORDER + 2)
        self.rouge_l_f = [rouge_l(r, h)[2] for r, h in zip(references, hypotheses, strict=True)]

    @staticmethod
    def bleu(totals: Sequence[int]) -> float:
        """BLEU-4 x100 from one row of summed counts."""
        t = [int(x) for x in totals]
        k = BLEU_ORDER
        return bleu_from_counts(t[:k], t[k : 2 * k], ref_len=t[2 * k + 1], hyp_len=t[2 * k])

    def observed(self) -> tuple[float, float]:
        """(BLEU-4, ROUGE-L F) x100 on the full set, summed as ``corpus_bleu``/``rouge`` do."""
        n = len(self.rouge_l_f)
        return self.bleu(self.counts.sum(axis=0)), 100.0 * sum(self.rouge_l_f) / n


def _weights(rng: np.random.Generator, n: int, resamples: int):
    """Per chunk of resamples: (chunk, n) counts of how often each record was drawn."""
    chunk = max(1, min(resamples, _CHUNK_CELLS // n))
    done = 0
    while done < resamples:
        c = min(chunk, resamples - done)
        idx = rng.integers(0, n, size=(c, n))
        flat = (idx + (np.arange(c) * n)[:, None]).ravel()
        yield np.bincount(flat, minlength=c * n).reshape(c, n)
        done += c


def _summary(diff: float, samples: np.ndarray) -> dict[str, float]:
    low, high = np.percentile(samples, [2.5, 97.5])
    return {
        "diff": diff,
        "low": float(low),
        "high": float(high),
        "a_wins": float(np.mean(samples > 0)),
    }


def paired_bootstrap(
    references: Sequence[Tokens],
    hypotheses_a: Sequence[Tokens],
    hypotheses_b: Sequence[Tokens],
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> dict:
    """A - B on BLEU-4 and ROUGE-L F (x100): observed difference, 95 % percentile interval of
    the resampled differences (``low``, ``high``) and the share of resamples with A > B.

    ``references`` are token lists (truncated as the headline metrics truncate them);
    ``hypotheses_a``/``hypotheses_b`` the two systems' token lists in the same record order.
    """
    n = len(references)
    if n == 0:
        raise ValueError("no record to resample")
    if n_resamples < 1:
        raise ValueError("n_resamples must be at least 1")
    a, b = _System(references, hypotheses_a), _System(references, hypotheses_b)
    bleu_a, rouge_a = a.observed()
    bleu_b, rouge_b = b.observed()
    counts = np.concatenate([a.counts, b.counts], axis=1)  # (n, 2 * columns), integers
    # per-record A - B: the mean of the differences is the difference of the means
    rouge_d = np.array(a.rouge_l_f, dtype=np.float64) - np.array(b.rouge_l_f, dtype=np.float64)
    width = a.counts.shape[1]
    bleu_diff, rouge_diff = [], []
    for weights in _weights(np.random.default_rng(seed), n, n_resamples):
        totals = weights @ counts  # exact integer sums per resample
        bleu_diff += [_System.bleu(row[:width]) - _System.bleu(row[width:]) for row in totals]
        rouge_diff.append(100.0 * (weights @ rouge_d) / n)
    return {
        "n": n,
        "resamples": n_resamples,
        "seed": seed,
        "bleu_4": _summary(bleu_a - bleu_b, np.array(bleu_diff)),
        "rouge_l_f": _summary(rouge_a - rouge_b, np.concatenate(rouge_diff)),
    }
