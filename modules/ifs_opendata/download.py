"""Download one IFS run's step-0 fields from the ECMWF open data, field by field.

The `ecmwf-opendata` client knows the file layout (`{date}/{HH}z/ifs/0p25/{stream}/...`,
with the 06/18 UTC runs under `scda` before IFS cycle 50r1 on 2026-05-12 and under `oper`
from then on) and its `multiurl` downloader fetches byte ranges. Only the index entries of
the fields GraphCast_operational needs are fetched, each into its own cache file, so a
field already on disk is never fetched again and an interrupted one resumes where it
stopped. Each file's size is checked against the index and its content (exactly the field
and valid time expected); a cached one that fails is downloaded again. The run's `.index`
is cached too: a cached run loads again without the network, after it has left the online
window (a cached index that is empty or damaged is downloaded again). Only https addresses
are fetched (plain http only from a loopback host), also where a redirect leads.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urljoin

import requests
from requests.adapters import HTTPAdapter

from graphcast_contract.cycles import iso_utc
from graphcast_contract.files import fsync_file, fsync_folder, write_atomically
from graphcast_contract.urls import is_allowed_url, refused_redirect
from graphcast_contract.variables import PRESSURE_LEVELS_13
from modules.inputs.sources import GribSource, InvalidDataError, UnreadableFileError

log = logging.getLogger("ifs_opendata")

SURFACE_PARAMS = ("2t", "msl", "10u", "10v")
PRESSURE_PARAMS = ("t", "gh", "u", "v", "w", "q")
STATIC_PARAMS = ("z", "lsm")  # surface geopotential, land-sea mask: not in every run
TIMEOUT_S = 60
RETRIES = 3
CHUNK_BYTES = 64 * 1024  # written as it arrives: an interrupted field resumes from here
MAX_INDEX_BYTES = 16 * 1024 * 1024  # a real run's index is a few hundred KB


class DownloadError(Exception):
    """A run or field cannot be downloaded (HTTP error, unreachable, wrong size, an index
    that is no index, a redirect the URL policy refuses)."""


class CacheError(Exception):
    """The cache folder cannot be written (--cache-dir / IFS_OPENDATA_CACHE_DIR)."""


class MissingFieldError(Exception):
    """The run's index lacks a field the model needs."""


@dataclass(frozen=True)
class IndexEntry:
    """One field of a run file: `name` is `param` or `param@level`, bytes [offset, +length)."""

    name: str
    offset: int
    length: int


def needed_names() -> list[str]:
    """The fields one run must provide: 4 surface + 6 x 13 pressure-level ones."""
    return [*SURFACE_PARAMS, *(f"{p}@{lev}" for p in PRESSURE_PARAMS for lev in PRESSURE_LEVELS_13)]


def check_field(path: Path, name: str, run: datetime) -> None:
    """InvalidDataError unless `path` holds exactly the field `name` of `run` at step 0;
    UnreadableFileError if it holds no GRIB message."""
    source = GribSource(path)
    try:
        refs = source.fields()
    finally:
        source.close()
    param, _, level = name.partition("@")
    got = [(ref.name, ref.level, ref.valid_time) for ref in refs]
    if got != [(param, int(level or 0), run)]:
        raise InvalidDataError(f"{path}: expected {name} valid {iso_utc(run)}, found "
                               f"{', '.join(f'{n}@{lev} {iso_utc(t)}' for n, lev, t in got)}")


def _entry_name(line: dict) -> str | None:
    if line.get("levtype") == "sfc":
        return line.get("param")
    if line.get("levtype") == "pl":
        return f"{line.get('param')}@{line.get('levelist')}"
    return None


def _index_line(raw: str) -> dict | None:
    """One `.index` line as a JSON object with integer `_offset` >= 0 and `_length` > 0;
    None for anything else (an HTML error page, a truncated line, another JSON value)."""
    try:
        line = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(line, dict):
        return None
    offset, length = line.get("_offset"), line.get("_length")
    if not all(type(value) is int for value in (offset, length)) or offset < 0 or length < 1:
        return None
    return line


def parse_index(text: str, origin: str) -> dict[str, IndexEntry]:
    """The `.index` file's step-0 entries by name (JSON lines with `_offset`/`_length`).

    DownloadError naming `origin` (the URL or cached file) if it holds no line, or a line
    that is no index entry (quoted, cut to 80 characters)."""
    lines = [(number, raw) for number, raw in enumerate(text.splitlines(), 1) if raw.strip()]
    if not lines:
        raise DownloadError(f"{origin}: the index is empty")
    entries = {}
    for number, raw in lines:
        line = _index_line(raw)
        if line is None:
            raise DownloadError(f"{origin}: line {number} is not an index entry (a JSON object "
                                f"with integer _offset and _length): {raw[:80]!r}")
        name = _entry_name(line)
        if name and str(line.get("step", "0")) == "0":
            entries[name] = IndexEntry(name, line["_offset"], line["_length"])
    return entries


def _cached_index(path: Path) -> dict[str, IndexEntry] | None:
    """The entries of a cached index; None if there is none, or if it cannot be read or is
    empty or damaged (a crash, a full disk): it is then downloaded again, never trusted."""
    try:
        return parse_index(path.read_text(encoding="utf-8"), str(path))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, UnicodeDecodeError, DownloadError) as exc:
        log.warning("cached index unusable, downloading it again: %s", exc)
        return None


def _refuse_redirects_off_policy(response: requests.Response, *args: object,
                                 **kwargs: object) -> None:
    """A session response hook: DownloadError for a redirect to an address is_allowed_url
    refuses (plain http off this machine, another scheme), before requests follows it."""
    if response.is_redirect:
        target = urljoin(response.url, response.headers["Location"])
        if not is_allowed_url(target):
            response.close()
            raise DownloadError(refused_redirect(response.url, target))


def _index_text(reply: requests.Response, url: str) -> str:
    """The index reply's body, read no further than MAX_INDEX_BYTES: a wrong base URL or a
    bad mirror could answer with a file of any size, which would otherwise fill the memory."""
    too_big = DownloadError(f"{url}: more than {MAX_INDEX_BYTES:,} bytes, no open-data index "
                            "(is the base URL an open-data root?)")
    declared = reply.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_INDEX_BYTES:
        raise too_big
    body = bytearray()
    for chunk in reply.iter_content(CHUNK_BYTES):
        body += chunk
        if len(body) > MAX_INDEX_BYTES:
            raise too_big
    return body.decode("utf-8", errors="replace")


def _cache_error(folder: Path, exc: OSError) -> CacheError:
    return CacheError(f"cannot write the open-data cache folder {folder} (--cache-dir, "
                      f"IFS_OPENDATA_CACHE_DIR): {exc.strerror or exc}")


class _DefaultTimeout(HTTPAdapter):
    """Gives a request sent without a timeout TIMEOUT_S: the client's probes of the published
    runs (`Client.latest`) have none and the client has no option for one, so a server that
    accepts the connection and never answers would hang the job."""

    def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = TIMEOUT_S
        return super().send(request, **kwargs)


class RunDownloader:
    """Fetches the step-0 fields of IFS runs from `base_url` into `cache_dir/{yyyymmddHH}/`;
    the caller checks `base_url` with is_allowed_url, redirects are checked here."""

    def __init__(self, base_url: str, cache_dir: Path) -> None:
        from ecmwf.opendata import Client

        self.client = Client(source=base_url, model="ifs", resol="0p25",
                             maximum_retries=RETRIES, retry_after=1)
        for scheme in ("http://", "https://"):
            self.client.session.mount(scheme, _DefaultTimeout())
        self.client.session.hooks["response"].append(_refuse_redirects_off_policy)
        self.cache_dir = cache_dir

    def data_url(self, run: datetime) -> str:
        """The run's step-0 GRIB2 file; the client picks `scda` or `oper` for 06/18 UTC."""
        result = self.client._get_urls(date=run.strftime("%Y%m%d"), time=run.hour, step=0,
                                       stream="oper", type="fc", use_index=False)
        return result.urls[0]

    def run_dir(self, run: datetime) -> Path:
        return self.cache_dir / run.strftime("%Y%m%d%H")

    def index(self, run: datetime) -> dict[str, IndexEntry]:
        """The run's index entries, from the cache or downloaded (and then cached).

        DownloadError if it cannot be downloaded or is no index; CacheError if it cannot be
        cached."""
        cached = self.run_dir(run) / "index.jsonl"
        entries = _cached_index(cached)
        if entries is not None:
            return entries
        url = self.data_url(run).removesuffix(".grib2") + ".index"
        try:
            with self.client.session.get(url, timeout=TIMEOUT_S, stream=True) as reply:
                if reply.status_code == 404:
                    raise DownloadError(f"{url}: 404 not found (the run is not published yet, "
                                        "or has left the open data's online window of the "
                                        "last few days)")
                if reply.status_code != 200:
                    raise DownloadError(f"{url}: HTTP {reply.status_code}")
                text = _index_text(reply, url)
        except requests.RequestException as exc:
            raise DownloadError(f"{url}: unreachable ({exc})") from exc
        entries = parse_index(text, url)
        try:
            with write_atomically(cached) as temporary:
                temporary.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise _cache_error(cached.parent, exc) from exc
        return entries

    def fetch(self, run: datetime, names: Sequence[str]) -> list[Path]:
        """Download the fields `names` of `run` (cached ones are kept); their files, in order,
        each checked by check_field.

        MissingFieldError if the index lacks one; DownloadError if one cannot be fetched;
        CacheError if one cannot be written to the cache; InvalidDataError or
        UnreadableFileError if a downloaded one is not the field expected."""
        entries = self.index(run)
        missing = [name for name in names if name not in entries]
        if missing:
            raise MissingFieldError(
                f"run {run:%Y-%m-%dT%H}Z: the open-data index has no {', '.join(missing[:5])}"
                f"{' ...' if len(missing) > 5 else ''} ({len(missing)} of {len(names)} fields "
                "missing)")
        url = self.data_url(run)
        return [self._fetch_field(url, run, entries[name]) for name in names]

    def _fetch_field(self, url: str, run: datetime, entry: IndexEntry) -> Path:
        """The field's cache file, checked; a cached one that fails the check (zeros a power
        loss left, a disk error) is deleted and downloaded once more."""
        target = self.run_dir(run) / f"{entry.name.replace('@', '-')}.grib2"
        if target.exists() and target.stat().st_size == entry.length:
            try:
                check_field(target, entry.name, run)
                return target
            except (InvalidDataError, UnreadableFileError) as exc:
                log.warning("cached field unusable, downloading it again: %s", exc)
                target.unlink()
        self._download(url, entry, target)
        check_field(target, entry.name, run)
        return target

    def _download(self, url: str, entry: IndexEntry, target: Path) -> None:
        """Fetch the entry's bytes into `target.download` (resumed if there), then flush it
        to the disk before renaming it to `target`: multiurl's own rename does not flush,
        and a power loss could leave a file of the right size full of zeros."""
        from multiurl import download

        partial = target.with_name(target.name + ".download")
        try:
            download(url, target=str(partial), parts=[(entry.offset, entry.length)],
                     resume_transfers=True, download_file_extension=None,
                     session=self.client.session, accept_ranges=True,
                     maximum_retries=RETRIES, retry_after=1, timeout=TIMEOUT_S,
                     chunk_size=CHUNK_BYTES,
                     progress_bar=_no_progress)
            size = partial.stat().st_size
            if size != entry.length:
                partial.unlink()
                raise DownloadError(f"{url} ({entry.name}): {size} bytes, the index says "
                                    f"{entry.length}")
            fsync_file(partial)
            os.replace(partial, target)
            fsync_folder(target.parent)
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else exc
            raise DownloadError(f"{url} ({entry.name}): HTTP {status}") from exc
        except (requests.RequestException, AssertionError) as exc:
            raise DownloadError(f"{url} ({entry.name}): incomplete download, run the "
                                f"command again to resume ({exc})") from exc
        except OSError as exc:  # not requests' (those are OSErrors too): writing the file
            raise _cache_error(target.parent, exc) from exc


class _NoProgress:
    def __enter__(self) -> "_NoProgress":
        return self

    def __exit__(self, *args: object) -> None:
        return None

    def update(self, *args: object) -> None:
        return None

    def close(self) -> None:
        return None


def _no_progress(total: int | None = None, initial: int = 0, desc: str | None = None
                 ) -> _NoProgress:
    """multiurl's progress bar, silenced: the command logs one line per run instead."""
    return _NoProgress()
