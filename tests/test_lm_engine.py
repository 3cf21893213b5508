"""The CTranslate2 engine with a tiny random Llama: real conversion, real generation."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ctranslate2")

from lm_tiny import PROMPTS, build_model, dot_model  # noqa: E402

from recx_worker.lm.ct2 import (  # noqa: E402
    CACHE_FORMAT,
    Ct2Generator,
    cached_ct2_model,
    contains,
    ensure_ct2_model,
)
from recx_worker.lm.device import select_device  # noqa: E402
from recx_worker.lm.engine import SPLIT, SPLIT_MIN_BATCH, SplitGenerator, resolve_engine  # noqa: E402
from recx_worker.lm.generation import (  # noqa: E402
    GenerationConfig,
    Generator,
    NucleusSampler,
    sentence_end_ids,
)
from recx_worker.lm.loading import load_causal_lm, load_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.set_num_threads(1)
    folder = build_model(tmp_path_factory.mktemp("llama"), "llama")
    cache = tmp_path_factory.mktemp("cache")
    loads = []

    def load():
        loads.append(1)
        model, tokenizer, _ = load_causal_lm(str(folder))
        return model, tokenizer

    key = {"base": "tiny-llama"}
    path = ensure_ct2_model(cache, "tiny", key, load, quantization="float32")
    return folder, cache, key, path, loads


def generator(path, max_spread=0, **config):
    return Ct2Generator(
        path,
        load_tokenizer(str(path)),
        GenerationConfig(max_new_tokens=8, **config),
        threads=1,
        max_spread=max_spread,
    )


class RecordingModel:
    """The real ``ctranslate2.Generator``, recording the prompt lengths of each call."""

    def __init__(self, model):
        self.model = model
        self.calls: list[list[int]] = []

    def generate_batch(self, tokens, **options):
        self.calls.append([len(t) for t in tokens])
        return self.model.generate_batch(tokens, **options)


def test_conversion_is_cached_by_key(tiny):
    _, cache, key, path, loads = tiny
    assert loads == [1] and (path / "model.bin").exists()
    full = key | {"quantization": "float32", "format": CACHE_FORMAT}
    assert cached_ct2_model(cache, "tiny", full) == path
    assert Ct2Generator(path, load_tokenizer(str(path))).parameters["body"] > 0
    again = ensure_ct2_model(cache, "tiny", key, lambda: pytest.fail("reconverted"), "float32")
    assert again == path
    assert cached_ct2_model(cache, "tiny", {"base": "other", "quantization": "float32"}) is None


def test_batched_greedy_equals_one_by_one(tiny):
    gen = generator(tiny[3])
    batched = gen.generate(PROMPTS, batch_size=4)
    assert batched == gen.generate_one_by_one(PROMPTS)
    assert len(set(batched)) > 1
    assert gen.generate([], batch_size=2) == []
    with pytest.raises(ValueError):
        gen.generate(PROMPTS, batch_size=0)


def test_each_ct2_batch_holds_prompts_of_one_length(tiny):
    """CTranslate2 forwards only the shortest prompt of a batch at once: by default a batch
    holds one prompt length (output unchanged), ``max_spread=None`` mixes them."""
    prompts = [*PROMPTS, *PROMPTS[:3]]
    one_length = generator(tiny[3])
    one_length.model = RecordingModel(one_length.model)
    mixed = generator(tiny[3], max_spread=None)
    mixed.model = RecordingModel(mixed.model)
    assert one_length.generate(prompts, batch_size=8) == mixed.generate(prompts, batch_size=8)
    assert all(len(set(call)) == 1 for call in one_length.model.calls)
    assert sorted(n for call in one_length.model.calls for n in call) == mixed.model.calls[0]
    assert len(set(mixed.model.calls[0])) > 1


def test_float32_greedy_matches_the_torch_reference(tiny):
    folder, *_, path, _ = tiny
    model, tokenizer, _ = load_causal_lm(str(folder))
    reference = Generator(model, tokenizer, GenerationConfig(max_new_tokens=8))
    assert generator(path).generate(PROMPTS, batch_size=5) == reference.generate(PROMPTS, 5)


def test_per_row_bans_hold_and_leave_other_rows_alone(tiny):
    """Ban, for row 0 only, a token sequence its free output contains: row 0 changes and no
    longer contains it; the other rows (sharing the batch) are as without bans; the result
    equals the torch reference with the same per-row bans."""
    folder, *_, path, _ = tiny
    gen = generator(path, max_spread=None)  # mixed lengths share a batch, so rows regenerate
    tokenizer = gen.tokenizer
    free = gen.generate(PROMPTS, batch_size=5)
    ids = tokenizer(free[0], add_special_tokens=False)["input_ids"]
    banned = [tuple(ids[1:3]), tuple(ids[:1])]
    bans = [banned] + [[] for _ in PROMPTS[1:]]
    got = gen.generate(PROMPTS, batch_size=5, bans=bans)
    assert got[1:] == free[1:]
    assert got[0] != free[0]
    assert not contains(tokenizer(got[0], add_special_tokens=False)["input_ids"], banned)
    assert gen.ban_regenerations >= 1
    model, torch_tokenizer, _ = load_causal_lm(str(folder))
    reference = Generator(model, torch_tokenizer, GenerationConfig(max_new_tokens=8))
    assert got == reference.generate(PROMPTS, batch_size=5, bans=bans)
    assert got == gen.generate_one_by_one(PROMPTS, bans=bans)


def test_beams_return_candidates_free_of_the_row_bans(tiny):
    gen = generator(tiny[3], num_beams=3, candidates=3)
    free = gen.generate_candidates(PROMPTS, batch_size=5)
    assert all(len(group) == 3 for group in free)
    tokenizer = gen.tokenizer
    first = tokenizer(free[2][0], add_special_tokens=False)["input_ids"][:1]
    bans = [[], [], [tuple(first)], [], []]
    got = gen.generate_candidates(PROMPTS, batch_size=5, bans=bans)
    for text in got[2]:
        assert not contains(tokenizer(text, add_special_tokens=False)["input_ids"], bans[2])


def test_sentence_end_ids_are_the_end_token_and_punctuation_tokens(tiny):
    *_, path, _ = tiny
    tokenizer = load_tokenizer(str(path))
    ids = sentence_end_ids(tokenizer)
    assert ids[0] == tokenizer.eos_token_id
    texts = {tokenizer.decode([i]) for i in ids[1:]}
    assert {".", "!", "?", "\n"} <= texts
    assert all(set(text) <= set(".!?\"'\n ") for text in texts)
    assert tokenizer.convert_tokens_to_ids("the") not in ids


def test_min_new_tokens_stops_at_the_first_sentence_end_on_both_engines(tmp_path):
    """A tiny Llama whose favourite token is "." at every step (a large constant component
    in the residual stream that only "."'s output row rewards): without ``min_new_tokens`` it
    writes "." and goes on (only the end token stops it); with 3 it writes 3 other tokens,
    then the "." it stops at, and keeps it, on CTranslate2 and on torch alike."""
    model, tokenizer, dot = dot_model(tmp_path / "llama")
    path = ensure_ct2_model(
        tmp_path / "cache", "dot", {"base": "dot"}, lambda: (model, tokenizer), "float32"
    )
    for min_new in (0, 3):
        config = GenerationConfig(max_new_tokens=6, min_new_tokens=min_new)
        engines = (
            Ct2Generator(path, load_tokenizer(str(path)), config, threads=1),
            Generator(model, tokenizer, config),
        )
        for gen in engines:
            out = gen.generate(PROMPTS[:2], batch_size=2)
            for text in out:
                ids = tokenizer(text, add_special_tokens=False)["input_ids"]
                if min_new == 0:
                    assert ids[0] == dot and len(ids) == 6, (gen, text)
                else:
                    assert len(ids) == 4 and ids[-1] == dot and dot not in ids[:3], (gen, text)


def test_min_new_tokens_holds_back_the_end_token_on_both_engines(tiny):
    """Make the first token each engine would emit the end token: without ``min_new_tokens``
    the answer ends at once (empty; torch keeps the end token itself in the text, as it is no
    special token here); with 4 it has at least 4 tokens, on CTranslate2 and on torch alike."""
    folder, *_, path, _ = tiny
    first = generator(path).generate(PROMPTS[:1], batch_size=1)[0]
    tokenizer = load_tokenizer(str(path))
    stop = tokenizer.convert_ids_to_tokens(tokenizer(first, add_special_tokens=False)["input_ids"])[
        0
    ]
    model, torch_tokenizer, _ = load_causal_lm(str(folder))
    for min_new in (0, 4):
        ct2 = generator(path, min_new_tokens=min_new)
        ct2.tokenizer.eos_token = stop
        reference = Generator(
            model, torch_tokenizer, GenerationConfig(max_new_tokens=8, min_new_tokens=min_new)
        )
        reference.tokenizer.eos_token = stop
        for gen in (ct2, reference):
            out = gen.generate(PROMPTS[:1], batch_size=1)[0]
            n = len(tokenizer(out, add_special_tokens=False)["input_ids"])
            assert (n <= 1) if min_new == 0 else (n >= min_new), (gen, out)
    torch_tokenizer.eos_token = "<|endoftext|>"


def test_decoding_options_are_checked():
    with pytest.raises(ValueError, match="min_new_tokens"):
        GenerationConfig(max_new_tokens=8, min_new_tokens=8)
    with pytest.raises(ValueError, match="length_penalty"):
        GenerationConfig(length_penalty=-1)
    beams = GenerationConfig(num_beams=4, length_penalty=2.0, min_new_tokens=3).generate_kwargs()
    assert beams["length_penalty"] == 2.0 and beams["min_new_tokens"] == 3
    assert "length_penalty" not in GenerationConfig().generate_kwargs()  # greedy: no effect
    with pytest.raises(ValueError, match="temperature"):
        GenerationConfig(top_p=0.9, temperature=-0.5)
    greedy = GenerationConfig(top_p=0.9, temperature=0)  # how TOML turns a manifest's top_p off
    assert not greedy.sampling and greedy.generate_kwargs()["do_sample"] is False
    # one row per prompt: NucleusSampler draws the token, generate() runs greedily
    one_row = GenerationConfig(top_p=0.9, top_k=20, temperature=0.5)
    assert one_row.samples_by_processor and one_row.generate_kwargs()["do_sample"] is False
    sampled = GenerationConfig(top_p=0.9, top_k=20, temperature=0.5, candidates=2)
    assert not sampled.samples_by_processor
    assert sampled.generate_kwargs()["do_sample"] is True
    assert sampled.generate_kwargs()["top_k"] == 20
    with pytest.raises(ValueError, match="top_k"):
        GenerationConfig(top_p=0.9, top_k=-1)


def test_nucleus_sampler_draws_from_the_nucleus_only():
    inf = float("-inf")
    scores = torch.tensor([[0.0, 1.0, inf, 5.0], [2.0, 2.0, inf, inf]])
    drawn: list[set[int]] = [set(), set()]
    for seed in range(40):
        sampler = NucleusSampler(GenerationConfig(top_p=0.6, seed=seed), "cpu")
        out = sampler(None, scores)
        assert (out == 0).sum(dim=-1).tolist() == [1, 1] and out[0, 2] == inf
        for row in range(2):
            drawn[row].add(int(out[row].argmax()))
    # row 0: token 3 holds 98 % of the mass, so the 0.6 nucleus is token 3 alone; row 1: two
    # equal tokens, the nucleus needs both, and 40 seeds draw both
    assert drawn == [{3}, {0, 1}]
    wide = NucleusSampler(GenerationConfig(top_p=1.0, top_k=1, seed=3), "cpu")
    distinct = torch.tensor([[0.0, 1.0, inf, 5.0], [1.0, 3.0, 2.0, 0.0]])
    assert wide(None, distinct).argmax(dim=-1).tolist() == [3, 1]  # top_k 1: the argmax


def test_sampling_on_torch_is_seeded_and_top_k_1_is_greedy(tiny):
    folder, *_ = tiny
    model, tokenizer, _ = load_causal_lm(str(folder))

    def run(**config):
        gen = Generator(model, tokenizer, GenerationConfig(max_new_tokens=6, **config))
        return gen.generate(PROMPTS, batch_size=5)

    assert run(top_p=1.0, top_k=1) == run()
    assert run(top_p=0.95, seed=1) == run(top_p=0.95, seed=1)
    assert len({tuple(run(top_p=1.0, temperature=2.0, seed=s)) for s in range(3)}) > 1


def test_contains_finds_contiguous_runs_only():
    assert contains([1, 2, 3, 4], [(2, 3)])
    assert not contains([1, 2, 4, 3], [(2, 3)])
    assert contains([5], [(9, 9), (5,)])
    assert not contains([1, 2], [])


def test_engine_choice():
    cpu = select_device("cpu")
    assert resolve_engine("auto", cpu, bf16_matrix=False) == ("ct2", cpu)
    assert resolve_engine("torch", cpu, bf16_matrix=True) == ("torch", cpu)
    assert resolve_engine("ct2", cpu, bf16_matrix=True) == ("ct2", cpu)
    with pytest.raises(ValueError, match="unknown engine"):
        resolve_engine("onnx", cpu)


def test_auto_splits_greedy_decoding_on_bf16_matrix_cpus_only():
    cpu = select_device("cpu")
    engine, device = resolve_engine("auto", cpu, bf16_matrix=True, rows_per_prompt=1)
    assert (engine, device.device, device.dtype_name) == (SPLIT, "cpu", "bfloat16")
    # beams ran faster on ct2; an explicit float32 keeps ct2; an explicit bfloat16 is torch's
    assert resolve_engine("auto", cpu, bf16_matrix=True, rows_per_prompt=4) == ("ct2", cpu)
    assert resolve_engine("auto", cpu, bf16_matrix=True, dtype="float32") == ("ct2", cpu)
    assert resolve_engine("auto", cpu, bf16_matrix=True, allow_bf16=False) == ("ct2", cpu)
    engine, device = resolve_engine("auto", cpu, bf16_matrix=False, dtype="bfloat16")
    assert (engine, device.dtype_name) == ("torch", "bfloat16")


def test_bf16_is_the_lora_explainers_default_only():
    from recx_worker.default_plugins.lora import LoraExplainer
    from recx_worker.default_plugins.prompt import PromptExplainer

    assert LoraExplainer.cpu_bf16_default and not PromptExplainer.cpu_bf16_default


def test_cpu_bf16_detection_can_be_forced(monkeypatch):
    from recx_worker.lm.device import cpu_has_bf16_matrix_units

    for forced, expected in (("1", True), ("0", False)):
        monkeypatch.setenv("RECX_CPU_BF16", forced)
        cpu_has_bf16_matrix_units.cache_clear()
        assert cpu_has_bf16_matrix_units() is expected
    cpu_has_bf16_matrix_units.cache_clear()


def test_auto_engine_on_a_bf16_cpu_sends_small_calls_to_ct2_and_large_ones_to_bf16(
    tiny, tmp_path, monkeypatch
):
    """On a CPU that says it has bf16 matrix units, ``auto`` with greedy decoding loads both
    engines for an explainer that allows bf16 (``cpu_bf16``; lora by default): calls below
    ``SPLIT_MIN_BATCH`` prompts go to ct2, larger ones to torch in bfloat16 (each engine's own
    calls are recorded); with beams, or without the option, it is ct2 alone."""
    from recx_worker.lm.device import cpu_has_bf16_matrix_units
    from recx_worker.plugins import create_explainer

    monkeypatch.setenv("RECX_CPU_BF16", "1")
    cpu_has_bf16_matrix_units.cache_clear()
    try:
        unvalidated = create_explainer("prompt", base=str(tiny[0]), model_cache=tmp_path)
        unvalidated.warm_up()  # bf16 is opt-in per explainer (prompt lost quality there)
        assert unvalidated.engine == "ct2"
        unvalidated.close()
        greedy = create_explainer("prompt", base=str(tiny[0]), model_cache=tmp_path, cpu_bf16=True)
        greedy.warm_up()
        split = greedy.generator
        assert greedy.engine == SPLIT and isinstance(split, SplitGenerator)
        assert split.small.engine == "ct2" and split.large.engine == "torch"
        assert next(split.large.model.parameters()).dtype == torch.bfloat16
        split.small.model = RecordingModel(split.small.model)
        bf16_calls = []
        run = split.large._run
        split.large._run = lambda prompts, bans=None, minimums=None: (
            bf16_calls.append(len(prompts)) or run(prompts, bans, minimums)
        )
        few = PROMPTS[:2]
        many = (PROMPTS * SPLIT_MIN_BATCH)[:SPLIT_MIN_BATCH]
        assert len(greedy.raw_generate(few)) == 2 and not bf16_calls
        assert split.small.model.calls  # ct2 answered the small call
        ct2_calls = len(split.small.model.calls)
        outputs = greedy.raw_generate(many)
        assert len(outputs) == SPLIT_MIN_BATCH and all(len(o) == 1 for o in outputs)
        assert sum(bf16_calls) == SPLIT_MIN_BATCH and len(split.small.model.calls) == ct2_calls
        # a long call's short last batch goes to ct2, the whole batches to torch, in order
        bf16_calls.clear()
        longer = (PROMPTS * (SPLIT_MIN_BATCH + 3))[: SPLIT_MIN_BATCH + 3]
        mixed = split.generate(longer, batch_size=SPLIT_MIN_BATCH)
        assert sum(bf16_calls) == SPLIT_MIN_BATCH and len(split.small.model.calls) > ct2_calls
        assert mixed[:SPLIT_MIN_BATCH] == split.large.generate(longer[:SPLIT_MIN_BATCH])
        assert mixed[SPLIT_MIN_BATCH:] == split.small.generate(longer[SPLIT_MIN_BATCH:])
        assert [split._cut(n, b) for n, b in ((40, 16), (48, 16), (50, 32), (40, 8))] == [
            32,
            48,
            50,
            0,
        ]
        greedy.close()
        beams = create_explainer(
            "prompt",
            base=str(tiny[0]),
            model_cache=tmp_path,
            num_beams=2,
            candidates=2,
            cpu_bf16=True,
        )
        beams.warm_up()
        assert beams.engine == "ct2"
        beams.close()
    finally:
        cpu_has_bf16_matrix_units.cache_clear()


def test_prompt_explainer_on_ct2_converts_once_and_answers(tiny, tmp_path):
    from recx_worker.events import Evidence, RecommendationEvent
    from recx_worker.explainer import ExplainRequest
    from recx_worker.plugins import create_explainer

    folder = tiny[0]
    requests = [
        ExplainRequest(
            event=RecommendationEvent(event_id=f"e{i}", user_id="u", item_id="i"),
            evidence=Evidence(item_features=["tuner", "display"]),
            max_words=20,
        )
        for i in range(3)
    ]
    outcomes = {}
    for engine in ("ct2", "torch"):
        explainer = create_explainer(
            "prompt", base=str(folder), engine=engine, model_cache=tmp_path, max_new_tokens=6
        )
        explainer.warm_up()
        assert explainer.engine == engine
        outcomes[engine] = explainer.explain_batch(requests)
        explainer.close()
    assert len(outcomes["ct2"]) == 3
    assert list((tmp_path / "ct2").iterdir())  # converted into the model cache (int8)


@pytest.mark.model
def test_real_lora_on_ct2_is_cached_and_batches_like_one_by_one():
    """The shipped adapter merged into SmolLM2 and converted once (keyed by both checksums):
    a second explainer loads the cached int8 model without touching torch weights; greedy
    output of a batch of equal-length prompts equals one prompt at a time on the real model.

    (Prompts of different lengths are not bit-identical in a batch: CTranslate2 forwards the
    shortest prompt's length at once and the rest token by token, and int8 near-ties then
    flip now and then; docs/engine.md measures the quality instead.)"""
    from pathlib import Path

    from recx_worker.events import Evidence
    from recx_worker.lm.prompting import lm_input
    from recx_worker.plugins import create_explainer

    adapter = Path("adapters/smollm2-musical-v2")
    if not (adapter / "manifest.json").exists():
        pytest.skip("no trained adapter in the working tree")
    first = create_explainer("lora", adapter_dir=adapter, engine="ct2", threads=2)
    first.warm_up()
    folder = first.generator.model_dir
    key = json_key(folder)
    assert key["adapter"].startswith("sha256:") and key["base"].startswith("sha256:")
    second = create_explainer("lora", adapter_dir=adapter, engine="ct2", num_beams=1, candidates=1)
    second._load = lambda device: pytest.fail("the cached conversion was not reused")
    second.warm_up()
    assert second.generator.model_dir == folder and second.adapter_version == "smollm2-musical-v2"
    prompts = [
        lm_input(Evidence(item_features=features, item_snippet=snippet)) + " The " + features[0]
        for features, snippet in [
            (["tuner", "display"], "Bright display, holds tune."),
            (["strings"], "They sound warm."),
            (["cable", "price"], "Cheap but no hum."),
        ]
    ]
    gen = second.generator
    same_length = [prompts[0]] * 3
    assert gen.generate(same_length, batch_size=3) == gen.generate_one_by_one(same_length)
    texts = gen.generate(prompts, batch_size=3)
    assert all(len(text.split()) >= 3 for text in texts), texts


def json_key(folder):
    from recx_worker.lm.ct2 import read_meta

    return read_meta(folder)["key"]


def test_tokenizer_from_a_folder_equals_auto_tokenizer(tiny):
    """``load_tokenizer`` reads a folder's tokenizer.json as ``PreTrainedTokenizerFast``
    (no PyTorch import): ids, tokens, decoding and chat template as ``AutoTokenizer``'s."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    folder = tiny[0]
    fast, auto = load_tokenizer(str(folder)), AutoTokenizer.from_pretrained(str(folder))
    assert isinstance(fast, PreTrainedTokenizerFast)
    for text in [*PROMPTS, "Caf\u00e9 na\u00efve 100% <|x|>!!", ""]:
        ids = auto(text, add_special_tokens=False)["input_ids"]
        assert fast(text, add_special_tokens=False)["input_ids"] == ids
        assert fast.convert_ids_to_tokens(ids) == auto.convert_ids_to_tokens(ids)
        assert fast.batch_decode([ids], skip_special_tokens=True) == auto.batch_decode(
            [ids], skip_special_tokens=True
        )
    messages = [{"role": "user", "content": "Why this tuner?"}]
    assert fast.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    ) == auto.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert (fast.eos_token, fast.pad_token) == (auto.eos_token, auto.pad_token or auto.eos_token)


def test_a_cpu_host_picks_device_threads_and_tokenizer_without_importing_torch(tiny):
    import subprocess
    import sys

    from recx_worker.lm.device import has_nvidia_driver

    if has_nvidia_driver():
        pytest.skip("an NVIDIA driver is present: 'auto' asks PyTorch about CUDA")
    script = (
        "import sys\n"
        "from recx_worker.lm.device import cpu_threads, select_device\n"
        "from recx_worker.lm.loading import load_tokenizer\n"
        "choice = select_device('auto')\n"
        f"tokenizer = load_tokenizer({str(tiny[0])!r})\n"
        "print(choice.device, cpu_threads() >= 1, 'torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert out == ["cpu", "True", "False"]
