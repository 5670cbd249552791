"""Prepare a cycle's model inputs: extract them from the analysis store and validate them.

The API's `GET /v1/model` says which variables, levels and grid the model takes
(`ModelSpec`); this module reads exactly those at T0 - 6 h and T0 (plus the static fields)
and refuses missing, mis-sized, non-finite or implausible fields before anything is sent.
"""
from __future__ import annotations

from datetime import datetime

import numpy as np
from psycopg2.extensions import cursor as Cursor

from graphcast_contract.cycles import INPUT_OFFSETS, iso_utc
from graphcast_contract.errors import InvalidDataError, MissingDataError
from graphcast_contract.model_spec import FieldKey, ModelSpec, describe_field
from graphcast_contract.request import Snapshot
from graphcast_contract.sources import InputSource
from graphcast_contract.variables import plausibility_problem
from modules.inputs import store


def extract_snapshot(cur: Cursor, spec: ModelSpec, init_time: datetime,
                     source: str = InputSource.ERA5) -> Snapshot:
    """Read and validate the inputs of the cycle `init_time` from `source`'s fields in the
    store (`era5`, `ifs-opendata`).

    MissingDataError or InvalidDataError names the first offending field.
    """
    per_time = [_read_time(cur, spec, init_time + offset, source) for offset in INPUT_OFFSETS]
    static = store.read_static(cur, spec.grid, spec.static_inputs, source)
    for name in spec.static_inputs:
        if name not in static:
            raise MissingDataError(f"static {InputSource(source).label} field {name} missing "
                                   f"on the model grid {spec.grid.n_lat}x{spec.grid.n_lon}")
        _check_values(source, name, name, static[name])
    for fields, offset in zip(per_time, INPUT_OFFSETS, strict=True):
        for key, field in fields.items():
            _check_values(source, f"{describe_field(key)} at {iso_utc(init_time + offset)}",
                          key[0], field)
    inputs = {name: np.stack([fields[(name, 0)] for fields in per_time])
              for name in spec.surface_inputs}
    for name in spec.atmospheric_inputs:
        inputs[name] = np.stack([np.stack([fields[(name, lev)] for lev in spec.pressure_levels])
                                 for fields in per_time])
    return Snapshot(init_time, inputs, static)


def _read_time(cur: Cursor, spec: ModelSpec, when: datetime, source: str
               ) -> dict[FieldKey, np.ndarray]:
    keys = spec.input_keys()
    try:
        fields = store.read_fields(cur, spec.grid, when, keys, source)
    except ValueError:  # a stored array of the wrong size does not reshape to the grid
        raise InvalidDataError(store.wrong_size_field(cur, spec.grid, when, source)) from None
    if not fields:
        raise MissingDataError(f"no {InputSource(source).label} snapshot at {iso_utc(when)} "
                               f"on the model grid {spec.grid.n_lat}x{spec.grid.n_lon}")
    missing = [key for key in keys if key not in fields]
    if missing:
        raise MissingDataError(f"{InputSource(source).label} field {describe_field(missing[0])}"
                               f" missing at {iso_utc(when)} ({len(missing)} of {len(keys)}"
                               " fields missing)")
    return fields


def _check_values(source: str, label: str, variable: str, field: np.ndarray) -> None:
    issue = plausibility_problem(variable, field)
    if issue:
        raise InvalidDataError(f"{InputSource(source).label} field {label}: {issue}")
