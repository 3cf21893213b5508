"""Which generation engine an LM explainer uses, and building the CTranslate2 one.

``torch`` (transformers ``generate``) is the reference, used for training and on GPUs;
``ct2`` (CTranslate2, ``recx_worker.lm.ct2``) is made for inference on CPU: int8 weights,
several times the throughput (``recx bench generate``, docs/engine.md). ``auto`` picks
(``resolve_engine``) on CPUs with bf16 matrix units (AMX), for one row per prompt (greedy or
one sampled candidate), ct2 for small calls and torch in bfloat16 for large ones
(``SplitGenerator``); ct2 on other CPUs when ``ctranslate2`` is installed; torch otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from recx_worker.lm.ct2 import (
    DEFAULT_QUANTIZATION,
    Ct2Generator,
    EngineError,
    ct2_available,
    ensure_ct2_model,
)
from recx_worker.lm.device import DeviceChoice, cpu_has_bf16_matrix_units, cpu_threads
from recx_worker.lm.generation import GenerationConfig
from recx_worker.lm.grounding import Sequences

ENGINES = ("auto", "torch", "ct2")
#: ``auto``'s pairing on CPUs with bf16 matrix units: ct2 for small calls, torch bf16 for large
SPLIT = "ct2+torch"
#: Prompts per call from which the split engine hands a call to torch in bfloat16: below it
#: CTranslate2 was as fast or faster (distilled adapter, greedy, idle 2-vCPU AMX machine:
#: 6.4 vs 2.5 explanations/s at batch 1, 9.8 vs 9.4 at 8, 10.3 vs 16.9 at 32; docs/engine.md).
SPLIT_MIN_BATCH = 16


def resolve_engine(
    engine: str,
    device: DeviceChoice,
    *,
    dtype: str = "auto",
    rows_per_prompt: int = 1,
    allow_bf16: bool = True,
    bf16_matrix: bool | None = None,
) -> tuple[str, DeviceChoice]:
    """The engine (``"torch"``, ``"ct2"`` or ``SPLIT``) and device for the requested ``engine``.

    ``auto`` on a CPU picks what measured faster there (``recx bench generate``,
    docs/engine.md): ``SPLIT`` (ct2 for calls of fewer than ``SPLIT_MIN_BATCH`` prompts, torch
    in bfloat16 for larger ones; torch alone without ``ctranslate2``) on a CPU with bf16 matrix
    units (``bf16_matrix``; default: detected) for decoding with one row per prompt (greedy or
    one sampled candidate; beams ran faster on ct2), ``dtype`` left to ``auto`` and an
    explainer that allows it (``allow_bf16``: its ``cpu_bf16``); torch when ``dtype`` asks for
    bfloat16 (only torch has it on a CPU); otherwise ct2 when ``ctranslate2`` is installed,
    else torch.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    if engine == "auto":
        if device.device != "cpu":
            return "torch", device
        bf16 = DeviceChoice(device.device, "bfloat16")
        if dtype == "bfloat16":
            return "torch", bf16
        greedy_bf16_ok = allow_bf16 and rows_per_prompt == 1 and dtype == "auto"
        if greedy_bf16_ok and (
            bf16_matrix if bf16_matrix is not None else cpu_has_bf16_matrix_units()
        ):
            return (SPLIT if ct2_available() else "torch"), bf16
        return ("ct2" if ct2_available() else "torch"), device
    if engine == "ct2" and not ct2_available():
        raise EngineError("engine 'ct2' needs the ctranslate2 package (pip install ctranslate2)")
    return engine, device


class SplitGenerator:
    """``Generator``'s interface over two engines: batches of at least ``min_batch`` prompts
    go to ``large`` (torch in bfloat16), smaller ones to ``small`` (ct2); a call is cut into
    batches of ``batch_size``, so a long call's short last batch goes to ``small``. Both share one
    ``GenerationConfig`` and the same tokenizer vocabulary, so bans and outputs mean the same;
    the two engines' outputs may differ in near-ties (int8 against bfloat16 rounding)."""

    engine = SPLIT

    def __init__(self, small: Any, large: Any, min_batch: int = SPLIT_MIN_BATCH) -> None:
        self.small, self.large, self.min_batch = small, large, min_batch
        self.tokenizer = small.tokenizer
        self.config = small.config
        self.parameters = small.parameters
        self.device = small.device

    @property
    def engines(self) -> tuple[Any, Any]:
        return self.small, self.large

    def describe(self) -> str:
        return (
            f"{self.small.describe()} below {self.min_batch} prompts, "
            f"torch {self.large.describe()} from {self.min_batch}"
        )

    def _cut(self, count: int, batch_size: int) -> int:
        """How many leading prompts of a call go to ``large``: the whole batches of
        ``batch_size`` when those are at least ``min_batch`` long, the short remainder (or a
        call of small batches) to ``small``."""
        size = max(1, batch_size)
        if min(count, size) < self.min_batch:
            return 0
        rest = count % size
        return count if rest == 0 or rest >= self.min_batch else count - rest

    def _route(
        self,
        method: str,
        prompts: Sequence[str],
        batch_size: int,
        bans: Sequence[Sequences] | None,
        minimums: Sequence[int] | None,
    ) -> list[Any]:
        cut = self._cut(len(prompts), batch_size)
        out: list[Any] = []
        for engine, part in ((self.large, slice(0, cut)), (self.small, slice(cut, None))):
            if prompts[part]:
                part_bans = bans[part] if bans is not None else None
                part_minimums = minimums[part] if minimums is not None else None
                out += getattr(engine, method)(prompts[part], batch_size, part_bans, part_minimums)
        return out

    def generate(
        self,
        prompts: Sequence[str],
        batch_size: int = 32,
        bans: Sequence[Sequences] | None = None,
        minimums: Sequence[int] | None = None,
    ) -> list[str]:
        return self._route("generate", prompts, batch_size, bans, minimums)

    def generate_candidates(
        self,
        prompts: Sequence[str],
        batch_size: int = 32,
        bans: Sequence[Sequences] | None = None,
        minimums: Sequence[int] | None = None,
    ) -> list[list[str]]:
        return self._route("generate_candidates", prompts, batch_size, bans, minimums)

    def generate_one_by_one(
        self, prompts: Sequence[str], bans: Sequence[Sequences] | None = None
    ) -> list[str]:
        return self.small.generate_one_by_one(prompts, bans)


def ct2_device(device: DeviceChoice) -> tuple[str, int, str]:
    """CTranslate2 ``(device, device_index, compute_type)`` for ``device`` (int8 on CPU,
    int8 weights with float16/bfloat16 activations on CUDA)."""
    if not device.device.startswith("cuda"):
        return "cpu", 0, "int8"
    import ctranslate2

    if ctranslate2.get_cuda_device_count() == 0:
        raise EngineError("this ctranslate2 build sees no CUDA device; use engine = 'torch'")
    index = int(device.device.split(":", 1)[1]) if ":" in device.device else 0
    half = "bfloat16" if device.dtype_name == "bfloat16" else "float16"
    return "cuda", index, f"int8_{half}"


def load_ct2_generator(
    name: str,
    key: dict[str, Any],
    load: Callable[[], tuple[Any, Any]],
    *,
    device: DeviceChoice,
    config: GenerationConfig,
    cache_dir: Path | None = None,
    threads: int | None = None,
    quantization: str = DEFAULT_QUANTIZATION,
) -> Ct2Generator:
    """The CTranslate2 generator for the weights ``key`` names, converting them on first use
    (``load()`` returns the float32 CPU ``(model, tokenizer)`` to convert)."""
    from recx_worker.config import CACHE_HOME
    from recx_worker.lm.loading import load_tokenizer

    folder = ensure_ct2_model(cache_dir or CACHE_HOME / "models", name, key, load, quantization)
    where, index, compute_type = ct2_device(device)
    if where == "cpu" and quantization != "int8":
        compute_type = "default"
    return Ct2Generator(
        folder,
        load_tokenizer(str(folder)),
        config,
        device=where,
        device_index=index,
        threads=threads or cpu_threads(),
        compute_type=compute_type,
    )
