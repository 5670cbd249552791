"""scripts/check_skips.py: skips are listed with their reasons, unknown reasons fail."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from graphcast_contract.project import PROJECT_ROOT

SAMPLE = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.test_schedule" name="test_install"><skipped type="pytest.skip"
 message="no crontab command (Debian/Ubuntu: apt-get install cron)">skip</skipped></testcase>
<testcase classname="tests.test_ok" name="test_runs"/>
{extra}</testsuite></testsuites>"""
UNKNOWN = ('<testcase classname="tests.test_db" name="test_x"><skipped type="pytest.skip"'
           ' message="database fixture could not start">skip</skipped></testcase>')


def check(tmp_path: Path, extra: str) -> subprocess.CompletedProcess[str]:
    report = tmp_path / "junit.xml"
    report.write_text(SAMPLE.format(extra=extra))
    return subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "check_skips.py"),
                           str(report)], capture_output=True, text=True, timeout=60)


def test_allowed_skips_are_listed_with_why(tmp_path: Path) -> None:
    done = check(tmp_path, "")
    assert done.returncode == 0, done.stderr
    assert "1 skipped test(s)" in done.stdout
    assert "tests.test_schedule::test_install: no crontab command" in done.stdout
    assert "allowed (OS capability: cron is not installed" in done.stdout


def test_a_skip_for_an_unlisted_reason_fails(tmp_path: Path) -> None:
    done = check(tmp_path, UNKNOWN)
    assert done.returncode == 1
    assert "tests.test_db::test_x: database fixture could not start" in done.stdout
    assert "NOT ALLOWED" in done.stdout and "1 test(s) skipped for a reason" in done.stderr


def test_an_unreadable_report_is_exit_2(tmp_path: Path) -> None:
    report = tmp_path / "junit.xml"
    report.write_text("<testsuites")
    done = subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "check_skips.py"),
                           str(report)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "cannot read" in done.stderr
