"""Why the noun-level guard rejects the items' own sentences, and what other tolerances would
cost (docs/data.md, "Why real sentences are rejected"). Builds the three sets of
`recx data guard-study` (training/data/guard_study.py), records for every sentence the rule,
the unsupported nouns and the ungrounded lexicon features, then re-scores the sets under
alternative relaxations (a rejection by any other check stays a rejection).

    PYTHONPATH=$PWD python deploy/experiments/domain/guard_alternatives.py \
        var/data/musical var/index/musical var/domain/b0/data/lexicon.txt /tmp/guard_rows.json
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from recx_worker.features import Lexicon
from recx_worker.guard import FRAMING_WORDS, Guard, _supported
from recx_worker.nouns import content_nouns, zipf
from recx_worker.prepared import PreparedData
from recx_worker.retrieval.evidence import EvidenceStore
from training.data.guard_study import build_sets

data_dir, index_dir, foreign_path, rows_path = (Path(a) for a in sys.argv[1:5])
data = PreparedData(data_dir)
voc = data.item_vocabulary
assert voc is not None
if rows_path.is_file():
    rows = json.loads(rows_path.read_text())
else:
    store = EvidenceStore.open(data_dir, index_dir)
    sets = build_sets(data, store, "test", None, Lexicon.load(foreign_path))
    guard = Guard(data.lexicon, vocabulary=voc, unsupported_nouns=0)
    rows = {}
    for name, pairs in sets.items():
        rows[name] = []
        for req, text in pairs:
            verdict = guard.check(req, text)
            known = guard._item_words(req) | voc.generic | FRAMING_WORDS
            allowed = req.evidence.allowed_features()
            has = voc.features_of(req.item_id)
            rows[name].append(
                {
                    "item": req.item_id,
                    "text": text,
                    "ok": verdict.ok,
                    "reason": verdict.reason,
                    "uns": [n for n in content_nouns(text) if not _supported(n, known)],
                    "ung": [
                        f for f in data.lexicon.find(text) if f not in allowed and f not in has
                    ],
                }
            )
    rows_path.write_text(json.dumps(rows))

for name, rs in rows.items():
    rejected = [r for r in rs if not r["ok"]]
    print(f"## {name}: {len(rejected)} of {len(rs)} rejected at tolerance 0")
    print("  only unsupported nouns", sum(1 for r in rejected if r["uns"] and not r["ung"]))
    print("  only ungrounded features", sum(1 for r in rejected if r["ung"] and not r["uns"]))
    print("  both", sum(1 for r in rejected if r["uns"] and r["ung"]))
    print("  features", Counter(f for r in rejected for f in r["ung"]).most_common(20))
    print("  nouns", Counter(n for r in rejected for n in r["uns"]).most_common(20))
    print("  unsupported nouns per sentence", sorted(Counter(len(r["uns"]) for r in rs).items()))

share: Counter = Counter()
for feats in voc.features.values():
    share.update(feats)
ids = json.loads((index_dir / "ids.json").read_text())
ids = ids.get("ids", ids) if isinstance(ids, dict) else ids
vectors = np.load(index_dir / "vectors.npy")
position = {item: k for k, item in enumerate(ids)}
similarity = vectors @ vectors.T


def neighbours(item: str, k: int) -> list[str]:
    if item not in position or k == 0:
        return []
    return [ids[j] for j in np.argsort(-similarity[position[item]])[1 : k + 1]]


def rates(feature_ok, noun_extra=lambda r: frozenset(), tolerance: int = 0) -> str:
    out = []
    for rs in rows.values():
        rejected = 0
        for r in rs:
            other = not r["ok"] and not r["reason"].startswith(("ungrounded", "unsupported"))
            ung = [f for f in r["ung"] if not feature_ok(r, f)]
            extra = noun_extra(r)
            uns = [n for n in r["uns"] if not _supported(n, extra)]
            rejected += other or bool(ung) or len(uns) > tolerance
        out.append(f"{rejected / len(rs):.1%}")
    return " | ".join(out)


print("| relaxation | own (false rejection) | other item (caught) | other domain (caught) |")
print("|---|---:|---:|---:|")
never = lambda r, f: False  # noqa: E731
print(f"| none: tolerance 0 (default) | {rates(never)} |")
print(f"| tolerance 1 | {rates(never, tolerance=1)} |")
n_items = len(voc.items)
for t in (0.4, 0.25, 0.1):
    relaxed = rates(lambda r, f, t=t: share[f] >= t * n_items)
    print(f"| features in >= {t:.0%} of items' reviews | {relaxed} |")
for z in (5.0, 4.6):
    relaxed = rates(lambda r, f, z=z: zipf(f) >= z)
    print(f"| features with Zipf >= {z} (common English) | {relaxed} |")
for k in (1, 3, 10):

    def nb_words(r, k=k):
        return frozenset().union(*(voc.words_of(n) for n in neighbours(r["item"], k)))

    def nb_features(r, f, k=k):
        return any(f in voc.features_of(n) for n in neighbours(r["item"], k))

    print(f"| nouns of the {k} nearest items | {rates(never, nb_words)} |")
    print(f"| nouns and features of the {k} nearest items | {rates(nb_features, nb_words)} |")
