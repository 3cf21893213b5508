"""``recx bench worker`` internals without a broker: the rate schedule, reading outputs and
the per-rate report (latencies, who answered and why)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from recx_worker.devtools.bench_worker import (
    MIN_RATE_EVENTS,
    Output,
    Stalled,
    _collect,
    add_share_of_ceiling,
    latency_stats,
    parse_rates,
    process_tree,
    rate_events,
    read_output,
    rss_mib,
    send_offsets,
)


def test_rates_parse_and_reject_what_is_no_rate() -> None:
    assert parse_rates("0.5, 1,2,4") == [0.5, 1.0, 2.0, 4.0]
    for bad in ("", "1,fast", "0", "-1", "nan", "inf"):
        with pytest.raises(ValueError, match="--rates"):
            parse_rates(bad)


def test_a_steady_rate_spaces_events_evenly_and_a_run_has_a_floor() -> None:
    assert send_offsets(4, 2.0) == [0.0, 0.5, 1.0, 1.5]
    assert send_offsets(3, 0.5) == [0.0, 2.0, 4.0]
    assert rate_events(4.0, 30) == 120
    assert rate_events(0.5, 45) == 23  # rounded up
    assert rate_events(0.05, 10) == MIN_RATE_EVENTS


def test_outputs_are_read_from_explanations_and_from_the_ceilings_echo() -> None:
    explanation = {
        "event_id": "e1",
        "explainer": "template",
        "latency_ms": 812.5,
        "skipped": [{"explainer": "lora", "reason": "deadline_skipped", "detail": "budget"}],
    }
    assert read_output(json.dumps(explanation).encode(), 1000) == (
        "e1",
        Output(1000, "template", 812.5, (("lora", "deadline_skipped"),)),
    )
    echo = {"event_id": "e2", "user_id": "u", "item_id": "i"}  # the input event, unchanged
    assert read_output(json.dumps(echo).encode(), 7) == ("e2", Output(7))


def test_latency_stats_report_latencies_shares_and_reasons() -> None:
    sent = {f"e{i}": 1_000 for i in range(10)}
    outputs = {f"e{i}": Output(1_100 + 100 * i, "lora", 50.0 + i) for i in range(8)}
    for i in (8, 9):  # two fell back to the template stage
        outputs[f"e{i}"] = Output(3_000, "template", 5.0, (("lora", "deadline_skipped"),))
    outputs["other"] = Output(99_999, "lora", 1.0)  # not of this run: ignored
    stats = latency_stats(sent, outputs)
    assert stats["answered"] == {"lora": 0.8, "template": 0.2}
    assert stats["skipped"] == {"lora: deadline_skipped": 2}
    assert stats["p50_ms"] == pytest.approx(550.0)  # e2e: 100..800 ms and 2000 ms twice
    assert stats["p99_ms"] == pytest.approx(2000.0)
    assert stats["in_worker_p50_ms"] == pytest.approx(52.5)  # 5, 5, 50..57


def test_the_ceilings_latency_has_no_in_worker_part_or_shares() -> None:
    stats = latency_stats({"a": 0, "b": 0}, {"a": Output(10), "b": Output(30)})
    assert stats == {"p50_ms": 20.0, "p99_ms": pytest.approx(29.8)}


def test_share_of_ceiling_pairs_rows_of_the_same_worker_count() -> None:
    rows = [
        {"mode": "recx worker", "workers": 1, "events_per_s": 800.0},
        {"mode": "ceiling (consume+produce)", "workers": 1, "events_per_s": 1000.0},
        {"mode": "recx worker", "workers": 2, "events_per_s": 900.0},
        {"mode": "ceiling (consume+produce)", "workers": 2, "events_per_s": 3000.0},
        {"mode": "recx worker", "workers": 1, "rate_per_s": 2.0},  # a --rates row: none
    ]
    out = add_share_of_ceiling(rows)
    assert [r.get("share_of_ceiling") for r in out] == [0.8, None, 0.3, None, None]
    # a librdkafka producer: its own ceiling, and kafka-python's beside it (same run)
    rows = [
        {"mode": "recx worker", "workers": 1, "events_per_s": 4500.0},
        {"mode": "ceiling (consume+produce)", "workers": 1, "events_per_s": 6000.0},
        {"mode": "ceiling (consume+produce, kafka-python)", "workers": 1, "events_per_s": 4000.0},
    ]
    (worker, *_) = add_share_of_ceiling(rows)
    assert worker["share_of_ceiling"] == 0.75
    assert worker["share_of_kafka_python_ceiling"] == 1.125


def test_a_dead_letter_counts_as_its_events_outcome() -> None:
    letter = {"original": json.dumps({"event_id": "e3"}), "error_class": "NoExplanation"}
    event_id, output = read_output(json.dumps(letter).encode(), 5)
    assert (event_id, output.dead_letter, output.explainer) == ("e3", "NoExplanation", None)
    stats = latency_stats({"e3": 0, "e4": 0}, {"e3": output, "e4": Output(9, "template")})
    assert stats["dead_letters"] == 1 and stats["answered"] == {"template": 0.5}


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_the_process_tree_and_its_memory_include_a_workers_children() -> None:
    sleeper = "import time; time.sleep(30)"
    code = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {sleeper!r}])"
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 20
        while len(process_tree([parent.pid])) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        tree = process_tree([parent.pid])
        assert tree[0] == parent.pid and len(tree) == 2
        memory = rss_mib([parent.pid])
        assert len(memory) == 2 and all(m > 1 for m in memory)
    finally:
        for pid in reversed(process_tree([parent.pid])):
            os.kill(pid, signal.SIGKILL)
        parent.wait()


@pytest.mark.kafka
def test_a_run_whose_outputs_stop_coming_is_stalled_not_awaited(
    kafka_bootstrap, monkeypatch
) -> None:
    """A benchmark process that stops making progress (kafka-python 3.0.12's consumer was
    seen spinning in its coordinator lookup) voids the run within the stall limit instead of
    holding the benchmark until the run's whole timeout (here 10 minutes)."""
    from kafka import KafkaProducer
    from worker_support import Topics

    import recx_worker.devtools.bench_worker as bench

    topics = Topics.fresh(kafka_bootstrap, "stall", partitions=1)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    producer.send(topics.output, json.dumps({"event_id": "e1"}).encode()).get(30)
    producer.close()
    started = time.monotonic()
    with pytest.raises(Stalled, match=r"no new output for \d+ s \(0 of 5\)"):
        _collect(kafka_bootstrap, topics.input, 5, timeout_s=600, first_within_s=2)
    monkeypatch.setattr(bench, "STALL_S", 2.0)
    with pytest.raises(Stalled, match=r"\(1 of 5\)"):  # one came, then none
        _collect(kafka_bootstrap, topics.output, 5, timeout_s=600)
    assert time.monotonic() - started < 60
