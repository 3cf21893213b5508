"""Training pairs (rendered evidence context -> explanation), built exactly as at inference."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from recx_worker.lm.prompting import lm_input
from recx_worker.prepared import ExplanationRecord, PreparedData
from recx_worker.sentiment import NEGATIVE_THRESHOLD
from training.targets import drop_negative, replace_targets


@dataclass(frozen=True, slots=True)
class Example:
    record_id: str
    prompt: str
    target: str


def record_evidence(store: Any, data: PreparedData, record: ExplanationRecord) -> Any:
    """The evidence the explainer would get for this record's (user, item) at inference.

    The record's own item is excluded from the user's history. Item profiles are built from the
    train split, so a train record's own sentence can be the item's snippet: it is replaced by
    the item's next snippet, since at inference the reference is never among the snippets.
    """
    evidence = store.evidence(record.user_id, record.item_id, exclude_items={record.item_id})
    if evidence.item_snippet and evidence.item_snippet.strip() == record.explanation.strip():
        profile = data.item_profiles.get(record.item_id)
        others = [s for s in (profile.snippets if profile else []) if s != record.explanation]
        evidence = evidence.model_copy(update={"item_snippet": others[0] if others else None})
    return evidence


def training_records(
    store: Any,
    records: Sequence[ExplanationRecord],
    limit: int | None = None,
    seed: int = 0,
    negative_threshold: float | None = NEGATIVE_THRESHOLD,
) -> list[ExplanationRecord]:
    """The records a model trains on: explanation not negative (VADER compound <=
    ``negative_threshold``; ``None`` keeps all, ``training.targets``), item known to the
    evidence store, and a seeded random sample of ``limit`` of those when limited."""
    kept = [
        r for r in drop_negative(records, negative_threshold).kept if store.knows_item(r.item_id)
    ]
    if limit is not None and limit < len(kept):
        kept = random.Random(seed).sample(kept, limit)
    return kept


def build_examples(
    store: Any,
    data: PreparedData,
    split: str,
    limit: int | None = None,
    seed: int = 0,
    negative_threshold: float | None = NEGATIVE_THRESHOLD,
    targets: Mapping[str, str] | None = None,
) -> list[Example]:
    """Examples of ``split``'s ``training_records`` (up to ``limit``).

    ``targets`` (``{record_id: text}``, e.g. a teacher's outputs) keeps only the records it
    names and trains on its text instead of the reference; the negative filter then reads
    that text.
    """
    originals = {record.record_id: record for record in data.split(split)}
    records: Sequence[ExplanationRecord] = list(originals.values())
    if targets is not None:
        records = replace_targets(records, targets)
    examples = []
    for record in training_records(store, records, limit, seed, negative_threshold):
        # the evidence of the original record: its own review never becomes the snippet
        evidence = record_evidence(store, data, originals[record.record_id])
        examples.append(Example(record.record_id, lm_input(evidence), record.explanation.strip()))
    return examples
