"""Structured logs for every process: JSON lines in production, readable on a terminal.

Standard-library loggers (Faust, aiokafka, uvicorn) go through the same renderer,
so one process writes one format.
"""

from __future__ import annotations

import logging
import logging.config
import sys
from typing import Any

import structlog


def _renderer(log_format: str) -> Any:
    console = log_format == "console" or (log_format == "auto" and sys.stderr.isatty())
    return structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()


_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def logging_config(log_format: str, level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` routing every stdlib logger through structlog."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structlog": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    _renderer(log_format),
                ],
                "foreign_pre_chain": _SHARED,
            }
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "structlog",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
    }


def configure(log_format: str = "auto", level: str = "info") -> None:
    """Set up structlog and stdlib logging once per process."""
    logging.config.dictConfig(logging_config(log_format, level))
    structlog.configure(
        processors=[
            *_SHARED,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
