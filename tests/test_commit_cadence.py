"""The commit cadence of at-least-once loops (``CommitCadence``, used by
``Checkpoint.maybe_commit`` and the bench's ceiling): at most every
``worker.commit_interval_ms``, sooner once ``max_buffered`` delivered events wait, never
sooner than a second after a failed commit; 0 commits whenever something moved. (What a crash
then costs is checked against a real broker in tests/test_worker_delivery.py.)"""

from __future__ import annotations

from fake_kafka import FakeBroker, FakeConsumer
from kafka import TopicPartition

from recx_worker.config import WorkerSettings
from recx_worker.metrics import WorkerMetrics
from recx_worker.worker.checkpoint import Checkpoint
from recx_worker.worker.offsets import COMMIT_RETRY_S, CommitCadence, OffsetTracker

TP = TopicPartition("in", 0)


def _checkpoint(**settings: int) -> tuple[Checkpoint, FakeBroker]:
    broker = FakeBroker()
    checkpoint = Checkpoint(
        None,
        FakeConsumer(broker),
        WorkerSettings(**settings),
        WorkerMetrics(),
        exactly_once=False,
    )
    return checkpoint, broker


def _deliver(checkpoint: Checkpoint, offsets: range) -> None:
    checkpoint.tracker.consumed(TP, offsets)
    for offset in offsets:
        checkpoint.tracker.done(TP, offset)


def test_uncommitted_counts_the_events_a_commit_would_mark_done() -> None:
    tracker = OffsetTracker()
    tracker.consumed(TP, range(0, 10))
    for offset in range(0, 10):
        tracker.done(TP, offset)
    assert tracker.uncommitted(tracker.to_commit()) == 1  # no committed offset known yet
    tracker.mark_committed({TP: 4})
    assert tracker.uncommitted(tracker.to_commit()) == 6
    assert tracker.uncommitted({}) == 0


def test_cadence_waits_for_the_interval_or_enough_events_and_backs_off_after_a_failure() -> None:
    cadence = CommitCadence(interval_s=10.0, max_waiting=100)
    assert not cadence.due(0, now=0.0)  # nothing to commit
    assert cadence.due(1, now=0.0)  # the first commit is never held back
    cadence.committed(True, now=0.0)
    assert not cadence.due(99, now=5.0)
    assert cadence.due(100, now=5.0)  # enough waiting: before the interval is over
    assert cadence.due(1, now=10.0)  # the interval is over
    cadence.committed(False, now=10.0)
    assert not cadence.due(1000, now=10.0 + COMMIT_RETRY_S / 2)  # a failure backs off
    assert cadence.due(1000, now=10.0 + COMMIT_RETRY_S)


def test_the_worker_commits_on_its_cadence() -> None:
    checkpoint, broker = _checkpoint(commit_interval_ms=600_000, max_buffered=10)
    _deliver(checkpoint, range(0, 5))
    checkpoint.maybe_commit()  # the first commit is never held back
    assert broker.committed[TP] == 5
    _deliver(checkpoint, range(5, 14))
    checkpoint.maybe_commit()  # 9 waiting, fewer than max_buffered, interval not over
    assert broker.committed[TP] == 5
    _deliver(checkpoint, range(14, 15))
    checkpoint.maybe_commit()  # 10 waiting: committed before the interval is over
    assert broker.committed[TP] == 15


def test_no_interval_commits_whatever_moved_every_time() -> None:
    checkpoint, broker = _checkpoint(commit_interval_ms=0, max_buffered=1000)
    for end in (3, 4, 9):
        _deliver(checkpoint, range(broker.committed.get(TP, 0), end))
        checkpoint.maybe_commit()
        assert broker.committed[TP] == end
