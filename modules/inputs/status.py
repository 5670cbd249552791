"""Which forecast cycles the input store can serve, per source: complete, incomplete or absent.

A cycle with init time T needs, on the model grid, every field of `cycle_fields()` at
T-6h and at T, plus the static fields.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from psycopg2.extensions import cursor as Cursor

from graphcast_contract.cycles import INPUT_OFFSETS
from graphcast_contract.model_spec import Grid
from graphcast_contract.sources import InputSource
from modules.inputs import store
from modules.inputs.era5_variables import CYCLE_STATIC, PRESSURE_LEVELS, cycle_fields


@dataclass(frozen=True)
class CycleStatus:
    """`state` is 'complete', 'incomplete' or 'absent'; `missing` names what is lacking."""

    init_time: datetime
    state: str
    missing: tuple[str, ...]


def _stored_keys(cur: Cursor, source: str, grid_id: int, first: datetime, last: datetime
                 ) -> dict[datetime, set[tuple[str, int]]]:
    cur.execute("SELECT valid_time, variable, level FROM input_fields WHERE source = %s"
                " AND grid_id = %s AND valid_time BETWEEN %s AND %s",
                (source, grid_id, first, last))
    stored: dict[datetime, set[tuple[str, int]]] = {}
    for when, variable, level in cur.fetchall():
        stored.setdefault(when, set()).add((variable, level))
    return stored


def describe_missing(keys: set[tuple[str, int]]) -> list[str]:
    """Missing (variable, level) pairs, compactly: 'temperature (all levels)', 'q@850,925'."""
    by_variable: dict[str, list[int]] = {}
    for variable, level in keys:
        by_variable.setdefault(variable, []).append(level)
    described = []
    for variable, levels in sorted(by_variable.items()):
        if levels == [0]:
            described.append(variable)
        elif len(levels) == len(PRESSURE_LEVELS):
            described.append(f"{variable} (all levels)")
        else:
            described.append(f"{variable}@{','.join(map(str, sorted(levels)))}")
    return described


def cycle_status(cur: Cursor, grid: Grid, init_times: Sequence[datetime],
                 source: str = InputSource.ERA5) -> list[CycleStatus]:
    """The status of each cycle in `init_times` on `grid`, from `source`'s fields."""
    needed = set(cycle_fields(source))
    grid_id = store.find_grid(cur, grid)
    stored: dict[datetime, set[tuple[str, int]]] = {}
    statics: set[str] = set()
    if grid_id is not None and init_times:
        stored = _stored_keys(cur, source, grid_id, min(init_times) + INPUT_OFFSETS[0],
                              max(init_times))
        cur.execute("SELECT variable FROM input_static_fields WHERE source = %s"
                    " AND grid_id = %s", (source, grid_id))
        statics = {row[0] for row in cur.fetchall()}
    result = []
    for init in init_times:
        missing, found_any = [], False
        for offset in INPUT_OFFSETS:
            when = init + offset
            have = stored.get(when, set()) & needed
            found_any = found_any or bool(have)
            if needed - have:
                lacking = (f"all {len(needed)} fields" if not have
                           else ", ".join(describe_missing(needed - have)))
                missing.append(f"{when:%Y-%m-%dT%H}Z: {lacking}")
        absent_statics = [name for name in CYCLE_STATIC if name not in statics]
        if absent_statics:
            missing.append(f"static: {', '.join(absent_statics)}")
        state = "complete" if not missing else ("incomplete" if found_any else "absent")
        result.append(CycleStatus(init, state, tuple(missing) if found_any else ()))
    return result
