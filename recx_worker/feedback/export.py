"""``recx feedback export``: rated explanations as data.

- ``feedback-eval.jsonl``: one row per explanation rated helpful or not helpful
  (``{id, experiment, arm, explainer, user_id, item_id, text, helpful}``; ``helpful`` is null
  when the same explanation got both verdicts), an evaluation set of real user judgements.
- ``preference-pairs.jsonl``: for each item, explanations rated helpful paired with ones rated
  not helpful, in the ``{prompt, chosen, rejected}`` format preference trainers (TRL's DPO
  trainer) read. ``prompt`` is the model input (``lm_input``) of the chosen explanation's
  evidence, the context the LoRA explainer is trained on.
"""

from __future__ import annotations

import json
from collections import defaultdict
from itertools import product
from pathlib import Path

from recx_worker.events import Evidence
from recx_worker.feedback.store import FeedbackStore
from recx_worker.lm.prompting import lm_input


def export(store_path: Path, out_dir: Path, *, max_pairs_per_item: int = 10) -> dict[str, int]:
    """Write both files under ``out_dir``; returns how many rows each got."""
    store = FeedbackStore(store_path)
    try:
        rated = store.rated()
    finally:
        store.close()
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "feedback-eval.jsonl").open("w", encoding="utf-8") as f:
        for r in rated:
            row = {k: v for k, v in r.items() if k != "evidence"}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    by_item: dict[str, dict[bool, list[dict]]] = defaultdict(lambda: {True: [], False: []})
    for r in rated:
        if r["helpful"] is not None:
            by_item[r["item_id"]][r["helpful"]].append(r)
    pairs = 0
    with (out_dir / "preference-pairs.jsonl").open("w", encoding="utf-8") as f:
        for item, groups in sorted(by_item.items()):
            for chosen, rejected in list(product(groups[True], groups[False]))[:max_pairs_per_item]:
                if chosen["text"] == rejected["text"]:
                    continue  # no preference signal between identical texts
                evidence = Evidence.model_validate_json(chosen["evidence"])
                row = {
                    "prompt": lm_input(evidence),
                    "chosen": chosen["text"],
                    "rejected": rejected["text"],
                    "item_id": item,
                    "chosen_id": chosen["id"],
                    "rejected_id": rejected["id"],
                }
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                pairs += 1
    return {"rated": len(rated), "pairs": pairs}
