"""``recx kafka up|status|down``: a local Apache Kafka (KRaft) for development, tests and demos."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from recx_worker.devtools.kafka_local.jars import KafkaSetupError

app = typer.Typer(no_args_is_help=True)

DataDir = Annotated[
    Path, typer.Option("--data-dir", help="Cluster state + logs; reused on the next `up`.")
]
DEFAULT_DATA_DIR = Path("var/kafka")
DEFAULT_PORT = 9092


def _fail(message: str) -> None:
    typer.secho(message, err=True, fg=typer.colors.RED)
    raise typer.Exit(code=1)


@app.command()
def up(
    nodes: Annotated[
        int | None,
        typer.Option(
            "--nodes", help="1, or 3 for a real KRaft quorum. Default: as stored, else 1."
        ),
    ] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            help="First broker port (brokers use PORT.., controllers follow). "
            f"Default: the ports stored in the data dir, else {DEFAULT_PORT}.",
        ),
    ] = None,
) -> None:
    """Format storage (first time), start the broker(s) and print the bootstrap servers."""
    from recx_worker.devtools.kafka_local.cluster import LocalKafka

    try:
        cluster = LocalKafka(data_dir, nodes=nodes, port=port, detach=True)
        if port is None and not cluster.nodes:
            cluster.requested_port = DEFAULT_PORT
        if all(s.alive for s in cluster.status()) and cluster.nodes:
            typer.echo(f"Kafka already running in {cluster.data_dir}", err=True)
        else:
            typer.echo(
                f"Starting {cluster.nodes_count}-node Kafka in {cluster.data_dir} ...", err=True
            )
            cluster.start()
            runtime = cluster.runtime
            assert runtime is not None
            typer.echo(
                f"Kafka {runtime.version} ({runtime.source}) up in {cluster.startup_s:.1f} s",
                err=True,
            )
    except KafkaSetupError as exc:
        _fail(str(exc))
    typer.echo(cluster.bootstrap)
    typer.echo(f"export RECX_KAFKA__BOOTSTRAP_SERVERS={cluster.bootstrap}", err=True)


@app.command()
def status(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show the nodes recorded in the data dir and whether their processes run."""
    from recx_worker.devtools.kafka_local.cluster import LocalKafka

    try:
        cluster = LocalKafka(data_dir)
    except KafkaSetupError as exc:
        _fail(str(exc))
    if not cluster.nodes:
        _fail(f"No local Kafka in {cluster.data_dir} (start one with `recx kafka up`).")
    info = cluster.describe()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
    else:
        typer.echo(f"data dir  {info['data_dir']}\nbootstrap {info['bootstrap']}")
        for node in info["nodes"]:
            state = "running" if node["alive"] else "stopped"
            typer.echo(f"node {node['node_id']}  port {node['port']}  pid {node['pid']}  {state}")
    if not all(node["alive"] for node in info["nodes"]):
        raise typer.Exit(code=3)


@app.command()
def down(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    grace: Annotated[float, typer.Option(help="Seconds between SIGTERM and SIGKILL.")] = 30.0,
) -> None:
    """Stop exactly the processes recorded in the data dir's pid files (data is kept)."""
    from recx_worker.devtools.kafka_local.cluster import LocalKafka

    try:
        cluster = LocalKafka(data_dir)
    except KafkaSetupError as exc:
        _fail(str(exc))
    running = [s.node_id for s in cluster.status() if s.alive]
    cluster.stop(grace_s=grace)
    typer.echo(f"Stopped {len(running)} Kafka process(es) from {cluster.data_dir}; data kept.")
