"""Deterministic 8:1:1 split in which every valid/test user and item also occurs in train.

As in PETER's splits: records are shuffled with the seed; each user's and each item's first
record (in shuffled order) is reserved for train, so no valid/test user or item is unseen; the
remaining records fill train up to 80 % and are then cut into valid and test halves.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol


class _Keyed(Protocol):
    user_id: str
    item_id: str


def split_indices(
    records: Sequence[_Keyed], seed: int = 42, ratios: tuple[int, int, int] = (8, 1, 1)
) -> dict[str, list[int]]:
    """Indices of ``records`` per split ("train", "valid", "test"), each in input order."""
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    seen_users: set[str] = set()
    seen_items: set[str] = set()
    train: list[int] = []
    rest: list[int] = []
    for i in order:
        rec = records[i]
        if rec.user_id not in seen_users or rec.item_id not in seen_items:
            train.append(i)
            seen_users.add(rec.user_id)
            seen_items.add(rec.item_id)
        else:
            rest.append(i)
    total = sum(ratios)
    n_train = max(len(train), round(len(records) * ratios[0] / total))
    fill = n_train - len(train)
    train += rest[:fill]
    rest = rest[fill:]
    n_valid = round(len(rest) * ratios[1] / (ratios[1] + ratios[2]))
    return {
        "train": sorted(train),
        "valid": sorted(rest[:n_valid]),
        "test": sorted(rest[n_valid:]),
    }
