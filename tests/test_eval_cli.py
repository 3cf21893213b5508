"""``recx eval`` end to end on a small prepared slice of the real data (template + external)."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recx_worker.cli import app
from recx_worker.config import DEFAULT_RAW_DATA
from recx_worker.prepared import PreparedData

RAW = Path(__file__).resolve().parents[1] / DEFAULT_RAW_DATA
REVIEWS = RAW / "reviews_Musical_Instruments_5.json.gz"
SLICE = 600  # the file is ordered by item: ~60 items with all their reviews

runner = CliRunner()


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, Path]:
    """(prepared data, FAISS index) built with the real commands from a slice of the reviews."""
    if not REVIEWS.exists():
        pytest.skip(f"{REVIEWS} not available")
    root = tmp_path_factory.mktemp("eval")
    raw = root / "reviews.json"
    with gzip.open(REVIEWS, "rt", encoding="utf-8") as src:
        raw.write_text("".join(itertools.islice(src, SLICE)), encoding="utf-8")
    data, index = root / "data", root / "index"
    result = runner.invoke(
        app,
        ["data", "prepare", "--reviews", str(raw), "--features", str(RAW / "features.txt"),
         "--out", str(data), "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["index", "build", "--data", str(data), "--out", str(index), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    return data, index


def test_eval_writes_report_with_sane_metrics(small, tmp_path):
    data, index = small
    test = PreparedData(data).split("test")
    # An "external system" that returns the references themselves (minus one record).
    external = tmp_path / "oracle.jsonl"
    external.write_text(
        "".join(json.dumps({"id": r.record_id, "text": r.explanation}) + "\n" for r in test[1:]),
        encoding="utf-8",
    )
    out = tmp_path / "report"
    args = ["eval", "--data", str(data), "--index", str(index), "--split", "test"]
    args += ["--explainers", "template", "--out", str(out), "--limit", "40", "--no-progress"]
    args += ["--compare", "ext:oracle:template", "--compare", "template:most-frequent"]
    result = runner.invoke(
        app, [*args, "--external", str(external), "--batch-size", "8", "--bootstrap", "200"]
    )
    assert result.exit_code == 0, result.output

    for name in ("metrics.json", "metrics.md", "samples.md", "metrics.png", "lengths.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "features.png").read_bytes()[:4] == b"\x89PNG"
    doc = json.loads((out / "metrics.json").read_text())
    n = doc["meta"]["n"]
    assert n == min(40, len(test))
    assert set(doc["results"]) == {"template", "most-frequent", "ext:oracle"}

    template = doc["results"]["template"]
    for mode in ("raw", "delivered"):
        m = template[mode]
        assert m["n"] == n
        assert 0 < m["bleu_1"] < 100 and 0 <= m["bleu_4"] < 100
        assert 0 < m["rouge_l_f"] < 100 and 0 < m["usr"] <= 1 and 0 <= m["fmr"] <= 1
        assert 0 < m["fcr"] <= 1 and m["div"] >= 0
    assert template["raw"]["grounding_rate"] == 1.0  # the template only states evidence
    assert template["delivered"]["stage_share"] == {"template": 1.0}
    assert doc["delivered_all_grounded"] is True

    oracle = doc["results"]["ext:oracle"]["raw"]
    assert oracle["missing_texts"] == 1 and oracle["failure_rate"] == pytest.approx(1 / n)
    # The references score (almost) perfectly against themselves; one record has no text.
    assert oracle["full_reference"]["rouge_l_f"] == pytest.approx(100 * (n - 1) / n, abs=1e-3)
    assert 95 < oracle["full_reference"]["bleu_4"] <= 100
    assert oracle["bleu_4"] < oracle["full_reference"]["bleu_4"]  # 15-word refs: hyps too long
    assert oracle["fmr"] >= 0.9
    # Beyond n-grams: the references are their own meaning; the template never complains.
    assert oracle["semantic_similarity"] == pytest.approx((n - 1) / n, abs=1e-4)
    assert 0 < template["raw"]["semantic_similarity"] < oracle["semantic_similarity"]
    assert template["raw"]["negative_share"] == 0.0
    for key in ("distinct_1", "distinct_2", "duplicate_share", "personalisation"):
        assert 0 <= template["raw"][key] <= 1 and 0 <= oracle[key] <= 1, key
    assert oracle["distinct_2"] > template["raw"]["distinct_2"]

    # Everything delivered is grounded, whatever the raw system produced.
    for system in doc["results"].values():
        assert system["delivered"]["grounding_rate"] == 1.0
    # Paired bootstrap on the raw outputs: the references beat the template, surely.
    first, second = doc["comparisons"]
    assert (first["a"], first["b"], first["mode"]) == ("ext:oracle", "template", "raw")
    assert (second["a"], second["b"]) == ("template", "most-frequent")
    assert first["n"] == n and first["resamples"] == 200
    assert first["semantic_similarity"]["a_wins"] == 1.0 and "negative_share" in first
    for key, metric in (("bleu_1", "bleu_1"), ("bleu_4", "bleu_4"), ("rouge_l_f", "rouge_l_f")):
        m = first[key]
        diff = oracle[metric] - template["raw"][metric]
        assert m["diff"] == pytest.approx(diff, abs=1e-9)
        assert 0 < m["low"] <= m["high"] and m["a_wins"] == 1.0
    md = (out / "metrics.md").read_text()
    assert "| template | raw |" in md and "ext:oracle" in md
    assert "## Paired bootstrap (A − B, 95% interval)" in md and "## Beyond n-grams" in md
    assert "| ext:oracle | template | +" in md and "| template | most-frequent |" in md
    assert "reference" in (out / "samples.md").read_text()


def test_eval_reports_bad_input_without_traceback(small, tmp_path):
    data, index = small
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 3}\n', encoding="utf-8")
    base = ["eval", "--data", str(data), "--index", str(index), "--out", str(tmp_path / "r")]
    result = runner.invoke(app, [*base, "--explainers", "template", "--external", str(bad)])
    assert result.exit_code == 2
    assert "expected an object with string 'id'" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, [*base, "--explainers", "nonesuch"])
    assert result.exit_code == 2 and "no explainer named 'nonesuch'" in result.output
    result = runner.invoke(app, ["eval", "--data", str(tmp_path), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "not a prepared-data directory" in result.output
    # A clashing or missing --external fails before any explainer runs (nothing written).
    clash = [*base, "--out", str(tmp_path / "clash"), "--external", f"template={bad}"]
    result = runner.invoke(app, [*clash, "--explainers", "template"])
    assert result.exit_code == 2 and "the fallback explainer always runs" in result.output
    assert not (tmp_path / "clash").exists()
    result = runner.invoke(app, [*base, "--external", f"peter={tmp_path / 'none.jsonl'}"])
    assert result.exit_code == 2 and "file not found" in result.output


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    """A settings file pointing the LM explainers at a tiny random Llama (no real weights)."""
    pytest.importorskip("torch")
    from lm_tiny import build_model

    root = tmp_path_factory.mktemp("tiny-lm")
    folder = build_model(root / "model", "llama")
    config = root / "recx.toml"
    config.write_text(
        f'[chain.options.prompt]\nbase = "{folder}"\nmax_new_tokens = 8\nfew_shot = 1\n'
        f'device = "cpu"\nmodel_cache = "{root / "cache"}"\n',
        encoding="utf-8",
    )
    return config


def test_eval_runs_lm_explainer_with_tiny_model(small, tiny_config, tmp_path, monkeypatch):
    monkeypatch.setenv("RECX_CONFIG", str(tiny_config))  # restored after the test
    data, index = small
    out = tmp_path / "report"
    args = ["eval", "--data", str(data), "--index", str(index), "--out", str(out)]
    args += ["--explainers", "prompt,template", "--limit", "12", "--no-progress", "--no-baselines"]
    result = runner.invoke(app, [*args, "--config", str(tiny_config)])
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "metrics.json").read_text())
    assert list(doc["results"]) == ["prompt", "template"]
    prompt = doc["results"]["prompt"]
    assert prompt["raw"]["n"] == 12 and prompt["raw"]["seconds"] > 0
    # Random weights write nonsense: what the guard rejects is delivered by the template.
    delivered = prompt["delivered"]
    assert delivered["grounding_rate"] == 1.0
    assert set(delivered["stage_share"]) <= {"prompt", "template"}
    assert delivered["fallback_rate"] == pytest.approx(delivered["stage_share"].get("template", 0))
    assert 1 - prompt["raw"]["guard_pass_rate"] == pytest.approx(delivered["fallback_rate"])

    # The raw outputs were saved as they came; rescoring them reproduces every number.
    saved = out / "outputs" / "prompt.jsonl"
    assert len(saved.read_text().splitlines()) == 12
    again = tmp_path / "again"
    args = ["eval", "--data", str(data), "--index", str(index), "--out", str(again)]
    args += ["--explainers", "template", "--external", f"prompt={saved}", "--no-baselines"]
    result = runner.invoke(app, [*args, "--limit", "12", "--no-progress"])
    assert result.exit_code == 0, result.output
    rescored = json.loads((again / "metrics.json").read_text())["results"]["prompt"]
    for mode in ("raw", "delivered"):
        for key in ("bleu_4", "rouge_l_f", "usr", "fmr", "grounding_rate", "failure_rate"):
            assert rescored[mode][key] == pytest.approx(prompt[mode][key]), (mode, key)


def test_bench_generate_sweeps_batch_sizes(small, tiny_config, tmp_path, monkeypatch):
    monkeypatch.setenv("RECX_CONFIG", str(tiny_config))
    data, index = small
    out = tmp_path / "bench.json"
    args = ["bench", "generate", "--data", str(data), "--index", str(index), "--n", "8"]
    args += ["--explainers", "prompt", "--batch-sizes", "1,4", "--out", str(out)]
    result = runner.invoke(app, [*args, "--config", str(tiny_config), "--threads", "1"])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "generate" and "hardware" in doc
    assert doc["explainers"]["prompt/torch"]["device"] == "cpu"
    assert doc["explainers"]["prompt/ct2"]["weights"].startswith("ct2 int8")
    assert doc["matmul_gflops"] > 0 and doc["threads"] == 1
    rows = doc["rows"]
    assert [(r["engine"], r["mode"], r["batch"]) for r in rows] == [
        ("torch", "naive generate()", 1), ("torch", "batched", 1), ("torch", "batched", 4),
        ("ct2", "naive generate()", 1), ("ct2", "batched", 1), ("ct2", "batched", 4),
    ]  # fmt: skip
    assert all(r["n"] == 8 and r["expl_per_s"] > 0 and r["p99_ms"] >= r["p50_ms"] for r in rows)
    assert all(r["gflop_per_s"] > 0 and r["matmul_share"] > 0 for r in rows)
    assert rows[0]["vs_torch"] == 1.0 and rows[3]["vs_torch"] > 0
    result = runner.invoke(app, [*args[:-4], "--explainers", "template", "--out", str(out)])
    assert result.exit_code == 2 and "not a language-model explainer" in result.output


def test_bench_generate_runs_one_plugin_under_two_labels(small, tiny_config, tmp_path):
    data, index = small
    config = tmp_path / "two.toml"
    base = tiny_config.read_text(encoding="utf-8")
    short = base.replace("[chain.options.prompt]", "[chain.options.short]")
    config.write_text(base + short.replace("max_new_tokens = 8", "max_new_tokens = 2"))
    out = tmp_path / "bench.json"
    args = ["bench", "generate", "--data", str(data), "--index", str(index), "--n", "4"]
    args += ["--explainers", "prompt,short=prompt", "--batch-sizes", "4", "--no-naive"]
    args += ["--engines", "ct2", "--threads", "1", "--config", str(config), "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert set(doc["explainers"]) == {"prompt/ct2", "short/ct2"}
    rows = {r["explainer"]: r for r in doc["rows"]}
    # each label ran with its own options: at most 2 new tokens per answer, against 8
    assert 0 < rows["short"]["tokens_per_expl"] <= 2
    assert 0 < rows["prompt"]["tokens_per_expl"] <= 8


def test_eval_help_shows_bracketed_option_names():
    result = runner.invoke(app, ["eval", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "[chain.options.NAME]" in result.output and "[NAME=]FILE" in result.output


def test_report_outputs_hold_exactly_the_systems_scored(small, tmp_path):
    """Every scored system's outputs land in outputs/ (externals and the baseline too) and an
    earlier report's files go: rescoring the folder reproduces the report."""
    data, index = small
    first = tmp_path / "first"
    args = ["eval", "--data", str(data), "--index", str(index), "--limit", "12", "--no-progress"]
    result = runner.invoke(app, [*args, "--explainers", "template", "--out", str(first)])
    assert result.exit_code == 0, result.output
    external = tmp_path / "mine.jsonl"
    external.write_text((first / "outputs" / "template.jsonl").read_text())
    report = tmp_path / "report"
    (report / "outputs").mkdir(parents=True)
    (report / "outputs" / "old.jsonl").write_text('{"id": "x", "text": "stale"}\n')
    result = runner.invoke(
        app,
        [*args, "--explainers", "template", "--external", f"mine={external}", "--out", str(report)],
    )
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in (report / "outputs").glob("*.jsonl"))
    assert files == ["mine.jsonl", "most-frequent.jsonl", "template.jsonl"]
    doc = json.loads((report / "metrics.json").read_text())["results"]
    again = tmp_path / "again"
    specs = [
        f"--external={n}={report / 'outputs' / f'{n}.jsonl'}" for n in ("mine", "most-frequent")
    ]
    result = runner.invoke(
        app, [*args, "--explainers", "template", "--no-baselines", *specs, "--out", str(again)]
    )
    assert result.exit_code == 0, result.output
    rescored = json.loads((again / "metrics.json").read_text())["results"]
    for name in ("mine", "most-frequent"):
        for key in ("bleu_1", "rouge_l_f", "usr"):
            assert rescored[name]["raw"][key] == pytest.approx(doc[name]["raw"][key]), (name, key)
    assert external.exists()
