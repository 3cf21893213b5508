"""Deadline-aware batching: the cost model, the admission rule, and the chain's hook (a stage
gets only what it is measured to answer within its deadline or the latency target; the rest
goes to the next stage at once, recorded as ``deadline_skipped``)."""

from __future__ import annotations

import time
from typing import ClassVar

import pytest
from test_chain import LEXICON, req

from recx_worker.batch_sizer import CostModel, DeadlineBatcher
from recx_worker.chain import ChainResult, ExplainerChain
from recx_worker.default_plugins.template import TemplateExplainer
from recx_worker.explainer import BaseExplainer, Explanation
from recx_worker.guard import Guard


def test_cost_model_separates_overhead_from_per_request_cost() -> None:
    model = CostModel(alpha=0.5)
    for size in (1, 8, 32, 8, 1, 32):
        model.observe(size, 0.2 + 0.05 * size)
    overhead, per_request = model.coefficients()
    assert overhead == pytest.approx(0.2, abs=1e-6)
    assert per_request == pytest.approx(0.05, abs=1e-6)
    assert model.predict(16) == pytest.approx(1.0, abs=1e-6)


def test_one_batch_size_alone_gives_seconds_per_request() -> None:
    model = CostModel(alpha=0.3)
    model.observe(10, 2.0)
    assert model.coefficients() == (0.0, pytest.approx(0.2))


def test_admission_fits_the_budget_with_headroom() -> None:
    batcher = DeadlineBatcher(headroom=0.8)
    assert batcher.admit("lm", 64, budget_s=10.0) == 64  # unmeasured, no target: all
    batcher.observe("lm", 4, 0.5 + 0.25 * 4)
    batcher.observe("lm", 16, 0.5 + 0.25 * 16)
    # (10 s x 0.8 - 0.5 s) / 0.25 s = 30
    assert batcher.admit("lm", 64, budget_s=10.0) == 30
    assert batcher.admit("lm", 12, budget_s=10.0) == 12
    # not even the overhead fits: one request still goes, so the estimate can recover
    assert batcher.admit("lm", 64, budget_s=0.4) == 1
    assert batcher.admit("lm", 64, budget_s=-1.0) == 0  # the latency target is spent
    assert batcher.snapshot()["lm"]["admitted"] == 0
    assert "250 ms per request" in batcher.explain("lm", 0.4)


def test_latency_target_caps_the_budget_and_probes_an_unmeasured_stage() -> None:
    batcher = DeadlineBatcher(latency_target_s=2.0, probe=2)
    assert batcher.budget(deadline_s=120.0, elapsed_s=0.5) == pytest.approx(1.5)
    assert batcher.budget(deadline_s=1.0, elapsed_s=0.5) == pytest.approx(1.0)
    assert batcher.admit("lm", 64, budget_s=1.5) == 2
    assert DeadlineBatcher(latency_target_s=0).latency_target_s is None


def test_a_timeout_teaches_the_batcher_to_send_less() -> None:
    batcher = DeadlineBatcher()
    batcher.observe("lm", 32, 1.0)  # timed out after 1 s: at least 31 ms per request
    assert batcher.admit("lm", 32, budget_s=1.0) < 32


class Costly(BaseExplainer):
    """Takes ``overhead + per_request x n`` seconds for a batch of n (like a batched LM)."""

    name: ClassVar[str] = "costly"

    def __init__(self, overhead: float, per_request: float, **options):
        super().__init__(**options)
        self.overhead, self.per_request = overhead, per_request
        self.sizes: list[int] = []

    def explain_batch(self, requests):
        self.sizes.append(len(requests))
        time.sleep(self.overhead + self.per_request * len(requests))
        return [Explanation("The tuner display is bright and clear.") for _ in requests]


def test_chain_sends_the_slow_stage_only_what_meets_its_deadline() -> None:
    costly = Costly(overhead=0.02, per_request=0.02)
    chain = ExplainerChain([(costly, 0.5), (TemplateExplainer(), 1.0)], Guard(LEXICON))
    chain.explain([req(f"w{i}") for i in range(4)])  # measured: ~0.1 s for 4
    results = chain.explain([req(f"e{i}") for i in range(60)])  # 60 x 20 ms > 0.5 s
    assert all(isinstance(r, ChainResult) for r in results)
    by_costly = [r for r in results if r.event.explainer == "costly"]
    skipped = [r for r in results if r.event.explainer == "template"]
    assert 5 <= len(by_costly) < 60 and len(by_costly) + len(skipped) == 60
    assert by_costly == results[: len(by_costly)]  # the oldest requests go first
    assert all(s.skipped[0].reason == "deadline_skipped" for s in skipped)
    assert "per request" in skipped[0].skipped[0].detail
    assert not any(s.reason == "timeout" for r in results for s in r.skipped)
    assert costly.sizes[-1] == len(by_costly)


def test_latency_target_sends_the_rest_to_the_template_at_once() -> None:
    costly = Costly(overhead=0.01, per_request=0.05)
    chain = ExplainerChain(
        [(costly, 60.0), (TemplateExplainer(), 1.0)], Guard(LEXICON), DeadlineBatcher(0.3)
    )
    first = chain.explain([req(f"p{i}") for i in range(8)])
    assert [r.event.explainer for r in first].count("costly") == 1  # the probe
    started = time.perf_counter()
    results = chain.explain([req(f"e{i}") for i in range(20)])
    elapsed = time.perf_counter() - started
    answered = [r.event.explainer for r in results].count("costly")
    assert 1 <= answered <= 5  # (0.3 s x 0.8 - 0.01) / 0.05 = 4
    assert elapsed < 1.0  # instead of 20 x 50 ms in the slow stage


def test_the_last_stage_is_never_sized() -> None:
    costly = Costly(overhead=0.0, per_request=0.01)
    chain = ExplainerChain([(costly, 0.05)], Guard(LEXICON))
    chain.explain([req("a")])
    results = chain.explain([req(f"e{i}") for i in range(3)])
    assert [r.event.explainer for r in results] == ["costly"] * 3


def test_metrics_export_what_the_batcher_measured() -> None:
    from prometheus_client import generate_latest

    from recx_worker.metrics import WorkerMetrics

    batcher = DeadlineBatcher()
    batcher.observe("lora", 8, 0.5 + 0.1 * 8)
    batcher.observe("lora", 16, 0.5 + 0.1 * 16)
    batcher.admit("lora", 64, budget_s=2.0)  # (1.6 - 0.5) / 0.1 = 11
    metrics = WorkerMetrics()
    metrics.watch_batcher(batcher)
    metrics.fallbacks.labels("lora", "deadline_skipped").inc(53)
    text = generate_latest(metrics.registry).decode()
    assert 'recx_stage_admitted_requests{stage="lora"} 11.0' in text
    line = next(x for x in text.splitlines() if x.startswith("recx_stage_seconds_per_request{"))
    assert float(line.split()[-1]) == pytest.approx(0.1)
    assert 'recx_fallbacks_total{reason="deadline_skipped",stage="lora"} 53.0' in text


def test_the_last_stage_answers_even_when_the_target_is_spent() -> None:
    costly = Costly(overhead=0.15, per_request=0.0)
    chain = ExplainerChain(
        [(costly, 5.0), (TemplateExplainer(), 1.0)], Guard(LEXICON), DeadlineBatcher(0.1)
    )
    results = chain.explain([req("a"), req("b")])  # the probe alone overruns the target
    assert [r.event.explainer for r in results] == ["template", "template"]
    assert [s.reason for s in results[0].skipped] == ["timeout"]
    assert [s.reason for s in results[1].skipped] == ["deadline_skipped"]
