"""A fractional ``min_new_tokens``: a stable per-request mix of two minimums, decoded for real."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from recx_worker.lm.lengths import MinimumMix, request_key


def test_mix_shares_follow_the_fraction_and_are_stable():
    keys = [request_key(f"user{u}", f"item{u % 37}") for u in range(20_000)]
    for mean in (7.0, 7.25, 7.5, 0.9):
        mix = MinimumMix(mean)
        counts = Counter(mix.minimum(k) for k in keys)
        assert set(counts) <= {mix.low, mix.low + 1}
        share = counts[mix.low + 1] / len(keys)
        assert share == pytest.approx(mean - math.floor(mean), abs=0.02), (mean, counts)
        assert sum(m * n for m, n in counts.items()) / len(keys) == pytest.approx(mean, abs=0.02)
    # the same recommendation gets the same minimum in every process and release: the bucket
    # is a fixed digest (Python's own hash() is salted per process), pinned here
    assert (MinimumMix.bucket("a\x1fb"), MinimumMix.bucket(request_key("u1", "i1"))) == (2624, 3611)
    assert (MinimumMix(7.5).minimum("a\x1fb"), MinimumMix(7.25).minimum("a\x1fb")) == (8, 7)
    assert (MinimumMix(8).high, MinimumMix(8).share, MinimumMix(7.5).high) == (8, 0, 8)


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf")])
def test_mix_rejects_bad_minimums(bad):
    with pytest.raises(ValueError, match="min_new_tokens"):
        MinimumMix(bad)


def _dot_model(tmp_path):
    """The dot model of ``lm_tiny`` (m tokens, then "." with a minimum of m)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("ctranslate2")
    from lm_tiny import dot_model

    torch.set_num_threads(1)
    return dot_model(tmp_path / "llama")


def _dot_explainer(tmp_path, engine: str, min_new_tokens: float):
    """An ``LMExplainer`` over the dot model (``_dot_model``)."""
    from lm_tiny import PROMPTS

    from recx_worker.explainer import ExplainerContext
    from recx_worker.lm.explainers import LMExplainer

    model, tokenizer, dot = _dot_model(tmp_path)

    class DotExplainer(LMExplainer):
        name = "dot"

        def _load(self, device):
            return model, tokenizer

        def _identity(self):
            return "dot", {"base": "dot"}

        def render_prompts(self, requests):
            return [PROMPTS[i % 2] for i in range(len(requests))]

    explainer = DotExplainer(
        context=ExplainerContext(),
        engine=engine,
        max_new_tokens=6,
        min_new_tokens=min_new_tokens,
        model_cache=tmp_path / "cache",
        quantization="float32",
        threads=1,
        grounded_decoding=False,
    )
    return explainer, tokenizer, dot


@pytest.mark.parametrize("engine", ["torch", "ct2"])
def test_each_request_is_decoded_with_its_own_minimum(tmp_path, engine):
    """``min_new_tokens = 2.5``: each request's answer has exactly its own minimum of tokens
    before the "." (2 or 3, by its user and item), on both engines, in one call of mixed
    requests; a whole number decodes every request with that minimum."""
    from recx_worker.events import Evidence, RecommendationEvent
    from recx_worker.explainer import ExplainRequest

    explainer, tokenizer, dot = _dot_explainer(tmp_path, engine, 2.5)
    requests = [
        ExplainRequest(
            event=RecommendationEvent(event_id=f"e{n}", user_id=f"u{n}", item_id="i"),
            evidence=Evidence(),
        )
        for n in range(12)
    ]
    minimums = explainer.request_minimums(requests)
    assert minimums is not None and set(minimums) == {2, 3}
    prompts = explainer.render_prompts(requests)
    groups = explainer.raw_generate(prompts, None, minimums)
    for minimum, (text,) in zip(minimums, groups, strict=True):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert len(ids) == minimum + 1 and ids[-1] == dot, (engine, minimum, text)
    assert explainer.generation.min_new_tokens == 2  # the configured generator is untouched
    assert explainer.generator.config.min_new_tokens == 2
    whole, *_ = _dot_explainer(tmp_path / "whole", engine, 3)
    assert whole.request_minimums(requests) is None
    texts = [g[0] for g in whole.raw_generate(prompts)]
    assert all(len(tokenizer(t, add_special_tokens=False)["input_ids"]) == 4 for t in texts)


def test_a_minimum_that_reaches_max_new_tokens_is_rejected(tmp_path):
    from recx_worker.default_plugins.lora import LoraExplainer

    with pytest.raises(ValueError, match="min_new_tokens"):
        LoraExplainer(adapter_dir=tmp_path, max_new_tokens=8, min_new_tokens=7.5)
    assert LoraExplainer(adapter_dir=tmp_path, max_new_tokens=9, min_new_tokens=7.5)


def test_the_decoding_identity_tells_a_mix_from_its_floor(tmp_path):
    from recx_worker.default_plugins.lora import LoraExplainer

    def identity(minimum):
        explainer = LoraExplainer(adapter_dir=tmp_path, min_new_tokens=minimum)
        return explainer.decoding_identity()["generation"]["min_new_tokens"]

    assert (identity(7), identity(7.5), identity(8)) == (7, 7.5, 8)


def test_one_call_mixes_minimums_on_the_split_engine(tmp_path):
    """Per-prompt minimums through the split engine: its torch half decodes the mixed
    minimums in one batch (``RowMinimum``), its ct2 half one call per minimum; each answer has
    exactly its own minimum of tokens before the "."."""
    from lm_tiny import PROMPTS

    from recx_worker.lm.ct2 import Ct2Generator, ensure_ct2_model
    from recx_worker.lm.engine import SplitGenerator
    from recx_worker.lm.generation import GenerationConfig, Generator
    from recx_worker.lm.loading import load_tokenizer

    model, tokenizer, dot = _dot_model(tmp_path)
    path = ensure_ct2_model(
        tmp_path / "cache", "dot", {"base": "dot"}, lambda: (model, tokenizer), "float32"
    )
    config = GenerationConfig(max_new_tokens=6, min_new_tokens=1)
    small = Ct2Generator(path, load_tokenizer(str(path)), config, threads=1)
    large = Generator(model, tokenizer, config)
    calls = []
    run = large._run

    def recording_run(prompts, bans, minimums):
        calls.append(minimums)  # what each torch call was asked to hold back
        return run(prompts, bans, minimums)

    large._run = recording_run
    split = SplitGenerator(small, large, min_batch=4)
    prompts = [PROMPTS[i % 2] for i in range(6)]  # 4 to torch (one batch), 2 to ct2
    minimums = [1, 3, 2, 3, 3, 1]
    texts = split.generate(prompts, batch_size=4, minimums=minimums)
    for minimum, text in zip(minimums, texts, strict=True):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert len(ids) == minimum + 1 and ids[-1] == dot, (minimum, text)
    assert sorted(map(sorted, calls)) == [[1, 2, 3, 3]]  # one torch call, mixed minimums
    plain = split.generate(prompts, batch_size=4)  # no minimums: the configured 1
    assert all(len(tokenizer(t, add_special_tokens=False)["input_ids"]) == 2 for t in plain)
