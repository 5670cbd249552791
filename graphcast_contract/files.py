"""Files the project reads and writes: their formats' first bytes, their SHA-256, text files
read as UTF-8, and atomic writes whose files get the permissions the user's umask gives and
survive a power loss."""
from __future__ import annotations

import codecs
import errno
import hashlib
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# First bytes of a NetCDF file: classic, 64-bit offset, 64-bit data (CDF-5), NetCDF-4 (HDF5).
NETCDF_SIGNATURES = (b"CDF\x01", b"CDF\x02", b"CDF\x05", b"\x89HDF\r\n\x1a\n")


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in blocks (checkpoints are hundreds of MB)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class TextFileError(ValueError):
    """A text file that cannot be read or is not UTF-8 text; the message names the file."""


def read_utf8_text(path: Path, advice: str = "save the file as UTF-8") -> str:
    """The text of the file `path`: UTF-8, with or without a byte-order mark (Excel's "CSV
    UTF-8", Windows Notepad). TextFileError naming the file when it cannot be read, and the
    line of the first byte that is not UTF-8 (a file saved as UTF-16 or Windows-1252), then
    `advice`: one clear line for the user instead of a traceback."""
    try:
        data = Path(path).read_bytes().removeprefix(codecs.BOM_UTF8)
    except OSError as exc:
        raise TextFileError(f"{path}: not readable: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise TextFileError(f"{path}:{line}: byte 0x{data[exc.start]:02X} is not UTF-8 text; "
                            f"{advice}") from None


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


def fsync_file(path: Path) -> None:
    """Flush a written (and closed) file's bytes to the disk: without it a rename can reach
    the disk before the data, and a power loss leaves a zero-length file."""
    descriptor = os.open(path, os.O_RDWR)  # Windows' fsync needs write access
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename into it) to the disk. POSIX only: Windows cannot
    open a folder for this (NTFS journals renames itself), and file systems that do not
    support it (EINVAL, ENOTSUP) are left as they are."""
    if os.name == "nt":
        return
    descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(descriptor)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(descriptor)


@contextmanager
def write_atomically(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A new temporary file beside `path` (its folder created if need be) for the block to
    write; flushed to the disk and renamed to `path` when the block ends (the folder then
    flushed too), removed when it raises, so that `path` never holds a partial or empty
    file, even after a crash or a power loss."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = new_temporary_file(path.parent, suffix)
    try:
        yield temporary
        fsync_file(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)
