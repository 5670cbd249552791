"""Fixtures of the open-data tests: an emptied database and the command's settings."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from modules.storage import db


@pytest.fixture
def conn(clean_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """A connection to the emptied test database, which the command uses too."""
    monkeypatch.setenv("DATABASE_URL", clean_db)
    monkeypatch.delenv("IFS_OPENDATA_URL", raising=False)
    connection = db.connect(clean_db)
    yield connection
    connection.close()
