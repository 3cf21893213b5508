"""Variants of the automatic lexicon measured against a reference (docs/data.md, "Variants
measured"). Tags the reviews once (spaCy, as `recx data lexicon`) and caches the tags, then
counts the top-300 overlap of each variant with the reference.

    PYTHONPATH=$PWD python deploy/experiments/domain/lexicon_variants.py \
        data/amazon-2014-musical-instruments-5core/reviews_Musical_Instruments_5.json.gz \
        data/amazon-2014-musical-instruments-5core/features.txt /tmp/mi_tagged.pkl
"""

from __future__ import annotations

import math
import pickle
import sys
from collections import Counter, defaultdict
from pathlib import Path

from recx_worker.features import Lexicon
from recx_worker.nouns import NOUN_TAGS, is_adjective, noun_lemma, number_forms, tag
from recx_worker.nouns import word_frequency as wf
from training.data.auto_lexicon import _SENTENCE_END, BACKGROUND_FLOOR, REVIEW_GENRE, _candidate
from training.data.readers import read_reviews

reviews_path, reference_path, cache = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
reviews = list(read_reviews(reviews_path, "auto"))
if cache.is_file():
    tagged_all = pickle.loads(cache.read_bytes())
else:
    tagged_all = list(tag(r.text for r in reviews))
    cache.write_bytes(pickle.dumps(tagged_all))
ref = set(Lexicon.load(reference_path).features[:300])

df, as_noun, seen, cap, mid = Counter(), Counter(), Counter(), Counter(), Counter()
item_sets: dict[str, set[str]] = defaultdict(set)
n_tokens = 0
for review, tagged in zip(reviews, tagged_all, strict=True):
    n_tokens += len(tagged)
    in_doc: set[str] = set()
    for i, (tok, t, c) in enumerate(tagged):
        seen[tok] += 1
        prev = tagged[i - 1][0] if i else "."
        if prev[-1] not in _SENTENCE_END and not prev.isspace():
            mid[tok] += 1
            cap[tok] += c
        if t not in NOUN_TAGS or not _candidate(tok):
            continue
        as_noun[tok] += 1
        in_doc.add(tok)
        if i + 1 < len(tagged) and tagged[i + 1][1] in NOUN_TAGS and _candidate(tagged[i + 1][0]):
            compound = f"{tok} {tagged[i + 1][0]}"
            as_noun[compound] += 1
            in_doc.add(compound)
    df.update(in_doc)
    for c in in_doc:
        item_sets[c].add(review.item_id)
min_df = max(3, min(10, len(reviews) // 1000))
n_items = len({r.item_id for r in reviews})


def spec(c: str) -> float:
    return math.log(as_noun[c] / n_tokens / max(wf(c), BACKGROUND_FLOOR))


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
) -> int:  # fmt: skip
    def keep(c: str) -> bool:
        parts = c.split()
        if df[c] < min_df or any(p in REVIEW_GENRE for p in parts):
            return False
        if " " not in c and as_noun[c] < noun_share * seen[c]:
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
        return s >= min_spec

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
        return base * (cw if " " in c else 1.0)

    top = sorted(kept, key=lambda c: (-score(c), c))[:300]
    return len(set(top) & ref)


VARIANTS = {
    "shipped (noun share 0.3, specificity e, compounds x0.5)": {},
    "compound weight 0.7": {"cw": 0.7},
    "noun share 0.2, compound weight 0.7": {"noun_share": 0.2, "cw": 0.7},
    "noun share 0.2, compound weight 1.0": {"noun_share": 0.2, "cw": 1.0},
    "specificity e^0.5 (keeps value, weight, cost)": {"min_spec": 0.5},
    "compound background = its head word": {"compound": "head", "cw": 0.7},
    "compound background = its most specific word": {"compound": "max part", "cw": 0.7},
    "compound background = its least specific word": {"compound": "min part", "cw": 0.7},
    "specificity of the lemma (singular + plural)": {"lemma_spec": True},
    "rank by lemma count (x0.5 of the other form)": {"lemma_rank": 0.5},
    "rank by count x specificity^0.5": {"beta": 0.5},
    "rank by count x specificity": {"beta": 1.0},
    "rank by documents": {"rank": "docs"},
    "rank by items reviewed": {"rank": "items"},
    "rank by count x item share^0.5": {"gamma": 0.5},
    "capitalised kept when specificity >= e^4 (brands)": {"brand_spec": 4},
    "capitalised kept when specificity >= e^6 (brands)": {"brand_spec": 6},
}
for name, kwargs in VARIANTS.items():
    hits = run(**kwargs)
    print(f"| {name} | {hits} | {hits / 300:.3f} |", flush=True)
