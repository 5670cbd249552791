"""Benchmark: load one day of 0.25 deg ERA5 (4 cycles x 83 fields + statics) from NetCDF.

Writes the three CDS-style NetCDF files of one day (pressure levels, single levels, hourly
precipitation) plus the previous day's precipitation (needed for 00 UTC's 6-hour total,
loaded first and not timed), then runs `python -m modules.era5_loader` on the day's files
in a child process and prints its wall time and peak resident memory next to the size of
one field and of the files, and the peak of loading the previous day's precipitation file
(24 fields) for comparison.

    python benchmarks/bench_era5_loader.py [--dir DIR] [--compress]

Uses DATABASE_URL when set, otherwise an embedded PostgreSQL in a temporary directory.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import netCDF4
import numpy as np

from graphcast_contract.project import PROJECT_ROOT
from modules.inputs.era5_variables import PRESSURE_LEVELS
from modules.storage import db

from served import peak_rss_mib

LAT = np.arange(90, -90.125, -0.25)
LON = np.arange(0, 360, 0.25)
DAY = datetime(2024, 1, 15)
ATMOSPHERIC = {"t": 250.0, "z": 50_000.0, "u": 5.0, "v": 0.0, "w": 0.0, "q": 0.005}
SINGLE = {"t2m": 280.0, "msl": 101_000.0, "u10": 2.0, "v10": 0.0, "z": 3_000.0, "lsm": 0.3}
UNITS = {"t": "K", "t2m": "K", "z": "m**2 s**-2", "u": "m s**-1", "v": "m s**-1",
         "u10": "m s**-1", "v10": "m s**-1", "w": "Pa s**-1", "q": "kg kg**-1", "msl": "Pa",
         "lsm": "(0 - 1)", "tp": "m"}


def write_file(path: Path, fields: dict[str, float], times: list[datetime],
               levels: tuple[int, ...], compress: bool, rng: np.random.Generator) -> None:
    """A CDS-layout NetCDF file, written one field at a time."""
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("valid_time", len(times))
        nc.createDimension("latitude", LAT.size)
        nc.createDimension("longitude", LON.size)
        time_var = nc.createVariable("valid_time", "i8", ("valid_time",))
        time_var.units = "seconds since 1970-01-01"
        time_var.calendar = "proleptic_gregorian"
        time_var[:] = [int(t.timestamp()) for t in times]
        nc.createVariable("latitude", "f8", ("latitude",))[:] = LAT
        nc.createVariable("longitude", "f8", ("longitude",))[:] = LON
        dims = ("valid_time", "latitude", "longitude")
        chunks = [1, LAT.size, LON.size]
        if levels:
            nc.createDimension("pressure_level", len(levels))
            nc.createVariable("pressure_level", "f8", ("pressure_level",))[:] = levels
            dims = ("valid_time", "pressure_level", "latitude", "longitude")
            chunks = [1, 1, LAT.size, LON.size]
        for name, mean in fields.items():
            var = nc.createVariable(name, "f4", dims, zlib=compress, complevel=1,
                                    chunksizes=chunks)
            var.units = UNITS[name]
            for t in range(len(times)):
                for k in range(max(len(levels), 1)):
                    field = (mean + 0.01 * abs(mean) * rng.standard_normal((LAT.size, LON.size))
                             ).astype(np.float32)
                    var[(t, k) if levels else t] = np.abs(field) if name in ("tp", "q") else field


def make_files(directory: Path, compress: bool) -> tuple[Path, list[Path]]:
    rng = np.random.default_rng(0)
    cycles = [DAY + timedelta(hours=h) for h in (0, 6, 12, 18)]
    hours = [DAY + timedelta(hours=h) for h in range(24)]
    previous = directory / "previous_precipitation.nc"
    write_file(previous, {"tp": 1e-4}, [h - timedelta(days=1) for h in hours], (), compress, rng)
    day_files = [directory / "pressure_levels.nc", directory / "single_levels.nc",
                 directory / "precipitation.nc"]
    write_file(day_files[0], ATMOSPHERIC, cycles, PRESSURE_LEVELS, compress, rng)
    write_file(day_files[1], SINGLE, cycles, (), compress, rng)
    write_file(day_files[2], {"tp": 1e-4}, hours, (), compress, rng)
    return previous, day_files


def run_loader(url: str, files: list[Path]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one loader run. The peak is polled from /proc:
    getrusage's figure for children would include this process's own memory (vfork)."""
    env = dict(os.environ, DATABASE_URL=url)
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "modules.era5_loader", *map(str, files)],
                             cwd=PROJECT_ROOT, env=env)
    peak = 0.0
    while child.poll() is None:
        try:
            peak = max(peak, peak_rss_mib(child.pid))
        except (FileNotFoundError, ProcessLookupError):
            pass
        time.sleep(0.02)
    elapsed = time.perf_counter() - start
    if child.returncode:
        raise SystemExit(f"the loader failed with exit code {child.returncode}")
    return elapsed, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="where to write the files")
    parser.add_argument("--compress", action="store_true", help="zlib level 1, as the CDS does")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        directory = args.dir or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        url = os.environ.get("DATABASE_URL") or db.embedded_url(Path(scratch) / "pg")
        start = time.perf_counter()
        previous, day_files = make_files(directory, args.compress)
        print(f"wrote the files in {time.perf_counter() - start:.1f} s")
        _, baseline_mib = run_loader(url, [previous])
        elapsed, peak_mib = run_loader(url, day_files)
        size_mib = sum(f.stat().st_size for f in day_files) / 2**20
        print(f"one day of 0.25 deg ERA5 ({size_mib:.0f} MiB in 3 NetCDF files, 4 cycles x 83 "
              f"fields + 2 static + 24 hourly precipitation fields"
              f"{', zlib' if args.compress else ''}; one field = "
              f"{LAT.size * LON.size * 4 / 2**20:.1f} MiB): loaded onto 1.0 deg in "
              f"{elapsed:.1f} s, peak RSS {peak_mib:.0f} MiB (loading the 100 MiB "
              f"precipitation file alone: {baseline_mib:.0f} MiB)")


if __name__ == "__main__":
    main()
