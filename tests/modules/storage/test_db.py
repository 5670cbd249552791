"""Migrations and the ERA5 store against a real PostgreSQL."""
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from psycopg2.extensions import make_dsn

from graphcast_contract.model_spec import Grid
from modules.inputs import store as era5_store
from modules.storage import db


def test_migrations_reapplied_are_a_no_op(database_url: str) -> None:
    conn = db.connect(database_url)
    assert db.apply_migrations(conn) == []
    with conn.cursor() as cur:
        cur.execute("SELECT version FROM schema_migrations ORDER BY version")
        versions = [row[0] for row in cur.fetchall()]
    assert versions == [v for v, _ in db.migration_files()]
    conn.close()


def test_connections_have_short_keepalives_at_both_ends(database_url: str) -> None:
    """libpq probes the server, and the server (its tcp_keepalives_* set for the session by
    the connection's options) probes this client: a lost peer's session ends in about a
    minute. Over a Unix socket the server reads them as 0 but records them as the client's."""
    conn = db.connect(make_dsn(database_url, options="-c search_path=public"))
    params = conn.get_dsn_parameters()
    assert params["keepalives"] == "1"
    assert {name: int(params[f"keepalives_{name}"]) for name in db.KEEPALIVE} == db.KEEPALIVE
    with conn.cursor() as cur:
        cur.execute("SELECT name, setting, source FROM pg_settings"
                    " WHERE name LIKE 'tcp_keepalives_%' OR name IN ('TimeZone', 'search_path')")
        settings = {name: (setting, source) for name, setting, source in cur.fetchall()}
    conn.close()
    assert settings["TimeZone"] == ("UTC", "client")
    assert settings["search_path"] == ("public", "client")  # the URL's own options are kept
    over_socket = params["host"].startswith("/")
    assert {name: (settings[f"tcp_keepalives_{name}"]) for name in db.KEEPALIVE} == {
        name: ("0" if over_socket else str(value), "client")
        for name, value in db.KEEPALIVE.items()}
    assert db.DEAD_PEER_S <= 60


def test_shipped_migration_numbers_are_unique_and_increasing() -> None:
    names = sorted(p.name for p in db.MIGRATIONS_DIR.glob("*.sql"))
    versions = [version for version, _ in db.migration_files()]
    assert len(versions) == len(names) >= 2
    assert versions == sorted(set(versions))


def test_two_migrations_with_one_number_are_refused(tmp_path: Path) -> None:
    for name in ("040_add_source.sql", "040_add_provenance.sql"):
        (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(RuntimeError, match="share the number 040"):
        db.migration_files(tmp_path)


def test_badly_named_migration_is_refused(tmp_path: Path) -> None:
    (tmp_path / "41_add_source.sql").write_text("SELECT 1;")
    with pytest.raises(RuntimeError, match="badly named"):
        db.migration_files(tmp_path)


def test_field_round_trip_is_bit_identical(clean_db: str) -> None:
    grid = Grid.from_coordinates(np.arange(-90, 91, 10.0), np.arange(0, 360, 10.0))
    when = datetime(2022, 1, 1, 6, tzinfo=timezone.utc)
    field = np.random.default_rng(0).normal(280, 10, grid.shape).astype(np.float32)
    conn = db.connect(clean_db)
    with conn, conn.cursor() as cur:
        era5_store.write_fields(cur, grid, when, {("temperature", 850): field})
        era5_store.write_fields(cur, grid, when, {("temperature", 850): field})  # idempotent
        got = era5_store.read_fields(cur, grid, when, [("temperature", 850), ("temperature", 500)])
        cur.execute("SELECT count(*) FROM input_fields")
        assert cur.fetchone()[0] == 1
    assert list(got) == [("temperature", 850)]
    assert got[("temperature", 850)].tobytes() == field.tobytes()
    conn.close()


@pytest.mark.parametrize(
    "lat, lon, message",
    [
        (np.arange(-80, 81, 10.0), np.arange(0, 360, 10.0), "global"),
        (np.array([-90, -80, -50, 90.0]), np.arange(0, 360, 10.0), "regular"),
        (np.arange(-90, 91, 10.0), np.arange(0, 180, 10.0), "360"),
    ],
)
def test_grid_rejects_irregular_or_regional(lat, lon, message) -> None:
    with pytest.raises(ValueError, match=message):
        Grid.from_coordinates(lat, lon)


def test_nan_field_is_refused(clean_db: str) -> None:
    grid = Grid.from_coordinates(np.arange(-90, 91, 10.0), np.arange(0, 360, 10.0))
    field = np.zeros(grid.shape, np.float32)
    field[3, 4] = np.nan
    conn = db.connect(clean_db)
    with pytest.raises(ValueError, match="NaN"), conn, conn.cursor() as cur:
        era5_store.write_fields(cur, grid, datetime(2022, 1, 1, tzinfo=timezone.utc),
                                {("2m_temperature", 0): field})
    conn.close()
