"""Atomic writes reach the disk in order: the file's bytes before the rename, then the
rename itself, so a power loss never leaves an empty file under the final name."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from graphcast_contract.files import write_atomically


def record_fsyncs(monkeypatch: pytest.MonkeyPatch, target: Path) -> list[tuple[int, bool, bool]]:
    """Each os.fsync call as (inode, is a folder, `target` existed then); then the real one."""
    calls: list[tuple[int, bool, bool]] = []
    real_fsync = os.fsync

    def recording(descriptor: int) -> None:
        info = os.fstat(descriptor)
        calls.append((info.st_ino, stat.S_ISDIR(info.st_mode), target.exists()))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recording)
    return calls


@pytest.mark.skipif(os.name == "nt", reason="folders are flushed on POSIX only")
def test_the_file_is_flushed_before_the_rename_and_the_folder_after(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "sub" / "index.jsonl"
    calls = record_fsyncs(monkeypatch, target)
    with write_atomically(target) as temporary:
        temporary.write_text("{}\n")
    assert target.read_text() == "{}\n"
    assert calls == [(target.stat().st_ino, False, False),  # the temporary, not yet renamed
                     (target.parent.stat().st_ino, True, True)]  # its folder, after


def test_a_failed_block_flushes_nothing_and_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.txt"
    calls = record_fsyncs(monkeypatch, target)
    with pytest.raises(RuntimeError), write_atomically(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("the writer failed")
    assert calls == [] and list(tmp_path.iterdir()) == []
