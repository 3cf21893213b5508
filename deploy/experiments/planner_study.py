"""Can a trained feature planner beat "lead with the item's most mentioned feature"?

Candidates per record: the item profile's first 15 features and the shopper's first 10; a
logistic model over count, rank, sentiment and prior features, fitted on the valid split
(5-fold cross-validated there), scored on test. Run from the repository root:
``.venv/bin/python deploy/experiments/planner_study.py`` (docs/results.md, adapter v3 section).
"""

import collections
import json
import math
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

D = "var/data/musical"
tr = [json.loads(line) for line in Path(f"{D}/train.jsonl").read_text().splitlines()]
ip = json.loads(Path(f"{D}/item_profiles.json").read_text())
uh = json.loads(Path(f"{D}/user_histories.json").read_text())
gi = collections.Counter(r["feature"] for r in tr)
N = len(tr)
fi = collections.defaultdict(collections.Counter)
fu = collections.defaultdict(collections.Counter)
for r in tr:
    fi[r["item_id"]][r["feature"]] += 1
    fu[r["user_id"]][r["feature"]] += 1


def cands(r):
    prof = ip.get(r["item_id"], {}).get("features", [])
    uprof = uh.get(r["user_id"], {}).get("features", [])
    c = [x["feature"] for x in prof[:15]]
    for x in uprof[:10]:
        if x["feature"] not in c:
            c.append(x["feature"])
    return (
        c,
        {x["feature"]: (i, x) for i, x in enumerate(prof)},
        {x["feature"]: (i, x) for i, x in enumerate(uprof)},
    )


def feats(r):
    c, P, U = cands(r)
    rows = []
    for f in c:
        pi, px = P.get(f, (20, {"count": 0, "sentiment": 0}))
        ui, ux = U.get(f, (20, {"count": 0, "sentiment": 0}))
        rows.append(
            [
                math.log1p(px["count"]),
                float(pi == 0),
                1 / (1 + pi),
                px.get("sentiment", 0),
                math.log1p(ux["count"]),
                1 / (1 + ui),
                math.log((gi[f] + 1) / N),
                math.log1p(fi[r["item_id"]][f]),
                math.log1p(fu[r["user_id"]][f]),
                float(f in P and f in U),
                len(f.split()),
            ]
        )
    return c, np.array(rows)


def build(split):
    recs = [json.loads(line) for line in Path(f"{D}/{split}.jsonl").read_text().splitlines()]
    out = []
    for r in recs:
        c, X = feats(r)
        out.append((c, X, r["feature"]))
    return out


va = build("valid")
te = build("test")


def fit(data):
    X = np.vstack([x for c, x, f in data if len(c)])
    y = np.concatenate([[cc == f for cc in c] for c, x, f in data if len(c)])
    return LogisticRegression(C=1.0, max_iter=2000).fit(X, y)


def hit(model, data):
    h = 0
    for c, X, f in data:
        if not c:
            continue
        h += c[int(np.argmax(model.decision_function(X)))] == f
    return h / len(data)


def base(data):
    return sum(bool(c) and c[0] == f for c, X, f in data) / len(data)


print("baseline valid", round(base(va), 4), "test", round(base(te), 4))
print("upper bound test (ref in candidates)", sum(f in c for c, X, f in te) / len(te))
# CV on valid
idx = np.arange(len(va))
rng = np.random.default_rng(0)
rng.shuffle(idx)
folds = np.array_split(idx, 5)
hs = []
for k in range(5):
    trn = [va[i] for j in range(5) if j != k for i in folds[j]]
    tst = [va[i] for i in folds[k]]
    hs.append(hit(fit(trn), tst) * len(tst))
print("CV valid", round(sum(hs) / len(va), 4))
m = fit(va)
print("fit valid -> test", round(hit(m, te), 4))
print(np.round(m.coef_, 2))
