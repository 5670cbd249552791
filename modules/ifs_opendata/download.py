"""Download one IFS run's step-0 fields from the ECMWF open data, field by field.

The `ecmwf-opendata` client knows the file layout (`{date}/{HH}z/ifs/0p25/{stream}/...`,
with the 06/18 UTC runs under `scda` before IFS cycle 50r1 on 2026-05-12 and under `oper`
from then on) and its `multiurl` downloader fetches byte ranges. Only the index entries of
the fields GraphCast_operational needs are fetched, each into its own cache file, so a
field already on disk is never fetched again and an interrupted one resumes where it
stopped. Each file's size is checked against the index. The run's `.index` is cached too:
a cached run loads again without the network, after it has left the online window.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter

from graphcast_contract.files import write_atomically
from graphcast_contract.variables import PRESSURE_LEVELS_13

log = logging.getLogger("ifs_opendata")

SURFACE_PARAMS = ("2t", "msl", "10u", "10v")
PRESSURE_PARAMS = ("t", "gh", "u", "v", "w", "q")
STATIC_PARAMS = ("z", "lsm")  # surface geopotential, land-sea mask: not in every run
TIMEOUT_S = 60
RETRIES = 3
CHUNK_BYTES = 64 * 1024  # written as it arrives: an interrupted field resumes from here


class DownloadError(Exception):
    """A run or field cannot be downloaded (HTTP error, unreachable, wrong size)."""


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


def _entry_name(line: dict) -> str | None:
    if line.get("levtype") == "sfc":
        return line.get("param")
    if line.get("levtype") == "pl":
        return f"{line.get('param')}@{line.get('levelist')}"
    return None


def parse_index(text: str) -> dict[str, IndexEntry]:
    """The `.index` file's step-0 entries by name (JSON lines with `_offset`/`_length`)."""
    entries = {}
    for raw in text.splitlines():
        if not raw.strip():
            continue
        line = json.loads(raw)
        name = _entry_name(line)
        if name and str(line.get("step", "0")) == "0":
            entries[name] = IndexEntry(name, int(line["_offset"]), int(line["_length"]))
    return entries


class _DefaultTimeout(HTTPAdapter):
    """Gives a request sent without a timeout TIMEOUT_S: the client's probes of the published
    runs (`Client.latest`) have none and the client has no option for one, so a server that
    accepts the connection and never answers would hang the job."""

    def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = TIMEOUT_S
        return super().send(request, **kwargs)


class RunDownloader:
    """Fetches the step-0 fields of IFS runs from `base_url` into `cache_dir/{yyyymmddHH}/`."""

    def __init__(self, base_url: str, cache_dir: Path) -> None:
        from ecmwf.opendata import Client

        self.client = Client(source=base_url, model="ifs", resol="0p25",
                             maximum_retries=RETRIES, retry_after=1)
        for scheme in ("http://", "https://"):
            self.client.session.mount(scheme, _DefaultTimeout())
        self.cache_dir = cache_dir

    def data_url(self, run: datetime) -> str:
        """The run's step-0 GRIB2 file; the client picks `scda` or `oper` for 06/18 UTC."""
        result = self.client._get_urls(date=run.strftime("%Y%m%d"), time=run.hour, step=0,
                                       stream="oper", type="fc", use_index=False)
        return result.urls[0]

    def run_dir(self, run: datetime) -> Path:
        return self.cache_dir / run.strftime("%Y%m%d%H")

    def index(self, run: datetime) -> dict[str, IndexEntry]:
        """The run's index entries, from the cache or downloaded (and then cached)."""
        cached = self.run_dir(run) / "index.jsonl"
        if cached.exists():
            return parse_index(cached.read_text())
        url = self.data_url(run).removesuffix(".grib2") + ".index"
        try:
            reply = self.client.session.get(url, timeout=TIMEOUT_S)
        except requests.RequestException as exc:
            raise DownloadError(f"{url}: unreachable ({exc})") from exc
        if reply.status_code == 404:
            raise DownloadError(f"{url}: 404 not found (the run is not published yet, or has "
                                "left the open data's online window of the last few days)")
        if reply.status_code != 200:
            raise DownloadError(f"{url}: HTTP {reply.status_code}")
        entries = parse_index(reply.text)
        with write_atomically(cached) as temporary:
            temporary.write_text(reply.text)
        return entries

    def fetch(self, run: datetime, names: Sequence[str]) -> list[Path]:
        """Download the fields `names` of `run` (cached ones are kept); their files, in order.

        MissingFieldError if the index lacks one; DownloadError if one cannot be fetched."""
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
        from multiurl import download

        target = self.run_dir(run) / f"{entry.name.replace('@', '-')}.grib2"
        if target.exists() and target.stat().st_size == entry.length:
            return target
        try:
            download(url, target=str(target), parts=[(entry.offset, entry.length)],
                     resume_transfers=True, download_file_extension=".download",
                     session=self.client.session, accept_ranges=True,
                     maximum_retries=RETRIES, retry_after=1, timeout=TIMEOUT_S,
                     chunk_size=CHUNK_BYTES,
                     progress_bar=_no_progress)
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else exc
            raise DownloadError(f"{url} ({entry.name}): HTTP {status}") from exc
        except (requests.RequestException, AssertionError, OSError) as exc:
            raise DownloadError(f"{url} ({entry.name}): incomplete download, run the "
                                f"command again to resume ({exc})") from exc
        size = target.stat().st_size
        if size != entry.length:
            target.unlink()
            raise DownloadError(f"{url} ({entry.name}): {size} bytes, the index says "
                                f"{entry.length}")
        return target


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
