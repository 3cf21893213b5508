"""Reference points that are not plugins: they exist only to be compared against."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import ClassVar

from recx_worker.explainer import BaseExplainer, ExplainRequest, Explanation
from recx_worker.prepared import ExplanationRecord


class MostFrequentExplanation(BaseExplainer):
    """The item's most frequent training explanation (the trivial baseline of the literature).

    Ties go to the explanation seen first in the training split; an item without training
    explanations gets the most frequent training explanation overall.
    """

    name: ClassVar[str] = "most-frequent"
    version: ClassVar[str] = "1"

    def __init__(self, train: Iterable[ExplanationRecord]) -> None:
        super().__init__()
        per_item: dict[str, Counter[str]] = defaultdict(Counter)
        overall: Counter[str] = Counter()
        for record in train:
            per_item[record.item_id][record.explanation] += 1
            overall[record.explanation] += 1
        if not overall:
            raise ValueError("the training split has no explanation")
        self._by_item = {item: c.most_common(1)[0][0] for item, c in per_item.items()}
        self._default = overall.most_common(1)[0][0]

    def explain_one(self, request: ExplainRequest) -> Explanation:
        return Explanation(text=self._by_item.get(request.item_id, self._default))
