"""Broker configuration files: ``server.properties`` per node and a log4j2 config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Kafka 4 logs through log4j2; INFO for Kafka itself, WARN for the libraries, into
# <node dir>/logs/server.log (kafka.logs.dir is passed as a system property).
LOG4J2_XML = """\
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <RollingFile name="file" fileName="${sys:kafka.logs.dir}/server.log"
                 filePattern="${sys:kafka.logs.dir}/server.log.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <SizeBasedTriggeringPolicy size="20 MB"/>
      <DefaultRolloverStrategy max="2"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Logger name="kafka" level="INFO"/>
    <Logger name="org.apache.kafka" level="INFO"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Root level="WARN"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
"""


@dataclass(frozen=True)
class NodeSpec:
    """One combined broker+controller process."""

    node_id: int
    port: int
    controller_port: int
    directory: Path

    @property
    def log_dir(self) -> Path:
        return self.directory / "data"

    @property
    def config_file(self) -> Path:
        return self.directory / "server.properties"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


def server_properties(node: NodeSpec, nodes: list[NodeSpec]) -> dict[str, str]:
    """KRaft combined-mode settings; replication factor 3 / min ISR 2 when there are 3 nodes."""
    voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in nodes)
    replication = min(3, len(nodes))
    min_isr = 2 if replication >= 3 else 1
    return {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(node.log_dir),
        "num.partitions": "1",
        "default.replication.factor": str(replication),
        "min.insync.replicas": str(min_isr),
        "offsets.topic.replication.factor": str(replication),
        "offsets.topic.num.partitions": "12",
        "transaction.state.log.replication.factor": str(replication),
        "transaction.state.log.min.isr": str(min_isr),
        "transaction.state.log.num.partitions": "12",
        "share.coordinator.state.topic.replication.factor": str(replication),
        "share.coordinator.state.topic.min.isr": str(min_isr),
        "auto.create.topics.enable": "true",
        "unclean.leader.election.enable": "false",
        # Fast and small: a laptop / 2-core CI machine, not production.
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
        "background.threads": "2",
        "log.cleaner.threads": "1",
        "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
        "broker.heartbeat.interval.ms": "1000",
        "broker.session.timeout.ms": "6000",
        "controlled.shutdown.enable": "true",
    }


def write_node_files(node: NodeSpec, nodes: list[NodeSpec]) -> None:
    """(Re)write server.properties and log4j2.xml for ``node``."""
    node.directory.mkdir(parents=True, exist_ok=True)
    props = server_properties(node, nodes)
    text = "# Written by recx kafka; rewritten on every start.\n"
    text += "".join(f"{key}={value}\n" for key, value in props.items())
    node.config_file.write_text(text)
    (node.directory / "log4j2.xml").write_text(LOG4J2_XML)
