"""Pick, for one review, the sentence that best states an opinion about a lexicon feature.

Candidates are the review's sentences and its title. A candidate must mention a lexicon
feature, have 4-30 words, contain no URL and no part of the reviewer's name. Among those, the
score prefers what reads like an explanation: an opinion word near the feature, a short
declarative sentence ("the tuner is accurate and easy to read"), few first-person narrative
words, no question.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from recx_worker.features import Lexicon, words
from training.data.readers import Review
from training.data.text import feature_sentiment, has_url, polarity, sentences, wordset

MIN_WORDS, MAX_WORDS = 4, 30
_FIRST_PERSON = wordset("i i'm i've i'd my me we our")
_NARRATIVE = wordset(
    "bought ordered received purchased shipping shipped arrived gift amazon "
    "seller review reviews star stars returned"
)
_COPULA = wordset("is are was were sounds feels looks seems stays holds")
_ALNUM = re.compile(r"[A-Za-z]{3,}")
# Why a review yields nothing: the first reason (in this order) met by a feature sentence.
_REASONS = {
    "length": "no 4-30 word feature sentence",
    "url": "feature sentences contain URLs",
    "reviewer name": "feature sentences name the reviewer",
}


@dataclass(frozen=True)
class Extraction:
    feature: str
    sentiment: int
    explanation: str
    score: float


def name_tokens(reviewer_name: str, lexicon: Lexicon) -> frozenset[str]:
    """Lower-cased parts of a reviewer's name that would identify them in a sentence."""
    return frozenset(
        tok.lower() for tok in _ALNUM.findall(reviewer_name or "") if tok.lower() not in lexicon
    )


def score_sentence(sentence: str, lexicon: Lexicon) -> tuple[float, str, int] | None:
    """(score, feature, sentiment) of a sentence, or None when it mentions no feature."""
    features = lexicon.find(sentence)
    if not features:
        return None
    tokens = words(sentence)
    n = len(tokens)
    best: tuple[int, str, int] | None = None
    for rank, feature in enumerate(features):
        sentiment = feature_sentiment(tokens, feature)
        # Prefer a feature with a clear local opinion, then the first mentioned.
        key = (abs(sentiment), -rank)
        if best is None or key > (abs(best[2]), -best[0]):
            best = (rank, feature, sentiment)
    assert best is not None
    _, feature, sentiment = best
    pos, neg = polarity(tokens)
    score = 0.0
    score += 2.0 if sentiment else 0.0
    score += 0.5 * min(pos + neg, 3)
    score -= abs(n - 10) * 0.08  # short and to the point
    score -= 0.4 * sum(t in _FIRST_PERSON for t in tokens)
    score -= 0.8 * sum(t in _NARRATIVE for t in tokens)
    score += 0.6 if any(t in _COPULA for t in tokens) else 0.0
    score += 0.2 * min(len(features) - 1, 2)
    score -= 1.5 if sentence.rstrip().endswith("?") else 0.0
    return score, feature, sentiment


def extract(review: Review, lexicon: Lexicon) -> Extraction | str:
    """The best explanation sentence of ``review``, or the reason there is none."""
    candidates = sentences(review.text)
    if review.title:
        candidates.append(review.title.strip())
    if not candidates:
        return "empty text"
    banned = name_tokens(review.reviewer_name, lexicon)
    reasons: list[str] = []
    best: Extraction | None = None
    for sentence in candidates:
        scored = score_sentence(sentence, lexicon)
        if scored is None:
            reasons.append("no feature")
            continue
        n = len(words(sentence))
        if not MIN_WORDS <= n <= MAX_WORDS:
            reasons.append("length")
            continue
        if has_url(sentence):
            reasons.append("url")
            continue
        if banned and banned.intersection(words(sentence)):
            reasons.append("reviewer name")
            continue
        score, feature, sentiment = scored
        if best is None or score > best.score:
            best = Extraction(feature, sentiment, sentence, score)
    if best is not None:
        return best
    for reason, label in _REASONS.items():
        if reason in reasons:
            return label
    return "no feature mentioned"
