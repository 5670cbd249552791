"""The real ERA5 GRIB sample shipped in cfgrib's source distribution.

`era5-levels-members.grib` (geopotential and temperature at 500 and 850 hPa, 3 deg grid,
four analysis times, ten ensemble members) is fetched through the package index at test
time and cached; without access to the index these tests are skipped, and say so.
"""
from __future__ import annotations

import subprocess
import sys
import tarfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from modules.inputs import store as era5_store
from modules.inputs.loader import load_file
from modules.inputs.regrid import global_grid
from modules.inputs.sources import InvalidDataError

CFGRIB_VERSION = "0.9.15.1"
SAMPLE = "era5-levels-members.grib"


@pytest.fixture(scope="session")
def era5_sample(pytestconfig: pytest.Config) -> Path:
    cache = Path(pytestconfig.cache.mkdir("cfgrib-sample"))
    sample = cache / SAMPLE
    if not sample.exists():
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                               "--no-binary", ":all:", "-d", str(cache),
                               f"cfgrib=={CFGRIB_VERSION}"],
                              capture_output=True, text=True, timeout=300)
        archive = cache / f"cfgrib-{CFGRIB_VERSION}.tar.gz"
        if done.returncode or not archive.exists():
            pytest.skip(f"cfgrib's source distribution is not reachable: {done.stderr[-300:]}")
        with tarfile.open(archive) as tar:
            member = tar.getmember(f"cfgrib-{CFGRIB_VERSION}/{SAMPLE}")
            sample.write_bytes(tar.extractfile(member).read())
        archive.unlink()
    return sample


def test_ensemble_members_are_refused(conn, era5_sample: Path) -> None:
    with pytest.raises(InvalidDataError, match="field 'z' is ensemble member 1; only the "
                                               "reanalysis"):
        load_file(conn, era5_sample, grid_step=3.0)


def test_first_member_loads_as_cfgrib_reads_it(conn, era5_sample: Path, tmp_path: Path) -> None:
    import eccodes

    single = tmp_path / "member0.grib"
    with open(era5_sample, "rb") as source, open(single, "wb") as target:
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
