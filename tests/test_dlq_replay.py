"""`recx dlq replay` against a real broker: dead letters filtered by reason go back to the
input topic, and a fixed worker then explains exactly those."""

from __future__ import annotations

import json
import subprocess

import pytest
from worker_support import (
    PYTHON,
    ROOT,
    Topics,
    WorkerProcess,
    catalog,
    env_int,
    explained_ids,
    make_events,
    output_count,
    publish,
    read_topic,
    stop_all,
    wait_for,
    worker_env,
)

from recx_worker.worker.records import H_ATTEMPTS, H_REPLAYED_FROM

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

EVENTS = env_int("RECX_TEST_REPLAY_EVENTS", 200)


def replay_cli(env: dict[str, str], *args: str) -> dict:
    done = subprocess.run(
        [PYTHON, "-m", "recx_worker.cli", "dlq", "replay", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_replay_republishes_dead_letters_filtered_by_reason(
    kafka_bootstrap, worker_data, tmp_path
) -> None:
    data, index = worker_data
    users, items = catalog(data)
    topics = Topics.fresh(kafka_bootstrap, "replay", partitions=3)
    events = make_events(EVENTS, users, items, malformed_share=0.1)
    valid = {event_id for _, _, event_id in events if event_id is not None}
    malformed = len(events) - len(valid)
    # 1. the explainer backend is down: every valid event is dead-lettered too
    broken = worker_env(
        kafka_bootstrap,
        topics,
        data,
        index,
        plugin_modules='["worker_test_plugins"]',
        chain__explainers='["always-fails"]',
    )
    worker = WorkerProcess(broken, tmp_path / "broken.log", "w-broken").start()
    try:
        worker.wait_assigned()
        publish(kafka_bootstrap, topics.input, events)
        wait_for(lambda: output_count(kafka_bootstrap, topics.dlq) >= len(events), 180, "DLQ")
    finally:
        stop_all([worker])
    assert output_count(kafka_bootstrap, topics.output) == 0

    # 2. dry runs: all letters by class, then one malformed class alone; counts only
    everything = replay_cli(broken, "--dry-run")
    classes = everything["by_error_class"]
    assert everything["matched"] == len(events) and everything["republished"] == 0
    assert sum(n for c, n in classes.items() if c != "NoExplanation") == malformed
    picked = max((c for c in classes if c != "NoExplanation"), key=classes.__getitem__)
    dry = replay_cli(broken, "--error-class", picked, "--dry-run")
    assert dry["read"] == len(events)
    assert dry["republished"] == 0 and dry["matched"] == dry["by_error_class"][picked] > 0
    assert dry["matched"] == classes[picked]

    # 3. replay only the letters no explainer answered
    stats = replay_cli(broken, "--reason", "no explainer answered")
    assert stats["matched"] == stats["republished"] == len(valid)
    assert stats["by_error_class"] == {"NoExplanation": len(valid)}
    assert stats["targets"] == {topics.input: len(valid)}
    replayed = [r for r in read_topic(kafka_bootstrap, topics.input) if r.offset >= 0]
    replayed = [r for r in replayed if H_REPLAYED_FROM in dict(r.headers)]
    assert {json.loads(r.value)["event_id"] for r in replayed} == valid
    assert all(dict(r.headers)[H_ATTEMPTS] == b"1" for r in replayed)

    # 4. the backend is fixed: the same group picks up just the replayed events
    fixed = worker_env(kafka_bootstrap, topics, data, index)
    worker = WorkerProcess(fixed, tmp_path / "fixed.log", "w-fixed").start()
    try:
        wait_for(
            lambda: len(explained_ids(kafka_bootstrap, topics.output)) >= len(valid),
            60,
            "replayed events explained",
        )
    finally:
        stop_all([worker])
    ids = explained_ids(kafka_bootstrap, topics.output)
    assert set(ids) == valid and sum(ids.values()) == len(valid)
    assert output_count(kafka_bootstrap, topics.dlq) == len(events)  # malformed not replayed
    assert malformed > 0
