"""Requests to the Copernicus Climate Data Store (CDS) for the ERA5 a day of cycles needs.

One day D takes three requests, each giving one file:
- pressure levels: the 6 atmospheric variables on the 13 levels at 00, 06, 12, 18 UTC;
- single levels: 2 m temperature, mean sea-level pressure, 10 m winds and the two static
  fields (surface geopotential, land-sea mask) at 00, 06, 12, 18 UTC;
- precipitation: the 24 hourly accumulations of D (00..23 UTC), from which the loader
  derives `total_precipitation_6hr` (00 UTC of D also needs 19..23 UTC of D-1).
Instantaneous and accumulated variables go in separate requests, so the CDS returns one
plain file each instead of a zip. The user's CDS key comes from `~/.cdsapirc` or the
`CDSAPI_URL` / `CDSAPI_KEY` environment variables, as `cdsapi` reads them.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Protocol

from modules.inputs.era5_variables import (
    CYCLE_ATMOSPHERIC,
    CYCLE_STATIC,
    CYCLE_SURFACE,
    HOURLY_PRECIPITATION,
    PRECIPITATION_6HR,
    PRESSURE_LEVELS,
    by_name,
)

PRESSURE_LEVEL_DATASET = "reanalysis-era5-pressure-levels"
SINGLE_LEVEL_DATASET = "reanalysis-era5-single-levels"
CYCLE_HOURS = ("00:00", "06:00", "12:00", "18:00")
ALL_HOURS = tuple(f"{hour:02d}:00" for hour in range(24))
FORMATS = {"netcdf": "nc", "grib": "grib"}


class RetrieveClient(Protocol):
    """What `cdsapi.Client` offers and this module uses."""

    def retrieve(self, name: str, request: dict[str, Any], target: str) -> Any: ...


@dataclass(frozen=True)
class CdsRequest:
    """One CDS retrieval: dataset name, request body, and the file name to save it as."""

    dataset: str
    request: dict[str, Any]
    filename: str


def _request(day: date, variables: list[str], hours: tuple[str, ...], data_format: str,
             levels: tuple[int, ...] = ()) -> dict[str, Any]:
    request: dict[str, Any] = {
        "product_type": ["reanalysis"],
        "variable": variables,
        "year": [f"{day.year:04d}"],
        "month": [f"{day.month:02d}"],
        "day": [f"{day.day:02d}"],
        "time": list(hours),
        "data_format": data_format,
        "download_format": "unarchived",
    }
    if levels:
        request["pressure_level"] = [str(level) for level in levels]
    return request


def day_requests(day: date, data_format: str = "netcdf") -> list[CdsRequest]:
    """The three requests for `day` (see the module docstring), in loading order."""
    if data_format not in FORMATS:
        raise ValueError(f"unknown format {data_format!r} (netcdf or grib)")
    ext = FORMATS[data_format]
    stem = f"era5_{day:%Y%m%d}"
    atmospheric = [by_name(name).cds_name for name in CYCLE_ATMOSPHERIC]
    single = [by_name(name).cds_name for name in CYCLE_SURFACE if name != PRECIPITATION_6HR]
    single += [by_name(name).cds_name for name in CYCLE_STATIC]
    return [
        CdsRequest(PRESSURE_LEVEL_DATASET,
                   _request(day, atmospheric, CYCLE_HOURS, data_format, PRESSURE_LEVELS),
                   f"{stem}_pressure_levels.{ext}"),
        CdsRequest(SINGLE_LEVEL_DATASET, _request(day, single, CYCLE_HOURS, data_format),
                   f"{stem}_single_levels.{ext}"),
        CdsRequest(SINGLE_LEVEL_DATASET,
                   _request(day, [by_name(HOURLY_PRECIPITATION).cds_name], ALL_HOURS,
                            data_format),
                   f"{stem}_precipitation.{ext}"),
    ]


def download_day(client: RetrieveClient, day: date, directory: Path,
                 data_format: str = "netcdf") -> list[Path]:
    """Retrieve the files of `day` into `directory`; their paths, in loading order."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for item in day_requests(day, data_format):
        target = directory / item.filename
        client.retrieve(item.dataset, item.request, str(target))
        paths.append(target)
    return paths
