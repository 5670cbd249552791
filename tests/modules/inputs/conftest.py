"""Fixtures of the input-store tests (helpers in `tests.modules.inputs.helpers`)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from modules.storage import db


@pytest.fixture
def conn(clean_db: str) -> Iterator:
    """A connection to the emptied test database."""
    connection = db.connect(clean_db)
    yield connection
    connection.close()
