"""Worker parts without a broker: offset tracking, the pipeline on real prepared data with the
template chain, poison isolation, settings, JSON logs, the metrics HTTP server."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from kafka import TopicPartition
from worker_support import prepared_tiny

from recx_worker.config import Settings, load_settings
from recx_worker.events import DeadLetter
from recx_worker.logging_setup import configure_logging
from recx_worker.metrics import MetricsServer, WorkerMetrics
from recx_worker.worker.offsets import OffsetTracker
from recx_worker.worker.pipeline import Pipeline
from recx_worker.worker.records import H_ATTEMPTS, H_ERROR_CLASS, InRecord
from recx_worker.worker.replay import ReplayFilter, original_bytes
from recx_worker.worker.runner import Worker

TP0, TP1 = TopicPartition("in", 0), TopicPartition("in", 1)


def test_tracker_never_commits_past_an_unfinished_offset() -> None:
    tracker = OffsetTracker()
    tracker.consumed(TP0, range(10, 13))
    tracker.consumed(TP0, [13, 14])
    tracker.consumed(TP1, [3])
    tracker.consumed(TP1, [])  # an empty fetch changes nothing
    for offset in (10, 11, 13, 14):  # 12 is still being processed
        tracker.done(TP0, offset)
    assert tracker.to_commit() == {TP0: 12, TP1: 3}
    tracker.mark_committed({TP0: 12, TP1: 3})
    assert tracker.to_commit() == {}
    tracker.done(TP0, 12)
    tracker.done(TP1, 3)
    assert tracker.to_commit() == {TP0: 15, TP1: 4}
    assert tracker.outstanding() == 0
    tracker.forget([TP0])
    assert tracker.committable(TP0) is None


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    data, index = prepared_tiny(tmp_path_factory.getbasetemp() / "worker-data")
    return Settings(
        paths={"data_dir": data, "index_dir": index},
        chain={"explainers": ["template"]},
        kafka={"input_topic": "recs", "output_topic": "expl", "dlq_topic": "recs.dlq"},
        worker={"worker_id": "unit"},
        validation={"max_history": 3},
    )


@pytest.fixture(scope="module")
def pipeline(settings):
    pipe = Pipeline.from_settings(settings, WorkerMetrics())
    pipe.warm_up()
    yield pipe
    pipe.close()


def record(value: bytes, offset: int, headers=None) -> InRecord:
    return InRecord("recs", 0, offset, b"k", value, 1_700_000_000_000, headers or [])


def test_pipeline_gives_one_output_per_record_in_order(pipeline, settings) -> None:
    from recx_worker.prepared import PreparedData

    prepared = PreparedData(settings.paths.data_dir)
    user = sorted(prepared.user_histories)[0]
    item = sorted(prepared.item_profiles)[0]
    good = json.dumps({"event_id": "e1", "user_id": user, "item_id": item}).encode()
    too_long = json.dumps(
        {"event_id": "e3", "user_id": user, "item_id": item,
         "history": [{"item_id": item}] * 4}
    ).encode()  # fmt: skip
    unknown = json.dumps({"event_id": "e4", "user_id": user, "item_id": "nope"}).encode()
    records = [
        record(good, 0),
        record(b"{oops", 1),
        record(too_long, 2),
        record(unknown, 3, [(H_ATTEMPTS, b"2")]),
    ]
    outs = pipeline.process(records)
    assert [o.kind for o in outs] == ["explanation", "dead_letter", "dead_letter", "dead_letter"]
    assert [o.source.offset for o in outs] == [0, 1, 2, 3]
    explanation = json.loads(outs[0].value)
    assert explanation["event_id"] == "e1" and explanation["explainer"] == "template"
    assert outs[0].topic == "expl" and outs[0].key == user.encode()
    letters = [DeadLetter.model_validate_json(o.value) for o in outs[1:]]
    assert [x.error_class for x in letters] == ["NotJSON", "HistoryTooLong", "UnknownItem"]
    assert all(o.topic == "recs.dlq" for o in outs[1:])
    assert letters[0].original == "{oops" and letters[0].source.offset == 1
    assert letters[2].attempts == 3  # dead-lettered twice before (replayed)
    assert dict(outs[3].headers)[H_ERROR_CLASS] == b"UnknownItem"


class _PoisonPipeline:
    """A pipeline whose processing crashes on one particular record."""

    def __init__(self, real: Pipeline) -> None:
        self.real = real

    def process(self, records: list[InRecord]):
        if any(r.value == b"poison" for r in records):
            raise MemoryError("boom")
        return self.real.process(records)


def test_a_crashing_record_is_isolated_and_dead_lettered(pipeline, settings) -> None:
    worker = Worker(settings)
    worker.pipeline = _PoisonPipeline(pipeline)  # type: ignore[assignment]
    outs = worker._outputs([record(b"{bad", 0), record(b"poison", 1), record(b"[]", 2)])
    assert [o.label for o in outs] == ["NotJSON", "ProcessingError", "NotAnObject"]
    letter = DeadLetter.model_validate_json(outs[1].value)
    assert letter.reason == "MemoryError: boom" and letter.source.offset == 1


def test_settings_from_toml_and_environment(tmp_path: Path, monkeypatch) -> None:
    config = tmp_path / "recx.toml"
    config.write_text('[worker]\nmax_batch = 7\ngrace_period_s = 4.5\n[kafka]\ngroup_id = "g"\n')
    monkeypatch.setenv("RECX_WORKER__MAX_WAIT_MS", "15")
    monkeypatch.delenv("RECX_CONFIG", raising=False)
    settings = load_settings(config)
    assert settings.worker.max_batch == 7
    assert settings.worker.grace_period_s == 4.5
    assert settings.worker.max_wait_ms == 15
    assert settings.kafka.group_id == "g"
    monkeypatch.setenv("RECX_WORKER__MAX_BATCH", "9")  # the environment wins over the file
    assert load_settings(config).worker.max_batch == 9


def test_json_logs_redact_personal_data() -> None:
    import structlog

    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    try:
        structlog.get_logger("t").warning(
            "dead_letter", event_id="e1", reviewer_name="Alice Smith", original="I love it"
        )
    finally:
        configure_logging("WARNING", "json")
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["event_id"] == "e1" and line["event"] == "dead_letter"
    assert "Alice" not in stream.getvalue() and "love" not in stream.getvalue()


def test_metrics_server_serves_metrics_health_and_readiness() -> None:
    metrics = WorkerMetrics()
    metrics.dead_letters.labels("NotJSON").inc(2)
    metrics.set_lag("recs", [(0, 10, 7, 4), (1, 5, 5, None)])
    state = {"ready": False}
    server = MetricsServer(
        metrics, healthy=lambda: True, ready=lambda: state["ready"], host="127.0.0.1", port=0
    ).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        text = urllib.request.urlopen(f"{base}/metrics").read().decode()
        assert 'recx_dead_letters_total{error_class="NotJSON"} 2.0' in text
        assert 'recx_consumer_lag{partition="0",topic="recs"} 3.0' in text
        assert 'recx_consumer_committed_lag{partition="1",topic="recs"} 5.0' in text
        assert urllib.request.urlopen(f"{base}/healthz").status == 200
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/readyz")
        assert err.value.code == 503
        state["ready"] = True
        assert urllib.request.urlopen(f"{base}/readyz").status == 200
    finally:
        server.stop()


def test_replay_filter_and_original_bytes() -> None:
    letter = DeadLetter(
        original="\\xff", original_base64="/w==", error_class="InvalidUTF8",
        reason="message is not valid UTF-8", worker_id="w",
    )  # fmt: skip
    assert original_bytes(letter) == b"\xff"
    assert ReplayFilter().matches(letter)
    assert ReplayFilter(reasons=["utf-8"]).matches(letter)
    assert ReplayFilter(reasons=["invalidutf"]).matches(letter)
    assert not ReplayFilter(reasons=["no explainer"]).matches(letter)
    assert ReplayFilter(error_classes=["InvalidUTF8"]).matches(letter)
    assert not ReplayFilter(error_classes=["NotJSON"], reasons=["utf"]).matches(letter)


def test_cli_reports_bad_configuration_without_a_traceback(tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from recx_worker.cli import app

    monkeypatch.delenv("RECX_CONFIG", raising=False)
    runner = CliRunner()
    missing = runner.invoke(app, ["worker", "--config", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[worker]\nmax_batch = 0\n")
    invalid = runner.invoke(app, ["worker", "--config", str(bad)])
    assert invalid.exit_code == 2 and "worker.max_batch" in invalid.output
    assert "Traceback" not in invalid.output
    monkeypatch.delenv("RECX_CONFIG", raising=False)  # load_settings exports the file it read
    no_data = runner.invoke(app, ["worker"], env={"RECX_PATHS__DATA_DIR": str(tmp_path / "x")})
    assert no_data.exit_code == 2 and "recx data prepare" in no_data.output


def test_kafka_python_checksums_record_batches_in_c():
    """Without the ``crc32c`` package kafka-python computes CRC-32C in pure Python, a quarter
    of the worker's CPU in a profile (docs/results.md, "Worker throughput and latency")."""
    from kafka.record import util

    assert util.crc32c_c is not None
    assert util.calc_crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value


def test_sigterm_lets_a_command_clean_up_its_children(tmp_path):
    """`recx bench worker` and `recx demo` own a broker and worker processes: SIGTERM must run
    their ``finally`` blocks (which stop those) instead of killing the command outright."""
    import subprocess
    import sys

    marker = tmp_path / "cleaned"
    code = (
        "import os, signal, time\n"
        "from recx_worker.signals import interrupt_on_sigterm\n"
        "interrupt_on_sigterm()\n"
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(10)\n"
        "finally:\n"
        f"    open({str(marker)!r}, 'w').write('stopped children')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert done.returncode != 0 and b"KeyboardInterrupt" in done.stderr
    assert marker.read_text() == "stopped children"


def test_declined_and_crashed_stages_are_distinct_in_events_and_metrics(settings) -> None:
    from recx_worker.plugins import load_plugin_modules
    from recx_worker.prepared import PreparedData

    load_plugin_modules(["worker_test_plugins"])
    chained = settings.model_copy(deep=True)
    chained.chain.explainers = ["always-declines", "always-fails", "template"]
    metrics = WorkerMetrics()
    pipe = Pipeline.from_settings(chained, metrics)
    pipe.warm_up()
    try:
        prepared = PreparedData(settings.paths.data_dir)
        item = sorted(prepared.item_profiles)[0]
        value = json.dumps({"event_id": "d1", "user_id": "u", "item_id": item}).encode()
        (out,) = pipe.process([record(value, 0)])
    finally:
        pipe.close()
    skipped = json.loads(out.value)["skipped"]
    assert [(s["explainer"], s["reason"]) for s in skipped] == [
        ("always-declines", "declined"),
        ("always-fails", "error"),
    ]
    assert skipped[0]["detail"] == "NotConfident: declines every request"
    assert skipped[1]["detail"] == "RuntimeError: explainer backend unavailable"
    fallbacks = metrics.fallbacks
    assert fallbacks.labels("always-declines", "declined")._value.get() == 1
    assert fallbacks.labels("always-fails", "error")._value.get() == 1


def test_join_lost_recognises_an_unapplied_rebalance_on_a_real_consumer() -> None:
    """kafka-python 3.0.12 can finish a JoinGroup -> SyncGroup attempt that no later poll
    applies (``clients.join_lost``); the state is read from a real consumer's coordinator, so
    a kafka-python upgrade that renames it fails here rather than silently disabling the
    check."""
    from types import SimpleNamespace

    from kafka import KafkaConsumer

    from recx_worker.worker.clients import join_lost

    consumer = KafkaConsumer(
        bootstrap_servers="127.0.0.1:9", group_id="g", api_version=(3, 7), enable_auto_commit=False
    )
    try:
        consumer.subscribe(["t"])
        coordinator = consumer._coordinator
        assert coordinator.need_rejoin() and not join_lost(consumer)  # not joined yet
        # the leader computed the new assignment and the poll waiting for it gave up:
        coordinator.rejoining, coordinator.rejoin_needed = True, False
        coordinator._joined_subscription = {"t"}
        assert not coordinator.need_rejoin()
        assert join_lost(consumer)
        coordinator._join_task = SimpleNamespace(is_done=False)  # the attempt still runs
        assert not join_lost(consumer)
        coordinator._join_task, coordinator.rejoining = None, False  # applied: a member
        assert not join_lost(consumer)
    finally:
        consumer.close(autocommit=False, timeout_ms=100)
    assert not join_lost(SimpleNamespace())  # another client: no such state, no claim
