"""Tiny randomly initialised causal LMs (GPT-2, Llama) with an in-test BPE tokenizer.

Used by the language-model tests to exercise code paths in well under a second; the real
SmolLM2 is only loaded by tests marked ``model``.
"""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "the tuner is accurate and easy to read",
    "the strings sound bright and stay in tune",
    "great cable for the price, no hum or noise",
    "the pedal is solid and the switch feels sturdy",
    "Product features: tuner, display, price",
    "Shopper cares about: sound, quality",
    "Shopper liked: strings, cable",
    'A reviewer wrote: "it works well"',
    "Explanation: the gig bag is well padded",
]
# Short prompts of different token lengths, for the generation tests of both engines.
PROMPTS = [
    "Product features: tuner",
    "the strings sound bright and stay in tune with the",
    "great cable for the price, no hum or noise",
    "Explanation:",
    "Shopper cares about: sound, quality and the tuner",
]

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer(folder: Path):
    """A byte-level BPE tokenizer trained on ``CORPUS`` (offline, ~50 ms)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    raw.train_from_iterator(CORPUS * 4, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(str(folder))
    return tokenizer


def build_model(folder: Path, kind: str = "gpt2", seed: int = 0) -> Path:
    """Save a tiny random ``kind`` ("gpt2" or "llama") model + tokenizer into ``folder``."""
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(folder)
    vocab = len(tokenizer)
    if kind == "gpt2":
        config = GPT2Config(
            vocab_size=vocab,
            n_positions=256,
            n_embd=32,
            n_layer=2,
            n_head=2,
            bos_token_id=tokenizer.eos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    else:
        config = LlamaConfig(
            vocab_size=vocab,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            bos_token_id=tokenizer.eos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=True,
        )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(str(folder))
    return folder


def dot_model(folder: Path):
    """A tiny Llama whose favourite token is "." at every step (a large constant component in
    the residual stream that only "."'s output row rewards): without ``min_new_tokens`` it
    writes "." and goes on; with a minimum of m it writes m other tokens, then the "." it
    stops at. Returns ``(model, tokenizer, the id of ".")``."""
    import torch

    from recx_worker.lm.loading import load_causal_lm

    model, tokenizer, _ = load_causal_lm(str(build_model(folder, "llama")))
    dot = tokenizer.convert_tokens_to_ids(".")
    with torch.no_grad():
        weights = model.get_input_embeddings().weight  # tied with the output rows
        weights[:, 0] = 50.0
        weights[dot, 0] = 100.0
    return model, tokenizer, dot
