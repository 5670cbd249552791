"""A model that fails answers 500 with a generic detail and a request id (the log has the
traceback under that id), and the service keeps serving."""
from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import requests
import xarray as xr

from tests.graphcast_api.service.helpers import SlowPersistence, reference_request, serve_in_thread


class FailsOnce(SlowPersistence):
    """The stand-in model, failing on its first forecast only."""

    def __init__(self) -> None:
        super().__init__(seconds=0)
        self.failed = False

    def rollout(self, inputs: xr.Dataset, steps: int, forcings=None, *,
                overwrite_inputs: bool = False) -> Iterator[xr.Dataset]:
        if not self.failed:
            self.failed = True
            raise MemoryError("out of memory in step 1")
        return super().rollout(inputs, steps, forcings, overwrite_inputs=overwrite_inputs)


def test_model_failure_is_a_500_with_request_id_then_service_answers(
        caplog: pytest.LogCaptureFixture) -> None:
    request = reference_request(lead_hours=[6])
    with caplog.at_level(logging.ERROR), serve_in_thread(FailsOnce()) as url:
        failed = requests.post(f"{url}/v1/forecast", json=request, timeout=60)
        assert failed.status_code == 500
        request_id = failed.headers["X-Request-ID"]
        assert failed.json() == {"detail": "internal error", "request_id": request_id}
        assert "MemoryError" not in failed.text and "out of memory" not in failed.text
        after = requests.post(f"{url}/v1/forecast", json=request, timeout=60)
        assert after.status_code == 200
        assert len(after.headers["X-Request-ID"]) == 32
        assert after.headers["X-Request-ID"] != request_id
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None
    assert "out of memory in step 1" in str(logged[0].exc_info[1])
