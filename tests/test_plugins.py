"""The plugin system: built-ins and a real third-party package arrive through the same entry points.

The example plugin (plugins/recx-example-plugin) is pip-installed into the test environment
when it is not installed yet, then found through its entry point like any other plugin.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recx_worker import plugins
from recx_worker.chain import ChainResult, ExplainerChain
from recx_worker.cli import app
from recx_worker.default_plugins.template import TemplateExplainer
from recx_worker.events import Evidence, RecommendationEvent
from recx_worker.explainer import ExplainerContext, ExplainRequest, Explanation
from recx_worker.features import Lexicon
from recx_worker.guard import Guard
from recx_worker.hookspecs import hookimpl

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "plugins" / "recx-example-plugin"
RECX = Path(sys.executable).with_name("recx")
PIP_INSTALL = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]


@pytest.fixture(scope="session")
def example_plugin() -> None:
    """Install the example plugin (editable) if needed and make it importable here."""
    try:
        importlib.metadata.distribution("recx-example-plugin")
    except importlib.metadata.PackageNotFoundError:
        subprocess.run(
            [*PIP_INSTALL, "-e", str(EXAMPLE)],
            check=True,
            timeout=300,
        )
        site.addsitedir(sysconfig.get_paths()["purelib"])  # run the new editable .pth hook
        importlib.invalidate_caches()
    plugins.plugin_manager.cache_clear()
    yield
    plugins.plugin_manager.cache_clear()


def test_builtin_explainers_come_through_entry_points():
    names = {ep.name: ep.value for ep in plugins.entry_points()}
    for builtin in ("template", "prompt", "lora"):
        assert names[builtin] == f"recx_worker.default_plugins.{builtin}"
    found = plugins.registered_explainers()
    assert found["template"].package.startswith("recx ")
    assert found["template"].plugin == "template"


def test_example_plugin_is_registered_with_its_package(example_plugin):
    found = plugins.registered_explainers()
    assert found["feature-list"].version == "0.1.0"
    assert found["feature-list"].package == "recx-example-plugin 0.1.0"
    assert [g.__name__ for g in plugins.registered_guards()] == ["NoShoutingGuard"]


def test_recx_plugins_lists_every_explainer(example_plugin):
    out = subprocess.run(
        [str(RECX), "plugins"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 3}
    assert {"template", "prompt", "lora", "feature-list"} <= set(rows)
    assert "recx-example-plugin 0.1.0" in rows["feature-list"]
    assert "recx 0.1.0" in rows["template"]
    assert "extra guards: NoShoutingGuard" in out


LEXICON = Lexicon(["tuner", "display", "clip", "sound"])


def request(event_id: str, features: list[str]) -> ExplainRequest:
    event = RecommendationEvent(event_id=event_id, user_id="u", item_id="i")
    return ExplainRequest(event, Evidence(item_features=features))


def test_example_plugin_answers_inside_the_chain(example_plugin):
    feature_list = plugins.create_explainer("feature-list", ExplainerContext(lexicon=LEXICON))
    chain = ExplainerChain([(feature_list, 1.0), (TemplateExplainer(), 1.0)], Guard(LEXICON))
    with_features, without = chain.explain(
        [request("a", ["tuner", "display", "clip"]), request("b", [])]
    )
    assert isinstance(with_features, ChainResult)
    assert with_features.event.explainer == "feature-list"
    assert with_features.event.text == (
        "People who bought this one mention the tuner, the display and the clip."
    )
    assert with_features.event.mentioned_features == ["tuner", "display", "clip"]
    # Its per-item failure hands that request to the template.
    assert without.event.explainer == "template"
    assert without.skipped[0].detail == "NoFeatures: the item has no known features"
    assert without.skipped[0].reason == "declined"  # returned on purpose, not a crash
    chain.close()


class Shouting(TemplateExplainer):
    name = "shouting"

    def explain_one(self, request: ExplainRequest) -> Explanation:
        return Explanation(super().explain_one(request).text.upper())


def test_plugin_guards_run_in_the_chain(example_plugin):
    guard = Guard.with_plugins(LEXICON)
    chain = ExplainerChain([(Shouting(), 1.0), (TemplateExplainer(), 1.0)], guard)
    (result,) = chain.explain([request("a", ["tuner"])])
    assert result.event.explainer == "template"
    assert result.skipped[0].reason == "guard_rejected"
    assert result.skipped[0].detail.startswith("guard NoShoutingGuard: mostly upper-case")
    chain.close()


class _DuplicateTemplate:
    """A plugin that (wrongly) registers a second explainer named "template"."""

    class Template(TemplateExplainer):
        name = "template"

    @staticmethod
    @hookimpl
    def recx_explainers() -> list[type]:
        return [_DuplicateTemplate.Template]


def test_duplicate_explainer_names_are_refused_with_both_packages_named():
    pm = plugins.plugin_manager()
    pm.register(_DuplicateTemplate, name="dup-template-plugin")
    try:
        with pytest.raises(plugins.DuplicateExplainerError) as caught:
            plugins.registered_explainers()
        message = str(caught.value)
        assert "two plugins provide an explainer named 'template'" in message
        assert "recx 0.1.0 (plugin template)" in message
        assert "module dup-template-plugin (plugin dup-template-plugin)" in message
        result = CliRunner().invoke(app, ["plugins"])
        assert result.exit_code == 2
        assert result.output.startswith("error: two plugins provide an explainer named")
    finally:
        pm.unregister(name="dup-template-plugin")
    assert plugins.registered_explainers()["template"].package.startswith("recx ")


def test_create_explainer_checks_options_and_the_contract():
    with pytest.raises(plugins.PluginError, match=r"explainer 'template' from recx .* cannot"):
        plugins.create_explainer("template", ExplainerContext(), no_such_option=1)

    class NotAnExplainer:
        name = "not-an-explainer"

        def __init__(self, *, context: ExplainerContext) -> None:
            self.context = context

    class Plugin:
        @staticmethod
        @hookimpl
        def recx_explainers() -> list[type]:
            return [NotAnExplainer]

    pm = plugins.plugin_manager()
    pm.register(Plugin, name="broken-plugin")
    try:
        with pytest.raises(plugins.PluginError, match=r"is not an Explainer \(missing \["):
            plugins.create_explainer("not-an-explainer", ExplainerContext())
    finally:
        pm.unregister(name="broken-plugin")


def test_explainers_get_the_context_not_the_settings():
    context = ExplainerContext(lexicon=LEXICON)
    template = plugins.create_explainer("template", context)
    assert template.context is context
    lora = plugins.create_explainer("lora", context, adapter_dir="adapters/x")
    assert str(lora.adapter_dir) == "adapters/x"
    assert lora.model_cache == context.paths.model_cache.expanduser()
