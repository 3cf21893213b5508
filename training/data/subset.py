"""Cut a category out of a review file: the items whose reviews keep naming some keywords.

Used to make a "new domain" from a file whose items carry no category (the Amazon 5-core
files): e.g. recording gear (mic, microphone, vocals, xlr ...) out of Musical Instruments.
The output is the input's own JSON lines, unchanged, for the selected items only.
"""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from recx_worker.features import words
from training.data.readers import ReadReport, read_reviews


def select_items(reviews_path: Path, keywords: Iterable[str], share: float) -> set[str]:
    """Items at least ``share`` of whose reviews (text or title) use one of ``keywords``."""
    wanted = {k.strip().lower() for k in keywords if k.strip()}
    hits: dict[str, list[bool]] = defaultdict(list)
    for review in read_reviews(reviews_path, "auto", ReadReport()):
        tokens = set(words(f"{review.text} {review.title}"))
        hits[review.item_id].append(bool(tokens & wanted))
    return {item for item, flags in hits.items() if sum(flags) >= share * len(flags)}


def write_subset(reviews_path: Path, items: set[str], out: Path, invert: bool = False) -> int:
    """Copy the lines of ``reviews_path`` whose item is in ``items`` (or not, with ``invert``)
    to ``out`` (gzip when it ends in .gz); returns the number of lines written."""
    opener = gzip.open if str(reviews_path).endswith(".gz") else open
    out_opener = gzip.open if str(out).endswith(".gz") else open
    written = 0
    with (
        opener(reviews_path, "rt", encoding="utf-8") as src,
        out_opener(out, "wt", encoding="utf-8") as dst,
    ):
        for line in src:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            item = str(obj.get("asin", obj.get("item_id", "")))
            if (item in items) != invert:
                dst.write(line if line.endswith("\n") else line + "\n")
                written += 1
    return written
