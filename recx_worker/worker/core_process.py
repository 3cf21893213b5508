"""The explain core in child processes (``worker.core_processes`` > 0).

In one process the Kafka client (consumer poll, producer ``send`` and its network thread) and
the explain core share one GIL and so one core; here the core runs in child processes
(``concurrent.futures.ProcessPoolExecutor``, spawned: the worker has threads) and the worker
process keeps the Kafka I/O. Input bytes go to the child, ``pipeline.Encoded`` outcomes (the
explanation JSON already encoded), the stage timings and the deadline batcher's measurements
come back (for the worker's metrics).

- **Warm before ready**: every child opens and warms the core in its initializer and waits
  at a barrier for the others; ``warm_up`` returns once a first task has run, i.e. all are warm.
- **Pipelining**: ``submit`` returns at once (the worker hands a batch over as soon as it is
  cut), so the child explains batch N+1 while the worker delivers batch N.
- **A child that dies** (killed, out of memory, a crash in native code) breaks the pool: the
  batch is retried once on a fresh pool; if that dies too, ``CoreProcessDied`` is raised and the
  worker isolates the batch record by record (a record that kills the core alone becomes a
  ``ProcessingError`` dead letter). Nothing is lost: outputs are produced and offsets committed
  by the worker as for the core on its own thread. A pool that cannot be started again raises
  ``CoreUnavailable``: the worker stops (exit 1, nothing committed past it) and its partitions
  go to another member.
"""

from __future__ import annotations

import gc
import multiprocessing
import signal
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

import structlog

from recx_worker.worker.checkpoint import FatalDeliveryError

if TYPE_CHECKING:
    from multiprocessing.synchronize import Barrier

    from recx_worker.config import Settings
    from recx_worker.core import ExplainCore, StageTimer
    from recx_worker.worker.pipeline import Encoded

log = structlog.get_logger(__name__)

#: How long the children may take to open and warm the core (a language model loads slowly).
WARM_UP_TIMEOUT_S = 900.0
#: A child's answer: the encoded outcomes, the stage timings ``(stage, seconds)`` and the
#: snapshot of its chain's deadline batcher (``DeadlineBatcher.snapshot``; empty if none).
Answer = tuple[list["Encoded"], list[tuple[str, float]], dict[str, dict[str, float]]]


class BatcherSnapshot:
    """What the core processes' deadline batcher measured, as of the latest answer (the
    ``snapshot`` the worker's metrics read at scrape time)."""

    def __init__(self) -> None:
        self.latest: dict[str, dict[str, float]] = {}

    def snapshot(self) -> dict[str, dict[str, float]]:
        return self.latest


class CoreProcessDied(RuntimeError):
    """The core process died twice while explaining one batch."""


class CoreUnavailable(FatalDeliveryError):
    """The core processes could not be started again: the worker must stop."""


class CoreProcess:
    """``ExplainCore`` in ``settings.worker.core_processes`` child processes; same lifecycle
    (``warm_up``, ``close``, ``on_stage``), ``submit`` instead of ``process``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.processes = settings.worker.core_processes
        self.on_stage: StageTimer | None = None
        self.batcher = BatcherSnapshot()
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._generation = 0  # increases with every (re)started pool
        self._closed = False
        self._restarting = False

    # -- lifecycle ---------------------------------------------------------------------------
    def warm_up(self) -> dict[str, str]:
        """Start the children and wait until all are warm; ``{explainer: why}`` for stages
        disabled on the way (as ``ExplainCore.warm_up``)."""
        pool, disabled = self._start()
        with self._lock:
            self._pool = pool
            self._generation += 1
        return disabled

    def close(self) -> None:
        """Stop the children (batches not started are cancelled)."""
        with self._lock:
            pool, self._pool, self._closed = self._pool, None, True
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def pids(self) -> list[int]:
        """The children's process ids (empty before ``warm_up``)."""
        return _pids(self._pool)

    @property
    def available(self) -> bool:
        """Warm children are there to take a batch: started, not closed and not being
        restarted (the worker's ``/readyz`` says no in between)."""
        with self._lock:
            return self._pool is not None and not self._closed and not self._restarting

    # -- batches -----------------------------------------------------------------------------
    def submit(self, values: list[bytes]) -> ChildBatch:
        """Hand a batch to the children; never blocks (a pool being restarted gets it later)."""
        with self._lock:
            pool, generation = self._pool, self._generation
            future: Future[Answer] | None = None
            if pool is not None:
                try:
                    future = pool.submit(_process, values)
                except (BrokenProcessPool, RuntimeError):  # broken or shut down: at result()
                    future = None
        return ChildBatch(self, values, future, generation)

    def _submit_now(self, values: list[bytes]) -> tuple[Future[Answer], int]:
        """Submit on the current pool, starting a new one first if it is broken."""
        for _ in range(2):
            with self._lock:
                if self._closed or self._pool is None:
                    raise CoreUnavailable("the core process is closed")
                pool, generation = self._pool, self._generation
            try:
                return pool.submit(_process, values), generation
            except BrokenProcessPool:
                self.restart(generation)
        raise CoreUnavailable("the core process broke again as soon as it was started")

    def restart(self, generation: int) -> None:
        """Replace the pool of ``generation`` (a broken one) with a fresh, warm one; a no-op
        when that pool was replaced already. Raises ``CoreUnavailable`` if it cannot start."""
        with self._lock:
            if generation != self._generation or self._closed:
                return
            old, self._restarting = self._pool, True
        log.error("core_process_died", generation=generation, restarting=True)
        if old is not None:
            old.shutdown(wait=False, cancel_futures=True)
        try:
            pool, _ = self._start()
        except Exception as exc:
            with self._lock:
                self._closed = True  # every later batch fails at once: the worker stops
                self._restarting = False
            reason = f"core process restart failed: {type(exc).__name__}: {exc}"
            raise CoreUnavailable(reason) from exc
        with self._lock:
            self._pool = pool
            self._generation += 1
            self._restarting = False
        log.info("core_process_restarted", generation=self._generation)

    def _start(self) -> tuple[ProcessPoolExecutor, dict[str, str]]:
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(self.processes)
        pool = ProcessPoolExecutor(
            self.processes,
            mp_context=context,
            initializer=_start_child,
            initargs=(self.settings, barrier),
        )
        try:  # one task per child: each submit spawns one (they meet at the barrier)
            tasks = [pool.submit(_disabled_explainers) for _ in range(self.processes)]
            answers = [t.result(timeout=WARM_UP_TIMEOUT_S) for t in tasks]
            disabled = answers[0]
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        log.info("core_processes_warm", processes=self.processes, pids=_pids(pool))
        return pool, disabled

    def _answered(self, answer: Answer) -> list[Encoded]:
        encoded, timings, batcher = answer
        if self.on_stage is not None:
            for stage, seconds in timings:
                self.on_stage(stage, seconds)
        if batcher:
            self.batcher.latest = batcher
        return encoded


class ChildBatch:
    """One batch handed to the core processes (``CoreProcess.submit``)."""

    def __init__(
        self, owner: CoreProcess, values: list[bytes], future: Future[Answer] | None, gen: int
    ) -> None:
        self.owner = owner
        self.values = values
        self.future = future
        self.generation = gen

    def result(self) -> list[Encoded]:
        """The batch's encoded outcomes, in order (stage timings go to ``on_stage``); a batch
        whose child died is retried once on a fresh pool, then ``CoreProcessDied``."""
        for attempt in range(2):
            if self.future is None:
                self.future, self.generation = self.owner._submit_now(self.values)
            try:
                answer = self.future.result()
            except BrokenProcessPool:
                self.future = None
                self.owner.restart(self.generation)
                log.warning("core_batch_retried", events=len(self.values), attempt=attempt + 1)
                continue
            return self.owner._answered(answer)
        raise CoreProcessDied(f"the core process died twice on a batch of {len(self.values)}")


# -- in the child ------------------------------------------------------------------------------
_core: ExplainCore | None = None
_disabled: dict[str, str] = {}
_timings: list[tuple[str, float]] = []


def _start_child(settings: Settings, barrier: Barrier) -> None:
    """Initializer of a core process: logging, plugins, the core opened and warmed, then
    wait for the other children. Signals are the worker's: it closes the children itself."""
    from multiprocessing.util import Finalize

    from recx_worker.core import ExplainCore
    from recx_worker.logging_setup import configure_logging
    from recx_worker.plugins import load_plugin_modules

    global _core
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    configure_logging(settings.worker.log_level, settings.worker.log_format)
    load_plugin_modules(settings.worker.plugin_modules)
    _core = ExplainCore.open(settings, on_stage=lambda stage, s: _timings.append((stage, s)))
    _disabled.update(_core.warm_up())
    # as the worker does after warm-up: the long-lived objects out of the collector's reach
    gc.collect()
    gc.freeze()
    Finalize(None, _core.close, exitpriority=10)  # on a clean exit of the child
    barrier.wait(timeout=WARM_UP_TIMEOUT_S)


def _disabled_explainers() -> dict[str, str]:
    return dict(_disabled)


def _process(values: list[bytes]) -> Answer:
    """One micro-batch through the core, encoded, with its stage timings and the batcher's
    measurements."""
    from recx_worker.worker.pipeline import encode

    assert _core is not None
    _timings.clear()
    encoded = encode(_core.process(values))
    batcher = getattr(_core.chain, "batcher", None)  # an experiment's ArmChains has none
    return encoded, list(_timings), batcher.snapshot() if batcher is not None else {}


def _pids(pool: ProcessPoolExecutor | None) -> list[int]:
    """The pool's child process ids (``ProcessPoolExecutor`` has no public accessor)."""
    return sorted(getattr(pool, "_processes", None) or {})
