"""Recommendation events made from a prepared split: inputs for benchmarks, demos and tests.

Each record of the split becomes "user U was recommended item I", with U's most recent
training-history items (never I itself) as ``history``. Cycling over the split gives any count;
ids stay unique (``<record_id>`` then ``<record_id>~1``, ``~2``...).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

from recx_worker.events import RecommendationEvent
from recx_worker.prepared import PreparedData, recommendation_event, utc


def events_from_split(
    data_dir: str | Path, n: int, *, split: str = "test", history: int = 10
) -> Iterator[RecommendationEvent]:
    """``n`` events from ``split`` of the prepared data in ``data_dir``."""
    data = PreparedData(data_dir)
    records = data.split(split)
    if not records:
        raise ValueError(f"split {split!r} in {data_dir} is empty")
    histories = data.user_histories

    def generate() -> Iterator[RecommendationEvent]:
        lap = 0
        while True:
            for rank, record in enumerate(records):
                yield recommendation_event(
                    record,
                    histories,
                    history=history,
                    event_id=record.record_id if lap == 0 else f"{record.record_id}~{lap}",
                    score=round(1.0 / (1 + rank % 10), 4),
                    rank=rank % 10,
                    source_model=f"split:{split}",
                    timestamp=utc(record.timestamp) or datetime.now(UTC),
                )
            lap += 1

    return islice(generate(), n)
