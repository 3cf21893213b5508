"""Paired bootstrap of BLEU-4 / ROUGE-L F differences, and ``--compare`` input checks."""

from __future__ import annotations

import random

import numpy as np
import pytest
from typer.testing import CliRunner

from recx_worker.cli import app
from training.evaluation.evaluate import EvalConfig, EvalInputError, parse_compare, run_eval
from training.evaluation.metrics import corpus_bleu, rouge
from training.evaluation.report import markdown_tables
from training.evaluation.significance import paired_bootstrap


def toks(text: str) -> list[str]:
    return text.split()


REFS = [
    toks("great tone for the price"),
    toks("the strings sound bright and warm"),
    toks("a solid tuner that holds well"),
    toks("the gig bag is sturdy and light"),
    toks("easy to set up and play"),
    toks("the pedal adds nice warm overdrive"),
]
OTHER = [
    toks("good tone and the price is fine"),
    toks("bright strings"),
    toks("the tuner is solid"),
    toks("sturdy bag"),
    toks("easy to play"),
    toks("the pedal is nice"),
]


def _random_corpus(seed: int, n: int) -> tuple[list[list[str]], list[list[str]], list[list[str]]]:
    rng = random.Random(seed)
    vocab = list("abcdefgh")
    refs = [[rng.choice(vocab) for _ in range(rng.randint(1, 12))] for _ in range(n)]
    hyp_a = [[*r[:-1], rng.choice(vocab)] if rng.random() < 0.6 else r for r in refs]
    hyp_b = [[rng.choice(vocab) for _ in range(rng.randint(0, 12))] for _ in range(n)]
    return refs, hyp_a, hyp_b


def test_identical_systems_differ_by_exactly_zero():
    out = paired_bootstrap(REFS, OTHER, [list(h) for h in OTHER], n_resamples=200)
    for key in ("bleu_4", "rouge_l_f"):
        assert out[key] == {"diff": 0.0, "low": 0.0, "high": 0.0, "a_wins": 0.0}
    assert (out["n"], out["resamples"]) == (len(REFS), 200)


def test_references_beat_another_system_with_interval_above_zero():
    out = paired_bootstrap(REFS, REFS, OTHER, n_resamples=300, seed=5)
    for key in ("bleu_4", "rouge_l_f"):
        m = out[key]
        assert 0 < m["low"] <= m["diff"] <= m["high"], (key, m)
        assert m["a_wins"] == 1.0
    assert out["bleu_4"]["diff"] == pytest.approx(100.0 - corpus_bleu(REFS, OTHER, 4))
    # The reverse comparison mirrors it.
    back = paired_bootstrap(REFS, OTHER, REFS, n_resamples=300, seed=5)
    assert back["rouge_l_f"]["high"] == pytest.approx(-out["rouge_l_f"]["low"])
    assert back["bleu_4"]["a_wins"] == 0.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_observed_difference_is_exactly_the_headline_metrics(seed):
    refs, hyp_a, hyp_b = _random_corpus(seed, 80)
    out = paired_bootstrap(refs, hyp_a, hyp_b, n_resamples=10)
    assert out["bleu_4"]["diff"] == corpus_bleu(refs, hyp_a, 4) - corpus_bleu(refs, hyp_b, 4)
    rouge_diff = rouge(refs, hyp_a)["rouge_l_f"] - rouge(refs, hyp_b)["rouge_l_f"]
    assert out["rouge_l_f"]["diff"] == rouge_diff
    assert out["bleu_4"]["diff"] != 0 and rouge_diff != 0


def test_a_resample_scores_the_drawn_records_like_the_headline_metrics():
    refs, hyp_a, hyp_b = _random_corpus(4, 60)
    out = paired_bootstrap(refs, hyp_a, hyp_b, n_resamples=1, seed=11)
    # One resample: the interval is that draw's difference; redo the draw and score it.
    idx = np.random.default_rng(11).integers(0, len(refs), size=(1, len(refs)))[0]
    r = [refs[i] for i in idx]
    a, b = [hyp_a[i] for i in idx], [hyp_b[i] for i in idx]
    bleu = corpus_bleu(r, a, 4) - corpus_bleu(r, b, 4)
    assert out["bleu_4"]["low"] == out["bleu_4"]["high"] == bleu  # integer sums: exact
    rl = rouge(r, a)["rouge_l_f"] - rouge(r, b)["rouge_l_f"]
    assert out["rouge_l_f"]["low"] == pytest.approx(rl, abs=1e-9)


def test_seeded_runs_reproduce():
    refs, hyp_a, hyp_b = _random_corpus(6, 50)
    first = paired_bootstrap(refs, hyp_a, hyp_b, n_resamples=100, seed=3)
    assert paired_bootstrap(refs, hyp_a, hyp_b, n_resamples=100, seed=3) == first
    other = paired_bootstrap(refs, hyp_a, hyp_b, n_resamples=100, seed=4)
    assert other["rouge_l_f"]["diff"] == first["rouge_l_f"]["diff"]
    assert other["rouge_l_f"]["low"] != first["rouge_l_f"]["low"]


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="differ in length"):
        paired_bootstrap(REFS, REFS, OTHER[:-1])
    with pytest.raises(ValueError, match="no record"):
        paired_bootstrap([], [], [])


def test_parse_compare_accepts_names_with_colons_and_refuses_unknown_ones():
    systems = ["template", "most-frequent", "ext:oracle", "lora"]
    assert parse_compare("lora:template", systems) == ("lora", "template")
    assert parse_compare("ext:oracle:template", systems) == ("ext:oracle", "template")
    assert parse_compare("template:ext:oracle", systems) == ("template", "ext:oracle")
    for spec, why in [
        ("lora:nonesuch", "does not name two scored systems"),
        ("lora", "does not name two scored systems"),
        ("lora:lora", "with itself"),
    ]:
        with pytest.raises(EvalInputError, match=why):
            parse_compare(spec, systems)


def test_eval_config_rejects_unknown_system_before_any_work(tmp_path):
    # The data directory does not exist: the --compare check must come first.
    cfg = EvalConfig(
        data_dir=tmp_path / "missing",
        split="test",
        explainers=["template"],
        out=tmp_path / "out",
        externals=[f"prompt={tmp_path / 'p.jsonl'}"],
        compare=["prompt:template", "lora:template"],
    )
    with pytest.raises(EvalInputError, match=r"--compare lora:template: .*systems: template"):
        run_eval(cfg)
    assert not (tmp_path / "out").exists()


def test_cli_rejects_unknown_compare_name_with_exit_code_2(tmp_path):
    args = ["eval", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--explainers"]
    result = CliRunner().invoke(app, [*args, "template", "--compare", "template:nonesuch"])
    assert result.exit_code == 2
    assert "--compare template:nonesuch" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


def test_report_has_a_bootstrap_section_only_with_comparisons():
    metrics = {"n": 1, "full_reference": {}}
    doc = {
        "meta": {
            "split": "test", "data": "d", "n": 6, "limit": None, "created_at": "now",
            "hardware_text": "cpu", "reference_words": 15, "command": "recx eval",
            "fcr_denominators": {"dataset": 1, "lexicon": 1},
        },
        "results": {"a": {"raw": metrics}, "b": {"raw": metrics}},
    }  # fmt: skip
    assert "Paired bootstrap" not in markdown_tables(doc)
    doc["comparisons"] = [
        {"a": "a", "b": "b", "mode": "raw"} | paired_bootstrap(REFS, REFS, OTHER, n_resamples=50)
    ]
    md = markdown_tables(doc)
    assert "## Paired bootstrap (A − B, 95% interval)" in md
    row = next(line for line in md.splitlines() if line.startswith("| a | b |"))
    assert row.count("[+") == 3 and "| 1.000 |" in row  # BLEU-1, BLEU-4, ROUGE-L F


def test_bleu_1_and_per_record_means_are_bootstrapped_on_the_same_draws():
    refs, hyp_a, hyp_b = _random_corpus(7, 50)
    rng = random.Random(7)
    sim_a = [rng.random() for _ in refs]
    sim_b = [x - 0.1 for x in sim_a]  # A is better on every record by exactly 0.1
    neg_a = [float(i % 5 == 0) for i in range(50)]
    out = paired_bootstrap(
        refs,
        hyp_a,
        hyp_b,
        n_resamples=100,
        per_record={"sim": (sim_a, sim_b), "neg": (neg_a, neg_a)},
    )
    assert out["bleu_1"]["diff"] == pytest.approx(
        corpus_bleu(refs, hyp_a, 1) - corpus_bleu(refs, hyp_b, 1)
    )
    assert out["sim"]["diff"] == pytest.approx(0.1)
    assert out["sim"]["low"] == pytest.approx(0.1) and out["sim"]["a_wins"] == 1.0
    assert out["neg"] == {"diff": 0.0, "low": 0.0, "high": 0.0, "a_wins": 0.0}
    with pytest.raises(ValueError, match="per-record sim"):
        paired_bootstrap(refs, hyp_a, hyp_b, n_resamples=5, per_record={"sim": ([1.0], [0.0])})
