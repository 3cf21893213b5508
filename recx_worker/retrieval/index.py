"""Item vectors and the FAISS index over them, saved with a manifest and an id map.

Index directory layout::

    index.faiss     the FAISS index (inner product over L2-normalised vectors = cosine)
    ids.json        row -> item id
    vectors.npy     the item vectors (float32, row order of ids.json)
    manifest.json   embedder, dim, count, metric, index type and parameters, data checksum

The index type is chosen by catalog size unless given: exact ``flat`` (IndexFlatIP) up to
``FLAT_MAX`` items, ``ivf`` (IndexIVFFlat, nlist ~ sqrt(n), nprobe = max(8, nlist/32))
above; ``hnsw`` (IndexHNSWFlat, M=32) on request.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np

from recx_worker.prepared import ItemProfile, PreparedData

IndexType = Literal["auto", "flat", "ivf", "hnsw"]
FLAT_MAX = 50_000
METRIC = "inner_product"
PROFILE_FEATURES = 12


class IndexError_(RuntimeError):
    """A missing or inconsistent index directory (named so as not to shadow IndexError)."""


def profile_text(profile: ItemProfile, n_features: int = PROFILE_FEATURES) -> str:
    """The text embedded for an item: its main features, then its representative snippets."""
    features = ", ".join(profile.feature_names(n_features))
    return f"{features}. " + " ".join(profile.snippets)


def data_checksum(data_dir: Path) -> str:
    """sha256 of the file item vectors derive from (item_profiles.json)."""
    digest = hashlib.sha256((Path(data_dir) / "item_profiles.json").read_bytes())
    return digest.hexdigest()


def choose_type(n: int, requested: IndexType = "auto", flat_max: int = FLAT_MAX) -> str:
    if requested != "auto":
        return requested
    return "flat" if n <= flat_max else "ivf"


def ivf_params(n: int) -> tuple[int, int]:
    """(nlist, nprobe) for ``n`` vectors: nlist ~ sqrt(n) within [16, 4096], nprobe
    max(8, nlist/32) (at most nlist); see ``recx bench index`` for the recall/speed trade-off."""
    nlist = int(min(4096, max(16, round(math.sqrt(n)))))
    return nlist, min(nlist, max(8, nlist // 32))


def build_faiss(
    vectors: np.ndarray,
    index_type: str,
    seed: int = 42,
    train_size: int | None = None,
    nprobe: int | None = None,
) -> tuple[object, dict]:
    """A FAISS inner-product index over ``vectors`` and its parameters (for the manifest)."""
    import faiss

    n, dim = vectors.shape
    params: dict = {}
    if index_type == "flat":
        index = faiss.IndexFlatIP(dim)
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = 64
        params = {"M": 32, "efConstruction": 80, "efSearch": 64}
    elif index_type == "ivf":
        nlist, default_probe = ivf_params(n)
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        # FAISS wants >= 39 points per centroid; 64 per centroid is plenty for k-means.
        size = min(n, train_size or 64 * nlist)
        sample = np.random.default_rng(seed).choice(n, size=size, replace=False)
        index.cp.seed = seed
        index.train(vectors[np.sort(sample)])
        index.nprobe = nprobe or default_probe
        params = {"nlist": nlist, "nprobe": index.nprobe, "train_size": int(size)}
    else:
        raise ValueError(f"unknown index type {index_type!r}; expected flat, ivf or hnsw")
    index.add(vectors)
    return index, params


@dataclass
class ItemIndex:
    """Item ids, their vectors and the FAISS index over them."""

    ids: list[str]
    vectors: np.ndarray
    faiss_index: object
    manifest: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rows: dict[str, int] = {item: i for i, item in enumerate(self.ids)}

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, rows) of the ``k`` nearest items for each query row."""
        return self.faiss_index.search(np.ascontiguousarray(queries, dtype=np.float32), k)

    def save(self, out: Path) -> None:
        import faiss

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.faiss_index, str(out / "index.faiss"))
        np.save(out / "vectors.npy", self.vectors)
        (out / "ids.json").write_text(json.dumps(self.ids) + "\n", encoding="utf-8")
        (out / "manifest.json").write_text(json.dumps(self.manifest, indent=1) + "\n")

    @classmethod
    def load(cls, index_dir: Path) -> ItemIndex:
        import faiss

        index_dir = Path(index_dir)
        manifest_path = index_dir / "manifest.json"
        if not manifest_path.exists():
            raise IndexError_(f"{index_dir} is not an index directory; run `recx index build`")
        manifest = json.loads(manifest_path.read_text())
        ids = json.loads((index_dir / "ids.json").read_text(encoding="utf-8"))
        faiss_index = faiss.read_index(str(index_dir / "index.faiss"))
        vectors_path = index_dir / "vectors.npy"
        if vectors_path.exists():
            vectors = np.load(vectors_path)
        else:
            vectors = faiss_index.reconstruct_n(0, faiss_index.ntotal)
        if len(ids) != faiss_index.ntotal or len(vectors) != len(ids):
            raise IndexError_(
                f"{index_dir}: id map ({len(ids)}), vectors ({len(vectors)}) and index "
                f"({faiss_index.ntotal}) disagree; rebuild with `recx index build`"
            )
        if "nprobe" in manifest.get("params", {}):
            faiss_index.nprobe = manifest["params"]["nprobe"]
        return cls(ids, np.ascontiguousarray(vectors, dtype=np.float32), faiss_index, manifest)


def build_item_index(
    data: PreparedData,
    embedder,
    index_type: IndexType = "auto",
    flat_max: int = FLAT_MAX,
    progress: bool = False,
) -> ItemIndex:
    """Embed every item profile of ``data`` and index the vectors."""
    started = time.perf_counter()
    profiles = data.item_profiles
    ids = sorted(profiles)
    texts = [profile_text(profiles[i]) for i in ids]
    try:
        vectors = embedder.encode(texts, progress=progress)
    except TypeError:
        vectors = embedder.encode(texts)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    kind = choose_type(len(ids), index_type, flat_max)
    faiss_index, params = build_faiss(vectors, kind)
    manifest = {
        "embedder": embedder.name,
        "dim": int(vectors.shape[1]),
        "count": len(ids),
        "metric": METRIC,
        "normalized": True,
        "index_type": kind,
        "params": params,
        "data_dir": str(data.root),
        "data_checksum": data_checksum(data.root),
        "profile_text": f"top {PROFILE_FEATURES} features + snippets",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "build_seconds": round(time.perf_counter() - started, 2),
    }
    return ItemIndex(ids, vectors, faiss_index, manifest)
