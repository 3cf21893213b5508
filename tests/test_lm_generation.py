"""Batched generation (left padding, masks, KV cache) with tiny random GPT-2 / Llama models."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from lm_tiny import PROMPTS, build_model  # noqa: E402

from recx_worker.lm.generation import GenerationConfig, Generator, batch_by_length  # noqa: E402
from recx_worker.lm.loading import load_causal_lm  # noqa: E402


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def tiny(request, tmp_path_factory):
    torch.set_num_threads(1)
    folder = build_model(tmp_path_factory.mktemp(request.param), request.param)
    model, tokenizer, resolved = load_causal_lm(str(folder))
    return model, tokenizer, resolved


def test_loads_local_folder_on_cpu_float32(tiny):
    model, _, resolved = tiny
    assert model.dtype == torch.float32 and model.device.type == "cpu"
    assert resolved.checksum.startswith("sha256:")


def test_batched_greedy_equals_one_by_one(tiny):
    model, tokenizer, _ = tiny
    generator = Generator(model, tokenizer, GenerationConfig(max_new_tokens=8))
    batched = generator.generate(PROMPTS, batch_size=4)
    single = generator.generate_one_by_one(PROMPTS)
    assert batched == single
    assert len(set(batched)) > 1  # different prompts, different continuations


def test_output_order_and_bounded_length(tiny):
    model, tokenizer, _ = tiny
    generator = Generator(model, tokenizer, GenerationConfig(max_new_tokens=5))
    out = generator.generate(list(reversed(PROMPTS)), batch_size=2)
    assert out == list(reversed(generator.generate(PROMPTS, batch_size=3)))
    longer = Generator(model, tokenizer, GenerationConfig(max_new_tokens=8))
    for short, long in zip(
        out, longer.generate(list(reversed(PROMPTS)), batch_size=2), strict=True
    ):
        assert long.startswith(short) and len(long) > len(short)  # greedy: 5 tokens, then 3 more
    assert generator.generate([], batch_size=2) == []


def test_sampling_is_deterministic_for_a_seed_and_beams_run(tiny):
    model, tokenizer, _ = tiny
    sample = GenerationConfig(max_new_tokens=6, top_p=0.9, seed=7)
    first = Generator(model, tokenizer, sample).generate(PROMPTS, batch_size=5)
    again = Generator(model, tokenizer, sample).generate(PROMPTS, batch_size=5)
    assert first == again
    beams = Generator(model, tokenizer, GenerationConfig(max_new_tokens=4, num_beams=2))
    assert len(beams.generate(PROMPTS[:2], batch_size=2)) == 2


def test_generation_config_rejects_bad_values():
    with pytest.raises(ValueError):
        GenerationConfig(max_new_tokens=0)
    with pytest.raises(ValueError):
        GenerationConfig(top_p=1.5)


def test_banned_sequences_never_come_out_and_batching_still_matches(tiny):
    model, tokenizer, _ = tiny
    generator = Generator(model, tokenizer, GenerationConfig(max_new_tokens=6))
    free = generator.generate(PROMPTS, batch_size=5)
    first_two = [tuple(tokenizer(text)["input_ids"][:2]) for text in free]
    # Ban each prompt's own greedy first token (one-token ban) and, for the others, the pair of
    # its first two tokens (a two-token ban: the first token may come, the second may not).
    bans = [[pair[:1]] if i % 2 == 0 else [pair] for i, pair in enumerate(first_two)]
    banned = generator.generate(PROMPTS, batch_size=5, bans=bans)
    assert banned == generator.generate_one_by_one(PROMPTS, bans=bans)
    for text, ban in zip(banned, bans, strict=True):
        assert tuple(tokenizer(text)["input_ids"])[: len(ban[0])] != ban[0], text
    unbanned = generator.generate(PROMPTS, batch_size=5, bans=[[] for _ in PROMPTS])
    assert unbanned == free


def test_candidates_come_back_grouped_per_prompt_best_beam_first(tiny):
    model, tokenizer, _ = tiny
    beams = Generator(model, tokenizer, GenerationConfig(max_new_tokens=5, num_beams=3))
    several = Generator(
        model, tokenizer, GenerationConfig(max_new_tokens=5, num_beams=3, candidates=3)
    )
    groups = several.generate_candidates(PROMPTS, batch_size=2)
    assert [len(g) for g in groups] == [3] * len(PROMPTS)
    assert [g[0] for g in groups] == beams.generate(PROMPTS, batch_size=2)
    with pytest.raises(ValueError):
        GenerationConfig(num_beams=2, candidates=3)


def test_batch_by_length_sorts_caps_and_bounds_the_length_spread():
    lengths = [5, 3, 3, 9, 4, 3]
    seen: list[list[int]] = []

    def run(chunk, bans):
        seen.append(chunk)
        assert bans == [[(i,)] for i in chunk]
        return [[f"out{i}"] for i in chunk]

    bans = [[(i,)] for i in range(len(lengths))]
    out = batch_by_length(lengths, 2, bans, run)
    assert out == [[f"out{i}"] for i in range(len(lengths))]
    assert seen == [[1, 2], [5, 4], [0, 3]]
    seen.clear()
    batch_by_length(lengths, 2, bans, run, max_spread=0)
    assert seen == [[1, 2], [5], [4], [0], [3]]
    seen.clear()
    batch_by_length(lengths, 8, bans, run, max_spread=1)
    assert seen == [[1, 2, 5, 4], [0], [3]]
