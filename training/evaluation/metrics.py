"""Explanation-quality metrics, defined as in the PETER/PEPLER evaluation code.

* BLEU-n: corpus-level, one reference per sample, uniform weights up to order n, no smoothing,
  brevity penalty (the TensorFlow NMT ``compute_bleu`` that PETER calls), x100.
* ROUGE-1/2: per sample over *sets* of n-grams, P/R/F1 (F1 = 2PR/(P+R+1e-8)), averaged, x100.
* ROUGE-L: per sample over the longest common subsequence, P = LCS/len(hyp), R = LCS/len(ref),
  F with beta = P/R as in the seq2seq ``rouge.py`` PETER uses, averaged, x100.
* USR: distinct generated token sequences / samples.
* FMR: share of samples whose generated tokens contain the record's ground-truth feature.
* FCR: distinct features in any generated text / a denominator (PETER: distinct features of the
  dataset's records; the lexicon size is reported beside it).
* DIV: mean over pairs i<j of |F_i & F_j| (lower is better), in O(sum |F_i|) via feature counts.

A text "contains" a feature when the feature's tokens occur contiguously in the text's tokens.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

from recx_worker.textsim import lcs_length
from training.evaluation.text import tokenize

Tokens = Sequence[str]


# ---------------------------------------------------------------- BLEU


def _ngram_counts(tokens: Tokens, max_order: int) -> Counter[tuple[str, ...]]:
    counts: Counter[tuple[str, ...]] = Counter()
    for order in range(1, max_order + 1):
        for i in range(len(tokens) - order + 1):
            counts[tuple(tokens[i : i + order])] += 1
    return counts


def bleu_counts(
    reference: Tokens, hypothesis: Tokens, max_order: int
) -> tuple[list[int], list[int]]:
    """One sample's clipped n-gram matches and hypothesis n-grams, per order 1..``max_order``."""
    matches = [0] * max_order
    overlap = _ngram_counts(hypothesis, max_order) & _ngram_counts(reference, max_order)
    for ngram, count in overlap.items():
        matches[len(ngram) - 1] += count
    possible = [max(0, len(hypothesis) - order + 1) for order in range(1, max_order + 1)]
    return matches, possible


def bleu_from_counts(
    matches: Sequence[int], possible: Sequence[int], ref_len: int, hyp_len: int
) -> float:
    """BLEU x100 from corpus totals (the order is ``len(matches)``)."""
    max_order = len(matches)
    precisions = [m / p if p > 0 else 0.0 for m, p in zip(matches, possible, strict=True)]
    if min(precisions) <= 0 or ref_len == 0:
        return 0.0
    geo_mean = math.exp(sum(math.log(p) / max_order for p in precisions))
    ratio = hyp_len / ref_len
    brevity = 1.0 if ratio > 1.0 else math.exp(1 - 1 / ratio)
    return 100.0 * geo_mean * brevity


def bleu_totals(
    references: Sequence[Tokens], hypotheses: Sequence[Tokens], max_order: int
) -> tuple[list[int], list[int], int, int]:
    """Corpus sums for BLEU: clipped n-gram matches and hypothesis n-grams per order
    1..``max_order``, total reference length, total hypothesis length."""
    if len(references) != len(hypotheses):
        raise ValueError("references and hypotheses differ in length")
    matches = [0] * max_order
    possible = [0] * max_order
    ref_len = hyp_len = 0
    for ref, hyp in zip(references, hypotheses, strict=True):
        ref_len += len(ref)
        hyp_len += len(hyp)
        m, p = bleu_counts(ref, hyp, max_order)
        for k in range(max_order):
            matches[k] += m[k]
            possible[k] += p[k]
    return matches, possible, ref_len, hyp_len


def corpus_bleu(
    references: Sequence[Tokens], hypotheses: Sequence[Tokens], max_order: int
) -> float:
    """Corpus BLEU-``max_order`` x100 (one reference per hypothesis, no smoothing)."""
    return bleu_from_counts(*bleu_totals(references, hypotheses, max_order))


# ---------------------------------------------------------------- ROUGE


def _ngram_set(tokens: Tokens, n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def rouge_n(reference: Tokens, hypothesis: Tokens, n: int) -> tuple[float, float, float]:
    """(precision, recall, F1) of one sample over n-gram sets."""
    hyp, ref = _ngram_set(hypothesis, n), _ngram_set(reference, n)
    overlap = len(hyp & ref)
    precision = overlap / len(hyp) if hyp else 0.0
    recall = overlap / len(ref) if ref else 0.0
    return precision, recall, 2.0 * precision * recall / (precision + recall + 1e-8)


def rouge_l(reference: Tokens, hypothesis: Tokens) -> tuple[float, float, float]:
    """(precision, recall, F) of one sample over the LCS; F uses beta = P/R (seq2seq rouge.py)."""
    if not reference or not hypothesis:
        return 0.0, 0.0, 0.0
    lcs = lcs_length(hypothesis, reference)
    recall, precision = lcs / len(reference), lcs / len(hypothesis)
    beta = precision / (recall + 1e-12)
    num = (1 + beta**2) * recall * precision
    denom = recall + beta**2 * precision
    return precision, recall, num / (denom + 1e-12)


def rouge(references: Sequence[Tokens], hypotheses: Sequence[Tokens]) -> dict[str, float]:
    """ROUGE-1/2/L precision, recall and F averaged over samples, x100."""
    if len(references) != len(hypotheses):
        raise ValueError("references and hypotheses differ in length")
    if not references:
        return {}
    scores: dict[str, float] = {}
    scorers = {
        "rouge_1": lambda r, h: rouge_n(r, h, 1),
        "rouge_2": lambda r, h: rouge_n(r, h, 2),
        "rouge_l": rouge_l,
    }
    for name, scorer in scorers.items():
        triples = [scorer(r, h) for r, h in zip(references, hypotheses, strict=True)]
        for k, key in enumerate(("p", "r", "f")):
            scores[f"{name}_{key}"] = 100.0 * sum(t[k] for t in triples) / len(triples)
    return scores


# ---------------------------------------------------------------- USR and features


def unique_sentence_ratio(hypotheses: Sequence[Tokens]) -> float:
    """USR: distinct token sequences / samples."""
    if not hypotheses:
        return 0.0
    return len({tuple(h) for h in hypotheses}) / len(hypotheses)


class FeatureMatcher:
    """Finds features as contiguous token runs in metric tokens (multi-word features too)."""

    def __init__(self, features: Iterable[str]):
        self._by_first: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        for feature in features:
            toks = tuple(tokenize(feature))
            if toks:
                self._by_first.setdefault(toks[0], []).append((toks, feature))

    def find(self, tokens: Tokens) -> set[str]:
        """Every feature whose tokens occur contiguously in ``tokens``."""
        found: set[str] = set()
        for i, tok in enumerate(tokens):
            for feat_toks, name in self._by_first.get(tok, ()):
                if tuple(tokens[i : i + len(feat_toks)]) == feat_toks:
                    found.add(name)
        return found

    @staticmethod
    def contains(tokens: Tokens, feature: str) -> bool:
        """Whether ``feature``'s tokens occur contiguously in ``tokens``."""
        feat = tokenize(feature)
        n = len(feat)
        return n > 0 and any(list(tokens[i : i + n]) == feat for i in range(len(tokens) - n + 1))


def feature_matching_ratio(hypotheses: Sequence[Tokens], features: Sequence[str]) -> float:
    """FMR: share of samples whose generated tokens contain their ground-truth feature."""
    if not hypotheses:
        return 0.0
    hits = sum(FeatureMatcher.contains(h, f) for h, f in zip(hypotheses, features, strict=True))
    return hits / len(hypotheses)


def feature_coverage_ratio(feature_sets: Iterable[set[str]], denominator: int) -> float:
    """FCR: distinct generated features / ``denominator``."""
    covered: set[str] = set().union(*feature_sets)
    return len(covered) / denominator if denominator else 0.0


def feature_diversity(feature_sets: Sequence[set[str]]) -> float:
    """DIV: mean |F_i & F_j| over pairs i<j, as sum_f C(n_f, 2) / C(N, 2)."""
    n = len(feature_sets)
    if n < 2:
        return 0.0
    counts = Counter(f for fs in feature_sets for f in fs)
    shared = sum(c * (c - 1) // 2 for c in counts.values())
    return shared / (n * (n - 1) / 2)


def feature_diversity_naive(feature_sets: Sequence[set[str]]) -> float:
    """DIV by the quadratic definition (reference for tests)."""
    n = len(feature_sets)
    if n < 2:
        return 0.0
    total = sum(len(feature_sets[i] & feature_sets[j]) for i in range(n) for j in range(i + 1, n))
    return total / (n * (n - 1) / 2)


# ---------------------------------------------------------------- everything at once


def score(
    generated: Sequence[str],
    references: Sequence[str],
    gt_features: Sequence[str],
    matcher: FeatureMatcher,
    fcr_denominators: dict[str, int],
    reference_words: int | None,
) -> dict[str, float]:
    """All literature metrics for one system; references truncated to ``reference_words``."""
    hyps = [tokenize(t) for t in generated]
    refs = [tokenize(t)[:reference_words] if reference_words else tokenize(t) for t in references]
    sets = [matcher.find(h) for h in hyps]
    matches, possible, ref_len, hyp_len = bleu_totals(refs, hyps, 4)
    out = {
        # BLEU-1 and BLEU-4 from one counting pass (unigram counts do not depend on the order)
        "bleu_1": bleu_from_counts(matches[:1], possible[:1], ref_len, hyp_len),
        "bleu_4": bleu_from_counts(matches, possible, ref_len, hyp_len),
        **rouge(refs, hyps),
        "usr": unique_sentence_ratio(hyps),
        "fmr": feature_matching_ratio(hyps, gt_features),
        "div": feature_diversity(sets),
        "mean_tokens": sum(map(len, hyps)) / len(hyps) if hyps else 0.0,
        # clipped 1- to 4-gram matches with the references, summed: BLEU-4 rests on the last
        "ngram_matches": matches,
    }
    for name, denom in fcr_denominators.items():
        out[f"fcr_{name}"] = feature_coverage_ratio(sets, denom)
    return out
