"""The ``recx`` command line. Each area owns its sub-commands; this module only assembles them.

Every command takes ``--config FILE`` (added here, once, to the whole command tree): the file
is used for that command, the settings are checked before the command runs (a bad setting is
a one-line error, exit code 2) and ``worker.plugin_modules`` are loaded, so plugins are the
same for every command. Heavy libraries (torch, transformers, faiss) are imported inside
commands, so ``recx --help`` and ``recx kafka ...`` start fast.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from recx_worker import explain_cli, topics_cli
from recx_worker.config import BadSetting, load_settings, use_config_file
from recx_worker.devtools.kafka_local import cli as kafka_cli
from recx_worker.plugins import PluginError
from recx_worker.retrieval import cli as index_cli
from recx_worker.worker import cli as worker_cli
from training import cli as train_cli
from training.data import cli as data_cli
from training.evaluation import cli as eval_cli

CONFIG_HELP = "TOML settings file (else RECX_CONFIG); RECX_* variables override it"
ConfigOption = Annotated[Path | None, typer.Option("--config", help=CONFIG_HELP, dir_okay=False)]
_stderr = Console(stderr=True, soft_wrap=True)


def _prepare() -> None:
    """Check the settings (one-line error if bad) and load ``worker.plugin_modules``."""
    from recx_worker.plugins import load_plugin_modules

    try:
        load_plugin_modules(load_settings().worker.plugin_modules)
    except (ImportError, PluginError) as exc:
        raise BadSetting(f"worker.plugin_modules: {exc}") from None


def with_config(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` with a ``--config`` option (its own, if it has one, is used as well) that
    is used while it runs, settings checked first and a ``BadSetting`` as one line (exit 2)."""
    signature = inspect.signature(command, eval_str=True)
    has_own = "config" in signature.parameters

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        config = kwargs.get("config") if has_own else kwargs.pop("config", None)
        use_config_file(config)
        try:
            _prepare()
            return command(*args, **kwargs)
        except (BadSetting, PluginError) as exc:
            _stderr.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
            raise typer.Exit(2) from None
        finally:
            use_config_file(None)

    if not has_own:
        extra = inspect.Parameter(
            "config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ConfigOption
        )
        run.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*signature.parameters.values(), extra]
        )
        run.__annotations__ = {**command.__annotations__, "config": ConfigOption}
    return run


def add_config_option(app: typer.Typer) -> None:
    """``--config`` on every command of ``app`` and of the apps added to it."""
    for info in app.registered_commands:
        if info.callback is not None:
            info.callback = with_config(info.callback)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            add_config_option(group.typer_instance)


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
app.add_typer(topics_cli.app, name="topics", help="Create the worker's Kafka topics.")
app.add_typer(bench_app, name="bench")
explain_cli.register(app)
worker_cli.register(app)
eval_cli.register(app)
for module in (index_cli, worker_cli, eval_cli):
    module.register_bench(bench_app)
add_config_option(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
