"""``LocalKafka``: format, start, stop and restart local KRaft brokers (1 or 3 nodes).

Each node is one ``java`` process running broker and controller together on 127.0.0.1.
The data dir holds ``state.json`` (cluster id, ports, pids) and one ``node-<id>/`` folder per
node (``server.properties``, ``kafka.pid``, ``data/`` log dir, ``logs/server.log``).
Processes are only ever stopped by the pids recorded here, never by name.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from recx_worker.devtools.kafka_local import cds
from recx_worker.devtools.kafka_local.jars import KafkaRuntime, KafkaSetupError, resolve_runtime
from recx_worker.devtools.kafka_local.properties import NodeSpec, write_node_files

DEFAULT_JVM_OPTS = (
    "-Xms64m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 "
    "-XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true"
)
STATE_FILE = "state.json"


@dataclass
class NodeStatus:
    node_id: int
    port: int
    controller_port: int
    pid: int | None
    alive: bool


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding.

    It never starts with ``-`` (StorageTool's argument parser would read it as an option).
    """
    while (cid := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))[0] == "-":
        pass
    return cid


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports that are free on 127.0.0.1 right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _process_alive(pid: int, marker: str) -> bool:
    """True if ``pid`` runs and its command line contains ``marker`` (guards recycled pids)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z" and marker in _cmdline(pid)


def _tail(path: Path, lines: int = 25) -> str:
    if not path.is_file():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class LocalKafka:
    """A local KRaft cluster of ``nodes`` combined broker+controller processes.

    Node ids are 1..nodes and equal the broker ids clients see in metadata, so
    ``stop_node(cluster.leader_of(topic, 0))`` stops that partition's leader.
    ``detach=False`` (the default, for tests): brokers get SIGTERM when the thread that
    started them exits, so call ``start``/``start_node`` from a long-lived (main) thread.
    ``detach=True`` (``recx kafka up``): brokers outlive the starting process.
    """

    def __init__(
        self,
        data_dir: Path | str = Path("var/kafka"),
        nodes: int | None = None,
        port: int | None = None,
        *,
        detach: bool = False,
        startup_timeout_s: float = 120.0,
        jvm_opts: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        stored = self._stored_node_count()
        nodes = nodes or stored or 1
        if nodes not in (1, 3):
            raise KafkaSetupError(f"--nodes must be 1 or 3 (got {nodes})")
        if stored and stored != nodes:
            raise KafkaSetupError(
                f"{self.data_dir} holds a {stored}-node cluster; use --nodes {stored} "
                "or another --data-dir"
            )
        self.nodes_count = nodes
        self.requested_port = port
        self.detach = detach
        self.startup_timeout_s = startup_timeout_s
        self.jvm_opts = shlex.split(
            jvm_opts or os.environ.get("RECX_KAFKA_JVM_OPTS", DEFAULT_JVM_OPTS)
        )
        self.runtime: KafkaRuntime | None = None
        self.cluster_id = ""
        self.nodes: list[NodeSpec] = []
        self.startup_s: float | None = None
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._load_state()

    # ------------------------------------------------------------------ state
    @property
    def state_file(self) -> Path:
        return self.data_dir / STATE_FILE

    @property
    def bootstrap(self) -> str:
        """Comma-separated ``host:port`` list for clients."""
        return ",".join(n.bootstrap for n in self.nodes)

    def node(self, node_id: int) -> NodeSpec:
        for spec in self.nodes:
            if spec.node_id == node_id:
                return spec
        raise KeyError(f"no node {node_id} (nodes are 1..{len(self.nodes)})")

    def _read_state(self) -> dict[str, Any] | None:
        if not self.state_file.is_file():
            return None
        return json.loads(self.state_file.read_text())

    def _stored_node_count(self) -> int | None:
        state = self._read_state()
        return len(state["nodes"]) if state and state.get("nodes") else None

    def _load_state(self) -> None:
        state = self._read_state()
        if not state:
            return
        stored = state["nodes"]
        self.cluster_id = state["cluster_id"]
        self.nodes = [
            NodeSpec(
                n["node_id"],
                n["port"],
                n["controller_port"],
                self.data_dir / f"node-{n['node_id']}",
            )
            for n in stored
        ]

    def _save_state(self) -> None:
        state: dict[str, Any] = {
            "cluster_id": self.cluster_id,
            "kafka_version": self.runtime.version if self.runtime else None,
            "libs": str(self.runtime.libs) if self.runtime else None,
            "bootstrap": self.bootstrap,
            "startup_s": self.startup_s,
            "nodes": [
                {"node_id": n.node_id, "port": n.port, "controller_port": n.controller_port,
                 "pid": self._read_pid(n)}
                for n in self.nodes
            ],
        }  # fmt: skip
        self.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.state_file)

    def _plan_nodes(self) -> None:
        """Pick ports: stored ones, ``port``+i (controllers after the brokers), or free ones."""
        n = self.nodes_count
        stored_ports = [s.port for s in self.nodes]
        if (
            self.requested_port is not None
            and stored_ports
            and stored_ports[0] != self.requested_port
        ):
            self.nodes = []
        if self.nodes:
            return
        if self.requested_port is not None:
            ports = [self.requested_port + i for i in range(2 * n)]
        else:
            ports = free_ports(2 * n)
        self.nodes = [
            NodeSpec(i + 1, ports[i], ports[n + i], self.data_dir / f"node-{i + 1}")
            for i in range(n)
        ]

    # -------------------------------------------------------------- processes
    @staticmethod
    def _pid_file(node: NodeSpec) -> Path:
        return node.directory / "kafka.pid"

    def _read_pid(self, node: NodeSpec) -> int | None:
        try:
            return int(self._pid_file(node).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def is_alive(self, node_id: int) -> bool:
        node = self.node(node_id)
        proc = self._procs.get(node_id)
        if proc is not None:
            return proc.poll() is None
        pid = self._read_pid(node)
        return pid is not None and _process_alive(pid, str(node.config_file))

    def status(self) -> list[NodeStatus]:
        return [
            NodeStatus(
                n.node_id, n.port, n.controller_port, self._read_pid(n), self.is_alive(n.node_id)
            )
            for n in self.nodes
        ]

    def _java(self, node: NodeSpec, main: str, *args: str) -> list[str]:
        assert self.runtime is not None
        record_cds = main == "kafka.Kafka" and node.node_id == 1
        return [
            self.runtime.java,
            *self.jvm_opts,
            *cds.jvm_flags(self.runtime, node.directory, record=record_cds),
            f"-Dlog4j2.configurationFile={node.directory / 'log4j2.xml'}",
            f"-Dkafka.logs.dir={node.directory / 'logs'}",
            "-cp",
            self.runtime.classpath,
            main,
            *args,
        ]

    def _format_storage(self) -> None:
        """Run kafka.tools.StorageTool format on nodes whose log dir is not formatted yet."""
        todo = [n for n in self.nodes if not (n.log_dir / "meta.properties").is_file()]
        procs = []
        for node in todo:
            cmd = self._java(
                node, "kafka.tools.StorageTool", "format",
                "-t", self.cluster_id, "-c", str(node.config_file),
            )  # fmt: skip
            procs.append(
                (node, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
            )
        for node, proc in procs:
            out, _ = proc.communicate(timeout=120)
            if proc.returncode != 0:
                raise KafkaSetupError(
                    f"Formatting {node.log_dir} failed:\n{out.decode(errors='replace')[-2000:]}"
                )

    def _spawn(self, node: NodeSpec) -> None:
        if self.is_alive(node.node_id):
            return
        for port in (node.port, node.controller_port):
            if port_in_use(port):
                raise KafkaSetupError(
                    f"Port {port} on 127.0.0.1 is already in use; pass --port with a free base "
                    "port, or stop what uses it."
                )
        (node.directory / "logs").mkdir(parents=True, exist_ok=True)
        cmd = self._java(node, "kafka.Kafka", str(node.config_file))
        if not self.detach and shutil.which("setpriv"):
            # Attached brokers die with the Python process (thread) that started them, so a
            # killed test run leaves no orphan JVMs behind.
            cmd = ["setpriv", "--pdeathsig", "TERM", *cmd]
        with open(node.directory / "stdout.log", "ab") as out:
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=node.directory,
                start_new_session=self.detach,
            )
        self._procs[node.node_id] = proc
        self._pid_file(node).write_text(f"{proc.pid}\n")

    def start(self) -> LocalKafka:
        """Format (first time only), start every node and wait until all brokers answer."""
        started = time.monotonic()
        self.runtime = resolve_runtime()
        if not self.cluster_id:
            self.cluster_id = new_cluster_id()
        self._plan_nodes()
        for node in self.nodes:
            write_node_files(node, self.nodes)
        self._save_state()
        self._format_storage()
        try:
            for node in self.nodes:
                self._spawn(node)
            self._save_state()
            self.wait_ready([n.node_id for n in self.nodes])
        except BaseException:
            self.stop()
            raise
        self.startup_s = round(time.monotonic() - started, 2)
        self._save_state()
        return self

    def start_node(self, node_id: int) -> None:
        """Start one stopped node again (same config and data) and wait until it is back."""
        if self.runtime is None:
            self.runtime = resolve_runtime()
        node = self.node(node_id)
        write_node_files(node, self.nodes)
        self._spawn(node)
        self._save_state()
        self.wait_ready([node_id])

    def stop_node(self, node_id: int, *, kill: bool = False, grace_s: float = 30.0) -> None:
        """SIGTERM (controlled shutdown), SIGKILL after ``grace_s``; ``kill=True``: SIGKILL now."""
        self._stop_many([node_id], kill=kill, grace_s=grace_s)

    def stop(self, *, kill: bool = False, grace_s: float = 30.0) -> None:
        """Stop every node this data dir started (all at once, so the quorum stays up)."""
        self._stop_many([n.node_id for n in self.nodes], kill=kill, grace_s=grace_s)

    def _stop_many(self, node_ids: list[int], *, kill: bool, grace_s: float) -> None:
        pids: dict[int, int] = {}
        for node_id in node_ids:
            node = self.node(node_id)
            pid = self._read_pid(node)
            if pid is not None and self.is_alive(node_id):
                pids[node_id] = pid
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for node_id, pid in pids.items():
            # A JVM recording the class-data archive writes it after shutdown: allow for that.
            recording = not kill and "ArchiveClassesAtExit" in _cmdline(pid)
            node_deadline = deadline + (120 if recording else 0)
            while self.is_alive(node_id) and time.monotonic() < node_deadline:
                time.sleep(0.1)
            clean = not kill
            if self.is_alive(node_id):
                clean = False
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                while self.is_alive(node_id):
                    time.sleep(0.05)
            proc = self._procs.pop(node_id, None)
            if proc is not None:
                proc.wait()
            self._finish_cds(self.node(node_id), clean)
        for node_id in node_ids:
            self._pid_file(self.node(node_id)).unlink(missing_ok=True)
        if self.nodes:
            self._save_state()

    def _finish_cds(self, node: NodeSpec, clean: bool) -> None:
        recording = node.directory / cds.RECORDING
        if not recording.exists():
            return
        if not clean:  # a killed JVM leaves no (or a partial) archive
            recording.unlink(missing_ok=True)
            return
        try:
            runtime = self.runtime or resolve_runtime(fetch=False)
        except KafkaSetupError:
            return
        cds.adopt(runtime, node.directory)

    # -------------------------------------------------------------- readiness
    def _failure(self, node: NodeSpec, why: str) -> KafkaSetupError:
        logs = "\n".join(
            f"--- {path.name} (last lines)\n{text}"
            for path in (node.directory / "stdout.log", node.directory / "logs" / "server.log")
            if (text := _tail(path, 15))
        )
        return KafkaSetupError(
            f"Kafka node {node.node_id} ({node.bootstrap}) {why}. Logs: {node.directory}\n{logs}"
        )

    def wait_ready(self, node_ids: list[int], timeout_s: float | None = None) -> None:
        """Block until every node in ``node_ids`` is an unfenced broker in cluster metadata."""
        deadline = time.monotonic() + (timeout_s or self.startup_timeout_s)
        specs = [self.node(i) for i in node_ids]
        for node in specs:
            while True:
                if not self.is_alive(node.node_id):
                    raise self._failure(node, "exited during start-up")
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", node.port), 0.5),
                ):
                    break
                if time.monotonic() > deadline:
                    raise self._failure(node, "did not open its port in time")
                time.sleep(0.1)
        wanted = set(node_ids)
        last_error = ""
        while True:
            try:
                brokers = self.live_brokers(bootstrap=specs[0].bootstrap)
                if wanted <= brokers:
                    return
                last_error = f"brokers in metadata: {sorted(brokers)}"
            except Exception as exc:  # any client error while the cluster forms: retry
                last_error = f"{type(exc).__name__}: {exc}"
            for node in specs:
                if not self.is_alive(node.node_id):
                    raise self._failure(node, "exited during start-up")
            if time.monotonic() > deadline:
                raise self._failure(specs[0], f"did not answer metadata requests ({last_error})")
            time.sleep(0.25)

    def live_brokers(self, bootstrap: str | None = None) -> set[int]:
        """Ids of unfenced brokers, as a metadata request reports them."""
        with self.admin(bootstrap) as admin:
            cluster = admin.describe_cluster()
        return {b["broker_id"] for b in cluster["brokers"] if not b.get("is_fenced")}

    @contextlib.contextmanager
    def admin(self, bootstrap: str | None = None) -> Iterator[Any]:
        """A kafka-python ``KafkaAdminClient`` for this cluster (closed on exit)."""
        from kafka.admin import KafkaAdminClient

        client = KafkaAdminClient(
            bootstrap_servers=(bootstrap or self.bootstrap).split(","),
            request_timeout_ms=10_000,
            bootstrap_timeout_ms=10_000,
            client_id="recx-kafka-local",
        )
        try:
            yield client
        finally:
            client.close()

    def leader_of(self, topic: str, partition: int = 0) -> int:
        """Broker id (= node id) currently leading ``topic``/``partition``."""
        with self.admin() as admin:
            (info,) = admin.describe_topics([topic])
        for p in info["partitions"]:
            if p["partition_index"] == partition:
                return int(p["leader_id"])
        raise KeyError(f"{topic} has no partition {partition}")

    def __enter__(self) -> LocalKafka:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def describe(self) -> dict[str, Any]:
        """State for ``recx kafka status``."""
        return {
            "data_dir": str(self.data_dir),
            "cluster_id": self.cluster_id,
            "bootstrap": self.bootstrap,
            "nodes": [asdict(s) for s in self.status()],
        }
