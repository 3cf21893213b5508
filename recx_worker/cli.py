"""The ``recx`` command line. Each area owns its sub-commands; this module only assembles them.

Heavy libraries (torch, transformers, faiss) are imported inside commands, so ``recx --help``
and ``recx kafka ...`` start fast.
"""

from __future__ import annotations

import typer

from recx_worker import explain_cli
from recx_worker.console import cli as console_cli
from recx_worker.devtools.kafka_local import cli as kafka_cli
from recx_worker.feedback import cli as feedback_cli
from recx_worker.retrieval import cli as index_cli
from recx_worker.worker import cli as worker_cli
from training import cli as train_cli
from training.data import cli as data_cli
from training.evaluation import cli as eval_cli

app = typer.Typer(
    name="recx",
    help="Natural-language explanations for recommendations, served from Kafka.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
bench_app = typer.Typer(help="Benchmarks: throughput, latency, memory.", no_args_is_help=True)

app.add_typer(kafka_cli.app, name="kafka", help="A local Apache Kafka (KRaft) for dev/tests.")
app.add_typer(data_cli.app, name="data", help="Reviews -> explanation data.")
app.add_typer(index_cli.app, name="index", help="Embeddings + FAISS index.")
app.add_typer(train_cli.app, name="train", help="Fine-tune explainers.")
app.add_typer(bench_app, name="bench")
explain_cli.register(app)
worker_cli.register(app)
eval_cli.register(app)
feedback_cli.register(app)
console_cli.register(app)
for module in (index_cli, worker_cli, eval_cli):
    module.register_bench(bench_app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
