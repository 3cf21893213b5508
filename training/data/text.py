"""Sentence splitting and a small opinion lexicon with negation (no model, deterministic)."""

from __future__ import annotations

import re

from recx_worker.features import words

# A sentence ends at . ! ? (or a run of them) followed by space or by a capital letter glued to
# it ("affordable.The price"), and at line breaks. Decimal numbers ("1.5") are not split.
# Frozen with the published split (changing it changes the records and so the split): a
# glued one-letter word ("works.I like it") is not split.
_SPLIT = re.compile(r"(?<=[.!?])(?:\s+|(?=[A-Z][a-z]))|\n+|(?<=[a-z]);\s+|\s+-{1,2}\s+")
_URL = re.compile(r"https?://|www\.|\.com\b|\.net\b|\.org\b", re.IGNORECASE)
_SPACES = re.compile(r"\s+")


def wordset(text: str) -> frozenset[str]:
    """The whitespace-separated words of ``text`` as a set (for word lists)."""
    return frozenset(text.split())


POSITIVE = wordset(
    """
    good great excellent awesome amazing perfect perfectly nice fine solid sturdy durable
    reliable accurate precise easy easily clear clean bright warm rich smooth sweet crisp full
    fat punchy quiet comfortable comfortably love loved loves like liked likes best better
    beautiful beautifully fantastic wonderful superb outstanding impressive impressed decent
    recommend recommended worth happy pleased satisfied glad fun useful handy helpful simple
    convenient quick fast strong stable secure securely tight snug well light lightweight
    compact portable affordable cheap inexpensive reasonable bargain quality favorite versatile
    responsive natural balanced consistent brilliant gorgeous lovely terrific incredible
    superior fabulous cool classic effective efficient sharp thick soft works worked excellently
    """
)
NEGATIVE = wordset(
    """
    bad poor poorly terrible awful horrible cheaply flimsy fragile weak broke broken break
    breaks breaking cracked defective faulty noisy harsh thin muddy tinny buzz buzzing hum
    humming hiss hissy loose wobbly difficult hard hate hated disappointing disappointed
    disappointment useless worthless worse worst annoying problem problems issue issues
    junk garbage crap overpriced expensive uncomfortable unreliable inaccurate unstable
    failed fails fail died dead returned return waste wrong slipped slips slipping rattles
    rattle rattling dull dim flaky sloppy stiff lacking lacks mediocre meh unfortunately
    """
)
NEGATIONS = wordset(
    "not no never n't dont don't doesn't didn't isn't wasn't aren't won't "
    "can't cannot couldn't wouldn't hardly without nothing"
)


def clean(text: str) -> str:
    """Collapse whitespace and strip quotes/brackets around a sentence."""
    return _SPACES.sub(" ", text).strip().strip("\"'()[] ")


def sentences(text: str) -> list[str]:
    """Split a review into cleaned, non-empty sentences."""
    return [s for s in (clean(part) for part in _SPLIT.split(text or "")) if s]


def has_url(text: str) -> bool:
    return bool(_URL.search(text))


def polarity(tokens: list[str], start: int = 0, end: int | None = None) -> tuple[int, int]:
    """Count (positive, negative) opinion words in ``tokens[start:end]``; a negation within
    the three words before an opinion word flips it ("not very good" counts as negative)."""
    pos = neg = 0
    stop = len(tokens) if end is None else min(end, len(tokens))
    for i in range(max(start, 0), stop):
        tok = tokens[i]
        sign = 1 if tok in POSITIVE else -1 if tok in NEGATIVE else 0
        if not sign:
            continue
        if any(t in NEGATIONS or t.endswith("n't") for t in tokens[max(0, i - 3) : i]):
            sign = -sign
        if sign > 0:
            pos += 1
        else:
            neg += 1
    return pos, neg


def feature_sentiment(tokens: list[str], feature: str, window: int = 5) -> int:
    """+1/-1/0: the opinion expressed near ``feature`` in ``tokens`` (else in the sentence)."""
    parts = feature.split()
    n = len(parts)
    for i in range(len(tokens) - n + 1):
        if tokens[i : i + n] == parts:
            pos, neg = polarity(tokens, i - window, i + n + window)
            if pos != neg:
                return 1 if pos > neg else -1
            break
    pos, neg = polarity(tokens)
    return 0 if pos == neg else 1 if pos > neg else -1


__all__ = ["clean", "feature_sentiment", "has_url", "polarity", "sentences", "words", "wordset"]
