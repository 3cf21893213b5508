"""Which explanations may be training targets: a recommender's voice, never a complaint.

Review sentences that argue against their item ("the strings are not as good as they used to
be") teach an explainer to argue against what it recommends. ``drop_negative`` removes the
records whose explanation reads as negative (VADER, as ``recx_worker.sentiment`` defines it)
before training examples are built.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from recx_worker.prepared import ExplanationRecord
from recx_worker.sentiment import NEGATIVE_THRESHOLD, is_negative


@dataclass(frozen=True, slots=True)
class TargetFilter:
    """Records split into those kept as targets and those dropped as negative."""

    kept: list[ExplanationRecord]
    dropped: list[ExplanationRecord]

    @property
    def dropped_share(self) -> float:
        total = len(self.kept) + len(self.dropped)
        return len(self.dropped) / total if total else 0.0


def drop_negative(
    records: Sequence[ExplanationRecord], threshold: float | None = NEGATIVE_THRESHOLD
) -> TargetFilter:
    """Keep the records whose explanation is not negative at ``threshold`` (None keeps all)."""
    if threshold is None:
        return TargetFilter(list(records), [])
    kept, dropped = [], []
    for record in records:
        (dropped if is_negative(record.explanation, threshold) else kept).append(record)
    return TargetFilter(kept, dropped)


def read_targets(path: Path) -> dict[str, str]:
    """``{record_id: explanation}`` from a JSON Lines file (e.g. a teacher's outputs for
    distillation); lines whose explanation is empty or null are left out."""
    targets: dict[str, str] = {}
    with Path(path).open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                record_id, text = str(row["record_id"]), row["explanation"]
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: not a {{record_id, explanation}} line") from exc
            if isinstance(text, str) and text.strip():
                targets[record_id] = text.strip()
    return targets


def replace_targets(
    records: Sequence[ExplanationRecord], targets: Mapping[str, str]
) -> list[ExplanationRecord]:
    """The records ``targets`` names, each with its explanation replaced by the given text."""
    return [
        record.model_copy(update={"explanation": targets[record.record_id]})
        for record in records
        if record.record_id in targets
    ]
