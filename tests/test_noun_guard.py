"""The noun-level guard: every noun of an explanation must be supported by the item's own
train reviews, the evidence or the catalogue at large; a tolerance allows a few."""

from __future__ import annotations

import pytest

from recx_worker.events import Evidence, RecommendationEvent, SupportingItem
from recx_worker.explainer import ExplainRequest
from recx_worker.features import Lexicon
from recx_worker.guard import Guard
from recx_worker.nouns import is_noun_phrase, is_plural, number_forms
from recx_worker.prepared import ItemVocabulary

# A shampoo catalogue (real-shaped review text); its lexicon knows nothing about guitars.
REVIEWS = {
    "shampoo-1": [
        "This shampoo leaves my hair soft and the scent is lovely.",
        "The lather is rich and a little goes a long way for the price.",
        "My scalp stopped itching after a week; the bottle lasts for months.",
    ],
    "shampoo-2": [
        "The conditioner detangles my curls and the scent is light.",
        "Great value for the price, the bottle is huge.",
    ],
    "lotion-1": [
        "This lotion absorbs quickly and my skin feels soft all day.",
        "The pump bottle works well and the price is fair.",
    ],
    "soap-1": ["The soap bar smells fresh and lasts for weeks, great price."],
    "mask-1": ["The clay mask dries fast and my skin looks clear, worth the price."],
}
LEXICON = Lexicon(["shampoo", "scent", "lather", "hair", "bottle", "price", "lotion", "skin"])


@pytest.fixture(scope="module")
def vocabulary() -> ItemVocabulary:
    features = {item: frozenset(LEXICON.find(" ".join(texts))) for item, texts in REVIEWS.items()}
    return ItemVocabulary.build(REVIEWS, features)


def request(item: str = "shampoo-1", features: tuple[str, ...] = ("shampoo", "scent")):
    event = RecommendationEvent(event_id="e", user_id="u", item_id=item)
    evidence = Evidence(
        item_features=list(features),
        supporting_items=[SupportingItem(item_id="lotion-1", similarity=0.5, features=["skin"])],
    )
    return ExplainRequest(event, evidence)


def test_another_domains_features_are_caught(vocabulary) -> None:
    text = "Recommended because you liked the fretboard and the guitar strings."
    assert Guard(LEXICON).check(request(), text).ok  # the lexicon alone does not see it
    verdict = Guard(LEXICON, vocabulary=vocabulary).check(request(), text)
    assert not verdict.ok and not verdict.grounded
    assert verdict.reason.startswith("unsupported noun 'fretboard', 'guitar'")


def test_another_items_feature_is_caught(vocabulary) -> None:
    verdict = Guard(LEXICON, vocabulary=vocabulary).check(
        request(), "The clay mask dries fast and feels great."
    )
    assert not verdict.ok and "'clay', 'mask'" in verdict.reason


def test_the_items_own_words_evidence_and_catalogue_words_pass(vocabulary) -> None:
    guard = Guard(LEXICON, vocabulary=vocabulary)
    # Own reviews (lather, scalp: the plural "scalps" too), evidence (skin), own or catalogue.
    for text in (
        "The lather is rich and the scalps stop itching.",
        "The shampoo is great for the skin and the price.",
        "The scent is lovely and the bottles last for months.",
    ):
        verdict = guard.check(request(), text)
        assert verdict.ok and verdict.grounded, (text, verdict.reason)


def test_a_lexicon_feature_from_the_items_own_reviews_is_grounded(vocabulary) -> None:
    text = "The bottle lasts for months."  # "bottle" is not among the evidence features
    assert Guard(LEXICON).check(request(), text).reason == "ungrounded feature 'bottle'"
    assert Guard(LEXICON, vocabulary=vocabulary).check(request(), text).ok


def test_tolerance_allows_that_many_unsupported_nouns(vocabulary) -> None:
    text = "The scent is lovely, like a meadow."
    assert not Guard(LEXICON, vocabulary=vocabulary).check(request(), text).ok
    lenient = Guard(LEXICON, vocabulary=vocabulary, unsupported_nouns=1).check(request(), text)
    assert lenient.ok and lenient.grounded
    off = Guard(LEXICON, vocabulary=vocabulary, unsupported_nouns=-1)
    assert off.check(request(), "Recommended for the fretboard and the banjo.").ok


def test_unknown_item_has_only_catalogue_and_evidence_words(vocabulary) -> None:
    guard = Guard(LEXICON, vocabulary=vocabulary)
    assert not guard.check(request("new-item"), "The lather is rich.").ok
    # "weeks" is used across the catalogue; a lexicon feature still needs evidence.
    assert guard.check(request("new-item"), "The scent is great and lasts for weeks.").ok
    assert not guard.check(request("new-item"), "The scent is great for the price.").ok


def test_vocabulary_round_trips_and_knows_generic_words(vocabulary) -> None:
    assert "price" in vocabulary.generic and "lather" not in vocabulary.generic
    again = ItemVocabulary.from_json(vocabulary.to_json(), vocabulary.features)
    assert again.items == vocabulary.items and again.generic == vocabulary.generic


@pytest.mark.parametrize(
    ("phrase", "noun"),
    [
        ("tuner", True),
        ("gig bag", True),
        ("residue", True),
        ("teeth", True),
        ("fretboard", True),  # not in the dictionary: the tagger decides
        ("mic", True),
        ("audio", True),
        ("greasy", False),
        ("healthy", False),
        ("carrying", False),
        ("expected", False),
    ],
)
def test_is_noun_phrase(phrase: str, noun: bool) -> None:
    assert is_noun_phrase(phrase) is noun


def test_number() -> None:
    assert is_plural("strings") and is_plural("teeth") and is_plural("gig bags")
    assert not is_plural("bass") and not is_plural("glass") and not is_plural("tuner")
    assert set(number_forms("teeth")) == {"teeth", "tooth"}
    assert set(number_forms("fretboard")) == {"fretboard", "fretboards"}


def test_the_recommendations_own_framing_is_not_a_feature_claim(vocabulary) -> None:
    # The template's framing ("one you rated 5 stars", "reviewers say") names no aspect of the
    # item, even where the item's reviews never use those words.
    text = "Recommended because you liked the skin on one you rated 5 stars: reviewers say so."
    verdict = Guard(LEXICON, vocabulary=vocabulary).check(request(), text)
    assert verdict.ok and verdict.grounded, verdict.reason
    # the template's history clause alone never needs the tagger (milliseconds per text)
    clause = "The scent is lovely, like the scent on one you rated 5 stars."
    assert Guard(LEXICON, vocabulary=vocabulary)._suspects(request(), clause) == []


def test_prepared_micro_batches_get_the_same_verdicts(vocabulary) -> None:
    """`prepare` tags a micro-batch's texts in one pass; the verdicts do not change, and the
    words the tokenizer alone clears never reach the tagger."""
    from recx_worker import nouns

    texts = [
        "Recommended because you liked the fretboard and the guitar strings.",
        "The lather is rich and the scalps stop itching.",
        "The clay mask dries fast and feels great.",
        "The scent is lovely and the bottles last for months.",
    ]
    pairs = [(request(), text) for text in texts]
    alone = [Guard(LEXICON, vocabulary=vocabulary).check(r, t) for r, t in pairs]
    nouns._noun_cache.clear()
    guard = Guard(LEXICON, vocabulary=vocabulary)
    guard.prepare(pairs)
    tagged = set(nouns._noun_cache)
    assert texts[0] in tagged and texts[2] in tagged  # unknown words: tagged, in one pass
    assert [guard.check(r, t) for r, t in pairs] == alone
    assert [v.ok for v in alone] == [False, True, False, True]


def test_the_tagger_loads_without_importing_torch_and_torch_still_imports_after() -> None:
    """A process that only tags (a template worker) does not pay for PyTorch's imports at
    warm-up; a later ``import torch`` in the same process still works."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from recx_worker import nouns\n"
        "nouns.warm_up()\n"
        "print('torch' in sys.modules, nouns.nouns('The fretboard and the strings are great.'))\n"
        "import torch\n"
        "print(torch.tensor([1.0, 2.0]).sum().item())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300
    ).stdout.splitlines()
    assert out == ["False ('fretboard', 'strings')", "3.0"]
