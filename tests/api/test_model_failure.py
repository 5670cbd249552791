"""A model that fails answers 500 with a one-line detail, and the service keeps serving."""
from __future__ import annotations

import requests
import xarray as xr
from api_helpers import SlowPersistence, reference_request, serve_in_thread


class FailsOnce(SlowPersistence):
    """The stand-in model, failing on its first forecast only."""

    def __init__(self) -> None:
        super().__init__(seconds=0)
        self.failed = False

    def forecast(self, inputs: xr.Dataset, steps: int, forcings=None) -> xr.Dataset:
        if not self.failed:
            self.failed = True
            raise MemoryError("out of memory in step 1")
        return super().forecast(inputs, steps, forcings)


def test_model_failure_is_a_500_with_detail_then_service_answers() -> None:
    request = reference_request(lead_hours=[6])
    with serve_in_thread(FailsOnce()) as url:
        failed = requests.post(f"{url}/v1/forecast", json=request, timeout=60)
        assert failed.status_code == 500
        assert failed.json() == {"detail": "internal error: MemoryError: out of memory in step 1"}
        after = requests.post(f"{url}/v1/forecast", json=request, timeout=60)
        assert after.status_code == 200
