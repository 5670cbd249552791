"""The input store: whole lat/lon analysis fields as packed float32 rows in PostgreSQL.

A field is identified by (source, grid, valid time, variable, level); `source` is one of
`graphcast_contract.sources.InputSource` (`era5`, `ifs-opendata`), `level` the pressure
level in hPa, or 0 for single-level fields. Arrays are (lat, lon) with latitude ascending from
-90 and longitude from `lon_first` eastwards. Variable names are GraphCast's long ERA5
names (`2m_temperature`, `temperature`, ...).
"""
from __future__ import annotations

import io
import struct
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

import numpy as np
from psycopg2.extensions import cursor as Cursor

from graphcast_contract.cycles import CYCLE, INPUT_OFFSETS, iso_utc
from graphcast_contract.model_spec import FieldKey, Grid, describe_field
from graphcast_contract.sources import InputSource
from graphcast_contract.wire import WIRE_DTYPE


def pack(field: np.ndarray) -> bytes:
    """A (lat, lon) field as little-endian float32 bytes."""
    return np.ascontiguousarray(field, dtype=WIRE_DTYPE).tobytes()


def unpack(data: bytes | memoryview, grid: Grid) -> np.ndarray:
    """Bytes from `pack` back to a (lat, lon) float32 array."""
    return np.frombuffer(data, dtype=WIRE_DTYPE).reshape(grid.shape)


def ensure_grid(cur: Cursor, grid: Grid) -> int:
    """The id of `grid`, inserting its description when it is new."""
    cur.execute(
        "INSERT INTO input_grids (n_lat, n_lon, lat_first, lat_step, lon_first, lon_step)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (grid.n_lat, grid.n_lon, grid.lat_first, grid.lat_step, grid.lon_first, grid.lon_step),
    )
    grid_id = find_grid(cur, grid)
    assert grid_id is not None
    return grid_id


def find_grid(cur: Cursor, grid: Grid) -> int | None:
    """The id of `grid`, or None when nothing was ever stored on it."""
    cur.execute(
        "SELECT grid_id FROM input_grids WHERE n_lat = %s AND n_lon = %s AND lat_first = %s"
        " AND lat_step = %s AND lon_first = %s AND lon_step = %s",
        (grid.n_lat, grid.n_lon, grid.lat_first, grid.lat_step, grid.lon_first, grid.lon_step),
    )
    row = cur.fetchone()
    return row[0] if row else None


def _check_field(key: object, field: np.ndarray, grid: Grid) -> None:
    if field.shape != grid.shape:
        raise ValueError(f"{key}: shape {field.shape} does not match the grid {grid.shape}")
    if not np.all(np.isfinite(field)):
        raise ValueError(f"{key}: contains NaN or infinite values")


def write_fields(
    cur: Cursor, grid: Grid, valid_time: datetime, fields: Mapping[FieldKey, np.ndarray],
    source: str = InputSource.ERA5,
) -> None:
    """Insert or replace the fields of one valid time (timezone-aware) from `source`."""
    grid_id = ensure_grid(cur, grid)
    rows = []
    for (variable, level), field in fields.items():
        _check_field((variable, level), field, grid)
        rows.append((source, grid_id, valid_time, variable, level, pack(field)))
    cur.executemany(
        "INSERT INTO input_fields (source, grid_id, valid_time, variable, level, data)"
        " VALUES (%s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (source, grid_id, valid_time, variable, level)"
        " DO UPDATE SET data = EXCLUDED.data, loaded_at = now()",
        rows,
    )


def write_static(cur: Cursor, grid: Grid, fields: Mapping[str, np.ndarray],
                 source: str = InputSource.ERA5) -> None:
    """Insert or replace time-invariant fields of `source`."""
    grid_id = ensure_grid(cur, grid)
    rows = []
    for variable, field in fields.items():
        _check_field(variable, field, grid)
        rows.append((source, grid_id, variable, pack(field)))
    cur.executemany(
        "INSERT INTO input_static_fields (source, grid_id, variable, data)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (source, grid_id, variable)"
        " DO UPDATE SET data = EXCLUDED.data, loaded_at = now()",
        rows,
    )


def read_fields(
    cur: Cursor, grid: Grid, valid_time: datetime, keys: Iterable[FieldKey],
    source: str = InputSource.ERA5,
) -> dict[FieldKey, np.ndarray]:
    """The stored fields of `source` among `keys` at `valid_time`; missing ones are absent."""
    keys = list(keys)
    grid_id = find_grid(cur, grid)
    if grid_id is None or not keys:
        return {}
    rows = binary_rows(
        cur,
        "SELECT f.variable, f.level::text, f.data FROM input_fields f"
        " JOIN unnest(%s::text[], %s::integer[]) AS k(variable, level)"
        "   ON f.variable = k.variable AND f.level = k.level"
        " WHERE f.source = %s AND f.grid_id = %s AND f.valid_time = %s",
        ([k[0] for k in keys], [k[1] for k in keys], source, grid_id, valid_time),
    )
    return {(bytes(var).decode(), int(bytes(lev))): unpack(data, grid)
            for var, lev, data in rows}


_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


def binary_rows(cur: Cursor, sql: str, params: Sequence) -> list[list[memoryview]]:
    """The rows of `sql` as raw column bytes (views of one buffer), read with a binary COPY.

    A plain fetch sends bytea as hex text: at 0.25 deg (166 fields of 4 MB per cycle) that is
    twice the bytes and most of the extraction time. Text and integer columns arrive in
    PostgreSQL's binary representation: cast integers to text in `sql`. NULLs are refused
    (the store has none).
    """
    buffer = io.BytesIO()
    query = cur.mogrify(sql, params).decode()
    cur.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT binary)", buffer)
    data = buffer.getbuffer()
    if bytes(data[:11]) != _COPY_SIGNATURE:
        raise ValueError("not a PostgreSQL binary COPY stream")
    extension, = struct.unpack_from(">i", data, 15)
    offset, rows = 19 + extension, []
    while (count := struct.unpack_from(">h", data, offset)[0]) != -1:
        offset += 2
        row = []
        for _ in range(count):
            length, = struct.unpack_from(">i", data, offset)
            if length < 0:
                raise ValueError("unexpected NULL in a binary COPY row")
            row.append(data[offset + 4:offset + 4 + length])
            offset += 4 + length
        rows.append(row)
    return rows


def read_static(cur: Cursor, grid: Grid, variables: Iterable[str], source: str = InputSource.ERA5
                ) -> dict[str, np.ndarray]:
    """The stored static fields of `source` among `variables`; missing ones are absent."""
    grid_id = find_grid(cur, grid)
    if grid_id is None:
        return {}
    rows = binary_rows(
        cur,
        "SELECT variable, data FROM input_static_fields"
        " WHERE source = %s AND grid_id = %s AND variable = ANY(%s)",
        (source, grid_id, list(variables)),
    )
    return {bytes(var).decode(): unpack(data, grid) for var, data in rows}


def wrong_size_field(cur: Cursor, grid: Grid, valid_time: datetime,
                     source: str = InputSource.ERA5) -> str:
    """Describe the first field of `source` at `valid_time` whose stored size does not fit
    `grid`."""
    size_of_grid = np.dtype(WIRE_DTYPE).itemsize * grid.n_lat * grid.n_lon
    cur.execute(
        "SELECT f.variable, f.level, octet_length(f.data) FROM input_fields f"
        " JOIN input_grids g USING (grid_id)"
        " WHERE f.source = %s AND g.n_lat = %s AND g.n_lon = %s AND f.valid_time = %s"
        "   AND octet_length(f.data) <> %s ORDER BY f.variable, f.level LIMIT 1",
        (source, grid.n_lat, grid.n_lon, valid_time, size_of_grid),
    )
    variable, level, size = cur.fetchone()
    return (f"{InputSource(source).label} field {describe_field((variable, level))} at "
            f"{iso_utc(valid_time)} holds {size} bytes, not the {size_of_grid} of a "
            f"{grid.n_lat}x{grid.n_lon} grid")


def latest_complete_cycle(cur: Cursor, source: str, grid: Grid,
                          keys: Sequence[FieldKey], statics: Sequence[str],
                          not_after: datetime | None = None) -> datetime | None:
    """The latest cycle (at or before `not_after`) whose T-6 h and T0 both hold every field
    of `keys` from `source` on `grid`, with the `statics` stored too; None if there is none.

    The ifs-opendata job's default target: its newest analysis pair in the store.
    """
    grid_id = find_grid(cur, grid)
    if grid_id is None:
        return None
    cur.execute("SELECT count(*) FROM input_static_fields"
                " WHERE source = %s AND grid_id = %s AND variable = ANY(%s)",
                (source, grid_id, list(statics)))
    if cur.fetchone()[0] < len(set(statics)):
        return None
    cur.execute(
        "WITH complete AS ("
        "  SELECT f.valid_time FROM input_fields f"
        "  JOIN unnest(%s::text[], %s::integer[]) AS k(variable, level)"
        "    ON f.variable = k.variable AND f.level = k.level"
        "  WHERE f.source = %s AND f.grid_id = %s"
        "    AND (%s::timestamptz IS NULL OR f.valid_time <= %s)"
        "  GROUP BY f.valid_time HAVING count(*) = %s)"
        " SELECT max(c.valid_time) FROM complete c"
        " WHERE c.valid_time + %s IN (SELECT valid_time FROM complete)"
        "   AND extract(epoch FROM c.valid_time)::bigint %% %s = 0",
        ([k[0] for k in keys], [k[1] for k in keys], source, grid_id, not_after, not_after,
         len(set(keys)), INPUT_OFFSETS[0], int(CYCLE.total_seconds())),
    )
    return cur.fetchone()[0]
