"""The guard every chain stage's text passes before it can reach a user.

It rejects text that is empty or too long, mentions a feature the evidence does not support
(ungrounded), names things the item's own reviews never mention (unsupported nouns: with an
item vocabulary from the prepared data, every noun of the text must occur in the item's
train reviews, in the evidence, or across the catalogue; ``unsupported_nouns`` of them are
tolerated), contains personal data or links (URLs, e-mail addresses, phone numbers, caller
supplied forbidden terms), or echoes instructions / prompt sections / injected content.
Plugins add checks through the ``recx_guards`` hook: classes whose instances have
``check(request, text) -> str | None`` (a rejection reason, or None). ``with_plugins`` adds
the built-in sentiment check (``recx_worker.sentiment``: no complaint about the recommended
item; ``chain.reject_negative``, ``chain.negative_threshold``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol

from recx_worker import nouns
from recx_worker.events import MAX_TEXT_CHARS
from recx_worker.explainer import ExplainRequest
from recx_worker.features import Lexicon, words
from recx_worker.nouns import candidate_nouns, content_nouns, number_forms
from recx_worker.prepared import ItemVocabulary

if TYPE_CHECKING:
    from recx_worker.config import Settings


#: Distinct texts whose text-only facts a guard keeps (LRU).
TEXT_CACHE = 16384


class ExtraGuard(Protocol):
    def check(self, request: ExplainRequest, text: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class _TextFacts:
    """What the checks need from a text alone, whatever the request."""

    mentioned: tuple[str, ...]  # lexicon features, in order of first mention
    n_words: int
    pattern_reason: str | None  # personal data, link, forbidden term, instruction echo
    # words that could be content nouns and that the fixed words do not support (empty when
    # the noun check is off): only these are looked up in the item's and the evidence's words
    noun_candidates: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    ok: bool
    reason: str | None
    mentioned_features: list[str] = field(default_factory=list)
    grounded: bool = True


_URL = re.compile(
    r"(?:https?://|ftp://|www\.)\S+|\b[a-z0-9-]+\.(?:com|net|org|io|co|ly|info|biz|de|uk)\b",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(
    r"(?<!\w)(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)|\d{2,4})[\s.-]?\d{3,4}[\s.-]?\d{4}(?!\w)"
)
_INJECTION = [
    (re.compile(p, re.IGNORECASE), label)
    for p, label in [
        (
            r"\b(?:ignore|disregard|forget)\b.{0,30}\b(?:instructions?|prompt|rules)\b",
            "instruction",
        ),
        (r"\bas an ai\b|\blanguage model\b|\bi(?:'m| am) an? (?:ai|assistant|bot)\b", "self-ref"),
        (r"\bbuy now\b|\bclick here\b|\blimited offer\b|\bdiscount code\b|\bsubscribe\b", "spam"),
        (r"\bsystem prompt\b|<\|[a-z_]+\|>|</?s>|\[/?inst\]|###", "prompt markup"),
        (
            r"(?:^|[\n.!?]\s*)(?:explanation|evidence|instructions?|system|assistant|user|item|"
            r"history|features?|input|output|response|answer|question|context)\s*:",
            "prompt section",
        ),
    ]
]


# Words of a recommendation's own framing ("...one you rated 5 stars: reviewers say..."): they
# never claim an aspect of the item, so the noun check does not ask the item's reviews for them.
# "rated" is a verb, but the tokenizer alone cannot tell: without it every template text with
# a history clause (a fifth of the distinct texts on the bench events) went to the tagger.
FRAMING_WORDS = frozenset(
    {"star", "stars", "rating", "ratings", "rated", "review", "reviews", "reviewer",
     "reviewers", "recommendation", "recommendations", "customer", "customers", "buyer",
     "buyers", "owner", "owners", "people", "user", "users", "one", "ones"}
)  # fmt: skip


def _supported(noun: str, *vocabularies: Set[str]) -> bool:
    """``noun``, its singular or its plural occurs in one of ``vocabularies`` (looked up one
    by one: never merged, an item's vocabulary can hold thousands of words)."""
    if any(noun in vocabulary for vocabulary in vocabularies):
        return True
    return any(form in vocabulary for form in number_forms(noun) for vocabulary in vocabularies)


@lru_cache(maxsize=TEXT_CACHE)
def _phrase_words(phrase: str) -> frozenset[str]:
    """The words of a feature or snippet (cached: evidence repeats them across requests)."""
    return frozenset(words(phrase))


class Guard:
    """Checks one explanation text against its request; see the module docstring."""

    def __init__(
        self,
        lexicon: Lexicon,
        *,
        forbidden_terms: Iterable[str] = (),
        extra_guards: Sequence[ExtraGuard] = (),
        max_chars: int = MAX_TEXT_CHARS,
        word_slack: float = 1.6,
        min_words: int = 3,
        vocabulary: ItemVocabulary | None = None,
        unsupported_nouns: int = 0,
    ) -> None:
        self.lexicon = lexicon
        self.vocabulary = vocabulary
        self.unsupported_nouns = unsupported_nouns
        terms = sorted({t.strip().lower() for t in forbidden_terms if t.strip()}, key=len)
        self._forbidden = (
            re.compile(
                r"(?<!\w)(?:" + "|".join(re.escape(t) for t in reversed(terms)) + r")(?!\w)",
                re.IGNORECASE,
            )
            if terms
            else None
        )
        self.extra_guards = list(extra_guards)
        self.max_chars = max_chars
        self.word_slack = word_slack
        self.min_words = min_words
        fixed = vocabulary.generic if vocabulary is not None else frozenset()
        self._fixed_words = fixed | FRAMING_WORDS
        # Per-text results are cached: a stream repeats texts (the template explainer's
        # above all), and the lexicon and pattern scans cost more than the look-up.
        self._facts = lru_cache(maxsize=TEXT_CACHE)(self._text_facts)

    @classmethod
    def with_plugins(cls, lexicon: Lexicon, settings: Settings | None = None, **kwargs) -> Guard:
        """A guard that also runs the sentiment check (as ``settings`` configure it) and every
        check registered through the ``recx_guards`` hook."""
        from recx_worker.plugins import registered_guards
        from recx_worker.sentiment import sentiment_guards

        extra = [*sentiment_guards(settings), *(guard_cls() for guard_cls in registered_guards())]
        return cls(lexicon, extra_guards=[*kwargs.pop("extra_guards", ()), *extra], **kwargs)

    @classmethod
    def for_store(
        cls,
        store: object,
        settings: Settings | None = None,
        lexicon: Lexicon | None = None,
        **kwargs,
    ) -> Guard:
        """:meth:`with_plugins` for an evidence store: its lexicon (unless ``lexicon``), and
        the item vocabulary of its prepared data when it has one (data prepared before it
        existed has none); ``settings.chain.unsupported_nouns`` is the noun tolerance."""
        data = getattr(store, "data", None)
        kwargs.setdefault("vocabulary", getattr(data, "item_vocabulary", None))
        if settings is not None:
            kwargs.setdefault("unsupported_nouns", settings.chain.unsupported_nouns)
        return cls.with_plugins(lexicon or store.lexicon, settings, **kwargs)  # type: ignore[attr-defined]

    def warm_up(self) -> None:
        """Load the noun tagger now when the noun check is on (see ``nouns.warm_up``), and
        what the extra checks load lazily (those with a ``warm_up``: VADER's lexicon)."""
        if self.vocabulary is not None and self.unsupported_nouns >= 0:
            nouns.warm_up()
        for guard in self.extra_guards:
            if callable(warm := getattr(guard, "warm_up", None)):
                warm()

    def check(self, request: ExplainRequest, text: str) -> GuardVerdict:
        facts = self._facts(text)
        mentioned = list(facts.mentioned)
        ungrounded: list[str] = []
        if mentioned:
            allowed = request.evidence.allowed_features()
            ungrounded = [f for f in mentioned if f not in allowed]
            if ungrounded:  # evidence features are normally lexicon-normalised already
                normalised = {" ".join(words(f)) for f in allowed}
                ungrounded = [f for f in ungrounded if f not in normalised]
        unsupported: list[str] = []
        if self.vocabulary is not None and facts.n_words:
            # A feature the item's own train reviews mention (its profile's) is grounded even
            # if the evidence does not name it.
            if ungrounded:
                has = self.vocabulary.features_of(request.item_id)
                ungrounded = [f for f in ungrounded if f not in has]
            if self.unsupported_nouns >= 0:
                unsupported = self._unsupported(request, text)
        reason = self._reason(request, text, facts, ungrounded, unsupported)
        return GuardVerdict(
            ok=reason is None,
            reason=reason,
            mentioned_features=mentioned,
            grounded=not ungrounded and len(unsupported) <= max(self.unsupported_nouns, 0),
        )

    def prepare(self, pairs: Sequence[tuple[ExplainRequest, str]]) -> None:
        """Before checking a micro-batch's texts one by one: tag, in one batched pass, those
        whose noun check will need the tagger (the checks' results do not change)."""
        if self.vocabulary is None or self.unsupported_nouns < 0:
            return
        nouns.prefetch_nouns(text for request, text in pairs if self._suspects(request, text))

    def _suspects(self, request: ExplainRequest, text: str) -> list[str]:
        """Words of ``text`` that could be content nouns and that neither the fixed words nor
        the item's words nor the evidence's support: only these need the tagger. The item's
        words are looked up first; the evidence's words are gathered only for what is left."""
        assert self.vocabulary is not None
        suspects = self._facts(text).noun_candidates
        if suspects:
            item_words = self.vocabulary.words_of(request.item_id)
            suspects = tuple(w for w in suspects if not _supported(w, item_words))
        if not suspects:
            return []
        evidence_words = self._evidence_words(request)
        return [w for w in suspects if not _supported(w, evidence_words)]

    def _text_facts(self, text: str) -> _TextFacts:
        """What the checks need from ``text`` alone (cached per text: see ``__init__``)."""
        noun_check = self.vocabulary is not None and self.unsupported_nouns >= 0
        return _TextFacts(
            mentioned=tuple(self.lexicon.find(text)),
            n_words=len(words(text)),
            pattern_reason=self._pattern_reason(text),
            noun_candidates=tuple(
                w for w in candidate_nouns(text) if not _supported(w, self._fixed_words)
            )
            if noun_check
            else (),
        )

    def _unsupported(self, request: ExplainRequest, text: str) -> list[str]:
        """The text's content nouns that neither the item's words, the evidence, the
        catalogue's generic words nor the framing nouns support.

        Tagging costs milliseconds, so it runs only when it can matter: every word that
        could be a content noun (``nouns.candidate_nouns``, from the tokenizer alone) is
        first looked up in the fixed words, then in the item's; when all are supported,
        no noun can be unsupported, whatever the tagger would say."""
        if not self._suspects(request, text):
            return []
        assert self.vocabulary is not None
        known = (
            self.vocabulary.words_of(request.item_id),
            self._evidence_words(request),
            self._fixed_words,
        )
        return [n for n in content_nouns(text) if not _supported(n, *known)]

    @staticmethod
    def _evidence_words(request: ExplainRequest) -> set[str]:
        """The words of the evidence's features and snippet."""
        evidence = request.evidence
        found: set[str] = set()
        for phrase in (*evidence.allowed_features(), evidence.item_snippet or ""):
            found.update(_phrase_words(phrase))
        return found

    def _pattern_reason(self, text: str) -> str | None:
        """Personal data, links, forbidden terms or an instruction echo in ``text``."""
        if _EMAIL.search(text):
            return "contains an e-mail address"
        if _URL.search(text):
            return "contains a URL"
        if _PHONE.search(text):
            return "contains a phone number"
        if self._forbidden is not None and self._forbidden.search(text):
            return "contains a forbidden term"  # the term itself may be personal data: not logged
        for pattern, label in _INJECTION:
            if match := pattern.search(text):
                marker = match.group(0).strip().lstrip(".!?").strip()
                return f"instruction echo ({label}): {marker!r}"
        return None

    def _size_reason(self, request: ExplainRequest, text: str, n_words: int) -> str | None:
        if n_words == 0:
            return "empty text"
        if n_words < self.min_words:
            return f"too short: {n_words} words; at least {self.min_words} are needed"
        limit = max(int(request.max_words * self.word_slack), request.max_words + 5)
        if n_words > limit:
            return f"too long: {n_words} words; the limit is {limit}"
        if len(text) > self.max_chars:
            return f"too long: {len(text)} characters; the limit is {self.max_chars}"
        return None

    def _reason(
        self,
        request: ExplainRequest,
        text: str,
        facts: _TextFacts,
        ungrounded: list[str],
        unsupported: list[str],
    ) -> str | None:
        if size := self._size_reason(request, text, facts.n_words):
            return size
        if ungrounded:
            return f"ungrounded feature '{ungrounded[0]}'"
        if unsupported and len(unsupported) > self.unsupported_nouns:
            shown = ", ".join(f"'{n}'" for n in unsupported[:3])
            return f"unsupported noun {shown}: not in the item's reviews or the evidence"
        if facts.pattern_reason is not None:
            return facts.pattern_reason
        for guard in self.extra_guards:
            name = type(guard).__name__
            try:
                extra_reason = guard.check(request, text)
            except Exception as exc:  # a broken guard fails closed
                return f"guard {name} failed: {type(exc).__name__}: {exc}"
            if extra_reason:
                return f"guard {name}: {extra_reason}"
        return None
