"""Build a feature lexicon from reviews when none is given (POS-free, deterministic).

Method: product aspects are nouns that reviewers *refer to*; without a POS tagger, the signal
for "is a noun" is how often a word follows a determiner or possessive ("the tuner", "my
strap", "this cable"). Each candidate unigram and bigram (no stop word, opinion word, number
or -ly adverb inside) is scored by::

    document frequency x share of occurrences after a determiner (smoothed)

Adjectives are dropped: a candidate that follows an intensifier ("very", "too", "pretty") in
more than 3 % of its occurrences is not a noun. Bigrams must also be collocations (observed
count >= 3x the count expected from their parts) and follow a determiner. The top ``size``
candidates, most frequent first, form the lexicon.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from recx_worker.features import Lexicon, words
from training.data.text import NEGATIVE, POSITIVE, wordset

DETERMINERS = wordset("the this that these those my your his her their our its a an")
STOP = wordset(
    """
    a an the this that these those my your his her their our its it it's i i'm i've i'd me we
    you he she they them us and or but if so than then too very really just also only even
    still not no nor of in on at to for from by with about as into onto over under after
    before out up down off again more most much many some any all each every both few other
    such own same is are was were be been being am have has had having do does did doing
    will would can could should shall may might must one two three four five six seven eight
    nine ten lot lots bit thing things way ways time times day days year years week weeks
    month months something anything everything nothing someone anyone everyone people person
    guy guys while since because though although until what which who whom whose when where
    why how there here there's that's what's don't doesn't didn't isn't wasn't aren't won't
    can't couldn't wouldn't get got gets getting make makes made go goes went use used using
    uses work works worked need needs needed want wants wanted buy bought say said know knew
    think thought see saw look looks looked come came take took give gave put keep kept find
    found try tried first last next new old little big long high low right left sure well
    back around enough though however instead either neither yes ok okay etc amazon star
    stars review reviews reviewer item items purchase purchased order ordered company
    seller dollars bucks kind fact couple ones others point reason place end job deal idea
    stuff whole mine part piece side top bottom overall without now always never quite
    definitely actually probably especially almost yet ever once simply absolutely another
    through going seems seem feel feels comes built set play looking pretty different real
    super extra plus true open single regular original huge half past second means matter
    amount included opinion friend name
    """
)
INTENSIFIERS = wordset(
    "very so too quite really pretty more most less fairly extremely super rather somewhat"
)
_EXCLUDED = STOP | ((POSITIVE | NEGATIVE) - {"quality", "value", "return", "issue"})


def _ok(token: str) -> bool:
    return len(token) > 2 and token.isalpha() and token not in _EXCLUDED


def _comparative(tok: str, adjective) -> bool:
    """``tok`` is the -er form of an adjective (smaller, larger, heavier, bigger)."""
    if not tok.endswith("er") or len(tok) < 5:
        return False
    stems = (tok[:-2], tok[:-1], tok[:-3] + "y", tok[:-3])
    return any(adjective(stem) for stem in stems if len(stem) > 2)


def build_lexicon(texts: Iterable[str], size: int = 300, min_df: int | None = None) -> Lexicon:
    """The top ``size`` aspect candidates of ``texts`` (see module docstring); a candidate
    needs ``min_df`` documents (default: 2 to 10, growing with the corpus)."""
    df: Counter = Counter()
    after_det: Counter = Counter()
    after_int: Counter = Counter()
    total: Counter = Counter()
    uni: Counter = Counter()
    n_tokens = n_docs = 0
    for text in texts:
        n_docs += 1
        tokens = words(text)
        n_tokens += len(tokens)
        seen: set[str] = set()
        for i, tok in enumerate(tokens):
            uni[tok] += 1
            if not _ok(tok):
                continue
            det = i > 0 and tokens[i - 1] in DETERMINERS
            total[tok] += 1
            after_det[tok] += det
            after_int[tok] += i > 0 and tokens[i - 1] in INTENSIFIERS
            seen.add(tok)
            if i + 1 < len(tokens) and _ok(tokens[i + 1]):
                bigram = f"{tok} {tokens[i + 1]}"
                total[bigram] += 1
                after_det[bigram] += det
                seen.add(bigram)
        df.update(seen)

    def adjective(tok: str) -> bool:
        return tok in _EXCLUDED or after_int[tok] > 0.03 * max(total[tok], 1)

    if min_df is None:
        min_df = max(2, min(10, n_docs // 500))
    scored: dict[str, float] = {}
    for cand, freq in df.items():
        if freq < min_df:
            continue
        det_share = (after_det[cand] + 1) / (total[cand] + 5)
        parts = cand.split()
        if any(after_int[p] > 0.03 * total[p] for p in parts):
            continue  # an adjective ("small", "heavy")
        if any(p.endswith("ly") and p[:-2] in uni for p in parts):
            continue  # an adverb ("fairly"); "supply" and "assembly" stay
        if any(_comparative(p, adjective) for p in parts):
            continue  # "smaller", "heavier"
        if " " in cand:
            a, b = cand.split()
            expected = uni[a] * uni[b] / max(n_tokens, 1)
            if total[cand] < 3 * expected or det_share < 0.2:
                continue
        elif det_share < 0.1:
            continue
        scored[cand] = freq * det_share
    top = sorted(scored, key=lambda c: (-scored[c], c))[:size]
    top.sort(key=lambda c: (-df[c], c))
    return Lexicon(top)


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
