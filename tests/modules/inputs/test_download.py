"""`download` through cdsapi's own client against a fake CDS on loopback, and `status`."""
from __future__ import annotations

import os
import threading
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from graphcast_contract.cycles import cycles_of_days
from graphcast_contract.errors import ExitCode
from graphcast_contract.local_service import free_port
from graphcast_contract.model_spec import global_grid
from modules.ifs_opendata import cli as ifs_cli
from modules.inputs import cli
from modules.inputs.era5_download import day_requests
from modules.inputs.status import cycle_status
from modules.storage import db
from tests.modules.inputs.fake_cds import FakeCds
from tests.modules.inputs.helpers import cds_axes, cds_netcdf, grib_message, run_loader

LEVELS = ["50", "100", "150", "200", "250", "300", "400", "500", "600", "700", "850", "925",
          "1000"]
NETCDF_NAMES = {"temperature": "t", "geopotential": "z", "u_component_of_wind": "u",
                "v_component_of_wind": "v", "vertical_velocity": "w", "specific_humidity": "q",
                "2m_temperature": "t2m", "mean_sea_level_pressure": "msl",
                "10m_u_component_of_wind": "u10", "10m_v_component_of_wind": "v10",
                "land_sea_mask": "lsm", "total_precipitation": "tp"}
GRIB_NAMES = dict(NETCDF_NAMES, **{"2m_temperature": "2t", "10m_u_component_of_wind": "10u",
                                   "10m_v_component_of_wind": "10v"})
TOKEN = "0123-test-token"


def test_day_requests_ask_for_exactly_what_the_cycles_need() -> None:
    pressure, single, precipitation = day_requests(date(2024, 3, 1))
    assert pressure.dataset == "reanalysis-era5-pressure-levels"
    assert pressure.request == {
        "product_type": ["reanalysis"],
        "variable": ["temperature", "geopotential", "u_component_of_wind",
                     "v_component_of_wind", "vertical_velocity", "specific_humidity"],
        "pressure_level": LEVELS, "year": ["2024"], "month": ["03"], "day": ["01"],
        "time": ["00:00", "06:00", "12:00", "18:00"],
        "data_format": "netcdf", "download_format": "unarchived"}
    assert single.dataset == precipitation.dataset == "reanalysis-era5-single-levels"
    assert single.request["variable"] == ["2m_temperature", "mean_sea_level_pressure",
                                          "10m_v_component_of_wind", "10m_u_component_of_wind",
                                          "geopotential", "land_sea_mask"]
    assert single.request["time"] == ["00:00", "06:00", "12:00", "18:00"]
    assert "pressure_level" not in single.request
    assert precipitation.request["variable"] == ["total_precipitation"]
    assert precipitation.request["time"] == [f"{h:02d}:00" for h in range(24)]
    assert [r.filename for r in day_requests(date(2024, 3, 1), "grib")] == [
        "era5_20240301_pressure_levels.grib", "era5_20240301_single_levels.grib",
        "era5_20240301_precipitation.grib"]


def _times(request: dict[str, Any]) -> list[str]:
    return [f"{y}-{m}-{d}T{t}" for y in request["year"] for m in request["month"]
            for d in request["day"] for t in request["time"]]


def _values(name: str, shape: tuple[int, ...]) -> np.ndarray:
    base = {"t": 250.0, "t2m": 280.0, "msl": 101_000.0, "z": 5_000.0, "lsm": 0.3,
            "tp": 1e-3, "q": 1e-3}.get(name, 1.0)
    return np.full(shape, base, np.float32)


def make_netcdf(tmp_path: Path):
    def make(dataset: str, request: dict[str, Any]) -> bytes:
        lat, lon = cds_axes(10.0)
        times = _times(request)
        levels = [int(level) for level in request.get("pressure_level", [])]
        shape = (len(times), len(levels), lat.size, lon.size) if levels else (
            len(times), lat.size, lon.size)
        names = [NETCDF_NAMES[v] for v in request["variable"]]
        path = cds_netcdf(tmp_path / f"served_{len(os.listdir(tmp_path))}.nc",
                          {name: _values(name, shape) for name in names}, times, levels or None)
        return path.read_bytes()
    return make


def make_grib(dataset: str, request: dict[str, Any]) -> bytes:
    lat, lon = cds_axes(10.0)
    messages = []
    for when in _times(request):
        for variable in request["variable"]:
            name = GRIB_NAMES[variable]
            for level in [int(x) for x in request.get("pressure_level", [])] or [0]:
                messages.append(grib_message(name, _values(name, (lat.size, lon.size)), when,
                                             level, accumulation_hours=int(name == "tp")))
    return b"".join(messages)


def _cds_env(url: str, token: str = TOKEN) -> dict[str, str]:
    """The loader's CDS settings, passed to its subprocess explicitly."""
    return {"CDSAPI_URL": url, "CDSAPI_KEY": token}


def test_download_loads_two_days_and_status_reports_the_cycles(
        clean_db: str, tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    with FakeCds(TOKEN, make_netcdf(served)) as cds:
        done = run_loader(clean_db, "download", "--date", "2022-01-02", "--date", "2022-01-01",
                          "--dir", tmp_path / "era5", "--grid-step", "10", **_cds_env(cds.url))
    assert done.returncode == ExitCode.OK, done.stderr
    assert [(d, r["day"]) for d, r in cds.submitted] == [
        ("reanalysis-era5-pressure-levels", ["01"]), ("reanalysis-era5-single-levels", ["01"]),
        ("reanalysis-era5-single-levels", ["01"]), ("reanalysis-era5-pressure-levels", ["02"]),
        ("reanalysis-era5-single-levels", ["02"]), ("reanalysis-era5-single-levels", ["02"])]
    assert sorted(p.name for p in (tmp_path / "era5").iterdir())[:3] == [
        "era5_20220101_precipitation.nc", "era5_20220101_pressure_levels.nc",
        "era5_20220101_single_levels.nc"]

    conn = db.connect(clean_db)
    with conn, conn.cursor() as cur:
        states = cycle_status(cur, global_grid(10.0), cycles_of_days(date(2022, 1, 3), 3))
    conn.close()
    # 2022-01-01T00Z lacks its 6-hour precipitation (19..23 UTC of 2021-12-31 are absent),
    # so the cycles that need it are incomplete; 2022-01-03T00Z has only its T-6h half
    assert [s.state for s in states] == (["incomplete"] * 2 + ["complete"] * 6
                                         + ["incomplete"] + ["absent"] * 3)
    assert states[0].missing == ("2021-12-31T18Z: all 83 fields",
                                 "2022-01-01T00Z: total_precipitation_6hr")
    assert states[1].missing == ("2022-01-01T00Z: total_precipitation_6hr",)
    assert states[8].missing == ("2022-01-03T00Z: all 83 fields",)

    done = run_loader(clean_db, "status", "--until", "2022-01-02", "--days", "1",
                      "--grid-step", "10")
    assert done.returncode == ExitCode.OK
    assert done.stdout.splitlines() == [f"2022-01-02T{h}:00Z  complete"
                                        for h in ("00", "06", "12", "18")]


@pytest.mark.parametrize("days", ["0", "-1", "1000000"])
@pytest.mark.parametrize("parser", [cli.build_parser, ifs_cli.build_parser])
def test_status_days_out_of_range_is_a_usage_error(capsys, parser, days: str) -> None:
    """0 listed nothing (exit 0); a million days overflowed the date arithmetic (traceback)."""
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(["status", "--days", days])
    assert exited.value.code == ExitCode.USAGE
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        f"argument --days: {days} is not from 1 to {cli.MAX_STATUS_DAYS}")


def test_status_reaching_before_year_1_is_a_usage_error(clean_db: str) -> None:
    done = run_loader(clean_db, "status", "--until", "0001-01-01", "--days", "2")
    assert (done.returncode, done.stdout) == (ExitCode.USAGE, "")
    assert len(done.stderr.splitlines()) == 1
    assert "the 2 day(s) up to 0001-01-01 begin before 0001-01-02" in done.stderr


def test_download_in_grib(clean_db: str, tmp_path: Path) -> None:
    with FakeCds(TOKEN, make_grib) as cds:
        done = run_loader(clean_db, "download", "--date", "2022-01-01", "--format", "grib",
                          "--dir", tmp_path, "--grid-step", "10", **_cds_env(cds.url))
    assert done.returncode == ExitCode.OK, done.stderr
    assert all(r["data_format"] == "grib" for _, r in cds.submitted)
    conn = db.connect(clean_db)
    with conn, conn.cursor() as cur:
        states = cycle_status(cur, global_grid(10.0), cycles_of_days(date(2022, 1, 1), 1))
    conn.close()
    assert [s.state for s in states] == ["incomplete", "incomplete", "complete", "complete"]
    assert states[1].missing == ("2022-01-01T00Z: total_precipitation_6hr",)


@pytest.mark.parametrize("fail_with, token, message", [
    (400, TOKEN, "the fake CDS refuses"),
    (None, "wrong-token", "401"),
])
def test_download_failures_exit_with_the_download_code(
        clean_db: str, tmp_path: Path,
        fail_with: int | None, token: str, message: str) -> None:
    with FakeCds(TOKEN, make_grib, fail_with=fail_with) as cds:
        done = run_loader(clean_db, "download", "--date", "2022-01-01", "--dir", tmp_path,
                          **_cds_env(cds.url, token))
    assert done.returncode == ExitCode.DOWNLOAD_FAILED
    assert "CDS download for 2022-01-01 failed" in done.stderr and message in done.stderr


def test_download_without_a_cds_key(clean_db: str, tmp_path: Path) -> None:
    done = run_loader(clean_db, "download", "--date", "2022-01-01", "--dir", tmp_path,
                      HOME=str(tmp_path), CDSAPI_RC=str(tmp_path / "absent.cdsapirc"))
    assert done.returncode == ExitCode.DOWNLOAD_FAILED
    assert "put your key in ~/.cdsapirc" in done.stderr


def test_a_cds_outage_gives_up_after_the_bounded_retries(
        clean_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing listens at CDSAPI_URL: exit 10 after CDS_RETRY_MAX tries CDS_SLEEP_MAX_S
    apart (small here), not cdsapi's 500 tries 120 s apart (~16.7 h of a daily cron job)."""
    monkeypatch.setattr(cli, "CDS_RETRY_MAX", 3)
    monkeypatch.setattr(cli, "CDS_SLEEP_MAX_S", 0.2)
    monkeypatch.setenv("DATABASE_URL", clean_db)
    monkeypatch.setenv("CDSAPI_URL", f"http://127.0.0.1:{free_port()}/api")
    monkeypatch.setenv("CDSAPI_KEY", "x")
    codes: list[int] = []
    command = threading.Thread(target=lambda: codes.append(cli.main(
        ["download", "--date", "2022-01-01", "--dir", str(tmp_path)])), daemon=True)
    command.start()
    command.join(timeout=30)  # without the bound it would still be retrying
    assert codes == [ExitCode.DOWNLOAD_FAILED]
    assert list(tmp_path.iterdir()) == []
