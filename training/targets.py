"""Which explanations may be training targets: a recommender's voice, never a complaint.

Review sentences that argue against their item ("the strings are not as good as they used to
be") teach an explainer to argue against what it recommends. ``drop_negative`` removes the
records whose explanation reads as negative (VADER, as ``recx_worker.sentiment`` defines it)
before training examples are built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
