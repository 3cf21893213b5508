"""Re-explain the (user, item) pairs users rated and score each explainer's text against the
explanations those users found helpful, taken as references (BLEU/ROUGE as in ``recx eval``).

One request per helpful explanation: the same recommendation event (its id, user and item), with
evidence from the prepared data and index as the worker gathers it (``recx_worker.core.prepare``);
items the prepared data does not know are counted and left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recx_worker.events import RecommendationEvent
from recx_worker.explainer import ExplainRequest
from training.evaluation.feedback_eval import RatedExplanation
from training.evaluation.metrics import corpus_bleu, rouge
from training.evaluation.text import tokenize


def reexplain(
    rows: Sequence[RatedExplanation],
    explainers: Sequence[str],
    data_dir: Path,
    *,
    index_dir: Path | None = None,
    config: Path | None = None,
    batch_size: int = 16,
    outputs: Path | None = None,
) -> dict[str, Any]:
    """Per explainer: BLEU-1/4 and ROUGE-1/2/L F against the helpful texts, over the helpful
    explanations whose item is known; ``unavailable`` names explainers that could not start.
    With ``outputs``, each explainer's texts go to ``outputs/NAME.jsonl`` (``{id, text}``)."""
    from recx_worker.config import load_settings
    from recx_worker.core import prepare
    from recx_worker.retrieval.evidence import EvidenceStore
    from training.evaluation.evaluate import EvalInputError, run_explainers

    helpful = [r for r in rows if r.helpful is True]
    if not helpful:
        return {"references": 0, "unknown_items": 0, "results": {}, "unavailable": {}}
    settings = load_settings(config)
    settings.paths.data_dir = data_dir
    if index_dir is not None:
        settings.paths.index_dir = index_dir
    try:
        store = EvidenceStore.open(data_dir, index_dir)
    except (FileNotFoundError, ValueError) as exc:
        raise EvalInputError(f"cannot re-explain without prepared data: {exc}") from None
    now = datetime.now(UTC)
    events = [
        RecommendationEvent(event_id=r.id, user_id=r.user_id, item_id=r.item_id, timestamp=now)
        for r in helpful
    ]
    kept, requests = [], []
    for row, req in zip(helpful, prepare(events, store, settings.chain), strict=True):
        if isinstance(req, ExplainRequest):
            kept.append(row)
            requests.append(req)
    result: dict[str, Any] = {
        "references": len(kept),
        "unknown_items": len(helpful) - len(kept),
        "results": {},
        "unavailable": {},
    }
    if not requests:
        return result
    runs, result["unavailable"] = run_explainers(
        list(explainers), settings, store, requests,
        batch_size=batch_size, progress=False, outputs=outputs,
    )  # fmt: skip
    refs = [tokenize(r.text) for r in kept]
    for name, run in runs.items():
        hyps = [tokenize(t) for t in run.texts]
        scores = rouge(refs, hyps)
        result["results"][name] = {
            "n": len(hyps),
            "failures": run.failures,
            "bleu_1": corpus_bleu(refs, hyps, 1),
            "bleu_4": corpus_bleu(refs, hyps, 4),
            "rouge_1_f": scores["rouge_1_f"],
            "rouge_2_f": scores["rouge_2_f"],
            "rouge_l_f": scores["rouge_l_f"],
        }
    return result
