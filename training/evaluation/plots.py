"""PNG plots of a report: metric bars, length distributions, feature frequencies."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from training.evaluation.metrics import FeatureMatcher
from training.evaluation.text import tokenize

BAR_METRICS = [
    ("bleu_1", "BLEU-1"),
    ("bleu_4", "BLEU-4"),
    ("rouge_1_f", "ROUGE-1 F"),
    ("rouge_2_f", "ROUGE-2 F"),
    ("rouge_l_f", "ROUGE-L F"),
    ("usr", "USR"),
    ("fmr", "FMR"),
    ("fcr", "FCR"),
    ("div", "DIV (lower is better)"),
    ("grounding_rate", "Grounding rate"),
]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def metric_bars(results: dict[str, dict[str, dict]], path: Path) -> None:
    """One panel per metric; a bar per system, raw and delivered side by side."""
    plt = _pyplot()
    systems = list(results)
    fig, axes = plt.subplots(2, 5, figsize=(18, 7))
    width = 0.4
    for ax, (key, title) in zip(axes.flat, BAR_METRICS, strict=True):
        for offset, mode, color in (
            (-width / 2, "raw", "#9ecae1"),
            (width / 2, "delivered", "#3182bd"),
        ):
            values = [results[s].get(mode, {}).get(key, 0.0) for s in systems]
            ax.bar(
                [i + offset for i in range(len(systems))], values, width, label=mode, color=color
            )
        ax.set_title(title)
        ax.set_xticks(range(len(systems)), systems, rotation=30, ha="right", fontsize=8)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("Headline metrics (references cut to 15 words)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def length_distributions(texts: dict[str, list[str]], references: list[str], path: Path) -> None:
    """Histogram of token lengths per system (delivered) and of the full references."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 5))
    series = {"reference": references, **texts}
    top = max((len(tokenize(t)) for ts in series.values() for t in ts), default=1)
    bins = range(0, min(top, 60) + 2)
    for name, ts in series.items():
        lengths = [min(len(tokenize(t)), 60) for t in ts]
        ax.hist(lengths, bins=bins, histtype="step", linewidth=1.6, label=name)
    ax.set_xlabel("tokens per explanation (capped at 60)")
    ax.set_ylabel("explanations")
    ax.set_title("Length distributions (delivered)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def feature_frequencies(
    texts: dict[str, list[str]],
    references: list[str],
    matcher: FeatureMatcher,
    path: Path,
    top: int = 20,
) -> None:
    """How often the references' top features appear in each system's (delivered) text."""
    plt = _pyplot()

    def counts(ts: list[str]) -> Counter[str]:
        return Counter(f for t in ts for f in matcher.find(tokenize(t)))

    ref_counts = counts(references)
    features = [f for f, _ in ref_counts.most_common(top)]
    series = {"reference": ref_counts, **{name: counts(ts) for name, ts in texts.items()}}
    fig, ax = plt.subplots(figsize=(14, 5.5))
    width = 0.8 / len(series)
    for k, (name, c) in enumerate(series.items()):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(features))]
        ax.bar(xs, [c.get(f, 0) for f in features], width, label=name)
    ax.set_xticks(range(len(features)), features, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("explanations mentioning the feature")
    ax.set_title(f"Feature frequency: the references' top {len(features)} features")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def helpful_rates(table: list[dict], path: Path) -> None:
    """Helpful rate per explainer with its Wilson interval (``recx eval --feedback``)."""
    plt = _pyplot()
    names = [t["name"] for t in table]
    rates = [t["rate"] or 0.0 for t in table]
    errs = [
        [r - t["low"] for r, t in zip(rates, table, strict=True)],
        [t["high"] - r for r, t in zip(rates, table, strict=True)],
    ]
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(names) + 2), 3.5))
    ax.bar(names, rates, yerr=errs, capsize=6, color="#4c78a8")
    ax.set_ylim(0, 1)
    ax.set_ylabel("helpful rate")
    ax.set_title("Helpful rate per explainer (95% Wilson CI)")
    for i, t in enumerate(table):
        ax.text(i, 0.02, f"n={t['rated']}", ha="center", fontsize=8, color="white")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
