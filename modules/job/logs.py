"""Logging of the batch job: stdout and a rotating `logs/pipeline.log`, passwords masked."""
from __future__ import annotations

import io
import logging
import os
import re
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import TextIO

_SECRETS = (
    (re.compile(r"(://[^:/@\s]*:)\S*@"), r"\1***@"),  # URL user:password@ (to the last @)
    (re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE), r"\1***"),  # libpq key=value
    (re.compile(r"(Bearer\s+)\S+"), r"\1***"),
)
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def redact(text: str) -> str:
    """`text` with passwords and bearer tokens replaced by ***."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFormatter(logging.Formatter):
    """A formatter that masks secrets in the whole formatted record (tracebacks too)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(log_dir: Path, level: str = "INFO") -> None:
    """Log to stdout and to `log_dir/pipeline.log` (5 MB x 5 files)."""
    formatter = RedactingFormatter(FORMAT)
    log_file = log_dir / "pipeline.log"
    handlers: list[logging.Handler] = []
    if not _writes_to(sys.stdout, log_file):  # cron appends stdout to the log file already
        handlers.append(logging.StreamHandler(sys.stdout))
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(RotatingFileHandler(log_file, maxBytes=5_000_000,
                                            backupCount=5, encoding="utf-8"))
    except OSError as exc:
        print(f"warning: cannot write logs to {log_dir}: {exc}", file=sys.stderr)
    root = logging.getLogger()
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level if level in logging.getLevelNamesMapping() else "INFO")
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def _writes_to(stream: TextIO, path: Path) -> bool:
    """Whether `stream` is the file `path` (as with cron's `>> logs/pipeline.log`)."""
    try:
        return os.path.samestat(os.fstat(stream.fileno()), os.stat(path))
    except (OSError, ValueError, io.UnsupportedOperation):
        return False
