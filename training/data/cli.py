"""``recx data prepare`` (and ``recx data lexicon``): reviews -> explanation data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from recx_worker.config import DEFAULT_RAW_DATA

app = typer.Typer(no_args_is_help=True)
console = Console()

REVIEWS_FILE = "reviews_Musical_Instruments_5.json.gz"
FEATURES_FILE = "features.txt"


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}", soft_wrap=True)
    raise typer.Exit(2)


def stats_table(stats: dict) -> Table:
    table = Table(title="recx data prepare")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    table.add_row("reviews read", f"{stats['reviews_read']:,}")
    table.add_row("explanation records", f"{stats['records']:,}")
    if "dedup" in stats:
        dedup = stats["dedup"]
        table.add_row(
            "copied reviews (exact rows / on other items)",
            f"{dedup['reviews']['exact_rows']:,} / {dedup['reviews']['cross_item_copies']:,}",
        )
        reasons = ", ".join(f"{k} {v:,}" for k, v in dedup["dropped"].items())
        table.add_row(
            "duplicates dropped",
            f"{dedup['dropped_total']:,} of {dedup['records_before']:,} ({reasons})",
        )
        by_split = ", ".join(f"{k} {v:,}" for k, v in dedup["dropped_by_split"].items())
        table.add_row("  dropped from", by_split)
        table.add_row("  moved to train (user/item unseen)", f"{dedup['moved_to_train']:,}")
    table.add_row("coverage", f"{stats['coverage']:.1%}")
    for name, split in stats["splits"].items():
        table.add_row(
            f"{name}",
            f"{split['records']:,} records, {split['users']} users, {split['items']} items",
        )
    table.add_row("users / items", f"{stats['users']:,} / {stats['items']:,}")
    table.add_row(
        "features in records / lexicon", f"{stats['features_in_records']} / {stats['lexicon_size']}"
    )
    table.add_row("mean explanation words", f"{stats['mean_explanation_words']}")
    table.add_row("sentiment", ", ".join(f"{k} {v}" for k, v in stats["sentiment"].items()))
    for reason, count in stats["no_explanation"].items():
        table.add_row(f"no explanation: {reason}", f"{count:,}")
    for reason, count in stats["input"]["skipped"].items():
        lines = stats["input"]["skipped_lines"].get(reason, [])
        shown = ", ".join(map(str, lines[:10])) + (" ..." if count > len(lines[:10]) else "")
        table.add_row(f"skipped input: {reason}", f"{count:,} (lines {shown})")
    if "seconds" in stats:
        table.add_row("seconds", f"{stats['seconds']}")
    return table


@app.command()
def prepare(
    reviews: Annotated[
        Path | None, typer.Option(help=f"Reviews file (default: <raw data>/{REVIEWS_FILE})")
    ] = None,
    features: Annotated[
        Path | None,
        typer.Option(
            help="Feature lexicon, one per line (default: features.txt beside the default "
            "reviews; none with --reviews -> built automatically)"
        ),
    ] = None,
    auto_lexicon: Annotated[
        bool, typer.Option("--auto-lexicon", help="Build the lexicon from the reviews")
    ] = False,
    fmt: Annotated[str, typer.Option("--format", help="amazon | generic | auto")] = "auto",
    out: Annotated[
        Path | None, typer.Option(help="Output directory (default: paths.data_dir)")
    ] = None,
    seed: Annotated[int, typer.Option(help="Split seed")] = 42,
    progress: Annotated[bool, typer.Option(help="Show progress bars")] = True,
) -> None:
    """Reviews -> explanation records, a seeded 8:1:1 split, item profiles, user histories."""
    from recx_worker.config import load_settings
    from training.data.prepare import prepare as run
    from training.data.readers import DataInputError

    if fmt not in ("amazon", "generic", "auto"):
        _fail(f"--format must be amazon, generic or auto, not {fmt!r}")
    paths = load_settings().paths
    out = out or paths.data_dir
    if reviews is None:
        reviews = paths.raw_data / REVIEWS_FILE
        if features is None and not auto_lexicon:
            features = paths.raw_data / FEATURES_FILE
    if auto_lexicon:
        features = None
    try:
        result = run(reviews, out, features=features, fmt=fmt, seed=seed, progress=progress)  # type: ignore[arg-type]
    except DataInputError as exc:
        _fail(str(exc))
        return
    console.print(stats_table(result.stats))
    console.print(f"wrote {result.out} in {result.seconds:.1f} s")


@app.command()
def lexicon(
    reviews: Annotated[Path, typer.Option(help="Reviews file")] = DEFAULT_RAW_DATA / REVIEWS_FILE,
    reference: Annotated[
        Path | None,
        typer.Option(help="Compare with this lexicon (precision/recall at --top); none by default"),
    ] = None,
    top: Annotated[int, typer.Option(help="Size of the lexicon")] = 300,
    out: Annotated[Path | None, typer.Option(help="Write the lexicon here")] = None,
    fmt: Annotated[str, typer.Option("--format", help="amazon | generic | auto")] = "auto",
) -> None:
    """Build the automatic feature lexicon (nouns scored against general English); with
    --reference, its precision and recall against that lexicon."""
    import time

    from recx_worker.features import Lexicon
    from training.data.auto_lexicon import build_lexicon, compare
    from training.data.readers import DataInputError, read_reviews

    if reference is not None and not reference.is_file():
        _fail(f"reference lexicon not found: {reference}")
    started = time.perf_counter()
    try:
        auto = build_lexicon((r.text for r in read_reviews(reviews, fmt)), size=top)  # type: ignore[arg-type]
    except DataInputError as exc:
        _fail(str(exc))
        return
    seconds = time.perf_counter() - started
    console.print(
        f"{len(auto)} features in {seconds:.1f} s; first 40: " + ", ".join(auto.features[:40])
    )
    if out is not None:
        auto.save(out)
        console.print(f"wrote {out}")
    if reference is not None:
        cmp = compare(auto, Lexicon.load(reference), top=top)
        console.print(
            f"vs {reference}: top-{top} overlap {cmp['overlap']}, "
            f"precision {cmp['precision']:.3f}, recall {cmp['recall']:.3f}"
        )


@app.command("guard-study")
def guard_study(
    data: Annotated[Path, typer.Option(help="Prepared-data directory")],
    index: Annotated[Path | None, typer.Option(help="Its item index")] = None,
    split: Annotated[str, typer.Option(help="Records whose items and sentences are used")] = "test",
    limit: Annotated[int | None, typer.Option(min=1, help="First N records only")] = None,
    foreign: Annotated[
        Path | None,
        typer.Option(help="Another domain's lexicon, for the 'other domain' sentences"),
    ] = None,
    tolerance: Annotated[
        str, typer.Option(help="Comma-separated unsupported-noun tolerances to measure")
    ] = "0,1,2",
    out: Annotated[Path | None, typer.Option(help="Write the results here (JSON)")] = None,
) -> None:
    """False rejections on the items' own sentences; catches of another item's or another
    domain's features: the lexicon-only guard beside the noun-level guard."""
    import json
    import time

    from recx_worker.features import Lexicon
    from training.data.guard_study import guard_study as run

    started = time.perf_counter()
    try:
        tolerances = [int(t) for t in tolerance.split(",") if t.strip()]
        result = run(
            data,
            index,
            split,
            limit,
            Lexicon.load(foreign) if foreign else None,
            tolerances,
        )
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
        return
    result["seconds"] = round(time.perf_counter() - started, 1)
    table = Table(title=f"guard study: {data} ({split}; sets {result['sets']})")
    table.add_column("guard")
    for name in result["sets"]:
        if result["sets"][name]:
            table.add_column(f"rejected: {name}", justify="right")
    for guard_name, rows in result["results"].items():
        table.add_row(
            guard_name, *(f"{r['rate']:.1%} ({r['rejected']}/{r['n']})" for r in rows.values())
        )
    console.print(table)
    for guard_name, rows in result["results"].items():
        for set_name, row in rows.items():
            console.print(f"{guard_name} / {set_name}: {row['reasons']}", soft_wrap=True)
    if out is not None:
        out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        console.print(f"wrote {out}")


@app.command()
def subset(
    reviews: Annotated[Path, typer.Option(help="Reviews file")],
    keywords: Annotated[str, typer.Option(help="Comma-separated words naming the category")],
    out: Annotated[Path, typer.Option(help="Output reviews file (.gz to compress)")],
    share: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Least share of an item's reviews using one")
    ] = 0.6,
    invert: Annotated[bool, typer.Option(help="Write the other items instead")] = False,
) -> None:
    """Write the reviews of one category of items (those whose reviews keep naming KEYWORDS):
    a new domain cut out of an uncategorised review file."""
    from training.data.readers import DataInputError
    from training.data.subset import select_items, write_subset

    try:
        items = select_items(reviews, keywords.split(","), share)
    except DataInputError as exc:
        _fail(str(exc))
        return
    if not items:
        _fail(f"no item has {share:.0%} of its reviews naming {keywords}")
    lines = write_subset(reviews, items, out, invert=invert)
    what = "the other items (--invert)" if invert else "them"
    console.print(
        f"{len(items)} items name the keywords; wrote {lines:,} reviews of {what} to {out}"
    )
