"""Turn raw generated text into one clean sentence, or refuse it."""

from __future__ import annotations

import re
from collections.abc import Iterable

from recx_worker.features import words
from recx_worker.lm.prompting import (
    ANSWER_CUE,
    LABELS,
    instruction_texts,
    is_instruction_like,
)

MIN_WORDS = 3
ECHO_NGRAM = 6

_LABEL = re.compile(
    rf"^\s*(?:{re.escape(ANSWER_CUE)}|explanation\s*:|answer\s*:|sure[,!.]?"
    r"|here(?:'s| is)[^:]*:)\s*",
    re.IGNORECASE,
)
_CONTROL = re.compile(r"<\|[^|>]*\|>.*", re.DOTALL)
_URL = re.compile(r"(?:https?://|www\.)\S+|\S+@\S+\.\w+", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[a-z0-9)\"'])[.!?](?=[\"'\u201d]?(?:\s|$))", re.IGNORECASE)
_LABELS = re.compile("|".join(re.escape(label) for label in LABELS), re.IGNORECASE)
_QUOTED = re.compile(r'"[^"]*"')
_TRAILING = {"and", "or", "but", "the", "a", "an", "of", "to", "with", "for", "is", "it", "its"}


class CleaningError(ValueError):
    """The generated text cannot be turned into an acceptable explanation."""


def _ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def echoes(text: str, sources: Iterable[str], n: int = ECHO_NGRAM) -> bool:
    """Whether ``text`` repeats any ``n`` consecutive words of ``sources``."""
    grams = _ngrams(words(text), n)
    return bool(grams) and any(grams & _ngrams(words(source), n) for source in sources)


def first_sentence(text: str) -> str:
    text = _CONTROL.sub("", text).strip()
    text = text.split("\n", 1)[0].strip()
    text = _LABEL.sub("", text).strip().strip('"\u201c\u201d').strip()
    match = _SENTENCE_END.search(text)
    text = text[: match.end()].strip() if match else text
    return text.strip('"\u201c\u201d').strip()


def limit_words(text: str, max_words: int) -> str:
    parts = text.split()
    if len(parts) <= max_words:
        return text
    parts = parts[:max_words]
    while len(parts) > MIN_WORDS and parts[-1].lower().strip(",;:-") in _TRAILING:
        parts.pop()
    return " ".join(parts).rstrip(",;:-") + "."


def clean_explanation(raw: str, max_words: int, prompt: str | None = None) -> str:
    """One sentence of at most ``max_words`` words; raises ``CleaningError`` when unusable."""
    text = first_sentence(raw)
    text = _URL.sub("", text)
    text = " ".join(text.split())
    if is_instruction_like(text):
        raise CleaningError("output looks like an instruction (possible prompt injection)")
    # Quoting the review snippet is allowed; repeating the prompt's own wording is not.
    sources = instruction_texts() + ([_QUOTED.sub('""', prompt)] if prompt else [])
    if _LABELS.search(text) or echoes(text, sources):
        raise CleaningError("output echoes the prompt")
    text = limit_words(text, max_words)
    if len(words(text)) < MIN_WORDS:
        raise CleaningError(f"output too short: {raw[:60]!r}")
    return text
