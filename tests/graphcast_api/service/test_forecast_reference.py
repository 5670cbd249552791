"""The real service with the reference checkpoint: model card and forecast values.

Site values must be the bilinear interpolation of the official fp32 predictions, within the
engine's fp32 tolerance (1e-3 x diffs stddev + 1e-6 x |value|, see the reference README).
"""
from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta

import numpy as np
import requests
import xarray as xr

from graphcast_contract.interpolation import bilinear
from tests.graphcast_api.service.helpers import REFERENCE_DIR, reference_request

FACTS = json.loads((REFERENCE_DIR / "facts.json").read_text())
TASK = FACTS["task_config"]
LEVELS = TASK["pressure_levels"]
ATMOSPHERIC = ["temperature", "geopotential", "u_component_of_wind", "v_component_of_wind",
               "vertical_velocity", "specific_humidity"]
INIT = datetime(2022, 1, 1, 6)
GRID = dict(lat_first=-90.0, lat_step=10.0, lon_first=0.0, lon_step=10.0)
GRID_POINT_SITES = [(-90.0, 0.0), (40.0, 120.0), (0.0, 350.0), (90.0, 170.0)]
OFF_GRID_SITES = [(48.8566, 2.3522), (-33.87, 151.21), (64.13, -21.9), (89.5, 355.0),
                  (-89.9, 725.5)]
SITES = [{"name": f"site{i}", "latitude": lat, "longitude": lon}
         for i, (lat, lon) in enumerate(GRID_POINT_SITES + OFF_GRID_SITES)]
ALL_TARGETS = [{"name": name, "level": level} if name in ATMOSPHERIC else {"name": name}
               for name in TASK["target_variables"]
               for level in (LEVELS if name in ATMOSPHERIC else [0])]


def test_model_card_matches_the_checkpoint(reference_server: str) -> None:
    card = requests.get(f"{reference_server}/v1/model", timeout=10).json()
    checkpoint = np.load(REFERENCE_DIR / "params.npz")
    assert card["description"] == str(checkpoint["description"])
    assert card["license"] == str(checkpoint["license"])
    assert card["grid"] == {"n_lat": 19, "n_lon": 36, "lat_first": -90.0, "lat_step": 10.0,
                            "lon_first": 0.0, "lon_step": 10.0}
    assert card["pressure_levels"] == LEVELS
    assert card["input_times_hours"] == [-6, 0]
    assert card["atmospheric_inputs"] == ATMOSPHERIC
    assert card["surface_inputs"] == ["2m_temperature", "mean_sea_level_pressure",
                                      "10m_v_component_of_wind", "10m_u_component_of_wind",
                                      "total_precipitation_6hr"]
    assert card["static_inputs"] == ["geopotential_at_surface", "land_sea_mask"]
    assert [t["name"] for t in card["targets"]] == TASK["target_variables"]
    units = {t["name"]: t["unit"] for t in card["targets"]}
    assert (units["2m_temperature"], units["geopotential"]) == ("K", "m2 s-2")
    assert (card["step_hours"], card["max_lead_hours"]) == (6, 240)
    assert (card["precision"], card["device"]) == ("fp32", "cpu")


def expected_site_values() -> dict[tuple[str, int], np.ndarray]:
    """(variable, level) -> [lead, site] bilinear interpolation of the official predictions,
    and the tolerance interpolated the same way under key (variable, -level - 1)."""
    predictions = xr.load_dataset(REFERENCE_DIR / "predictions_fp32.nc", decode_timedelta=True)
    scales = xr.load_dataset(REFERENCE_DIR / "stats_diffs_stddev_by_level.nc")
    lats = np.array([site["latitude"] for site in SITES])
    lons = np.array([site["longitude"] for site in SITES])
    expected = {}
    for target in ALL_TARGETS:
        name, level = target["name"], target.get("level", 0)
        field = predictions[name].isel(batch=0)
        scale = scales[name]
        if level:
            field, scale = field.sel(level=level), scale.sel(level=level)
        grid = field.transpose("time", "lat", "lon").values.astype(np.float64)
        tolerance = 1e-3 * float(scale) + 1e-6 * np.abs(grid)
        expected[name, level] = bilinear(grid, lats, lons, **GRID)
        expected[name, -level - 1] = bilinear(tolerance, lats, lons, **GRID)
    return expected


def test_forecast_is_the_interpolated_official_prediction(reference_server: str) -> None:
    request = reference_request(sites=SITES, variables=ALL_TARGETS, lead_hours=[6, 12, 18, 24])
    response = requests.post(f"{reference_server}/v1/forecast", json=request, timeout=120)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["init_time"] == "2022-01-01T06:00:00Z"
    assert len(body["forecasts"]) == len(SITES) * len(ALL_TARGETS) * 4
    assert set(body["timings"]) == {"decode_s", "inference_s", "interpolate_s", "total_s"}
    expected = expected_site_values()
    site_index = {site["name"]: i for i, site in enumerate(SITES)}
    worst = 0.0
    for entry in body["forecasts"]:
        key, s, t = ((entry["variable"], entry["level"]), site_index[entry["site"]],
                     entry["lead_hours"] // 6 - 1)
        want = expected[key][t, s]
        tolerance = expected[key[0], -key[1] - 1][t, s]
        worst = max(worst, abs(entry["value"] - want) / tolerance)
        valid = INIT + timedelta(hours=entry["lead_hours"])
        assert entry["valid_time"] == valid.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert worst <= 1.0, f"largest error is {worst:.2f} x the fp32 tolerance"
    first = body["forecasts"][0]
    assert (first["site"], first["variable"], first["level"], first["unit"],
            first["lead_hours"]) == ("site0", "2m_temperature", 0, "K", 6)


def test_concurrent_requests_all_get_their_own_answer(reference_server: str) -> None:
    requests_by_lead = {lead: reference_request(sites=SITES[:3], lead_hours=[lead])
                        for lead in (6, 12, 18, 24)}
    alone = {lead: requests.post(f"{reference_server}/v1/forecast", json=request,
                                 timeout=120).json()["forecasts"]
             for lead, request in requests_by_lead.items()}
    together: dict[int, requests.Response] = {}

    def post(lead: int) -> None:
        together[lead] = requests.post(f"{reference_server}/v1/forecast",
                                       json=requests_by_lead[lead], timeout=120)

    threads = [threading.Thread(target=post, args=(lead,)) for lead in requests_by_lead]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for lead, response in together.items():
        assert response.status_code == 200, response.text
        assert response.json()["forecasts"] == alone[lead]
        assert {entry["lead_hours"] for entry in alone[lead]} == {lead}
