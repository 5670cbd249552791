"""Where the working copy is: defaults such as `.env`, `logs/`, `.pgdata/`, `weights/` and
`data/` resolve against it, whatever the current directory."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The project's release, recorded with every forecast run (forecast_runs.project_version) so
# that stored values can be traced to the code that made them. Raise it with each release.
VERSION = "1.0.0"


def new_temporary_file(directory: Path, suffix: str) -> Path:
    """Create an empty, uniquely named file in `directory` for an atomic write-then-rename.

    Unlike `tempfile.mkstemp` (always 0600), the file gets the permissions the user's umask
    gives (0644 under umask 022), so what the project writes is readable as users expect.
    """
    while True:
        path = Path(directory) / f".{secrets.token_hex(8)}{suffix}"
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return path
        except FileExistsError:
            continue
