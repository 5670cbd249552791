"""Fixtures for verification tests."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from psycopg2.extensions import connection as Connection

from modules.storage import db


@pytest.fixture
def conn(clean_db: str) -> Iterator[Connection]:
    """A connection to the session database, emptied of data and scores."""
    connection = db.connect(clean_db)
    with connection, connection.cursor() as cur:
        cur.execute("TRUNCATE forecast_scores")
    yield connection
    connection.close()

