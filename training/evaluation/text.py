"""Tokenization for the quality metrics, the same for references and generated text.

Exactly PEPLER's ``postprocessing`` (``utils.py`` of lileipisces/PEPLER, itself adapted from
Keras' text preprocessing), applied after lower-casing, then a whitespace split:

* clitics split off, in this order: ``'s 'm 've n't 're 'd 'll`` (``"isn't"`` -> ``is n't``);
* parentheses become tokens of their own;
* each run of ``,`` becomes one ``,`` and each run of ``:`` one ``,``; each run of ``;`` one
  ``.`` and each run of ``.`` one ``.``; each run of ``!`` one ``!``; of ``?`` one ``?``.
  The substitutions run one after the other, as in PEPLER, so ``",:"`` gives two ``,`` tokens
  and ``"!?"`` gives ``! ?``.

Nothing else is normalised (a typographic apostrophe ``’`` stays part of its word, as in the
field's scorers).
"""

from __future__ import annotations

import re

#: (pattern, replacement) in PEPLER's order.
_POSTPROCESSING: list[tuple[re.Pattern[str], str]] = [
    (re.compile(pattern), repl)
    for pattern, repl in [
        (r"'s", " 's"),
        (r"'m", " 'm"),
        (r"'ve", " 've"),
        (r"n't", " n't"),
        (r"'re", " 're"),
        (r"'d", " 'd"),
        (r"'ll", " 'll"),
        (r"\(", " ( "),
        (r"\)", " ) "),
        (r",+", " , "),
        (r":+", " , "),
        (r";+", " . "),
        (r"\.+", " . "),
        (r"!+", " ! "),
        (r"\?+", " ? "),
    ]
]

#: PETER's headline protocol truncates each reference to its first 15 words.
PETER_REFERENCE_WORDS = 15


def postprocess(text: str) -> str:
    """PEPLER's ``postprocessing`` of lower-cased ``text``: tokens joined by single spaces."""
    text = text.lower()
    for pattern, repl in _POSTPROCESSING:
        text = pattern.sub(repl, text)
    return " ".join(text.split())


def tokenize(text: str) -> list[str]:
    """Metric tokens of ``text`` (see the module docstring for the rules)."""
    return postprocess(text).split()


def truncate(tokens: list[str], words: int | None) -> list[str]:
    """The first ``words`` tokens (all of them when ``words`` is None)."""
    return tokens if words is None else tokens[:words]
