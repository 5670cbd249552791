"""The quick-start demo's offline path, end to end, in a copy of the project: synthetic ERA5,
random-weights checkpoint, the real loader, API service and batch job; then a re-run.
The demo gets a clean environment (tests/subprocess_env.py): no DATABASE_URL, token or
`.env` of the developer's."""
from __future__ import annotations

import functools
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from graphcast_api.tools import weights
from graphcast_contract.errors import ExitCode
from graphcast_contract.local_service import free_port
from graphcast_contract.project import PROJECT_ROOT
from modules.storage import db
from tests.embedded_pg import embedded_server_url
from tests.paths import private_folder
from tests.subprocess_env import clean_environment

REFERENCE = PROJECT_ROOT / "tests" / "data" / "graphcast_reference"


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


def _demo(project: Path, *args: str, env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "scripts/demo.py", *args], cwd=project,
                          env=clean_environment(**_on_path(project), **(env or {})),
                          capture_output=True, text=True, timeout=1200)


def _on_path(*folders: Path) -> dict[str, str]:
    """PYTHONPATH naming `folders`: the copy's packages win over the installed working copy."""
    return {"PYTHONPATH": os.pathsep.join(map(str, folders))}


@pytest.fixture(scope="module")
def project() -> Iterator[Path]:
    """A copy of the project, outside pytest's temp root: the demo's embedded server keeps
    its data in the copy's .pgdata/ (tests/embedded_pg.py)."""
    if shutil.which("git") is None or not (PROJECT_ROOT / ".git").exists():
        pytest.skip("the demo test copies the project's files with git")
    parent = private_folder("demo")
    yield _copy_project(parent / "project")
    shutil.rmtree(parent, ignore_errors=True)


def test_demo_stops_at_once_when_the_port_is_taken(project: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _demo(project, "--offline", "--port", str(port))
    assert result.returncode == ExitCode.CANNOT_LISTEN, result.stdout + result.stderr
    assert f"port {port} on 127.0.0.1 is taken" in result.stderr
    assert "--port N" in result.stderr
    assert not (project / "data").exists()


@pytest.mark.parametrize("port", ["0", "70000", "-1"])
def test_a_port_out_of_range_is_a_usage_error(project: Path, port: str) -> None:
    result = _demo(project, "--offline", "--port", port)  # 70000 was an OverflowError
    assert result.returncode == ExitCode.USAGE, result.stdout + result.stderr
    assert f"--port must be 1 to 65535, not {port}" in result.stderr
    assert "Traceback" not in result.stderr


def _stored_predictions(project: Path) -> list[tuple]:
    with embedded_server_url(project / ".pgdata") as url:
        conn = db.connect(url)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT forecast_time, count(*), count(DISTINCT site)"
                            " FROM predictions GROUP BY forecast_time ORDER BY forecast_time")
                by_time = cur.fetchall()
                cur.execute("SELECT count(*), count(*) FILTER (WHERE status = 'succeeded')"
                            " FROM forecast_runs")
                return by_time + cur.fetchall()
        finally:
            conn.close()


@pytest.mark.slow  # minutes: builds GraphCast_small graphs and compiles the network
def test_offline_demo_end_to_end_and_rerun(project: Path) -> None:
    port = free_port()  # a malformed DATABASE_URL is ignored too (it stopped the row check)
    first = _demo(project, "--offline", "--port", str(port),
                  env={"DATABASE_URL": "host=db.example password=s3cret sslmode"})
    output = first.stdout + first.stderr
    assert first.returncode == 0, output[-4000:]
    check_rows = [line.split(" | ")[:2] for line in first.stdout.splitlines()
                  if line.startswith("2022-01-0") and " | " in line]  # python -m modules.query
    assert check_rows == [["2022-01-01 12:00:00+00:00", "20"], ["2022-01-01 18:00:00+00:00", "20"],
                          ["2022-01-02 00:00:00+00:00", "20"], ["2022-01-02 06:00:00+00:00", "20"]]
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

    # The re-run forecasts +6 h only (a documented setting) to keep the test short: its 20
    # rows have the same keys as the first run's +6 h rows and must replace them.
    second = _demo(project, "--offline", "--port", str(port), env={"FORECAST_LEAD_HOURS": "6"})
    assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
    assert "already made" in second.stdout
    assert [path.stat().st_mtime_ns for path in made] == stamps  # nothing made again
    *by_time, (runs, succeeded) = _stored_predictions(project)
    assert [(count, sites) for _, count, sites in by_time] == [(20, 20)] * 4
    assert runs == succeeded == 2


class _Bucket(http.server.SimpleHTTPRequestHandler):
    """Serves a folder in the layout of DeepMind's bucket; counts file downloads."""

    downloads: list[str] = []

    def do_GET(self) -> None:
        _Bucket.downloads.append(self.path)
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def bucket(tmp_path: Path) -> Iterator[str]:
    """A loopback server with small stand-ins for the official files (the 10-degree reference
    checkpoint under GraphCast_small's name, the reference statistics, a small dataset)."""
    root = tmp_path / "bucket"
    checkpoint = root / weights.checkpoint_path("small")
    checkpoint.parent.mkdir(parents=True)
    shutil.copyfile(REFERENCE / "params.npz", checkpoint)
    for path in weights.STATS_PATHS:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REFERENCE / f"stats_{Path(path).name}", root / path)
    example = root / weights.example_dataset_path(4)
    example.parent.mkdir(parents=True)
    shutil.copyfile(REFERENCE / "example_batch.nc", example)
    handler = functools.partial(_Bucket, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Bucket.downloads = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_online_mode_fetches_the_official_files_once(project: Path, bucket: str) -> None:
    """When the bucket answers, the demo fetches checkpoint, statistics and the ERA5 example
    into weights/; a second time it neither asks the bucket nor downloads anything."""
    code = ("import sys, demo; "
            "mode = demo.choose_mode(False, sys.argv[1]); print('MODE', mode); "
            "files = demo.prepare_online(demo.child_env('http://127.0.0.1:1'), sys.argv[1]); "
            "print('FILES', files.checkpoint.is_file(), files.era5.is_file(), "
            "sorted(p.name for p in files.stats_dir.iterdir()))")
    env = clean_environment(**_on_path(project, project / "scripts"))
    first = subprocess.run([sys.executable, "-c", code, bucket], cwd=project, env=env,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "MODE online" in first.stdout and f"{bucket} answers" in first.stdout
    assert ("FILES True True ['diffs_stddev_by_level.nc', 'mean_by_level.nc', "
            "'stddev_by_level.nc']") in first.stdout
    assert len(_Bucket.downloads) == 5
    second = subprocess.run([sys.executable, "-c", code, bucket], cwd=project, env=env,
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "already in weights/" in second.stdout and "already present" in second.stderr
    assert len(_Bucket.downloads) == 5  # nothing fetched again


def test_live_demo_without_internet_says_so_in_one_line(project: Path) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}"
    result = _demo(project, "--live", "--port", str(free_port()), "--base-url", unreachable,
                   "--opendata-url", unreachable)
    assert result.returncode == ExitCode.DOWNLOAD_FAILED, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        "demo failed: the live demo needs the internet: "
        f"{weights.object_url(unreachable, weights.checkpoint_path('operational'))} "
        "does not answer"]
    assert not (project / "weights" / weights.checkpoint_path("operational")).exists()
