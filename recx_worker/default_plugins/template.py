"""The template explainer: deterministic, grounded, always answers.

It states only facts from its request's evidence: it leads with the item's most-mentioned
feature, and adds a second one: a feature the user writes about that the item has, else one the
item shares with the user's most similar well-rated history item, else the item's next feature;
for a third of events (every event with ``style="personal"``) a clause names the supporting
history item's rating when it shares the lead feature. A hash of ``event_id`` picks the
phrasing, so the same event always gets the same text. Sentences read like review sentences
("the tuner is great and it works well"), since those are what explanations are scored against.
Only nouns fill the feature slot, and the verb agrees with the feature's number ("the teeth
are", "the bass is"). Cold-start users (no history, no known features) get item-only text.
"""

from __future__ import annotations

import hashlib
from typing import ClassVar

from recx_worker import nouns
from recx_worker.events import SupportingItem
from recx_worker.explainer import BaseExplainer, ExplainRequest, Explanation
from recx_worker.features import words
from recx_worker.hookspecs import hookimpl
from recx_worker.nouns import is_noun_phrase, is_plural

__all__ = ["TemplateExplainer", "is_plural"]

# Fixed wording must never contain a lexicon feature (a test checks this against features.txt).
# Each phrasing has a singular and a plural form ("the tuner is" / "the strings are").
ONE_FEATURE = (
    ("the {f} is great and it works well", "the {f} are great and they work well"),
    ("the {f} is very good for the money", "the {f} are very good for the money"),
    ("the {f} is great and it is easy to use", "the {f} are great and easy to use"),
)
TWO_FEATURES = (
    "the {f} {be} great and the {g} {be2} good",
    "the {f} {be} very nice and the {g} {be2} great",
    "the {f} {be} great, the {g} {be2} good and it works well",
)
HISTORY_CLAUSE = (
    ", like the {h} on one you rated {r} stars",
    ", just like the {h} you liked before",
)
# Words that name a price or a unit, not a part or quality worth leading with.
NOT_A_LEAD = frozenset({"bucks", "dollars", "dollar", "money", "purchase", "reviews", "review"})
NO_FEATURE = (
    "this is a great one and it works well",
    "it works great and it is very easy to use",
)


def _pick(options: tuple, seed: int, salt: int = 0):
    """A phrasing chosen by byte ``salt`` of the event's hash."""
    return options[(seed >> (8 * salt)) % len(options)]


class TemplateExplainer(BaseExplainer):
    """Review-style sentences filled only with features from the evidence."""

    name: ClassVar[str] = "template"
    version: ClassVar[str] = "1.0.0"

    def warm_up(self) -> None:
        """The noun checks of the feature slot load a tagger and a dictionary: load them now."""
        nouns.warm_up()

    def explain_one(self, request: ExplainRequest) -> Explanation:
        seed = int.from_bytes(
            hashlib.blake2b(request.event.event_id.encode("utf-8"), digest_size=8).digest(), "big"
        )
        evidence = request.evidence
        support = _supporting(evidence.supporting_items)
        shared = [f for f in (support.features if support else ()) if f in evidence.item_features]
        # The item's top feature leads (it best matches what reviewers of the item write);
        # the user's own features, then those shared with their history, come next.
        top = evidence.item_features[:1]
        order = [*top, *evidence.user_features, *shared, *evidence.item_features]
        # Only nouns fill the noun slot ("the greasy is great" never; see is_noun_phrase).
        nouns = [f for f in dict.fromkeys(order) if is_noun_phrase(f)]
        ranked = [f for f in nouns if f not in NOT_A_LEAD] or nouns
        if not ranked:
            return Explanation(text=_tidy(_pick(NO_FEATURE, seed)))
        lead = ranked[0]
        be = "are" if is_plural(lead) else "is"
        singular, plural = _pick(ONE_FEATURE, seed, 1)
        candidates = [
            (plural if be == "are" else singular).format(f=lead),
            f"the {lead} {be} great",
        ]
        second = next((f for f in ranked[1:] if f not in lead and lead not in f), None)
        if second is not None and seed % 2:
            be2 = "are" if is_plural(second) else "is"
            phrasing = _pick(TWO_FEATURES, seed, 2)
            candidates.insert(0, phrasing.format(f=lead, g=second, be=be, be2=be2))
        personal = request.event.style == "personal" or (seed >> 24) % 3 == 0
        if support is not None and lead in support.features and personal:
            if support.rating is not None:
                clause = HISTORY_CLAUSE[0].format(h=lead, r=f"{support.rating:.0f}")
            else:
                clause = HISTORY_CLAUSE[1].format(h=lead)
            candidates.insert(0, candidates[0] + clause)
        for text in candidates:  # richest first; fall back to shorter within max_words
            if len(words(text)) <= request.max_words:
                return Explanation(text=_tidy(text))
        return Explanation(text=_tidy(candidates[-1]))


def _supporting(items: list[SupportingItem]) -> SupportingItem | None:
    """The most similar history item the user rated well (or did not rate) that has features."""
    usable = [s for s in items if s.features and (s.rating is None or s.rating >= 4)]
    return max(usable, key=lambda s: s.similarity, default=None)


def _tidy(text: str) -> str:
    return text[0].upper() + text[1:] + "."


@hookimpl
def recx_explainers() -> list[type]:
    return [TemplateExplainer]
