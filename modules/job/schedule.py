"""Run the batch job every 6 hours: a cron entry (Linux, macOS) or a Windows scheduled task.

The cron entry is the seed's, with absolute paths and a marker comment naming the project
folder, so that installing twice changes nothing and uninstalling removes exactly that line:

    0 */6 * * * /abs/.venv/bin/python /abs/trigger_and_ingest_forecast.py \
        >> /abs/logs/pipeline.log 2>&1 # graphcast-pipeline /abs

(one line in the crontab; folded here)

On Windows the task `GraphCast_Pipeline` runs `python.exe <script>` on a daily trigger that
repeats every 6 hours (`schtasks /Create ... /SC DAILY /ST 00:00 /RI 360 /DU 24:00 /F`).
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path, PurePath

from graphcast_contract.errors import ExitCode
from graphcast_contract.project import PROJECT_ROOT

CRON_SCHEDULE = "0 */6 * * *"
CRON_MARKER = "# graphcast-pipeline"
TASK_NAME = "GraphCast_Pipeline"
SCRIPT_NAME = "trigger_and_ingest_forecast.py"
LOG_NAME = Path("logs") / "pipeline.log"
SCHTASKS_TR_LIMIT = 261  # characters schtasks accepts in /TR


class ScheduleError(RuntimeError):
    """Installing or removing the schedule failed; the message says why and what to do."""


def cron_marker(project_root: PurePath) -> str:
    """The comment that tags this project's cron line (one per project folder)."""
    return f"{CRON_MARKER} {project_root}"


def cron_entry(project_root: Path, python: Path) -> str:
    """The crontab line: every 6 h, `python` runs the job, stdout and stderr appended to
    logs/pipeline.log. Paths are shell-quoted; `%` (special to cron) is escaped."""
    parts = [str(python), str(project_root / SCRIPT_NAME)]
    if any("\n" in part for part in parts + [str(project_root)]):
        raise ScheduleError("a path contains a line break; cron cannot run it")
    command = " ".join(shlex.quote(part) for part in parts)
    log = shlex.quote(str(project_root / LOG_NAME))
    line = f"{CRON_SCHEDULE} {command} >> {log} 2>&1 {cron_marker(project_root)}"
    return line.replace("%", r"\%")


def with_entry(crontab: str, entry: str, project_root: PurePath) -> str:
    """`crontab` text with this project's line replaced by (or completed with) `entry`."""
    kept = without_entry(crontab, project_root)
    return f"{kept}{entry}\n"


def without_entry(crontab: str, project_root: PurePath) -> str:
    """`crontab` text minus this project's line; every other line kept as it was."""
    marker = cron_marker(project_root).replace("%", r"\%")
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


def install_cron(project_root: Path, python: Path,
                 crontab_cmd: Sequence[str] = ("crontab",)) -> str:
    """Install (or update) this project's cron line; returns a one-line report."""
    entry = cron_entry(project_root, python)
    current = read_crontab(crontab_cmd)
    if entry in current.splitlines():
        return f"cron entry already installed: {entry}"
    write_crontab(with_entry(current, entry, project_root), crontab_cmd)
    return f"cron entry installed: {entry}"


def uninstall_cron(project_root: Path, crontab_cmd: Sequence[str] = ("crontab",)) -> str:
    """Remove this project's cron line, and nothing else; returns a one-line report."""
    current = read_crontab(crontab_cmd)
    remaining = without_entry(current, project_root)
    if remaining == current:
        return "no cron entry of this project to remove"
    write_crontab(remaining, crontab_cmd)
    return "cron entry removed"


def schtasks_create_args(project_root: PurePath, python: PurePath) -> list[str]:
    """`schtasks` arguments creating (or replacing, /F) the 6-hourly task."""
    action = subprocess.list2cmdline([str(python), str(project_root / SCRIPT_NAME)])
    if len(action) > SCHTASKS_TR_LIMIT:
        raise ScheduleError(f"the task's command is {len(action)} characters, over the "
                            f"{SCHTASKS_TR_LIMIT} schtasks accepts: move the project to a "
                            "shorter path")
    # no /RU: the task runs as the user installing it; /RL LIMITED: never elevated, even
    # when installed from an administrator's shell
    return ["schtasks", "/Create", "/TN", TASK_NAME, "/TR", action,
            "/SC", "DAILY", "/ST", "00:00", "/RI", "360", "/DU", "24:00", "/RL", "LIMITED", "/F"]


def schtasks_delete_args() -> list[str]:
    """`schtasks` arguments deleting the task."""
    return ["schtasks", "/Delete", "/TN", TASK_NAME, "/F"]


def install_windows_task(project_root: Path, python: Path) -> str:
    """Create or replace the `GraphCast_Pipeline` task; returns a one-line report."""
    args = schtasks_create_args(project_root, python)
    _run_schtasks(args)
    return f"scheduled task {TASK_NAME} installed: {subprocess.list2cmdline(args)}"


def uninstall_windows_task() -> str:
    """Delete the `GraphCast_Pipeline` task if it exists; returns a one-line report."""
    query = subprocess.run(["schtasks", "/Query", "/TN", TASK_NAME],
                           capture_output=True, text=True, timeout=30)
    if query.returncode != 0:
        return f"no scheduled task {TASK_NAME} to remove"
    _run_schtasks(schtasks_delete_args())
    return f"scheduled task {TASK_NAME} removed"


def _run_schtasks(args: list[str]) -> None:
    result = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise ScheduleError(f"schtasks failed: {(result.stderr or result.stdout).strip()}")


def install_schedule(project_root: Path, python: Path | None = None) -> str:
    """Install the 6-hourly run for this platform with `python` (default: the running
    interpreter, e.g. the project's .venv); returns a one-line report."""
    python = python or Path(sys.executable).absolute()
    if os.name == "nt":
        return install_windows_task(project_root, python)
    return install_cron(project_root, python)


def uninstall_schedule(project_root: Path) -> str:
    """Remove what `install_schedule` installed on this platform; returns a report."""
    if os.name == "nt":
        return uninstall_windows_task()
    return uninstall_cron(project_root)


def command(install: bool) -> int:
    """`--install-schedule` / `--uninstall-schedule` of the batch job: do it for this
    project with the running interpreter, print the report; returns the exit code."""
    try:
        print(install_schedule(PROJECT_ROOT) if install else uninstall_schedule(PROJECT_ROOT))
    except ScheduleError as exc:
        print(f"scheduling error: {exc}", file=sys.stderr)
        return ExitCode.SCHEDULE
    return ExitCode.OK
