"""How the guard treats true and untrue sentences, measured on the prepared data itself.

Three sets of (request, text), each request built for a record of the split exactly as
``recx eval`` builds it (its own review is never evidence):

* **own** - the record's real review sentence about its own item: every rejection is a false
  rejection (the items' sentences are true of them by construction);
* **other item** - a real sentence of another item of the split whose feature the item is
  never said to have (in none of its train reviews or held-out sentences);
* **other domain** - "Recommended because you liked the F and the G." with F, G from a
  foreign lexicon (another domain's), in neither this data's lexicon nor the item's reviews:
  the case a lexicon-only guard cannot see.

A caught untrue sentence is any rejection of an "other" set. The lexicon-only guard (the guard
before item vocabularies) is measured beside the noun-level guard at each tolerance; plugin
checks (the sentiment guard) are left out, so the numbers are the grounding checks' own.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from recx_worker.config import ChainSettings
from recx_worker.explainer import ExplainRequest
from recx_worker.features import Lexicon, words
from recx_worker.guard import Guard
from recx_worker.prepared import PreparedData
from recx_worker.retrieval.evidence import EvidenceStore
from training.evaluation.evaluate import build_requests

MAX_WORDS = 25


def _reason_kind(reason: str) -> str:
    return reason.split(":")[0].split(" '")[0]


def _rate(guard: Guard, pairs: Sequence[tuple[ExplainRequest, str]]) -> dict:
    reasons: Counter = Counter()
    for request, text in pairs:
        verdict = guard.check(request, text)
        if not verdict.ok:
            reasons[_reason_kind(verdict.reason or "")] += 1
    rejected = sum(reasons.values())
    return {
        "n": len(pairs),
        "rejected": rejected,
        "rate": round(rejected / len(pairs), 4) if pairs else None,
        "reasons": dict(reasons.most_common()),
    }


def build_sets(
    data: PreparedData,
    store: EvidenceStore,
    split: str = "test",
    limit: int | None = None,
    foreign: Lexicon | None = None,
    seed: int = 0,
) -> dict[str, list[tuple[ExplainRequest, str]]]:
    """The three sets of the module docstring."""
    records = data.split(split)[:limit] if limit else data.split(split)
    records, requests, _ = build_requests(records, store, ChainSettings(max_words=MAX_WORDS))
    vocabulary = data.item_vocabulary
    known: dict[str, set[str]] = {}
    for name in ("train", "valid", "test"):
        for r in data.split(name):
            known.setdefault(r.item_id, set()).update(words(r.explanation))
    if vocabulary is not None:
        for item, vocab in vocabulary.items.items():
            known.setdefault(item, set()).update(vocab)

    def absent(item: str, phrase: str) -> bool:
        return not set(phrase.split()) <= known.get(item, set())

    rng = random.Random(seed)
    own = [(req, rec.explanation) for rec, req in zip(records, requests, strict=True)]
    other_item = []
    for rec, req in zip(records, requests, strict=True):
        for _ in range(50):  # a few tries to find a sentence about something the item lacks
            other = records[rng.randrange(len(records))]
            if other.item_id != rec.item_id and absent(rec.item_id, other.feature):
                other_item.append((req, other.explanation))
                break
    other_domain = []
    if foreign is not None:
        candidates = [f for f in foreign.features if f not in data.lexicon]
        for rec, req in zip(records, requests, strict=True):
            usable = [f for f in candidates if absent(rec.item_id, f)]
            if len(usable) >= 2:
                f, g = rng.sample(usable[:100], 2)
                other_domain.append((req, f"Recommended because you liked the {f} and the {g}."))
    return {"own": own, "other item": other_item, "other domain": other_domain}


def guard_study(
    data_dir: Path,
    index_dir: Path | None = None,
    split: str = "test",
    limit: int | None = None,
    foreign: Lexicon | None = None,
    tolerances: Sequence[int] = (0, 1, 2),
) -> dict:
    """Rejection rates of the lexicon-only guard and the noun-level guard on each set."""
    data = PreparedData(data_dir)
    store = EvidenceStore.open(data_dir, index_dir)
    if data.item_vocabulary is None:
        raise ValueError(f"{data_dir} has no item_vocab.json: prepare it again")
    sets = build_sets(data, store, split, limit, foreign)
    guards = {"lexicon only": Guard(data.lexicon)}
    for tolerance in tolerances:
        guards[f"nouns, tolerance {tolerance}"] = Guard(
            data.lexicon, vocabulary=data.item_vocabulary, unsupported_nouns=tolerance
        )
    return {
        "data": str(data_dir),
        "split": split,
        "sets": {name: len(pairs) for name, pairs in sets.items()},
        "results": {
            guard_name: {name: _rate(guard, pairs) for name, pairs in sets.items() if pairs}
            for guard_name, guard in guards.items()
        },
    }
