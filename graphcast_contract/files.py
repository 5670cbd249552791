"""Files the project writes: created with the permissions the user's umask gives."""
from __future__ import annotations

import os
import secrets
from pathlib import Path


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
