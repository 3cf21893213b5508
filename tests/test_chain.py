"""Chain semantics: raise, timeout, per-item failure and guard rejection all hand the request on.

The explainers here are small test plugins; the chain (with the real guard and the real
template explainer) is the thing under test.
"""

from __future__ import annotations

import threading
import time
from typing import ClassVar

import pytest

from recx_worker.chain import ChainFailure, ChainResult, ExplainerChain
from recx_worker.config import Settings
from recx_worker.default_plugins.template import TemplateExplainer
from recx_worker.events import Evidence, ExplanationEvent, RecommendationEvent, SupportingItem
from recx_worker.explainer import (
    BaseExplainer,
    ExplainerContext,
    ExplainFailure,
    ExplainRequest,
    Explanation,
)
from recx_worker.features import Lexicon
from recx_worker.guard import Guard
from recx_worker.plugins import UnknownExplainerError

LEXICON = Lexicon(["tuner", "display", "strap", "sound", "cable"])


def req(event_id: str) -> ExplainRequest:
    event = RecommendationEvent(event_id=event_id, user_id="u", item_id="i")
    evidence = Evidence(
        item_features=["tuner", "display"],
        supporting_items=[
            SupportingItem(item_id="h", similarity=0.9, rating=5, features=["strap"])
        ],
    )
    return ExplainRequest(event, evidence)


class Fixed(BaseExplainer):
    name: ClassVar[str] = "fixed"
    version: ClassVar[str] = "2.0"

    def __init__(self, text: str = "The tuner display is bright and clear.", **options):
        super().__init__(**options)
        self.text = text
        self.seen: list[list[str]] = []

    def explain_batch(self, requests):
        self.seen.append([r.event.event_id for r in requests])
        return [Explanation(self.text, model="fixed-model", adapter_version="a1") for _ in requests]


class Raising(BaseExplainer):
    name: ClassVar[str] = "raising"

    def explain_batch(self, requests):
        raise RuntimeError("CUDA out of memory")


class Sleeping(BaseExplainer):
    name: ClassVar[str] = "sleeping"

    def __init__(self, seconds: float, **options):
        super().__init__(**options)
        self.seconds = seconds
        self.calls = 0
        self.release = threading.Event()

    def explain_batch(self, requests):
        self.calls += 1
        self.release.wait(self.seconds)
        return [Explanation("The tuner is great and works well.") for _ in requests]


class PickyPerItem(BaseExplainer):
    """Fails on event ids ending in 'x', answers the rest."""

    name: ClassVar[str] = "picky"

    def explain_one(self, request):
        if request.event.event_id.endswith("x"):
            raise ValueError("cannot explain this one")
        return Explanation("The display is bright and easy to read.")


class Ungrounded(BaseExplainer):
    name: ClassVar[str] = "ungrounded"

    def explain_batch(self, requests):
        return [Explanation("The sound is warm and the cable is long.") for _ in requests]


class WrongLength(BaseExplainer):
    name: ClassVar[str] = "wrong-length"

    def explain_batch(self, requests):
        return [Explanation("The tuner is great.")]


class Refusing(BaseExplainer):
    name: ClassVar[str] = "refusing"

    def explain_batch(self, requests):
        return [ExplainFailure("ModelRefused", "no answer") for _ in requests]


class BrokenWarmUp(BaseExplainer):
    name: ClassVar[str] = "broken"

    def warm_up(self):
        raise RuntimeError("adapter not found")


def chain(*stages, deadline: float = 2.0) -> ExplainerChain:
    return ExplainerChain([(s, deadline) for s in stages], Guard(LEXICON))


def test_first_stage_answers_everything():
    first, fallback = Fixed(), TemplateExplainer()
    results = chain(first, fallback).explain([req("a"), req("b")])
    assert all(isinstance(r, ChainResult) for r in results)
    assert [r.event.explainer for r in results] == ["fixed", "fixed"]
    assert results[0].skipped == []
    assert results[0].event.mentioned_features == ["tuner", "display"] and results[0].event.grounded
    assert (results[0].event.model, results[0].event.adapter_version) == ("fixed-model", "a1")
    assert results[0].event.explainer_version == "2.0"
    assert results[0].stage_latency_ms >= 0


def test_raising_stage_hands_the_whole_batch_on():
    results = chain(Raising(), TemplateExplainer()).explain([req("a"), req("b")])
    for result in results:
        assert isinstance(result, ChainResult) and result.event.explainer == "template"
        (skip,) = result.skipped
        assert (skip.explainer, skip.reason) == ("raising", "error")
        assert skip.detail == "RuntimeError: CUDA out of memory"


def test_per_item_failures_only_move_those_items():
    fallback = Fixed()
    results = chain(PickyPerItem(), fallback).explain([req("a"), req("bx"), req("c")])
    assert [r.event.explainer for r in results] == ["picky", "fixed", "picky"]
    assert fallback.seen == [["bx"]]  # the next stage gets only what is still unanswered
    assert results[1].skipped[0].reason == "error"  # a per-request crash is still an error
    assert "ValueError: cannot explain this one" in results[1].skipped[0].detail


def test_explain_failure_is_declined_and_an_exception_is_error():
    (result,) = chain(Refusing(), Raising(), TemplateExplainer()).explain([req("a")])
    declined, crashed = result.skipped
    assert (declined.reason, declined.detail) == ("declined", "ModelRefused: no answer")
    assert (crashed.reason, crashed.detail) == ("error", "RuntimeError: CUDA out of memory")


def test_timeout_hands_on_and_marks_the_busy_stage_unavailable():
    slow = Sleeping(seconds=5)
    c = chain(slow, TemplateExplainer(), deadline=0.2)
    started = time.perf_counter()
    (first,) = c.explain([req("a")])
    assert time.perf_counter() - started < 2
    assert first.event.explainer == "template"
    assert first.skipped[0].reason == "timeout"
    assert first.skipped[0].detail == "no answer within 200 ms"
    # Still busy with the timed-out batch: skipped without being called again.
    (second,) = c.explain([req("b")])
    assert second.skipped[0].reason == "unavailable"
    assert "still busy" in second.skipped[0].detail
    assert slow.calls == 1
    # Once the stuck call finishes, the stage is used again.
    slow.release.set()
    slow.seconds = 0
    deadline = time.monotonic() + 2
    while c.stages[0].unavailable() and time.monotonic() < deadline:
        time.sleep(0.01)
    (third,) = c.explain([req("c")])
    assert third.event.explainer == "sleeping" and third.skipped == []
    c.close()


def test_guard_rejection_hands_on_with_the_reason():
    (result,) = chain(Ungrounded(), TemplateExplainer()).explain([req("a")])
    assert result.event.explainer == "template" and result.event.grounded
    skip = result.skipped[0]
    assert (skip.explainer, skip.reason) == ("ungrounded", "guard_rejected")
    assert skip.detail == "ungrounded feature 'sound'"


def test_wrong_number_of_outcomes_is_a_stage_error():
    (result,) = chain(WrongLength(), TemplateExplainer()).explain([req("a"), req("b")])[:1]
    assert result.skipped[0].detail == "TypeError: returned 1 outcomes for 2 requests"


def test_all_reasons_are_recorded_in_order():
    c = chain(Raising(), Ungrounded(), Refusing(), TemplateExplainer())
    (result,) = c.explain([req("a")])
    assert [(s.explainer, s.reason) for s in result.skipped] == [
        ("raising", "error"),
        ("ungrounded", "guard_rejected"),
        ("refusing", "declined"),
    ]
    assert result.event.explainer == "template"


def test_no_stage_answering_is_a_failure_to_dead_letter():
    (result,) = chain(Raising(), Ungrounded()).explain([req("a")])
    assert isinstance(result, ChainFailure)
    assert [s.explainer for s in result.skipped] == ["raising", "ungrounded"]
    assert result.reason.startswith("no explainer answered: raising: error (RuntimeError")
    assert "ungrounded: guard_rejected (ungrounded feature 'sound')" in result.reason


def test_warm_up_failure_disables_the_stage():
    c = chain(BrokenWarmUp(), TemplateExplainer())
    assert c.warm_up() == {"broken": "warm-up failed: RuntimeError: adapter not found"}
    (result,) = c.explain([req("a")])
    assert result.event.explainer == "template"
    assert result.skipped[0].reason == "unavailable"
    with pytest.raises(RuntimeError, match="adapter not found"):
        chain(BrokenWarmUp(), TemplateExplainer()).warm_up(strict=True)
    with pytest.raises(RuntimeError, match="no explainer in the chain could warm up"):
        chain(BrokenWarmUp()).warm_up()


def test_result_carries_the_event_to_publish():
    (result,) = chain(Raising(), TemplateExplainer()).explain([req("a")])
    event = result.event
    assert isinstance(event, ExplanationEvent)
    assert (event.event_id, event.user_id, event.item_id) == ("a", "u", "i")
    assert event.explainer == "template" and event.text.endswith(".")
    assert event.evidence == result.request.evidence
    assert event.skipped[0].explainer == "raising" and result.skipped is event.skipped
    assert event.latency_ms >= result.stage_latency_ms and event.grounded
    assert event.recommended_at == result.request.event.timestamp


CONTEXT = ExplainerContext(lexicon=LEXICON)


def test_from_settings_builds_stages_through_the_plugins():
    settings = Settings()
    settings.chain.explainers = ["template", "feature-list"]
    settings.chain.deadline_ms = {"template": 250}
    settings.chain.default_deadline_ms = 750
    c = ExplainerChain.from_settings(settings, CONTEXT)
    assert c.names == ["template", "feature-list"]
    assert [s.deadline_s for s in c.stages] == [0.25, 0.75]  # unlisted: the default deadline
    assert c.stages[0].explainer.context is CONTEXT
    (result,) = c.explain([req("a")])
    assert result.event.explainer == "template"
    c.close()


def test_from_settings_rejects_unknown_explainers():
    with pytest.raises(UnknownExplainerError, match="no explainer named 'nope'"):
        ExplainerChain.from_settings(Settings(), CONTEXT, explainers=["template", "nope"])
