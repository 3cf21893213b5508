"""Build a feature lexicon from reviews when none is given.

Candidates are what a part-of-speech tagger (spaCy, :mod:`recx_worker.nouns`) tags as nouns:
single nouns and noun-noun compounds ("gig bag"). A candidate must pass four filters:

* **noun** - at least ``MIN_NOUN_SHARE`` of the word's occurrences are tagged as a noun, so
  adjectives and verbs ("keeps") never become features; an adjective the tagger mistakes for
  a noun ("greasy") is caught by the dictionary (:func:`recx_worker.nouns.is_adjective`);
* **specific** - its frequency in the reviews is at least e^``MIN_SPECIFICITY`` times its
  frequency in general English (wordfreq, the background corpus): domain-generic words and
  people and relations ("husband", "gift", "store") drop out, domain words ("tuner") stay,
  and so do the few generic words reviewers use as aspects (price, quality, product);
* **not a name** - written capitalised mid-sentence in at most ``MAX_CAPITALISED`` of its
  occurrences (brands and people: "Fender", "Martin");
* **not review talk** - not one of the few words every review corpus has (``REVIEW_GENRE``).

Survivors are ranked by how often they occur as nouns (compounds count half, so a compound
must be frequent in its own right) and the top ``size`` form the lexicon. (A wider dictionary
filter, lemminflect's "adjective or verb only", was measured and dropped: it removes real
aspects such as audio, desktop, tuning, sustain: precision 0.567 instead of 0.580.)
Measured on Musical Instruments against its hand-made ``features.txt``: see docs/data.md.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

from recx_worker.features import Lexicon
from recx_worker.nouns import NOUN_TAGS, is_adjective, tag, word_frequency
from training.data.text import wordset

MIN_NOUN_SHARE = 0.3
MIN_SPECIFICITY = 1.0  # natural log of (review frequency / general-English frequency)
MAX_CAPITALISED = 0.5
COMPOUND_WEIGHT = 0.5
BACKGROUND_FLOOR = 1e-8  # frequency of a word general English never uses
REVIEW_GENRE = wordset(
    "amazon star stars seller sellers shipping reviewer reviewers customer customers "
    "ones bit lot lots alot thing things"
)
_SENTENCE_END = frozenset('.!?\n"')


def _candidate(token: str) -> bool:
    return len(token) > 2 and token.isalpha()


def build_lexicon(texts: Iterable[str], size: int = 300, min_df: int | None = None) -> Lexicon:
    """The top ``size`` noun features of ``texts`` (see the module docstring); a candidate
    needs ``min_df`` documents (default: 3 to 10, growing with the corpus)."""
    df: Counter = Counter()
    as_noun: Counter = Counter()
    seen_total: Counter = Counter()
    capitalised: Counter = Counter()
    mid_sentence: Counter = Counter()
    n_tokens = n_docs = 0
    for tagged in tag(texts):
        n_docs += 1
        n_tokens += len(tagged)
        in_doc: set[str] = set()
        for i, (token, tag_, cap) in enumerate(tagged):
            seen_total[token] += 1
            previous = tagged[i - 1][0] if i else "."
            if previous[-1] not in _SENTENCE_END and not previous.isspace():
                mid_sentence[token] += 1
                capitalised[token] += cap
            if tag_ not in NOUN_TAGS or not _candidate(token):
                continue
            as_noun[token] += 1
            in_doc.add(token)
            if i + 1 < len(tagged):
                nxt, nxt_tag, _ = tagged[i + 1]
                if nxt_tag in NOUN_TAGS and _candidate(nxt):
                    compound = f"{token} {nxt}"
                    as_noun[compound] += 1
                    in_doc.add(compound)
        df.update(in_doc)

    if min_df is None:
        min_df = max(3, min(10, n_docs // 1000))

    def keep(cand: str) -> bool:
        parts = cand.split()
        if df[cand] < min_df or any(p in REVIEW_GENRE for p in parts):
            return False
        if " " not in cand and as_noun[cand] < MIN_NOUN_SHARE * seen_total[cand]:
            return False
        if is_adjective(parts[-1]):  # the tagger takes some ("greasy") for nouns
            return False
        if any(capitalised[p] > MAX_CAPITALISED * max(mid_sentence[p], 1) for p in parts):
            return False
        background = max(word_frequency(cand), BACKGROUND_FLOOR)
        return math.log(as_noun[cand] / max(n_tokens, 1) / background) >= MIN_SPECIFICITY

    scores = {
        cand: count * (COMPOUND_WEIGHT if " " in cand else 1.0)
        for cand, count in as_noun.items()
        if keep(cand)
    }
    return Lexicon(sorted(scores, key=lambda c: (-scores[c], c))[:size])


def compare(auto: Lexicon, reference: Lexicon, top: int = 300) -> dict[str, float]:
    """Precision/recall of ``auto``'s top ``top`` features against ``reference``'s top ``top``."""
    a = set(auto.features[:top])
    r = set(reference.features[:top])
    hits = len(a & r)
    return {
        "top": top,
        "auto": len(a),
        "reference": len(r),
        "overlap": hits,
        "precision": round(hits / len(a), 4) if a else 0.0,
        "recall": round(hits / len(r), 4) if r else 0.0,
    }
