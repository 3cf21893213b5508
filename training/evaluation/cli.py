"""CLI: ``recx eval`` (quality report) and ``recx bench generate`` (generation speed)."""

from __future__ import annotations

from pathlib import Path

import typer

from recx_worker.config import PathSettings

_DEFAULTS = PathSettings()


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def _names(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise typer.BadParameter("name at least one explainer")
    return names


def eval_command(
    data: Path = typer.Option(_DEFAULTS.data_dir, "--data", help="Prepared-data directory."),
    split: str = typer.Option("test", "--split", help="train, valid or test."),
    explainers: str = typer.Option(
        "template,prompt,lora", "--explainers", help="Comma-separated explainer names."
    ),
    out: Path = typer.Option(Path("reports/latest"), "--out", help="Report directory."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Score the first N records."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Requests per explain_batch."),
    external: list[str] = typer.Option(
        [],
        "--external",
        help="[NAME=]FILE: JSONL of {id, text} from another system, scored the same way "
        "(repeatable; e.g. prompt=reports/x/outputs/prompt.jsonl reuses saved outputs).",
    ),
    index: Path | None = typer.Option(
        None, "--index", help="FAISS index dir (default: the configured one if built from DATA)."
    ),
    baselines: bool = typer.Option(
        True, "--baselines/--no-baselines", help="Include the most-frequent-explanation baseline."
    ),
    samples: int = typer.Option(20, "--samples", min=0, help="Records in samples.md."),
    compare: list[str] = typer.Option(
        [],
        "--compare",
        help="Paired bootstrap of system A minus system B, given as A:B (raw outputs; BLEU-1, "
        "BLEU-4, ROUGE-L F, MiniLM similarity, negative share; 95% interval, P(A>B)); "
        "repeatable, e.g. --compare lora:template.",
    ),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=1, help="Resamples per --compare pair."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    config: Path | None = typer.Option(
        None,
        "--config",
        help=r"TOML settings file (explainer options under \[chain.options.NAME]).",
    ),
    feedback: Path | None = typer.Option(
        None,
        "--feedback",
        help="Evaluate on user judgements instead: a feedback-eval.jsonl from `recx feedback "
        "export` (helpful rate per explainer and arm; which offline signals agree with users). "
        "Uses --data for the lexicon and item profiles (else the raw data's features.txt) "
        "and --out.",
    ),
    reexplain: bool = typer.Option(
        False,
        "--reexplain/--no-reexplain",
        help="With --feedback: also re-explain the helpful (user, item) pairs with --explainers "
        "and score them against the helpful texts (BLEU/ROUGE; needs --data and its index).",
    ),
) -> None:
    """Score explainers on a split: BLEU, ROUGE, USR, FMR, FCR, DIV, grounding, MiniLM
    similarity, distinct-1/2, duplicates, negative share, personalisation; tables + plots."""
    from training.evaluation.evaluate import EvalConfig, EvalInputError, command_line, run_eval

    if feedback is not None:  # judgements of real users instead of references
        names = _names(explainers) if reexplain else []
        try:
            _feedback_eval(feedback, data, out, command_line(), names, index, config, batch_size)
        except EvalInputError as exc:
            _fail(str(exc))
        return
    cfg = EvalConfig(
        data_dir=data,
        split=split,
        explainers=_names(explainers),
        out=out,
        limit=limit,
        batch_size=batch_size,
        externals=list(external),
        baselines=baselines,
        index_dir=index,
        samples=samples,
        progress=progress,
        command=command_line(),
        config=config,
        compare=list(compare),
        bootstrap=bootstrap,
    )
    try:
        doc = run_eval(cfg)
    except EvalInputError as exc:
        _fail(str(exc))
        return
    typer.echo((out / "metrics.md").read_text(encoding="utf-8"))
    typer.echo(f"wrote {out}/metrics.json, metrics.md, samples.md, *.png")
    if doc["unavailable"]:
        for name, why in doc["unavailable"].items():
            typer.secho(f"not evaluated: {name}: {why}", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(code=1)


def _feedback_eval(
    feedback: Path,
    data: Path,
    out: Path,
    command: str,
    reexplain_with: list[str],
    index: Path | None,
    config: Path | None,
    batch_size: int,
) -> None:
    from training.evaluation.feedback_eval import FeedbackInputError, run_feedback_eval

    try:
        doc = run_feedback_eval(
            feedback,
            out,
            data_dir=data,
            features=_DEFAULTS.raw_data / "features.txt",
            reexplain_with=reexplain_with,
            index_dir=index,
            config=config,
            batch_size=batch_size,
            command=command,
        )
    except FeedbackInputError as exc:
        _fail(str(exc))
        return
    typer.echo((out / "feedback-eval.md").read_text(encoding="utf-8"))
    typer.echo(f"wrote {out}/feedback-eval.json, feedback-eval.md, feedback-helpful-rate.png")
    skipped = doc["skipped"]
    if skipped["count"]:
        first = "; ".join(skipped["lines"][:3])
        typer.secho(
            f"warning: skipped {skipped['count']} malformed line(s) of {feedback}: {first}",
            fg=typer.colors.YELLOW,
            err=True,
        )


def bench_generate_command(
    data: Path = typer.Option(_DEFAULTS.data_dir, "--data", help="Prepared-data directory."),
    explainers: str = typer.Option(
        "prompt,lora",
        "--explainers",
        help="LM explainers to bench; LABEL=PLUGIN benches PLUGIN with the options of "
        "[chain.options.LABEL] under LABEL (two adapters or decodings in one run).",
    ),
    n: int = typer.Option(64, "--n", min=1, help="Requests (test split) per configuration."),
    batch_sizes: str = typer.Option(
        "", "--batch-sizes", help="Comma-separated sweep (default 1,8,32 on CPU, 1..128 on GPU)."
    ),
    naive: bool = typer.Option(
        True, "--naive/--no-naive", help="Include one-at-a-time generate()."
    ),
    out: Path = typer.Option(
        Path("reports/bench/generate.json"), "--out", help="JSON output file."
    ),
    index: Path | None = typer.Option(
        None, "--index", help="FAISS index dir (default: the configured one if built from DATA)."
    ),
    config: Path | None = typer.Option(None, "--config", help="TOML settings file."),
    engines: str = typer.Option(
        "torch,ct2", "--engines", help="Generation engines to compare (torch, ct2)."
    ),
    threads: int = typer.Option(2, "--threads", min=1, help="CPU threads per engine."),
) -> None:
    """Generation engines side by side, batched vs one at a time: expl/s, tokens/s, GFLOP/s
    against a matmul calibration, p50/p99, peak memory."""
    from recx_worker.devtools.bench_generate import BenchInputError, run_generate_bench

    try:
        sizes = [int(s) for s in batch_sizes.split(",") if s.strip()] if batch_sizes else None
    except ValueError:
        _fail(f"--batch-sizes must be comma-separated integers, got {batch_sizes!r}")
        return
    if sizes is not None and (not sizes or min(sizes) < 1):
        _fail("--batch-sizes must be positive integers")
        return
    try:
        run_generate_bench(
            data,
            _names(explainers),
            n=n,
            batch_sizes=sizes,
            naive=naive,
            out=out,
            index_dir=index,
            config=config,
            engines=_names(engines),
            threads=threads,
        )
    except BenchInputError as exc:
        _fail(str(exc))


def register(app: typer.Typer) -> None:
    """Add ``recx eval``."""
    app.command("eval")(eval_command)


def register_bench(bench_app: typer.Typer) -> None:
    """Add ``recx bench generate``."""
    bench_app.command("generate")(bench_generate_command)
