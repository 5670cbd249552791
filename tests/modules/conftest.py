"""Fixtures of the batch-job tests: the contract API on loopback, ERA5 in the store, and a
runner of the job as a real subprocess (helpers in `tests.modules.job_helpers`)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.modules.contract_api_server import ContractApi
from tests.modules.job_helpers import (
    EXAMPLE_START,
    ExampleFrames,
    JobRunner,
    load_frames,
    read_example_frames,
)


@pytest.fixture(scope="session")
def example_frames() -> ExampleFrames:
    return read_example_frames()


@pytest.fixture(scope="session")
def contract_server() -> Iterator[ContractApi]:
    server = ContractApi()
    yield server
    server.close()


@pytest.fixture
def api(contract_server: ContractApi) -> ContractApi:
    """The contract API with default behaviour and an empty call log."""
    contract_server.reset()
    return contract_server


@pytest.fixture
def era5_db(clean_db: str, example_frames: ExampleFrames) -> str:
    """A clean database holding the example frames from 2022-01-01T00 to 2022-01-02T06."""
    load_frames(clean_db, example_frames, EXAMPLE_START)
    return clean_db


@pytest.fixture
def run_job(era5_db: str, api: ContractApi, tmp_path: Path) -> JobRunner:
    return JobRunner(era5_db, api.url, tmp_path / "logs")
