"""The console's live view: a background consumer (its own group, read-only) keeping the most
recent explanation events in memory. It never commits for, or joins, the workers' group."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import structlog
from kafka import KafkaConsumer
from pydantic import ValidationError

from recx_worker.events import ExplanationEvent

log = structlog.get_logger(__name__)


class LiveFeed:
    """Latest ``size`` explanations from ``topic``, newest first; ``unreadable`` counts the rest."""

    def __init__(self, client_config: dict[str, Any], topic: str, group_id: str, size: int = 200):
        self.client_config, self.topic, self.group_id = client_config, topic, group_id
        self._events: deque[ExplanationEvent] = deque(maxlen=size)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.unreadable = 0
        self._thread = threading.Thread(target=self._run, name="recx-console-live", daemon=True)

    def start(self) -> LiveFeed:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def latest(self, n: int = 50) -> list[ExplanationEvent]:
        with self._lock:
            return list(self._events)[-n:][::-1]

    def find(self, event_id: str) -> ExplanationEvent | None:
        with self._lock:
            return next((e for e in self._events if e.event_id == event_id), None)

    def _run(self) -> None:
        consumer = KafkaConsumer(
            self.topic,
            **self.client_config,
            group_id=self.group_id,
            client_id="recx-console",
            auto_offset_reset="earliest",
            enable_auto_commit=True,
        )
        try:
            while not self._stop.is_set():
                for records in consumer.poll(timeout_ms=500).values():
                    for record in records:
                        self._add(record.value)
        except Exception as exc:  # the console keeps serving what it has
            log.error("console_live_feed_failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            consumer.close()

    def _add(self, value: bytes | None) -> None:
        try:
            event = ExplanationEvent.model_validate_json(value or b"")
        except ValidationError:
            self.unreadable += 1
            return
        with self._lock:
            self._events.append(event)
