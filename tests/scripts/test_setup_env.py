"""scripts/setup_env.sh: a .venv left without pip is made anew, not used as it is;
scripts/test.ps1 installs and runs as scripts/test.sh does."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from graphcast_contract.project import PROJECT_ROOT

# A stand-in for `python3 -m venv --clear .venv`: writes a .venv whose python logs its
# arguments and succeeds (pip installs nothing, offline).
FAKE_PYTHON3 = """#!/bin/sh
echo "python3 $*" >> "$LOG"
[ "$1 $2 $3" = "-m venv --clear" ] || exit 1
mkdir -p "$4/bin"
printf '#!/bin/sh\\necho "new venv python $*" >> "$LOG"\\n' > "$4/bin/python"
chmod +x "$4/bin/python"
"""
# The python of a venv made without ensurepip: it runs, but has no pip.
BROKEN_PYTHON = """#!/bin/sh
echo "broken venv python $*" >> "$LOG"
echo "No module named pip" >&2
exit 1
"""


def _executable(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


@pytest.mark.skipif(sys.platform == "win32" or shutil.which("bash") is None,
                    reason="needs bash and a POSIX shell")
def test_venv_without_pip_is_recreated(tmp_path: Path) -> None:
    """The script works on its own copy's parent folder, so a copy in a temporary project
    is tested with fake interpreters (nothing is installed)."""
    project = tmp_path / "project"
    _executable(project / "scripts" / "setup_env.sh",
                (PROJECT_ROOT / "scripts" / "setup_env.sh").read_text())
    _executable(project / ".venv" / "bin" / "python", BROKEN_PYTHON)
    _executable(tmp_path / "python3", FAKE_PYTHON3)
    log = tmp_path / "log"
    done = subprocess.run(["bash", str(project / "scripts" / "setup_env.sh"), "requirements.txt"],
                          env={"PATH": "/usr/bin:/bin", "PYTHON": str(tmp_path / "python3"),
                               "LOG": str(log)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert calls == [
        "broken venv python -m pip --version",
        "python3 -m venv --clear .venv",
        "new venv python -m pip install --quiet --disable-pip-version-check -rrequirements.txt",
        "new venv python -m pip install --quiet --disable-pip-version-check --no-deps "
        "--editable .",
    ]


def test_windows_test_script_matches_the_posix_one() -> None:
    """The same requirement sets, and no .env read (ENV_FILE blank) in both."""
    posix = (PROJECT_ROOT / "scripts" / "test.sh").read_text()
    windows = (PROJECT_ROOT / "scripts" / "test.ps1").read_text()

    def requirements(text: str) -> list[str]:
        return re.findall(r"requirements[\w-]*\.txt", text.split("setup_env", 1)[1].split("\n")[0])

    assert requirements(posix) == requirements(windows)
    assert len(requirements(posix)) == len(list(PROJECT_ROOT.glob("requirements*.txt")))
    assert 'ENV_FILE="" exec' in posix and '$env:ENV_FILE = " "' in windows
