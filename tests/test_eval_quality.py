"""Metrics beyond n-grams: distinct-n, duplicates, personalisation, MiniLM similarity."""

from __future__ import annotations

import pytest

from training.evaluation.diversity import distinct_n, duplicate_share, personalisation
from training.evaluation.text import tokenize


def toks(*texts: str) -> list[list[str]]:
    return [tokenize(t) for t in texts]


def test_distinct_n_counts_distinct_ngrams_over_all_ngrams():
    hyps = toks("a b a", "a b c")
    assert distinct_n(hyps, 1) == pytest.approx(3 / 6)  # {a, b, c} of 6 unigrams
    assert distinct_n(hyps, 2) == pytest.approx(3 / 4)  # {ab, ba, bc} of ab ba ab bc
    assert distinct_n(toks("one"), 2) == 0.0 and distinct_n([], 1) == 0.0


def test_duplicate_share_counts_every_copy_of_a_repeated_output():
    hyps = toks("great tuner .", "Great tuner.", "nice strap", "", "")
    # the two tuner texts tokenize alike; the two empty outputs repeat each other too
    assert duplicate_share(hyps) == pytest.approx(4 / 5)
    assert duplicate_share(toks("a", "b")) == 0.0 and duplicate_share([]) == 0.0


def test_personalisation_averages_over_items_with_several_records():
    items = ["i1", "i1", "i1", "i2", "i2", "i3"]
    hyps = toks("x", "x", "y", "p", "q", "alone")
    got = personalisation(items, hyps)
    # i1: pairs (x,x) same, (x,y) and (x,y) differ -> 2/3; i2: 1/1; i3 has one record
    assert got["personalisation"] == pytest.approx((2 / 3 + 1) / 2)
    assert (got["personalisation_items"], got["personalisation_pairs"]) == (2, 4)
    assert personalisation(["a", "b"], toks("x", "x"))["personalisation"] == 0.0
    with pytest.raises(ValueError):
        personalisation(["a"], [])


class _Counting:
    """The real MiniLM embedder, counting the texts it is asked to embed."""

    def __init__(self) -> None:
        from recx_worker.retrieval.embedder import MiniLMEmbedder

        self.inner = MiniLMEmbedder()
        self.name, self.dim, self.seen = self.inner.name, self.inner.dim, 0

    def encode(self, texts):
        self.seen += len(texts)
        return self.inner.encode(texts)


def test_semantic_similarity_sees_meaning_and_embeds_each_text_once():
    import torch

    from training.evaluation.semantic import SemanticSimilarity

    torch.set_num_threads(1)
    refs = ["The tuner is accurate and its display is easy to read.", "These strings sound warm."]
    embedder = _Counting()
    sim = SemanticSimilarity(refs, embedder)
    same = sim.per_record(refs)
    assert same == pytest.approx([1.0, 1.0], abs=1e-5)
    paraphrase = sim.per_record(["A precise tuner with a readable screen.", ""])
    unrelated = sim.per_record(["My cat sleeps all day on the sofa.", "Shipping took a week."])
    assert paraphrase[0] > unrelated[0] + 0.3 and paraphrase[1] == 0.0  # empty output: 0
    assert embedder.seen == 2 + 2 + 2  # the references were not embedded again
    sim.per_record(refs)
    assert embedder.seen == 6
    with pytest.raises(ValueError):
        sim.per_record(["one text"])
