"""docs/plugins.md lists every field a plugin receives or returns, generated from the code."""

from __future__ import annotations

import dataclasses

from recx_worker import events, explainer
from recx_worker.devtools.plugin_reference import DOC, generated_block, render


def test_plugin_reference_matches_the_code():
    block = generated_block(DOC.read_text(encoding="utf-8"))
    assert block is not None, "docs/plugins.md lost its generated-block markers"
    assert block == render(), "run: python -m recx_worker.devtools.plugin_reference"


def test_every_request_and_evidence_field_is_documented():
    text = render()
    models = (
        events.RecommendationEvent,
        events.HistoryEntry,
        events.RecommendationContext,
        events.Evidence,
        events.SupportingItem,
    )
    for model in models:
        for name, info in model.model_fields.items():
            assert f"| `{name}` |" in text
            assert info.description, f"{model.__name__}.{name} has no description"
    classes = (
        explainer.ExplainRequest,
        explainer.ExplainerContext,
        explainer.ExplainerPaths,
        explainer.Explanation,
        explainer.ExplainFailure,
    )
    for cls in classes:
        for item in dataclasses.fields(cls):
            assert item.metadata.get("doc"), f"{cls.__name__}.{item.name} has no doc"
