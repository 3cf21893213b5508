"""How much PEPLER's exact tokenization moves recx's numbers (docs/results-quality.md).

    PYTHONPATH=. python deploy/experiments/tokenization_shift.py [--data var/data/musical]
        [NAME=FILE ...]

Scores saved outputs (``{id, text}`` JSONL) on the test split, 15-word references, twice: with
the tokenizer recx used before (``training/evaluation/text.py`` at commit 05777c2, read with
``git show``) and with the current one (PEPLER's ``postprocessing``), and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import types
from pathlib import Path

OLD_COMMIT = "05777c2"
DEFAULT_FILES = [
    "lora=reports/latest/outputs/lora.jsonl",
    "prompt=reports/latest/outputs/prompt.jsonl",
    "template=reports/latest/outputs/template.jsonl",
    "peter=/work/shared/baselines/musical-test-peter.jsonl",
]


def old_tokenizer():
    source = subprocess.run(
        ["git", "show", f"{OLD_COMMIT}:training/evaluation/text.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = types.ModuleType("old_text")
    exec(compile(source, "old_text.py", "exec"), module.__dict__)
    return module.tokenize


def main() -> None:
    from recx_worker.prepared import PreparedData
    from training.evaluation.metrics import corpus_bleu, rouge
    from training.evaluation.text import PETER_REFERENCE_WORDS, tokenize

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("var/data/musical"))
    parser.add_argument("files", nargs="*", default=DEFAULT_FILES)
    args = parser.parse_args()
    old = old_tokenizer()
    records = PreparedData(args.data).split("test")
    refs_changed = sum(old(r.explanation) != tokenize(r.explanation) for r in records)
    print(f"{len(records)} test records; references tokenized differently: {refs_changed}\n")
    print("| system | outputs tokenized differently | BLEU-1 before | now | BLEU-4 before | now "
          "| R-L F before | now | R-L F shift |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for spec in args.files:
        name, _, path = spec.partition("=")
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
        by_id = {row["id"]: row["text"] for row in rows}
        texts = [by_id.get(r.record_id, "") for r in records]
        scores = []
        for tok in (old, tokenize):
            refs = [tok(r.explanation)[:PETER_REFERENCE_WORDS] for r in records]
            hyps = [tok(t) for t in texts]
            rl = rouge(refs, hyps)["rouge_l_f"]
            scores.append((corpus_bleu(refs, hyps, 1), corpus_bleu(refs, hyps, 4), rl))
        (b1o, b4o, rlo), (b1n, b4n, rln) = scores
        changed = sum(old(t) != tokenize(t) for t in texts)
        print(f"| {name} | {changed} | {b1o:.2f} | {b1n:.2f} | {b4o:.2f} | {b4n:.2f} "
              f"| {rlo:.2f} | {rln:.2f} | {rln - rlo:+.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
