"""Where a worker's Kafka CPU goes: CPU microseconds per event of each thread, for the bench
ceiling and for the real worker loop with an echo pipeline (no explaining at all) or the real
pipeline, on the same broker and the same bench events.

    python -m recx_worker.devtools.kafka_cost --events 20000 ceiling echo ceiling+pad=700 \\
        echo+pad=700 echo+pad=700+burn=300 real

A variant is a mode and its options joined by ``+``. Modes: ``ceiling`` (``recx bench
worker``'s consume -> produce -> commit loop), ``echo`` (``Worker`` with a pipeline that
copies each input into an explanation-topic record), ``real`` (``Worker`` with the template
chain). Options: ``pad=N`` appends N bytes to each output (the bench input is ~335 bytes, a
template explanation ~1,044), ``burn=US`` makes the echo pipeline spend US microseconds of CPU
per event (a stand-in for explaining); any other ``name=value`` is a ``worker.*`` setting of
the worker modes (``linger_ms=0``, ``producer_options={"send_buffer_bytes":1048576}``). Each
variant runs in its own process on fresh topics and drains the same backlog; per-thread CPU
comes from ``/proc/<pid>/task`` between the first and the last output (as ``recx bench
worker`` counts). Prints one JSON line per variant.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from recx_worker.devtools import bench_worker as bw

ENV_PAD, ENV_BURN, ENV_THREADS = "RECX_KC_PAD", "RECX_KC_BURN_US", "RECX_KC_THREADS"


# ------------------------------------------------------------------------- child processes
def _publish_thread_names(path: str) -> None:
    """Write ``{native thread id: name}`` to ``path`` every second (for the parent)."""

    def loop() -> None:
        while True:
            names = {t.native_id: t.name for t in threading.enumerate()}
            Path(path).write_text(json.dumps(names))
            time.sleep(1.0)

    threading.Thread(target=loop, daemon=True, name="kc-names").start()


class EchoPipeline:
    """The worker's pipeline doing nothing: each input becomes an explanation-topic record of
    the same bytes (plus ``pad`` bytes), after ``burn_us`` of busy CPU per event."""

    core_available = True  # as Pipeline's: the worker's /readyz reads it

    def __init__(self, settings: Any, _metrics: Any) -> None:
        self.topic = settings.kafka.output_topic
        self.pad = b" " * int(os.environ.get(ENV_PAD, "0"))
        self.burn_s = int(os.environ.get(ENV_BURN, "0")) / 1e6

    def warm_up(self) -> None:
        pass

    def close(self) -> None:
        pass

    def submit(self, records: list[Any]) -> Any:
        from recx_worker.worker.pipeline import Deferred

        return Deferred(lambda: self.process(records))

    def process(self, records: list[Any]) -> list[Any]:
        from recx_worker.worker.records import H_EVENT_ID, OutRecord

        end = time.thread_time() + self.burn_s * len(records)
        while self.burn_s and time.thread_time() < end:
            pass
        return [
            OutRecord(
                kind="explanation",
                topic=self.topic,
                key=r.key,
                value=(r.value or b"") + self.pad,
                headers=[(H_EVENT_ID, b"bench-00000")],
                label="echo",
                source=r,
            )
            for r in records
        ]


def _child(mode: str) -> None:
    _publish_thread_names(os.environ[ENV_THREADS])
    if mode == "ceiling":
        bw.passthrough(pad=b" " * int(os.environ.get(ENV_PAD, "0")))
        return
    from recx_worker.config import Settings
    from recx_worker.worker.runner import Worker

    worker = Worker(Settings(), pipeline_factory=EchoPipeline if mode == "echo" else None)
    worker.install_signal_handlers()
    sys.exit(worker.run())


# ------------------------------------------------------------------------------- the parent
def _task_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of ``pid``."""
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def _thread_label(name: str) -> str:
    """kafka-python's thread names carry the client id: keep what says what the thread is."""
    if name.endswith("-network-thread"):
        return "producer network thread"
    if name.startswith("kafka-io"):
        return "consumer IO thread"
    if name.startswith("kafka-python-producer"):
        return "producer network thread"
    return name


def _setting(text: str) -> Any:
    """A ``worker.*`` value from a variant option: JSON where it parses (numbers, mappings such
    as ``producer_options={"compression_type":"gzip"}``), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def run_variant(
    variant: str, bootstrap: str, payloads: list[dict], data: Path, index: Path
) -> dict[str, Any]:
    """Drain ``payloads`` with one process of ``variant``; its throughput and thread CPU."""
    mode, *opts = variant.split("+")
    options = dict(o.split("=", 1) for o in opts)
    settings = {k: _setting(v) for k, v in options.items() if k not in ("pad", "burn")}
    run = f"kc-{uuid.uuid4().hex[:8]}"
    topics = bw._create_topics(bootstrap, run, 6)
    bw._publish(bootstrap, topics["input"], payloads, rate=None)
    names_file = Path(tempfile.gettempdir()) / f"{run}.threads"
    env = bw.worker_env(
        bootstrap,
        topics,
        run,
        data=data,
        index=index,
        explainers=["template"],
        # kafka-python's producer unless a variant says producer_client=librdkafka
        worker={"worker_id": "kc-0", "metrics_port": -1, "max_batch": 64}
        | {"producer_client": "kafka-python"}
        | settings,
    )
    env |= {ENV_PAD: options.get("pad", "0"), ENV_BURN: options.get("burn", "0")}
    env[ENV_THREADS] = str(names_file)
    cmd = [sys.executable, "-m", "recx_worker.devtools.kafka_cost", "--child", mode]
    log = open(Path(tempfile.gettempdir()) / f"{run}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        n = len(payloads)
        begin: dict[int, float] = {}
        outputs = bw._collect(
            bootstrap, topics["output"], n, 600, on_first=lambda: begin.update(_task_cpu(proc.pid))
        )
        end = _task_cpu(proc.pid)
        names = json.loads(names_file.read_text()) if names_file.exists() else {}
        threads: dict[str, float] = {}
        for tid, seconds in end.items():
            label = _thread_label(names.get(str(tid), "other"))
            threads[label] = threads.get(label, 0.0) + (seconds - begin.get(tid, 0.0)) / n * 1e6
        stamps = [o.appended_ms for o in outputs.values()]
        return {
            "variant": variant,
            "events_per_s": round((n - 1) / ((max(stamps) - min(stamps)) / 1000)),
            "cpu_us_per_event": round(sum(threads.values()), 1),
            "threads_us_per_event": {k: round(v, 1) for k, v in threads.items() if v >= 0.5},
            "load_average": os.getloadavg()[0],
        }
    finally:
        proc.terminate()
        proc.wait(30)


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        _child(argv[1])
        return
    n, bootstrap = 20_000, None
    data, index = Path("var/data/musical"), Path("var/index/musical")
    while argv and argv[0].startswith("--"):
        flag, value, argv = argv[0], argv[1], argv[2:]
        if flag == "--events":
            n = int(value)
        elif flag == "--bootstrap":
            bootstrap = value
        elif flag == "--data":
            data = Path(value)
        elif flag == "--index":
            index = Path(value)
    payloads = bw._events_from_data(data, n)
    broker = None
    if bootstrap is None:
        from recx_worker.devtools.kafka_local import LocalKafka

        broker = LocalKafka(Path(tempfile.mkdtemp(prefix="kc-kafka-")), nodes=1).start()
        bootstrap = broker.bootstrap
    try:
        for variant in argv:
            print(json.dumps(run_variant(variant, bootstrap, payloads, data, index)), flush=True)
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
