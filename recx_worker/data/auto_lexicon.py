"""Build a feature lexicon from reviews when none is given (POS-free, deterministic).

Method: product aspects are nouns that reviewers *refer to*; without a POS tagger, the signal
for "is a noun" is how often a word follows a determiner or possessive ("the tuner", "my
strap", "this cable") and how often it is the subject of an opinion ("... is great"). Each
candidate unigram and bigram (no stop word, opinion word or number inside) is scored by::

    document frequency x share of occurrences after a determiner (smoothed)

Bigrams must also be collocations (observed count >= 3x the count expected from their parts)
and follow a determiner. The top ``size`` candidates, most frequent first, form the lexicon.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from recx_worker.data.text import NEGATIVE, POSITIVE
from recx_worker.features import Lexicon, words

DETERMINERS = frozenset("the this that these those my your his her their our its a an".split())
STOP = frozenset(
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
    seller dollars bucks
    """.split()
)
_EXCLUDED = STOP | ((POSITIVE | NEGATIVE) - {"quality", "value", "return", "issue"})


def _ok(token: str) -> bool:
    return len(token) > 2 and token.isalpha() and token not in _EXCLUDED


def build_lexicon(texts: Iterable[str], size: int = 300, min_df: int = 10) -> Lexicon:
    """The top ``size`` aspect candidates of ``texts`` (see module docstring)."""
    df: Counter = Counter()
    after_det: Counter = Counter()
    total: Counter = Counter()
    uni: Counter = Counter()
    n_tokens = 0
    for text in texts:
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
            seen.add(tok)
            if i + 1 < len(tokens) and _ok(tokens[i + 1]):
                bigram = f"{tok} {tokens[i + 1]}"
                total[bigram] += 1
                after_det[bigram] += det
                seen.add(bigram)
        df.update(seen)
    scored: dict[str, float] = {}
    for cand, freq in df.items():
        if freq < min_df:
            continue
        det_share = (after_det[cand] + 1) / (total[cand] + 5)
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
