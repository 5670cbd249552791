"""A loopback stand-in for ECMWF's open-data portal, serving GRIB2 files the tests write.

Layout as published: `{yyyymmdd}/{HH}z/ifs/0p25/{stream}/{yyyymmddHHMMSS}-0h-{stream}-fc.grib2`
plus its `.index` (JSON lines with `_offset`/`_length`). Files are built with ecCodes from a
synthetic state (latitudes north to south, as published). Range requests are honoured and
recorded; a run can be served truncated, cut off once in mid-transfer, or its data file
answered with an HTTP error (its index still served); any path can be redirected or served
without a Content-Length, and `/mirror/...` serves what `/...` does (a redirect target on the
same server).
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler

import numpy as np

from graphcast_contract.variables import PRESSURE_LEVELS_13
from tests.loopback import LoopbackServer
from tests.modules.inputs.helpers import grib_message

SURFACE = {"2t": (280.0, 10.0), "msl": (101_000.0, 800.0), "10u": (0.0, 5.0),
           "10v": (0.0, 5.0)}
PRESSURE = {"t": (240.0, 10.0), "gh": (5_000.0, 300.0), "u": (5.0, 10.0), "v": (0.0, 10.0),
            "w": (0.0, 0.2), "q": (0.004, 0.001)}
EXTRA = {"sp": (98_000.0, 500.0), "tcwv": (20.0, 5.0)}  # published, never needed
STATICS = {"z": (2_000.0, 1_000.0), "lsm": (0.5, 0.0)}
IFS_50R1 = datetime(2026, 5, 12, tzinfo=timezone.utc)


def stream_of(run: datetime) -> str:
    """The published stream: `scda` for the 06/18 UTC runs before IFS 50r1, else `oper`."""
    return "scda" if run.hour in (6, 18) and run < IFS_50R1 else "oper"


def run_path(run: datetime) -> str:
    stream = stream_of(run)
    return (f"/{run:%Y%m%d}/{run:%H}z/ifs/0p25/{stream}/{run:%Y%m%d%H%M%S}-0h-{stream}-fc")


def synthetic_field(name: str, level: int, run: datetime, shape: tuple[int, int]
                    ) -> np.ndarray:
    """A smooth, distinct (lat north->south, lon) field per name, level and run."""
    mean, spread = {**SURFACE, **PRESSURE, **EXTRA, **STATICS}[name]
    lat = np.linspace(90, -90, shape[0])[:, None]
    lon = np.linspace(0, 360, shape[1], endpoint=False)[None, :]
    phase = (level / 100.0) + run.hour / 6.0 + run.day
    if name == "lsm":
        return (np.sin(np.radians(lon) * 2 + phase) * np.cos(np.radians(lat)) > 0).astype(float)
    return mean + spread * (np.sin(np.radians(lat) * 2) + 0.5 * np.cos(np.radians(lon) + phase))


@dataclass
class Run:
    """One published run: its GRIB2 bytes and index lines."""

    data: bytes
    index: str
    entries: dict[str, tuple[int, int]] = field(default_factory=dict)


def build_run(run: datetime, shape: tuple[int, int], statics: bool = True,
              drop: tuple[str, ...] = (), only: tuple[tuple[str, int], ...] = ()) -> Run:
    """The run's step-0 file: every surface, pressure-level, extra and (optionally) static
    field, minus those named in `drop` (`param` or `param@level`); or just `only`."""
    items = [(n, 0) for n in (*SURFACE, *EXTRA, *(STATICS if statics else ()))]
    items += [(n, lev) for n in PRESSURE for lev in PRESSURE_LEVELS_13]
    items = list(only) or items
    data, lines, entries = b"", [], {}
    for name, level in items:
        key = f"{name}@{level}" if level else name
        if key in drop:
            continue
        message = grib_message(name, synthetic_field(name, level, run, shape),
                               f"{run:%Y-%m-%dT%H:%M}", level, edition=2)
        line = {"domain": "g", "date": f"{run:%Y%m%d}", "time": f"{run:%H}00",
                "expver": "0001", "class": "od", "type": "fc", "stream": stream_of(run),
                "step": "0", "levtype": "pl" if level else "sfc", "param": name,
                "_offset": len(data), "_length": len(message)}
        if level:
            line["levelist"] = str(level)
        entries[key] = (len(data), len(message))
        lines.append(json.dumps(line))
        data += message
    return Run(data, "\n".join(lines) + "\n", entries)


class OpenDataServer(LoopbackServer):
    """`with OpenDataServer(runs) as server:`; `server.url` is the open-data root.

    `runs` maps a run time to its Run; `truncate` serves a run's data cut to that many bytes;
    `cut_once` sends only half of the first ranged reply of a run, then closes; `fail_data`
    answers a run's data file (not its index) with that HTTP status; `redirects` answers a
    path with a 302 to its Location; a path in `unsized` is answered whole without a
    Content-Length, the connection closed after the body."""

    def __init__(self, runs: dict[datetime, Run]) -> None:
        self.runs = {run_path(when): run for when, run in runs.items()}
        self.truncate: dict[str, int] = {}
        self.cut_once: set[str] = set()
        self.fail_data: dict[str, int] = {}
        self.redirects: dict[str, str] = {}
        self.unsized: set[str] = set()
        self.ranges: list[tuple[str, int, int]] = []  # (path, first byte, last byte)
        self.url = self._listen(self._handler())

    def truncate_run(self, when: datetime, size: int) -> None:
        self.truncate[run_path(when)] = size

    def cut_run_once(self, when: datetime) -> None:
        self.cut_once.add(run_path(when))

    def fail_run_data(self, when: datetime, status: int) -> None:
        self.fail_data[run_path(when)] = status

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return None

            def _body(self) -> tuple[str, bytes] | None:
                base, dot, ext = self.path.removeprefix("/mirror").rpartition(".")
                run = server.runs.get(base)
                if run is None or ext not in ("grib2", "index"):
                    return None
                if ext == "index":
                    return base, run.index.encode()
                if base in server.fail_data:
                    return None
                return base, run.data[:server.truncate.get(base, len(run.data))]

            def _refuse(self) -> None:
                """A redirect if one is set; else 404, or the status `fail_data` sets for
                this run's data file."""
                if self.path in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = server.fail_data.get(self.path.rpartition(".")[0], 404)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
                found = None if self.path in server.redirects else self._body()
                if found is None:
                    return self._refuse()
                self.send_response(200)
                self.send_header("Content-Length", str(len(found[1])))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802
                found = None if self.path in server.redirects else self._body()
                if found is None:
                    return self._refuse()
                base, body = found
                wanted = self.headers.get("Range")
                if not wanted:
                    self.send_response(200)
                    if self.path in server.unsized:
                        self.close_connection = True
                    else:
                        self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return None
                first, last = (int(x) for x in wanted.removeprefix("bytes=").split("-"))
                server.ranges.append((base, first, last))
                part = body[first:last + 1]
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {first}-{last}/{len(body)}")
                if base in server.cut_once:
                    server.cut_once.discard(base)
                    self.send_header("Content-Length", str(len(part)))
                    self.end_headers()
                    self.wfile.write(part[:len(part) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return None
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                self.wfile.write(part)
                return None

        return Handler


def runs_of_cycle(init_time: datetime, shape: tuple[int, int], **options: object
                  ) -> dict[datetime, Run]:
    """The two runs (T0 - 6 h, T0) a cycle needs, both with statics unless told otherwise."""
    return {when: build_run(when, shape, **options)
            for when in (init_time - timedelta(hours=6), init_time)}


def main() -> None:
    """`python -m tests.modules.ifs_opendata.opendata_server CYCLE N_LAT N_LON` (from the
    project root): serve that cycle's two runs until killed, printing the root URL first
    (benchmarks/bench_live_cycle.py uses it as ECMWF's stand-in)."""
    import sys

    cycle = datetime.fromisoformat(sys.argv[1]).astimezone(timezone.utc)
    runs = runs_of_cycle(cycle, (int(sys.argv[2]), int(sys.argv[3])))
    with OpenDataServer(runs) as server:
        print(server.url, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
