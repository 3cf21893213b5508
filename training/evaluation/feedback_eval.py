"""``recx eval --feedback FILE``: evaluation on real user judgements.

Reads ``feedback-eval.jsonl`` (written by ``recx feedback export``: one row per rated
explanation, ``{id, experiment, arm, explainer, user_id, item_id, text, helpful}``) and reports

* per explainer and per experiment arm: rated count, helpful rate with its Wilson interval,
  P(best) and the difference to the leader (Newcombe), all from ``recx_worker.feedback.stats``;
* whether the offline, reference-free signals agree with users: the helpful rate of rated
  explanations split by each signal (mentions a lexicon feature, negative sentiment, grounded in
  the item's profile, longer than the median), with the on-minus-off difference and its interval.

Rows whose ``helpful`` is null (one explanation rated both ways) are counted as conflicting and
left out of the rates. Malformed lines are skipped, counted and named (line number and reason);
a file with no usable row is an error.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recx_worker.events import MAX_ID_CHARS, Evidence, RecommendationEvent
from recx_worker.explainer import ExplainRequest
from recx_worker.features import Lexicon
from recx_worker.feedback.stats import newcombe_interval, probability_best, wilson_interval
from recx_worker.guard import Guard
from recx_worker.prepared import PreparedData
from recx_worker.sentiment import is_negative
from training.evaluation.metrics import FeatureMatcher
from training.evaluation.text import tokenize

CONFIDENCE = 0.95
FIELDS = ("id", "experiment", "arm", "explainer", "user_id", "item_id", "text", "helpful")
_ID_FIELDS = ("id", "explainer", "user_id", "item_id")  # non-empty strings
_OPTIONAL_STR = ("experiment", "arm")  # string or null


class FeedbackInputError(ValueError):
    """The feedback file cannot be evaluated (missing, unreadable, no usable row)."""


@dataclass(frozen=True, slots=True)
class RatedExplanation:
    """One row of ``feedback-eval.jsonl``; ``helpful`` None = rated both ways."""

    id: str
    experiment: str | None
    arm: str | None
    explainer: str
    user_id: str
    item_id: str
    text: str
    helpful: bool | None


def _parse(line: str) -> RatedExplanation:
    """One JSON line -> a row; ValueError with the reason when it is not a valid row."""
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"not a JSON object but {type(raw).__name__}")
    missing = [k for k in FIELDS if k not in raw]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    for key in _ID_FIELDS:
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise ValueError(f"{key} must be a non-empty string, got {raw[key]!r}")
        if len(raw[key]) > MAX_ID_CHARS:
            raise ValueError(f"{key} is longer than {MAX_ID_CHARS} characters")
    for key in _OPTIONAL_STR:
        if raw[key] is not None and not isinstance(raw[key], str):
            raise ValueError(f"{key} must be a string or null, got {raw[key]!r}")
    if not isinstance(raw["text"], str):
        raise ValueError(f"text must be a string, got {raw['text']!r}")
    if raw["helpful"] is not None and not isinstance(raw["helpful"], bool):
        raise ValueError(f"helpful must be true, false or null, got {raw['helpful']!r}")
    return RatedExplanation(**{k: raw[k] for k in FIELDS})


def read_feedback(path: Path) -> tuple[list[RatedExplanation], list[str]]:
    """The file's valid rows, and one ``line N: reason`` per skipped line (blank lines aside)."""
    if not path.is_file():
        raise FeedbackInputError(f"feedback file {path} does not exist")
    rows: list[RatedExplanation] = []
    skipped: list[str] = []
    first_line: dict[str, int] = {}
    try:
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = _parse(line)
                except ValueError as exc:
                    skipped.append(f"line {number}: {exc}")
                    continue
                if row.id in first_line:
                    first = f"first on line {first_line[row.id]}"
                    skipped.append(f"line {number}: duplicate id {row.id!r} ({first})")
                    continue
                first_line[row.id] = number
                rows.append(row)
    except UnicodeDecodeError as exc:
        raise FeedbackInputError(f"{path} is not UTF-8 text: {exc}") from None
    if not rows:
        why = f" ({len(skipped)} malformed: {skipped[0]})" if skipped else ""
        raise FeedbackInputError(f"{path} has no valid rated explanation{why}")
    return rows, skipped


# ---------------------------------------------------------------- helpful rates


def rate(name: str, rows: Sequence[RatedExplanation]) -> dict[str, Any]:
    """Rated (with a verdict), helpful, conflicting, the rate and its Wilson interval."""
    helpful = sum(r.helpful is True for r in rows)
    rated = sum(r.helpful is not None for r in rows)
    low, high = wilson_interval(helpful, rated, CONFIDENCE)
    return {
        "name": name,
        "rated": rated,
        "helpful": helpful,
        "conflicting": sum(r.helpful is None for r in rows),
        "rate": helpful / rated if rated else None,
        "low": low,
        "high": high,
    }


def compare(groups: dict[str, Sequence[RatedExplanation]]) -> list[dict[str, Any]]:
    """Per group: its rate, P(best) (Beta(1,1) posteriors) and the difference to the leader
    (the group most probably best) with Newcombe's interval; sorted by name."""
    table = [rate(name, rows) for name, rows in sorted(groups.items())]
    p_best = probability_best([t["helpful"] for t in table], [t["rated"] for t in table])
    leader = table[max(range(len(table)), key=lambda i: p_best[i])]
    for t, p in zip(table, p_best, strict=True):
        t["p_best"] = p
        t["leader"] = t is leader
        t["diff_to_leader"] = None
        if t is not leader and t["rated"] and leader["rated"]:
            lo, hi = newcombe_interval(
                leader["helpful"], leader["rated"], t["helpful"], t["rated"], CONFIDENCE
            )
            t["diff_to_leader"] = {"diff": t["rate"] - leader["rate"], "low": lo, "high": hi}
    return table


def _group(rows: Sequence[RatedExplanation], key: Callable[[RatedExplanation], str]):
    groups: dict[str, list[RatedExplanation]] = defaultdict(list)
    for r in rows:
        groups[key(r)].append(r)
    return groups


# ---------------------------------------------------------------- offline signals vs users


@dataclass(frozen=True, slots=True)
class Signals:
    """Reference-free signals of one text (``grounded`` None: the item has no profile)."""

    tokens: int
    mentions_feature: bool
    negative: bool
    grounded: bool | None


class SignalScorer:
    """Computes :class:`Signals` with the eval's tokenizer, lexicon matcher, VADER and guard."""

    def __init__(self, lexicon: Lexicon | None, profiles: dict[str, list[str]]) -> None:
        self.matcher = FeatureMatcher(lexicon.features) if lexicon else None
        self.guard = Guard(lexicon) if lexicon else None
        self.profiles = profiles

    def _grounded(self, row: RatedExplanation) -> bool | None:
        features = self.profiles.get(row.item_id)
        if self.guard is None or features is None:
            return None
        event = RecommendationEvent(
            event_id=row.id, user_id=row.user_id, item_id=row.item_id, timestamp=datetime.now(UTC)
        )
        request = ExplainRequest(event=event, evidence=Evidence(item_features=features))
        return self.guard.check(request, row.text).grounded

    def score(self, row: RatedExplanation) -> Signals:
        tokens = tokenize(row.text)
        return Signals(
            tokens=len(tokens),
            mentions_feature=bool(self.matcher.find(tokens)) if self.matcher else False,
            negative=is_negative(row.text),
            grounded=self._grounded(row),
        )


def split_by(
    name: str, rows: Sequence[RatedExplanation], flags: Sequence[bool | None]
) -> dict[str, Any]:
    """Helpful rate where the signal holds vs where it does not; on minus off with Newcombe's
    interval and what it says (``helps``, ``hurts`` or ``no evidence`` at 95%)."""
    on = [r for r, f in zip(rows, flags, strict=True) if f is True]
    off = [r for r, f in zip(rows, flags, strict=True) if f is False]
    result: dict[str, Any] = {
        "signal": name,
        "on": rate("on", on),
        "off": rate("off", off),
        "unknown": sum(f is None for f in flags),
        "diff": None,
        "verdict": "not enough data",
    }
    a, b = result["off"], result["on"]
    if a["rated"] and b["rated"]:
        lo, hi = newcombe_interval(a["helpful"], a["rated"], b["helpful"], b["rated"], CONFIDENCE)
        result["diff"] = {"diff": b["rate"] - a["rate"], "low": lo, "high": hi}
        result["verdict"] = "helps" if lo > 0 else "hurts" if hi < 0 else "no evidence"
    return result


def signal_agreement(
    rows: Sequence[RatedExplanation], scorer: SignalScorer, *, has_lexicon: bool
) -> dict[str, Any]:
    """Each binary signal's split of the helpful rate (rows with a verdict only)."""
    judged = [r for r in rows if r.helpful is not None]
    signals = [scorer.score(r) for r in judged]
    lengths = [s.tokens for s in signals]
    median = statistics.median(lengths) if lengths else 0
    splits = [
        split_by("negative sentiment (VADER <= -0.05)", judged, [s.negative for s in signals]),
        split_by(
            f"longer than the median ({median:g} tokens)",
            judged,
            [s.tokens > median for s in signals],
        ),
    ]
    if has_lexicon:
        splits.insert(
            0, split_by("mentions a lexicon feature", judged, [s.mentions_feature for s in signals])
        )
        splits.append(
            split_by("grounded in the item's profile", judged, [s.grounded for s in signals])
        )
    helpful_len = [s.tokens for s, r in zip(signals, judged, strict=True) if r.helpful]
    unhelpful_len = [s.tokens for s, r in zip(signals, judged, strict=True) if not r.helpful]
    return {
        "splits": splits,
        "mean_tokens": {
            "helpful": statistics.fmean(helpful_len) if helpful_len else None,
            "not_helpful": statistics.fmean(unhelpful_len) if unhelpful_len else None,
        },
    }


# ---------------------------------------------------------------- the whole report


def load_context(data_dir: Path | None, features: Path | None) -> tuple[Lexicon | None, dict, str]:
    """(lexicon, item id -> profile feature names, where the lexicon came from)."""
    if data_dir is not None and (data_dir / "lexicon.txt").is_file():
        data = PreparedData(data_dir)
        profiles = {i: p.feature_names() for i, p in data.item_profiles.items()}
        return data.lexicon, profiles, f"{data_dir}/lexicon.txt (item profiles from {data_dir})"
    if features is not None and features.is_file():
        return Lexicon.load(features), {}, f"{features} (no prepared data: grounding not scored)"
    return None, {}, "none (no prepared data, no features file): feature signals not scored"


def evaluate_feedback(
    rows: Sequence[RatedExplanation], skipped: list[str], scorer: SignalScorer, *, has_lexicon: bool
) -> dict[str, Any]:
    """The report's content (JSON-ready)."""
    by_experiment = _group([r for r in rows if r.experiment], lambda r: r.experiment or "")
    return {
        "overall": rate("all", rows),
        "explainers": compare(_group(rows, lambda r: r.explainer)),
        "experiments": {
            exp: compare(_group(exp_rows, lambda r: r.arm or "(no arm)"))
            for exp, exp_rows in sorted(by_experiment.items())
        },
        "signals": signal_agreement(rows, scorer, has_lexicon=has_lexicon),
        "skipped": {"count": len(skipped), "lines": skipped},
    }


def run_feedback_eval(
    feedback: Path,
    out: Path,
    *,
    data_dir: Path | None = None,
    features: Path | None = None,
    reexplain_with: Sequence[str] = (),
    index_dir: Path | None = None,
    config: Path | None = None,
    batch_size: int = 16,
    command: str = "",
) -> dict[str, Any]:
    """Read, evaluate and write ``feedback-eval.json``, ``feedback-eval.md`` and
    ``feedback-helpful-rate.png`` under ``out``; returns the JSON document. With
    ``reexplain_with`` (explainer names), also re-explain the helpful pairs with them and score
    against the helpful texts (needs prepared data in ``data_dir``; their texts go to
    ``out/reexplained/NAME.jsonl``)."""
    from training.evaluation.feedback_report import feedback_markdown
    from training.evaluation.plots import helpful_rates
    from training.evaluation.report import write_json

    rows, skipped = read_feedback(feedback)
    lexicon, profiles, lexicon_source = load_context(data_dir, features)
    doc = evaluate_feedback(
        rows, skipped, SignalScorer(lexicon, profiles), has_lexicon=lexicon is not None
    )
    if reexplain_with:
        from training.evaluation.feedback_reexplain import reexplain

        if data_dir is None:
            raise FeedbackInputError("re-explaining needs prepared data (--data)")
        doc["reexplained"] = reexplain(
            rows, reexplain_with, data_dir, index_dir=index_dir, config=config,
            batch_size=batch_size, outputs=out / "reexplained",
        )  # fmt: skip
    doc["meta"] = {
        "feedback": str(feedback),
        "rows": len(rows),
        "lexicon": lexicon_source,
        "confidence": CONFIDENCE,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "feedback-eval.json", doc)
    helpful_rates(doc["explainers"], out / "feedback-helpful-rate.png")
    (out / "feedback-eval.md").write_text(
        feedback_markdown(doc, "feedback-helpful-rate.png"), encoding="utf-8"
    )
    return doc
