"""``recx bench generate`` internals with a tiny randomly initialised causal LM."""

from __future__ import annotations

import json
import math
import time

import pytest

from recx_worker.devtools.bench_generate import PeakMemory, Subject, bench_subject
from recx_worker.devtools.benchio import percentile


def test_percentile_interpolates():
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([0.0, 10.0], 99) == pytest.approx(9.9)
    assert percentile([5.0], 99) == 5.0
    assert math.isnan(percentile([], 50))  # no latency measured is not a latency of 0


def test_peak_memory_sees_an_allocation():
    with PeakMemory("cpu") as before:
        pass
    with PeakMemory("cpu") as during:
        block = bytearray(64 * 2**20)
        block[::4096] = b"x" * len(block[::4096])  # touch every page
        time.sleep(0.05)
    assert during.peak_mib >= before.peak_mib + 32


@pytest.fixture(scope="module")
def tiny_generator(tmp_path_factory):
    pytest.importorskip("torch")
    from lm_tiny import build_model

    from recx_worker.lm.generation import GenerationConfig, Generator
    from recx_worker.lm.loading import load_causal_lm

    folder = build_model(tmp_path_factory.mktemp("tiny"), "llama")
    model, tokenizer, _ = load_causal_lm(str(folder))
    return Generator(model, tokenizer, GenerationConfig(max_new_tokens=6))


def test_bench_subject_rows(tiny_generator):
    prompts = [f"the tuner number {i} is" + " very" * (i % 5) for i in range(12)]
    subject = Subject("tiny", tiny_generator, prompts, "gpt2-tiny")
    rows = bench_subject(subject, [1, 4], naive=True, device="cpu")
    assert [(r["mode"], r["batch"]) for r in rows] == [
        ("naive generate()", 1), ("batched", 1), ("batched", 4),
    ]  # fmt: skip
    for row in rows:
        assert row["n"] == 12
        assert row["expl_per_s"] > 0 and row["tokens_per_s"] > 0
        assert 0 < row["p50_ms"] <= row["p99_ms"]
        assert row["peak_mem_mib"] > 0
    assert rows[0]["speedup"] == 1.0
    # Batch 4: every request waits for its batch, so the median latency is one batch call.
    assert rows[2]["p50_ms"] >= rows[1]["p50_ms"] * 0.5
    json.dumps(rows)  # serialisable for benchio
