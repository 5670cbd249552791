"""fetch-weights / fetch-example against a real HTTP server on loopback laid out like the bucket."""
from __future__ import annotations

import base64
import hashlib
import io
import os
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import google_crc32c
import numpy as np
import pytest

from graphcast_api.__main__ import main
from graphcast_api.tools import weights
from graphcast_contract.errors import ExitCode
from graphcast_contract.project import PROJECT_ROOT
from tests.graphcast_contract.test_files import record_fsyncs


@dataclass
class Bucket:
    """What the fake bucket serves, and what it was asked for."""

    objects: dict[str, bytes] = field(default_factory=dict)
    cut_after: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before hanging up
    honour_range: bool = True
    goog_hash: dict[str, str] = field(default_factory=dict)  # path -> x-goog-hash header
    no_length: set[str] = field(default_factory=set)  # paths sent without Content-Length
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    redirects: dict[str, str] = field(default_factory=dict)  # path -> Location of a 302
    url: str = ""


def _handler(bucket: Bucket) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = unquote(self.path.lstrip("/"))
            range_header = self.headers.get("Range")
            bucket.requests.append((path, range_header))
            if path in bucket.redirects:
                self.send_response(302)
                self.send_header("Location", bucket.redirects[path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if path not in bucket.objects:
                body = b"No such object"
                self.send_response(404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            data = bucket.objects[path]
            ranged = range_header and bucket.honour_range
            start = int(range_header.split("=")[1].rstrip("-")) if ranged else 0
            if start >= len(data) > 0:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            if path in bucket.goog_hash:
                self.send_header("x-goog-hash", bucket.goog_hash[path])
            if path in bucket.no_length:
                self.send_header("Connection", "close")
            else:
                self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            stop = bucket.cut_after.pop(path, len(data))
            self.wfile.write(data[start:stop])
            if stop < len(data) or path in bucket.no_length:
                self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def bucket() -> Iterator[Bucket]:
    """A loopback server on a free port with GraphCast_small's files, the stats and an example."""
    store = Bucket()
    checkpoint = io.BytesIO()
    np.savez(checkpoint, **{"params:w": np.arange(60_000, dtype=np.float32),
                            "description": np.array("test")})
    store.objects[weights.checkpoint_path("small")] = checkpoint.getvalue()
    for i, path in enumerate(weights.STATS_PATHS):
        store.objects[path] = b"CDF\x01" + bytes([i]) * 30_000 + path.encode()
    store.objects[weights.example_dataset_path(4)] = b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 100
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(store))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    store.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield store
    server.shutdown()
    server.server_close()
    thread.join()


def _fetch(bucket: Bucket, dest: Path, model: str = "small") -> int:
    return main(["fetch-weights", model, "--dest", str(dest), "--base-url", bucket.url])


def _files(dest: Path) -> dict[str, bytes]:
    """The files under `dest` but the manifest (tested on its own)."""
    return {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*")
            if p.is_file() and p.name != weights.MANIFEST_NAME}


def _expected(bucket: Bucket, model: str = "small") -> dict[str, bytes]:
    paths = [weights.checkpoint_path(model), *weights.STATS_PATHS]
    return {path: bucket.objects[path] for path in paths}


def test_full_download_in_bucket_layout_with_licence(bucket: Bucket, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert _fetch(bucket, tmp_path) == 0
    assert _files(tmp_path) == _expected(bucket)
    out, err = capsys.readouterr()
    assert "CC BY-NC-SA 4.0" in err
    assert f"stats dir:  {tmp_path / 'stats'}" in out


def test_interrupted_transfer_resumes_with_range(bucket: Bucket, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = weights.checkpoint_path("small")
    bucket.cut_after[path] = 200_000  # of ~240 kB: the bytes of the chunk in flight are lost
    assert _fetch(bucket, tmp_path) == ExitCode.DOWNLOAD_FAILED
    kept = (tmp_path / (path + ".part")).stat().st_size
    assert 0 < kept <= 200_000
    assert f"interrupted after {kept} bytes" in capsys.readouterr().err
    assert not (tmp_path / path).exists()

    assert _fetch(bucket, tmp_path) == 0
    assert (path, f"bytes={kept}-") in bucket.requests
    assert _files(tmp_path) == _expected(bucket)


def test_resume_when_server_ignores_range_starts_over(bucket: Bucket, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = weights.checkpoint_path("small")
    bucket.cut_after[path] = 200_000
    assert _fetch(bucket, tmp_path) == ExitCode.DOWNLOAD_FAILED
    assert "run the command again to resume" in capsys.readouterr().err
    assert (tmp_path / (path + ".part")).stat().st_size > 0
    bucket.honour_range = False
    assert _fetch(bucket, tmp_path) == 0
    assert bucket.requests[-4][0] == path and bucket.requests[-4][1].startswith("bytes=")
    assert _files(tmp_path) == _expected(bucket)


def test_missing_object_is_a_clear_error_and_writes_nothing(
        bucket: Bucket, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _fetch(bucket, tmp_path, "operational") == ExitCode.DOWNLOAD_FAILED
    err = capsys.readouterr().err
    assert "not found (HTTP 404)" in err and "GraphCast_operational" in err
    assert _files(tmp_path) == {}


def test_truncated_checkpoint_is_rejected(bucket: Bucket, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = weights.checkpoint_path("small")
    bucket.objects[path] = bucket.objects[path][:-5_000]  # served whole, but the object is cut
    assert _fetch(bucket, tmp_path) == ExitCode.DOWNLOAD_FAILED
    assert "not a complete .npz checkpoint" in capsys.readouterr().err
    assert _files(tmp_path) == {}


def _zip(members: dict[str, bytes]) -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as writer:
        for name, data in members.items():
            writer.writestr(name, data)
    return archive.getvalue()


@pytest.mark.parametrize("served, problem", [
    (_zip({"index.html": b"<html>mirror error page</html>"}), "'index.html' that is not a .npy"),
    (_zip({"params:w.npy": b"\x93NUMPY\x01\x00\x10\x00{'no': 'header'}"}), "not a .npy array"),
    (b"PK\x03\x04" + bytes(26) + _zip({}), "holds no .npy array"),  # a local header, no entry
], ids=["error-page", "bad-npy-header", "no-member"])
def test_a_zip_that_is_not_a_checkpoint_is_refused(
        served: bytes, problem: str, bucket: Bucket, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    bucket.objects[weights.checkpoint_path("small")] = served
    assert _fetch(bucket, tmp_path) == ExitCode.DOWNLOAD_FAILED
    lines = capsys.readouterr().err.strip().splitlines()
    assert problem in lines[-1] and "the partial file was removed" in lines[-1], lines
    assert _files(tmp_path) == {} and weights.read_manifest(tmp_path) == {}


def test_present_files_are_skipped(bucket: Bucket, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert _fetch(bucket, tmp_path) == 0
    bucket.requests.clear()
    assert _fetch(bucket, tmp_path) == 0
    assert bucket.requests == []
    assert capsys.readouterr().err.count("already present") == 4


def test_unreachable_host(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()  # nothing listens on this port any more
    code = main(["fetch-weights", "small", "--dest", str(tmp_path), "--base-url", f"http://127.0.0.1:{port}"])
    assert code == ExitCode.DOWNLOAD_FAILED
    assert f"cannot reach 127.0.0.1:{port}" in capsys.readouterr().err
    assert _files(tmp_path) == {}


def test_unwritable_destination(bucket: Bucket, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "a-file"
    dest.write_text("not a folder")
    assert _fetch(bucket, dest) == ExitCode.OUTPUT_FAILED
    assert f"cannot write to {dest / 'params'}" in capsys.readouterr().err
    assert bucket.requests == []


def test_fetch_example_dataset(bucket: Bucket, tmp_path: Path) -> None:
    path = weights.fetch_example_dataset(tmp_path, base_url=bucket.url, progress=False)
    name = "source-era5_date-2022-01-01_res-1.0_levels-13_steps-04.nc"
    assert path == tmp_path / "dataset" / name
    assert path.read_bytes() == bucket.objects[weights.example_dataset_path(4)]
    with pytest.raises(ValueError, match="steps"):
        weights.example_dataset_path(5)


@pytest.mark.skipif(os.name == "nt", reason="folders are flushed on POSIX only")
def test_a_downloaded_file_is_flushed_before_its_rename_and_its_folder_after(
        bucket: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / weights.example_dataset_path(4)
    calls = record_fsyncs(monkeypatch, target)
    weights.fetch_example_dataset(tmp_path, base_url=bucket.url, progress=False)
    assert calls[:2] == [(target.stat().st_ino, False, False),  # FILE.part, complete
                         (target.parent.stat().st_ino, True, True)]  # renamed to FILE


def test_command_line_entry_point_without_torch(bucket: Bucket, tmp_path: Path) -> None:
    """`python -m graphcast_api` works as a process and never imports torch."""
    code = ("import runpy, sys; sys.argv = ['graphcast_api', *sys.argv[1:]]\n"
            "try:\n    runpy.run_module('graphcast_api', run_name='__main__')\n"
            "finally:\n    assert 'torch' not in sys.modules, 'torch was imported'\n")
    result = subprocess.run([sys.executable, "-c", code, "fetch-weights", "small", "--dest",
                             str(tmp_path), "--base-url", bucket.url], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert _files(tmp_path) == _expected(bucket)
    bad = subprocess.run([sys.executable, "-m", "graphcast_api", "fetch-weights", "huge", "--dest",
                          str(tmp_path)],
                         cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "invalid choice: 'huge'" in bad.stderr


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def test_announced_md5_and_crc32c_are_checked(bucket: Bucket, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    stats = weights.STATS_PATHS[0]
    data = bucket.objects[stats]
    good_crc = _b64(google_crc32c.value(data).to_bytes(4, "big"))
    bucket.goog_hash[stats] = f"crc32c={good_crc},md5={_b64(hashlib.md5(data).digest())}"
    bucket.goog_hash[weights.STATS_PATHS[1]] = f"crc32c={good_crc}"  # not that file's CRC
    assert _fetch(bucket, tmp_path) == ExitCode.DOWNLOAD_FAILED
    err = capsys.readouterr().err
    assert "crc32c" in err and "differs from" in err and weights.STATS_PATHS[1] in err
    assert (tmp_path / stats).exists() and not (tmp_path / weights.STATS_PATHS[1]).exists()
    bucket.goog_hash[weights.STATS_PATHS[2]] = "md5=" + _b64(b"0" * 16)
    del bucket.goog_hash[weights.STATS_PATHS[1]]
    assert _fetch(bucket, tmp_path) == ExitCode.DOWNLOAD_FAILED
    assert "md5" in capsys.readouterr().err
    assert not (tmp_path / weights.STATS_PATHS[2]).exists()


def test_a_file_announcing_only_its_crc32c_is_checked_against_it(bucket: Bucket,
                                                                 tmp_path: Path) -> None:
    """GCS gives composite objects a CRC32C and no MD5, big-endian in base64."""
    good, bad = weights.STATS_PATHS[:2]
    bucket.objects[good] = b"CDF\x01" + b"123456789" * (weights.HASH_BLOCK_BYTES // 9 + 1)
    crc = google_crc32c.Checksum()
    crc.update(bucket.objects[good])
    bucket.goog_hash[good] = f"crc32c={_b64(crc.digest())}"
    bucket.goog_hash[bad] = f"crc32c={_b64(crc.digest())}"
    assert _fetch(bucket, tmp_path) == ExitCode.DOWNLOAD_FAILED
    assert (tmp_path / good).read_bytes() == bucket.objects[good]  # two hash blocks
    assert not (tmp_path / bad).exists()
    del bucket.goog_hash[bad]
    assert _fetch(bucket, tmp_path) == ExitCode.OK


def test_crc32c_digests_are_encoded_as_the_bucket_announces_them(tmp_path: Path) -> None:
    (tmp_path / "check").write_bytes(b"123456789")  # RFC 3720's check value: 0xE3069283
    assert weights._digests(tmp_path / "check")["crc32c"] == _b64(bytes.fromhex("E3069283"))


def test_garbage_without_content_length_is_refused(bucket: Bucket, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    stats = weights.STATS_PATHS[0]
    bucket.objects[stats] = b"<html>this is not a statistics file</html>"
    bucket.no_length.add(stats)
    assert _fetch(bucket, tmp_path) == ExitCode.DOWNLOAD_FAILED
    assert "is not a .nc file" in capsys.readouterr().err
    assert not (tmp_path / stats).exists()
    assert not (tmp_path / (stats + ".part")).exists()


def test_manifest_records_and_later_runs_verify(bucket: Bucket, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert _fetch(bucket, tmp_path) == 0
    manifest = weights.read_manifest(tmp_path)
    assert manifest == {path: hashlib.sha256(data).hexdigest()
                        for path, data in _expected(bucket).items()}
    assert main(["fetch-weights", "small", "--dest", str(tmp_path), "--base-url", bucket.url,
                 "--verify"]) == 0
    tampered = tmp_path / weights.STATS_PATHS[1]
    tampered.write_bytes(tampered.read_bytes()[:-1] + b"!")
    capsys.readouterr()
    bucket.requests.clear()
    assert _fetch(bucket, tmp_path) == ExitCode.DOWNLOAD_FAILED
    assert "does not match the SHA-256 recorded" in capsys.readouterr().err
    assert bucket.requests == []
    assert main(["fetch-weights", "small", "--dest", str(tmp_path), "--base-url", bucket.url,
                 "--verify"]) == ExitCode.DOWNLOAD_FAILED


def test_verify_fails_for_a_file_without_entry_and_never_writes_the_manifest(
        bucket: Bucket, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _fetch(bucket, tmp_path) == 0
    stats = weights.STATS_PATHS[1]
    manifest = tmp_path / weights.MANIFEST_NAME
    manifest.write_text("".join(line for line in manifest.read_text().splitlines(True)
                                if not line.endswith(f"  {stats}\n")))
    before = manifest.read_bytes()
    (tmp_path / stats).write_bytes(b"CDF\x01tampered")
    capsys.readouterr()
    assert main(["fetch-weights", "small", "--dest", str(tmp_path), "--base-url", bucket.url,
                 "--verify"]) == ExitCode.DOWNLOAD_FAILED
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: ") and f"{stats} has no entry in" in error
    assert manifest.read_bytes() == before


def test_partial_file_symlink_is_not_followed(bucket: Bucket, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    dest = tmp_path / "weights"
    partial = dest / (weights.checkpoint_path("small") + ".part")
    partial.parent.mkdir(parents=True)
    partial.symlink_to(victim)
    assert _fetch(bucket, dest) == ExitCode.OUTPUT_FAILED
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("url", ["http://storage.googleapis.com/dm_graphcast",
                                 "ftp://127.0.0.1/x", "http://10.0.0.1:8000"])
def test_non_https_base_url_is_refused(url: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a request was sent")  # and never off this machine in tests

    monkeypatch.setattr(weights.requests, "get", no_network)
    assert main(["fetch-weights", "small", "--dest", str(tmp_path), "--base-url", url]) == 2
    assert "must be an https:// address" in capsys.readouterr().err
    assert _files(tmp_path) == {}


def test_redirects_are_followed_only_to_allowed_addresses(
        bucket: Bucket, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A redirect to plain http off this machine is refused, not fetched (.invalid never
    resolves); one to the loopback server itself is followed."""
    path = weights.checkpoint_path("small")
    bucket.redirects[path] = "http://weights.invalid/checkpoint.npz"
    assert _fetch(bucket, tmp_path / "refused") == ExitCode.DOWNLOAD_FAILED
    lines = capsys.readouterr().err.strip().splitlines()
    assert "redirects to http://weights.invalid/checkpoint.npz, refused" in lines[-1]
    assert "Traceback" not in "\n".join(lines)
    assert _files(tmp_path / "refused") == {}
    bucket.objects["moved.npz"] = bucket.objects[path]
    bucket.redirects[path] = "/moved.npz"
    assert _fetch(bucket, tmp_path / "followed") == ExitCode.OK
    assert _files(tmp_path / "followed") == _expected(bucket)


def test_unwritable_manifest_or_rename_is_one_line(bucket: Bucket, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The manifest or the final rename failing exits 11 with one line, not a traceback
    (folders stand in the way: a read-only mode does not stop root)."""
    (tmp_path / "manifest" / weights.MANIFEST_NAME).mkdir(parents=True)
    assert _fetch(bucket, tmp_path / "manifest") == ExitCode.OUTPUT_FAILED
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: cannot read") and weights.MANIFEST_NAME in error

    replace = os.replace
    refused = weights.MANIFEST_NAME

    def refuse(source: Path, target: Path) -> None:
        if Path(target).name.endswith(refused):
            raise PermissionError(13, "Permission denied")
        replace(source, target)

    monkeypatch.setattr(weights.os, "replace", refuse)
    for case, message in ((weights.MANIFEST_NAME, "cannot write"), ("", "cannot rename")):
        refused = case  # "": every rename
        assert _fetch(bucket, tmp_path / message) == ExitCode.OUTPUT_FAILED
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert error.startswith(f"error: {message}") and "Permission denied" in error, error
