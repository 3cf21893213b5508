"""The CTranslate2 engine: the explainers' model converted once to int8, generated on CPU.

``ensure_ct2_model`` exports a (merged) Hugging Face model, converts it with CTranslate2's
transformers converter and caches the result under ``<model cache>/ct2/``, keyed by what
identifies the weights (base checksum + adapter checksum + quantization), written to a temporary
folder and renamed like the converted base checkpoint (``recx_worker.lm.loading``).
``Ct2Generator`` has ``Generator``'s interface (``generate``, ``generate_candidates``,
``generate_one_by_one``), so the explainers and ``recx bench generate`` use either engine.

Grounded decoding: CTranslate2's ``suppress_sequences`` applies to a whole batch, not per row.
A batch is generated with the bans every row shares (their intersection, which never bans what
any row may say); the rows whose output still contains one of their own banned sequences are
generated again, together, with the bans *they* share, until none is left (a row alone gets
its full bans). With greedy decoding this gives exactly the output of per-row bans (a greedy
path that completes no banned sequence is unchanged by banning them); with beams every
returned candidate is free of the row's bans.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from recx_worker.lm.generation import (
    MAX_PROMPT_TOKENS,
    GenerationConfig,
    batch_by_length,
    sentence_end_ids,
)
from recx_worker.lm.grounding import Sequences

CT2_DIR = "ct2"
KEY_FILE = "recx-ct2.json"
DEFAULT_QUANTIZATION = "int8"
CACHE_FORMAT = 2  # bump when what a cache entry holds changes


class EngineError(RuntimeError):
    """The requested generation engine is not available."""


def ct2_available() -> bool:
    """Whether the ``ctranslate2`` package is importable."""
    import importlib.util

    return importlib.util.find_spec("ctranslate2") is not None


def cache_folder(cache_dir: Path, name: str, key: dict[str, Any]) -> Path:
    """Where the converted model for ``key`` lives under ``cache_dir``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir).expanduser() / CT2_DIR / f"{name}-{digest}"


def _read_key(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / KEY_FILE).read_text(encoding="utf-8"))["key"]
    except (OSError, ValueError, KeyError):
        return None


def read_meta(folder: Path) -> dict[str, Any]:
    """What ``ensure_ct2_model`` recorded about a converted model (key, parameters, time)."""
    try:
        return json.loads((Path(folder) / KEY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def cached_ct2_model(cache_dir: Path, name: str, key: dict[str, Any]) -> Path | None:
    """The converted model for ``key`` if it is already in the cache."""
    folder = cache_folder(cache_dir, name, key)
    return folder if _read_key(folder) == key else None


def convert_to_ct2(
    model: Any, tokenizer: Any, out_dir: Path, quantization: str = DEFAULT_QUANTIZATION
) -> None:
    """Write ``model`` (a transformers causal LM) as a CTranslate2 model + its tokenizer."""
    from ctranslate2.converters import TransformersConverter

    hf_dir = out_dir.parent / f"{out_dir.name}.hf"
    model.save_pretrained(str(hf_dir))
    tokenizer.save_pretrained(str(hf_dir))
    try:
        TransformersConverter(str(hf_dir)).convert(
            str(out_dir), quantization=quantization, force=True
        )
    finally:
        shutil.rmtree(hf_dir, ignore_errors=True)
    tokenizer.save_pretrained(str(out_dir))
    # CTranslate2 wants every special token named; a tokenizer without BOS (GPT-2 style)
    # leaves it null, so name the EOS token instead (recx never prepends BOS).
    config_file = out_dir / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    for name in ("bos_token", "eos_token", "unk_token"):
        if config.get(name) is None:
            config[name] = tokenizer.eos_token
    config_file.write_text(json.dumps(config, indent=2), encoding="utf-8")


def ensure_ct2_model(
    cache_dir: Path,
    name: str,
    key: dict[str, Any],
    load: Callable[[], tuple[Any, Any]],
    quantization: str = DEFAULT_QUANTIZATION,
) -> Path:
    """The cached CTranslate2 model for ``key``; on a miss ``load()`` gives ``(model,
    tokenizer)`` (float32, CPU), which is converted once (atomically)."""
    key = key | {"quantization": quantization, "format": CACHE_FORMAT}
    found = cached_ct2_model(cache_dir, name, key)
    if found is not None:
        return found
    out_dir = cache_folder(cache_dir, name, key)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.perf_counter()
    try:
        from recx_worker.lm.loading import parameter_counts

        model, tokenizer = load()
        parameters = parameter_counts(model)
        convert_to_ct2(model, tokenizer, tmp / "model", quantization)
        del model
        shutil.move(str(tmp / "model"), str(tmp / "final"))
        final = tmp / "final"
        meta = {
            "key": key,
            "parameters": parameters,
            "converted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "convert_seconds": round(time.perf_counter() - started, 1),
        }
        (final / KEY_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        if out_dir.exists():  # a stale or half-written entry
            shutil.rmtree(out_dir, ignore_errors=True)
        try:
            os.replace(final, out_dir)
        except OSError:
            if _read_key(out_dir) != key:  # another process did not win the race either
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def contains(ids: Sequence[int], sequences: Sequences) -> bool:
    """Whether ``ids`` contains any of ``sequences`` as a contiguous run."""
    if not sequences:
        return False
    by_first: dict[int, list[tuple[int, ...]]] = {}
    for seq in sequences:
        by_first.setdefault(seq[0], []).append(seq)
    for start, token in enumerate(ids):
        for seq in by_first.get(token, ()):
            if tuple(ids[start : start + len(seq)]) == seq:
                return True
    return False


class Ct2Generator:
    """``Generator``'s interface over a ``ctranslate2.Generator``."""

    engine = "ct2"

    def __init__(
        self,
        model_dir: Path,
        tokenizer: Any,
        config: GenerationConfig | None = None,
        *,
        device: str = "cpu",
        device_index: int = 0,
        threads: int = 0,
        compute_type: str = "default",
        max_spread: int | None = 0,
    ) -> None:
        import ctranslate2

        self.model_dir = Path(model_dir)
        self.tokenizer = tokenizer
        self.config = config or GenerationConfig()
        self.device = device if device == "cpu" else f"{device}:{device_index}"
        self.model = ctranslate2.Generator(
            str(model_dir),
            device=device,
            device_index=device_index,
            compute_type=compute_type,
            intra_threads=threads,
        )
        self.compute_type = self.model.compute_type
        self.parameters: dict[str, int] = read_meta(self.model_dir).get("parameters", {})
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.ban_regenerations = 0  # rows generated again (see the module docstring)
        # Prompts of one token length per generate_batch call: CTranslate2 forwards only the
        # shortest prompt at once and the rest token by token (every beam), which made batch
        # 32 slower than 8 (docs/engine.md); None batches like the torch engine.
        self.max_spread = max_spread

    def describe(self) -> str:
        """Weights' compute type, for reports."""
        return f"ct2 {self.compute_type}"

    def _tokens(self, prompts: Sequence[str]) -> list[list[str]]:
        ids = self.tokenizer(
            list(prompts), add_special_tokens=False, truncation=True, max_length=MAX_PROMPT_TOKENS
        )["input_ids"]
        return [self.tokenizer.convert_ids_to_tokens(row) for row in ids]

    def _options(self, minimum: int | None = None) -> dict[str, Any]:
        """``generate_batch`` options; ``minimum``: this call's ``min_new_tokens`` (default:
        the configured one)."""
        cfg = self.config
        minimum = cfg.min_new_tokens if minimum is None else minimum
        # min_new_tokens holds back the first sentence's end, where the answer then stops
        ends = sentence_end_ids(self.tokenizer) if minimum else None
        options: dict[str, Any] = {
            "max_length": cfg.max_new_tokens,
            "include_prompt_in_result": False,
            "beam_size": cfg.num_beams,
            "num_hypotheses": cfg.candidates,
            "end_token": ends or self.tokenizer.eos_token,
            "return_end_token": ends is not None,  # keep the "." the answer stopped at
            "length_penalty": cfg.length_penalty,
            "min_length": minimum,
        }
        if cfg.sampling:
            options |= {
                "sampling_topk": cfg.top_k,
                "sampling_topp": cfg.top_p,
                "sampling_temperature": cfg.temperature,
            }
        if cfg.repetition_penalty:
            options["repetition_penalty"] = cfg.repetition_penalty
        return options

    def _as_tokens(self, sequences: Sequences) -> list[list[str]]:
        return [self.tokenizer.convert_ids_to_tokens(list(seq)) for seq in sequences]

    def _raw(
        self,
        tokens: list[list[str]],
        suppress: Sequences,
        max_batch_size: int,
        minimum: int | None = None,
    ) -> list[list[list[int]]]:
        if self.config.sampling:
            import ctranslate2

            ctranslate2.set_random_seed(self.config.seed)
        results = self.model.generate_batch(
            tokens,
            max_batch_size=max_batch_size,
            suppress_sequences=self._as_tokens(suppress) or None,
            **self._options(minimum),
        )
        return [list(result.sequences_ids) for result in results]

    def _decode(self, groups: list[list[list[int]]]) -> list[list[str]]:
        return [self.tokenizer.batch_decode(g, skip_special_tokens=True) for g in groups]

    def _run(
        self,
        tokens: list[list[str]],
        bans: Sequence[Sequences] | None,
        minimum: int | None = None,
    ) -> list[list[str]]:
        """One batch: ``config.candidates`` continuations per token row, none ending before
        ``minimum`` new tokens (default: the configured ``min_new_tokens``)."""
        if not bans or not any(bans):
            return self._decode(self._raw(tokens, [], len(tokens), minimum))
        groups: list[list[list[int]]] = [[] for _ in tokens]
        pending = list(range(len(tokens)))
        while pending:
            shared = set(bans[pending[0]]).intersection(*(set(bans[r]) for r in pending[1:]))
            got = self._raw([tokens[r] for r in pending], sorted(shared), len(pending), minimum)
            retry = []
            for row, group in zip(pending, got, strict=True):
                groups[row] = group
                own = bans[row]
                if len(pending) > 1 and any(contains(ids, own) for ids in group):
                    retry.append(row)
            self.ban_regenerations += len(retry)
            if len(retry) == len(pending):  # no progress together: each alone, full bans
                for row in retry:
                    groups[row] = self._raw([tokens[row]], bans[row], 1, minimum)[0]
                break
            pending = retry
        return self._decode(groups)

    def generate(
        self,
        prompts: Sequence[str],
        batch_size: int = 32,
        bans: Sequence[Sequences] | None = None,
        minimums: Sequence[int] | None = None,
    ) -> list[str]:
        """Continuations of ``prompts`` (same order); see ``Generator.generate``."""
        return [g[0] for g in self.generate_candidates(prompts, batch_size, bans, minimums)]

    def generate_candidates(
        self,
        prompts: Sequence[str],
        batch_size: int = 32,
        bans: Sequence[Sequences] | None = None,
        minimums: Sequence[int] | None = None,
    ) -> list[list[str]]:
        """``config.candidates`` continuations per prompt, at most ``batch_size`` prompts per
        batch, each batch of prompts within ``max_spread`` tokens of each other (one length by
        default) and of one minimum (``minimums[i]``: prompt ``i``'s ``min_new_tokens``;
        ``generate_batch`` takes one ``min_length``)."""
        if not prompts:
            return []
        tokens = self._tokens(prompts)

        def run(chunk: list[int], chunk_bans: list[Sequences] | None) -> list[list[str]]:
            minimum = minimums[chunk[0]] if minimums is not None else None
            return self._run([tokens[i] for i in chunk], chunk_bans, minimum)

        return batch_by_length(
            [len(t) for t in tokens],
            batch_size,
            bans,
            run,
            max_spread=self.max_spread,
            groups=minimums,
        )

    def generate_one_by_one(
        self, prompts: Sequence[str], bans: Sequence[Sequences] | None = None
    ) -> list[str]:
        """One ``generate_batch`` call per prompt."""
        return [
            self._run(self._tokens([prompt]), [bans[i]] if bans is not None else None)[0][0]
            for i, prompt in enumerate(prompts)
        ]
