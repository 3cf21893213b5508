"""Build a feature lexicon from reviews when none is given.

Candidates are what a part-of-speech tagger (spaCy, :mod:`recx_worker.nouns`) tags as nouns:
single nouns and noun-noun compounds ("gig bag"). The parser says which noun uses are
*opinion targets*: what an opinion adjective (one VADER's lexicon rates) modifies ("great
value") or complements as the subject of a copula ("the construction is solid"). A candidate
must pass four filters:

* **noun** - at least ``MIN_NOUN_SHARE`` of the word's occurrences are tagged as a noun, so
  adjectives and verbs ("keeps") never become features; an adjective the tagger mistakes for
  a noun ("greasy") is caught by the dictionary (:func:`recx_worker.nouns.is_adjective`);
* **specific** - its frequency in the reviews is at least e^``MIN_SPECIFICITY`` times its
  frequency in general English (wordfreq, the background corpus): domain-generic words and
  people and relations ("husband", "gift", "store") drop out, domain words ("tuner") stay,
  and so do the few generic words reviewers use as aspects (price, quality, product); a
  candidate down to e^``RESCUE_SPECIFICITY`` is kept when at least ``RESCUE_OPINION_SHARE``
  of its noun uses are opinion targets (value, construction; a person word as common,
  "husband", is rarely what "solid" or "great" is about);
* **not a name** - written capitalised mid-sentence in at most ``MAX_CAPITALISED`` of its
  occurrences (brands and people: "Fender", "Martin");
* **not review talk** - not one of the few words every review corpus has (``REVIEW_GENRE``).

Survivors are ranked by how often they occur as nouns times (1 + ``OPINION_WEIGHT`` x their
opinion-target share) (compounds count half, so a compound must be frequent in its own right)
and the top ``size`` form the lexicon. (A wider dictionary
filter, lemminflect's "adjective or verb only", was measured and dropped: it removes real
aspects such as audio, desktop, tuning, sustain: precision 0.567 instead of 0.580.)
Measured on Musical Instruments against its hand-made ``features.txt``: see docs/data.md.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from recx_worker.features import Lexicon
from recx_worker.nouns import NOUN_TAGS, Parsed, is_adjective, parse, word_frequency
from recx_worker.sentiment import is_opinion_word
from training.data.text import wordset

MIN_NOUN_SHARE = 0.3
MIN_SPECIFICITY = 1.0  # natural log of (review frequency / general-English frequency)
MAX_CAPITALISED = 0.5
COMPOUND_WEIGHT = 0.5
BACKGROUND_FLOOR = 1e-8  # frequency of a word general English never uses
RESCUE_SPECIFICITY = 0.5  # ... admitted down to e^0.5 when opinions are often about it:
RESCUE_OPINION_SHARE = 0.3  # at least this share of its noun uses is an opinion's target
OPINION_WEIGHT = 2.0  # rank by count x (1 + OPINION_WEIGHT x opinion share)
_ADJECTIVE_TAGS = frozenset({"JJ", "JJR", "JJS"})
_OPINION_DEPS = frozenset({"amod", "acomp"})
_SUBJECTS = frozenset({"nsubj", "nsubjpass"})
REVIEW_GENRE = wordset(
    "amazon star stars seller sellers shipping reviewer reviewers customer customers "
    "ones bit lot lots alot thing things job"  # job: "does a great job", any domain
)
_SENTENCE_END = frozenset('.!?\n"')


def _candidate(token: str) -> bool:
    return len(token) > 2 and token.isalpha()


@dataclass
class CandidateCounts:
    """What the filters and the ranking read, counted over tagged reviews."""

    df: Counter = field(default_factory=Counter)  # documents naming the candidate as a noun
    as_noun: Counter = field(default_factory=Counter)  # occurrences tagged as a noun
    seen_total: Counter = field(default_factory=Counter)  # occurrences of a word, any tag
    capitalised: Counter = field(default_factory=Counter)  # ... capitalised mid-sentence
    mid_sentence: Counter = field(default_factory=Counter)  # ... mid-sentence
    opinion: Counter = field(default_factory=Counter)  # noun uses an opinion word is about
    is_opinion: Callable[[str], bool] = is_opinion_word  # which adjectives are opinions
    n_tokens: int = 0
    n_docs: int = 0

    def add(self, parsed: Parsed) -> set[str]:
        """Count one parsed document; return its candidates (nouns and noun-noun compounds)."""
        self.n_docs += 1
        self.n_tokens += len(parsed)
        targets = opinion_targets(parsed, self.is_opinion)
        in_doc: set[str] = set()
        for i, (token, tag_, cap, _, _) in enumerate(parsed):
            self.seen_total[token] += 1
            previous = parsed[i - 1][0] if i else "."
            if previous[-1] not in _SENTENCE_END and not previous.isspace():
                self.mid_sentence[token] += 1
                self.capitalised[token] += cap
            if tag_ not in NOUN_TAGS or not _candidate(token):
                continue
            self.as_noun[token] += 1
            self.opinion[token] += i in targets
            in_doc.add(token)
            if i + 1 < len(parsed):
                nxt, nxt_tag = parsed[i + 1][:2]
                if nxt_tag in NOUN_TAGS and _candidate(nxt):
                    compound = f"{token} {nxt}"
                    self.as_noun[compound] += 1
                    self.opinion[compound] += i + 1 in targets
                    in_doc.add(compound)
        self.df.update(in_doc)
        return in_doc

    def opinion_share(self, cand: str) -> float:
        """Share of the candidate's noun uses that are the target of an opinion word."""
        return self.opinion[cand] / max(self.as_noun[cand], 1)

    def specificity(self, cand: str) -> float:
        """Natural log of the candidate's noun frequency here over its general-English one."""
        background = max(word_frequency(cand), BACKGROUND_FLOOR)
        return math.log(self.as_noun[cand] / max(self.n_tokens, 1) / background)


def opinion_targets(
    parsed: Parsed, is_opinion: Callable[[str], bool] = is_opinion_word
) -> set[int]:
    """Indexes of the tokens an opinion adjective is about: the noun it modifies ("great
    value", "a solid construction"), or the subject of a copula it complements ("the
    construction is solid"). An opinion word is one VADER's lexicon rates
    (:func:`recx_worker.sentiment.is_opinion_word`), so "long time", "heavy duty", "wide range"
    are no opinions."""
    targets: set[int] = set()
    complemented: set[int] = set()  # copulas with an opinion adjective as complement
    for token, tag_, _, dep, head in parsed:
        if dep in _OPINION_DEPS and tag_ in _ADJECTIVE_TAGS and is_opinion(token):
            (targets if dep == "amod" else complemented).add(head)
    if complemented:
        targets.update(
            i
            for i, (*_, dep, head) in enumerate(parsed)
            if dep in _SUBJECTS and head in complemented
        )
    return targets


def count_candidates(parsed_docs: Iterable[Parsed]) -> CandidateCounts:
    """The counts of every parsed document (one pass)."""
    counts = CandidateCounts()
    for parsed in parsed_docs:
        counts.add(parsed)
    return counts


def default_min_df(n_docs: int) -> int:
    """Documents a candidate needs: 3 to 10, growing with the corpus."""
    return max(3, min(10, n_docs // 1000))


def build_lexicon(texts: Iterable[str], size: int = 300, min_df: int | None = None) -> Lexicon:
    """The top ``size`` noun features of ``texts`` (see the module docstring); a candidate
    needs ``min_df`` documents (default: :func:`default_min_df`)."""
    return rank_candidates(count_candidates(parse(texts)), size, min_df)


def rank_candidates(counts: CandidateCounts, size: int = 300, min_df: int | None = None) -> Lexicon:
    """The top ``size`` candidates of ``counts`` that pass the filters."""
    c = counts
    if min_df is None:
        min_df = default_min_df(c.n_docs)

    def keep(cand: str) -> bool:
        parts = cand.split()
        if c.df[cand] < min_df or any(p in REVIEW_GENRE for p in parts):
            return False
        if " " not in cand and c.as_noun[cand] < MIN_NOUN_SHARE * c.seen_total[cand]:
            return False
        if is_adjective(parts[-1]):  # the tagger takes some ("greasy") for nouns
            return False
        if any(c.capitalised[p] > MAX_CAPITALISED * max(c.mid_sentence[p], 1) for p in parts):
            return False
        specificity = c.specificity(cand)
        return specificity >= MIN_SPECIFICITY or (
            specificity >= RESCUE_SPECIFICITY and c.opinion_share(cand) >= RESCUE_OPINION_SHARE
        )

    scores = {
        cand: count
        * (1.0 + OPINION_WEIGHT * c.opinion_share(cand))
        * (COMPOUND_WEIGHT if " " in cand else 1.0)
        for cand, count in c.as_noun.items()
        if keep(cand)
    }
    return Lexicon(sorted(scores, key=lambda cand: (-scores[cand], cand))[:size])


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
