"""Logging for library code: ``log = get_logger("train")`` then ``log.info(...)`` / ``log.warning(...)``.

Library modules never ``print``; the command line (``cambrian.cli.main``) installs :func:`console_logging`, which
shows INFO lines as ``[cambrian train] ...`` on stdout and warnings as ``warning: ...`` on stderr, resolving the
streams at write time (so redirected or captured output sees them). A program that embeds the library configures
the ``cambrian`` logger like any other.
"""

from __future__ import annotations

import logging
import sys

ROOT = "cambrian"


def get_logger(component: str) -> logging.Logger:
    """The logger of one component (``train``, ``eval``, ``demo``, ...): ``cambrian.<component>``."""
    return logging.getLogger(f"{ROOT}.{component}")


class _Console(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
            component = record.name.split(".", 1)[1] if "." in record.name else ROOT
            if record.levelno >= logging.WARNING:
                print(f"{record.levelname.lower()}: {msg}", file=sys.stderr, flush=True)
            else:
                print(f"[cambrian {component}] {msg}", file=sys.stdout, flush=True)
        except Exception:  # noqa: BLE001 - a broken stream must not break training
            self.handleError(record)


def console_logging(level: int = logging.INFO) -> None:
    """Show the library's messages on the console (idempotent)."""
    logger = logging.getLogger(ROOT)
    if not any(isinstance(h, _Console) for h in logger.handlers):
        logger.addHandler(_Console())
    logger.setLevel(level)
    logger.propagate = False
