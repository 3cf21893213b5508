"""One output style for every ``recx bench``: a table on the terminal and a JSON file, and the
one ``percentile`` every benchmark and the demo report latencies with."""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, linearly interpolated between the two
    nearest ranks (numpy's default); NaN for no values."""
    import numpy as np

    return float(np.percentile(values, q)) if len(values) else float("nan")


def hardware() -> dict[str, Any]:
    import os

    info: dict[str, Any] = {"cpu_count": os.cpu_count(), "machine": platform.machine()}
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def report(
    name: str,
    rows: list[dict[str, Any]],
    out: Path | None = None,
    *,
    title: str | None = None,
    **meta: Any,
) -> dict[str, Any]:
    """Print ``rows`` as a table titled ``title`` (default ``recx bench NAME``); write them
    (plus ``meta``) as JSON to ``out``."""
    table = Table(title=title or f"recx bench {name}")
    columns = list(dict.fromkeys(k for row in rows for k in row))
    for col in columns:
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(*(_fmt(row.get(c)) for c in columns))
    Console().print(table)
    doc = {"benchmark": name, "hardware": hardware(), **meta, "rows": rows}
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
        Console().print(f"wrote {out}")
    return doc


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1e6 else f"{value:,.0f}"
    return str(value)
