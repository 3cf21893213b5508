"""``recx train lora``: bad input gives a clear message and a non-zero exit code."""

from __future__ import annotations

from typer.testing import CliRunner

from recx_worker.cli import app

runner = CliRunner()


def test_missing_data_directory_is_a_clear_error(tmp_path):
    args = ["train", "lora", "--data", str(tmp_path / "none"), "--work", str(tmp_path / "w")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "is not a prepared-data directory" in " ".join(result.output.split())
    assert "Traceback" not in " ".join(result.output.split())


def test_existing_run_needs_resume(tmp_path):
    work = tmp_path / "work"
    (work / "checkpoint").mkdir(parents=True)
    (tmp_path / "train.jsonl").write_text("")
    args = ["train", "lora", "--data", str(tmp_path), "--work", str(work)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "already holds a training run; pass --resume" in " ".join(result.output.split())


def test_help_lists_the_training_options():
    result = runner.invoke(app, ["train", "lora", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for option in ("--max-train", "--epochs", "--rank", "--max-minutes", "--resume"):
        assert option in " ".join(result.output.split())
