"""Sequence-level distillation targets: the lora explainer at its (expensive) configured
decoding answers train records, and its answers become the targets of a student trained with
``recx train lora --targets`` that decodes greedily (Kim and Rush, 2016).

``write_teacher_targets`` appends ``{record_id, explanation}`` lines (``null`` when the teacher
declined) and resumes where an earlier run stopped.

Which of the teacher's candidates becomes the target (``pick``):

* ``"model"``: the one the explainer itself keeps (its ``selection`` rule), what it would say
  in production;
* ``"reference"``: the one closest to the record's reference (ROUGE-1 F + ROUGE-L F as
  ``recx eval`` scores them; the explainer's own pick on ties). Train records have
  references, so the target stays in the teacher's voice (fluent, positive, grounded by its
  decoding) while saying what shoppers said; the student never sees a reference at
  inference. Its lines also list the ``candidates``, so another rule can pick again without
  decoding.
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


PICKS = ("model", "reference")


def reference_scores(reference: str, texts: list[str]) -> list[float]:
    """ROUGE-1 F + ROUGE-L F of each candidate against ``reference``, tokenized and cut to 15
    words as ``recx eval`` does: the words a shopper used, and in their order."""
    from training.evaluation.metrics import rouge_l, rouge_n
    from training.evaluation.text import PETER_REFERENCE_WORDS, tokenize

    ref = tokenize(reference)[:PETER_REFERENCE_WORDS]
    hyps = [tokenize(t) for t in texts]
    return [rouge_n(ref, h, 1)[2] + rouge_l(ref, h)[2] for h in hyps]


def reference_pick(reference: str, texts: list[str], model_pick: int) -> int:
    """Index of the candidate closest to ``reference`` (``reference_scores``), ``model_pick``
    on ties."""
    scores = reference_scores(reference, texts)
    return max(range(len(texts)), key=lambda i: (scores[i], i == model_pick))


def _answers(
    explainer: Any, records: list[ExplanationRecord], requests: list, pick: str
) -> list[dict[str, Any]]:
    """Per record, its target line's fields: ``explanation`` (``None`` where the teacher
    declined) and, with ``pick = "reference"``, all cleaned ``candidates`` (to pick again
    without decoding)."""
    if pick == "model":
        return [
            {"explanation": outcome.text if isinstance(outcome, Explanation) else None}
            for outcome in explainer.explain_batch(requests)
        ]
    groups = [texts for texts, _ in explainer.candidate_texts(requests)]
    model_picks = explainer.select(requests, groups)
    return [
        {
            "explanation": texts[reference_pick(record.explanation, texts, chosen)]
            if texts
            else None,
            "candidates": texts,
        }
        for record, texts, chosen in zip(records, groups, model_picks, strict=True)
    ]


def write_teacher_targets(
    explainer: Any,
    data: PreparedData,
    store: Any,
    records: list[ExplanationRecord],
    out: Path,
    *,
    max_words: int,
    batch_size: int = 64,
    pick: str = "model",
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> int:
    """The teacher's answer for each of ``records`` not yet in ``out``; returns how many were
    written now. Requests carry the evidence the record's training example is built from;
    ``pick`` says which candidate is kept (see the module docstring)."""
    if pick not in PICKS:
        raise ValueError(f"pick must be one of {', '.join(PICKS)}")
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
            for record, fields in zip(
                chunk, _answers(explainer, chunk, requests, pick), strict=True
            ):
                sink.write(json.dumps({"record_id": record.record_id, **fields}) + "\n")
            sink.flush()
            progress(len(records) - len(pending) + start + len(chunk), len(records))
    return len(pending)
