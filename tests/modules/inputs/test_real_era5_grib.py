"""A real ERA5 GRIB sample: members 0 and 1 of `era5-levels-members.grib` from cfgrib's
source distribution (geopotential and temperature at 500 and 850 hPa, 3 deg grid, four
analysis times), stored in tests/data/cfgrib_sample/ (its README says how it was made).
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from graphcast_contract.model_spec import global_grid
from modules.inputs import store as era5_store
from modules.inputs.loader import load_file
from modules.inputs.sources import InvalidDataError
from tests.paths import DATA_DIR

SAMPLE = DATA_DIR / "cfgrib_sample" / "era5-levels-members-0-1.grib"


def test_ensemble_members_are_refused(conn) -> None:
    with pytest.raises(InvalidDataError, match="field 'z' is ensemble member 1; only the "
                                               "reanalysis"):
        load_file(conn, SAMPLE, grid_step=3.0)


def test_first_member_loads_as_cfgrib_reads_it(conn, tmp_path: Path) -> None:
    import eccodes

    single = tmp_path / "member0.grib"
    with open(SAMPLE, "rb") as source, open(single, "wb") as target:
        while (handle := eccodes.codes_grib_new_from_file(source)) is not None:
            if eccodes.codes_get(handle, "number") == 0:
                target.write(eccodes.codes_get_message(handle))
            eccodes.codes_release(handle)
    result = load_file(conn, single, grid_step=3.0)
    assert result.grid == global_grid(3.0)
    assert result.fields == 16 and len(result.valid_times) == 4

    ds = xr.open_dataset(single, engine="cfgrib", backend_kwargs={"indexpath": ""})
    when = datetime(2017, 1, 2, 12, tzinfo=timezone.utc)
    with conn, conn.cursor() as cur:
        got = era5_store.read_fields(cur, result.grid, when,
                                     [("geopotential", 850), ("temperature", 500)])
    for (variable, level), name in ((("geopotential", 850), "z"), (("temperature", 500), "t")):
        expected = ds[name].sel(time="2017-01-02T12:00", isobaricInhPa=level).values[::-1]
        assert got[(variable, level)].tobytes() == expected.astype(np.float32).tobytes()
