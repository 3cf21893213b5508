"""``recx experiments report``: per arm, shown, helpful rate with its Wilson interval, the
probability each arm is best, the difference to the first arm (Newcombe) and the users still
needed; written as Markdown plus a PNG."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from recx_worker.feedback.stats import (
    newcombe_interval,
    probability_best,
    sample_size_per_arm,
    wilson_interval,
)
from recx_worker.feedback.store import ArmCounts, FeedbackStore


@dataclass(frozen=True, slots=True)
class ArmReport:
    arm: str
    shown: int
    helpful: int
    rate: float
    interval: tuple[float, float]
    p_best: float
    diff: tuple[float, float, float] | None  # (difference to the baseline arm, low, high)
    still_needed: int | None  # more shown explanations per arm to detect the observed gap


@dataclass(frozen=True, slots=True)
class ExperimentReport:
    experiment: str
    arms: list[ArmReport]
    tallies: dict[str, int]
    confidence: float

    @property
    def best(self) -> ArmReport:
        return max(self.arms, key=lambda a: a.p_best)

    def verdict(self) -> str:
        best, pct = self.best, round(self.confidence * 100)
        line = f"{best.arm} is best with probability {best.p_best:.3f}"
        if best.diff is not None:
            d, lo, hi = best.diff
            base = self.arms[0].arm
            line += f"; helpful rate {d:+.4f} vs {base} ({pct}% CI {lo:+.4f} .. {hi:+.4f})"
        return line


def build_report(
    counts: list[ArmCounts], tallies: dict[str, int], confidence: float = 0.95
) -> ExperimentReport:
    """Statistics for one experiment's arms; the first arm (by name) is the baseline."""
    if not counts:
        raise ValueError("no explanations in the store for this experiment")
    p_best = probability_best([c.helpful for c in counts], [c.shown for c in counts])
    base = counts[0]
    arms = []
    for c, pb in zip(counts, p_best, strict=True):
        diff = needed = None
        if c is not base and c.shown and base.shown:
            d = c.helpful / c.shown - base.helpful / base.shown
            diff = (d, *newcombe_interval(base.helpful, base.shown, c.helpful, c.shown, confidence))
            n = sample_size_per_arm(base.helpful / base.shown, c.helpful / c.shown)
            needed = None if math.isinf(n) else max(0, math.ceil(n) - min(c.shown, base.shown))
        arms.append(
            ArmReport(
                arm=c.arm,
                shown=c.shown,
                helpful=c.helpful,
                rate=c.helpful / c.shown if c.shown else 0.0,
                interval=wilson_interval(c.helpful, c.shown, confidence),
                p_best=pb,
                diff=diff,
                still_needed=needed,
            )
        )
    return ExperimentReport(counts[0].experiment, arms, tallies, confidence)


def load_report(store_path: Path, experiment: str | None = None) -> ExperimentReport:
    store = FeedbackStore(store_path)
    try:
        counts = store.arm_counts(experiment)
        if experiment is None and counts:
            experiment = counts[-1].experiment
            counts = [c for c in counts if c.experiment == experiment]
        return build_report(counts, store.tallies())
    finally:
        store.close()


def to_markdown(report: ExperimentReport, png_name: str | None = None) -> str:
    pct = round(report.confidence * 100)
    lines = [
        f"# Experiment `{report.experiment}`",
        "",
        f"**Verdict:** {report.verdict()}.",
        "",
        f"| arm | shown | helpful | helpful rate | {pct}% Wilson CI | P(best) "
        f"| diff vs {report.arms[0].arm} ({pct}% CI) | still needed per arm |",
        "|---|---:|---:|---:|---|---:|---|---:|",
    ]
    for a in report.arms:
        diff = (
            "baseline"
            if a.diff is None
            else f"{a.diff[0]:+.4f} ({a.diff[1]:+.4f} .. {a.diff[2]:+.4f})"
        )
        need = "-" if a.still_needed is None else f"{a.still_needed:,}"
        lines.append(
            f"| {a.arm} | {a.shown:,} | {a.helpful:,} | {a.rate:.4f} | "
            f"{a.interval[0]:.4f} .. {a.interval[1]:.4f} | {a.p_best:.4f} | {diff} | {need} |"
        )
    t = report.tallies
    lines += [
        "",
        f"Feedback not counted: {t.get('duplicate', 0):,} duplicates, {t.get('late', 0):,} late, "
        f"{t.get('orphan_open', 0):,} orphans still without an explanation "
        f"({t.get('orphan_resolved', 0):,} orphans resolved later), "
        f"{t.get('dead_letter', 0):,} dead letters, "
        f"{t.get('replayed', 0):,} replayed records skipped.",
        "",
        "Shown = explanations with any feedback; helpful = explanations with a `helpful` event "
        "(distinct per explanation). Intervals: Wilson score (rates), Newcombe (difference); "
        "P(best): Beta(1,1) prior, exact for two arms. Still needed: per-arm sample size of a "
        "two-sided two-proportion test (alpha 0.05, power 0.8) for the observed gap, minus what "
        "the arms have.",
    ]
    if png_name:
        lines += ["", f"![helpful rate per arm]({png_name})"]
    return "\n".join(lines) + "\n"


def plot(report: ExperimentReport, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    names = [a.arm for a in report.arms]
    rates = [a.rate for a in report.arms]
    errs = [
        [a.rate - a.interval[0] for a in report.arms],
        [a.interval[1] - a.rate for a in report.arms],
    ]
    ax1.bar(names, rates, yerr=errs, capsize=6, color="#4c78a8")
    ax1.set_ylabel("helpful rate")
    ax1.set_title(f"Helpful rate ({round(report.confidence * 100)}% Wilson CI)")
    ax2.bar(names, [a.p_best for a in report.arms], color="#f58518")
    ax2.set_ylim(0, 1)
    ax2.set_title("P(arm is best)")
    fig.suptitle(f"Experiment {report.experiment}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(report: ExperimentReport, out_dir: Path) -> tuple[Path, Path]:
    """``out_dir/report.md`` and ``out_dir/helpful-rate.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png = plot(report, out_dir / "helpful-rate.png")
    md = out_dir / "report.md"
    md.write_text(to_markdown(report, png.name), encoding="utf-8")
    return md, png
