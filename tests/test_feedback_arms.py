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
    assert isinstance(pipeline.core.chain, ArmChains)
    users, items = catalog(data)
    records = []
    for i, user in enumerate(users):
        body = {"event_id": f"e{i}", "user_id": user, "item_id": items[i % len(items)]}
        records.append(InRecord("recs", 0, i, user.encode(), json.dumps(body).encode(), None))
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


def test_adaptive_allocation_moves_users_towards_the_better_arm(tmp_path):
    from recx_worker.devtools.experiment_sim import run_simulation

    run_simulation(tmp_path / "sim.db", feedback_events=4000, true_rates={"a": 0.1, "b": 0.5})
    settings = load_settings(
        feedback={"store_path": tmp_path / "sim.db"},
        experiments={
            "name": "sim-ab", "arms": [{"name": "a"}, {"name": "b"}], "adaptive": True,
            "adaptive_floor": 0.1,
        },
    )  # fmt: skip
    arms = ArmChains(Assigner(settings.experiments), {}, settings)
    assert arms.assigner.weights == [1.0, 1.0]
    arms._maybe_adapt()
    assert arms.assigner.weights == [0.1, 0.9] or arms.assigner.weights[1] > 0.89
    share_b = sum(arms.assigner.arm(f"u{i}").name == "b" for i in range(5000)) / 5000
    assert 0.87 < share_b < 0.93
    off = settings.model_copy(deep=True)
    off.experiments.adaptive = False
    still = ArmChains(Assigner(off.experiments), {}, off)
    still._maybe_adapt()
    assert still.assigner.weights == [1.0, 1.0]  # off by default: weights stay as configured
