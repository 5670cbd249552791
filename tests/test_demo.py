"""The quick-start demo's offline path, end to end, in a copy of the project: synthetic ERA5,
random-weights checkpoint, the real loader, API service and batch job; then a re-run."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from modules import db

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _copy_project(dest: Path) -> Path:
    """The project's tracked and not-ignored files, copied to `dest`."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"],
                            cwd=PROJECT_ROOT, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = PROJECT_ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def _demo(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "scripts/demo.py", *args], cwd=project,
                          capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("git") is None or not (PROJECT_ROOT / ".git").exists():
        pytest.skip("the demo test copies the project's files with git")
    return _copy_project(tmp_path_factory.mktemp("demo") / "project")


def test_demo_stops_at_once_when_the_port_is_taken(project: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _demo(project, "--offline", "--port", str(port))
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"port {port} on 127.0.0.1 is taken" in result.stderr
    assert "--port N" in result.stderr
    assert not (project / "data").exists()


def _stored_predictions(project: Path) -> list[tuple]:
    conn = db.connect(db.embedded_url(project / ".pgdata"))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT forecast_time, count(*), count(DISTINCT site) FROM predictions"
                        " GROUP BY forecast_time ORDER BY forecast_time")
            by_time = cur.fetchall()
            cur.execute("SELECT count(*), count(*) FILTER (WHERE status = 'succeeded')"
                        " FROM forecast_runs")
            return by_time + cur.fetchall()
    finally:
        conn.close()


def test_offline_demo_end_to_end_and_rerun(project: Path) -> None:
    port = _free_port()
    first = _demo(project, "--offline", "--port", str(port))
    output = first.stdout + first.stderr
    assert first.returncode == 0, output[-4000:]
    check_rows = [line for line in first.stdout.splitlines()
                  if line.strip().startswith("2022-01-0") and line.split()[1] == "20"]
    assert [row.split()[0] for row in check_rows] == [
        "2022-01-01T12:00:00+00:00", "2022-01-01T18:00:00+00:00",
        "2022-01-02T00:00:00+00:00", "2022-01-02T06:00:00+00:00"]
    assert "OFFLINE DEMO" in first.stdout and "not\n the weather" in first.stdout
    assert "London" in first.stdout and "+24 h" in first.stdout
    assert "GraphCast API stopped" in first.stdout
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # the service is gone
    made = [project / "data" / "demo" / name for name in (
        "era5-synthetic-1.0deg-2022-01-01.nc", "params/GraphCast_small-random-weights.npz",
        "stats/mean_by_level.nc", "stats/stddev_by_level.nc", "stats/diffs_stddev_by_level.nc")]
    assert all(path.is_file() for path in made)
    stamps = [path.stat().st_mtime_ns for path in made]

    second = _demo(project, "--offline", "--port", str(port))
    assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
    assert "already made" in second.stdout
    assert [path.stat().st_mtime_ns for path in made] == stamps  # nothing made again
    *by_time, (runs, succeeded) = _stored_predictions(project)
    assert [(count, sites) for _, count, sites in by_time] == [(20, 20)] * 4
    assert runs == succeeded == 2
