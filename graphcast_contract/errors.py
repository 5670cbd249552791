"""The exit-code table and the errors that map to it.

Each error carries the exit code of the process and the status its forecast_runs row gets;
the codes are stored in `forecast_runs.exit_code`, so their meanings never change.
"""
from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes of every program of the project; the README's table lists them.

    0-8 are the batch job's (stored in forecast_runs); other programs reuse a meaning where
    it fits and take 9 and up for what the job has no code for.
    """

    OK = 0
    INTERNAL = 1            # unexpected error (a bug): see the log's traceback
    USAGE = 2               # invalid command line or configuration
    NO_DATA = 3             # input data missing or invalid: nothing sent, nothing written
    API_FAILED = 4          # API unreachable, timed out, or answered with an error
    INVALID_REPLY = 5       # API reply malformed, incomplete or implausible
    DATABASE = 6            # database unreachable or failing
    ALREADY_RUNNING = 7     # another run holds the lock
    SCHEDULE = 8            # --install-schedule / --uninstall-schedule failed
    UNREADABLE_FILE = 9     # an input file is missing, unreadable or of an unknown format
    DOWNLOAD_FAILED = 10    # a download failed (HTTP error, unreachable, incomplete)
    OUTPUT_FAILED = 11      # an output file or folder could not be written
    MODEL_FAILED = 12       # checkpoint or statistics missing, unreadable or invalid
    CANNOT_LISTEN = 13      # the service cannot listen on its address (port taken)
    DEVICE_UNAVAILABLE = 14  # the requested device or precision is not available
    CLUSTER_UNREACHABLE = 15  # the Ray cluster cannot be joined, or runs no backfill worker
    INTERRUPTED = 16        # stopped by Ctrl-C or SIGTERM before every cycle was run


MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.INTERNAL: "unexpected error (a bug; see the log's traceback)",
    ExitCode.USAGE: "invalid command line or configuration",
    ExitCode.NO_DATA: "input data missing or invalid (nothing sent, nothing written)",
    ExitCode.API_FAILED: "GraphCast API unreachable, timed out or answering with an error",
    ExitCode.INVALID_REPLY: "GraphCast API reply malformed, incomplete or implausible",
    ExitCode.DATABASE: "database unreachable or failing",
    ExitCode.ALREADY_RUNNING: "another process is running that cycle (its advisory lock is held)",
    ExitCode.SCHEDULE: "--install-schedule / --uninstall-schedule failed (crontab or schtasks)",
    ExitCode.UNREADABLE_FILE: "an input file is missing, unreadable or of an unknown format",
    ExitCode.DOWNLOAD_FAILED: "a download failed (HTTP error, unreachable, incomplete)",
    ExitCode.OUTPUT_FAILED: "an output file or folder could not be written",
    ExitCode.MODEL_FAILED: "checkpoint or statistics missing, unreadable or invalid",
    ExitCode.CANNOT_LISTEN: "the service cannot listen on its address (port taken)",
    ExitCode.DEVICE_UNAVAILABLE: "the requested device or precision is not available",
    ExitCode.CLUSTER_UNREACHABLE: "the Ray cluster of --cluster cannot be joined, or has "
                                  "room for no worker, or every worker died for good",
    ExitCode.INTERRUPTED: "stopped by Ctrl-C (or SIGTERM: the scheduled run) before every "
                          "cycle was run",
}


def exit_code_help(*codes: ExitCode) -> str:
    """The `--help` epilog of a program that exits with `codes` (0 is always listed)."""
    listed = sorted({ExitCode.OK, *codes})
    return "exit codes:\n" + "\n".join(f"  {int(c):<2} {MEANINGS[c]}" for c in listed)


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (psycopg2's and xarray's run over several), as
    the programs' one-line errors print it."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# The batch job's codes: 9, 10 and 11 (its cache folder) come from the live job's --fetch;
# 11 (the engine's cache folder), 12 and 15 from --backfill (which loads the model itself);
# 16 from a run stopped by Ctrl-C or SIGTERM.
EXIT_CODE_HELP = exit_code_help(*(code for code in ExitCode if code <= ExitCode.SCHEDULE),
                                ExitCode.UNREADABLE_FILE, ExitCode.DOWNLOAD_FAILED,
                                ExitCode.OUTPUT_FAILED, ExitCode.MODEL_FAILED,
                                ExitCode.CLUSTER_UNREACHABLE, ExitCode.INTERRUPTED)


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


class ClusterError(JobError):
    """The Ray cluster of a backfill cannot be joined or started, has no room for a
    worker, or lost every worker for good."""

    exit_code = ExitCode.CLUSTER_UNREACHABLE


class AlreadyRunningError(JobError):
    exit_code = ExitCode.ALREADY_RUNNING
    status = "skipped"


class Interrupted(JobError):
    """SIGINT (Ctrl-C) or SIGTERM stopped the run: its attempt is recorded as failed (its rows
    rolled back) and no later cycle runs."""

    exit_code = ExitCode.INTERRUPTED


class FetchError(JobError):
    """The live job's `--fetch` failed: nothing is forecast, and the job exits with the
    fetch command's own code (download, data, file, cache folder, database, URL)."""

    status = "skipped"

    def __init__(self, message: str, exit_code: ExitCode) -> None:
        super().__init__(message)
        self.exit_code = exit_code
