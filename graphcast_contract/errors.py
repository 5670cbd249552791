"""The exit-code table and the errors that map to it.

Each error carries the exit code of the process and the status its forecast_runs row gets;
the codes are stored in `forecast_runs.exit_code`, so their meanings never change.
"""
from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes; documented in the README and `--help`."""

    OK = 0
    INTERNAL = 1          # unexpected error (a bug): see the log's traceback
    USAGE = 2             # invalid command line or configuration
    NO_DATA = 3           # ERA5 snapshot missing or invalid: nothing sent, nothing written
    API_FAILED = 4        # API unreachable, timed out, or answered with an error
    INVALID_REPLY = 5     # API reply malformed, incomplete or implausible
    DATABASE = 6          # database unreachable or failing
    ALREADY_RUNNING = 7   # another run holds the lock
    SCHEDULE = 8          # --install-schedule / --uninstall-schedule failed


EXIT_CODE_HELP = """exit codes:
  0  success (every cycle written)
  1  unexpected error (see logs/pipeline.log)
  2  invalid command line or configuration
  3  ERA5 snapshot missing or invalid (nothing sent, nothing written)
  4  GraphCast API unreachable, timed out or answering with an error
  5  GraphCast API reply malformed, incomplete or implausible
  6  database unreachable or failing
  7  another run is in progress (PostgreSQL advisory lock held)
  8  --install-schedule / --uninstall-schedule failed (crontab or schtasks)"""


class JobError(Exception):
    """A failure with a clear message; `status` is the forecast_runs status it leads to."""

    exit_code: ExitCode = ExitCode.INTERNAL
    status: str = "failed"


class ConfigError(JobError):
    exit_code = ExitCode.USAGE


class MissingDataError(JobError):
    """The ERA5 store lacks a field the model needs (the cycle is skipped)."""

    exit_code = ExitCode.NO_DATA
    status = "skipped"


class InvalidDataError(JobError):
    """A stored ERA5 field has the wrong shape, non-finite or implausible values."""

    exit_code = ExitCode.NO_DATA


class ApiError(JobError):
    exit_code = ExitCode.API_FAILED


class InvalidReplyError(JobError):
    exit_code = ExitCode.INVALID_REPLY


class DatabaseError(JobError):
    exit_code = ExitCode.DATABASE


class AlreadyRunningError(JobError):
    exit_code = ExitCode.ALREADY_RUNNING
    status = "skipped"
