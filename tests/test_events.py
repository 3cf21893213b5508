"""The event contracts: schema files in sync with the models, and the schemas accept real events."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from recx_worker.events import (
    ALL_SCHEMAS,
    DeadLetter,
    Evidence,
    ExplanationEvent,
    ExplanationFeedback,
    RecommendationEvent,
    SkippedStage,
    SupportingItem,
)
from recx_worker.schema_gen import check_schemas, schema_documents, write_schemas

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


def test_schema_files_match_the_models():
    """Fails on drift: run `recx schemas write` after an (additive) model change."""
    assert check_schemas(SCHEMAS) == []


def test_every_schema_declares_its_version():
    for name, doc in schema_documents().items():
        assert name.endswith(".v1.json")
        assert doc["properties"]["schema_version"]["const"] == 1
        assert doc["$id"].endswith(name)


def test_check_reports_changed_missing_and_unlisted_files(tmp_path: Path):
    write_schemas(tmp_path)
    assert check_schemas(tmp_path) == []
    changed = tmp_path / "explanation-event.v1.json"
    doc = json.loads(changed.read_text())
    del doc["properties"]["grounded"]
    changed.write_text(json.dumps(doc, indent=2) + "\n")
    (tmp_path / "dead-letter.v1.json").unlink()
    shutil.copy(tmp_path / "recommendation-event.v1.json", tmp_path / "recommendation.v0.json")
    problems = check_schemas(tmp_path)
    assert len(problems) == 3
    assert any("explanation-event.v1.json: differs" in p for p in problems)
    assert any("dead-letter.v1.json: missing" in p for p in problems)
    assert any("recommendation.v0.json: not in events.ALL_SCHEMAS" in p for p in problems)


def _explanation() -> ExplanationEvent:
    return ExplanationEvent(
        event_id="e-1",
        user_id="u",
        item_id="i",
        text="The tuner is accurate and easy to read.",
        explainer="lora",
        explainer_version="1.0.0",
        model="smollm2-135m",
        adapter_version="smollm2-musical-v1",
        evidence=Evidence(
            supporting_items=[SupportingItem(item_id="h", similarity=0.8, features=["tuner"])],
            item_features=["tuner", "display"],
        ),
        mentioned_features=["tuner"],
        grounded=True,
        latency_ms=12.5,
        skipped=[SkippedStage(explainer="prompt", reason="timeout", detail="1000 ms")],
    )


def test_published_events_validate_against_their_json_schema():
    jsonschema = pytest.importorskip("jsonschema")
    samples = {
        "recommendation-event.v1.json": RecommendationEvent(
            event_id="e", user_id="u", item_id="i", history=[{"item_id": "h", "rating": 5}]
        ),
        "explanation-event.v1.json": _explanation(),
        "dead-letter.v1.json": DeadLetter(
            original="{", error_class="NotJSON", reason="bad", worker_id="w"
        ),
        "explanation-feedback.v1.json": ExplanationFeedback(
            feedback_id="f",
            explanation_id="e-1",
            user_id="u",
            item_id="i",
            kind="report",
            reason="wrong feature",
            explainer="lora",
            variant="b",
        ),
    }
    assert set(samples) == set(ALL_SCHEMAS)
    for name, event in samples.items():
        schema = json.loads((SCHEMAS / name).read_text())
        jsonschema.Draft202012Validator(schema).validate(json.loads(event.model_dump_json()))
    bad = json.loads(_explanation().model_dump_json())
    del bad["grounded"]
    schema = json.loads((SCHEMAS / "explanation-event.v1.json").read_text())
    with pytest.raises(jsonschema.ValidationError, match="grounded"):
        jsonschema.Draft202012Validator(schema).validate(bad)


def test_explanation_event_round_trips_through_json():
    event = _explanation()
    assert ExplanationEvent.model_validate_json(event.model_dump_json()) == event


def test_evidence_allowed_features_cover_item_user_and_history():
    evidence = Evidence(
        supporting_items=[SupportingItem(item_id="h", similarity=0.5, features=["strap"])],
        item_features=["tuner"],
        user_features=["display"],
    )
    assert evidence.allowed_features() == {"tuner", "display", "strap"}


def test_explanation_event_v1_readers_accept_events_with_experiment_fields():
    """Experiment/arm are additive optional fields: old events still parse, new ones round-trip."""
    old = json.loads(_explanation().model_dump_json())
    assert "experiment" in old and old["experiment"] is None
    del old["experiment"], old["arm"]
    assert ExplanationEvent.model_validate(old).arm is None
    new = _explanation().model_copy(update={"experiment": "ab", "arm": "b"})
    assert ExplanationEvent.model_validate_json(new.model_dump_json()).arm == "b"
