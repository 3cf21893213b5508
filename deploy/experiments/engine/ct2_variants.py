"""Two CTranslate2 variants against the engine's own batching, same prompts, same process.

    PYTHONPATH=$PWD .venv/bin/python deploy/experiments/engine/ct2_variants.py inter 64
    PYTHONPATH=$PWD .venv/bin/python deploy/experiments/engine/ct2_variants.py spread 64 0,4,8,none
    PYTHONPATH=$PWD .venv/bin/python deploy/experiments/engine/ct2_variants.py prefill 200

``inter``: ``inter_threads=2, intra_threads=1`` (each one-length group split in halves decoded in
parallel) against ``intra_threads=2``. ``spread``: the generator's ``max_spread`` (how many
tokens prompts of one batch may differ by; ``none`` = any), batch 32, with the bans.
Each variant runs twice, alternating; prints explanations/s (docs/engine.md). ``prefill``: the
largest one-length group of the lora prompts (at most 8), decoded with the default options and
with one new token only (the prompt's forward pass): milliseconds per prompt, best of 5.
"""

from __future__ import annotations

import collections
import math
import sys
import time
from pathlib import Path
from typing import Any


def lora_and_requests(n: int) -> tuple[Any, list[Any]]:
    from recx_worker.config import load_settings
    from recx_worker.enrich import enrich
    from recx_worker.explainer import ExplainerContext, ExplainRequest
    from recx_worker.plugins import create_explainer
    from recx_worker.prepared import PreparedData
    from recx_worker.retrieval.evidence import EvidenceStore
    from training.evaluation.runner import record_event

    data = Path("var/data/musical")
    settings = load_settings(None)
    settings.paths.data_dir = data
    store = EvidenceStore.open(data, Path("var/index/musical"))
    events = [record_event(r) for r in PreparedData(data).split("test")[:n]]
    requests = [
        r for r in enrich(events, store, settings.chain.max_words) if isinstance(r, ExplainRequest)
    ]
    context = ExplainerContext.from_settings(settings, store)
    explainer = create_explainer("lora", context, engine="ct2", threads=2)
    explainer.warm_up()
    return explainer, requests


def inter(n: int) -> None:
    import ctranslate2

    explainer, requests = lora_and_requests(n)
    gen = explainer.generator
    tokens = gen._tokens(explainer.render_prompts(requests))
    options = gen._options()
    groups = collections.defaultdict(list)
    for row in tokens:
        groups[len(row)].append(row)
    print(f"{len(tokens)} prompts in {len(groups)} lengths", flush=True)
    models = {
        f"intra{i}": ctranslate2.Generator(
            str(gen.model_dir),
            device="cpu",
            compute_type="int8",
            intra_threads=i,
            inter_threads=3 - i,
        )
        for i in (2, 1)
    }
    for rep in range(2):
        for name, model in models.items():
            start = time.perf_counter()
            split = 2 if name == "intra1" else 1
            pending = [
                model.generate_batch(
                    g, max_batch_size=math.ceil(len(g) / split), asynchronous=True, **options
                )
                for g in groups.values()
            ]
            for results in pending:
                for result in results:
                    result.result()
            seconds = time.perf_counter() - start
            label = "inter 2 x intra 1" if split == 2 else "intra 2"
            print(f"{label} rep {rep}: {len(tokens) / seconds:.2f} expl/s", flush=True)


def spread(n: int, spreads: list[int | None]) -> None:
    explainer, requests = lora_and_requests(n)
    gen = explainer.generator
    prompts, bans = explainer.render_prompts(requests), explainer.bans(requests)
    first: list[Any] | None = None
    for rep in range(2):
        for value in spreads:
            gen.max_spread = value
            start = time.perf_counter()
            out = gen.generate_candidates(prompts, batch_size=32, bans=bans)
            seconds = time.perf_counter() - start
            first = first or out
            same = sum(a == b for a, b in zip(out, first, strict=True))
            print(
                f"spread {value} rep {rep}: {len(prompts) / seconds:.2f} expl/s, "
                f"{same}/{len(out)} as the first",
                flush=True,
            )


def prefill(n: int) -> None:
    explainer, requests = lora_and_requests(n)
    gen = explainer.generator
    groups = collections.defaultdict(list)
    for row in gen._tokens(explainer.render_prompts(requests)):
        groups[len(row)].append(row)
    length, rows = max(groups.items(), key=lambda kv: len(kv[1]))
    rows = rows[:8]
    default = gen._options()
    for name, options in (
        ("default decoding", default),
        ("prompt only (1 token)", default | {"max_length": 1, "min_length": 0}),
    ):
        best = math.inf
        for _ in range(6):  # the first call warms up
            started = time.perf_counter()
            gen.model.generate_batch(rows, **options)
            best = min(best, time.perf_counter() - started)
        per_prompt = best / len(rows) * 1000
        print(f"{name}: {per_prompt:.1f} ms per prompt ({len(rows)} x {length} tokens)")


if __name__ == "__main__":
    if sys.argv[1] == "inter":
        inter(int(sys.argv[2]))
    elif sys.argv[1] == "prefill":
        prefill(int(sys.argv[2]))
    else:
        spread(int(sys.argv[2]), [None if s == "none" else int(s) for s in sys.argv[3].split(",")])
