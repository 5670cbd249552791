"""The benchmark runs end to end on given files and ends with its JSON summary."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from graphcast_api.__main__ import main
from graphcast_api.engine import amx
from graphcast_api.tools import bench
from graphcast_api.tools.bench import inputs_source
from graphcast_contract.project import PROJECT_ROOT


@pytest.mark.slow  # the whole benchmark: graph build, compile and rollouts
def test_bench_on_reference_files(reference_dir: Path, stats_dir: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "--checkpoint", str(reference_dir / "params.npz"),
                 "--stats-dir", str(stats_dir),
                 "--example-batch", str(reference_dir / "example_batch.nc"),
                 "--precision", "fp32", "--device", "cpu", "--steps", "2", "--repeats", "1"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("precision", "graph_build_s", "first_call_s", "rollout_s_median",
                "peak_rss_gib", "matmul_fp32_gflops", "matmul_bf16_gflops", "achieved_gflops"):
        assert key in summary
    assert summary["precision"] == "fp32" and summary["steps"] == 2
    assert summary["rollout_s_median"] > 0 and summary["matmul_bf16_gflops"] > 0
    assert summary["rollout_gflop"] > 0
    assert summary["fused_kernel_time_share"] == 0  # fp32 never runs the AMX kernel


@pytest.mark.skipif(not amx.cpu_has_amx(), reason="this CPU has no AMX")
def test_bench_gives_the_amx_kernel_s_share_of_a_step(reference_dir: Path, stats_dir: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "--checkpoint", str(reference_dir / "params.npz"),
                 "--stats-dir", str(stats_dir),
                 "--example-batch", str(reference_dir / "example_batch.nc"),
                 "--precision", "bf16", "--products", "amx", "--steps", "1", "--repeats", "1",
                 "--no-product-rates"])
    assert code == 0
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["products"] == "amx" and 0 < summary["fused_kernel_time_share"] < 1
    assert "in the fused AMX edge kernel" in out


@pytest.mark.slow
def test_bench_operating_points_are_reported(reference_dir: Path, stats_dir: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """--edge-terms recomputed counts the recomputation's products; --no-memory-reuse and
    --whole-forecast are reported as the operating point they ran."""
    def summary(*options: str) -> dict:
        assert main(["bench", "--checkpoint", str(reference_dir / "params.npz"),
                     "--stats-dir", str(stats_dir),
                     "--example-batch", str(reference_dir / "example_batch.nc"),
                     "--precision", "fp32", "--device", "cpu", "--steps", "1", "--repeats", "1",
                     "--no-product-rates", *options]) == 0
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    stored, recomputed = summary("--edge-terms", "stored"), summary(
        "--edge-terms", "recomputed", "--no-memory-reuse", "--whole-forecast")
    assert (stored["edge_terms"], recomputed["edge_terms"]) == ("stored", "recomputed")
    assert recomputed["rollout_gflop"] > stored["rollout_gflop"]
    assert stored["memory_reuse"] and not recomputed["memory_reuse"]
    assert (stored["whole_forecast"], recomputed["whole_forecast"]) == (False, True)


def test_each_rollout_gets_inputs_of_its_own_to_hand_over(reference_dir: Path,
                                                          tmp_path: Path) -> None:
    """On the service's path every rollout reads a fresh, writable copy of the inputs (it
    rolls them in place, as the service rolls a request's decoded arrays); `forecast`, which
    writes nothing, gets the inputs themselves."""
    inputs = xr.load_dataset(reference_dir / "inputs.nc", decode_timedelta=True)
    assert inputs_source(inputs, tmp_path, whole=True)() is inputs
    source = inputs_source(inputs, tmp_path, whole=False)
    first, second = source(), source()
    xr.testing.assert_identical(first, inputs)
    first["temperature"].values[:] = 0.0  # as a rollout writes its handed-over inputs
    xr.testing.assert_identical(second, inputs)
    assert not np.shares_memory(second["temperature"].values, inputs["temperature"].values)


def test_commands_run_without_the_resource_module() -> None:
    """Windows has no `resource`: every command still loads, and bench's peak RSS says
    'unavailable' instead of failing."""
    script = ("import sys; sys.modules['resource'] = None\n"
              "from graphcast_api.__main__ import build_parser\n"
              "from graphcast_api.tools.bench import peak_rss_gib, rss_text\n"
              "build_parser()\n"
              "print(peak_rss_gib(), rss_text(peak_rss_gib()))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["None", "unavailable"]


@pytest.mark.parametrize("platform, unit", [("linux", 1024), ("darwin", 1)])
def test_peak_rss_reads_ru_maxrss_in_the_platform_unit(monkeypatch: pytest.MonkeyPatch,
                                                       platform: str, unit: int) -> None:
    """ru_maxrss is KiB on Linux, bytes on macOS."""
    import resource

    usage = type("Usage", (), {"ru_maxrss": 3 * 2 ** 30 // unit})
    monkeypatch.setattr(resource, "getrusage", lambda _: usage)
    monkeypatch.setattr(sys, "platform", platform)
    assert bench.peak_rss_gib() == 3.0
    assert bench.rss_text(3.0) == "3.00 GiB"
