"""Index build + query with the real all-MiniLM-L6-v2 on the tiny fixture; FAISS index types."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from recx_worker.cli import app
from recx_worker.devtools.bench_index import run_bench, synthetic_vectors
from recx_worker.prepared import PreparedData
from recx_worker.retrieval.embedder import Embedder, MiniLMEmbedder
from recx_worker.retrieval.index import (
    ItemIndex,
    build_faiss,
    build_item_index,
    choose_type,
    data_checksum,
)
from training.data.prepare import prepare

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> PreparedData:
    out = tmp_path_factory.mktemp("idx") / "data"
    prepare(
        FIXTURES / "reviews_tiny.json", out, features=FIXTURES / "features_tiny.txt", progress=False
    )
    return PreparedData(out)


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    import torch

    torch.set_num_threads(1)
    return MiniLMEmbedder()


def test_embedder_is_normalised_and_semantic(embedder: MiniLMEmbedder) -> None:
    assert isinstance(embedder, Embedder)
    vectors = embedder.encode(["the tuner is accurate", "an accurate tuner", "a heavy gig bag"])
    assert vectors.dtype == np.float32 and vectors.shape == (3, embedder.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert embedder.encode([]).shape == (0, 384)


def test_build_save_load_query(tiny_data: PreparedData, embedder, tmp_path: Path) -> None:
    index = build_item_index(tiny_data, embedder)
    out = tmp_path / "index"
    index.save(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["embedder"] == embedder.name
    assert (manifest["dim"], manifest["count"]) == (384, len(tiny_data.item_profiles))
    assert (manifest["metric"], manifest["index_type"]) == ("inner_product", "flat")
    assert manifest["data_checksum"] == data_checksum(tiny_data.root)
    loaded = ItemIndex.load(out)
    assert loaded.ids == sorted(tiny_data.item_profiles)
    np.testing.assert_array_equal(loaded.vectors, index.vectors)
    # The nearest other item of a tuner is the other tuner (same features, same snippets kind).
    sims, rows = loaded.search(loaded.vectors[[loaded.rows["T1"]]], 2)
    assert loaded.ids[rows[0][0]] == "T1" and loaded.ids[rows[0][1]] == "T2"
    assert sims[0][0] == pytest.approx(1.0, abs=1e-4)

    result = CliRunner().invoke(
        app,
        [
            "index",
            "query",
            "--item",
            "S1",
            "--k",
            "2",
            "--data",
            str(tiny_data.root),
            "--index",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "S2" in result.output and "strings" in result.output
    bad = CliRunner().invoke(
        app,
        ["index", "query", "--item", "NOPE", "--data", str(tiny_data.root), "--index", str(out)],
    )
    assert bad.exit_code == 2 and "unknown item 'NOPE'" in bad.output


def test_index_types_by_size() -> None:
    assert choose_type(900) == "flat"
    assert choose_type(2_000_000) == "ivf"
    assert choose_type(10, "hnsw") == "hnsw"
    vectors = synthetic_vectors(5000, 32, n_clusters=20, noise=0.5, seed=3)
    exact, _ = build_faiss(vectors, "flat")
    _, truth = exact.search(vectors[:50], 10)
    for kind in ("ivf", "hnsw"):
        index, params = build_faiss(vectors, kind)
        _, found = index.search(vectors[:50], 10)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)])
        assert recall > 0.8, (kind, params, recall)


def test_bench_small() -> None:
    rows, meta = run_bench(
        n=20_000, dim=64, index_type="ivf", n_queries=100, k=10, threads=1, noise=0.5
    )
    row = rows[0]  # the default nprobe, then a sweep
    assert row["n"] == 20_000 and row["recall@10"] > 0.8
    assert row["qps_batch"] > 0 and row["build_s"] > 0
    assert meta["params"] == {"nlist": 141, "nprobe": 8, "train_size": 9024}
    assert [r["nprobe"] for r in rows] == [8, 4, 16, 32, 64]
    recalls = [r["recall@10"] for r in rows[1:]]
    assert recalls == sorted(recalls)  # more lists probed, no fewer true neighbours found


def test_cli_build_missing_data(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["index", "build", "--data", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "not a prepared-data directory" in result.output
