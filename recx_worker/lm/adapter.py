"""LoRA adapter directories: manifest, loading, merging into the base for inference."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from recx_worker.lm.device import DeviceChoice, select_device
from recx_worker.lm.loading import ResolvedBase, load_causal_lm, resolve_base, sha256_file

MANIFEST = "manifest.json"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", MANIFEST)


class AdapterError(RuntimeError):
    """The adapter directory is missing, incomplete or does not fit the base model."""


def read_manifest(adapter_dir: Path) -> dict[str, Any]:
    """The adapter's manifest; raises ``AdapterError`` with what is missing."""
    adapter_dir = Path(adapter_dir)
    if not adapter_dir.is_dir():
        raise AdapterError(
            f"adapter directory {adapter_dir} does not exist; train one with `recx train lora` "
            "or set paths.adapter_dir"
        )
    missing = [name for name in ADAPTER_FILES if not (adapter_dir / name).exists()]
    if missing:
        raise AdapterError(f"adapter directory {adapter_dir} lacks {', '.join(missing)}")
    try:
        manifest = json.loads((adapter_dir / MANIFEST).read_text(encoding="utf-8"))
    except ValueError as exc:
        raise AdapterError(f"{adapter_dir / MANIFEST} is not valid JSON: {exc}") from exc
    for key in ("version", "base_model"):
        if key not in manifest:
            raise AdapterError(f"{adapter_dir / MANIFEST} lacks {key!r}")
    return manifest


#: Explainer options an adapter's manifest may recommend under ``"decoding"`` (how the adapter
#: was meant to be decoded, e.g. greedily for a distilled student).
DECODING_OPTIONS = (
    "num_beams",
    "candidates",
    "length_penalty",
    "max_new_tokens",
    "min_new_tokens",
    "repetition_penalty",
    "top_p",
    "top_k",
    "temperature",
)


def manifest_decoding(adapter_dir: Path) -> dict[str, Any]:
    """The decoding options the adapter's manifest recommends (``{}`` when it has none or the
    manifest cannot be read: ``read_manifest`` reports that when the adapter loads)."""
    try:
        manifest = json.loads((Path(adapter_dir) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    decoding = manifest.get("decoding") if isinstance(manifest, dict) else None
    if not isinstance(decoding, dict):
        return {}
    return {k: v for k, v in decoding.items() if k in DECODING_OPTIONS}


def distilled_from(adapter_dir: Path) -> str | None:
    """The adapter ``adapter_dir`` was distilled from: its manifest names training targets and
    the adapter it started from. None when it is no student or its manifest cannot be read."""
    try:
        manifest = read_manifest(adapter_dir)
    except AdapterError:
        return None
    if not manifest.get("hyperparameters", {}).get("targets"):
        return None
    return manifest.get("parent_adapter", {}).get("path")


def adapter_checksum(adapter_dir: Path) -> str:
    """sha256 over the adapter's config and weights (what a merged model depends on)."""
    digest = hashlib.sha256()
    for name in ADAPTER_FILES[:2]:
        digest.update(name.encode())
        digest.update(sha256_file(Path(adapter_dir) / name).encode())
    return f"sha256:{digest.hexdigest()}"


def check_base(adapter_dir: Path, manifest: dict[str, Any], resolved: ResolvedBase) -> None:
    """Raise ``AdapterError`` when the adapter was trained on another base than ``resolved``."""
    expected = manifest["base_model"].get("checksum")
    if expected and expected != resolved.checksum:
        raise AdapterError(
            f"adapter {adapter_dir} was trained on base {expected}, but the base loaded is "
            f"{resolved.checksum}"
        )


def adapter_identity(
    adapter_dir: Path, *, base: str | None = None, cache_dir: Path | None = None
) -> tuple[ResolvedBase, dict[str, Any], str]:
    """Without loading weights: the base the adapter applies to (checked), its manifest and
    its checksum (``base`` overrides the manifest's base name)."""
    from recx_worker.config import CACHE_HOME

    manifest = read_manifest(adapter_dir)
    resolved = resolve_base(
        base or manifest["base_model"]["name"], cache_dir or CACHE_HOME / "models"
    )
    check_base(adapter_dir, manifest, resolved)
    return resolved, manifest, adapter_checksum(adapter_dir)


def load_merged(
    adapter_dir: Path,
    *,
    base: str | None = None,
    cache_dir: Path | None = None,
    device: DeviceChoice | None = None,
) -> tuple[Any, Any, ResolvedBase, dict[str, Any]]:
    """Base model + adapter merged into plain weights: ``(model, tokenizer, base, manifest)``."""
    from peft import PeftModel

    manifest = read_manifest(adapter_dir)
    device = device or select_device()
    model, tokenizer, resolved = load_causal_lm(
        base or manifest["base_model"]["name"], cache_dir=cache_dir, device=device
    )
    check_base(adapter_dir, manifest, resolved)
    peft_model = PeftModel.from_pretrained(model, str(adapter_dir))
    merged = peft_model.merge_and_unload()
    merged.to(device.device, dtype=device.dtype)
    merged.eval()
    return merged, tokenizer, resolved, manifest
