"""The demo's data: the shipped reviews verified, prepared data and index made if missing, and
the recommendation events it publishes (held-out TEST pairs plus malformed inputs)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from recx_worker.checksums import sha256_file
from recx_worker.config import DEFAULT_RAW_DATA, Settings
from recx_worker.events import (
    RecommendationEvent,
)

REVIEWS_FILE = "reviews_Musical_Instruments_5.json.gz"
FEATURES_FILE = "features.txt"
HISTORY_LIMIT = 20

# The public source files (see docs/data.md) and their checksums.
RAW_SHA256 = {
    REVIEWS_FILE: "03f9cc27ae13a454cb4ea6cb620fb10546cc1194ef921441d1c5f34addff2748",
    FEATURES_FILE: "3e00e8c050b485fe4cb8ab3b2fed93fdbfa0ceaa98053e383501f2cd76719249",
}

console = Console(highlight=False)


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and what to do."""


def verify_raw_data(raw_dir: Path) -> None:
    """Check the sha256 of the public Musical Instruments files (the default raw data)."""
    for name, expected in RAW_SHA256.items():
        path = raw_dir / name
        if not path.exists():
            raise DemoError(
                f"{path} is missing: download it as described in docs/data.md "
                "(Amazon 2014 5-core Musical Instruments, McAuley lab)"
            )
        actual = sha256_file(path)
        if actual != expected:
            raise DemoError(f"{path}: sha256 {actual} != expected {expected}; re-download it")


def recx_command(*args: str) -> list[str]:
    """The ``recx`` CLI run by this interpreter (works without the venv's bin/ on PATH)."""
    return [sys.executable, "-m", "recx_worker.cli", *args]


def _run_step(title: str, command: list[str], log: Path) -> None:
    console.print(f"[bold]{title}[/bold]: {' '.join(command[2:])}  (log: {log})")
    started = time.monotonic()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise DemoError(f"{title} failed (exit {done.returncode}); last lines of {log}:\n{tail}")
    console.print(f"  done in {time.monotonic() - started:.1f} s")


def ensure_prepared(settings: Settings, logs: Path) -> None:
    """Prepare data and build the index unless they are already cached under var/."""
    paths = settings.paths
    if (paths.data_dir / "train.jsonl").exists():
        console.print(f"data: cached in {paths.data_dir}")
    else:
        args = ["data", "prepare", "--out", str(paths.data_dir), "--no-progress"]
        if paths.raw_data.resolve() == DEFAULT_RAW_DATA.resolve():
            verify_raw_data(paths.raw_data)
            console.print("data: sha256 of the raw files verified")
        args += [
            "--reviews",
            str(paths.raw_data / REVIEWS_FILE),
            "--features",
            str(paths.raw_data / FEATURES_FILE),
        ]
        _run_step("data prepare", recx_command(*args), logs / "data-prepare.log")
    if _index_ready(paths.index_dir):
        console.print(f"index: cached in {paths.index_dir}")
    else:
        args = ["index", "build", "--data", str(paths.data_dir), "--out", str(paths.index_dir)]
        args.append("--no-progress")
        _run_step("index build", recx_command(*args), logs / "index-build.log")


def _index_ready(index_dir: Path) -> bool:
    return (index_dir / "manifest.json").exists()


@dataclass
class Malformed:
    """A bad input and the dead letter it must produce (error class, failing field)."""

    label: str
    payload: bytes
    error_class: str
    field: str | None


def build_events(data_dir: Path, n: int, seed: int = 0) -> list[RecommendationEvent]:
    """``n`` events from distinct held-out TEST (user, item) pairs, each with the user's TRAIN
    history (its most recent items). Pairs whose item has no TRAIN profile are left out: the
    worker has no evidence for them."""
    from recx_worker.prepared import PreparedData, recommendation_event

    data = PreparedData(data_dir)
    profiles, histories = data.item_profiles, data.user_histories
    pairs: dict[tuple[str, str], Any] = {}
    for record in data.split("test"):
        key = (record.user_id, record.item_id)
        if key not in pairs and record.item_id in profiles and record.user_id in histories:
            pairs[key] = record
    chosen = sorted(pairs)
    random.Random(seed).shuffle(chosen)
    if len(chosen) < n:
        raise DemoError(f"only {len(chosen)} usable test interactions, asked for {n} events")
    return [
        recommendation_event(
            pairs[pair],
            histories,
            history=HISTORY_LIMIT,
            event_id=f"demo-{index:04d}-{uuid.uuid4().hex[:8]}",
            score=round(pairs[pair].rating / 5, 3),
            rank=index % 10,
            source_model="demo-heldout-test",
        )
        for index, pair in enumerate(chosen[:n])
    ]


def malformed_events(valid: RecommendationEvent) -> list[Malformed]:
    """Inputs the worker must dead-letter (with their reason) while it keeps going."""
    base = json.loads(valid.model_dump_json())
    missing_user = {k: v for k, v in base.items() if k != "user_id"} | {"event_id": "bad-user"}
    nan_score = base | {"event_id": "bad-score", "score": float("nan")}
    unknown_item = base | {"event_id": "bad-item", "item_id": "B0NOSUCHITEM"}
    future = base | {"event_id": "bad-version", "schema_version": 2}
    return [
        Malformed("not JSON", b'{"event_id": "bad-json", "user_id": ', "NotJSON", None),
        Malformed("missing user_id", _json(missing_user), "MissingField", "user_id"),
        Malformed("NaN score", _json(nan_score), "NonFiniteNumber", "score"),
        Malformed("unknown item", _json(unknown_item), "UnknownItem", "item_id"),
        Malformed("schema_version 2", _json(future), "UnknownSchemaVersion", "schema_version"),
    ]


def _json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()
