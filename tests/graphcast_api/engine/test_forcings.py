"""Forcings against the values DeepMind's official code computed
(tests/data/graphcast_reference)."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from graphcast_api.engine.forcings import (
    KNOWN_FORCINGS,
    PROGRESS_FORCINGS,
    TISR,
    add_forcings,
    era5_tsi,
    toa_incident_solar_radiation,
)
from graphcast_contract.variables import FORCING_VARIABLES
from tests.paths import REFERENCE_DIR

TISR_ATOL = 50.0  # J m^-2; the official jitted and numpy paths differ by up to 12 J m^-2


def _load(name: str) -> xr.Dataset:
    return xr.load_dataset(REFERENCE_DIR / name, decode_timedelta=True)


@pytest.fixture(scope="module")
def batch() -> xr.Dataset:
    """The official-layout example batch, 6 frames: 2 inputs then 4 targets."""
    return _load("example_batch.nc")


@pytest.fixture(scope="module")
def tisr_reference() -> xr.Dataset:
    return _load("tisr_reference.nc")


def _official_forcings(batch: xr.Dataset) -> xr.Dataset:
    """inputs.nc and forcings.nc progress variables on the batch's 6 frames."""
    official = xr.concat([_load("inputs.nc")[list(PROGRESS_FORCINGS)],
                          _load("forcings.nc")[list(PROGRESS_FORCINGS)]], dim="time")
    return official.assign_coords(time=batch.time)


def test_progress_forcings_match_official_float32(batch: xr.Dataset) -> None:
    ours = add_forcings(batch, PROGRESS_FORCINGS)
    official = _official_forcings(batch)
    for name in PROGRESS_FORCINGS:
        assert ours[name].dims == official[name].dims, name
        assert ours[name].dtype == np.float32, name
        np.testing.assert_allclose(ours[name].values, official[name].values, rtol=0, atol=1e-6,
                                   err_msg=name)


def test_day_progress_follows_longitude(batch: xr.Dataset) -> None:
    """At 00:00 UTC the local phase at longitude L is L degrees: sin(L), cos(L)."""
    ours = add_forcings(batch, ["day_progress_sin", "day_progress_cos"]).isel(batch=0, time=0)
    lon = np.deg2rad(batch.lon.values.astype(np.float64))
    np.testing.assert_allclose(ours["day_progress_sin"].values, np.sin(lon), atol=1e-6)
    np.testing.assert_allclose(ours["day_progress_cos"].values, np.cos(lon), atol=1e-6)


def test_era5_tsi_matches_official_interpolation(tisr_reference: xr.Dataset) -> None:
    np.testing.assert_allclose(era5_tsi(tisr_reference.datetime.values),
                               tisr_reference.tsi.values, rtol=1e-12)


def test_tisr_matches_official_at_all_reference_times(tisr_reference: xr.Dataset) -> None:
    ours = toa_incident_solar_radiation(tisr_reference.datetime.values, tisr_reference.lat.values,
                                        tisr_reference.lon.values)
    official = tisr_reference[TISR].values
    assert ours.shape == official.shape == (9, 19, 36)
    assert ours.dtype == np.float32
    for i, when in enumerate(tisr_reference.datetime.values):
        np.testing.assert_allclose(ours[i], official[i], rtol=0, atol=TISR_ATOL, err_msg=str(when))


def test_tisr_is_zero_in_polar_night_and_positive_in_daylight(tisr_reference: xr.Dataset) -> None:
    """2022-06-21T06:00: the south pole is dark, the north pole has had the sun all hour."""
    when = np.array(["2022-06-21T06:00"], dtype="datetime64[ns]")
    field = toa_incident_solar_radiation(when, np.array([-90.0, 90.0]), np.array([0.0]))
    assert field[0, 0, 0] == 0.0
    assert 1.5e6 < field[0, 1, 0] < 2.0e6  # ~1361 W m^-2 x sin(23.4 deg) x 3600 s


def test_add_forcings_computes_tisr_like_the_example_batch(batch: xr.Dataset) -> None:
    without = batch.drop_vars(TISR)
    ours = add_forcings(without, [TISR])
    assert ours[TISR].dims == batch[TISR].dims == ("batch", "time", "lat", "lon")
    assert ours[TISR].dtype == np.float32
    np.testing.assert_allclose(ours[TISR].values, batch[TISR].values, rtol=0, atol=TISR_ATOL)


def test_add_forcings_computes_every_forcing_of_the_catalogue(batch: xr.Dataset) -> None:
    """The job never sends forcings (the catalogue's kind FORCING): the engine computes each
    one the catalogue lists, whereas KNOWN_FORCINGS is only the set it has formulas for."""
    without = batch.drop_vars([name for name in FORCING_VARIABLES if name in batch])
    out = add_forcings(without, FORCING_VARIABLES)
    assert set(FORCING_VARIABLES) <= set(out.data_vars)


def test_add_forcings_keeps_present_variables_and_ignores_non_forcings(batch: xr.Dataset) -> None:
    marked = batch.assign({TISR: batch[TISR] * 0 - 1.0})
    out = add_forcings(marked, list(KNOWN_FORCINGS) + ["2m_temperature", "not_a_forcing"])
    assert (out[TISR].values == -1.0).all()
    assert set(out.data_vars) == set(batch.data_vars) | set(PROGRESS_FORCINGS)
    assert "year_progress_sin" not in batch  # the input dataset is not modified


def test_add_forcings_without_datetime_names_the_problem(batch: xr.Dataset) -> None:
    with pytest.raises(ValueError, match="datetime"):
        add_forcings(batch.drop_vars("datetime"), ["year_progress_sin"])
