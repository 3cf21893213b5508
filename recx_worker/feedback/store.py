"""The aggregation store: a SQLite file holding explanations, feedback, per-arm outcomes and the
Kafka offsets they were read up to, all written in one transaction per batch.

Why this survives restarts and rebalances without double counting:
- every batch is applied with the offsets it advances in the same transaction, so a record at
  an offset below the stored one (a replay after a crash or a rebalance) is skipped;
- feedback is keyed by ``feedback_id`` (a second copy is counted as a duplicate, not applied);
- an arm's counts are *distinct explanations* per outcome kind, so two "helpful" clicks on one
  explanation count once.
Feedback whose explanation is unknown is kept as an orphan and attributed when the explanation
arrives; feedback later than ``late_after_s`` after its explanation is counted as late and not
attributed. Several consumers (one group) may share one store file: SQLite serialises writers.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recx_worker.events import ExplanationEvent, ExplanationFeedback

NO_EXPERIMENT = "(none)"
TALLIES = ("duplicate", "late", "orphan_resolved", "replayed", "dead_letter")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS explanations (
  explanation_id TEXT PRIMARY KEY, experiment TEXT NOT NULL, arm TEXT NOT NULL,
  explainer TEXT NOT NULL, user_id TEXT NOT NULL, item_id TEXT NOT NULL, created_at REAL NOT NULL,
  text TEXT NOT NULL, evidence TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS feedback (
  feedback_id TEXT PRIMARY KEY, explanation_id TEXT NOT NULL, kind TEXT NOT NULL,
  at REAL NOT NULL, status TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS feedback_by_explanation ON feedback (explanation_id, status);
CREATE TABLE IF NOT EXISTS outcomes (
  explanation_id TEXT NOT NULL, kind TEXT NOT NULL, PRIMARY KEY (explanation_id, kind));
CREATE TABLE IF NOT EXISTS tallies (name TEXT PRIMARY KEY, n INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS offsets (
  topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
  PRIMARY KEY (topic, partition));
"""


@dataclass(frozen=True, slots=True)
class Consumed:
    """One consumed record, parsed: an explanation, a feedback event, or None (dead-lettered)."""

    topic: str
    partition: int
    offset: int
    event: ExplanationEvent | ExplanationFeedback | None


@dataclass(frozen=True, slots=True)
class ArmCounts:
    experiment: str
    arm: str
    explanations: int
    shown: int  # explanations with any attributed feedback
    helpful: int
    not_helpful: int
    click: int
    dismiss: int
    report: int


class FeedbackStore:
    """One SQLite file; open one per thread or process (connections are not shared)."""

    def __init__(self, path: Path | str, *, late_after_s: float = 7 * 24 * 3600.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.late_after_s = late_after_s
        self._db = sqlite3.connect(
            self.path, timeout=60, isolation_level=None, check_same_thread=False
        )
        self._initialise()

    def _initialise(self, attempts: int = 50) -> None:
        """WAL mode and tables; switching to WAL can report "locked" without waiting: retry."""
        for attempt in range(attempts):
            try:
                if self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(_SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == attempts - 1:
                    raise
                time.sleep(0.1)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- writing ---------------------------------------------------------------------------
    def apply(self, records: Iterable[Consumed], *, dead_letters: int = 0) -> dict[str, int]:
        """Apply a batch and advance its offsets atomically; returns what happened, by outcome."""
        done: dict[str, int] = {}
        with self._transaction() as db:
            positions = dict(
                ((t, p), o) for t, p, o in db.execute("SELECT * FROM offsets").fetchall()
            )
            for rec in records:
                key = (rec.topic, rec.partition)
                if rec.offset < positions.get(key, 0):
                    outcome = "replayed"
                else:
                    positions[key] = rec.offset + 1
                    outcome = self._apply_one(db, rec.event)
                done[outcome] = done.get(outcome, 0) + 1
            db.executemany(
                "INSERT INTO offsets VALUES (?, ?, ?) ON CONFLICT (topic, partition) "
                "DO UPDATE SET next_offset = excluded.next_offset",
                [(t, p, o) for (t, p), o in positions.items()],
            )
            if dead_letters:
                done["dead_letter"] = dead_letters
            for name in ("duplicate", "replayed", "dead_letter"):  # the others tally themselves
                if done.get(name):
                    self._tally(db, name, done[name])
        return done

    def _apply_one(self, db: sqlite3.Connection, event: object) -> str:
        if isinstance(event, ExplanationEvent):
            return self._add_explanation(db, event)
        if isinstance(event, ExplanationFeedback):
            return self._add_feedback(db, event)
        return "skipped"  # dead-lettered by the caller; only its offset advances

    def _add_explanation(self, db: sqlite3.Connection, event: ExplanationEvent) -> str:
        inserted = db.execute(
            "INSERT OR IGNORE INTO explanations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.event_id,
                event.experiment or NO_EXPERIMENT,
                event.arm or event.explainer,
                event.explainer,
                event.user_id,
                event.item_id,
                event.created_at.timestamp(),
                event.text,
                event.evidence.model_dump_json(),
            ),
        ).rowcount
        if not inserted:
            return "explanation_duplicate"
        orphans = db.execute(
            "SELECT feedback_id, kind, at FROM feedback WHERE explanation_id = ? AND status = ?",
            (event.event_id, "orphan"),
        ).fetchall()
        for feedback_id, kind, at in orphans:
            status = self._attribute(db, event.event_id, kind, at, event.created_at.timestamp())
            db.execute(
                "UPDATE feedback SET status = ? WHERE feedback_id = ?", (status, feedback_id)
            )
        if orphans:
            self._tally(db, "orphan_resolved", len(orphans))
        return "explanation"

    def _add_feedback(self, db: sqlite3.Connection, fb: ExplanationFeedback) -> str:
        if db.execute("SELECT 1 FROM feedback WHERE feedback_id = ?", (fb.feedback_id,)).fetchone():
            return "duplicate"
        row = db.execute(
            "SELECT created_at FROM explanations WHERE explanation_id = ?", (fb.explanation_id,)
        ).fetchone()
        at = fb.timestamp.timestamp()
        status = (
            "orphan" if row is None else self._attribute(db, fb.explanation_id, fb.kind, at, row[0])
        )
        db.execute(
            "INSERT INTO feedback VALUES (?, ?, ?, ?, ?)",
            (fb.feedback_id, fb.explanation_id, fb.kind, at, status),
        )
        return status

    def _attribute(
        self, db: sqlite3.Connection, explanation_id: str, kind: str, at: float, created: float
    ) -> str:
        """Count ``kind`` for the explanation unless the feedback came too late."""
        if at - created > self.late_after_s:
            self._tally(db, "late", 1)
            return "late"
        db.execute("INSERT OR IGNORE INTO outcomes VALUES (?, ?)", (explanation_id, kind))
        return "attributed"

    @staticmethod
    def _tally(db: sqlite3.Connection, name: str, n: int) -> None:
        db.execute(
            "INSERT INTO tallies VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET n = n + ?",
            (name, n, n),
        )

    # -- reading ---------------------------------------------------------------------------
    def next_offset(self, topic: str, partition: int) -> int | None:
        row = self._db.execute(
            "SELECT next_offset FROM offsets WHERE topic = ? AND partition = ?", (topic, partition)
        ).fetchone()
        return None if row is None else int(row[0])

    def consumed(self, topic: str) -> int:
        """Records read from ``topic`` so far (the sum of its stored offsets; fresh topics)."""
        (n,) = self._db.execute(
            "SELECT COALESCE(SUM(next_offset), 0) FROM offsets WHERE topic = ?", (topic,)
        ).fetchone()
        return int(n)

    def arm_counts(self, experiment: str | None = None) -> list[ArmCounts]:
        """Per (experiment, arm): explanations published and distinct explanations per outcome."""
        rows = self._db.execute(
            """
            SELECT e.experiment, e.arm, COUNT(DISTINCT e.explanation_id),
              COUNT(DISTINCT o.explanation_id),
              COUNT(DISTINCT CASE WHEN o.kind = 'helpful' THEN o.explanation_id END),
              COUNT(DISTINCT CASE WHEN o.kind = 'not_helpful' THEN o.explanation_id END),
              COUNT(DISTINCT CASE WHEN o.kind = 'click' THEN o.explanation_id END),
              COUNT(DISTINCT CASE WHEN o.kind = 'dismiss' THEN o.explanation_id END),
              COUNT(DISTINCT CASE WHEN o.kind = 'report' THEN o.explanation_id END)
            FROM explanations e LEFT JOIN outcomes o ON o.explanation_id = e.explanation_id
            WHERE (? IS NULL OR e.experiment = ?)
            GROUP BY e.experiment, e.arm ORDER BY e.experiment, e.arm
            """,
            (experiment, experiment),
        ).fetchall()
        return [ArmCounts(*row) for row in rows]

    def tallies(self) -> dict[str, int]:
        """Duplicates, late, resolved orphans, replays skipped, dead letters; plus open orphans."""
        counts = {name: 0 for name in TALLIES}
        counts.update(dict(self._db.execute("SELECT name, n FROM tallies").fetchall()))
        (orphans,) = self._db.execute(
            "SELECT COUNT(*) FROM feedback WHERE status = 'orphan'"
        ).fetchone()
        counts["orphan_open"] = int(orphans)
        return counts

    def rated(self) -> list[dict[str, Any]]:
        """Explanations with a helpful or not-helpful outcome (text, evidence JSON, the verdict)."""
        rows = self._db.execute(
            """
            SELECT e.explanation_id, e.experiment, e.arm, e.explainer, e.user_id, e.item_id,
              e.text, e.evidence,
              MAX(o.kind = 'helpful'), MAX(o.kind = 'not_helpful')
            FROM explanations e JOIN outcomes o ON o.explanation_id = e.explanation_id
            WHERE o.kind IN ('helpful', 'not_helpful')
            GROUP BY e.explanation_id ORDER BY e.item_id, e.explanation_id
            """
        ).fetchall()
        keys = ("id", "experiment", "arm", "explainer", "user_id", "item_id", "text", "evidence")
        out = []
        for row in rows:
            record = dict(zip(keys, row[:8], strict=True))
            helpful, not_helpful = bool(row[8]), bool(row[9])
            record["helpful"] = helpful if helpful != not_helpful else None  # None: both given
            out.append(record)
        return out

    def feedback_total(self) -> int:
        (n,) = self._db.execute("SELECT COUNT(*) FROM feedback").fetchone()
        return int(n)
