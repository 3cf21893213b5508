"""CLI: ``recx explain`` (embedded use, no Kafka), ``recx plugins``, ``recx schemas``."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

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
    explainer_chain, store = _open_chain(settings, data_dir, index or settings.paths.index_dir)
    try:
        if one_off:
            code = _explain_one(explainer_chain, store, settings, user, item, history, as_json)
        else:
            _explain_file(
                explainer_chain, store, settings, in_path, out, rejects, batch_size, report
            )
            code = 0
    finally:
        explainer_chain.close()
    if code:
        raise typer.Exit(code)


def _open_chain(settings: Any, data_dir: Path, index_dir: Path):
    from recx_worker.chain import ExplainerChain
    from recx_worker.plugins import UnknownExplainerError
    from recx_worker.retrieval.evidence import EvidenceStore

    if not (data_dir / "train.jsonl").exists():
        raise _fail(f"{data_dir} is not a prepared-data directory; run `recx data prepare` first")
    if not index_dir.exists():
        console.print(f"[yellow]note:[/yellow] no index at {index_dir}; evidence without FAISS")
    try:
        store = EvidenceStore.open(data_dir, index_dir if index_dir.exists() else None)
        explainer_chain = ExplainerChain.from_settings(settings, store)
    except UnknownExplainerError as exc:
        raise _fail(str(exc)) from None
    try:
        disabled = explainer_chain.warm_up()
    except RuntimeError as exc:
        explainer_chain.close()
        raise _fail(str(exc), 1) from None
    for name, why in disabled.items():
        console.print(f"[yellow]skipping explainer {name}:[/yellow] {why}")
    return explainer_chain, store


def _explain_one(chain, store, settings, user, item, history, as_json) -> int:
    from recx_worker.chain import ChainFailure, explanation_event
    from recx_worker.enrich import EnrichFailure, enrich
    from recx_worker.events import HistoryEntry, RecommendationEvent

    items = [h.strip() for h in (history or "").split(",") if h.strip()]
    event = RecommendationEvent(
        event_id=f"cli:{user}:{item}",
        user_id=user,
        item_id=item,
        history=[HistoryEntry(item_id=i) for i in items],
    )
    (request,) = enrich([event], store, settings.chain.max_words)
    if isinstance(request, EnrichFailure):
        console.print(f"[red]cannot explain:[/red] {request.reason}")
        return 1
    (result,) = chain.explain([request])
    if isinstance(result, ChainFailure):
        console.print(f"[red]cannot explain:[/red] {result.reason}")
        return 1
    if as_json:
        typer.echo(explanation_event(result).model_dump_json(indent=2))
    else:
        typer.echo(result.text)
        skipped = ", ".join(f"{s.explainer} ({s.reason})" for s in result.skipped)
        console.print(
            f"[dim]explainer {result.explainer} {result.explainer_version}; features "
            f"{result.mentioned_features}; grounded {result.grounded}"
            + (f"; skipped {skipped}" if skipped else "")
            + "[/dim]"
        )
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


def _explain_file(chain, store, settings, in_path, out, rejects, batch_size, report) -> None:
    from tqdm import tqdm

    from recx_worker.chain import ChainFailure, explanation_event
    from recx_worker.enrich import EnrichFailure, enrich
    from recx_worker.validation import Invalid, validate_recommendation

    rejects = rejects or out.with_name(out.name + ".rejects.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    limits = settings.validation
    counts: Counter[str] = Counter()
    reject_classes: Counter[str] = Counter()
    started = time.perf_counter()

    batch_rejects: list[dict[str, Any]] = []

    def reject(line_no: int, error_class: str, reason: str, field: str | None) -> None:
        reject_classes[error_class] += 1
        row = {"line": line_no, "error_class": error_class, "reason": reason, "field": field}
        batch_rejects.append(row)

    with (
        in_path.open("rb") as src,
        out.open("w", encoding="utf-8") as dst,
        rejects.open("w", encoding="utf-8") as bad,
        tqdm(unit=" events", disable=None, file=None) as progress,
    ):
        numbered = ((n, line.rstrip(b"\r\n")) for n, line in enumerate(src, 1) if line.strip())
        for batch in _batches(numbered, batch_size):
            events, line_of = [], []
            for line_no, raw in batch:
                parsed = validate_recommendation(
                    raw, max_bytes=limits.max_message_bytes, max_history=limits.max_history
                )
                if isinstance(parsed, Invalid):
                    reject(line_no, parsed.error_class, parsed.reason, parsed.field)
                else:
                    events.append(parsed)
                    line_of.append(line_no)
            requests, request_lines = [], []
            enriched = enrich(events, store, settings.chain.max_words)
            for line_no, request in zip(line_of, enriched, strict=True):
                if isinstance(request, EnrichFailure):
                    reject(line_no, request.error_class, request.reason, request.field)
                else:
                    requests.append(request)
                    request_lines.append(line_no)
            for line_no, result in zip(request_lines, chain.explain(requests), strict=True):
                if isinstance(result, ChainFailure):
                    reject(line_no, result.error_class, result.reason, None)
                else:
                    counts[result.explainer] += 1
                    dst.write(explanation_event(result).model_dump_json() + "\n")
            for row in sorted(batch_rejects, key=lambda r: r["line"]):
                bad.write(json.dumps(row) + "\n")
            batch_rejects.clear()
            progress.update(len(batch))
            counts["__read__"] += len(batch)
    elapsed = time.perf_counter() - started
    _summary(counts, reject_classes, elapsed, out, rejects, report)


def _summary(counts, reject_classes, elapsed, out, rejects, report) -> None:
    from recx_worker.devtools.benchio import report as bench_report

    read = counts.pop("__read__", 0)
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
        "events_per_s": round(rate, 1),
    }
    if report is not None:  # the benchmark format (also records the hardware)
        bench_report("explain", rows, out=report, **meta)
    else:
        table = Table(title="recx explain")
        for col in ("outcome", "events", "share"):
            table.add_column(col, justify="left" if col == "outcome" else "right")
        for row in rows:
            table.add_row(row["outcome"], str(row["events"]), f"{row['share']:.1%}")
        Console().print(table)
    typer.echo(
        f"{read} events: {explained} explained -> {out}, {rejected} rejected -> {rejects}; "
        f"{elapsed:.2f} s, {rate:,.0f} events/s"
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
