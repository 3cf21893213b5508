"""Sentiment (real VADER lexicon) and the guard check that rejects negative explanations."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from recx_worker.config import load_settings
from recx_worker.events import Evidence, RecommendationEvent
from recx_worker.explainer import ExplainRequest
from recx_worker.features import Lexicon
from recx_worker.guard import Guard
from recx_worker.sentiment import (
    NEGATIVE_THRESHOLD,
    NegativeSentimentGuard,
    compound,
    is_negative,
    may_be_negative,
    negative_share,
    sentiment_guards,
)

LEXICON = Lexicon(["tuner", "display", "product", "hair"])
NEGATIVE = "The tuner is fine, but the product is not as good as it used to be."
POSITIVE = "The tuner is great and the display is bright and easy to read."


def request() -> ExplainRequest:
    event = RecommendationEvent(event_id="e", user_id="u", item_id="i")
    evidence = Evidence(item_features=["tuner", "display", "product"])
    return ExplainRequest(event, evidence, 25)


def test_compound_orders_complaints_below_praise():
    assert compound(NEGATIVE) < NEGATIVE_THRESHOLD < 0 < compound(POSITIVE)
    assert compound("it broke after two days and the sound is terrible") < -0.5
    assert compound("") == 0.0 and compound("   ") == 0.0


@pytest.mark.parametrize(
    ("text", "negative"),
    [
        (NEGATIVE, True),
        ("Sadly it stopped working, a waste of money.", True),
        (POSITIVE, False),
        ("The strap is black and 2 inches wide.", False),  # neutral is not negative
        ("It is not bad at all for the price.", False),  # VADER reads the negation
        ("", False),
    ],
)
def test_is_negative(text: str, negative: bool):
    assert is_negative(text) is negative


REVIEWS = (
    Path(__file__).parent.parent
    / "data/amazon-2014-musical-instruments-5core/reviews_Musical_Instruments_5.json.gz"
)


def review_sentences(limit: int) -> list[str]:
    """Distinct sentences of the shipped reviews (real text: praise, complaints, negations)."""
    out: dict[str, None] = {}
    with gzip.open(REVIEWS, "rt", encoding="utf-8") as f:
        for line in f:
            text = json.loads(line).get("reviewText") or ""
            out.update(dict.fromkeys(s for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()))
            if len(out) >= limit:
                break
    return list(out)[:limit]


def test_the_shortcut_never_skips_a_text_vader_scores_below_zero():
    """``may_be_negative`` is False only where the compound score is >= 0: checked against
    VADER itself on 12,000 review sentences (about half of them need no scoring)."""
    sentences = review_sentences(12_000)
    skipped = [s for s in sentences if not may_be_negative(s)]
    assert all(compound(s) >= 0 for s in skipped)
    assert 0.3 < len(skipped) / len(sentences) < 0.9
    negatives = [s for s in sentences if compound(s) <= NEGATIVE_THRESHOLD]
    assert len(negatives) > 1000 and all(may_be_negative(s) for s in negatives)


@pytest.mark.parametrize(
    "text",
    [
        "It isn't great.",  # a contraction negates
        "The sound is barely good.",  # a dampener can turn a weak positive below 0
        "Great tone, yeah right.",  # an idiom VADER rates negative
        "The tuner is great \U0001f620",  # emoji are read as words: always scored
        "It is the least useful tuner.",
        "No problems at all.",
    ],
)
def test_the_shortcut_scores_every_cue(text: str):
    assert may_be_negative(text)


def test_a_threshold_at_or_above_zero_always_scores():
    """The shortcut proves only "not below 0": a threshold >= 0 still gets the score."""
    neutral = "The strap is black and 2 inches wide."
    assert not may_be_negative(neutral)
    assert is_negative(neutral, threshold=0.0) and not is_negative(neutral)


def test_threshold_moves_the_cut():
    text = "It is a little noisy."
    score = compound(text)
    assert is_negative(text, threshold=score) and not is_negative(text, threshold=score - 0.01)


def test_negative_share():
    assert negative_share([NEGATIVE, POSITIVE, "", POSITIVE]) == pytest.approx(0.25)
    assert negative_share([]) == 0.0


def test_guard_check_rejects_a_complaint_with_its_score():
    check = NegativeSentimentGuard()
    reason = check.check(request(), NEGATIVE)
    assert reason is not None and reason.startswith("negative sentiment (VADER compound -0.")
    assert check.check(request(), POSITIVE) is None
    with pytest.raises(ValueError):
        NegativeSentimentGuard(threshold=-2)


def test_guard_with_plugins_rejects_negative_text_by_default():
    guard = Guard.with_plugins(LEXICON)
    verdict = guard.check(request(), NEGATIVE)
    assert not verdict.ok and verdict.grounded
    assert verdict.reason.startswith("guard NegativeSentimentGuard: negative sentiment")
    assert guard.check(request(), POSITIVE).ok


def test_settings_turn_the_check_off_or_move_its_threshold(tmp_path, monkeypatch):
    off = tmp_path / "off.toml"
    off.write_text("[chain]\nreject_negative = false\n", encoding="utf-8")
    settings = load_settings(off)
    assert sentiment_guards(settings) == []
    assert Guard.with_plugins(LEXICON, settings).check(request(), NEGATIVE).ok

    monkeypatch.setenv("RECX_CHAIN__NEGATIVE_THRESHOLD", "-0.9")
    lenient = load_settings()
    assert [g.threshold for g in sentiment_guards(lenient)] == [-0.9]
    assert Guard.with_plugins(LEXICON, lenient).check(request(), NEGATIVE).ok


def test_template_phrasings_never_read_negative_for_any_demo_feature():
    from pathlib import Path

    from recx_worker.default_plugins.template import NO_FEATURE, ONE_FEATURE, TWO_FEATURES

    path = Path(__file__).resolve().parents[1] / "data/amazon-2014-musical-instruments-5core"
    features = [f.strip() for f in (path / "features.txt").read_text().splitlines() if f.strip()]
    assert len(features) > 100
    texts = [t.format(f=f) for f in features for pair in ONE_FEATURE for t in pair]
    texts += [t.format(f=f, g="price", be="is", be2="is") for f in features for t in TWO_FEATURES]
    texts += list(NO_FEATURE)
    assert [t for t in texts if is_negative(t)] == []


def test_a_guards_warm_up_loads_the_sentiment_check_before_the_first_batch():
    """VADER's lexicon and the cue set load at warm-up, not inside a stage deadline."""
    from recx_worker.sentiment import _negative_cues

    guard = Guard(LEXICON, extra_guards=[NegativeSentimentGuard()])
    _negative_cues.cache_clear()
    guard.warm_up()
    assert _negative_cues.cache_info().currsize == 1
