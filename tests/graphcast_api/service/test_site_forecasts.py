"""The service keeps its sites of each forecast step as it comes and drops the step's grid:
it never holds two steps (a step is 0.95 GB at 0.25° and 37 levels); and it rolls the decoded
inputs in place instead of copying them (1.9 GB)."""
from __future__ import annotations

import json
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
import xarray as xr

from graphcast_api.engine import Forecaster
from graphcast_api.service import model_card
from graphcast_api.service.app import ServiceLimits, forecast_entries
from graphcast_api.service.binary_body import decode_binary_body
from graphcast_api.service.request_parsing import DecodedRequest, decode_forecast_request
from graphcast_api.service.site_forecasts import SiteForecasts
from tests.graphcast_api.service.helpers import (
    REFERENCE_DIR,
    SlowPersistence,
    reference_binary_body,
    reference_request,
    serve_in_thread,
)


class WatchedSteps(SlowPersistence):
    """The stand-in model, noting at each step whether the previous step is still held."""

    def __init__(self) -> None:
        super().__init__(seconds=0)
        self.previous_held: list[bool] = []

    def rollout(self, inputs: xr.Dataset, steps: int, forcings=None, *,
                overwrite_inputs: bool = False) -> Iterator[xr.Dataset]:
        made = super().rollout(inputs, steps, forcings, overwrite_inputs=overwrite_inputs)

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


@pytest.fixture(scope="module")
def reference_model(stats_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Forecaster:
    return Forecaster.from_files(REFERENCE_DIR / "params.npz", stats_dir, precision="fp32",
                                 device="cpu", cache_dir=tmp_path_factory.mktemp("graphs"),
                                 compile=False)


def decoded_request(model: Forecaster, encoding: str) -> DecodedRequest:
    """The reference request decoded as the service decodes a JSON or a binary body."""
    request, limits = reference_request(), ServiceLimits()
    if encoding == "json":
        return decode_forecast_request(json.dumps(request).encode(), model, limits.caps())
    return decode_binary_body(reference_binary_body(request), model, limits.caps(),
                              limits.header_bytes())


@pytest.mark.parametrize("encoding", ["json", "binary"])
def test_the_forecast_rolls_the_decoded_inputs_in_place(reference_model: Forecaster,
                                                        encoding: str) -> None:
    """Either body's arrays are decoded writable and handed to the rollout, which rolls them
    in place rather than copying them: afterwards they hold the rollout's last two frames, and
    the sites' values are those of a forecast from an untouched copy."""
    decoded = decoded_request(reference_model, encoding)
    untouched = decoded.inputs.copy(deep=True)
    entries, _, _ = forecast_entries(reference_model, decoded)

    whole = reference_model.forecast(untouched, decoded.steps)
    expected = SiteForecasts(decoded, model_card.model_grid(reference_model))
    for step in range(decoded.steps):
        expected.add(whole.isel(time=[step]))
    assert entries == expected.entries()
    rolled = [name for name in whole.data_vars if name in decoded.inputs]
    assert "temperature" in rolled and "2m_temperature" in rolled
    for name in rolled:
        frames = whole[name].isel(time=[-2, -1]).transpose(*decoded.inputs[name].dims)
        np.testing.assert_array_equal(decoded.inputs[name].values, frames.values, name)
