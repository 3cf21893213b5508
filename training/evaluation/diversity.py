"""How varied a system's explanations are, across records and across users of one item.

* distinct-n (Li et al. 2016): distinct n-grams over all n-grams of all outputs.
* duplicate share: share of outputs whose token sequence some other output repeats exactly.
* personalisation: for every item with two or more scored records (different users), the share
  of its record pairs whose outputs differ; averaged over those items (each item counts once).

All take metric tokens (``training.evaluation.text.tokenize``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from itertools import combinations

Tokens = Sequence[str]


def distinct_n(hypotheses: Sequence[Tokens], n: int) -> float:
    """Distinct n-grams / n-grams over all ``hypotheses`` (0.0 when there is no n-gram)."""
    grams = [tuple(h[i : i + n]) for h in hypotheses for i in range(len(h) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def duplicate_share(hypotheses: Sequence[Tokens]) -> float:
    """Share of outputs identical (as token sequences) to at least one other output."""
    if not hypotheses:
        return 0.0
    counts = Counter(tuple(h) for h in hypotheses)
    return sum(c for c in counts.values() if c > 1) / len(hypotheses)


def personalisation(item_ids: Sequence[str], hypotheses: Sequence[Tokens]) -> dict[str, float]:
    """Per item with >= 2 records: share of record pairs with different outputs; the mean over
    those items (``personalisation``), how many items and pairs it rests on."""
    if len(item_ids) != len(hypotheses):
        raise ValueError("item ids and hypotheses differ in length")
    by_item: dict[str, list[tuple[str, ...]]] = defaultdict(list)
    for item, hyp in zip(item_ids, hypotheses, strict=True):
        by_item[item].append(tuple(hyp))
    shares, pairs = [], 0
    for texts in by_item.values():
        if len(texts) < 2:
            continue
        differ = [a != b for a, b in combinations(texts, 2)]
        pairs += len(differ)
        shares.append(sum(differ) / len(differ))
    return {
        "personalisation": sum(shares) / len(shares) if shares else 0.0,
        "personalisation_items": float(len(shares)),
        "personalisation_pairs": float(pairs),
    }
