"""The project's log files (the job's `logs/pipeline.log`, the service's `--log-file`): both
rotate the same way, so neither grows without bound under cron, systemd or Task Scheduler,
and both write lines of the same format."""
from __future__ import annotations

from logging.handlers import RotatingFileHandler
from pathlib import Path

LOG_FILE_BYTES = 5_000_000
LOG_FILE_COUNT = 5  # rotated files kept besides the current one
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def rotating_file_handler(path: Path) -> RotatingFileHandler:
    """A handler appending to `path`, rotated at LOG_FILE_BYTES, LOG_FILE_COUNT files kept;
    OSError when its folder cannot be made or the file cannot be opened."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return RotatingFileHandler(path, maxBytes=LOG_FILE_BYTES, backupCount=LOG_FILE_COUNT,
                               encoding="utf-8")
