"""Which teacher candidate becomes a distillation target (``training.distill``)."""

from __future__ import annotations

import pytest

from training.distill import reference_pick


def test_reference_pick_keeps_the_candidate_closest_to_the_reference():
    reference = "These strings sound bright and stay in tune for weeks."
    texts = [
        "The strings are great for the price.",
        "The strings sound bright and stay in tune.",
        "The strings are great.",
    ]
    assert reference_pick(reference, texts, model_pick=0) == 1


def test_reference_pick_prefers_the_explainers_own_pick_on_ties():
    texts = ["The tuner is accurate.", "The tuner is accurate.", "Great tuner."]
    assert reference_pick("The tuner is accurate and small.", texts, model_pick=1) == 1
    assert reference_pick("The tuner is accurate and small.", texts, model_pick=0) == 0


def test_write_teacher_targets_rejects_an_unknown_pick(tmp_path):
    from training.distill import write_teacher_targets

    with pytest.raises(ValueError, match="pick must be one of model, reference"):
        write_teacher_targets(None, None, None, [], tmp_path / "t.jsonl", max_words=25, pick="x")
