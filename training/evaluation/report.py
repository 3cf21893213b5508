"""Report files: metrics.json, metrics.md (Markdown tables) and samples.md."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from recx_worker.prepared import ExplanationRecord

# (key in a result, column title, digits)
HEADLINE_COLUMNS = [
    ("bleu_1", "BLEU-1", 2),
    ("bleu_4", "BLEU-4", 2),
    ("rouge_1_f", "R-1 F", 2),
    ("rouge_2_f", "R-2 F", 2),
    ("rouge_l_f", "R-L F", 2),
    ("usr", "USR", 3),
    ("fmr", "FMR", 3),
    ("fcr", "FCR", 3),
    ("fcr_lexicon", "FCR (lex)", 3),
    ("div", "DIV ↓", 3),
    ("grounding_rate", "Grounded", 3),
    ("mean_tokens", "Len", 1),
]
FULL_COLUMNS = [
    ("bleu_1", "BLEU-1", 2),
    ("bleu_4", "BLEU-4", 2),
    ("rouge_1_p", "R-1 P", 2),
    ("rouge_1_r", "R-1 R", 2),
    ("rouge_1_f", "R-1 F", 2),
    ("rouge_2_f", "R-2 F", 2),
    ("rouge_l_p", "R-L P", 2),
    ("rouge_l_r", "R-L R", 2),
    ("rouge_l_f", "R-L F", 2),
]

BEYOND_COLUMNS = [
    ("semantic_similarity", "MiniLM sim", 3),
    ("distinct_1", "Dist-1", 3),
    ("distinct_2", "Dist-2", 3),
    ("duplicate_share", "Dup", 3),
    ("negative_share", "Neg", 3),
    ("personalisation", "Pers", 3),
]
# (key in a comparison, column title, digits)
COMPARISON_COLUMNS = [
    ("bleu_1", "BLEU-1", 2),
    ("bleu_4", "BLEU-4", 2),
    ("rouge_l_f", "R-L F", 2),
    ("semantic_similarity", "MiniLM sim", 3),
    ("negative_share", "Neg", 3),
]


def _cell(value: Any, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _rows(results: dict[str, dict[str, dict]]):
    for system, modes in results.items():
        for mode, metrics in modes.items():
            yield system, mode, metrics


def markdown_tables(doc: dict) -> str:
    """The report's Markdown: headline (PETER protocol), full references, chain behaviour."""
    meta, results = doc["meta"], doc["results"]
    words = meta["reference_words"]
    lines = [
        f"# recx eval: {meta['split']} split of `{meta['data']}`",
        "",
        f"{meta['n']} records scored"
        + (f" (limit {meta['limit']})" if meta.get("limit") else "")
        + f"; created {meta['created_at']}; hardware: {meta['hardware_text']}.",
        "",
        f"## Headline (PETER protocol: references cut to their first {words} words)",
        "",
        "raw = the explainer's own output; delivered = after the guard, with fallback to the "
        "template explainer (what users see). FCR: distinct generated features / "
        f"{meta['fcr_denominators']['dataset']} features occurring in the data set's records; "
        f"FCR (lex): / {meta['fcr_denominators']['lexicon']} lexicon features. "
        "USR, FMR, FCR, DIV, Grounded are ratios; BLEU/ROUGE x100; Len in tokens. "
        "Generated texts are never truncated; a failed generation scores as an empty text. "
        "Grounded: mentions only features of the item's profile or of its evidence "
        "(delivered must be 1.000).",
        "",
    ]
    lines += _table(results, HEADLINE_COLUMNS, lambda m: m)
    lines += ["", "## Full references (no truncation)", ""]
    lines += _table(results, FULL_COLUMNS, lambda m: m["full_reference"])
    lines += ["", "## Beyond n-grams", ""]
    lines += [
        "MiniLM sim: cosine of all-MiniLM-L6-v2 embeddings of output and full reference (mean; "
        "empty output 0). Dist-1/2: distinct uni-/bigrams over all uni-/bigrams. Dup: share of "
        "outputs another output repeats exactly. Neg: share of negative outputs (VADER compound "
        "<= -0.05). Pers: over items with two or more scored records, the share of record pairs "
        "(different users) with different outputs, averaged over items"
        + _pers_basis(results)
        + ".",
        "",
    ]
    lines += _table(results, BEYOND_COLUMNS, lambda m: m)
    if doc.get("comparisons"):
        lines += ["", "## Paired bootstrap (A − B, 95% interval)", ""]
        lines += _comparisons(doc["comparisons"], words)
    lines += ["", "## Chain behaviour", ""]
    lines += [
        "| system | mode | guard pass (raw) | fallback | answered by | raw rejections "
        "| s | expl/s |",
        "|---|---|---:|---:|---|---|---:|---:|",
    ]
    for system, mode, m in _rows(results):
        share = ", ".join(f"{k} {v:.3f}" for k, v in m.get("stage_share", {}).items())
        reasons = ", ".join(f"{k}: {v}" for k, v in m.get("rejection_reasons", {}).items())
        lines.append(
            f"| {system} | {mode} | {_cell(m.get('guard_pass_rate'), 3)} | "
            f"{_cell(m.get('fallback_rate'), 3)} | {share or '-'} | {reasons or '-'} | "
            f"{_cell(m.get('seconds'), 1)} | {_cell(m.get('per_second'), 1)} |"
        )
    if doc.get("unavailable"):
        lines += ["", "## Not evaluated", ""]
        lines += [f"- {name}: {why}" for name, why in doc["unavailable"].items()]
    lines += ["", "Command: `" + meta["command"] + "`", ""]
    return "\n".join(lines)


def _comparisons(comparisons: list[dict], words: int) -> list[str]:
    first = comparisons[0]
    out = [
        f"Raw outputs, headline protocol ({words}-word references); the {first['n']} records "
        f"resampled with replacement {first['resamples']} times (seed {first['seed']}), A and B "
        "scored on the same draws: A − B on all records [2.5th, 97.5th percentile of the "
        "resampled differences], P(A>B) = share of draws where A scores higher; an interval "
        "containing 0 means no significant difference. MiniLM sim and Neg (share of negative "
        "outputs, lower is better) are per-record means resampled on the same draws.",
        "",
    ]
    columns = [col for col in COMPARISON_COLUMNS if col[0] in first]
    head = " | ".join(f"{title} A − B [95%] | P(A>B)" for _, title, _ in columns)
    out += [f"| A | B | {head} |", "|---|---|" + "---:|---:|" * len(columns)]
    for c in comparisons:
        cells = []
        for key, _, d in columns:
            m = c[key]
            interval = f"{m['diff']:+.{d}f} [{m['low']:+.{d}f}, {m['high']:+.{d}f}]"
            cells += [interval, f"{m['a_wins']:.3f}"]
        out.append(f"| {c['a']} | {c['b']} | " + " | ".join(cells) + " |")
    return out


def _pers_basis(results: dict) -> str:
    for _, _, m in _rows(results):
        if m.get("personalisation_items"):
            items, pairs = int(m["personalisation_items"]), int(m["personalisation_pairs"])
            return f" ({items} items, {pairs} pairs)"
    return ""


def _table(results, columns, pick) -> list[str]:
    head = "| system | mode | " + " | ".join(c[1] for c in columns) + " |"
    rule = "|---|---|" + "---:|" * len(columns)
    out = [head, rule]
    for system, mode, m in _rows(results):
        values = pick(m)
        cells = " | ".join(_cell(values.get(k), d) for k, _, d in columns)
        out.append(f"| {system} | {mode} | {cells} |")
    return out


def write_json(path: Path, doc: dict) -> None:
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or "_(nothing)_"


def samples_markdown(
    records: list[ExplanationRecord],
    texts: dict[str, dict[str, list[str]]],
    stages: dict[str, list[str]],
    n: int = 20,
    seed: int = 13,
) -> str:
    """A fixed random sample: reference, then each system's raw and delivered text."""
    picked = sorted(random.Random(seed).sample(range(len(records)), min(n, len(records))))
    lines = [
        "# Sample explanations",
        "",
        f"{len(picked)} records picked at random (seed {seed}).",
        "",
    ]
    for i in picked:
        record = records[i]
        lines += [
            f"## {record.record_id} (user {record.user_id}, item {record.item_id}, "
            f"feature **{record.feature}**, rating {record.rating:g})",
            "",
            "| system | raw | delivered |",
            "|---|---|---|",
            f"| **reference** | {_md(record.explanation)} | |",
        ]
        for system, modes in texts.items():
            raw = _md(modes["raw"][i]) if "raw" in modes else "-"
            delivered = _md(modes["delivered"][i]) if "delivered" in modes else "-"
            by = stages.get(system, [])
            note = f" _({by[i]})_" if by and by[i] != system else ""
            lines.append(f"| {system} | {raw} | {delivered}{note} |")
        lines.append("")
    return "\n".join(lines)
