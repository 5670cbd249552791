"""Fetch one cycle's open-data analyses into the input store, tagged `ifs-opendata`.

A cycle T0 needs step 0 of the runs at T0 - 6 h and T0. Everything is downloaded and checked
first; then all fields go into the store in one transaction, so a failure writes nothing.
The static fields come with the T0 run when it publishes them; otherwise the open-data
statics already in the store are kept, or else ERA5's are regridded from the store (logged).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor

from graphcast_contract.cycles import INPUT_OFFSETS, iso_utc
from graphcast_contract.errors import MissingDataError
from graphcast_contract.model_spec import Grid, global_grid
from graphcast_contract.sources import InputSource
from graphcast_contract.variables import STATIC_VARIABLES
from modules.ifs_opendata.download import STATIC_PARAMS, RunDownloader, needed_names
from modules.inputs import store
from modules.inputs.loader import load_into
from modules.inputs.regrid import Regridder

log = logging.getLogger("ifs_opendata")

DEFAULT_GRID_STEP = 0.25  # degrees: the open data's own grid, GraphCast_operational's


@dataclass(frozen=True)
class FetchResult:
    """What one cycle's fetch stored: `statics` says where the static fields came from."""

    init_time: datetime
    grid: Grid
    fields: int
    statics: str


def download_cycle(downloader: RunDownloader, init_time: datetime
                   ) -> tuple[list[Path], list[Path]]:
    """(the 2 x 82 time-dependent field files, the T0 run's static files or [])."""
    fields = []
    for offset in INPUT_OFFSETS:
        run = init_time + offset
        fields += downloader.fetch(run, needed_names())
    published = [name for name in STATIC_PARAMS if name in downloader.index(init_time)]
    statics = []
    if len(published) == len(STATIC_PARAMS):
        statics = downloader.fetch(init_time, published)
    return fields, statics


def fetch_cycle(conn: Connection, downloader: RunDownloader, init_time: datetime,
                grid_step: float, min_grid_step: float) -> FetchResult:
    """Download, check and store the cycle `init_time` on the `grid_step` grid.

    Raises DownloadError, MissingFieldError, InvalidDataError, UnreadableFileError,
    MissingDataError (no statics anywhere) or psycopg2.Error; nothing is written then."""
    fields, statics = download_cycle(downloader, init_time)
    target = global_grid(grid_step)
    with conn, conn.cursor() as cur:
        for path in fields + statics:
            load_into(cur, path, grid_step, min_grid_step, InputSource.IFS_OPENDATA)
        origin = "published with the run" if statics else fill_statics(cur, target, init_time)
    return FetchResult(init_time, target, len(fields), origin)


def fill_statics(cur: Cursor, target: Grid, init_time: datetime) -> str:
    """Make sure the open-data statics exist on `target`: keep stored ones, else regrid
    ERA5's from the finest stored grid no coarser than `target`: conservative averages of
    it are the truest, as for the open-data fields, averaged from their own 0.25 deg. Says
    which."""
    if len(store.read_static(cur, target, STATIC_VARIABLES, InputSource.IFS_OPENDATA)) == len(
            STATIC_VARIABLES):
        return "kept from an earlier open-data run"
    source_grid = _era5_static_grid(cur, target)
    if source_grid is None:
        raise MissingDataError(
            f"run {iso_utc(init_time)} publishes no {' / '.join(STATIC_PARAMS)} and the store "
            f"holds no static fields ({', '.join(STATIC_VARIABLES)}) from either source on a "
            f"grid of {target.lat_step:g} deg or finer: load ERA5 statics first (python -m "
            "modules.era5_loader FILE)")
    era5 = store.read_static(cur, source_grid, STATIC_VARIABLES, InputSource.ERA5)
    regrid = Regridder(source_grid, target) if source_grid != target else None
    store.write_static(cur, target, {name: (regrid(field) if regrid else field)
                                     .astype("float32") for name, field in era5.items()},
                       InputSource.IFS_OPENDATA)
    log.warning("run %s publishes no %s: using ERA5's static fields from the store, "
                "regridded from %g to %g deg", iso_utc(init_time), "/".join(STATIC_PARAMS),
                source_grid.lat_step, target.lat_step)
    return f"ERA5's from the store ({source_grid.lat_step:g} deg)"


def _era5_static_grid(cur: Cursor, target: Grid) -> Grid | None:
    cur.execute(
        "SELECT g.n_lat, g.n_lon, g.lat_first, g.lat_step, g.lon_first, g.lon_step"
        " FROM input_grids g JOIN input_static_fields s USING (grid_id)"
        " WHERE s.source = %s AND s.variable = ANY(%s) AND g.lat_step <= %s + 1e-9"
        " GROUP BY g.grid_id HAVING count(*) = %s ORDER BY g.lat_step LIMIT 1",
        (InputSource.ERA5, list(STATIC_VARIABLES), target.lat_step, len(STATIC_VARIABLES)))
    row = cur.fetchone()
    return Grid(*row) if row else None


