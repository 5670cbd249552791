"""Physically plausible value ranges of ERA5/GraphCast variables (SI units, as in ERA5).

Generous bounds: they catch wrong units, wrong variables and corrupted data, not extremes.
"""
from __future__ import annotations

import numpy as np

PLAUSIBLE_RANGES: dict[str, tuple[float, float]] = {
    "2m_temperature": (170.0, 350.0),                   # K
    "temperature": (150.0, 350.0),                      # K
    "mean_sea_level_pressure": (85_000.0, 110_000.0),   # Pa
    "10m_u_component_of_wind": (-150.0, 150.0),         # m/s
    "10m_v_component_of_wind": (-150.0, 150.0),         # m/s
    "u_component_of_wind": (-250.0, 250.0),             # m/s
    "v_component_of_wind": (-250.0, 250.0),             # m/s
    "total_precipitation_6hr": (-1e-3, 0.5),            # m per 6 h
    "geopotential": (-20_000.0, 600_000.0),             # m2/s2 (1000 hPa can be negative)
    "vertical_velocity": (-100.0, 100.0),               # Pa/s
    "specific_humidity": (-1e-3, 0.1),                  # kg/kg
    "geopotential_at_surface": (-5_000.0, 100_000.0),   # m2/s2
    "land_sea_mask": (0.0, 1.0),                        # fraction
}


def problem(variable: str, values: np.ndarray) -> str | None:
    """What is wrong with `values` of `variable` (any shape), or None when plausible.

    Variables without a known range are only checked for being finite.
    """
    values = np.asarray(values)
    if not np.all(np.isfinite(values)):
        return f"{int(np.size(values) - np.count_nonzero(np.isfinite(values)))} NaN or infinite values"
    low, high = PLAUSIBLE_RANGES.get(variable, (-np.inf, np.inf))
    v_min, v_max = float(np.min(values)), float(np.max(values))
    if v_min < low or v_max > high:
        return f"values {v_min:g}..{v_max:g} outside the plausible range {low:g}..{high:g}"
    return None
