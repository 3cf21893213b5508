"""Tokenization for the quality metrics, the same for references and generated text.

The rules follow the PETER/PEPLER evaluation code (``postprocessing`` in PETER's ``utils.py``):
lower-case; contractions ``'s 'm 've n't 're 'd 'll`` split off; each run of ``,`` ``.`` ``!``
``?`` becomes one token (``"wow!!!"`` -> ``wow !``, ``"..."`` -> ``.``); whitespace split.
Typographic apostrophes are read as ``'``.
"""

from __future__ import annotations

import re

_CONTRACTION = re.compile(r"('s|'m|'ve|n't|'re|'d|'ll)")
_PUNCT_RUNS = [(re.compile(r",+"), " , "), (re.compile(r"\.+"), " . ")]
_PUNCT_RUNS += [(re.compile(r"!+"), " ! "), (re.compile(r"\?+"), " ? ")]

#: PETER's headline protocol truncates each reference to its first 15 words.
PETER_REFERENCE_WORDS = 15


def tokenize(text: str) -> list[str]:
    """Metric tokens of ``text`` (see the module docstring for the rules)."""
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    text = _CONTRACTION.sub(r" \1", text)
    for pattern, repl in _PUNCT_RUNS:
        text = pattern.sub(repl, text)
    return text.split()


def truncate(tokens: list[str], words: int | None) -> list[str]:
    """The first ``words`` tokens (all of them when ``words`` is None)."""
    return tokens if words is None else tokens[:words]
