"""Sequence-level distillation targets: the lora explainer at its (expensive) configured
decoding answers train records, and its answers become the targets of a student trained with
``recx train lora --targets`` that decodes greedily (Kim and Rush, 2016).

``write_teacher_targets`` appends ``{record_id, explanation}`` lines (``null`` when the teacher
declined) and resumes where an earlier run stopped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recx_worker.explainer import ExplainRequest, Explanation
from recx_worker.prepared import ExplanationRecord, PreparedData
from training.evaluation.runner import record_event
from training.examples import record_evidence


def _answered(out: Path) -> set[str]:
    if not out.exists():
        return set()
    with out.open(encoding="utf-8") as lines:
        return {json.loads(line)["record_id"] for line in lines if line.strip()}


def write_teacher_targets(
    explainer: Any,
    data: PreparedData,
    store: Any,
    records: list[ExplanationRecord],
    out: Path,
    *,
    max_words: int,
    batch_size: int = 64,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> int:
    """The teacher's answer for each of ``records`` not yet in ``out``; returns how many were
    written now. Requests carry the evidence the record's training example is built from."""
    done = _answered(out)
    pending = [r for r in records if r.record_id not in done]
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as sink:
        for start in range(0, len(pending), batch_size):
            chunk = pending[start : start + batch_size]
            requests = [
                ExplainRequest(
                    event=record_event(r),
                    evidence=record_evidence(store, data, r),
                    max_words=max_words,
                )
                for r in chunk
            ]
            for record, outcome in zip(chunk, explainer.explain_batch(requests), strict=True):
                text = outcome.text if isinstance(outcome, Explanation) else None
                sink.write(json.dumps({"record_id": record.record_id, "explanation": text}) + "\n")
            sink.flush()
            progress(len(records) - len(pending) + start + len(chunk), len(records))
    return len(pending)
