"""Run the batch job every 6 hours: a cron entry (Linux, macOS) or a Windows scheduled task,
one per source of initial conditions.

The ERA5 cron entry is the seed's, with absolute paths, `--catch-up 1` (see CATCH_UP) and
a marker comment naming the project folder, so that installing twice changes nothing and
uninstalling removes exactly that line:

    0 */6 * * * /abs/.venv/bin/python /abs/trigger_and_ingest_forecast.py --catch-up 1 \
        >> /abs/logs/pipeline.log 2>&1 # graphcast-pipeline /abs

(one line in the crontab; folded here). The live entry (`ifs-opendata`) runs 8 h after each
cycle, when ECMWF has published its open data, with `--source ifs-opendata --fetch
--catch-up 1` and its own marker (`# graphcast-pipeline-ifs-opendata /abs`), so that both
coexist.

On Windows the task `GraphCast_Pipeline` (live: `GraphCast_Pipeline_Live`) runs
`python.exe <script> --catch-up 1` on a daily trigger that repeats every 6 hours
(`schtasks /Create ... /SC DAILY /ST 00:00 /RI 360 /DU 24:00 /F`).
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

from graphcast_contract.errors import ExitCode
from graphcast_contract.project import PROJECT_ROOT
from graphcast_contract.sources import DEFAULT_SOURCE, InputSource


@dataclass(frozen=True)
class SourceSchedule:
    """When and how the job runs for one source."""

    cron_times: str  # cron's minute, hour, day, month and weekday fields
    marker: str  # comment ending this source's cron line (followed by the project folder)
    task_name: str  # the Windows scheduled task
    first_start: str  # the task's first daily start (HH:MM), then every 6 h
    job_args: tuple[str, ...]  # options of the job script


# cron and Task Scheduler fire on local clock hours: where the clock changes for daylight
# saving, the autumn change stretches one 6-hour gap to 7 hours, which can step over a UTC
# cycle (e.g. London: 23:00 UTC, then 06:00 UTC; the 00 UTC cycle is never the target). A
# shift is at most one hour, so it skips at most one cycle: each run also runs the cycle
# before its target when that has no successful run (also after a single missed slot).
CATCH_UP = ("--catch-up", "1")
# ECMWF publishes a cycle's open data roughly 6-7 h after its nominal time (README,
# "Live forecasts"): the live run starts 8 h after each cycle and fetches it first.
SCHEDULES = {
    InputSource.ERA5: SourceSchedule("0 */6 * * *", "# graphcast-pipeline",
                                     "GraphCast_Pipeline", "00:00", CATCH_UP),
    InputSource.IFS_OPENDATA: SourceSchedule(
        "0 2,8,14,20 * * *", "# graphcast-pipeline-ifs-opendata", "GraphCast_Pipeline_Live",
        "02:00", ("--source", InputSource.IFS_OPENDATA.value, "--fetch", *CATCH_UP)),
}
SCRIPT_NAME = "trigger_and_ingest_forecast.py"
LOG_NAME = Path("logs") / "pipeline.log"
SCHTASKS_TR_LIMIT = 261  # characters schtasks accepts in /TR


class ScheduleError(RuntimeError):
    """Installing or removing the schedule failed; the message says why and what to do."""


def cron_marker(project_root: PurePath, source: InputSource = DEFAULT_SOURCE) -> str:
    """The comment that tags this project's cron line of `source` (one per folder and
    source)."""
    return f"{SCHEDULES[source].marker} {project_root}"


def cron_entry(project_root: Path, python: Path, source: InputSource = DEFAULT_SOURCE) -> str:
    """The crontab line: every 6 h, `python` runs the job for `source`, stdout and stderr
    appended to logs/pipeline.log. Paths are shell-quoted; `%` (special to cron) is escaped."""
    plan = SCHEDULES[source]
    parts = [str(python), str(project_root / SCRIPT_NAME), *plan.job_args]
    if any("\n" in part for part in parts + [str(project_root)]):
        raise ScheduleError("a path contains a line break; cron cannot run it")
    command = " ".join(shlex.quote(part) for part in parts)
    log = shlex.quote(str(project_root / LOG_NAME))
    line = f"{plan.cron_times} {command} >> {log} 2>&1 {cron_marker(project_root, source)}"
    return line.replace("%", r"\%")


def with_entry(crontab: str, entry: str, project_root: PurePath,
               source: InputSource = DEFAULT_SOURCE) -> str:
    """`crontab` text with this project's line of `source` replaced by (or completed with)
    `entry`."""
    kept = without_entry(crontab, project_root, source)
    return f"{kept}{entry}\n"


def without_entry(crontab: str, project_root: PurePath,
                  source: InputSource = DEFAULT_SOURCE) -> str:
    """`crontab` text minus this project's line of `source`; every other line kept."""
    marker = cron_marker(project_root, source).replace("%", r"\%")
    kept = [line for line in crontab.splitlines() if not line.endswith(marker)]
    return "".join(f"{line}\n" for line in kept)


def read_crontab(crontab_cmd: Sequence[str] = ("crontab",)) -> str:
    """The current user's crontab ('' when there is none)."""
    result = _run_crontab([*crontab_cmd, "-l"])
    if result.returncode != 0:
        if "no crontab" in result.stderr.lower():
            return ""
        raise ScheduleError(f"crontab -l failed: {result.stderr.strip()}")
    return result.stdout


def write_crontab(text: str, crontab_cmd: Sequence[str] = ("crontab",)) -> None:
    """Replace the current user's crontab with `text`."""
    result = _run_crontab([*crontab_cmd, "-"], stdin=text)
    if result.returncode != 0:
        raise ScheduleError(f"crontab could not be written: {result.stderr.strip()}")


def _run_crontab(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise ScheduleError(
            f"'{args[0]}' not found: install cron (Debian/Ubuntu: sudo apt-get install cron) "
            "or add the line shown in the README's Scheduling section yourself") from None


def install_cron(project_root: Path, python: Path, source: InputSource = DEFAULT_SOURCE,
                 crontab_cmd: Sequence[str] = ("crontab",)) -> str:
    """Install (or update) this project's cron line of `source`; returns a one-line report."""
    entry = cron_entry(project_root, python, source)
    current = read_crontab(crontab_cmd)
    if entry in current.splitlines():
        return f"cron entry already installed: {entry}"
    write_crontab(with_entry(current, entry, project_root, source), crontab_cmd)
    return f"cron entry installed: {entry}"


def uninstall_cron(project_root: Path, source: InputSource = DEFAULT_SOURCE,
                   crontab_cmd: Sequence[str] = ("crontab",)) -> str:
    """Remove this project's cron line of `source`, and nothing else; returns a report."""
    current = read_crontab(crontab_cmd)
    remaining = without_entry(current, project_root, source)
    if remaining == current:
        return "no cron entry of this project to remove"
    write_crontab(remaining, crontab_cmd)
    return "cron entry removed"


def schtasks_create_args(project_root: PurePath, python: PurePath,
                         source: InputSource = DEFAULT_SOURCE) -> list[str]:
    """`schtasks` arguments creating (or replacing, /F) the 6-hourly task of `source`."""
    plan = SCHEDULES[source]
    action = subprocess.list2cmdline([str(python), str(project_root / SCRIPT_NAME),
                                      *plan.job_args])
    if len(action) > SCHTASKS_TR_LIMIT:
        raise ScheduleError(f"the task's command is {len(action)} characters, over the "
                            f"{SCHTASKS_TR_LIMIT} schtasks accepts: move the project to a "
                            "shorter path")
    # no /RU: the task runs as the user installing it; /RL LIMITED: never elevated, even
    # when installed from an administrator's shell
    return ["schtasks", "/Create", "/TN", plan.task_name, "/TR", action, "/SC", "DAILY",
            "/ST", plan.first_start, "/RI", "360", "/DU", "24:00", "/RL", "LIMITED", "/F"]


def schtasks_delete_args(source: InputSource = DEFAULT_SOURCE) -> list[str]:
    """`schtasks` arguments deleting the task of `source`."""
    return ["schtasks", "/Delete", "/TN", SCHEDULES[source].task_name, "/F"]


def install_windows_task(project_root: Path, python: Path, source: InputSource) -> str:
    """Create or replace the task of `source`; returns a one-line report."""
    args = schtasks_create_args(project_root, python, source)
    _run_schtasks(args)
    return (f"scheduled task {SCHEDULES[source].task_name} installed: "
            f"{subprocess.list2cmdline(args)}")


def uninstall_windows_task(source: InputSource) -> str:
    """Delete the task of `source` if it exists; returns a one-line report."""
    task_name = SCHEDULES[source].task_name
    query = subprocess.run(["schtasks", "/Query", "/TN", task_name],
                           capture_output=True, text=True, timeout=30)
    if query.returncode != 0:
        return f"no scheduled task {task_name} to remove"
    _run_schtasks(schtasks_delete_args(source))
    return f"scheduled task {task_name} removed"


def _run_schtasks(args: list[str]) -> None:
    result = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise ScheduleError(f"schtasks failed: {(result.stderr or result.stdout).strip()}")


def install_schedule(project_root: Path, source: InputSource = DEFAULT_SOURCE,
                     python: Path | None = None) -> str:
    """Install the 6-hourly run of `source` for this platform with `python` (default: the
    running interpreter, e.g. the project's .venv); returns a one-line report."""
    python = python or Path(sys.executable).absolute()
    if os.name == "nt":
        return install_windows_task(project_root, python, source)
    return install_cron(project_root, python, source)


def uninstall_schedule(project_root: Path, source: InputSource = DEFAULT_SOURCE) -> str:
    """Remove what `install_schedule` installed for `source` on this platform."""
    if os.name == "nt":
        return uninstall_windows_task(source)
    return uninstall_cron(project_root, source)


def command(install: bool, source: InputSource = DEFAULT_SOURCE) -> int:
    """`--install-schedule` / `--uninstall-schedule [--source S]` of the batch job: do it
    for this project with the running interpreter, print the report; returns the exit
    code."""
    try:
        print(install_schedule(PROJECT_ROOT, source) if install
              else uninstall_schedule(PROJECT_ROOT, source))
    except ScheduleError as exc:
        print(f"scheduling error: {exc}", file=sys.stderr)
        return ExitCode.SCHEDULE
    return ExitCode.OK
