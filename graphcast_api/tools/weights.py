"""Download DeepMind's published GraphCast files from the public `dm_graphcast` bucket.

Files keep the bucket's layout under the destination directory (`params/<checkpoint>.npz`,
`stats/*.nc`, `dataset/*.nc`), so `DEST/stats` is the `--stats-dir` the engine expects.
Transfers stream to `<file>.part`, resume from it with an HTTP Range request, and are renamed
into place only once complete; files already in place are not fetched again.

Integrity: a finished transfer must have the announced size, the MD5 and CRC32C the
bucket announces in `x-goog-hash`, and its format (.nc: NetCDF/HDF5 magic, .npz: a zip of
.npy arrays); its SHA-256 then goes into `DEST/MANIFEST.sha256`, against which files already
present are checked on every later run (`fetch-weights --verify` only checks). Only https is used,
except for loopback hosts (tests, a local mirror), also where a redirect leads; a `.part`
that is a symlink is refused.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import os
import stat
import sys
import textwrap
import zipfile
from pathlib import Path
from urllib.parse import quote, urljoin, urlsplit

import google_crc32c
import numpy as np
import requests
from tqdm import tqdm

from graphcast_contract.errors import ExitCode, exit_code_help
from graphcast_contract.files import (
    NETCDF_SIGNATURES,
    file_sha256,
    fsync_folder,
    write_atomically,
)
from graphcast_contract.urls import ALLOWED_URLS, is_allowed_url, refused_redirect
from graphcast_contract.variables import STATS_FILES

BUCKET_URL = "https://storage.googleapis.com/dm_graphcast"

CHECKPOINTS = {
    "small": "GraphCast_small - ERA5 1979-2015 - resolution 1.0 - pressure levels 13 - mesh 2to5"
             " - precipitation input and output.npz",
    "operational": "GraphCast_operational - ERA5-HRES 1979-2021 - resolution 0.25 - pressure "
                   "levels 13"
                   " - mesh 2to6 - precipitation output only.npz",
    "full": "GraphCast - ERA5 1979-2017 - resolution 0.25 - pressure levels 37 - mesh 2to6"
            " - precipitation input and output.npz",
}
STATS_PATHS = tuple(f"stats/{name}" for name in STATS_FILES)  # bucket paths
EXAMPLE_STEPS = (1, 4, 12, 20, 40)  # published 1.0-degree, 13-level ERA5 examples

WEIGHTS_LICENCE = (
    "The GraphCast weights are published by Google DeepMind under the Creative Commons "
    "Attribution-NonCommercial-ShareAlike 4.0 International licence (CC BY-NC-SA 4.0, "
    "https://creativecommons.org/licenses/by-nc-sa/4.0/): non-commercial use only, with "
    "attribution, and derived weights shared under the same terms."
)
DATA_LICENCE = (
    "The example dataset is ECMWF ERA5 data, Copyright European Centre for Medium-Range Weather "
    "Forecasts (ECMWF), published under CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/)."
)

CHUNK_BYTES = 1 << 16  # an interruption loses at most the chunk being read
TIMEOUT_S = (10, 60)  # connect, read
MAX_REDIRECTS = 10

EXIT_CODES = (ExitCode.INTERNAL, ExitCode.USAGE, ExitCode.DOWNLOAD_FAILED,
              ExitCode.OUTPUT_FAILED)

MANIFEST_NAME = "MANIFEST.sha256"  # `sha256sum -c` format: "<hex>  <path under DEST>"
MAGIC = {".nc": NETCDF_SIGNATURES, ".npz": (b"PK\x03\x04",)}
# np.save's header versions; 3.0 (non-latin-1 field names) has no public reader or use here
NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                      (2, 0): np.lib.format.read_array_header_2_0}
HASH_BLOCK_BYTES = 1 << 20


class DownloadError(Exception):
    """A download that failed; `exit_code` tells the command line what to return."""

    def __init__(self, message: str, exit_code: ExitCode) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def checkpoint_path(model: str) -> str:
    """Bucket path of a published model's checkpoint (`small`, `operational` or `full`)."""
    return f"params/{CHECKPOINTS[model]}"


def example_dataset_path(steps: int = 4) -> str:
    """Bucket path of the official ERA5 example at 1.0 degree, 13 levels, 2022-01-01.

    `steps` target frames follow the two input frames (steps=4: 6 frames, 00:00 to +30 h).
    """
    if steps not in EXAMPLE_STEPS:
        raise ValueError(f"no published example with {steps} steps; choose one of {EXAMPLE_STEPS}")
    return f"dataset/source-era5_date-2022-01-01_res-1.0_levels-13_steps-{steps:02d}.nc"


def check_base_url(base_url: str) -> None:
    """Refuse a --base-url that is_allowed_url refuses."""
    if not is_allowed_url(base_url):
        raise DownloadError(f"--base-url must be {ALLOWED_URLS}: {base_url}",
                            ExitCode.USAGE)


def object_url(base_url: str, path: str) -> str:
    """URL of a bucket object, its name percent-encoded (the checkpoint names hold spaces)."""
    return f"{base_url.rstrip('/')}/{quote(path)}"


def _total_size(response: requests.Response, offset: int) -> int | None:
    """Size of the whole object in bytes, from Content-Range or Content-Length."""
    content_range = response.headers.get("Content-Range", "")
    if "/" in content_range and not content_range.endswith("/*"):
        return int(content_range.rsplit("/", 1)[1])
    length = response.headers.get("Content-Length")
    return offset + int(length) if length is not None else None


def _range_start(response: requests.Response) -> int:
    """First byte of a 206 response, from `Content-Range: bytes START-END/TOTAL`."""
    return int(response.headers["Content-Range"].split()[1].split("-")[0])


def _get(url: str, headers: dict[str, str]) -> requests.Response:
    """GET `url`, following redirects by hand: each only to an address is_allowed_url allows
    (requests would follow one to plain http, or anywhere)."""
    for _ in range(MAX_REDIRECTS + 1):
        response = requests.get(url, headers=headers, stream=True, timeout=TIMEOUT_S,
                                allow_redirects=False)
        if not response.is_redirect:
            return response
        response.close()
        target = urljoin(url, response.headers["Location"])
        if not is_allowed_url(target):
            raise DownloadError(refused_redirect(url, target), ExitCode.DOWNLOAD_FAILED)
        url = target
    raise DownloadError(f"more than {MAX_REDIRECTS} redirects, the last to {url}",
                        ExitCode.DOWNLOAD_FAILED)


def _open_transfer(url: str, offset: int) -> tuple[requests.Response, int]:
    """Start a GET for `url` from byte `offset`; returns the response and the offset it serves."""
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = _get(url, headers)
    except requests.RequestException as error:
        host = urlsplit(url).netloc
        raise DownloadError(f"cannot reach {host} ({type(error).__name__}); check the network "
                            "connection and --base-url", ExitCode.DOWNLOAD_FAILED) from error
    if response.status_code == 404:
        response.close()
        raise DownloadError(f"not found (HTTP 404): {url}", ExitCode.DOWNLOAD_FAILED)
    if response.status_code == 206 and _range_start(response) == offset:
        return response, offset
    if response.status_code == 200:
        return response, 0  # the server ignored the Range header: start over
    response.close()
    if response.status_code == 416 and offset:
        return _open_transfer(url, 0)  # nothing left past the partial file's end: start over
    raise DownloadError(f"HTTP {response.status_code} {response.reason} for {url}",
                        ExitCode.DOWNLOAD_FAILED)


def _announced_hashes(response: requests.Response) -> dict[str, str]:
    """`x-goog-hash: crc32c=...,md5=...` as {"crc32c": base64, "md5": base64}."""
    hashes = {}
    for item in response.headers.get("x-goog-hash", "").split(","):
        name, _, value = item.strip().partition("=")
        if name in ("crc32c", "md5") and value:
            hashes[name] = value
    return hashes


def _digests(path: Path) -> dict[str, str]:
    """A file's MD5 and CRC32C, base64-encoded as `x-goog-hash` gives them (the CRC big-endian)."""
    md5, crc = hashlib.md5(usedforsecurity=False), google_crc32c.Checksum()
    with open(path, "rb") as handle:
        while block := handle.read(HASH_BLOCK_BYTES):
            md5.update(block)
            crc.update(block)
    return {"md5": base64.b64encode(md5.digest()).decode(),
            "crc32c": base64.b64encode(crc.digest()).decode()}


def _reject(path: Path, message: str) -> None:
    path.unlink()
    raise DownloadError(f"{message}; the partial file was removed", ExitCode.DOWNLOAD_FAILED)


def _check_magic(path: Path, name: str, url: str) -> None:
    """The file must start like its format (`name` is the final file name)."""
    magics = MAGIC.get(Path(name).suffix)
    if magics is None:
        return
    with open(path, "rb") as handle:
        head = handle.read(8)
    if not any(head.startswith(magic) for magic in magics):
        _reject(path, f"{url} is not a {Path(name).suffix} file (it starts {head[:8]!r})")


def _npz_problem(path: Path) -> str | None:
    """Why `path` would not load as a checkpoint (None if it would): it must be an intact zip
    of `.npy` arrays, np.savez's layout (a mirror's error page, zipped, is a valid zip too)."""
    try:
        with zipfile.ZipFile(path) as archive:
            if (bad_member := archive.testzip()) is not None:
                return f"has a corrupt member {bad_member!r}"
            if not archive.namelist():
                return "holds no .npy array"
            for name in archive.namelist():
                with archive.open(name) as member:
                    try:
                        NPY_HEADER_READERS[np.lib.format.read_magic(member)](member)
                    except (KeyError, ValueError):  # another version; a bad magic or header
                        return f"has a member {name!r} that is not a .npy array"
    except zipfile.BadZipFile as error:
        return f"is not a complete .npz checkpoint ({error})"
    return None


def _check_complete(path: Path, expected: int | None, url: str,
                    announced: dict[str, str] | None = None) -> None:
    """Raise unless `path` has the announced size, hash and format (a checkpoint must be a
    readable zip of arrays)."""
    size = path.stat().st_size
    if expected is not None and size != expected:
        raise DownloadError(f"incomplete transfer of {url}: {size} of {expected} bytes received; "
                            "run the command again to resume", ExitCode.DOWNLOAD_FAILED)
    _check_magic(path, path.name.removesuffix(".part"), url)
    announced = announced or {}
    digests = _digests(path)
    for name in ("md5", "crc32c"):
        if name in announced and digests[name] != announced[name]:
            _reject(path, f"{url}: {name} {digests[name]} differs from the {announced[name]} "
                          "the server announced (corrupted in transit or tampered with)")
    if path.name.endswith(".npz.part") and (problem := _npz_problem(path)):
        _reject(path, f"{url} {problem}")
    if expected is None and not announced:
        print(f"warning: {url}: the server announced neither size nor hash; only the format "
              "was checked", file=sys.stderr)


def _open_partial(partial: Path, append: bool) -> int:
    """A descriptor on the `.part` file that never follows a symlink (one planted there
    would otherwise have its target overwritten)."""
    try:
        if stat.S_ISLNK(os.lstat(partial).st_mode):
            raise DownloadError(f"{partial} is a symbolic link; remove it and run again",
                                ExitCode.OUTPUT_FAILED)
    except FileNotFoundError:
        pass
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    return os.open(partial, flags | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0),
                   0o644)


def read_manifest(dest: Path) -> dict[str, str]:
    """{path under dest: SHA-256 hex} from DEST/MANIFEST.sha256 (empty if absent)."""
    try:
        lines = (dest / MANIFEST_NAME).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise DownloadError(f"cannot read {dest / MANIFEST_NAME}: {error}",
                            ExitCode.OUTPUT_FAILED) from error
    entries = {}
    for line in lines:
        digest, sep, name = line.partition("  ")
        if sep:
            entries[name] = digest
    return entries


def record_in_manifest(dest: Path, name: str, digest: str) -> None:
    """Add or replace one entry of DEST/MANIFEST.sha256 (written to a temporary file, then
    renamed, so a crash never leaves half a manifest)."""
    entries = read_manifest(dest)
    entries[name] = digest
    text = "".join(f"{value}  {key}\n" for key, value in sorted(entries.items()))
    try:
        with write_atomically(dest / MANIFEST_NAME) as temporary:
            temporary.write_text(text, encoding="utf-8")
    except OSError as error:
        raise DownloadError(f"cannot write {dest / MANIFEST_NAME}: {error}",
                            ExitCode.OUTPUT_FAILED) from error


def verify_present(dest: Path, name: str, verify_only: bool = False) -> None:
    """Check a file already in place against its manifest entry; a file from before the
    manifest existed is recorded as it is (with a warning), except by `verify_only`, for
    which a file without an entry is unverified: a failure, and nothing is written."""
    target = dest / name
    actual = file_sha256(target)
    recorded = read_manifest(dest).get(name)
    if recorded is None and verify_only:
        raise DownloadError(f"{target} has no entry in {MANIFEST_NAME} to verify it against; "
                            "delete it and run fetch-weights without --verify to download it "
                            "again", ExitCode.DOWNLOAD_FAILED)
    if recorded is None:
        print(f"warning: {target} has no entry in {MANIFEST_NAME}; recording its SHA-256 "
              "as it is now", file=sys.stderr)
        record_in_manifest(dest, name, actual)
    elif recorded != actual:
        raise DownloadError(f"{target} does not match the SHA-256 recorded in {MANIFEST_NAME} "
                            "when it was downloaded (changed or corrupted); delete it to "
                            "download it again", ExitCode.DOWNLOAD_FAILED)


def download(url: str, target: Path, progress: bool = True) -> bool:
    """Fetch `url` into `target` unless it is already there; True if it was downloaded.

    Bytes go to `target.part` first (kept on failure, resumed next time) and are renamed to
    `target` once complete. Raises DownloadError.
    """
    if target.exists():
        return False
    partial = target.with_name(target.name + ".part")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        offset = os.lstat(partial).st_size if os.path.lexists(partial) else 0
    except OSError as error:
        raise DownloadError(f"cannot write to {target.parent}: {error}",
                            ExitCode.OUTPUT_FAILED) from error
    response, offset = _open_transfer(url, offset)
    expected = _total_size(response, offset)
    announced = _announced_hashes(response)
    with response, tqdm(total=expected, initial=offset, unit="B", unit_scale=True,
                        unit_divisor=1024, desc=target.name,
                        disable=None if progress else True) as bar:
        try:
            with open(_open_partial(partial, append=bool(offset)), "wb") as out:
                for chunk in response.iter_content(CHUNK_BYTES):
                    out.write(chunk)
                    bar.update(len(chunk))
                out.flush()
                os.fsync(out.fileno())
        except requests.RequestException as error:
            done = partial.stat().st_size
            raise DownloadError(f"transfer of {url} interrupted after {done} bytes "
                                f"({type(error).__name__}); "
                                "run the command again to resume",
                                ExitCode.DOWNLOAD_FAILED) from error
        except OSError as error:
            raise DownloadError(f"cannot write {partial}: {error}",
                                ExitCode.OUTPUT_FAILED) from error
    _check_complete(partial, expected, url, announced)
    try:
        os.replace(partial, target)
        fsync_folder(target.parent)  # the .part was flushed: now the rename too
    except OSError as error:
        raise DownloadError(f"cannot rename {partial} to {target.name}: {error}",
                            ExitCode.OUTPUT_FAILED) from error
    return True


def _fetch(paths: list[str], dest: Path, base_url: str, progress: bool,
           verify_only: bool = False) -> list[Path]:
    """Download each bucket path under `dest` (or, with `verify_only`, only check what is
    there) and keep DEST/MANIFEST.sha256 up to date; report each file on stderr."""
    check_base_url(base_url)
    targets = []
    for path in paths:
        target = dest / path
        if verify_only and not target.exists():
            raise DownloadError(f"{target} is missing; run fetch-weights without --verify",
                                ExitCode.DOWNLOAD_FAILED)
        fetched = not verify_only and download(object_url(base_url, path), target, progress)
        if fetched:
            record_in_manifest(dest, path, file_sha256(target))
            print(f"downloaded: {target}", file=sys.stderr)
        else:
            verify_present(dest, path, verify_only)
            print(f"already present, SHA-256 verified: {target}", file=sys.stderr)
        targets.append(target)
    return targets


def fetch_weights(model: str, dest: Path, base_url: str = BUCKET_URL, progress: bool = True,
                  verify_only: bool = False) -> list[Path]:
    """Download a published model's checkpoint and the three statistics files (or, with
    `verify_only`, check them against the manifest).

    Returns the checkpoint's path under `dest`, then those of STATS_PATHS.
    """
    print(WEIGHTS_LICENCE, file=sys.stderr)
    return _fetch([checkpoint_path(model), *STATS_PATHS], Path(dest), base_url, progress,
                  verify_only)


def fetch_example_dataset(dest: Path, steps: int = 4, base_url: str = BUCKET_URL,
                          progress: bool = True) -> Path:
    """Download the official ERA5 example (1.0 degree, 13 levels, 2022-01-01) to `dest/dataset/`."""
    path = example_dataset_path(steps)
    print(DATA_LICENCE, file=sys.stderr)
    return _fetch([path], Path(dest), base_url, progress)[0]


def _run_fetch_weights(args: argparse.Namespace) -> int:
    try:
        paths = fetch_weights(args.model, args.dest, args.base_url, verify_only=args.verify)
    except DownloadError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    print(f"checkpoint: {paths[0]}\nstats dir:  {paths[1].parent}")
    return ExitCode.OK


def _run_fetch_example(args: argparse.Namespace) -> int:
    try:
        print(fetch_example_dataset(args.dest, args.steps, args.base_url))
    except DownloadError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return ExitCode.OK


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `fetch-weights` and `fetch-example` on the package's command line."""
    weights = subparsers.add_parser(
        "fetch-weights", help="download an official checkpoint and its normalisation statistics",
        description=textwrap.fill(f"Download an official GraphCast checkpoint and the three "
                                  f"statistics files. {WEIGHTS_LICENCE}"),
        epilog=exit_code_help(*EXIT_CODES), formatter_class=argparse.RawDescriptionHelpFormatter)
    weights.add_argument("model", choices=sorted(CHECKPOINTS), help="which published model")
    weights.add_argument("--dest", type=Path, required=True, help="directory to download into")
    weights.add_argument("--base-url", default=BUCKET_URL,
                         help="bucket address (default: %(default)s)")
    weights.add_argument("--verify", action="store_true",
                         help=f"download nothing; check the files against DEST/{MANIFEST_NAME}")
    weights.set_defaults(run=_run_fetch_weights)

    example = subparsers.add_parser(
        "fetch-example", help="download the official 1.0-degree, 13-level ERA5 example dataset",
        description=textwrap.fill(f"Download the official ERA5 example batch of 2022-01-01. "
                                  f"{DATA_LICENCE}"),
        epilog=exit_code_help(*EXIT_CODES), formatter_class=argparse.RawDescriptionHelpFormatter)
    example.add_argument("--dest", type=Path, required=True, help="directory to download into")
    example.add_argument("--steps", type=int, choices=EXAMPLE_STEPS, default=4,
                         help="target frames after the two inputs (default: %(default)s)")
    example.add_argument("--base-url", default=BUCKET_URL,
                         help="bucket address (default: %(default)s)")
    example.set_defaults(run=_run_fetch_example)
