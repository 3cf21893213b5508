"""``recx bench index``: a large synthetic catalog through the large-catalog index type.

Vectors: see :func:`synthetic_vectors` (seeded, embedding-like soft clusters).
Ground truth is exact inner-product search (``faiss.knn``) for a sample of queries.
"""

from __future__ import annotations

import gc
import os
import time

import numpy as np

from recx_worker.devtools.benchio import percentile


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; 0 where unavailable)."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def synthetic_vectors(
    n: int,
    dim: int = 384,
    n_clusters: int = 1000,
    noise: float = 1.0,
    latent: int = 48,
    seed: int = 42,
    chunk: int = 100_000,
) -> np.ndarray:
    """``n`` x ``dim`` L2-normalised float32 vectors (chunked, seeded).

    Like sentence embeddings, they have a low intrinsic dimension and soft topic clusters:
    ``n_clusters`` unit centres in a ``latent``-dimensional space, each point a centre plus
    Gaussian noise of norm ~``noise``, projected to ``dim`` by a random matrix, plus a little
    isotropic noise. At ``noise`` 1.0 a query's nearest neighbour has cosine ~0.7 (~0.65 for
    the 10th), as item embeddings of a real catalog do; IVF recall then depends on nprobe.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, latent), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    projection = rng.standard_normal((latent, dim), dtype=np.float32) / np.float32(np.sqrt(latent))
    latent_scale = np.float32(noise / np.sqrt(latent))
    ambient_scale = np.float32(0.3 / np.sqrt(dim))
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        labels = rng.integers(0, n_clusters, size=stop - start)
        z = (
            centres[labels]
            + rng.standard_normal((stop - start, latent), dtype=np.float32) * latent_scale
        )
        block = z @ projection
        block += rng.standard_normal((stop - start, dim), dtype=np.float32) * ambient_scale
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:stop] = block
    return out


def _settings(index, index_type: str, params: dict):
    """The search-time knob values to sweep, the configured default first; sets each in turn."""
    if index_type == "ivf":
        default = params["nprobe"]
        for value in dict.fromkeys([default, 4, 8, 16, 32, 64]):
            if value <= params["nlist"]:
                index.nprobe = value
                yield "nprobe", value
        index.nprobe = default
    elif index_type == "hnsw":
        default = params["efSearch"]
        for value in dict.fromkeys([default, 16, 32, 128]):
            index.hnsw.efSearch = value
            yield "efSearch", value
        index.hnsw.efSearch = default
    else:
        yield "exact", True


def _time_queries(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, float, float]:
    """(results, batch queries/s, one-at-a-time queries/s)."""
    index.search(queries[:10], k)  # warm-up
    t0 = time.perf_counter()
    _, found = index.search(queries, k)
    batch_qps = len(queries) / (time.perf_counter() - t0)
    n_single = min(200, len(queries))
    t0 = time.perf_counter()
    for q in range(n_single):
        index.search(queries[q : q + 1], k)
    return found, batch_qps, n_single / (time.perf_counter() - t0)


def run_bench(
    n: int = 1_000_000,
    dim: int = 384,
    index_type: str = "ivf",
    n_queries: int = 1000,
    k: int = 10,
    nprobe: int | None = None,
    threads: int | None = None,
    seed: int = 42,
    noise: float = 1.0,
) -> tuple[list[dict], dict]:
    """Build, query and score one index (one row per search setting, the default first);
    returns (rows, meta) for ``benchio.report``."""
    import faiss

    from recx_worker.retrieval.index import build_faiss

    if threads:
        faiss.omp_set_num_threads(threads)
    gc.collect()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    # Queries are held-out draws from the same distribution (the last rows).
    data = synthetic_vectors(n + n_queries, dim, noise=noise, seed=seed)
    base, queries = data[:n], data[n:].copy()
    gen_s = time.perf_counter() - t0
    rss_data = rss_bytes()

    t0 = time.perf_counter()
    index, params = build_faiss(base, index_type, seed=seed, nprobe=nprobe)
    build_s = time.perf_counter() - t0
    rss_index = rss_bytes()

    t0 = time.perf_counter()
    _, exact = faiss.knn(queries, base, k, metric=faiss.METRIC_INNER_PRODUCT)
    exact_qps = n_queries / (time.perf_counter() - t0)

    common = {
        "index": index_type,
        "n": n,
        "dim": dim,
        "build_s": round(build_s, 2),
        "data_mb": round((rss_data - rss0) / 2**20, 1),
        "index_mb": round((rss_index - rss_data) / 2**20, 1),
    }
    rows = []
    for knob, value in _settings(index, index_type, params):
        found, qps_batch, qps_single = _time_queries(index, queries, k)
        recall = np.mean([len(set(found[i]) & set(exact[i])) / k for i in range(n_queries)])
        rows.append(
            common
            | {
                knob: value,
                "qps_batch": round(qps_batch, 1),
                "qps_single": round(qps_single, 1),
                f"recall@{k}": round(float(recall), 4),
                "exact_qps": round(exact_qps, 1),
            }
        )
    meta = {
        "params": params,
        "queries": n_queries,
        "k": k,
        "generate_s": round(gen_s, 2),
        "faiss_threads": faiss.omp_get_max_threads(),
        "rss_peak_mb": round(rss_bytes() / 2**20, 1),
        "data": f"1000 soft clusters in a 48-d latent space -> {dim}-d, noise {noise}, seed {seed}",
    }
    return rows, meta


def run_evidence_bench(store, n_calls: int = 20_000, k: int = 3) -> tuple[list[dict], dict]:
    """Evidence calls/s (wall clock, and per CPU-second, which a busy shared machine distorts
    less) and per-call latency over the test split's (user, item) pairs."""
    pairs = [(r.user_id, r.item_id) for r in store.data.split("test")]
    if not pairs:
        raise ValueError("the test split is empty")
    latencies = np.empty(n_calls, dtype=np.float64)
    cpu_started = time.process_time()
    started = time.perf_counter()
    for i in range(n_calls):
        user, item = pairs[i % len(pairs)]
        t0 = time.perf_counter()
        store.evidence(user, item, k=k)
        latencies[i] = time.perf_counter() - t0
    total = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    rows = [
        {
            "calls": n_calls,
            "calls_per_s": round(n_calls / total, 1),
            "calls_per_cpu_s": round(n_calls / cpu, 1),
            "p50_us": round(percentile(latencies, 50) * 1e6, 1),
            "p99_us": round(percentile(latencies, 99) * 1e6, 1),
        }
    ]
    return rows, {"k": k, "pairs": len(pairs), "items": len(store.data.item_profiles)}
