"""Raw runs and delivered outputs (replayed through the real chain and guard)."""

from __future__ import annotations

from pathlib import Path

from recx_worker.events import Evidence, RecommendationEvent
from recx_worker.explainer import ExplainFailure, ExplainRequest, Explanation
from recx_worker.features import Lexicon
from recx_worker.guard import Guard
from recx_worker.prepared import ExplanationRecord
from training.evaluation.baselines import MostFrequentExplanation
from training.evaluation.runner import NO_ANSWER, RawRun, deliver, run_explainer

LEXICON = Lexicon(["tuner", "strings", "display", "price"])


def request(event_id: str, item: str, features: list[str]) -> ExplainRequest:
    event = RecommendationEvent(event_id=event_id, user_id="u", item_id=item)
    return ExplainRequest(event, Evidence(item_features=features))


def record(rid: str, item: str, text: str) -> ExplanationRecord:
    return ExplanationRecord(
        record_id=rid, user_id="u", item_id=item, rating=5, feature="tuner", explanation=text
    )


def test_most_frequent_baseline_per_item_with_global_default():
    train = [
        record("1", "A", "the tuner is accurate"),
        record("2", "A", "great price for this"),
        record("3", "A", "the tuner is accurate"),
        record("4", "B", "the strings sound great"),
    ]
    baseline = MostFrequentExplanation(train)
    reqs = [request("e1", "A", []), request("e2", "B", []), request("e3", "Z", [])]
    run = run_explainer(baseline, reqs, batch_size=2, progress=False)
    assert run.texts == [
        "the tuner is accurate",
        "the strings sound great",
        "the tuner is accurate",
    ]
    assert run.failures == 0


def test_deliver_falls_back_stage_by_stage_and_records_reasons():
    reqs = [
        request("e1", "A", ["tuner"]),
        request("e2", "A", ["tuner"]),
        request("e3", "A", ["tuner"]),
        request("e4", "A", ["tuner"]),
    ]
    first = RawRun(
        "lm",
        "1",
        [
            Explanation("the tuner is very accurate"),  # published
            Explanation("the strings are great and cheap"),  # ungrounded: no strings here
            ExplainFailure("RuntimeError", "boom"),  # failed
            Explanation("ok"),  # too short
        ],
        1.0,
    )
    second = RawRun(
        "other",
        "1",
        [Explanation("unused")] + [Explanation("a fine tuner for the job")] * 2 + [Explanation("")],
        0.0,
    )
    out = deliver([first, second], reqs, Guard(LEXICON))
    assert out.stages == ["lm", "other", "other", NO_ANSWER]
    assert out.texts == [
        "the tuner is very accurate",
        "a fine tuner for the job",
        "a fine tuner for the job",
        "",
    ]
    assert out.first_stage_rejections == 3
    assert out.first_stage_reasons == {
        "guard: ungrounded feature": 1,
        "declined": 1,  # an ExplainFailure returned on purpose
        "guard: too short": 1,
    }


def test_external_files_named_and_with_failures(tmp_path):
    from training.evaluation.evaluate import parse_external, read_external

    assert parse_external("prompt=runs/p.jsonl") == ("prompt", Path("runs/p.jsonl"))
    assert parse_external("runs/peter.jsonl") == ("ext:peter", Path("runs/peter.jsonl"))
    path = tmp_path / "out.jsonl"
    path.write_text(
        '{"id": "1", "text": "the tuner is fine"}\n'
        '{"id": "2", "text": "", "error": "CleaningError: echoes the prompt"}\n',
        encoding="utf-8",
    )
    records = [record(str(i), "A", "x") for i in (1, 2, 3)]
    run, missing = read_external(path, records, "prompt")
    assert run.name == "prompt" and missing == 1
    assert run.texts == ["the tuner is fine", "", ""]
    assert isinstance(run.outcomes[1], ExplainFailure)
    assert run.outcomes[1].error_class == "CleaningError"
    assert run.failures == 2
