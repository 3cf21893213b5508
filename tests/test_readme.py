"""README promises that can rot: every setting documented, the two commands present."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from recx_worker.config import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _env_vars(model: type[BaseModel], prefix: str = "RECX_") -> list[str]:
    names = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names += _env_vars(annotation, f"{prefix}{name.upper()}__")
        else:
            names.append(f"{prefix}{name.upper()}")
    return names


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    variables = _env_vars(Settings)
    assert len(variables) > 30
    missing = [v for v in variables if f"`{v}`" not in README]
    assert not missing, f"README 'Configuration' lacks: {missing}"


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one() -> None:
    assert "make demo" in README and "make test" in README
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in ci
