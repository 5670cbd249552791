"""Scheduling: the cron entry (installed for real with the system's `crontab`, into a private
spool) and the Windows `schtasks` command line (checked as text)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path, PureWindowsPath

import pytest

from graphcast_contract.project import PROJECT_ROOT
from graphcast_contract.sources import InputSource
from modules.job import schedule

CRON_SPOOLS = (Path("/var/spool/cron/crontabs"), Path("/var/spool/cron"))  # Debian, others
OTHER_LINES = 'MAILTO=""\n30 2 * * * /usr/bin/backup --quiet # somebody else\n'


def test_cron_entry_is_the_seed_line_with_absolute_paths() -> None:
    root = Path("/srv/graphcast")
    entry = schedule.cron_entry(root, Path("/srv/graphcast/.venv/bin/python"))
    assert entry == (
        "0 */6 * * * /srv/graphcast/.venv/bin/python /srv/graphcast/trigger_and_ingest_forecast.py"
        " --catch-up 1 >> /srv/graphcast/logs/pipeline.log 2>&1"
        " # graphcast-pipeline /srv/graphcast")


def test_readme_shows_the_entries_that_are_installed() -> None:
    """The README's cron lines and schtasks command are what `--install-schedule` installs."""
    readme = (PROJECT_ROOT / "README.md").read_text().splitlines()
    root = Path("/srv/graphcast")
    for source in InputSource:
        assert schedule.cron_entry(root, root / ".venv" / "bin" / "python", source) in readme
    windows = PureWindowsPath(r"C:\graphcast")
    args = schedule.schtasks_create_args(windows, windows / ".venv" / "Scripts" / "python.exe")
    assert subprocess.list2cmdline(args) in readme


def test_cron_entry_quotes_spaces_and_escapes_percent(tmp_path: Path) -> None:
    """Run the entry's command the way cron does (unescape `\\%`, then `sh -c`): the
    interpreter gets the script path intact and the output lands in logs/pipeline.log."""
    root = tmp_path / "my 100% project"
    (root / "logs").mkdir(parents=True)
    fake_python = root / "fake python"
    fake_python.write_text('#!/bin/sh\necho "ran with: $1"\necho "oops" >&2\n')
    fake_python.chmod(0o755)
    entry = schedule.cron_entry(root, fake_python)
    assert "\\%" in entry and "% " not in entry.replace("\\%", "")
    command = entry.removeprefix("0 */6 * * * ").replace("\\%", "%")
    subprocess.run(["sh", "-c", command], check=True, timeout=10)
    subprocess.run(["sh", "-c", command], check=True, timeout=10)
    log = (root / "logs" / "pipeline.log").read_text()
    expected = f"ran with: {root / 'trigger_and_ingest_forecast.py'}\noops\n"
    assert log == expected * 2  # appended, stdout and stderr


def test_crontab_text_edits_keep_other_lines() -> None:
    root = Path("/srv/a")
    entry = schedule.cron_entry(root, Path("/usr/bin/python3"))
    other_project = schedule.cron_entry(Path("/srv/b"), Path("/usr/bin/python3")) + "\n"
    before = OTHER_LINES + other_project
    once = schedule.with_entry(before, entry, root)
    assert once == before + entry + "\n"
    assert schedule.with_entry(once, entry, root) == once
    updated = schedule.with_entry(once, schedule.cron_entry(root, Path("/opt/py")), root)
    assert updated.count("# graphcast-pipeline /srv/a") == 1 and "/opt/py" in updated
    assert schedule.without_entry(updated, root) == before
    assert schedule.without_entry(before, root) == before


def test_live_entry_fetches_then_forecasts_and_coexists_with_the_era5_one() -> None:
    root = Path("/srv/graphcast")
    python = Path("/srv/graphcast/.venv/bin/python")
    live = schedule.cron_entry(root, python, InputSource.IFS_OPENDATA)
    assert live == (
        "0 2,8,14,20 * * * /srv/graphcast/.venv/bin/python"
        " /srv/graphcast/trigger_and_ingest_forecast.py --source ifs-opendata --fetch"
        " --catch-up 1 >> /srv/graphcast/logs/pipeline.log 2>&1"
        " # graphcast-pipeline-ifs-opendata /srv/graphcast")
    era5 = schedule.cron_entry(root, python)
    both = schedule.with_entry(schedule.with_entry(OTHER_LINES, era5, root), live, root,
                               InputSource.IFS_OPENDATA)
    assert both == OTHER_LINES + era5 + "\n" + live + "\n"
    assert schedule.with_entry(both, era5, root) == OTHER_LINES + live + "\n" + era5 + "\n"
    assert schedule.without_entry(both, root, InputSource.IFS_OPENDATA) == \
        OTHER_LINES + era5 + "\n"
    assert schedule.without_entry(both, root) == OTHER_LINES + live + "\n"


def test_live_windows_task_is_a_second_task() -> None:
    root = PureWindowsPath(r"C:\graphcast")
    args = schedule.schtasks_create_args(root, PureWindowsPath(r"C:\graphcast\.venv\python.exe"),
                                         InputSource.IFS_OPENDATA)
    assert subprocess.list2cmdline(args) == (
        'schtasks /Create /TN GraphCast_Pipeline_Live /TR "C:\\graphcast\\.venv\\python.exe'
        ' C:\\graphcast\\trigger_and_ingest_forecast.py --source ifs-opendata --fetch'
        ' --catch-up 1"'
        " /SC DAILY /ST 02:00 /RI 360 /DU 24:00 /RL LIMITED /F")
    assert schedule.schtasks_delete_args(InputSource.IFS_OPENDATA)[3] == "GraphCast_Pipeline_Live"


def test_schtasks_command_line() -> None:
    root = PureWindowsPath(r"C:\Users\Desk\graphcast pipeline")
    python = PureWindowsPath(r"C:\Users\Desk\graphcast pipeline\.venv\Scripts\python.exe")
    args = schedule.schtasks_create_args(root, python)
    assert subprocess.list2cmdline(args) == (
        'schtasks /Create /TN GraphCast_Pipeline /TR "\\"C:\\Users\\Desk\\graphcast pipeline'
        '\\.venv\\Scripts\\python.exe\\" \\"C:\\Users\\Desk\\graphcast pipeline'
        '\\trigger_and_ingest_forecast.py\\" --catch-up 1" /SC DAILY /ST 00:00 /RI 360 /DU 24:00'
        ' /RL LIMITED /F')
    assert "/RU" not in args and "HIGHEST" not in args  # the installing user, not elevated
    assert subprocess.list2cmdline(schedule.schtasks_delete_args()) == \
        "schtasks /Delete /TN GraphCast_Pipeline /F"


def test_schtasks_refuses_a_command_over_its_length_limit() -> None:
    root = PureWindowsPath("C:\\" + "deep\\" * 60)
    with pytest.raises(schedule.ScheduleError, match="over the 261 schtasks accepts"):
        schedule.schtasks_create_args(root, PureWindowsPath(r"C:\Python311\python.exe"))


def test_missing_crontab_command_is_a_clear_error() -> None:
    with pytest.raises(schedule.ScheduleError, match="apt-get install cron"):
        schedule.read_crontab(("no-such-crontab-binary",))


# --- the real crontab, in a private spool -------------------------------------------------

def _private_spool_unavailable() -> str | None:
    """Why the real-crontab test cannot run here, or None."""
    if shutil.which("crontab") is None:
        return "no crontab command (Debian/Ubuntu: apt-get install cron)"
    if shutil.which("unshare") is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root and unshare to give crontab a private spool directory"
    if not any(spool.is_dir() for spool in CRON_SPOOLS):
        return "no cron spool directory found"
    return None


@pytest.fixture
def private_crontab(tmp_path: Path):
    """Run commands with the real `crontab` writing to a temporary spool directory
    (bind-mounted over the system spool in a private mount namespace)."""
    reason = _private_spool_unavailable()
    if reason:
        pytest.skip(reason)
    system_spool = next(spool for spool in CRON_SPOOLS if spool.is_dir())
    spool = tmp_path / "spool"
    spool.mkdir()
    shutil.copystat(system_spool, spool)
    stat = system_spool.stat()
    os.chown(spool, stat.st_uid, stat.st_gid)

    def run(*command: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        wrapper = 'mount --bind "$1" "$2" && shift 2 && exec "$@"'
        return subprocess.run(
            ["unshare", "--mount", "sh", "-c", wrapper, "sh", str(spool), str(system_spool),
             *command], input=stdin, capture_output=True, text=True, timeout=60,
            cwd=PROJECT_ROOT)

    probe = run("crontab", "-l")
    if "mount" in probe.stderr or "unshare" in probe.stderr:
        pytest.skip(f"no private mount namespace here: {probe.stderr.strip()}")
    return run


def _schedule(run, *options: str) -> subprocess.CompletedProcess[str]:
    """`trigger_and_ingest_forecast.py OPTIONS` inside the private-spool namespace."""
    return run(sys.executable, str(PROJECT_ROOT / "trigger_and_ingest_forecast.py"), *options)


def test_real_crontab_install_is_idempotent_and_uninstall_exact(private_crontab) -> None:
    run = private_crontab
    assert run("crontab", "-", stdin=OTHER_LINES).returncode == 0
    entry = schedule.cron_entry(PROJECT_ROOT, Path(sys.executable).absolute())

    first = _schedule(run, "--install-schedule")
    assert first.returncode == 0, first.stderr
    assert first.stdout == f"cron entry installed: {entry}\n"
    assert run("crontab", "-l").stdout == OTHER_LINES + entry + "\n"

    again = _schedule(run, "--install-schedule")
    assert again.returncode == 0 and "already installed" in again.stdout
    assert run("crontab", "-l").stdout == OTHER_LINES + entry + "\n"

    removed = _schedule(run, "--uninstall-schedule")
    assert removed.returncode == 0 and removed.stdout == "cron entry removed\n"
    assert run("crontab", "-l").stdout == OTHER_LINES
    assert "no cron entry" in _schedule(run, "--uninstall-schedule").stdout
    own = subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout
    assert f"graphcast-pipeline {PROJECT_ROOT}" not in own  # the machine's crontab untouched


def test_real_crontab_holds_both_sources_apart(private_crontab) -> None:
    run = private_crontab
    python = Path(sys.executable).absolute()
    era5 = schedule.cron_entry(PROJECT_ROOT, python)
    live = schedule.cron_entry(PROJECT_ROOT, python, InputSource.IFS_OPENDATA)
    assert _schedule(run, "--install-schedule").returncode == 0
    installed = _schedule(run, "--install-schedule", "--source", "ifs-opendata")
    assert installed.returncode == 0 and installed.stdout == f"cron entry installed: {live}\n"
    assert run("crontab", "-l").stdout == f"{era5}\n{live}\n"
    assert _schedule(run, "--uninstall-schedule", "--source", "ifs-opendata").returncode == 0
    assert run("crontab", "-l").stdout == f"{era5}\n"


def test_install_schedule_without_crontab_fails_clearly(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "trigger_and_ingest_forecast.py"),
         "--install-schedule"], env={**os.environ, "PATH": str(tmp_path)},
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 8
    assert "scheduling error: 'crontab' not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_job_log_lines_are_written_once_under_cron(tmp_path: Path) -> None:
    """Cron appends the job's stdout to logs/pipeline.log, which the job's own logging also
    writes: each line must land there once (and still reach stdout on a terminal)."""
    code = ("import logging, sys; from pathlib import Path; "
            "from modules.job.logs import setup_logging; "
            "setup_logging(Path(sys.argv[1])); logging.getLogger('job').info('cycle done')")
    log_file = tmp_path / "pipeline.log"
    with open(log_file, "a") as appended:  # what `>> logs/pipeline.log 2>&1` does
        subprocess.run([sys.executable, "-c", code, str(tmp_path)], stdout=appended,
                       stderr=subprocess.STDOUT, cwd=PROJECT_ROOT, check=True, timeout=60)
    assert log_file.read_text().count("cycle done") == 1
    direct = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, check=True, timeout=60)
    assert direct.stdout.count("cycle done") == 1
    assert log_file.read_text().count("cycle done") == 2


# --- service supervision -----------------------------------------------------------------

def test_systemd_unit_verifies_with_this_project(tmp_path: Path) -> None:
    """The shipped unit, pointed at this checkout and interpreter, passes systemd's checks."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    text = (PROJECT_ROOT / "deploy" / "graphcast-api.service").read_text()
    assert "ExecStart=/opt/graphcast-pipeline/.venv/bin/python -m graphcast_api serve " in text
    assert ("graphcast_api serve --log-file /opt/graphcast-pipeline/logs/graphcast-api.log"
            in text)  # the service rotates its log; nothing else appends to it
    assert "append:" not in text
    local = (text.replace("/opt/graphcast-pipeline/.venv/bin/python", sys.executable)
             .replace("/opt/graphcast-pipeline", str(PROJECT_ROOT)))
    unit = tmp_path / "graphcast-api.service"
    unit.write_text(local)
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    broken = tmp_path / "broken" / "graphcast-api.service"
    broken.parent.mkdir()
    broken.write_text(local.replace(sys.executable, "/nonexistent/python"))
    assert subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True,
                          timeout=60).returncode != 0


def test_windows_service_task_runs_unprivileged() -> None:
    """Whoever can write the project folder controls the task's python: never SYSTEM."""
    text = (PROJECT_ROOT / "deploy" / "graphcast-api-task.ps1").read_text()
    code = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    assert "-User \"SYSTEM\"" not in code and "Highest" not in code
    assert '[string]$User = "$env:USERDOMAIN\\$env:USERNAME"' in code
    assert "New-ScheduledTaskPrincipal -UserId $User -LogonType S4U -RunLevel Limited" in code
    assert "-Principal $principal" in code
    assert "refusing to run the service as" in code


def test_systemd_unit_runs_as_an_ordinary_user() -> None:
    text = (PROJECT_ROOT / "deploy" / "graphcast-api.service").read_text()
    assert "\nUser=graphcast\n" in text and "User=root" not in text


def test_service_files_let_the_service_rotate_its_log() -> None:
    """The service rotates logs/graphcast-api.log itself (--log-file): nothing appends to it."""
    task = (PROJECT_ROOT / "deploy" / "graphcast-api-task.ps1").read_text()
    assert '-m graphcast_api serve --log-file `"$log`" 2> `"$log.stderr`"' in task
    assert ">> `\"$log`\"" not in task
    unit = (PROJECT_ROOT / "deploy" / "graphcast-api.service").read_text()
    assert "serve --log-file /opt/graphcast-pipeline/logs/graphcast-api.log\n" in unit
    assert "append:" not in unit
