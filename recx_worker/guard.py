"""The guard every chain stage's text passes before it can reach a user.

It rejects text that is empty or too long, mentions a feature the evidence does not support
(ungrounded), contains personal data or links (URLs, e-mail addresses, phone numbers, caller
supplied forbidden terms), or echoes instructions / prompt sections / injected content.
Plugins add checks through the ``recx_guards`` hook: classes whose instances have
``check(request, text) -> str | None`` (a rejection reason, or None). ``with_plugins`` adds
the built-in sentiment check (``recx_worker.sentiment``: no complaint about the recommended
item; ``chain.reject_negative``, ``chain.negative_threshold``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from recx_worker.events import MAX_TEXT_CHARS
from recx_worker.explainer import ExplainRequest
from recx_worker.features import Lexicon, words

if TYPE_CHECKING:
    from recx_worker.config import Settings


class ExtraGuard(Protocol):
    def check(self, request: ExplainRequest, text: str) -> str | None: ...


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
    ) -> None:
        self.lexicon = lexicon
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

    @classmethod
    def with_plugins(cls, lexicon: Lexicon, settings: Settings | None = None, **kwargs) -> Guard:
        """A guard that also runs the sentiment check (as ``settings`` configure it) and every
        check registered through the ``recx_guards`` hook."""
        from recx_worker.plugins import registered_guards
        from recx_worker.sentiment import sentiment_guards

        extra = [*sentiment_guards(settings), *(guard_cls() for guard_cls in registered_guards())]
        return cls(lexicon, extra_guards=[*kwargs.pop("extra_guards", ()), *extra], **kwargs)

    def check(self, request: ExplainRequest, text: str) -> GuardVerdict:
        mentioned = self.lexicon.find(text)
        allowed = request.evidence.allowed_features()
        ungrounded = [f for f in mentioned if f not in allowed]
        if ungrounded:  # evidence features are normally lexicon-normalised already
            normalised = {" ".join(words(f)) for f in allowed}
            ungrounded = [f for f in ungrounded if f not in normalised]
        reason = self._reason(request, text, ungrounded)
        return GuardVerdict(
            ok=reason is None,
            reason=reason,
            mentioned_features=mentioned,
            grounded=not ungrounded,
        )

    def _reason(self, request: ExplainRequest, text: str, ungrounded: list[str]) -> str | None:
        n_words = len(words(text))
        if n_words == 0:
            return "empty text"
        if n_words < self.min_words:
            return f"too short: {n_words} words; at least {self.min_words} are needed"
        limit = max(int(request.max_words * self.word_slack), request.max_words + 5)
        if n_words > limit:
            return f"too long: {n_words} words; the limit is {limit}"
        if len(text) > self.max_chars:
            return f"too long: {len(text)} characters; the limit is {self.max_chars}"
        if ungrounded:
            return f"ungrounded feature '{ungrounded[0]}'"
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
        for guard in self.extra_guards:
            name = type(guard).__name__
            try:
                extra_reason = guard.check(request, text)
            except Exception as exc:  # a broken guard fails closed
                return f"guard {name} failed: {type(exc).__name__}: {exc}"
            if extra_reason:
                return f"guard {name}: {extra_reason}"
        return None
