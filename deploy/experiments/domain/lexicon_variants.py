"""Variants of the automatic lexicon measured against a reference (docs/data.md, "Variants
measured"). Parses the reviews once (spaCy, as `recx data lexicon`) and caches the parses,
counts them with the product's own `CandidateCounts`, then counts the top-300 overlap of each
variant with the reference. The first row must equal the product's lexicon (asserted).

    PYTHONPATH=$PWD python deploy/experiments/domain/lexicon_variants.py \
        data/amazon-2014-musical-instruments-5core/reviews_Musical_Instruments_5.json.gz \
        data/amazon-2014-musical-instruments-5core/features.txt /tmp/mi_parsed.pkl
"""

from __future__ import annotations

import math
import pickle
import sys
from collections import Counter, defaultdict
from pathlib import Path

from recx_worker.features import Lexicon
from recx_worker.nouns import is_adjective, noun_lemma, number_forms, parse
from recx_worker.nouns import word_frequency as wf
from training.data.auto_lexicon import (
    BACKGROUND_FLOOR,
    OPINION_WEIGHT,
    RESCUE_OPINION_SHARE,
    RESCUE_SPECIFICITY,
    REVIEW_GENRE,
    CandidateCounts,
    default_min_df,
    rank_candidates,
)
from training.data.readers import read_reviews

reviews_path, reference_path, cache = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
reviews = list(read_reviews(reviews_path, "auto"))
if cache.is_file():
    tagged_all = pickle.loads(cache.read_bytes())
else:
    tagged_all = list(parse(r.text for r in reviews))
    cache.write_bytes(pickle.dumps(tagged_all))
ref = set(Lexicon.load(reference_path).features[:300])

counts = CandidateCounts()
item_sets: dict[str, set[str]] = defaultdict(set)
for review, tagged in zip(reviews, tagged_all, strict=True):
    for c in counts.add(tagged):
        item_sets[c].add(review.item_id)
df, as_noun, seen, cap, mid = (
    counts.df, counts.as_noun, counts.seen_total, counts.capitalised, counts.mid_sentence
)  # fmt: skip
n_tokens = counts.n_tokens
min_df = default_min_df(len(reviews))
n_items = len({r.item_id for r in reviews})
spec = counts.specificity
# Every adjective counted as an opinion, not only those VADER's lexicon rates.
any_adjective = CandidateCounts(is_opinion=lambda word: True)
for tagged in tagged_all:
    any_adjective.add(tagged)
# Share of a word's noun uses that modify another noun ("watt" in "15 watt amp").
as_modifier, noun_uses = Counter(), Counter()
for tagged in tagged_all:
    for tok, t, _, dep, _ in tagged:
        if t.startswith("NN"):
            noun_uses[tok] += 1
            as_modifier[tok] += dep == "compound"


def spec_word(p: str) -> float:
    return math.log(max(seen[p], 1) / n_tokens / max(wf(p), BACKGROUND_FLOOR))


def forms(c: str) -> list[str]:
    parts = c.split()
    return [" ".join([*parts[:-1], f]) for f in number_forms(parts[-1])]


def spec_lemma(c: str) -> float:
    fs = forms(c)
    count = sum(as_noun[f] for f in fs)
    return math.log(count / n_tokens / max(sum(wf(f) for f in fs), BACKGROUND_FLOOR))


def run(
    noun_share=0.3, min_spec=1.0, max_cap=0.5, cw=0.5, compound="phrase", lemma_spec=False,
    brand_spec=None, lemma_rank=0.0, beta=0.0, rank="count", gamma=0.0,
    rescue_spec=RESCUE_SPECIFICITY, rescue_share=RESCUE_OPINION_SHARE, ow=OPINION_WEIGHT,
    opinions=counts, ns_rescue=None, modifier=None,
) -> int:  # fmt: skip
    def keep(c: str) -> bool:
        parts = c.split()
        if df[c] < min_df or any(p in REVIEW_GENRE for p in parts):
            return False
        if " " not in c and as_noun[c] < noun_share * seen[c]:
            low, share = ns_rescue or (noun_share, 9.0)  # (noun share, opinion share)
            if as_noun[c] < low * seen[c] or opinions.opinion_share(c) < share:
                return False
        if modifier is not None and " " not in c and as_modifier[c] >= modifier * noun_uses[c]:
            return False
        if is_adjective(parts[-1]):
            return False
        for p in parts:
            if cap[p] > max_cap * max(mid[p], 1) and (brand_spec is None or spec(p) < brand_spec):
                return False
        s = spec_lemma(c) if lemma_spec else spec(c)
        if " " in c and compound != "phrase":
            per_part = [spec_word(p) for p in parts]
            s = {"max part": max, "min part": min}.get(compound, lambda x: x[-1])(per_part)
        return s >= min_spec or (s >= rescue_spec and opinions.opinion_share(c) >= rescue_share)

    kept = [c for c in as_noun if keep(c)]
    groups: Counter = Counter()
    for c in kept:
        groups[(*c.split()[:-1], noun_lemma(c.split()[-1]))] += as_noun[c]

    def score(c: str) -> float:
        base = {"count": as_noun[c], "docs": df[c], "items": len(item_sets[c])}[rank]
        if lemma_rank:
            group = groups[(*c.split()[:-1], noun_lemma(c.split()[-1]))]
            base += lemma_rank * (group - as_noun[c])
        if beta:
            base *= min(spec(c), 8) ** beta
        if gamma:
            base *= (len(item_sets[c]) / n_items) ** gamma
        base *= 1.0 + ow * opinions.opinion_share(c)
        return base * (cw if " " in c else 1.0)

    top = sorted(kept, key=lambda c: (-score(c), c))[:300]
    return len(set(top) & ref)


BEFORE = {"ow": 0.0, "rescue_share": 9.0}  # the second round's base: no opinion evidence
VARIANTS = {
    "shipped (third round: opinion rescue e^0.5 / 0.3, rank x (1 + 2 x opinion share))": {},
    "opinion ranking only (no rescue)": {"rescue_share": 9.0},
    "opinion rescue only (rank by count)": {"ow": 0.0},
    "opinion weight 1": {"ow": 1.0},
    "opinion weight 3": {"ow": 3.0},
    "rescue down to e^0.4": {"rescue_spec": 0.4},
    "rescue down to e^0.6": {"rescue_spec": 0.6},
    "rescue down to e^0 (share 0.3)": {"rescue_spec": 0.0},
    "rescue opinion share 0.25": {"rescue_share": 0.25},
    "rescue opinion share 0.35": {"rescue_share": 0.35},
    "any adjective is an opinion (not only VADER's)": {"opinions": any_adjective},
    "+ noun share 0.2 with opinion share >= 0.3 (sounds)": {"ns_rescue": (0.2, 0.3)},
    "+ drop words that modify a noun in >= 80 % of uses (watt, volt, pop)": {"modifier": 0.8},
    "+ both of the above": {"ns_rescue": (0.2, 0.3), "modifier": 0.8},
    "second round's shipped (noun share 0.3, specificity e, compounds x0.5)": BEFORE,
    "compound weight 0.7": {"cw": 0.7, **BEFORE},
    "noun share 0.2, compound weight 0.7": {"noun_share": 0.2, "cw": 0.7, **BEFORE},
    "noun share 0.2, compound weight 1.0": {"noun_share": 0.2, "cw": 1.0, **BEFORE},
    "specificity e^0.5 (keeps value, weight, cost)": {"min_spec": 0.5, **BEFORE},
    "compound background = its head word": {"compound": "head", "cw": 0.7, **BEFORE},
    "compound background = its most specific word": {"compound": "max part", "cw": 0.7, **BEFORE},
    "compound background = its least specific word": {"compound": "min part", "cw": 0.7, **BEFORE},
    "specificity of the lemma (singular + plural)": {"lemma_spec": True, **BEFORE},
    "rank by lemma count (x0.5 of the other form)": {"lemma_rank": 0.5, **BEFORE},
    "rank by count x specificity^0.5": {"beta": 0.5, **BEFORE},
    "rank by count x specificity": {"beta": 1.0, **BEFORE},
    "rank by documents": {"rank": "docs", **BEFORE},
    "rank by items reviewed": {"rank": "items", **BEFORE},
    "rank by count x item share^0.5": {"gamma": 0.5, **BEFORE},
    "capitalised kept when specificity >= e^4 (brands)": {"brand_spec": 4, **BEFORE},
    "capitalised kept when specificity >= e^6 (brands)": {"brand_spec": 6, **BEFORE},
}
# The first row must be the product's own lexicon (same counts, same filters, same ranking).
assert run() == len(set(rank_candidates(counts).features) & ref), "run() drifted from the product"
for name, kwargs in VARIANTS.items():
    hits = run(**kwargs)
    print(f"| {name} | {hits} | {hits / 300:.3f} |", flush=True)
