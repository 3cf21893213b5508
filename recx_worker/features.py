"""The feature lexicon: which product aspects (e.g. ``tuner``, ``gig bag``) a text mentions.

One matcher serves data preparation, the grounding guard and the evaluation metrics, so
"mentions feature F" means the same thing everywhere: F appears as whole words in the
lower-cased text (multi-word features are matched before the single words they contain).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path

_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


def words(text: str) -> list[str]:
    """Lower-cased word tokens of ``text`` (letters/digits, inner hyphens and apostrophes kept)."""
    return _WORD.findall(text.lower())


class Lexicon:
    """An ordered set of features (most frequent first) with a whole-word matcher."""

    def __init__(self, features: Iterable[str]):
        seen: dict[str, None] = {}
        for feature in features:
            norm = " ".join(words(feature))
            if norm:
                seen.setdefault(norm, None)
        self.features: list[str] = list(seen)

    @classmethod
    def load(cls, path: str | Path) -> Lexicon:
        """Read one feature per line; blank lines and ``#`` comments are ignored."""
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        return cls(line.strip() for line in lines if line.strip() and not line.startswith("#"))

    def save(self, path: str | Path) -> None:
        Path(path).write_text("\n".join(self.features) + "\n", encoding="utf-8")

    def __len__(self) -> int:
        return len(self.features)

    def __contains__(self, feature: object) -> bool:
        return isinstance(feature, str) and feature in self._index

    def __iter__(self):
        return iter(self.features)

    @cached_property
    def _index(self) -> dict[str, int]:
        return {f: i for i, f in enumerate(self.features)}

    @cached_property
    def _pattern(self) -> re.Pattern[str]:
        # Longest first so "gig bag" wins over "bag".
        alternatives = sorted(self.features, key=len, reverse=True)
        body = "|".join(re.escape(f).replace(r"\ ", r"\s+") for f in alternatives)
        return re.compile(rf"(?<![a-z0-9])(?:{body})(?![a-z0-9])")

    def find(self, text: str) -> list[str]:
        """Features mentioned in ``text``, in order of first mention, without repeats."""
        if not self.features or not text:
            return []
        found: dict[str, None] = {}
        for match in self._pattern.finditer(text.lower()):
            found.setdefault(" ".join(match.group(0).split()), None)
        return list(found)
