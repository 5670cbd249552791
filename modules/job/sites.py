"""The forecast sites: a CSV file with columns name, latitude, longitude (degrees)."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from graphcast_contract.errors import ConfigError
from graphcast_contract.files import TextFileError, read_utf8_text
from graphcast_contract.request import Site, site_name_problem


def load_sites(path: Path) -> tuple[Site, ...]:
    """Read and check the sites file; ConfigError names the first bad line."""
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    line = 1  # where the next row starts (a quoted name may span lines)
    try:
        if reader.fieldnames != ["name", "latitude", "longitude"]:
            raise ConfigError(f"{path}: header must be 'name,latitude,longitude', "
                              f"found {reader.fieldnames}")
        sites = []
        line = reader.line_num + 1
        for row in reader:
            sites.append(_parse(path, line, row))
            line = reader.line_num + 1
    except csv.Error as exc:  # e.g. a quote left open: the rest of the file is one field
        raise ConfigError(f"{path}:{line}: not a CSV row ({exc})") from None
    names = [site.name for site in sites]
    if not sites:
        raise ConfigError(f"{path}: no sites")
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: duplicate site names")
    return tuple(sites)


def _read_text(path: Path) -> str:
    """The file's text: UTF-8, with or without the byte-order mark of Excel's "CSV UTF-8"
    (Excel's plain "CSV" is Windows-1252, which is refused naming the line)."""
    try:
        return read_utf8_text(path, advice='save the file as UTF-8 (Excel: "CSV UTF-8")')
    except TextFileError as exc:
        raise ConfigError(str(exc)) from None


def _parse(path: Path, line: int, row: dict[str, str]) -> Site:
    name = (row["name"] or "").strip()
    try:
        lat, lon = float(row["latitude"]), float(row["longitude"])
    except (TypeError, ValueError):
        raise ConfigError(f"{path}:{line}: latitude/longitude are not numbers") from None
    problem = site_name_problem(row["name"] or "")
    if problem:
        raise ConfigError(f"{path}:{line}: the site name {problem}")
    if not name or not (math.isfinite(lat) and math.isfinite(lon)):
        raise ConfigError(f"{path}:{line}: empty name or non-finite coordinates")
    if not (-90 <= lat <= 90 and -180 <= lon <= 360):
        raise ConfigError(f"{path}:{line}: coordinates out of range ({lat}, {lon})")
    return Site(name, lat, lon)
