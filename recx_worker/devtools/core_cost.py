"""CPU per event of the worker's pipeline without Kafka, with the core on this thread or in core
processes (``worker.core_processes``): the bench events through ``Pipeline.submit`` in
micro-batches, ``--in-flight`` of them submitted ahead (3, as in the worker); CPU of this
process and of its core processes.

```bash
PYTHONPATH=$PWD python -m recx_worker.devtools.core_cost --core-processes 1 --events 20000
```
The first repeat is cold (text caches empty), the later ones warm (the same events again).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated

import typer

from recx_worker.devtools.bench_worker import _events_from_data, _stat


def main(
    core_processes: Annotated[int, typer.Option(min=0, help="worker.core_processes")] = 0,
    events: Annotated[int, typer.Option(min=64, help="Bench events per repeat")] = 3000,
    repeats: Annotated[int, typer.Option(min=1, help="Passes over the same events")] = 3,
    max_batch: Annotated[int, typer.Option(min=1, help="Events per micro-batch")] = 64,
    in_flight: Annotated[
        int, typer.Option(min=1, help="Batches submitted ahead (the worker: up to 3)")
    ] = 3,
    data: Annotated[Path, typer.Option(help="Prepared data")] = Path("var/data/musical"),
    index: Annotated[Path, typer.Option(help="Item index")] = Path("var/index/musical"),
) -> None:
    """Prints one JSON line per repeat: wall and CPU microseconds per event (this process,
    the core processes)."""
    import gc

    from recx_worker.config import Settings
    from recx_worker.metrics import WorkerMetrics
    from recx_worker.worker.core_process import CoreProcess
    from recx_worker.worker.pipeline import Pipeline
    from recx_worker.worker.records import InRecord

    settings = Settings(
        paths={"data_dir": data, "index_dir": index},
        chain={"explainers": ["template"]},
        worker={"core_processes": core_processes, "log_level": "WARNING"},
    )
    payloads = _events_from_data(data, events)
    records = [
        InRecord("in", 0, i, b"k", json.dumps(p).encode(), None, []) for i, p in enumerate(payloads)
    ]
    batches = [records[i : i + max_batch] for i in range(0, len(records), max_batch)]
    pipeline = Pipeline.from_settings(settings, WorkerMetrics())
    pipeline.warm_up()
    gc.collect()
    gc.freeze()  # as the worker does after warm-up
    pids = pipeline.core.pids() if isinstance(pipeline.core, CoreProcess) else []

    def children_cpu() -> float:
        ticks = sum(int(f[11]) + int(f[12]) for f in (_stat(pid) for pid in pids))
        return ticks / os.sysconf("SC_CLK_TCK")

    try:
        for repeat in range(repeats):
            own, kids, t0 = time.process_time(), children_cpu(), time.perf_counter()
            pending = [pipeline.submit(b) for b in batches[:in_flight]]
            done = 0
            for i in range(len(batches)):
                done += len(pending.pop(0).result())
                if i + in_flight < len(batches):
                    pending.append(pipeline.submit(batches[i + in_flight]))
            wall = time.perf_counter() - t0
            row = {
                "core_processes": core_processes,
                "in_flight": in_flight,
                "repeat": repeat,
                "events": done,
                "wall_us_per_event": round(wall / done * 1e6, 1),
                "cpu_us_per_event_worker": round((time.process_time() - own) / done * 1e6, 1),
                "cpu_us_per_event_core_processes": round((children_cpu() - kids) / done * 1e6, 1),
            }
            typer.echo(json.dumps(row))
    finally:
        pipeline.close()


if __name__ == "__main__":
    typer.run(main)
