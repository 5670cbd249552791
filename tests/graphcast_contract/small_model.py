"""A small model's `/v1/model` reply and what the reply tests ask it for."""
from __future__ import annotations

from typing import Any

from graphcast_contract.variables import UNITS

VARIABLES = (("2m_temperature", 0), ("total_precipitation_6hr", 0), ("specific_humidity", 850))
PROVENANCE = {"checkpoint_file": "GraphCast_test.npz", "checkpoint_sha256": "ab" * 32,
              "precision": "fp32", "device": "cpu", "version": "1.0.0"}


def model_info() -> dict[str, Any]:
    """A valid `/v1/model` reply of a small model."""
    return {
        "model": "GraphCast_test", "description": "test", "license": "test",
        "grid": {"n_lat": 19, "n_lon": 36, "lat_first": -90.0, "lat_step": 10.0,
                 "lon_first": 0.0, "lon_step": 10.0},
        "pressure_levels": [500, 850], "input_times_hours": [-6, 0],
        "surface_inputs": ["2m_temperature", "total_precipitation_6hr"],
        "atmospheric_inputs": ["specific_humidity"], "static_inputs": ["land_sea_mask"],
        "targets": [{"name": name, "unit": UNITS[name], "atmospheric": bool(level)}
                    for name, level in VARIABLES],
        "step_hours": 6, "max_lead_hours": 240, "precision": "fp32", "device": "cpu",
        "provenance": dict(PROVENANCE),
    }
