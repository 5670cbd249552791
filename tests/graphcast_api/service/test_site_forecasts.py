"""The service keeps its sites of each forecast step as it comes and drops the step's grid:
it never holds two steps (a step is 0.95 GB at 0.25° and 37 levels)."""
from __future__ import annotations

import weakref
from collections.abc import Iterator

import requests
import xarray as xr

from tests.graphcast_api.service.helpers import SlowPersistence, reference_request, serve_in_thread


class WatchedSteps(SlowPersistence):
    """The stand-in model, noting at each step whether the previous step is still held."""

    def __init__(self) -> None:
        super().__init__(seconds=0)
        self.previous_held: list[bool] = []

    def rollout(self, inputs: xr.Dataset, steps: int, forcings=None) -> Iterator[xr.Dataset]:
        made = super().rollout(inputs, steps, forcings)

        def watched() -> Iterator[xr.Dataset]:
            previous = None
            for step in made:
                if previous is not None:
                    self.previous_held.append(previous() is not None)
                previous = weakref.ref(step)
                yield step
                del step
        return watched()


def test_each_step_is_dropped_before_the_next_is_made() -> None:
    model = WatchedSteps()
    request = reference_request(variables=[{"name": "2m_temperature"},
                                           {"name": "temperature", "level": 850}],
                                lead_hours=[12, 24])
    with serve_in_thread(model) as url:
        reply = requests.post(f"{url}/v1/forecast", json=request, timeout=60)
    assert reply.status_code == 200, reply.text
    assert model.previous_held == [False, False, False]  # steps 2, 3, 4 of 4
    forecasts = reply.json()["forecasts"]
    assert len(forecasts) == len(request["sites"]) * 2 * 2
    assert {f["lead_hours"] for f in forecasts} == {12, 24}  # the 6 h and 18 h steps skipped
