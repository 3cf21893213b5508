"""``recx eval --feedback``: helpful rates on real-shaped judgements (closed-form numbers),
offline signals split by the verdict, bad lines, and a file made by the real export."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recx_worker.cli import app
from recx_worker.events import MAX_ID_CHARS
from recx_worker.features import Lexicon
from recx_worker.feedback.stats import z_value
from training.evaluation.feedback_eval import (
    FeedbackInputError,
    SignalScorer,
    read_feedback,
    run_feedback_eval,
)

runner = CliRunner()
Z2 = z_value(0.95) ** 2


def row(i: int, explainer: str, text: str, helpful: bool | None, **kw) -> dict:
    base = {
        "id": f"e{i}", "experiment": "ab", "arm": "a" if explainer == "lora" else "b",
        "explainer": explainer, "user_id": f"u{i}", "item_id": f"I{i % 3}", "text": text,
        "helpful": helpful,
    }  # fmt: skip
    return {**base, **kw}


def fixture_rows() -> list[dict]:
    """lora: 6 of 6 helpful (+1 rated both ways), all mention a feature; template: 0 of 4, no
    feature, one of them negative."""
    text = "Great sound and sturdy strings for your guitar."
    lora = [row(i, "lora", text, True) for i in range(6)]
    lora.append(row(6, "lora", "Warm sound you will enjoy.", None))
    template = [row(10 + i, "template", "It is a product you may like.", False) for i in range(3)]
    template.append(row(13, "template", "It is a terrible, awful product.", False))
    return lora + template


def write(path: Path, rows: list[dict], extra_lines: list[str] = ()) -> Path:
    lines = [json.dumps(r) for r in rows] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def lexicon_file(tmp_path: Path) -> Path:
    path = tmp_path / "features.txt"
    Lexicon(["sound", "strings", "guitar", "price", "tone"]).save(path)
    return path


def test_helpful_rates_intervals_and_p_best_match_closed_forms(tmp_path: Path, lexicon_file):
    feedback = write(tmp_path / "feedback-eval.jsonl", fixture_rows())
    doc = run_feedback_eval(feedback, tmp_path / "out", features=lexicon_file)
    lora, template = doc["explainers"]
    assert (lora["name"], lora["rated"], lora["helpful"], lora["conflicting"]) == ("lora", 6, 6, 1)
    assert (template["rated"], template["helpful"], template["conflicting"]) == (4, 0, 0)
    # Wilson at k = n: lower n / (n + z^2); at k = 0: upper z^2 / (n + z^2)
    assert lora["rate"] == 1.0 and lora["low"] == pytest.approx(6 / (6 + Z2)) and lora["high"] == 1
    assert template["low"] == 0 and template["high"] == pytest.approx(Z2 / (4 + Z2))
    # P(Beta(1,5) > Beta(7,1)) = 7 B(7,6) = 1/792
    assert template["p_best"] == pytest.approx(1 / 792)
    assert lora["p_best"] == pytest.approx(791 / 792)
    assert lora["leader"] and lora["diff_to_leader"] is None
    d = template["diff_to_leader"]  # Newcombe: -1 - 0 .. -1 + sqrt(u_template^2 + (1 - l_lora)^2)
    assert d["diff"] == -1 and d["low"] == pytest.approx(-1)
    assert d["high"] == pytest.approx(-1 + math.hypot(Z2 / (4 + Z2), Z2 / (6 + Z2)))
    assert doc["overall"]["rated"] == 10 and doc["overall"]["helpful"] == 6
    (arms,) = doc["experiments"].values()
    assert [(a["name"], a["rated"], a["helpful"]) for a in arms] == [("a", 6, 6), ("b", 4, 0)]


def test_offline_signals_are_split_by_the_users_verdict(tmp_path: Path, lexicon_file):
    feedback = write(tmp_path / "feedback-eval.jsonl", fixture_rows())
    out = tmp_path / "out"
    doc = run_feedback_eval(feedback, out, features=lexicon_file)
    splits = {s["signal"].split(" (")[0]: s for s in doc["signals"]["splits"]}
    feature = splits["mentions a lexicon feature"]
    assert (feature["on"]["rated"], feature["on"]["helpful"]) == (6, 6)
    assert (feature["off"]["rated"], feature["off"]["helpful"]) == (4, 0)
    assert feature["diff"]["low"] == pytest.approx(1 - math.hypot(Z2 / (6 + Z2), Z2 / (4 + Z2)))
    assert feature["verdict"] == "helps"
    negative = splits["negative sentiment"]
    assert (negative["on"]["rated"], negative["on"]["helpful"]) == (1, 0)
    assert (negative["off"]["rated"], negative["off"]["helpful"]) == (9, 6)
    assert negative["verdict"] == "no evidence"  # one negative text proves nothing
    grounded = splits["grounded in the item's profile"]  # no prepared data: unknown for all
    assert grounded["unknown"] == 10 and grounded["verdict"] == "not enough data"
    assert doc["signals"]["mean_tokens"]["helpful"] > doc["signals"]["mean_tokens"]["not_helpful"]
    md = (out / "feedback-eval.md").read_text()
    assert "| lora | 6 | 6 | 1 | 1.000 |" in md and "| mentions a lexicon feature | 6 |" in md
    assert (out / "feedback-helpful-rate.png").stat().st_size > 5000
    assert json.loads((out / "feedback-eval.json").read_text())["meta"]["rows"] == 11


def test_grounding_uses_the_guard_against_the_item_profile():
    lexicon = Lexicon(["sound", "strings", "price"])
    scorer = SignalScorer(lexicon, {"I1": ["sound", "strings"]})

    def grounded(text: str, item: str):
        from training.evaluation.feedback_eval import RatedExplanation

        return scorer.score(RatedExplanation("e", None, None, "x", "u", item, text, True)).grounded

    assert grounded("Clear sound and bright strings.", "I1") is True
    assert grounded("A fair price for the sound.", "I1") is False  # price: not in the profile
    assert grounded("A fair price.", "I9") is None  # no profile for the item: unknown


def test_bad_lines_are_skipped_named_and_counted(tmp_path: Path, lexicon_file):
    good = fixture_rows()[:2]
    bad = [
        "{not json",
        json.dumps({k: v for k, v in good[0].items() if k != "text"} | {"id": "x1"}),
        json.dumps(good[0] | {"id": "x2", "helpful": "yes"}),
        json.dumps(good[0]),  # duplicate id
        "[1, 2]",
        json.dumps(good[0] | {"id": "", "text": "t"}),
        json.dumps(good[0] | {"id": "x3", "item_id": "i" * 1000}),
    ]
    feedback = write(tmp_path / "f.jsonl", good, bad)
    rows, skipped = read_feedback(feedback)
    assert [r.id for r in rows] == ["e0", "e1"]
    assert skipped == [
        "line 3: not JSON (Expecting property name enclosed in double quotes)",
        "line 4: missing field(s) text",
        "line 5: helpful must be true, false or null, got 'yes'",
        "line 6: duplicate id 'e0' (first on line 1)",
        "line 7: not a JSON object but list",
        "line 8: id must be a non-empty string, got ''",
        f"line 9: item_id is longer than {MAX_ID_CHARS} characters",
    ]
    out = tmp_path / "out"
    args = ["eval", "--feedback", str(feedback), "--out", str(out), "--data", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "warning: skipped 7 malformed line(s)" in result.output
    assert "line 3: not JSON" in result.output
    assert "- line 8: id must be a non-empty string" in (out / "feedback-eval.md").read_text()


def test_a_file_without_a_usable_row_is_a_clear_error(tmp_path: Path):
    with pytest.raises(FeedbackInputError, match="does not exist"):
        read_feedback(tmp_path / "missing.jsonl")
    bad = write(tmp_path / "bad.jsonl", [], ['{"id": "e1"}'])
    result = runner.invoke(app, ["eval", "--feedback", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "no valid rated explanation (1 malformed: line 1: missing field(s)" in result.output


def test_eval_on_a_file_written_by_the_real_export(tmp_path: Path, lexicon_file):
    from test_feedback_store import Feed, explanation, fb

    from recx_worker.feedback.export import export
    from recx_worker.feedback.store import FeedbackStore

    store, feed = FeedbackStore(tmp_path / "s.db"), Feed()
    events, feedback = [], []
    for i in range(5):  # arm a (template): 2 of 5 helpful; arm b (lora): 4 of 5 helpful
        for arm, explainer, good in (("a", "template", i < 2), ("b", "lora", i < 4)):
            eid = f"{arm}{i}"
            text = "Great sound for your guitar." if good else "It is a product."
            events.append(
                explanation(eid, arm).model_copy(update={"explainer": explainer, "text": text})
            )
            feedback.append(fb(f"f{eid}", eid, "helpful" if good else "not_helpful"))
    feedback.append(fb("fx", "b0", "not_helpful"))  # b0 rated both ways: conflicting
    store.apply(feed(*events, *feedback))
    store.close()
    assert export(tmp_path / "s.db", tmp_path / "export")["rated"] == 10
    out = tmp_path / "report"
    args = ["eval", "--feedback", str(tmp_path / "export/feedback-eval.jsonl"), "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "feedback-eval.json").read_text())
    by_name = {t["name"]: t for t in doc["explainers"]}
    assert (by_name["lora"]["rated"], by_name["lora"]["helpful"]) == (4, 3)
    assert by_name["lora"]["conflicting"] == 1
    assert (by_name["template"]["rated"], by_name["template"]["helpful"]) == (5, 2)
    assert by_name["template"]["low"] == pytest.approx(_wilson_low(2, 5))
    assert doc["skipped"]["count"] == 0 and "## Experiment `ab`: per arm" in result.output


def _wilson_low(k: int, n: int) -> float:
    """Wilson's lower bound written out from its textbook formula."""
    p = k / n
    return (p + Z2 / (2 * n) - math.sqrt(Z2) * math.sqrt(p * (1 - p) / n + Z2 / (4 * n * n))) / (
        1 + Z2 / n
    )


def test_reexplain_scores_explainers_against_the_helpful_texts(tmp_path: Path, worker_data):
    from recx_worker.prepared import PreparedData

    data, index = worker_data
    records = PreparedData(data).split("train")[:4]
    rows = [
        row(i, "lora", r.explanation, True, user_id=r.user_id, item_id=r.item_id)
        for i, r in enumerate(records)
    ]
    rows.append(row(9, "lora", "Nice sound.", True, item_id="NO-SUCH-ITEM"))
    rows.append(row(10, "template", "It is a product.", False, item_id=records[0].item_id))

    def run(feedback_rows: list[dict], out: Path) -> tuple[dict, Path]:
        feedback = write(tmp_path / f"{out.name}.jsonl", feedback_rows)
        args = ["eval", "--feedback", str(feedback), "--out", str(out), "--data", str(data)]
        args += ["--index", str(index), "--reexplain", "--explainers", "template"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "## Re-explained, scored against what users found helpful" in result.output
        return json.loads((out / "feedback-eval.json").read_text())["reexplained"], out

    first, out = run(rows, tmp_path / "first")
    assert (first["references"], first["unknown_items"]) == (4, 1)  # helpful, known items only
    template = first["results"]["template"]
    assert template["n"] == 4 and template["failures"] == 0
    assert 0 <= template["bleu_4"] <= template["bleu_1"] <= 100 and template["rouge_l_f"] > 0
    # Oracle: users found exactly the template's texts helpful -> perfect overlap.
    texts = {
        o["id"]: o["text"] for o in map(json.loads, (out / "reexplained/template.jsonl").open())
    }
    oracle = [r | {"text": texts[r["id"]]} for r in rows[:4]]
    second, _ = run(oracle, tmp_path / "second")
    perfect = second["results"]["template"]
    assert perfect["bleu_1"] == pytest.approx(100) and perfect["bleu_4"] == pytest.approx(100)
    assert perfect["rouge_l_f"] == pytest.approx(100, abs=1e-3)
