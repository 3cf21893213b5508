"""Markdown of ``recx eval --feedback``: helpful rates per explainer and arm, and which offline
signals agree with users."""

from __future__ import annotations

from typing import Any


def _rate(t: dict[str, Any]) -> str:
    return "-" if t["rate"] is None else f"{t['rate']:.3f}"


def _diff(d: dict[str, float] | None) -> str:
    return "-" if d is None else f"{d['diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def _compare_table(table: list[dict[str, Any]], pct: int) -> list[str]:
    lines = [
        f"| name | rated | helpful | conflicting | helpful rate | {pct}% Wilson CI | P(best) "
        f"| diff to leader [{pct}% CI] |",
        "|---|---:|---:|---:|---:|---|---:|---|",
    ]
    for t in table:
        diff = "leader" if t["leader"] else _diff(t["diff_to_leader"])
        lines.append(
            f"| {t['name']} | {t['rated']} | {t['helpful']} | {t['conflicting']} | {_rate(t)} | "
            f"{t['low']:.3f} .. {t['high']:.3f} | {t['p_best']:.3f} | {diff} |"
        )
    return lines


def feedback_markdown(doc: dict[str, Any], png_name: str | None = None) -> str:
    """The whole report as Markdown."""
    meta, overall = doc["meta"], doc["overall"]
    pct = round(meta["confidence"] * 100)
    lines = [
        f"# recx eval --feedback: `{meta['feedback']}`",
        "",
        f"{meta['rows']} rated explanations ({overall['rated']} with a verdict, "
        f"{overall['conflicting']} rated both helpful and not helpful, left out of the rates); "
        f"overall helpful rate {_rate(overall)} ({pct}% CI {overall['low']:.3f} .. "
        f"{overall['high']:.3f}); {doc['skipped']['count']} malformed lines skipped; "
        f"created {meta['created_at']}.",
        "",
        "## Per explainer",
        "",
        "Helpful rate = helpful / rated with a verdict. Wilson score interval; P(best): Beta(1,1) "
        "posteriors (exact for two); diff to leader: this rate minus the rate of the explainer "
        "most probably best, Newcombe interval (an interval containing 0: no significant "
        "difference).",
        "",
        *_compare_table(doc["explainers"], pct),
    ]
    if png_name:
        lines += ["", f"![helpful rate per explainer]({png_name})"]
    for experiment, table in doc["experiments"].items():
        lines += ["", f"## Experiment `{experiment}`: per arm", "", *_compare_table(table, pct)]
    sig = doc["signals"]
    lines += [
        "",
        "## Do offline signals agree with users?",
        "",
        "Reference-free signals of each rated text (with a verdict): the helpful rate where the "
        f"signal holds (on) and where it does not (off); on − off with its {pct}% Newcombe "
        "interval: `helps` / `hurts` when the interval excludes 0. Lexicon: "
        f"{meta['lexicon']}.",
        "",
        f"| signal | on: rated | on: rate [{pct}% CI] | off: rated | off: rate [{pct}% CI] "
        "| unknown | on − off [CI] | verdict |",
        "|---|---:|---|---:|---|---:|---|---|",
    ]
    for s in sig["splits"]:
        on, off = s["on"], s["off"]
        lines.append(
            f"| {s['signal']} | {on['rated']} | {_rate(on)} [{on['low']:.3f}, {on['high']:.3f}] | "
            f"{off['rated']} | {_rate(off)} [{off['low']:.3f}, {off['high']:.3f}] | "
            f"{s['unknown']} | {_diff(s['diff'])} | {s['verdict']} |"
        )
    mt = sig["mean_tokens"]
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    lines += [
        "",
        f"Mean length in tokens: helpful {fmt(mt['helpful'])}, not helpful "
        f"{fmt(mt['not_helpful'])}.",
    ]
    if "reexplained" in doc:
        lines += _reexplained(doc["reexplained"])
    if doc["skipped"]["count"]:
        lines += ["", "## Skipped lines", ""]
        lines += [f"- {why}" for why in doc["skipped"]["lines"][:50]]
        if doc["skipped"]["count"] > 50:
            lines.append(f"- ... and {doc['skipped']['count'] - 50} more (see the JSON)")
    lines += ["", f"Command: `{meta['command']}`", ""]
    return "\n".join(lines)


def _reexplained(rx: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Re-explained, scored against what users found helpful",
        "",
        f"Each of the {rx['references']} helpful explanations whose item the prepared data knows "
        f"({rx['unknown_items']} unknown items left out) is the reference for a fresh explanation "
        "of the same (user, item) by each explainer; full references, BLEU/ROUGE x100 as in "
        "`recx eval`.",
        "",
        "| explainer | n | failures | BLEU-1 | BLEU-4 | R-1 F | R-2 F | R-L F |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in rx["results"].items():
        lines.append(
            f"| {name} | {m['n']} | {m['failures']} | {m['bleu_1']:.2f} | {m['bleu_4']:.2f} | "
            f"{m['rouge_1_f']:.2f} | {m['rouge_2_f']:.2f} | {m['rouge_l_f']:.2f} |"
        )
    lines += [f"- not evaluated: {name}: {why}" for name, why in rx["unavailable"].items()]
    return lines
