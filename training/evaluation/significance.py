"""Paired bootstrap: is system A's BLEU-1/4, ROUGE-L F (or any per-record mean, such as the
MiniLM similarity or the share of negative texts) really different from system B's?

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
    def bleu(totals: Sequence[int], order: int = BLEU_ORDER) -> float:
        """BLEU-``order`` x100 (``order`` <= 4) from one row of summed counts."""
        t = [int(x) for x in totals]
        k = BLEU_ORDER
        return bleu_from_counts(t[:order], t[k : k + order], ref_len=t[2 * k + 1], hyp_len=t[2 * k])

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
    per_record: dict[str, tuple[Sequence[float], Sequence[float]]] | None = None,
) -> dict:
    """A - B on BLEU-1, BLEU-4 and ROUGE-L F (x100) and on the mean of each ``per_record``
    metric: observed difference, 95 % percentile interval of the resampled differences
    (``low``, ``high``) and the share of resamples with A > B.

    ``references`` are token lists (truncated as the headline metrics truncate them);
    ``hypotheses_a``/``hypotheses_b`` the two systems' token lists in the same record order;
    ``per_record`` maps a metric name to A's and B's per-record values (same order, same draws).
    """
    n = len(references)
    if n == 0:
        raise ValueError("no record to resample")
    if n_resamples < 1:
        raise ValueError("n_resamples must be at least 1")
    a, b = _System(references, hypotheses_a), _System(references, hypotheses_b)
    counts = np.concatenate([a.counts, b.counts], axis=1)  # (n, 2 * columns), integers
    # per-record A - B (x scale): the mean of the differences is the difference of the means
    means = {"rouge_l_f": (100.0 * np.array(a.rouge_l_f) - 100.0 * np.array(b.rouge_l_f))}
    for name, (values_a, values_b) in (per_record or {}).items():
        if len(values_a) != n or len(values_b) != n:
            raise ValueError(f"per-record {name} values do not match the {n} references")
        means[name] = np.asarray(values_a, dtype=np.float64) - np.asarray(values_b, np.float64)
    width = a.counts.shape[1]
    full_a, full_b = a.counts.sum(axis=0), b.counts.sum(axis=0)
    observed = {
        f"bleu_{k}": _System.bleu(full_a, k) - _System.bleu(full_b, k) for k in (1, BLEU_ORDER)
    }
    observed |= {name: float(d.sum() / n) for name, d in means.items()}
    # exactly the ROUGE-L F difference of ``metrics.rouge`` (mean of A minus mean of B)
    observed["rouge_l_f"] = a.observed()[1] - b.observed()[1]
    drawn: dict[str, list[np.ndarray]] = {name: [] for name in observed}
    for weights in _weights(np.random.default_rng(seed), n, n_resamples):
        totals = weights @ counts  # exact integer sums per resample
        for k in (1, BLEU_ORDER):
            drawn[f"bleu_{k}"].append(
                np.array([_System.bleu(r[:width], k) - _System.bleu(r[width:], k) for r in totals])
            )
        for name, d in means.items():
            drawn[name].append((weights @ d) / n)
    out: dict = {"n": n, "resamples": n_resamples, "seed": seed}
    for name, diff in observed.items():
        out[name] = _summary(diff, np.concatenate(drawn[name]))
    return out
