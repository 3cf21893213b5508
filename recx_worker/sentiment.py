"""Sentiment of explanation text, and the guard check that keeps complaints from users.

An explanation of a recommendation says why the user may like the item: positive or balanced,
never a complaint. Sentiment is VADER's compound score (PyPI ``vaderSentiment``: a rule-based
lexicon scorer that runs offline in microseconds per sentence), in [-1, 1]. A text counts as
negative when its compound score is at or below a threshold; the default, -0.05, is the cut
VADER's authors recommend for "negative". The same definition serves the guard check, the
share of negative explanations in ``recx eval`` and the filter of training targets.
"""

from __future__ import annotations

from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from recx_worker.config import Settings
    from recx_worker.explainer import ExplainRequest

#: VADER's recommended cut: compound <= -0.05 is negative.
NEGATIVE_THRESHOLD = -0.05


@cache
def _analyzer() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


@lru_cache(maxsize=16384)  # deterministic; a stream repeats texts (the template's above all)
def compound(text: str) -> float:
    """VADER's compound sentiment of ``text`` (-1 most negative .. +1 most positive; 0 if empty)."""
    if not text.strip():
        return 0.0
    return float(_analyzer().polarity_scores(text)["compound"])


class _NegativeCues(NamedTuple):
    words: frozenset[str]
    phrases: tuple[str, ...]


@cache
def _negative_cues() -> _NegativeCues:
    """What can make VADER's sum of valences negative: lexicon words rated 0 or below,
    negations (and "least"), dampeners ("barely", "kind of") and the idioms it rates 0 or
    below ("yeah right"). Every other rule keeps a valence's sign (boosters, "but", capitals,
    punctuation), so a text without any of these scores >= 0."""
    from vaderSentiment import vaderSentiment as vader

    single: set[str] = {w for w, v in _analyzer().lexicon.items() if v <= 0}
    single.update(vader.NEGATE)
    single.add("least")
    dampeners = [p for p, scalar in vader.BOOSTER_DICT.items() if scalar < 0]
    idioms = [p for p, value in vader.SPECIAL_CASES.items() if value <= 0]
    phrases = [p for p in (*dampeners, *idioms) if " " in p]
    single.update(p for p in (*dampeners, *idioms) if " " not in p)
    return _NegativeCues(frozenset(single), tuple(f" {p} " for p in phrases))


@lru_cache(maxsize=16384)  # as ``compound``: a stream repeats texts
def may_be_negative(text: str) -> bool:
    """False only when VADER's compound score of ``text`` is certainly >= 0 (no word or
    phrase that can score below 0; :func:`_negative_cues`), so the score need not be
    computed: most explanations. Text with non-ASCII characters (emoji, which VADER reads
    as words) is always scored."""
    from vaderSentiment.vaderSentiment import SentiText

    if not text.isascii():
        return True
    lowered = text.lower()
    if "n't" in lowered:
        return True
    cues = _negative_cues()
    tokens = SentiText(lowered).words_and_emoticons  # VADER's own tokens
    if not cues.words.isdisjoint(tokens):
        return True
    joined = f" {' '.join(tokens)} "
    return any(phrase in joined for phrase in cues.phrases)


def warm_up() -> None:
    """Load VADER's lexicon and the cue set now, not inside the first batch's deadline."""
    _analyzer()
    _negative_cues()


def is_opinion_word(word: str) -> bool:
    """Whether VADER's lexicon (7,500 general-English words and emoticons rated by people)
    gives ``word`` a sentiment: "great", "solid", "cheap"; not "long", "other", "heavy"."""
    return word in _analyzer().lexicon


def is_negative(text: str, threshold: float = NEGATIVE_THRESHOLD) -> bool:
    """Whether ``text`` reads as negative: compound score at or below ``threshold``."""
    if not text.strip() or (threshold < 0 and not may_be_negative(text)):
        return False
    return compound(text) <= threshold


def negative_share(texts: list[str], threshold: float = NEGATIVE_THRESHOLD) -> float:
    """Share of ``texts`` that are negative (0.0 for no text)."""
    return sum(is_negative(t, threshold) for t in texts) / len(texts) if texts else 0.0


class NegativeSentimentGuard:
    """Guard check: rejects an explanation that is negative about the recommended item."""

    def __init__(self, threshold: float = NEGATIVE_THRESHOLD) -> None:
        if not -1.0 <= threshold <= 1.0:
            raise ValueError(f"a VADER threshold lies in [-1, 1], got {threshold}")
        self.threshold = threshold

    def warm_up(self) -> None:
        warm_up()

    def check(self, request: ExplainRequest, text: str) -> str | None:
        if is_negative(text, self.threshold):
            score = compound(text)
            return f"negative sentiment (VADER compound {score:+.2f} <= {self.threshold:+.2f})"
        return None


def sentiment_guards(settings: Settings | None = None) -> list[NegativeSentimentGuard]:
    """The sentiment check as ``settings.chain`` configures it (on by default; off -> [])."""
    if settings is None:
        from recx_worker.config import ChainSettings

        chain = ChainSettings()
    else:
        chain = settings.chain
    if not chain.reject_negative:
        return []
    return [NegativeSentimentGuard(chain.negative_threshold)]
