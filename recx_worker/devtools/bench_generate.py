"""``recx bench generate``: the generation engines side by side, batched vs one at a time.

For each language-model explainer and each engine (``torch``, the reference, and ``ct2``,
CTranslate2 int8: ``recx_worker.lm.engine``), the same prompts and grounded-decoding bans
(built by the explainer from test-split requests) are generated once per configuration: the
naive baseline (``generate_one_by_one``) and ``generate`` at each batch size, on ``threads``
CPU threads. A request's latency is the wall time of the call that produced it (every request
of a batch waits for the whole batch). Tokens are the generated texts' token counts.

Arithmetic: each row's GFLOP/s is an estimate, 2 x weights x tokens processed (prompt tokens
once, generated tokens once per beam, the output head only for generated tokens; attention
over the context left out), set against the machine's float32 matmul GFLOP/s measured at the
start of the same command (``matmul_gflops``; the bfloat16 rate is reported beside it, the
ceiling of the ``torch-bf16`` variant). Peak memory is the process RSS (sampled every
5 ms) on CPU, and ``torch.cuda.max_memory_allocated`` on CUDA; ``vs_torch`` is the row's
explanations/s over the torch engine's at the same batch size, in the same run.
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
GPU_BATCH_SIZES = [1, 8, 32, 64, 128, 256]
ENGINES = ["torch", "ct2"]
# Bench-only variants: an engine run with other explainer options and generator settings.
# ``ct2-mixed`` batches prompts of any length together (CTranslate2 then forwards the rest of
# the longer prompts token by token: the batching before one-length batches, kept to show the
# difference); ``torch-bf16`` is torch in bfloat16 (what ``auto`` picks for greedy decoding
# on a CPU with bf16 matrix units). ``auto`` benches whatever the explainer resolves to.
ENGINE_VARIANTS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "ct2-mixed": ("ct2", {}, {"max_spread": None}),
    "torch-bf16": ("torch", {"dtype": "bfloat16"}, {}),
}


class BenchInputError(ValueError):
    """Bad input to ``recx bench generate`` (reported as a message)."""


@dataclass(slots=True)
class Subject:
    """What is benchmarked: an explainer's generator and the prompts it would send."""

    name: str
    generator: Any
    prompts: list[str]
    model: str
    bans: list[Any] | None = None
    engine: str | None = None  # the requested engine or variant name (default: the generator's)

    @property
    def label(self) -> str:
        return f"{self.name}/{self.engine or self.generator.engine}"

    def prompt_tokens(self) -> dict[str, float]:
        """Tokens per prompt: mean, p50, max."""
        lengths = [
            len(ids)
            for ids in self.generator.tokenizer(self.prompts, add_special_tokens=False)["input_ids"]
        ]
        return {
            "mean": sum(lengths) / len(lengths) if lengths else 0.0,
            "p50": percentile(lengths, 50) if lengths else 0.0,
            "max": float(max(lengths, default=0)),
        }


def matmul_gflops(
    threads: int, size: int = 512, seconds: float = 1.0, dtype: str = "float32"
) -> float:
    """The machine's ``dtype`` matmul GFLOP/s on ``threads`` threads (torch, ``size``-square
    matrices, best of repeated runs over about ``seconds``)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a = torch.randn(size, size, dtype=getattr(torch, dtype))
        b = torch.randn(size, size, dtype=getattr(torch, dtype))
        best = 0.0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or best == 0.0:
            t0 = time.perf_counter()
            for _ in range(4):
                torch.mm(a, b)
            best = max(best, 4 * 2 * size**3 / (time.perf_counter() - t0) / 1e9)
        return best
    finally:
        torch.set_num_threads(previous)


def gflop_per_request(
    parameters: dict[str, int], prompt_tokens: float, new_tokens: float, rows: int
) -> float:
    """Estimated GFLOP for one request (see the module docstring)."""
    if not parameters:
        return 0.0
    decoded = new_tokens * rows
    return 2 * (parameters["body"] * (prompt_tokens + decoded) + parameters["head"] * decoded) / 1e9


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
    subject: Subject,
    calls: list[list[int]],
    run: Callable[[list[str], list[Any] | None], list[str]],
    device: str,
) -> dict[str, Any]:
    """Time ``run`` over ``calls`` (lists of prompt indices); one latency per request."""
    latencies: list[float] = []
    outputs: list[str] = []
    with PeakMemory(device) as memory:
        started = time.perf_counter()
        for call in calls:
            bans = [subject.bans[i] for i in call] if subject.bans is not None else None
            t0 = time.perf_counter()
            got = run([subject.prompts[i] for i in call], bans)
            _sync(device)
            latencies += [time.perf_counter() - t0] * len(call)
            outputs += got
        seconds = time.perf_counter() - started
    gen = subject.generator
    tokens = _count_tokens(gen.tokenizer, outputs)
    n = len(outputs)
    prompt_tokens = _count_tokens(gen.tokenizer, [subject.prompts[i] for c in calls for i in c])
    gflop = n * gflop_per_request(
        getattr(gen, "parameters", {}),
        prompt_tokens / n if n else 0.0,
        tokens / n if n else 0.0,
        gen.config.rows_per_prompt,
    )
    return {
        "n": n,
        "seconds": round(seconds, 3),
        "expl_per_s": n / seconds,
        "tokens_per_s": tokens / seconds,
        "tokens_per_expl": tokens / n if n else 0.0,
        "prompt_tokens": prompt_tokens / n if n else 0.0,
        "gflop_per_s": gflop / seconds,
        "p50_ms": 1000 * percentile(latencies, 50),
        "p99_ms": 1000 * percentile(latencies, 99),
        "peak_mem_mib": memory.peak_mib,
    }


def _progress(row: dict[str, Any]) -> None:
    """One line per finished configuration on stderr (long CPU runs show partial results)."""
    print(
        f"{row['explainer']}/{row['engine']} {row['mode']} batch={row['batch']}: "
        f"{row['expl_per_s']:.3f} expl/s, {row['gflop_per_s']:.1f} GFLOP/s, "
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
    head = {"explainer": subject.name, "engine": subject.engine or gen.engine}
    rows: list[dict[str, Any]] = []
    if naive:
        row = measure(subject, [[i] for i in range(n)], gen.generate_one_by_one, device)
        rows.append(head | {"mode": "naive generate()", "batch": 1} | row)
        _progress(rows[-1])
    for size in batch_sizes:
        calls = [order[s : s + size] for s in range(0, n, size)]

        def batched(prompts: list[str], bans: list[Any] | None, size: int = size) -> list[str]:
            return gen.generate(prompts, batch_size=size, bans=bans)

        row = measure(subject, calls, batched, device)
        rows.append(head | {"mode": "batched", "batch": size} | row)
        _progress(rows[-1])
    if naive:
        base = rows[0]["expl_per_s"]
        for row in rows:
            row["speedup"] = row["expl_per_s"] / base
    return rows


def compare_engines(rows: list[dict[str, Any]], matmul: float) -> None:
    """Add ``vs_torch`` (same explainer, mode and batch) and ``matmul_share`` to ``rows``."""
    torch_rows = {
        (r["explainer"], r["mode"], r["batch"]): r["expl_per_s"]
        for r in rows
        if r["engine"] == "torch"
    }
    for row in rows:
        reference = torch_rows.get((row["explainer"], row["mode"], row["batch"]))
        row["vs_torch"] = row["expl_per_s"] / reference if reference else None
        row["matmul_share"] = row["gflop_per_s"] / matmul if matmul else None


def lm_subject(explainer: Any, requests: list[Any], label: str | None = None) -> Subject:
    """The generator and prompts of a warmed-up LM explainer (see ``lm.explainers``), named
    ``label`` (default: the explainer's name)."""
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
    bans = explainer.bans(requests) if callable(getattr(explainer, "bans", None)) else None
    return Subject(label or explainer.name, generator, list(render(requests)), str(model), bans)


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
    engines: list[str] | None = None,
    threads: int = 2,
) -> dict[str, Any]:
    """Benchmark each LM explainer in ``names`` on each engine in ``engines`` on ``n`` test
    requests, ``threads`` CPU threads; print + write JSON."""
    import gc

    import torch

    from recx_worker.config import load_settings
    from recx_worker.devtools.benchio import report
    from recx_worker.enrich import enrich
    from recx_worker.explainer import ExplainerContext, ExplainRequest
    from recx_worker.lm.explainers import LMExplainer
    from recx_worker.plugins import (
        UnknownExplainerError,
        create_explainer,
        registered_explainers,
    )
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
    torch.set_num_threads(threads)
    matmul = matmul_gflops(threads)
    matmul_bf16 = matmul_gflops(threads, dtype="bfloat16")
    print(
        f"matmul calibration: {matmul:.1f} GFLOP/s float32, {matmul_bf16:.1f} bfloat16 "
        f"({threads} threads)",
        file=sys.stderr,
    )
    rows: list[dict[str, Any]] = []
    meta: dict[str, Any] = {
        "requests": len(requests),
        "threads": threads,
        "matmul_gflops": matmul,
        "matmul_gflops_bf16": matmul_bf16,
        "explainers": {},
    }
    registered = registered_explainers()
    for spec in names:
        # "LABEL=PLUGIN" benches PLUGIN with the options of [chain.options.LABEL], under LABEL
        # (e.g. "v2=lora" beside "lora": two adapters or decodings in one run)
        label, _, plugin = spec.partition("=")
        name = plugin or label
        if name not in registered:
            raise BenchInputError(f"unknown explainer {name!r}")
        if not issubclass(registered[name].cls, LMExplainer):
            raise BenchInputError(
                f"explainer {name!r} is not a language-model explainer (it has no engine)"
            )
        for engine in engines or ENGINES:
            real_engine, variant_options, generator_settings = ENGINE_VARIANTS.get(
                engine, (engine, {}, {})
            )
            options = settings.chain.options.get(label, {}) | variant_options
            options |= {"engine": real_engine, "threads": threads}
            try:
                context = ExplainerContext.from_settings(settings, store)
                explainer = create_explainer(name, context, **options)
                explainer.warm_up()
            except UnknownExplainerError as exc:
                raise BenchInputError(str(exc)) from None
            except Exception as exc:
                raise BenchInputError(
                    f"explainer {name!r} ({engine}) cannot start: {exc}"
                ) from None
            try:
                subject = lm_subject(explainer, requests, label)
                subject.engine = f"auto:{explainer.engine}" if engine == "auto" else engine
                for key, value in generator_settings.items():
                    setattr(subject.generator, key, value)
                device = str(subject.generator.device)
                tokens = subject.prompt_tokens()
                print(
                    f"{subject.label}: {len(subject.prompts)} prompts, tokens per prompt "
                    f"mean {tokens['mean']:.1f}, p50 {tokens['p50']:.0f}, max {tokens['max']:.0f}",
                    file=sys.stderr,
                )
                sizes = batch_sizes or (
                    GPU_BATCH_SIZES if device.startswith("cuda") else CPU_BATCH_SIZES
                )
                meta["explainers"][subject.label] = {
                    "model": subject.model,
                    "device": device,
                    "weights": subject.generator.describe(),
                    "generation": subject.generator.config.as_dict(),
                    "prompt_tokens": tokens,
                    "max_spread": getattr(subject.generator, "max_spread", None),
                }
                rows += bench_subject(subject, sizes, naive, device)
            finally:
                explainer.close()
                del explainer
                gc.collect()
    compare_engines(rows, matmul)
    return report("generate", rows, out=out, **meta)
