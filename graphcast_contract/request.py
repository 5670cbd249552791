"""The forecast request of one cycle: its context (built once) and the `POST /v1/forecast`
body of docs/api.md, as JSON or as the binary encoding of the same request."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from graphcast_contract.cycles import iso_utc
from graphcast_contract.model_spec import FieldKey, ModelSpec
from graphcast_contract.wire import BinaryBody, encode_array


@dataclass(frozen=True)
class Site:
    name: str
    latitude: float   # degrees north, -90..90
    longitude: float  # degrees east, -180..360


def site_name_problem(name: str) -> str | None:
    """What is wrong with `name` as a site name (the job's sites file, the service's
    `sites[].name`), or None. One rule for both sides, so a name the job accepts is never
    refused by the service: printable characters only (`str.isprintable`), as a newline
    could forge a log line and an invisible character makes two names look alike."""
    if name.isprintable():
        return None
    return ("contains a non-printable character (a control character such as a newline or "
            "a tab, or an invisible one such as a no-break or zero-width space)")


@dataclass(frozen=True)
class ForecastContext:
    """What one cycle asks for: its init time, the sites, the variables and lead times."""

    init_time: datetime
    sites: tuple[Site, ...]
    variables: tuple[FieldKey, ...]
    lead_hours: tuple[int, ...]

    def valid_time(self, lead_hours: int) -> datetime:
        return self.init_time + timedelta(hours=lead_hours)

    def wanted(self) -> set[tuple[str, str, int, int]]:
        """Every (site, variable, level, lead) the reply must hold once."""
        return {(s.name, v, level, h) for s in self.sites for v, level in self.variables
                for h in self.lead_hours}


@dataclass(frozen=True)
class Snapshot:
    """The model inputs of one cycle, validated.

    `inputs[name]` is [2, n_lat, n_lon] (surface) or [2, n_levels, n_lat, n_lon]
    (atmospheric), time index 0 = T0 - 6 h, 1 = T0; `static[name]` is [n_lat, n_lon].
    """

    init_time: datetime
    inputs: dict[str, np.ndarray]
    static: dict[str, np.ndarray]


def build_payload(spec: ModelSpec, context: ForecastContext, snapshot: Snapshot
                  ) -> dict[str, Any]:
    """The `POST /v1/forecast` JSON body (arrays as base64)."""
    return {**request_fields(spec, context),
            "inputs": {name: encode_array(array) for name, array in snapshot.inputs.items()},
            "static": {name: encode_array(array) for name, array in snapshot.static.items()}}


def build_binary_body(spec: ModelSpec, context: ForecastContext, snapshot: Snapshot
                      ) -> BinaryBody:
    """The same request in the binary encoding, streamed from the snapshot's arrays."""
    return BinaryBody(request_fields(spec, context),
                      {"inputs": snapshot.inputs, "static": snapshot.static})


def request_fields(spec: ModelSpec, context: ForecastContext) -> dict[str, Any]:
    """Every field of the request but its arrays (`inputs`, `static`)."""
    return {
        "init_time": iso_utc(context.init_time),
        "grid": spec.grid.as_dict(),
        "pressure_levels": list(spec.pressure_levels),
        "sites": [{"name": s.name, "latitude": s.latitude, "longitude": s.longitude}
                  for s in context.sites],
        "variables": [{"name": name, "level": level} if level else {"name": name}
                      for name, level in context.variables],
        "lead_hours": list(context.lead_hours),
    }
