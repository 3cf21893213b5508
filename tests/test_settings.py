"""Settings as people type them, and one clear line for every bad one (no traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from recx_worker.cli import app
from recx_worker.config import BadSetting, load_settings


@pytest.mark.parametrize(
    "value, expected",
    [
        ("template", ["template"]),
        ("template,lora", ["template", "lora"]),
        (" lora , template ", ["lora", "template"]),
        ('["template"]', ["template"]),
        ("['template', 'prompt']", ["template", "prompt"]),  # a Python-style list as well
    ],
)
def test_list_settings_accept_comma_and_json_lists(monkeypatch, value, expected):
    monkeypatch.setenv("RECX_CHAIN__EXPLAINERS", value)
    assert load_settings().chain.explainers == expected


def test_mapping_settings_accept_json_and_key_value_pairs(monkeypatch):
    monkeypatch.setenv("RECX_CHAIN__DEADLINE_MS", "lora=5000, template=700")
    assert load_settings().chain.deadline_ms == {"lora": 5000, "template": 700}
    monkeypatch.setenv("RECX_CHAIN__DEADLINE_MS", '{"template": 900}')
    assert load_settings().chain.deadline_ms == {"template": 900}
    monkeypatch.delenv("RECX_CHAIN__DEADLINE_MS")
    monkeypatch.setenv("RECX_CHAIN__DEADLINE_MS__LORA", "1234")
    assert load_settings().chain.deadline_ms["lora"] == 1234


# (variable, value, fragments of the one-line message)
BAD_ENV = [
    (
        "RECX_CHAIN__EXPLAINERS",
        "[template",
        ["chain.explainers", '"[template"', "a comma list or a JSON list", "e.g. template"],
    ),
    (
        "RECX_CHAIN__DEADLINE_MS__LORA",
        "soon",
        ["chain.deadline_ms.lora", '"soon"', "an integer", "e.g. 120000"],
    ),
    (
        "RECX_CHAIN__DEADLINE_MS",
        "{lora: 5}",
        ["chain.deadline_ms", "a valid JSON object", "e.g. lora=120000,template=1000"],
    ),
    ("RECX_WORKER__MAX_BATCH", "0", ["worker.max_batch", '"0"', "a number >= 1", "e.g. 64"]),
    ("RECX_KAFKA__EXACTLY_ONCE", "maybe", ["kafka.exactly_once", "true or false"]),
    ("RECX_CHAIN__EXPLAINER", "template", ["unknown setting chain.explainer", "explainers"]),
    ("RECX_CHAIN", "lora", ["setting chain (RECX_CHAIN)", "RECX_CHAIN__NAME=value"]),
    ("RECX_WORKER__PLUGIN_MODULES", "no_such_plugin_mod", ["No module named"]),
]


@pytest.mark.parametrize("var, value, fragments", BAD_ENV, ids=[b[0] for b in BAD_ENV])
@pytest.mark.parametrize("command", [["plugins"], ["explain", "--user", "u", "--item", "i"]])
def test_bad_setting_is_one_line_naming_field_value_and_example(var, value, fragments, command):
    result = CliRunner().invoke(app, command, env={var: value})
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.output


def test_config_option_on_every_command_and_bad_toml_values(tmp_path: Path):
    config = tmp_path / "recx.toml"
    config.write_text("[chain]\nexplainers = 5\n")
    for command in (["plugins"], ["index", "query", "--item", "x"], ["topics", "create"]):
        result = CliRunner().invoke(app, [*command, "--config", str(config)])
        assert result.exit_code == 2, (command, result.output)
        assert result.output.strip() == (
            "error: invalid setting chain.explainers (RECX_CHAIN__EXPLAINERS or [chain] "
            "explainers): got 5; expected a list, e.g. template or lora,prompt,template"
        )
    config.write_text("[chain\n")
    result = CliRunner().invoke(app, ["plugins", "--config", str(config)])
    assert result.exit_code == 2 and "is not valid TOML" in result.output
    missing = CliRunner().invoke(app, ["plugins", "--config", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 2 and "nope.toml does not exist" in missing.output


def test_config_file_is_used_by_the_command(tmp_path: Path):
    config = tmp_path / "recx.toml"
    config.write_text('[worker]\nplugin_modules = "worker_test_plugins"\n')
    result = CliRunner().invoke(app, ["plugins", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "slow-template" in result.output and "module worker_test_plugins" in result.output
    with pytest.raises(BadSetting):  # the file applied to that command only
        load_settings(tmp_path / "other.toml")


def test_settings_env_round_trips_through_the_environment(monkeypatch):
    from recx_worker.config import settings_env

    env = settings_env(
        {
            "chain": {"explainers": ["lora", "template"], "deadline_ms": {"lora": 5}},
            "kafka": {"exactly_once": True, "input_topic": "in"},
            "paths": {"data_dir": Path("/tmp/d")},
        }
    )
    assert env["RECX_CHAIN__EXPLAINERS"] == '["lora", "template"]'
    assert env["RECX_KAFKA__EXACTLY_ONCE"] == "true"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.chain.explainers == ["lora", "template"]
    assert settings.chain.deadline_ms == {"lora": 5}
    assert settings.kafka.exactly_once and settings.kafka.input_topic == "in"
    assert settings.paths.data_dir == Path("/tmp/d")
    with pytest.raises(BadSetting, match=r"unknown setting chain\.explainer "):
        settings_env({"chain": {"explainer": "x"}})


def test_every_command_takes_config():
    from typer.main import get_command

    def leaves(command, path=()):
        subs = getattr(command, "commands", None)
        if subs is None:
            yield " ".join(path), command
            return
        for name, sub in subs.items():
            yield from leaves(sub, (*path, name))

    commands = dict(leaves(get_command(app)))
    assert {"explain", "plugins", "worker", "eval", "topics create", "data prepare"} <= set(
        commands
    )
    without = [
        name for name, cmd in commands.items() if "config" not in {p.name for p in cmd.params}
    ]
    assert without == []
