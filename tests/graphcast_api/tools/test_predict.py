"""`python -m graphcast_api predict` (and its alias `graphcast_api.predict`) end to end on the
reference set."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from graphcast_api.__main__ import main
from graphcast_api.settings import DeviceUnavailable, load_service_settings
from graphcast_api.tools.predict import ToolError, make_forecaster
from graphcast_contract.errors import ExitCode
from graphcast_contract.project import PROJECT_ROOT
from tests.graphcast_api.engine.tolerance import check_fp32
from tests.subprocess_env import clean_environment


def _args(reference_dir: Path, stats_dir: Path, batch: Path, out: Path, *extra: str) -> list[str]:
    return ["predict", "--checkpoint", str(reference_dir / "params.npz"),
            "--stats-dir", str(stats_dir),
            "--example-batch", str(batch), "--out", str(out), "--precision", "fp32",
            "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def forecaster_like(reference_dir: Path, stats_dir: Path):
    """Only the config/stats bits the tolerance helper needs."""
    from graphcast_api.engine.checkpoint import load_checkpoint
    return load_checkpoint(reference_dir / "params.npz").task_config


def test_predict_writes_official_layout(reference_dir: Path, stats_dir: Path, tmp_path: Path,
                                        forecaster_like) -> None:
    out = tmp_path / "pred.nc"
    assert main(_args(reference_dir, stats_dir, reference_dir / "example_batch.nc",
                      out)) == 0
    prediction = xr.load_dataset(out, decode_timedelta=True)
    reference = xr.load_dataset(reference_dir / "predictions_fp32.nc", decode_timedelta=True)
    assert all(prediction[v].dtype == np.float32 for v in prediction.data_vars)
    check_fp32(prediction, reference, reference_dir, forecaster_like)


def test_predict_without_tisr_in_batch(reference_dir: Path, stats_dir: Path, tmp_path: Path,
                                       forecaster_like) -> None:
    batch = xr.load_dataset(reference_dir / "example_batch.nc", decode_timedelta=True)
    assert "toa_incident_solar_radiation" in batch
    path = tmp_path / "no_tisr.nc"
    batch.drop_vars("toa_incident_solar_radiation").to_netcdf(path)
    out = tmp_path / "pred.nc"
    assert main(_args(reference_dir, stats_dir, path, out)) == 0
    reference = xr.load_dataset(reference_dir / "predictions_fp32.nc", decode_timedelta=True)
    check_fp32(xr.load_dataset(out, decode_timedelta=True), reference, reference_dir,
               forecaster_like)


def test_predict_on_a_batch_without_batch_dimension(reference_dir: Path, stats_dir: Path,
                                                   tmp_path: Path, forecaster_like) -> None:
    """A batch saved after `.isel(batch=0)`: its `datetime` is (time,), broadcast to
    (batch, time) as the engine needs it."""
    batch = xr.load_dataset(reference_dir / "example_batch.nc", decode_timedelta=True)
    path = tmp_path / "unbatched.nc"
    batch.isel(batch=0).to_netcdf(path)
    out = tmp_path / "pred.nc"
    assert main(_args(reference_dir, stats_dir, path, out)) == 0
    reference = xr.load_dataset(reference_dir / "predictions_fp32.nc", decode_timedelta=True)
    check_fp32(xr.load_dataset(out, decode_timedelta=True), reference, reference_dir,
               forecaster_like)


def test_bad_inputs_give_one_line_and_exit_code(reference_dir: Path, stats_dir: Path,
                                                tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    batch = xr.load_dataset(reference_dir / "example_batch.nc", decode_timedelta=True)
    coarse = tmp_path / "coarse.nc"
    batch.isel(lat=slice(0, None, 2)).to_netcdf(coarse)
    twelve_hourly = tmp_path / "twelve_hourly.nc"
    hours = np.arange(batch.sizes["time"]) * np.timedelta64(12, "h")
    batch.assign_coords(time=hours, datetime=batch["datetime"][:, :1] + hours).to_netcdf(
        twelve_hourly)
    with_nan = tmp_path / "with_nan.nc"
    batch.assign(temperature=batch["temperature"].where(batch["lat"] < 80)).to_netcdf(with_nan)
    out = tmp_path / "pred.nc"
    cases = [
        (_args(reference_dir, stats_dir, coarse, out), ExitCode.NO_DATA, "lat grid"),
        (_args(reference_dir, stats_dir, twelve_hourly, out), ExitCode.NO_DATA,
         "input frames must be 6 h apart"),
        (_args(reference_dir, stats_dir, with_nan, out), ExitCode.NO_DATA,
         "input variable 'temperature' holds NaN or infinite values"),
        (_args(reference_dir, tmp_path, reference_dir / "example_batch.nc", out),
         ExitCode.MODEL_FAILED, "statistics file not found"),
        (_args(reference_dir, stats_dir, reference_dir / "example_batch.nc", out, "--steps",
               "9"), ExitCode.NO_DATA, "2 inputs + 9 target frames"),
    ]
    bad_checkpoint = _args(reference_dir, stats_dir, reference_dir / "example_batch.nc", out)
    bad_checkpoint[2] = str(reference_dir / "inputs.nc")
    cases.append((bad_checkpoint, ExitCode.MODEL_FAILED, "cannot read checkpoint"))
    np.save(tmp_path / "array.npy", np.zeros(3, np.float32))
    npy_checkpoint = bad_checkpoint.copy()
    npy_checkpoint[2] = str(tmp_path / "array.npy")
    cases.append((npy_checkpoint, ExitCode.MODEL_FAILED, "not the .npz archive"))
    unreadable = _args(reference_dir, stats_dir, tmp_path / "absent.nc", out)
    cases.append((unreadable, ExitCode.UNREADABLE_FILE, "cannot read example batch"))
    (tmp_path / "hello.nc").write_text("hello\n")  # xarray's message has lines of URLs
    not_netcdf = _args(reference_dir, stats_dir, tmp_path / "hello.nc", out)
    cases.append((not_netcdf, ExitCode.UNREADABLE_FILE, "cannot read example batch"))
    blocked = _args(reference_dir, stats_dir, reference_dir / "example_batch.nc",
                    tmp_path / "a-file" / "pred.nc")
    (tmp_path / "a-file").write_text("not a folder")
    cases.append((blocked, ExitCode.OUTPUT_FAILED, "cannot write"))
    for argv, code, message in cases:
        assert main(argv) == code
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines
    # The module alias, in a process of its own, is the same command.
    alias = subprocess.run([sys.executable, "-m", "graphcast_api.predict", *unreadable[1:]],
                           capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert alias.returncode == ExitCode.UNREADABLE_FILE
    lines = alias.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot read example batch" in lines[0], alias.stderr
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("error, code", [
    (DeviceUnavailable("device 'cuda' requested but no CUDA GPU is usable by this torch"),
     ExitCode.DEVICE_UNAVAILABLE),
    (ValueError("mesh2grid edges must come in threes per grid node"), None),
])
def test_only_an_unusable_device_is_exit_14(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                            error: Exception, code: ExitCode | None) -> None:
    """A device this host cannot use is DEVICE_UNAVAILABLE; any other error while the graphs
    or the network are built is a bug, left to end the command with its traceback (exit 1),
    not reported as a device problem."""
    import graphcast_api.engine

    def failing_forecaster(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(graphcast_api.engine, "Forecaster", failing_forecaster, raising=False)
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)  # restored after the test
    settings = load_service_settings(None, env_file=tmp_path / "absent.env")
    if code is None:
        with pytest.raises(ValueError, match="mesh2grid"):
            make_forecaster(None, None, "model", settings, tmp_path)
    else:
        with pytest.raises(ToolError, match="no CUDA GPU") as raised:
            make_forecaster(None, None, "model", settings, tmp_path)
        assert raised.value.code == code


@pytest.mark.parametrize("variable", ["GRAPHCAST_CACHE_DIR", "HOME"])
def test_an_unwritable_cache_folder_is_exit_11_with_one_line(reference_dir: Path,
                                                             stats_dir: Path, tmp_path: Path,
                                                             variable: str) -> None:
    """The engine's cache folder under a plain file, named, or the default one under a home
    folder that is a plain file (unwritable even for root): exit OUTPUT_FAILED, nothing
    written."""
    plain_file = tmp_path / "a-file"
    plain_file.write_text("not a folder")
    env = clean_environment()
    env.pop("GRAPHCAST_CACHE_DIR", None)
    env[variable] = str(plain_file / "cache" if variable == "GRAPHCAST_CACHE_DIR" else plain_file)
    out = tmp_path / "pred.nc"
    result = subprocess.run(
        [sys.executable, "-m", "graphcast_api",
         *_args(reference_dir, stats_dir, reference_dir / "example_batch.nc", out)],
        capture_output=True, text=True, cwd=PROJECT_ROOT, env=env, timeout=300)
    assert result.returncode == ExitCode.OUTPUT_FAILED, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cache folder {plain_file}/" in lines[0], result.stderr
    assert "cannot be created or written" in lines[0]
    assert not out.exists()
