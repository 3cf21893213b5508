"""``recx index build|query`` and ``recx bench index``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True)
console = Console()

DATA_HELP = "Prepared-data directory (default: paths.data_dir)"
INDEX_HELP = "Index directory (default: paths.index_dir)"


def _paths(data: Path | None, index: Path | None) -> tuple[Path, Path]:
    """The given directories, else the configured ones (RECX_PATHS__* / TOML)."""
    from recx_worker.config import load_settings

    paths = load_settings().paths
    return data or paths.data_dir, index or paths.index_dir


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}", soft_wrap=True)
    raise typer.Exit(2)


@app.command()
def build(
    data: Annotated[Path | None, typer.Option(help=DATA_HELP)] = None,
    out: Annotated[Path | None, typer.Option(help=INDEX_HELP)] = None,
    index_type: Annotated[
        str, typer.Option("--type", help="auto | flat | ivf | hnsw (auto: by catalog size)")
    ] = "auto",
    progress: Annotated[bool, typer.Option(help="Show a progress bar")] = True,
) -> None:
    """Embed item profiles (all-MiniLM-L6-v2) and build the FAISS index."""
    from recx_worker.prepared import PreparedData
    from recx_worker.retrieval.embedder import default_embedder
    from recx_worker.retrieval.index import build_item_index

    if index_type not in ("auto", "flat", "ivf", "hnsw"):
        _fail(f"--type must be auto, flat, ivf or hnsw, not {index_type!r}")
    data, out = _paths(data, out)
    try:
        prepared = PreparedData(data)
        index = build_item_index(prepared, default_embedder(), index_type, progress=progress)  # type: ignore[arg-type]
    except (FileNotFoundError, RuntimeError) as exc:
        _fail(str(exc))
        return
    index.save(out)
    m = index.manifest
    console.print(
        f"indexed {m['count']} items ({m['embedder']}, dim {m['dim']}, {m['index_type']}) "
        f"in {m['build_seconds']} s -> {out}"
    )


@app.command()
def query(
    item: Annotated[str, typer.Option(help="Item id")],
    k: Annotated[int, typer.Option(help="Number of neighbours")] = 5,
    data: Annotated[Path | None, typer.Option(help=DATA_HELP)] = None,
    index: Annotated[Path | None, typer.Option(help=INDEX_HELP)] = None,
) -> None:
    """Print the nearest items to ``--item`` with their similarity and top features."""
    data, index = _paths(data, index)
    from recx_worker.prepared import PreparedData
    from recx_worker.retrieval.evidence import EvidenceStore, UnknownItemError
    from recx_worker.retrieval.index import IndexError_, ItemIndex

    try:
        loaded = ItemIndex.load(index)
        profiles = PreparedData(data).item_profiles
        neighbours = EvidenceStore.index_neighbours(loaded, item, k)
    except (FileNotFoundError, IndexError_, UnknownItemError) as exc:
        _fail(str(exc))
        return
    own = profiles.get(item)
    if own is not None:
        console.print(f"{item}: {', '.join(own.feature_names(6))}")
    table = Table(title=f"{k} nearest items to {item}")
    table.add_column("item")
    table.add_column("similarity", justify="right")
    table.add_column("top features")
    for other, sim in neighbours:
        profile = profiles.get(other)
        table.add_row(other, f"{sim:.3f}", ", ".join(profile.feature_names(6)) if profile else "")
    console.print(table)


def register_bench(bench_app: typer.Typer) -> None:
    """Add ``recx bench index``."""

    @bench_app.command("index")
    def bench_index(
        n: Annotated[int, typer.Option(help="Number of vectors")] = 1_000_000,
        dim: Annotated[int, typer.Option(help="Dimension")] = 384,
        index_type: Annotated[str, typer.Option("--type", help="ivf | hnsw | flat")] = "ivf",
        queries: Annotated[int, typer.Option(help="Queries (recall sample)")] = 1000,
        k: Annotated[int, typer.Option(help="Neighbours per query")] = 10,
        nprobe: Annotated[int | None, typer.Option(help="IVF lists probed")] = None,
        threads: Annotated[int | None, typer.Option(help="FAISS threads")] = None,
        noise: Annotated[float, typer.Option(help="Cluster spread (higher = harder)")] = 1.0,
        seed: Annotated[int, typer.Option(help="Random seed")] = 42,
        out: Annotated[Path | None, typer.Option(help="Write the JSON report here")] = Path(
            "reports/bench/index.json"
        ),
    ) -> None:
        """Build + query an n x dim synthetic index: build time, memory, queries/s, recall@k."""
        from recx_worker.devtools.bench_index import run_bench
        from recx_worker.devtools.benchio import report

        if index_type not in ("ivf", "hnsw", "flat"):
            _fail(f"--type must be ivf, hnsw or flat, not {index_type!r}")
        if n < 1000 or queries < 1 or k < 1:
            _fail("need --n >= 1000, --queries >= 1 and --k >= 1")
        need_gb = (n + queries) * dim * 4 * 2.2 / 2**30
        console.print(f"~{need_gb:.1f} GB of memory needed")
        rows, meta = run_bench(n, dim, index_type, queries, k, nprobe, threads, seed, noise)
        report("index", rows, out=out, **meta)

    @bench_app.command("evidence")
    def bench_evidence(
        data: Annotated[Path | None, typer.Option(help=DATA_HELP)] = None,
        index: Annotated[Path | None, typer.Option(help=INDEX_HELP)] = None,
        calls: Annotated[int, typer.Option(help="Number of evidence calls")] = 20_000,
        k: Annotated[int, typer.Option(help="Supporting items per call")] = 3,
        out: Annotated[Path | None, typer.Option(help="Write the JSON report here")] = Path(
            "reports/bench/evidence.json"
        ),
    ) -> None:
        """Evidence API calls/s and latency (single thread) over the test split's pairs."""
        from recx_worker.devtools.bench_index import run_evidence_bench
        from recx_worker.devtools.benchio import report
        from recx_worker.retrieval.evidence import EvidenceStore
        from recx_worker.retrieval.index import IndexError_

        data, index = _paths(data, index)
        try:
            store = EvidenceStore.open(data, index)
        except (FileNotFoundError, IndexError_, ValueError) as exc:
            _fail(str(exc))
            return
        rows, meta = run_evidence_bench(store, calls, k)
        report("evidence", rows, out=out, **meta)
