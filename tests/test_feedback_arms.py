"""Experiment arms in the worker pipeline: each user's events go to the arm's chain and the
published explanations carry the experiment and the arm."""

from __future__ import annotations

import json

from worker_support import catalog

from recx_worker.config import ExperimentArm, load_settings
from recx_worker.feedback.arms import ArmChains, arm_settings
from recx_worker.feedback.assignment import Assigner
from recx_worker.metrics import WorkerMetrics
from recx_worker.worker.pipeline import Pipeline
from recx_worker.worker.records import InRecord


def test_arm_settings_apply_the_chain_and_merge_the_option_set():
    settings = load_settings(
        chain={"explainers": ["lora", "template"], "options": {"lora": {"a": 1}}}
    )
    arm = ExperimentArm(name="b", explainers=["prompt", "template"], options={"lora": {"b": 2}})
    merged = arm_settings(settings, arm)
    assert merged.chain.explainers == ["prompt", "template"]
    assert merged.chain.options["lora"] == {"a": 1, "b": 2}
    assert settings.chain.options["lora"] == {"a": 1}  # the original is untouched
    assert arm_settings(settings, ExperimentArm(name="a")).chain.explainers == ["lora", "template"]


def test_pipeline_tags_each_explanation_with_its_users_arm(worker_data):
    data, index = worker_data
    settings = load_settings(
        paths={"data_dir": data, "index_dir": index},
        chain={"explainers": ["template"]},
        experiments={
            "name": "ab",
            "salt": "t",
            "arms": [{"name": "control"}, {"name": "treatment", "explainers": ["template"]}],
        },
    )
    pipeline = Pipeline.from_settings(settings, WorkerMetrics())
    assert isinstance(pipeline.chain, ArmChains)
    users, items = catalog(data)
    records = [
        InRecord(
            "recs",
            0,
            i,
            u.encode(),
            json.dumps(
                {"event_id": f"e{i}", "user_id": u, "item_id": items[i % len(items)]}
            ).encode(),
            None,
        )  # fmt: skip
        for i, u in enumerate(users)
    ]
    try:
        out = pipeline.process(records)
    finally:
        pipeline.close()
    events = [json.loads(o.value) for o in out if o.kind == "explanation"]
    assert len(users) >= 6 and len(events) == len(records)
    assigner = Assigner(settings.experiments)
    for event in events:
        assert event["experiment"] == "ab"
        assert event["arm"] == assigner.arm(event["user_id"]).name
    assert {e["arm"] for e in events} == {"control", "treatment"}
