"""Forecast grids to values at sites: bilinear interpolation per variable and lead time."""
from __future__ import annotations

from datetime import timedelta

import numpy as np
import xarray as xr

from graphcast_api.service.request_parsing import DecodedRequest
from graphcast_api.service.schemas import Grid
from graphcast_contract.interpolation import bilinear
from graphcast_contract.variables import UNITS


class SiteForecasts:
    """The request's fields at its sites, taken from each step of a rollout as it comes.

    Only these values are kept, never a step's grid (0.95 GB at 0.25° and 37 levels), so a
    forecast holds one step at a time however many leads the request asks for.
    """

    def __init__(self, decoded: DecodedRequest, grid: Grid) -> None:
        self.decoded, self.grid = decoded, grid
        sites = decoded.request.sites
        self.lats = np.array([site.latitude for site in sites])
        self.lons = np.array([site.longitude for site in sites])
        # (variable, level) wanted, level 0 for surface variables (requests repeat none)
        self.fields = [(w.name, w.level or 0) for w in decoded.request.variables]
        self.values: dict[tuple[str, int, int], np.ndarray] = {}  # (variable, level, lead)

    def add(self, prediction: xr.Dataset) -> None:
        """Keep the wanted values of one step (batch=1, time=1, [level,] lat, lon), whose
        `time` coordinate is its lead time; a step at a lead nobody asked for is passed over."""
        lead = int(prediction["time"].values[0] // np.timedelta64(1, "h"))
        if lead not in self.decoded.request.lead_hours:
            return
        grid = self.grid
        for name, level in self.fields:
            field = prediction[name].isel(batch=0, time=0)
            if "level" in field.dims:
                field = field.sel(level=level)
            self.values[name, level, lead] = bilinear(
                field.transpose("lat", "lon").values, self.lats, self.lons,
                lat_first=grid.lat_first, lat_step=grid.lat_step,
                lon_first=grid.lon_first, lon_step=grid.lon_step)

    def entries(self) -> list[dict]:
        """One entry per site x variable x lead time (in that nesting order), as in the
        contract; KeyError if a wanted lead never came."""
        request, init_time = self.decoded.request, self.decoded.init_time
        entries = []
        for s, site in enumerate(request.sites):
            for name, level in self.fields:
                for lead in request.lead_hours:
                    entries.append({
                        "site": site.name, "latitude": site.latitude,
                        "longitude": site.longitude, "variable": name, "level": level,
                        "unit": UNITS.get(name, "unknown"), "lead_hours": lead,
                        "valid_time": init_time + timedelta(hours=lead),
                        "value": float(self.values[name, level, lead][s]),
                    })
        return entries
