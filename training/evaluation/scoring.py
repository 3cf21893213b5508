"""Scores one system's outputs on a split: literature metrics, what n-grams miss (meaning,
variety, personalisation, sentiment), grounding and chain shares."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from recx_worker.features import Lexicon, words
from recx_worker.prepared import ExplanationRecord, PreparedData
from recx_worker.sentiment import is_negative
from training.evaluation.diversity import distinct_n, duplicate_share, personalisation
from training.evaluation.metrics import FeatureMatcher, score
from training.evaluation.semantic import SemanticSimilarity
from training.evaluation.text import PETER_REFERENCE_WORDS, tokenize

TEXT_KEYS = (
    "bleu_1", "bleu_4",
    "rouge_1_p", "rouge_1_r", "rouge_1_f",
    "rouge_2_p", "rouge_2_r", "rouge_2_f",
    "rouge_l_p", "rouge_l_r", "rouge_l_f",
)  # fmt: skip
#: Metrics beyond n-grams, in every result (means over records unless said otherwise).
BEYOND_KEYS = (
    "semantic_similarity",  # MiniLM cosine to the full reference
    "distinct_1", "distinct_2",  # distinct n-grams / n-grams, over all outputs
    "duplicate_share",  # outputs some other output repeats exactly
    "negative_share",  # VADER compound <= -0.05
    "personalisation",  # items with >= 2 records: share of record pairs with different outputs
)  # fmt: skip


@dataclass(slots=True)
class Outputs:
    """What one system produced for each record (same order as the records)."""

    texts: list[str]
    stages: list[str] = field(default_factory=list)
    failures: int = 0
    guard_rejections: int | None = None
    fallbacks: int | None = None


@dataclass(slots=True)
class ScoringContext:
    """Everything about the split that does not depend on the system being scored."""

    records: list[ExplanationRecord]
    lexicon: Lexicon
    matcher: FeatureMatcher
    denominators: dict[str, int]
    allowed: list[set[str]]
    semantic: SemanticSimilarity

    @classmethod
    def build(
        cls,
        data: PreparedData,
        records: list[ExplanationRecord],
        evidence_allowed: list[set[str]],
        embedder: Any = None,
    ) -> ScoringContext:
        """``evidence_allowed[i]``: features the evidence for record i allows (guard's view)."""
        dataset_features = {
            r.feature for split in ("train", "valid", "test") for r in data.split(split)
        }
        profiles = data.item_profiles
        allowed = []
        for record, from_evidence in zip(records, evidence_allowed, strict=True):
            profile = profiles.get(record.item_id)
            names = set(profile.feature_names()) if profile else set()
            allowed.append({" ".join(words(f)) for f in names | from_evidence})
        return cls(
            records=records,
            lexicon=data.lexicon,
            matcher=FeatureMatcher(data.lexicon.features),
            denominators={"dataset": len(dataset_features), "lexicon": len(data.lexicon)},
            allowed=allowed,
            semantic=SemanticSimilarity([r.explanation for r in records], embedder),
        )

    def grounded(self, texts: Sequence[str]) -> list[bool]:
        """Per text: mentions only features the item has (profile features or evidence)."""
        return [set(self.lexicon.find(t)) <= ok for t, ok in zip(texts, self.allowed, strict=True)]

    def per_record(self, texts: Sequence[str]) -> dict[str, list[float]]:
        """Per-record metrics that average into a system's score (and are bootstrapped):
        MiniLM cosine to the full reference, and 1.0 for a negative text (VADER)."""
        return {
            "semantic_similarity": self.semantic.per_record(texts),
            "negative_share": [float(is_negative(t)) for t in texts],
        }

    def beyond_ngrams(self, texts: Sequence[str]) -> dict[str, float]:
        """Meaning, variety, personalisation and sentiment of ``texts`` (see ``BEYOND_KEYS``)."""
        hyps = [tokenize(t) for t in texts]
        n = len(texts)
        means = {k: sum(v) / n if n else 0.0 for k, v in self.per_record(texts).items()}
        return {
            **means,
            "distinct_1": distinct_n(hyps, 1),
            "distinct_2": distinct_n(hyps, 2),
            "duplicate_share": duplicate_share(hyps),
            **personalisation([r.item_id for r in self.records], hyps),
        }


def score_outputs(ctx: ScoringContext, outputs: Outputs) -> dict:
    """Headline metrics (PETER: references cut to 15 words), full-reference BLEU/ROUGE beside."""
    refs = [r.explanation for r in ctx.records]
    feats = [r.feature for r in ctx.records]
    headline = score(
        outputs.texts, refs, feats, ctx.matcher, ctx.denominators, PETER_REFERENCE_WORDS
    )
    full = score(outputs.texts, refs, feats, ctx.matcher, ctx.denominators, None)
    n = len(outputs.texts)
    grounded = ctx.grounded(outputs.texts)
    result: dict = {
        "n": n,
        **headline,
        "fcr": headline["fcr_dataset"],
        "grounding_rate": sum(grounded) / n if n else 0.0,
        "failure_rate": outputs.failures / n if n else 0.0,
        "full_reference": {k: full[k] for k in TEXT_KEYS},
        **ctx.beyond_ngrams(outputs.texts),
    }
    if outputs.guard_rejections is not None:
        result["guard_pass_rate"] = 1 - outputs.guard_rejections / n if n else 0.0
    if outputs.fallbacks is not None:
        result["fallback_rate"] = outputs.fallbacks / n if n else 0.0
    if outputs.stages:
        counts = Counter(outputs.stages)
        result["stage_share"] = {s: c / n for s, c in counts.most_common()}
    return result
