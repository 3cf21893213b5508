"""``recx train lora``: fine-tune the LoRA explainer on the prepared explanation data."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

app = typer.Typer(no_args_is_help=True)
console = Console(stderr=True, soft_wrap=True)

DATA_FILES = ("train.jsonl", "valid.jsonl", "item_profiles.json", "user_histories.json")


def data_checksum(data_dir: Path) -> str:
    """sha256 over the prepared files the training examples derive from."""
    digest = hashlib.sha256()
    for name in DATA_FILES:
        digest.update(name.encode())
        digest.update((data_dir / name).read_bytes())
    return f"sha256:{digest.hexdigest()}"


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


def _log(message: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {message}")


#: Options both training commands take (``None``: the configured ``paths``).
DataOption = Annotated[Path | None, typer.Option(help="Prepared data (default: paths.data_dir)")]
IndexOption = Annotated[Path | None, typer.Option(help="Item index (default: paths.index_dir)")]
AdapterOption = Annotated[
    Path | None, typer.Option(help="Adapter directory (default: paths.adapter_dir)")
]


@app.command("lora")
def lora(
    data: DataOption = None,
    index: IndexOption = None,
    base: Annotated[str, typer.Option(help="'smollm2' or a local HF causal-LM folder")] = "smollm2",
    out: AdapterOption = None,
    work: Annotated[
        Path | None, typer.Option(help="Checkpoints (default: var/train/<out name>)")
    ] = None,
    max_train: Annotated[
        int | None, typer.Option(min=1, help="Sample this many train records")
    ] = None,
    max_valid: Annotated[int, typer.Option(min=1, help="Validation records for the loss")] = 160,
    epochs: Annotated[float, typer.Option(min=0.01)] = 1.0,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    lr: Annotated[float, typer.Option(min=0.0)] = 5e-4,
    rank: Annotated[int, typer.Option(min=1, help="LoRA rank")] = 8,
    layers: Annotated[
        int, typer.Option(min=0, help="LoRA on the last N layers only (0 = all layers)")
    ] = 0,
    alpha: Annotated[int | None, typer.Option(help="LoRA alpha (default 2 x rank)")] = None,
    eval_every: Annotated[int, typer.Option(min=1, help="Steps between validations")] = 50,
    patience: Annotated[int, typer.Option(min=1, help="Early stopping patience (evals)")] = 3,
    max_minutes: Annotated[float | None, typer.Option(min=0.1, help="Time budget")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/checkpoint")] = False,
    init_adapter: Annotated[
        Path | None,
        typer.Option(
            help="Start from this adapter (its rank and layers) and adapt it to --data: "
            "few-shot or a new domain; the manifest records it as the parent"
        ),
    ] = None,
    targets: Annotated[
        Path | None,
        typer.Option(
            help="JSON Lines of {record_id, explanation}: train on these texts instead of the "
            "references, only for the train records named (distillation: `recx train teacher`)"
        ),
    ] = None,
    decoding: Annotated[
        list[str] | None,
        typer.Option(
            help="KEY=VALUE (repeatable): decoding the manifest recommends, which the lora "
            "explainer uses unless configured otherwise (e.g. num_beams=1 for a distilled "
            "student); keys: num_beams, candidates, length_penalty, max_new_tokens, "
            "min_new_tokens, repetition_penalty, top_p, top_k, temperature"
        ),
    ] = None,
    seed: Annotated[int, typer.Option()] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda[:N]")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto | float32 | bfloat16")] = "auto",
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads for torch")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar")] = True,
) -> None:
    """Fine-tune a LoRA adapter: evidence context -> explanation (loss on the explanation)."""
    from recx_worker.config import load_settings
    from recx_worker.lm.adapter import AdapterError
    from recx_worker.lm.loading import BaseModelError
    from recx_worker.prepared import PreparedData
    from recx_worker.retrieval.evidence import EvidenceStore
    from training.examples import build_examples
    from training.lora import TrainConfig, train_lora
    from training.targets import read_targets

    settings = load_settings()
    data_dir = data or settings.paths.data_dir
    out_dir = out or settings.paths.adapter_dir
    try:
        prepared = PreparedData(data_dir)
    except FileNotFoundError as exc:
        _fail(str(exc))
    work_dir = work or Path("var/train") / out_dir.name
    if (work_dir / "checkpoint").exists() and not resume:
        _fail(f"{work_dir} already holds a training run; pass --resume, or delete it to restart")
    _log(f"building examples from {data_dir}")
    store = EvidenceStore.open(data_dir, index or _existing(settings.paths.index_dir))
    try:
        replacement = read_targets(targets) if targets is not None else None
    except (OSError, ValueError) as exc:
        _fail(str(exc))
    train = build_examples(
        store, prepared, "train", limit=max_train, seed=seed, targets=replacement
    )
    if replacement is not None and not train:
        _fail(f"{targets} names none of the train records of {data_dir}")
    # Early stopping measures what the student learns: the teacher's valid answers if the
    # file has them (`recx train teacher --split valid`), else the references.
    valid_ids = {r.record_id for r in prepared.split("valid")}
    valid_targets = replacement if replacement and valid_ids & replacement.keys() else None
    valid = build_examples(
        store, prepared, "valid", limit=max_valid, seed=seed, targets=valid_targets
    )
    against = "the references" if valid_targets is None else f"the texts of {targets}"
    _log(f"{len(train)} train / {len(valid)} valid examples (validation against {against})")
    config = TrainConfig(
        out_dir=out_dir,
        work_dir=work_dir,
        base=base,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        rank=rank,
        layers=layers,
        alpha=alpha or 2 * rank,
        eval_every=eval_every,
        patience=patience,
        max_minutes=max_minutes,
        seed=seed,
        device=device,
        dtype=dtype,
        threads=threads,
        init_adapter=init_adapter,
        extra={
            "max_train": max_train,
            "max_valid": max_valid,
            "targets": str(targets) if targets is not None else None,
        },
    )
    extra: dict[str, Any] = {"data": {"dir": str(data_dir), "checksum": data_checksum(data_dir)}}
    if decoding:
        try:
            extra["decoding"] = parse_decoding(decoding)
        except ValueError as exc:
            _fail(str(exc))
    try:
        result = train_lora(
            config, train, valid, resume=resume, manifest_extra=extra, progress=progress, log=_log
        )
    except (BaseModelError, AdapterError, ValueError) as exc:
        _fail(str(exc))
    _log(
        f"done: {result.steps} steps in {result.seconds / 60:.1f} min ({result.stopped}); "
        f"best valid loss {result.best_valid_loss:.4f} at step {result.best_step}; "
        f"adapter in {result.out_dir}"
    )


def parse_decoding(pairs: list[str]) -> dict[str, object]:
    """``["num_beams=1", "length_penalty=2.0"]`` as manifest decoding options (JSON values)."""
    import json

    from recx_worker.lm.adapter import DECODING_OPTIONS

    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or key not in DECODING_OPTIONS:
            raise ValueError(
                f"--decoding {pair!r}: expected KEY=VALUE with KEY one of "
                + ", ".join(DECODING_OPTIONS)
            )
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"--decoding {pair!r}: {raw!r} is not a number") from exc
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"--decoding {pair!r}: {raw!r} is not a number")
        out[key] = value
    return out


def _existing(path: Path) -> Path | None:
    return path if (path / "manifest.json").exists() else None


@app.command("reranker")
def reranker(
    adapter: AdapterOption = None,
    data: DataOption = None,
    index: IndexOption = None,
    split: Annotated[str, typer.Option(help="Split the reranker is fitted on")] = "valid",
    limit: Annotated[int | None, typer.Option(min=1, help="Use the first N records")] = None,
    cache: Annotated[Path, typer.Option(help="Where decoded candidates are cached")] = Path(
        "var/rerank"
    ),
    batch_size: Annotated[int, typer.Option(min=1, help="Requests decoded per batch")] = 16,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads for decoding")] = None,
    write: Annotated[
        bool, typer.Option(help="Write reranker.json into the adapter directory")
    ] = True,
    outputs: Annotated[
        Path | None,
        typer.Option(
            help="Also decode --outputs-split and write first/consensus/reranker/oracle .jsonl "
            "here (for recx eval --external)"
        ),
    ] = None,
    outputs_split: Annotated[str, typer.Option(help="Split for --outputs")] = "test",
    outputs_limit: Annotated[
        int | None, typer.Option(min=1, help="Only the first N records of --outputs-split")
    ] = None,
    logprobs: Annotated[
        bool,
        typer.Option(
            help="Also score each candidate's log-probability and use it as a feature (a second "
            "model pass: about doubles the explainer's CPU per request)"
        ),
    ] = False,
) -> None:
    """Fit the lora explainer's candidate reranker (selection = "reranker") on a split."""
    from training.rerank import run_reranker

    settings_adapter, settings_data, settings_index = _paths()
    try:
        run_reranker(
            adapter=adapter or settings_adapter,
            data=data or settings_data,
            index=index or _existing(settings_index),
            split=split,
            limit=limit,
            cache=cache,
            batch_size=batch_size,
            threads=threads,
            write=write,
            outputs=outputs,
            outputs_split=outputs_split,
            outputs_limit=outputs_limit,
            logprobs=logprobs,
            log=_log,
        )
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        _fail(str(exc))


@app.command("teacher")
def teacher(
    out: Annotated[Path, typer.Option(help="JSON Lines of {record_id, explanation} to write")],
    adapter: AdapterOption = None,
    data: DataOption = None,
    index: IndexOption = None,
    split: Annotated[str, typer.Option(help="Split whose records are answered")] = "train",
    limit: Annotated[int | None, typer.Option(min=1, help="Sample this many records")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Requests decoded per batch")] = 64,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads for decoding")] = None,
    pick: Annotated[
        str,
        typer.Option(
            help="Which candidate becomes the target: the explainer's own pick (model) or "
            "the one closest to the record's reference (reference)"
        ),
    ] = "model",
    progress: Annotated[bool, typer.Option(help="Show a progress bar")] = True,
) -> None:
    """Distillation targets: the lora explainer (its configured decoding) answers train records;
    `recx train lora --targets OUT` then trains a student on them. Resumes an interrupted run."""
    from rich.progress import Progress

    from recx_worker.config import load_settings
    from recx_worker.explainer import ExplainerContext
    from recx_worker.plugins import create_explainer
    from recx_worker.prepared import PreparedData
    from recx_worker.retrieval.evidence import EvidenceStore
    from training.distill import PICKS, write_teacher_targets
    from training.examples import training_records

    if pick not in PICKS:
        _fail(f"--pick must be one of {', '.join(PICKS)}")
    settings = load_settings()
    data_dir = data or settings.paths.data_dir
    try:
        prepared = PreparedData(data_dir)
    except FileNotFoundError as exc:
        _fail(str(exc))
    store = EvidenceStore.open(data_dir, index or _existing(settings.paths.index_dir))
    options = dict(settings.chain.options.get("lora", {}))
    options["adapter_dir"] = adapter or options.get("adapter_dir") or settings.paths.adapter_dir
    if threads:
        options["threads"] = threads
    from recx_worker.lm.adapter import distilled_from

    if (teacher_of := distilled_from(Path(options["adapter_dir"]))) is not None:
        _log(
            f"note: {options['adapter_dir']} is itself a distilled student (of {teacher_of}): "
            f"these targets will be a student's answers; --adapter {teacher_of} uses its teacher"
        )
    explainer = create_explainer("lora", ExplainerContext.from_settings(settings, store), **options)
    # exactly the records `recx train lora` trains on with the same split, limit and seed
    records = training_records(store, prepared.split(split), limit, seed)
    _log(f"teacher: {len(records)} {split} records from {data_dir} -> {out}")
    with Progress(console=console, disable=not progress) as bar:
        task = bar.add_task("teacher", total=len(records))
        written = write_teacher_targets(
            explainer,
            prepared,
            store,
            records,
            out,
            max_words=settings.chain.max_words,
            batch_size=batch_size,
            pick=pick,
            progress=lambda done, total: bar.update(task, completed=done),
        )
    _log(f"done: {written} answered now, {len(records)} in {out}")


def _paths() -> tuple[Path, Path, Path]:
    from recx_worker.config import load_settings

    paths = load_settings().paths
    return paths.adapter_dir, paths.data_dir, paths.index_dir
