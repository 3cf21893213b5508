"""LoRA fine-tuning of a causal LM on (evidence context -> explanation) pairs.

Loss on the target tokens only; AdamW with warm-up and linear decay; validation loss every
``eval_every`` steps with early stopping; the best adapter is kept; a checkpoint (adapter,
optimizer, scheduler, RNG, progress) is written at each evaluation so ``--resume`` continues.
With ``init_adapter`` the run starts from an existing adapter (its LoRA shape and weights) and
adapts it to new data - few-shot, cross-domain; the manifest names it as the parent.
"""

from __future__ import annotations

import json
import math
import platform
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from training.examples import Example

IGNORE = -100
CHECKPOINT = "checkpoint"
BEST = "best"
STATE = "trainer_state.pt"


@dataclass(slots=True)
class TrainConfig:
    out_dir: Path
    work_dir: Path | None = None  # checkpoints + best adapter; default var/train/<out name>
    base: str = "smollm2"
    epochs: float = 1.0
    batch_size: int = 8
    lr: float = 5e-4
    weight_decay: float = 0.0
    warmup_steps: int = 10
    rank: int = 8
    layers: int = 0  # LoRA on the last N transformer layers only (0 = all): less backward work
    alpha: int = 16
    dropout: float = 0.05
    max_prompt_tokens: int = 128
    max_target_tokens: int = 40
    eval_every: int = 50
    patience: int = 3
    max_minutes: float | None = None
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"
    threads: int | None = None
    init_adapter: Path | None = None  # start from this adapter (few-shot / new domain)
    extra: dict[str, Any] = field(default_factory=dict)

    def hyperparameters(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("out_dir")
        data.pop("work_dir")
        data.pop("extra")
        data["init_adapter"] = str(self.init_adapter) if self.init_adapter else None
        return data | self.extra


@dataclass(slots=True)
class TrainResult:
    out_dir: Path
    steps: int
    best_step: int
    best_valid_loss: float
    train_loss: float
    seconds: float
    stopped: str
    history: list[dict[str, float]]


def encode(tokenizer: Any, example: Example, config: TrainConfig) -> tuple[list[int], list[int]]:
    """Token ids and labels (prompt masked) for one example; the prompt keeps its end."""
    prompt = tokenizer(example.prompt, add_special_tokens=False)["input_ids"]
    target = tokenizer(" " + example.target, add_special_tokens=False)["input_ids"]
    prompt = prompt[-config.max_prompt_tokens :]
    target = [*target[: config.max_target_tokens], tokenizer.eos_token_id]
    return prompt + target, [IGNORE] * len(prompt) + target


def collate(rows: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, Any]:
    """Right-padded batch tensors."""
    import torch

    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row_ids, row_labels) in enumerate(rows):
        ids[i, : len(row_ids)] = torch.tensor(row_ids)
        labels[i, : len(row_labels)] = torch.tensor(row_labels)
        mask[i, : len(row_ids)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def batches(
    rows: Sequence[tuple[list[int], list[int]]], size: int, rng: random.Random
) -> list[list[int]]:
    """Shuffled batches of indices; examples of similar length share a batch (less padding)."""
    order = list(range(len(rows)))
    rng.shuffle(order)
    pool = size * 16
    out: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: len(rows[i][0]))
        out.extend(chunk[i : i + size] for i in range(0, len(chunk), size))
    rng.shuffle(out)
    return out


def target_loss(model: Any, batch: dict[str, Any]) -> Any:
    """Mean cross-entropy over target tokens; the LM head runs on target positions only.

    Equal to ``model(**batch).loss`` but skips the vocabulary projection of prompt and padding
    positions (a quarter of the compute of a step for a 49k-token vocabulary).
    """
    import torch.nn.functional as F

    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = lm.base_model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).last_hidden_state
    labels = batch["labels"][:, 1:]
    keep = labels != IGNORE
    logits = lm.get_output_embeddings()(hidden[:, :-1][keep])
    return F.cross_entropy(logits.float(), labels[keep])


def evaluate(model: Any, rows: Sequence, batch_size: int, pad_id: int, device: str) -> float:
    """Mean loss per target token over ``rows``."""
    import torch

    total, count = 0.0, 0
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            batch = collate(rows[start : start + batch_size], pad_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            n = int((batch["labels"][:, 1:] != IGNORE).sum())
            loss = target_loss(model, batch)
            total += float(loss) * n
            count += n
    model.train()
    return total / max(count, 1)


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where available)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: str) -> dict[str, Any]:
    """What the training ran on, for the manifest."""
    import os

    import torch

    return {
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def _lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.05, 1 - (step - warmup) / max(1, total - warmup))

    return schedule


def _save_adapter(model: Any, folder: Path) -> None:
    """Save the LoRA weights as float16 safetensors (a few MB) with peft's config."""
    import torch
    from safetensors.torch import load_file, save_file

    model.save_pretrained(str(folder))
    weights = folder / "adapter_model.safetensors"
    state = {k: v.to(torch.float16).contiguous() for k, v in load_file(str(weights)).items()}
    save_file(state, str(weights), metadata={"format": "pt"})


def _adapter_checksum(folder: Path) -> str:
    import hashlib

    digest = hashlib.sha256((folder / "adapter_model.safetensors").read_bytes()).hexdigest()
    return f"sha256:{digest}"


def _start_from(
    base_model: Any, config: TrainConfig, resolved: Any, log: Callable[[str], None]
) -> tuple[Any, dict[str, Any]]:
    """The parent adapter on ``base_model``, trainable, and its description for the manifest.
    The parent's LoRA shape (rank, alpha, layers) replaces the config's."""
    from peft import PeftModel

    from recx_worker.lm.adapter import AdapterError, read_manifest

    parent_dir = Path(config.init_adapter)  # type: ignore[arg-type]
    parent = read_manifest(parent_dir)
    expected = parent["base_model"].get("checksum")
    if expected and expected != resolved.checksum:
        raise AdapterError(
            f"--init-adapter {parent_dir} was trained on base {expected}, but the base loaded "
            f"is {resolved.checksum}"
        )
    model = PeftModel.from_pretrained(base_model, str(parent_dir), is_trainable=True)
    lora = model.peft_config["default"]
    config.rank, config.alpha = lora.r, lora.lora_alpha
    layers = lora.layers_to_transform
    config.layers = len(layers) if layers else 0
    log(f"starting from adapter {parent_dir} (version {parent['version']}, rank {lora.r})")
    return model, {
        "path": str(parent_dir),
        "version": parent["version"],
        "checksum": _adapter_checksum(parent_dir),
        "data": parent.get("data"),
        "train_examples": parent.get("train_examples"),
    }


def train_lora(
    config: TrainConfig,
    train: Sequence[Example],
    valid: Sequence[Example],
    *,
    resume: bool = False,
    manifest_extra: dict[str, Any] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Fine-tune ``config.base`` with LoRA; write the adapter + manifest to ``config.out_dir``."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from tqdm import tqdm

    from recx_worker import __version__
    from recx_worker.lm.adapter import MANIFEST
    from recx_worker.lm.device import select_device
    from recx_worker.lm.loading import load_causal_lm, lora_targets

    if not train:
        raise ValueError("no training examples")
    if not valid:
        raise ValueError("no validation examples")
    started = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    device = select_device(config.device, config.dtype)
    base_model, tokenizer, resolved = load_causal_lm(config.base, device=device)
    out = Path(config.out_dir)
    work = Path(config.work_dir or Path("var/train") / out.name)
    ckpt = work / CHECKPOINT
    targets, fan_in_fan_out = lora_targets(base_model)
    parent: dict[str, Any] | None = None
    if resume and (ckpt / STATE).exists():
        model = PeftModel.from_pretrained(base_model, str(ckpt), is_trainable=True)
        state = torch.load(ckpt / STATE, weights_only=False)
        log(f"resuming from {ckpt} at step {state['step']}")
        if config.init_adapter is not None:
            parent = state.get("parent")
    elif config.init_adapter is not None:
        model, parent = _start_from(base_model, config, resolved, log)
        state = None
    else:
        if resume:
            log(f"no checkpoint in {ckpt}; starting from scratch")
        n_layers = base_model.config.num_hidden_layers
        top = min(config.layers, n_layers) if config.layers > 0 else n_layers
        lora = LoraConfig(
            layers_to_transform=list(range(n_layers - top, n_layers)),
            r=config.rank,
            lora_alpha=config.alpha,
            lora_dropout=config.dropout,
            target_modules=targets,
            fan_in_fan_out=fan_in_fan_out,
            bias="none",
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(base_model, lora)
        state = None
    model.to(device.device)
    if device.dtype != torch.float32:  # keep trainable LoRA weights in float32
        for param in model.parameters():
            if param.requires_grad:
                param.data = param.data.float()
    model.train()

    pad_id = tokenizer.pad_token_id
    train_rows = [encode(tokenizer, ex, config) for ex in train]
    valid_rows = [encode(tokenizer, ex, config) for ex in valid]
    rng = random.Random(config.seed)
    epoch_batches = batches(train_rows, config.batch_size, rng)
    total_steps = max(1, math.ceil(len(epoch_batches) * config.epochs))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(config.warmup_steps, total_steps)
    )
    step, best_loss, best_step, bad_evals = 0, math.inf, 0, 0
    history: list[dict[str, float]] = []
    elapsed_before = 0.0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, best_loss, best_step = state["step"], state["best_loss"], state["best_step"]
        bad_evals, history = state["bad_evals"], state["history"]
        elapsed_before = state["elapsed"]
        rng.setstate(state["rng"]["python"])
        torch.set_rng_state(state["rng"]["torch"])
    epoch_batches_done = 0
    if state is not None:
        epoch_batches, epoch_batches_done = state["epoch_batches"], state["epoch_batches_done"]
    budget = config.max_minutes * 60 if config.max_minutes else math.inf
    stopped = "completed"
    running = 0.0
    seen = 0

    def checkpoint() -> None:
        model.save_pretrained(str(ckpt))
        torch.save(
            {
                "step": step,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "best_loss": best_loss,
                "best_step": best_step,
                "bad_evals": bad_evals,
                "history": history,
                "elapsed": elapsed_before + time.perf_counter() - started,
                "rng": {"python": rng.getstate(), "torch": torch.get_rng_state()},
                "epoch_batches": epoch_batches,
                "epoch_batches_done": epoch_batches_done,
                "parent": parent,
            },
            ckpt / STATE,
        )

    if step == 0:
        best_loss = evaluate(model, valid_rows, config.batch_size * 2, pad_id, device.device)
        history.append({"step": 0, "valid_loss": round(best_loss, 4)})
        _save_adapter(model, work / BEST)
        log(f"step 0 valid_loss {best_loss:.4f}")
    bar = tqdm(total=total_steps, initial=step, disable=not progress, desc="lora", unit="step")
    while step < total_steps:
        if epoch_batches_done >= len(epoch_batches):
            epoch_batches, epoch_batches_done = batches(train_rows, config.batch_size, rng), 0
        batch = collate([train_rows[i] for i in epoch_batches[epoch_batches_done]], pad_id)
        epoch_batches_done += 1
        batch = {k: v.to(device.device) for k, v in batch.items()}
        with torch.autocast(device_type="cuda", dtype=device.dtype, enabled=device.device != "cpu"):
            loss = target_loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        seen += 1
        value = float(loss.detach())
        running = 0.9 * running + 0.1 * value if seen > 1 else value
        bar.update(1)
        bar.set_postfix(loss=f"{running:.3f}", best=f"{best_loss:.3f}")
        out_of_time = elapsed_before + time.perf_counter() - started > budget
        if step % config.eval_every == 0 or step == total_steps or out_of_time:
            valid_loss = evaluate(model, valid_rows, config.batch_size * 2, pad_id, device.device)
            history.append(
                {"step": step, "train_loss": round(running, 4), "valid_loss": round(valid_loss, 4)}
            )
            log(f"step {step} train_loss {running:.4f} valid_loss {valid_loss:.4f}")
            if valid_loss < best_loss:
                best_loss, best_step, bad_evals = valid_loss, step, 0
                _save_adapter(model, work / BEST)
            else:
                bad_evals += 1
            checkpoint()
            if bad_evals >= config.patience:
                stopped = f"early stopping (no improvement in {config.patience} evaluations)"
                break
            if out_of_time:
                stopped = f"time budget of {config.max_minutes} minutes reached"
                break
    bar.close()
    seconds = elapsed_before + time.perf_counter() - started
    if best_step == 0 and step > 0:
        start = f"the parent adapter {parent['path']}" if parent else "the untrained LoRA"
        log(
            f"no step improved on the step-0 validation loss {best_loss:.4f}: {out} holds "
            f"the starting weights ({start})"
        )
    out.mkdir(parents=True, exist_ok=True)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy2(work / BEST / name, out / name)
    manifest = {
        "version": out.name,
        "recx_version": __version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "base_model": {
            "name": config.base,
            "resolved": resolved.name,
            "checksum": resolved.checksum,
        },
        "lora": {"target_modules": targets, "fan_in_fan_out": fan_in_fan_out},
        "hyperparameters": config.hyperparameters(),
        "train_examples": len(train),
        "valid_examples": len(valid),
        "steps": step,
        "planned_steps": total_steps,
        "best_step": best_step,
        "improved_on_start": best_step > 0,
        "best_valid_loss": round(best_loss, 4),
        "final_train_loss": round(running, 4),
        "stopped": stopped,
        "history": history,
        "training_seconds": round(seconds, 1),
        "hardware": hardware(device.describe()),
        "parent_adapter": parent,
    } | (manifest_extra or {})
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return TrainResult(out, step, best_step, best_loss, running, seconds, stopped, history)
