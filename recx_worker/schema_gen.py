"""JSON Schema files for the published events, generated from the pydantic models.

``schemas/<name>`` is ``events.ALL_SCHEMAS[name].model_json_schema()`` pretty-printed; ``write``
regenerates them, ``check`` lists every drift (missing, changed or unlisted files).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from recx_worker.events import ALL_SCHEMAS

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
DEFAULT_DIR = Path("schemas")


def schema_documents() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema document, for every published event."""
    docs: dict[str, dict[str, Any]] = {}
    for name, model in ALL_SCHEMAS.items():
        docs[name] = {"$schema": JSON_SCHEMA_DIALECT, **model.model_json_schema(mode="validation")}
    return docs


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def write_schemas(directory: Path = DEFAULT_DIR) -> list[Path]:
    """(Re)write every schema file; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, doc in schema_documents().items():
        path = directory / name
        path.write_text(render(doc), encoding="utf-8")
        written.append(path)
    return written


def check_schemas(directory: Path = DEFAULT_DIR) -> list[str]:
    """Human-readable drift between the models and ``directory``; empty when in sync."""
    problems = []
    docs = schema_documents()
    for name, doc in docs.items():
        path = directory / name
        if not path.exists():
            problems.append(f"{path}: missing (run `recx schemas write`)")
        elif path.read_text(encoding="utf-8") != render(doc):
            problems.append(f"{path}: differs from the model (run `recx schemas write`)")
    for path in sorted(directory.glob("*.json")):
        if path.name not in docs:
            problems.append(f"{path}: not in events.ALL_SCHEMAS (published versions stay listed)")
    return problems
