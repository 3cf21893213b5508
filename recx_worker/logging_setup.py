"""structlog configuration: one JSON object per line, personal data and raw text redacted.

Log lines carry ids (``event_id``, partition, offset), never reviewer names or raw review
text: ``redact`` replaces any such key before rendering, whoever logs it. Standard-library
loggers (kafka-python) go through the same renderer.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# Keys whose values may hold personal data or raw review/explanation input.
REDACTED_KEYS = frozenset(
    {
        "reviewer_name",
        "reviewerName",
        "review_text",
        "reviewText",
        "review",
        "summary",
        "original",
        "raw",
        "value",
        "payload",
    }
)
REDACTED = "[redacted]"


def redact(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """Processor: replace values of ``REDACTED_KEYS`` (so no call site can leak them)."""
    for key in REDACTED_KEYS.intersection(event_dict):
        event_dict[key] = REDACTED
    return event_dict


def configure_logging(level: str = "INFO", fmt: str = "json", *, stream: Any = None) -> None:
    """Route structlog and stdlib logging to ``stream`` (stderr) as JSON (or console) lines."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING or ERROR")
    if fmt not in ("json", "console"):
        raise ValueError(f"unknown log format {fmt!r}; use json or console")
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # kafka-python is chatty at INFO (every connection and metadata refresh).
    logging.getLogger("kafka").setLevel(max(numeric, logging.WARNING))
