"""Logging of the batch job: stdout and a rotating `logs/pipeline.log`, secrets masked and
every message kept on one line.

Two layers protect the logs: `redact` masks the configured secret values themselves
(`register_secrets`, fed from the settings) plus anything shaped like a URL password, a
libpq `password=` or a bearer token; `escape` turns control characters of external text
(API replies, exception messages, file contents) into visible escapes, so that no one can
forge a log line with an embedded newline.
"""
from __future__ import annotations

import io
import logging
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO
from urllib.parse import quote

from config.settings import Settings, SettingsError, load_settings
from graphcast_contract.log_files import LOG_FORMAT, rotating_file_handler

_SECRETS = (
    (re.compile(r"(://[^:/@\s]*:)\S*@"), r"\1***@"),  # URL user:password@ (to the last @)
    (re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE), r"\1***"),  # libpq key=value
    (re.compile(r"(Bearer\s+)\S+"), r"\1***"),
)
# Shorter values would mask ordinary words; such a secret is too weak to protect anyway.
MIN_SECRET_LENGTH = 4
_registered: set[str] = set()
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def register_secrets(values: Iterable[str | None]) -> None:
    """Mask these exact values (and their URL-encoded and escaped forms) from now on."""
    for value in values:
        if value and len(value) >= MIN_SECRET_LENGTH:
            _registered.update({value, quote(value, safe=""), quote(value), escape(value)})


def command_settings(*extra_secrets: str | None) -> Settings | None:
    """The job's settings for a command, their secrets (and `extra_secrets`) registered for
    masking; None after one line on stderr when a setting is unusable (exit USAGE)."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"configuration error: {clean(exc)}", file=sys.stderr)
        return None
    register_secrets((*settings.secrets(), *extra_secrets))
    return settings


def redact(text: str) -> str:
    """`text` with the registered secrets, passwords and bearer tokens replaced by ***."""
    for secret in sorted(_registered, key=len, reverse=True):  # longest first
        text = text.replace(secret, "***")
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def escape(text: str) -> str:
    """`text` on one line: control characters (newline, CR, ESC ...) as `\\n`, `\\x1b` ..."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def clean(text: object) -> str:
    """External text made safe to log or store: secrets masked, then on one line."""
    return escape(redact(str(text)))


class RedactingFormatter(logging.Formatter):
    """Masks secrets in the whole formatted record (tracebacks too) and keeps the message
    itself on one line, whatever text its arguments bring."""

    def format(self, record: logging.LogRecord) -> str:
        one_line = logging.makeLogRecord({**record.__dict__, "args": None,
                                          "msg": clean(record.getMessage())})
        return redact(super().format(one_line))


def setup_logging(log_dir: Path, level: str = "INFO") -> None:
    """Log to stdout and to `log_dir/pipeline.log` (rotated: `graphcast_contract.log_files`)."""
    formatter = RedactingFormatter(LOG_FORMAT)
    log_file = log_dir / "pipeline.log"
    handlers: list[logging.Handler] = []
    if not _writes_to(sys.stdout, log_file):  # cron appends stdout to the log file already
        handlers.append(logging.StreamHandler(sys.stdout))
    try:
        handlers.append(rotating_file_handler(log_file))
    except OSError as exc:
        print(f"warning: cannot write logs to {log_dir}: {clean(exc)}", file=sys.stderr)
    root = logging.getLogger()
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level)  # one of config.settings.LOG_LEVELS
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def setup_console_logging(fmt: str = "%(asctime)s %(levelname)s %(message)s") -> None:
    """Log INFO and up to stderr with the redacting formatter (the loader, verification).
    Like `logging.basicConfig`, nothing is added when logging is already set up (a caller's
    or pytest's handlers)."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter(fmt))
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def _writes_to(stream: TextIO, path: Path) -> bool:
    """Whether `stream` is the file `path` (as with cron's `>> logs/pipeline.log`)."""
    try:
        return os.path.samestat(os.fstat(stream.fileno()), os.stat(path))
    except (OSError, ValueError, io.UnsupportedOperation):
        return False
