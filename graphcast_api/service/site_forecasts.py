"""Forecast grids to values at sites: bilinear interpolation per variable and lead time."""
from __future__ import annotations

from datetime import timedelta

import numpy as np
import xarray as xr

from graphcast_api.service.request_parsing import DecodedRequest
from graphcast_api.service.schemas import Grid
from graphcast_contract.interpolation import bilinear
from graphcast_contract.variables import UNITS


def site_forecasts(predictions: xr.Dataset, decoded: DecodedRequest, grid: Grid) -> list[dict]:
    """One entry per site x variable x lead time (in that nesting order), as in the contract.

    `predictions` is the engine's output (batch=1, time=steps, [level,] lat, lon) with lead
    times as the `time` coordinate.
    """
    request = decoded.request
    leads = np.array([np.timedelta64(h, "h") for h in request.lead_hours], "timedelta64[ns]")
    lats = np.array([site.latitude for site in request.sites])
    lons = np.array([site.longitude for site in request.sites])
    values = {}  # (variable, level) -> [lead, site]
    for wanted in request.variables:
        field = predictions[wanted.name].isel(batch=0).sel(time=leads)
        if "level" in field.dims:
            field = field.sel(level=wanted.level)
        values[wanted.name, wanted.level or 0] = bilinear(
            field.transpose("time", "lat", "lon").values, lats, lons,
            lat_first=grid.lat_first, lat_step=grid.lat_step,
            lon_first=grid.lon_first, lon_step=grid.lon_step)
    entries = []
    for s, site in enumerate(request.sites):
        for (name, level), site_values in values.items():
            for t, lead in enumerate(request.lead_hours):
                entries.append({
                    "site": site.name, "latitude": site.latitude, "longitude": site.longitude,
                    "variable": name, "level": level, "unit": UNITS.get(name, "unknown"),
                    "lead_hours": lead, "valid_time": decoded.init_time + timedelta(hours=lead),
                    "value": float(site_values[t, s]),
                })
    return entries
