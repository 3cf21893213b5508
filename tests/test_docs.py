"""The documentation site: generated reference pages current, mkdocs build --strict clean."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from recx_worker.config import Settings
from recx_worker.devtools.gen_docs import PAGES, env_var, settings_rows, stale_pages

ROOT = Path(__file__).resolve().parents[1]


def test_generated_reference_pages_match_the_code() -> None:
    stale = stale_pages()
    assert not stale, f"stale: {stale}; run `python -m recx_worker.devtools.gen_docs`"


def test_every_setting_has_a_description_and_is_in_the_reference() -> None:
    rows = settings_rows(Settings)
    assert len(rows) > 30
    undocumented = [name for name, info in rows if not (info.description or "").strip()]
    assert not undocumented, f"settings without a description (config.py): {undocumented}"
    page = (ROOT / "docs/reference/settings.md").read_text(encoding="utf-8")
    missing = [name for name, _ in rows if f"`{env_var(name)}`" not in page]
    assert not missing, f"docs/reference/settings.md lacks: {missing}"


def test_check_mode_names_a_stale_page(tmp_path: Path) -> None:
    """--check compares with the committed files; a changed page is reported, not rewritten."""
    for rel, render in PAGES.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(render(), encoding="utf-8")
    assert stale_pages(tmp_path) == []
    page = tmp_path / "docs/reference/settings.md"
    page.write_text(page.read_text(encoding="utf-8") + "edited by hand\n", encoding="utf-8")
    assert stale_pages(tmp_path) == ["docs/reference/settings.md"]


def test_mkdocs_build_strict_passes(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).parent / "mkdocs"
    if not mkdocs.exists() and shutil.which("mkdocs") is None:
        pytest.fail("mkdocs is not installed: `make setup` installs mkdocs-material")
    command = [str(mkdocs) if mkdocs.exists() else "mkdocs", "build", "--strict"]
    result = subprocess.run(
        [*command, "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=os.environ | {"NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "reference" / "settings" / "index.html").is_file()
