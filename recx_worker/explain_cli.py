"""CLI: ``recx explain`` (embedded use, no Kafka), ``recx plugins``, ``recx schemas``."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from recx_worker.core import ExplainCore
    from recx_worker.events import SkippedStage

console = Console(stderr=True, soft_wrap=True)
schemas_app = typer.Typer(help="JSON Schema files of the published events.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
    app.command("explain")(explain)
    app.command("plugins")(plugins)
    app.add_typer(schemas_app, name="schemas", help="JSON Schemas of the events (write/check).")


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def explain(
    user: Annotated[str | None, typer.Option(help="One-off: the user id")] = None,
    item: Annotated[str | None, typer.Option(help="One-off: the recommended item id")] = None,
    history: Annotated[
        str | None, typer.Option(help="One-off: comma-separated recent item ids")
    ] = None,
    in_path: Annotated[
        Path | None, typer.Option("--in", help="Batch: recommendation events (JSON Lines)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Batch: explanation events (JSON Lines); or --make-events")
    ] = None,
    rejects: Annotated[
        Path | None, typer.Option(help="Batch: rejected lines (default: OUT.rejects.jsonl)")
    ] = None,
    make_events: Annotated[
        int | None,
        typer.Option(help="Write N recommendation events from the prepared --split to --out"),
    ] = None,
    split: Annotated[str, typer.Option(help="Split used by --make-events")] = "test",
    chain: Annotated[
        str | None, typer.Option(help="Comma-separated explainers (default: from settings)")
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="Prepared data (default: from settings)")
    ] = None,
    index: Annotated[Path | None, typer.Option(help="FAISS index (default: from settings)")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Micro-batch size")] = 64,
    as_json: Annotated[bool, typer.Option("--json", help="One-off: print the full event")] = False,
    report: Annotated[Path | None, typer.Option(help="Batch: write the summary as JSON")] = None,
) -> None:
    """Explain recommendations without Kafka: one-off (--user/--item) or batch (--in/--out)."""
    from recx_worker.config import load_settings
    from recx_worker.logging_setup import configure_logging

    configure_logging("ERROR", "console")  # stdout carries results only; reasons are in them
    settings = load_settings()
    data_dir = data or settings.paths.data_dir
    if make_events is not None:
        if out is None:
            raise _fail("--make-events needs --out")
        _make_events(data_dir, make_events, split, out)
        return
    one_off = user is not None or item is not None
    if one_off == (in_path is not None):
        raise _fail("give either --user and --item (one-off) or --in and --out (batch)")
    if one_off and (user is None or item is None):
        raise _fail("one-off mode needs both --user and --item")
    if in_path is not None and out is None:
        raise _fail("batch mode needs --out")
    if in_path is not None and not in_path.is_file():
        raise _fail(f"input file {in_path} does not exist")
    if chain is not None:
        settings.chain.explainers = [n.strip() for n in chain.split(",") if n.strip()]
    core = _open_core(settings, data_dir, index or settings.paths.index_dir)
    with core:
        if user is not None and item is not None:
            code = _explain_one(core, user, item, history, as_json)
        else:
            assert in_path is not None and out is not None  # checked above
            _explain_file(core, in_path, out, rejects, batch_size, report)
            code = 0
    if code:
        raise typer.Exit(code)


def _open_core(settings: Any, data_dir: Path, index_dir: Path) -> ExplainCore:
    from recx_worker.core import ExplainCore
    from recx_worker.plugins import PluginError

    if not (data_dir / "train.jsonl").exists():
        raise _fail(f"{data_dir} is not a prepared-data directory; run `recx data prepare` first")
    if not (index_dir / "manifest.json").exists():
        console.print(f"[yellow]note:[/yellow] no index at {index_dir}; evidence without FAISS")
    try:
        core = ExplainCore.open(settings, data_dir=data_dir, index_dir=index_dir)
    except PluginError as exc:
        raise _fail(str(exc)) from None
    try:
        disabled = core.warm_up()
    except RuntimeError as exc:
        core.close()
        raise _fail(str(exc), 1) from None
    for name, why in disabled.items():
        console.print(f"[yellow]skipping explainer {name}:[/yellow] {why}")
    return core


def _skipped_text(skipped: list[SkippedStage]) -> str:
    """``lora declined (CleaningError: ...); prompt error (RuntimeError: ...)``."""
    return "; ".join(f"{s.explainer} {s.reason} ({s.detail})" for s in skipped)


def _explain_one(
    core: ExplainCore, user: str, item: str, history: str | None, as_json: bool
) -> int:
    from recx_worker.core import Rejected
    from recx_worker.events import HistoryEntry, RecommendationEvent

    items = [h.strip() for h in (history or "").split(",") if h.strip()]
    event = RecommendationEvent(
        event_id=f"cli:{user}:{item}",
        user_id=user,
        item_id=item,
        history=[HistoryEntry(item_id=i) for i in items],
    )
    (outcome,) = core.process([event])
    if isinstance(outcome, Rejected):
        console.print(f"[red]cannot explain ({outcome.error_class}):[/red] {outcome.reason}")
        return 1
    published = outcome.event
    if as_json:
        typer.echo(published.model_dump_json(indent=2))
        return 0
    typer.echo(published.text)
    console.print(
        f"[dim]explainer {published.explainer} {published.explainer_version}; features "
        f"{published.mentioned_features}; grounded {published.grounded}[/dim]",
        highlight=False,
    )
    if published.skipped:
        console.print(f"[dim]skipped: {_skipped_text(published.skipped)}[/dim]", highlight=False)
    return 0


def _batches(lines: Iterator[tuple[int, bytes]], size: int) -> Iterator[list[tuple[int, bytes]]]:
    batch: list[tuple[int, bytes]] = []
    for entry in lines:
        batch.append(entry)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _explain_file(
    core: ExplainCore,
    in_path: Path,
    out: Path,
    rejects: Path | None,
    batch_size: int,
    report: Path | None,
) -> None:
    from tqdm import tqdm

    from recx_worker.core import Rejected

    rejects = rejects or out.with_name(out.name + ".rejects.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    counts: Counter[str] = Counter()
    reject_classes: Counter[str] = Counter()
    read = 0
    started = time.perf_counter()
    with (
        in_path.open("rb") as src,
        out.open("w", encoding="utf-8") as dst,
        rejects.open("w", encoding="utf-8") as bad,
        tqdm(unit=" events", disable=None, file=None) as progress,
    ):
        numbered = ((n, line.rstrip(b"\r\n")) for n, line in enumerate(src, 1) if line.strip())
        for batch in _batches(numbered, batch_size):
            outcomes = core.process([raw for _, raw in batch])
            for (line_no, _), outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, Rejected):
                    reject_classes[outcome.error_class] += 1
                    row = {
                        "line": line_no,
                        "error_class": outcome.error_class,
                        "reason": outcome.reason,
                        "field": outcome.field,
                    }
                    bad.write(json.dumps(row) + "\n")
                else:
                    counts[outcome.event.explainer] += 1
                    dst.write(outcome.event.model_dump_json() + "\n")
            progress.update(len(batch))
            read += len(batch)
    elapsed = time.perf_counter() - started
    _summary(read, counts, reject_classes, elapsed, out, rejects, report)


def _summary(
    read: int,
    counts: Counter[str],
    reject_classes: Counter[str],
    elapsed: float,
    out: Path,
    rejects: Path,
    report: Path | None,
) -> None:
    from recx_worker.devtools.benchio import report as bench_report

    explained = sum(counts.values())
    rejected = sum(reject_classes.values())
    rows: list[dict[str, Any]] = [
        {"outcome": f"explained by {name}", "events": n, "share": round(n / max(read, 1), 4)}
        for name, n in counts.most_common()
    ]
    rows += [
        {"outcome": f"rejected: {cls}", "events": n, "share": round(n / max(read, 1), 4)}
        for cls, n in reject_classes.most_common()
    ]
    rate = read / elapsed if elapsed > 0 else 0.0
    meta = {
        "events": read,
        "explained": explained,
        "rejected": rejected,
        "seconds": round(elapsed, 3),
        "events_per_s": round(rate, 3),
    }
    if report is not None:  # the benchmark format (also records the hardware)
        bench_report("explain", rows, out=report, title="recx explain", **meta)
    else:
        table = Table(title="recx explain")
        for col in ("outcome", "events", "share"):
            table.add_column(col, justify="left" if col == "outcome" else "right")
        for row in rows:
            table.add_row(row["outcome"], str(row["events"]), f"{row['share']:.1%}")
        Console().print(table)
    shown_rate = f"{rate:,.0f}" if rate >= 100 else f"{rate:.2f}"  # a slow chain is not 0/s
    typer.echo(
        f"{read} events: {explained} explained -> {out}, {rejected} rejected -> {rejects}; "
        f"{elapsed:.2f} s, {shown_rate} events/s"
    )


def _make_events(data_dir: Path, n: int, split: str, out: Path) -> None:
    from recx_worker.devtools.sample_events import events_from_split

    try:
        events = events_from_split(data_dir, n, split=split)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8") as handle:
            for event in events:
                handle.write(event.model_dump_json(exclude_none=True) + "\n")
    except (FileNotFoundError, ValueError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"wrote {n} recommendation events from {data_dir} ({split}) to {out}")


def plugins() -> None:
    """List the registered explainers (and extra guards) with version and package."""
    from recx_worker.plugins import registered_explainers, registered_guards

    table = Table(title="recx explainers")
    for col in ("name", "version", "package", "plugin"):
        table.add_column(col)
    for reg in sorted(registered_explainers().values(), key=lambda r: r.name):
        table.add_row(reg.name, reg.version, reg.package, reg.plugin)
    Console().print(table)
    guards = registered_guards()
    if guards:
        Console().print("extra guards: " + ", ".join(g.__name__ for g in guards))


DirOption = Annotated[Path, typer.Option("--dir", help="Schema directory")]


@schemas_app.command("write")
def schemas_write(directory: DirOption = Path("schemas")) -> None:
    """Regenerate the JSON Schema files from the event models."""
    from recx_worker.schema_gen import write_schemas

    for path in write_schemas(directory):
        typer.echo(f"wrote {path}")


@schemas_app.command("check")
def schemas_check(directory: DirOption = Path("schemas")) -> None:
    """Exit 1 when the JSON Schema files and the event models drift."""
    from recx_worker.schema_gen import check_schemas

    problems = check_schemas(directory)
    for problem in problems:
        console.print(f"[red]drift:[/red] {problem}")
    if problems:
        raise typer.Exit(1)
    typer.echo(f"schemas in {directory} match the event models")
