"""The explain core in a child process (``worker.core_processes``), without a broker: the same
outputs as the core on the worker's thread, stage timings and fallbacks in the worker's
metrics, a killed child restarted with its batch retried, a record that kills the child
dead-lettered, a child that cannot start again stopping the worker, and ``close`` (the last
three start several processes each: marked slow)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
from worker_support import prepared_tiny

from recx_worker.config import Settings
from recx_worker.events import DeadLetter
from recx_worker.metrics import WorkerMetrics
from recx_worker.prepared import PreparedData
from recx_worker.worker.core_process import CoreUnavailable
from recx_worker.worker.pipeline import Pipeline
from recx_worker.worker.records import InRecord, OutRecord
from recx_worker.worker.runner import Worker

PLUGINS = ["worker_test_plugins"]


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    data, index = prepared_tiny(tmp_path_factory.getbasetemp() / "worker-data")
    return Settings(
        paths={"data_dir": data, "index_dir": index},
        chain={"explainers": ["always-declines", "dies-on-poison"]},
        kafka={"input_topic": "recs", "output_topic": "expl", "dlq_topic": "recs.dlq"},
        worker={"worker_id": "unit", "plugin_modules": PLUGINS, "log_level": "WARNING"},
    )


def _with(settings: Settings, processes: int) -> Settings:
    copy = settings.model_copy(deep=True)
    copy.worker.core_processes = processes
    return copy


@pytest.fixture(scope="module")
def child(settings):
    """A pipeline whose core runs in one child process."""
    metrics = WorkerMetrics()
    pipe = Pipeline.from_settings(_with(settings, 1), metrics)
    pipe.warm_up()
    yield pipe
    pipe.close()


def _records(settings: Settings, n: int, *, poison: int | None = None) -> list[InRecord]:
    prepared = PreparedData(settings.paths.data_dir)
    users, items = sorted(prepared.user_histories), sorted(prepared.item_profiles)
    out = []
    for i in range(n):
        event_id = "poison-1" if i == poison else f"e{i}"
        user, item = users[i % len(users)], items[i % len(items)]
        event = {"event_id": event_id, "user_id": user, "item_id": item}
        out.append(InRecord("recs", 0, i, b"k", json.dumps(event).encode(), None, []))
    out.append(InRecord("recs", 0, n, b"k", b"{not json", None, []))
    return out


def _comparable(out: OutRecord) -> tuple:
    body = json.loads(out.value)
    if out.kind == "explanation":  # the same answer; times differ
        body = {k: body[k] for k in ("event_id", "text", "explainer", "skipped", "evidence")}
    else:
        body = {k: body[k] for k in ("error_class", "reason", "original", "source")}
    return out.kind, out.topic, out.key, out.label, out.event_id, out.headers, body


def test_a_core_process_gives_the_outputs_of_the_core_on_this_thread(child, settings) -> None:
    local = Pipeline.from_settings(settings, WorkerMetrics())
    local.warm_up()
    try:
        records = _records(settings, 12)
        expected = [_comparable(o) for o in local.process(records)]
    finally:
        local.close()
    assert set(local.batcher.snapshot()) == {"always-declines", "dies-on-poison"}
    got = [_comparable(o) for o in child.process(records)]
    assert got == expected
    assert [g[0] for g in got] == ["explanation"] * 12 + ["dead_letter"]
    assert child.core.pids() and os.getpid() not in child.core.pids()


def test_stage_timings_and_fallbacks_of_the_child_reach_the_worker_metrics(settings) -> None:
    from prometheus_client import generate_latest

    metrics = WorkerMetrics()
    pipe = Pipeline.from_settings(_with(settings, 1), metrics)
    pipe.warm_up()
    metrics.watch_batcher(pipe.batcher)  # as the worker does
    try:
        pending = [pipe.submit(_records(settings, 4)) for _ in range(3)]  # 3 batches in flight
        outs = [p.result() for p in pending]
    finally:
        pipe.close()
    assert [len(o) for o in outs] == [5, 5, 5]
    for stage in ("validate", "enrich", "explain"):
        assert metrics.stage_latency.labels(stage)._sum.get() > 0
    assert metrics.fallbacks.labels("always-declines", "declined")._value.get() == 12
    # the deadline batcher's measurements of the child's chain, as for a core on this thread
    text = generate_latest(metrics.registry).decode()
    assert 'recx_stage_admitted_requests{stage="always-declines"} 4.0' in text
    assert 'recx_stage_seconds_per_request{stage="dies-on-poison"}' in text


def test_a_killed_core_process_is_restarted_and_its_batches_retried(child, settings) -> None:
    (before,) = child.core.pids()
    records = _records(settings, 8)
    expected = [_comparable(o) for o in child.process(records)]
    assert child.core_available
    pending = [child.submit(records) for _ in range(2)]
    os.kill(before, signal.SIGKILL)
    seen_unavailable = threading.Event()
    watching = threading.Event()

    def watch() -> None:  # the restart takes seconds (spawn, warm-up): /readyz says no then
        while not watching.is_set():
            if not child.core_available:
                seen_unavailable.set()
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        results = [[_comparable(o) for o in p.result()] for p in pending]
    finally:
        watching.set()
        watcher.join()
    assert results == [expected, expected]
    assert seen_unavailable.is_set() and child.core_available
    (after,) = child.core.pids()
    assert after != before
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(before, 0)


@pytest.mark.slow  # restarts or starts several core processes
def test_a_record_that_kills_the_core_process_becomes_a_dead_letter(child, settings) -> None:
    worker = Worker(settings)
    worker.pipeline = child
    records = _records(settings, 6, poison=2)
    outs = worker._outputs(records, child.submit(records))
    assert [o.kind for o in outs] == ["explanation"] * 2 + ["dead_letter"] + ["explanation"] * 3 + [
        "dead_letter"
    ]
    letter = DeadLetter.model_validate_json(outs[2].value)
    assert letter.error_class == "ProcessingError" and "CoreProcessDied" in letter.reason
    assert letter.source is not None and letter.source.offset == 2
    assert json.loads(outs[3].value)["event_id"] == "e3"
    assert child.process(_records(settings, 2))[0].kind == "explanation"  # still working


@pytest.mark.slow  # restarts or starts several core processes
def test_a_core_process_that_cannot_start_again_is_fatal(settings, tmp_path) -> None:
    pipe = Pipeline.from_settings(_with(settings, 1), WorkerMetrics())
    pipe.warm_up()
    try:
        (pid,) = pipe.core.pids()
        pipe.core.settings = pipe.core.settings.model_copy(deep=True)
        pipe.core.settings.paths.data_dir = tmp_path / "gone"  # the restart cannot open it
        pending = pipe.submit(_records(settings, 2))
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(CoreUnavailable):
            pending.result()
        with pytest.raises(CoreUnavailable):
            pipe.process(_records(settings, 1))
    finally:
        pipe.close()


@pytest.mark.slow  # restarts or starts several core processes
def test_close_stops_the_core_processes(settings) -> None:
    pipe = Pipeline.from_settings(_with(settings, 2), WorkerMetrics())
    pipe.warm_up()
    pids = pipe.core.pids()
    assert len(pids) == 2
    assert len(pipe.process(_records(settings, 3))) == 4
    pipe.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
