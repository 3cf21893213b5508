"""``recx bench generate``: batched generation vs one ``generate()`` call per request.

For each language-model explainer, the same model and the same prompts (built by the
explainer from test-split requests) are generated once per configuration: the naive baseline
(``Generator.generate_one_by_one``) and ``Generator.generate`` at each batch size. A request's
latency is the wall time of the call that produced it (every request of a batch waits for the
whole batch). Tokens are the generated texts' token counts. Peak memory is the process RSS
(sampled every 5 ms) on CPU, and ``torch.cuda.max_memory_allocated`` on CUDA.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recx_worker.devtools.benchio import percentile

CPU_BATCH_SIZES = [1, 8, 32]
GPU_BATCH_SIZES = [1, 8, 32, 64, 128]


class BenchInputError(ValueError):
    """Bad input to ``recx bench generate`` (reported as a message)."""


@dataclass(slots=True)
class Subject:
    """What is benchmarked: an explainer's generator and the prompts it would send."""

    name: str
    generator: Any
    prompts: list[str]
    model: str


class PeakMemory:
    """Peak memory during a ``with`` block: CUDA max allocated, else sampled process RSS (MiB)."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            import psutil

            process = psutil.Process()
            self.peak_mib = process.memory_info().rss / 2**20

            def sample() -> None:
                while not self._stop.wait(0.005):
                    self.peak_mib = max(self.peak_mib, process.memory_info().rss / 2**20)

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            self.peak_mib = torch.cuda.max_memory_allocated() / 2**20
        else:
            self._stop.set()
            assert self._thread is not None
            self._thread.join()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _count_tokens(tokenizer: Any, texts: list[str]) -> int:
    if not texts:
        return 0
    return sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])


def measure(
    subject: Subject, calls: list[list[int]], run: Callable[[list[str]], list[str]], device: str
) -> dict[str, Any]:
    """Time ``run`` over ``calls`` (lists of prompt indices); one latency per request."""
    latencies: list[float] = []
    outputs: list[str] = []
    with PeakMemory(device) as memory:
        started = time.perf_counter()
        for call in calls:
            t0 = time.perf_counter()
            got = run([subject.prompts[i] for i in call])
            _sync(device)
            latencies += [time.perf_counter() - t0] * len(call)
            outputs += got
        seconds = time.perf_counter() - started
    tokens = _count_tokens(subject.generator.tokenizer, outputs)
    n = len(outputs)
    return {
        "n": n,
        "seconds": round(seconds, 3),
        "expl_per_s": n / seconds,
        "tokens_per_s": tokens / seconds,
        "tokens_per_expl": tokens / n if n else 0.0,
        "p50_ms": 1000 * percentile(latencies, 50),
        "p99_ms": 1000 * percentile(latencies, 99),
        "peak_mem_mib": memory.peak_mib,
    }


def _progress(row: dict[str, Any]) -> None:
    """One line per finished configuration on stderr (long CPU runs show partial results)."""
    print(
        f"{row['explainer']} {row['mode']} batch={row['batch']}: {row['expl_per_s']:.3f} expl/s, "
        f"p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms",
        file=sys.stderr,
        flush=True,
    )


def bench_subject(
    subject: Subject, batch_sizes: list[int], naive: bool, device: str
) -> list[dict[str, Any]]:
    """Rows for one subject: naive first, then each batch size, with speed-ups vs naive."""
    gen = subject.generator
    n = len(subject.prompts)
    gen.generate(subject.prompts[: min(2, n)], batch_size=2)  # warm-up (kernels, caches)
    lengths = [
        len(ids) for ids in gen.tokenizer(subject.prompts, add_special_tokens=False)["input_ids"]
    ]
    order = sorted(range(n), key=lambda i: lengths[i])  # what Generator.generate does too
    rows: list[dict[str, Any]] = []
    if naive:
        row = measure(subject, [[i] for i in range(n)], gen.generate_one_by_one, device)
        rows.append({"explainer": subject.name, "mode": "naive generate()", "batch": 1} | row)
        _progress(rows[-1])
    for size in batch_sizes:
        calls = [order[s : s + size] for s in range(0, n, size)]

        def batched(prompts: list[str], size: int = size) -> list[str]:
            return gen.generate(prompts, batch_size=size)

        row = measure(subject, calls, batched, device)
        rows.append({"explainer": subject.name, "mode": "batched", "batch": size} | row)
        _progress(rows[-1])
    if naive:
        base = rows[0]["expl_per_s"]
        for row in rows:
            row["speedup"] = row["expl_per_s"] / base
    return rows


def lm_subject(explainer: Any, requests: list[Any]) -> Subject:
    """The generator and prompts of a warmed-up LM explainer (see ``lm.explainers``)."""
    generator = getattr(explainer, "generator", None)
    render = getattr(explainer, "render_prompts", None)
    if generator is None or not callable(render):
        raise BenchInputError(
            f"explainer {explainer.name!r} is not a language-model explainer "
            "(it has no generator and render_prompts)"
        )
    model = getattr(explainer, "model_name", None) or type(generator.model).__name__
    if getattr(explainer, "adapter_version", None):
        model = f"{model} + adapter {explainer.adapter_version}"
    return Subject(explainer.name, generator, list(render(requests)), str(model))


def run_generate_bench(
    data_dir: Path,
    names: list[str],
    *,
    n: int,
    batch_sizes: list[int] | None,
    naive: bool,
    out: Path,
    index_dir: Path | None = None,
    config: Path | None = None,
) -> dict[str, Any]:
    """Benchmark each LM explainer in ``names`` on ``n`` test requests; print + write JSON."""
    from recx_worker.config import load_settings
    from recx_worker.devtools.benchio import report
    from recx_worker.enrich import enrich
    from recx_worker.explainer import ExplainerContext, ExplainRequest
    from recx_worker.plugins import UnknownExplainerError, create_explainer
    from recx_worker.prepared import PreparedData
    from recx_worker.retrieval.evidence import EvidenceStore
    from training.evaluation.runner import record_event

    try:
        records = PreparedData(data_dir).split("test")[:n]
    except FileNotFoundError as exc:
        raise BenchInputError(str(exc)) from None
    settings = load_settings(config)
    settings.paths.data_dir = data_dir
    store = EvidenceStore.open(data_dir, index_dir)
    requests = [
        r
        for r in enrich([record_event(r) for r in records], store, settings.chain.max_words)
        if isinstance(r, ExplainRequest)
    ]
    rows: list[dict[str, Any]] = []
    meta: dict[str, Any] = {"requests": len(requests), "explainers": {}}
    for name in names:
        try:
            context = ExplainerContext.from_settings(settings, store)
            explainer = create_explainer(name, context, **settings.chain.options.get(name, {}))
            explainer.warm_up()
        except UnknownExplainerError as exc:
            raise BenchInputError(str(exc)) from None
        except Exception as exc:
            raise BenchInputError(f"explainer {name!r} cannot start: {exc}") from None
        try:
            subject = lm_subject(explainer, requests)
            device = str(subject.generator.device)
            sizes = batch_sizes or (
                GPU_BATCH_SIZES if device.startswith("cuda") else CPU_BATCH_SIZES
            )
            meta["explainers"][name] = {
                "model": subject.model,
                "device": device,
                "dtype": str(next(subject.generator.model.parameters()).dtype),
                "generation": subject.generator.config.as_dict(),
            }
            rows += bench_subject(subject, sizes, naive, device)
        finally:
            explainer.close()
    return report("generate", rows, out=out, **meta)
