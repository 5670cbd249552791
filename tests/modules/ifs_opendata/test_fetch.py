"""`python -m modules.ifs_opendata fetch` against a loopback open-data server."""
from __future__ import annotations

import json
import logging
import socket
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import requests

from graphcast_contract.errors import ExitCode
from graphcast_contract.local_service import free_port
from graphcast_contract.model_spec import Grid, global_grid
from graphcast_contract.sources import InputSource
from graphcast_contract.variables import PRESSURE_LEVELS_13, STANDARD_GRAVITY, STATIC_VARIABLES
from modules.ifs_opendata import download
from modules.ifs_opendata.cli import main
from modules.ifs_opendata.download import needed_names
from modules.inputs import store
from modules.inputs.era5_variables import cycle_fields
from tests.modules.ifs_opendata.opendata_server import (
    OpenDataServer,
    build_run,
    run_path,
    runs_of_cycle,
    synthetic_field,
)

STEP = 10.0
SHAPE = (19, 36)  # 10 deg, latitudes 90..-90 as published
AFTER_50R1 = datetime(2026, 5, 13, 6, tzinfo=timezone.utc)   # 00z and 06z under `oper`
BEFORE_50R1 = datetime(2026, 5, 11, 6, tzinfo=timezone.utc)  # 06z under `scda`
PREVIOUS = AFTER_50R1 - timedelta(hours=6)  # the run a fetch of AFTER_50R1 loads first


def fetch(server: OpenDataServer, cycle: datetime, cache: Path, *extra: str) -> int:
    return main(["fetch", "--cycle", cycle.isoformat(), "--base-url", server.url,
                 "--grid-step", str(STEP), "--cache-dir", str(cache), *extra])


def counts(conn) -> tuple[int, int]:
    with conn, conn.cursor() as cur:
        cur.execute("SELECT (SELECT count(*) FROM input_fields),"
                    " (SELECT count(*) FROM input_static_fields)")
        return cur.fetchone()


def stored(conn, when: datetime, key: tuple[str, int]) -> np.ndarray:
    with conn, conn.cursor() as cur:
        return store.read_fields(cur, global_grid(STEP), when, [key], InputSource.IFS_OPENDATA)[key]


@pytest.mark.parametrize("cycle", [AFTER_50R1, BEFORE_50R1], ids=["oper", "scda"])
def test_fetch_stores_the_cycle_converted_and_flipped(conn, tmp_path: Path, cycle) -> None:
    runs = runs_of_cycle(cycle, SHAPE)
    with OpenDataServer(runs) as server:
        assert fetch(server, cycle, tmp_path) == ExitCode.OK
    assert counts(conn) == (2 * 82, 2)
    previous = cycle - timedelta(hours=6)
    # gh x g -> geopotential, latitudes flipped to ascending, within 24-bit packing
    z500 = stored(conn, previous, ("geopotential", 500))
    expected = synthetic_field("gh", 500, previous, SHAPE)[::-1] * STANDARD_GRAVITY
    np.testing.assert_allclose(z500, expected, rtol=1e-6)
    t2m = stored(conn, cycle, ("2m_temperature", 0))
    np.testing.assert_allclose(t2m, synthetic_field("2t", 0, cycle, SHAPE)[::-1], atol=1e-3)
    # each level is its own field, in order
    for level in PRESSURE_LEVELS_13:
        np.testing.assert_allclose(stored(conn, cycle, ("temperature", level)),
                                   synthetic_field("t", level, cycle, SHAPE)[::-1], atol=1e-3)
    # only the needed fields' bytes were requested: never `sp`, `tcwv`
    needed = {(off, off + length - 1) for run in runs.values()
              for key, (off, length) in run.entries.items()
              if key in needed_names() or key in ("z", "lsm")}
    assert {(first, last) for _, first, last in server.ranges} <= needed
    assert len(server.ranges) == 2 * 82 + 2
    with conn, conn.cursor() as cur:
        assert store.latest_complete_cycle(cur, InputSource.IFS_OPENDATA, global_grid(STEP),
                                           cycle_fields(InputSource.IFS_OPENDATA),
                                           STATIC_VARIABLES) == cycle
        assert store.latest_complete_cycle(cur, InputSource.ERA5, global_grid(STEP),
                                           cycle_fields(InputSource.ERA5), STATIC_VARIABLES) is None


def test_a_cached_cycle_loads_again_without_the_network(conn, tmp_path: Path) -> None:
    with OpenDataServer(runs_of_cycle(AFTER_50R1, SHAPE)) as server:
        assert fetch(server, AFTER_50R1, tmp_path) == ExitCode.OK
        url = server.url
    with conn, conn.cursor() as cur:
        cur.execute("TRUNCATE input_fields, input_static_fields")
    assert main(["fetch", "--cycle", AFTER_50R1.isoformat(), "--base-url", url, "--grid-step",
                 str(STEP), "--cache-dir", str(tmp_path)]) == ExitCode.OK
    assert counts(conn) == (2 * 82, 2)


def test_an_interrupted_download_resumes(conn, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download, "CHUNK_BYTES", 256)  # these fields are ~2 kB, not ~1 MB
    with OpenDataServer(runs_of_cycle(AFTER_50R1, SHAPE)) as server:
        server.cut_run_once(AFTER_50R1)
        assert fetch(server, AFTER_50R1, tmp_path) == ExitCode.DOWNLOAD_FAILED
        assert counts(conn) == (0, 0)
        cut = [r for r in server.ranges if "06z" in r[0]][0]
        server.ranges.clear()
        assert fetch(server, AFTER_50R1, tmp_path) == ExitCode.OK
    resumed = [r for r in server.ranges if "06z" in r[0]][0]
    assert resumed[2] == cut[2] and cut[1] < resumed[1] < cut[2]  # the rest of that field
    assert not [r for r in server.ranges if "00z" in r[0]]  # the cached run is not fetched
    assert counts(conn) == (2 * 82, 2)


def test_a_corrupt_cached_field_is_downloaded_again(conn, tmp_path: Path, caplog,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached field of the right size holding zeros (what a power loss after an unflushed
    rename leaves) is deleted and fetched once more, alone, and flushed before its rename."""
    runs = runs_of_cycle(AFTER_50R1, SHAPE)
    with OpenDataServer(runs) as server:
        assert fetch(server, AFTER_50R1, tmp_path) == ExitCode.OK
        field = tmp_path / f"{PREVIOUS:%Y%m%d%H}" / "t-850.grib2"
        field.write_bytes(bytes(field.stat().st_size))
        server.ranges.clear()
        flushed: list[str] = []
        monkeypatch.setattr(download, "fsync_file", lambda path: flushed.append(path.name))
        with caplog.at_level(logging.WARNING):
            assert fetch(server, AFTER_50R1, tmp_path) == ExitCode.OK
    offset, length = runs[PREVIOUS].entries["t@850"]
    assert server.ranges == [(run_path(PREVIOUS), offset, offset + length - 1)]
    assert flushed == ["t-850.grib2.download"]
    assert any("cached field unusable" in r.getMessage() and "no GRIB messages" in r.getMessage()
               for r in caplog.records)
    assert counts(conn) == (2 * 82, 2)


def test_a_field_that_is_not_the_one_expected_fails_after_one_download(
        conn, tmp_path: Path, caplog) -> None:
    """The server answers with another field's bytes: one request, exit 3, nothing stored
    (only a cached file is given a second download)."""
    runs = runs_of_cycle(AFTER_50R1, SHAPE)
    lines = [json.loads(line) for line in runs[PREVIOUS].index.splitlines()]
    msl = next(line for line in lines if line["param"] == "msl")  # 2t's entry points at it
    for line in lines:
        if line["param"] == "2t":
            line["_offset"], line["_length"] = msl["_offset"], msl["_length"]
    runs[PREVIOUS].index = "\n".join(json.dumps(line) for line in lines) + "\n"
    with OpenDataServer(runs) as server, caplog.at_level(logging.ERROR):
        assert fetch(server, AFTER_50R1, tmp_path) == ExitCode.NO_DATA
    assert len(server.ranges) == 1
    errors = error_lines(caplog)
    assert len(errors) == 1 and "expected 2t" in errors[0], errors
    assert counts(conn) == (0, 0)


@pytest.mark.parametrize("problem", ["missing field", "truncated file", "404"])
def test_bad_runs_fail_with_one_line_and_write_nothing(conn, tmp_path: Path, caplog,
                                                        problem: str) -> None:
    runs = runs_of_cycle(AFTER_50R1, SHAPE)
    if problem == "missing field":
        runs[AFTER_50R1] = build_run(AFTER_50R1, SHAPE, drop=("q@700",))
    if problem == "404":
        del runs[AFTER_50R1]
    with OpenDataServer(runs) as server, caplog.at_level(logging.ERROR):
        if problem == "truncated file":
            server.truncate_run(AFTER_50R1, len(runs[AFTER_50R1].data) - 100)
        code = fetch(server, AFTER_50R1, tmp_path)
    expected = {"missing field": (ExitCode.NO_DATA, "has no q@700"),
                "truncated file": (ExitCode.DOWNLOAD_FAILED, "incomplete download"),
                "404": (ExitCode.DOWNLOAD_FAILED, "404 not found")}[problem]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert code == expected[0]
    assert len(errors) == 1 and expected[1] in errors[0] and "\n" not in errors[0]
    assert counts(conn) == (0, 0)


@pytest.mark.parametrize("status", [404, 500])
def test_a_data_file_answering_an_http_error_is_reported_with_its_status(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: int) -> None:
    monkeypatch.setattr(download, "RETRIES", 1)  # a 500 is retried, each after 1 s
    with OpenDataServer(runs_of_cycle(AFTER_50R1, SHAPE)) as server:
        server.fail_run_data(AFTER_50R1, status)
        downloader = download.RunDownloader(server.url, tmp_path)
        with pytest.raises(download.DownloadError) as failure:
            downloader.fetch(AFTER_50R1, ["2t"])
    assert str(failure.value) == f"{downloader.data_url(AFTER_50R1)} (2t): HTTP {status}"


def test_missing_statics_come_from_era5_in_the_store(conn, tmp_path: Path, caplog) -> None:
    runs = runs_of_cycle(AFTER_50R1, SHAPE, statics=False)
    fine, coarser = global_grid(5.0), global_grid(STEP)  # the finest grid is the one used

    def era5(grid: Grid, mask: float, height: float) -> dict[str, np.ndarray]:
        return {name: np.full(grid.shape, mask if name == "land_sea_mask" else height,
                              np.float32) for name in STATIC_VARIABLES}

    with OpenDataServer(runs) as server:
        assert fetch(server, AFTER_50R1, tmp_path) == ExitCode.NO_DATA  # neither: an error
        assert counts(conn) == (0, 0)
        with conn, conn.cursor() as cur:
            store.write_static(cur, fine, era5(fine, 0.25, 900.0), InputSource.ERA5)
            store.write_static(cur, coarser, era5(coarser, 0.75, 100.0), InputSource.ERA5)
        with caplog.at_level(logging.WARNING):
            assert fetch(server, AFTER_50R1, tmp_path) == ExitCode.OK
    assert any("using ERA5's static fields" in r.getMessage() for r in caplog.records)
    with conn, conn.cursor() as cur:
        statics = store.read_static(cur, global_grid(STEP), STATIC_VARIABLES,
                                    InputSource.IFS_OPENDATA)
    np.testing.assert_allclose(statics["land_sea_mask"], 0.25, rtol=1e-6)
    np.testing.assert_allclose(statics["geopotential_at_surface"], 900.0, rtol=1e-6)


def test_latest_against_a_silent_server_ends_with_exit_10(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    """A server that accepts connections and never answers: the client's probes of the
    published runs time out (they have no timeout of their own) instead of hanging."""
    monkeypatch.setattr(download, "TIMEOUT_S", 0.2)
    monkeypatch.setattr(download, "RETRIES", 1)
    codes: list[int] = []
    with socket.socket() as silent, caplog.at_level(logging.ERROR):
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections complete in the backlog; none is ever answered
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        probe = threading.Thread(target=lambda: codes.append(main(
            ["fetch", "--cycle", "latest", "--base-url", url, "--cache-dir", str(tmp_path)])),
            daemon=True)
        probe.start()
        probe.join(timeout=20)
    assert codes == [ExitCode.DOWNLOAD_FAILED]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "unreachable" in errors[0]


def test_latest_with_nothing_listening_is_a_download_failure(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.ERROR):
        code = main(["fetch", "--cycle", "latest", "--base-url",
                     f"http://127.0.0.1:{free_port()}", "--cache-dir", str(tmp_path)])
    assert code == ExitCode.DOWNLOAD_FAILED
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "unreachable" in errors[0] and "\n" not in errors[0]


def error_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("index, bad_line", [
    ("<!DOCTYPE html>\n<html><body>Service unavailable</body></html>\n", "<!DOCTYPE html>"),
    ('{"levtype": "sfc", "param": "2t", "step": "0", "_length": 10}\n', '"param": "2t"'),
    ('[1, 2, 3]\n', "[1, 2, 3]"),
    ("\n", None),
], ids=["html page", "no _offset", "not an object", "empty"])
def test_an_index_that_is_no_index_fails_with_one_line_and_stores_nothing(
        conn, tmp_path: Path, caplog, index: str, bad_line: str | None) -> None:
    runs = runs_of_cycle(AFTER_50R1, SHAPE)
    runs[PREVIOUS].index = index  # served with HTTP 200; the first run fetched
    with OpenDataServer(runs) as server, caplog.at_level(logging.ERROR):
        code = fetch(server, AFTER_50R1, tmp_path)
    errors = error_lines(caplog)
    assert code == ExitCode.DOWNLOAD_FAILED
    assert len(errors) == 1 and "\n" not in errors[0], errors
    assert f"{run_path(PREVIOUS)}.index: " in errors[0]  # the URL
    if bad_line is None:
        assert "the index is empty" in errors[0]
    else:
        assert "line 1 is not an index entry" in errors[0] and bad_line in errors[0]
    assert counts(conn) == (0, 0)
    assert not (tmp_path / f"{PREVIOUS:%Y%m%d%H}" / "index.jsonl").exists()  # not cached


@pytest.mark.parametrize("declared", [True, False], ids=["Content-Length", "streamed"])
def test_an_oversized_index_is_refused_unread(conn, tmp_path: Path, caplog,
                                              monkeypatch: pytest.MonkeyPatch,
                                              declared: bool) -> None:
    """An index over MAX_INDEX_BYTES (here 4 KB; the test run's is ~18 KB) is refused from
    its Content-Length, or once that much has arrived without one: exit 10, one line."""
    monkeypatch.setattr(download, "MAX_INDEX_BYTES", 4096)
    with OpenDataServer(runs_of_cycle(AFTER_50R1, SHAPE)) as server, \
            caplog.at_level(logging.ERROR):
        if not declared:
            server.unsized.add(f"{run_path(PREVIOUS)}.index")
        code = fetch(server, AFTER_50R1, tmp_path)
    errors = error_lines(caplog)
    assert code == ExitCode.DOWNLOAD_FAILED
    assert len(errors) == 1 and "\n" not in errors[0], errors
    assert f"{run_path(PREVIOUS)}.index: more than 4,096 bytes" in errors[0]
    assert counts(conn) == (0, 0)
    assert not (tmp_path / f"{PREVIOUS:%Y%m%d%H}" / "index.jsonl").exists()


@pytest.mark.parametrize("where", ["--cache-dir", "IFS_OPENDATA_CACHE_DIR"])
def test_a_cache_folder_that_cannot_be_written_is_one_line_exit_11(
        conn, tmp_path: Path, caplog, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """The cache folder under a plain file (a read-only mode would not stop root)."""
    (tmp_path / "a-file").write_text("not a folder")
    cache = tmp_path / "a-file" / "cache"
    with OpenDataServer(runs_of_cycle(AFTER_50R1, SHAPE)) as server, \
            caplog.at_level(logging.ERROR):
        if where == "--cache-dir":
            code = fetch(server, AFTER_50R1, cache)
        else:
            monkeypatch.setenv("IFS_OPENDATA_CACHE_DIR", str(cache))
            code = main(["fetch", "--cycle", AFTER_50R1.isoformat(), "--base-url", server.url,
                         "--grid-step", str(STEP)])
    errors = error_lines(caplog)
    assert code == ExitCode.OUTPUT_FAILED
    assert len(errors) == 1 and "\n" not in errors[0], errors
    assert "cannot write the open-data cache folder" in errors[0] and str(cache) in errors[0]
    assert counts(conn) == (0, 0)


def test_a_field_file_that_cannot_be_written_is_exit_11(conn, tmp_path: Path, caplog) -> None:
    """Writing a field's download fails (its file is a link into a folder that is gone):
    the same error as the index's cache, not an 'incomplete download'."""
    folder = tmp_path / f"{PREVIOUS:%Y%m%d%H}"
    folder.mkdir()
    (folder / "2t.grib2.download").symlink_to(tmp_path / "gone" / "2t")
    with OpenDataServer(runs_of_cycle(AFTER_50R1, SHAPE)) as server, \
            caplog.at_level(logging.ERROR):
        code = fetch(server, AFTER_50R1, tmp_path)
    errors = error_lines(caplog)
    assert code == ExitCode.OUTPUT_FAILED
    assert len(errors) == 1 and "cannot write the open-data cache folder" in errors[0], errors
    assert counts(conn) == (0, 0)


@pytest.mark.parametrize("damage", ["", "{\"_offs"], ids=["zero-length", "cut short"])
def test_an_empty_or_damaged_cached_index_is_downloaded_again(tmp_path: Path,
                                                              damage: str) -> None:
    with OpenDataServer(runs_of_cycle(AFTER_50R1, SHAPE)) as server:
        downloader = download.RunDownloader(server.url, tmp_path)
        downloader.fetch(AFTER_50R1, ["2t"])
        cached = downloader.run_dir(AFTER_50R1) / "index.jsonl"
        published = cached.read_text()
        cached.write_text(damage)  # as a crash before the bytes reached the disk leaves it
        assert downloader.fetch(AFTER_50R1, ["2t", "msl"])[1].name == "msl.grib2"
    assert cached.read_text() == published


@pytest.mark.parametrize("url", ["http://10.255.255.1", "http://opendata.invalid",
                                 "ftp://127.0.0.1"])
def test_a_base_url_off_policy_is_refused_before_any_request(
        tmp_path: Path, caplog, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """Plain http off this machine (10.255.255.1 never answers) or another scheme: exit 2
    at once, no request sent."""
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a request was sent")

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", no_network)
    with caplog.at_level(logging.ERROR):
        code = main(["fetch", "--cycle", AFTER_50R1.isoformat(), "--base-url", url,
                     "--cache-dir", str(tmp_path)])
    assert code == ExitCode.USAGE
    errors = error_lines(caplog)
    assert len(errors) == 1, errors
    assert f"must be an https:// address (plain http:// only to a loopback host): {url}" \
        in errors[0]
    assert list(tmp_path.iterdir()) == []


def test_redirects_are_followed_only_within_the_url_policy(conn, tmp_path: Path,
                                                           caplog) -> None:
    """A redirect of the index to plain http off this machine is refused, never fetched
    (.invalid never resolves); one to the loopback server itself is followed."""
    index = f"{run_path(PREVIOUS)}.index"
    with OpenDataServer(runs_of_cycle(AFTER_50R1, SHAPE)) as server:
        server.redirects[index] = f"http://opendata.invalid{index}"
        with caplog.at_level(logging.ERROR):
            assert fetch(server, AFTER_50R1, tmp_path) == ExitCode.DOWNLOAD_FAILED
        errors = error_lines(caplog)
        assert len(errors) == 1 and "\n" not in errors[0], errors
        assert f"redirects to http://opendata.invalid{index}, refused" in errors[0]
        assert counts(conn) == (0, 0)
        server.redirects[index] = f"{server.url}/mirror{index}"
        entries = download.RunDownloader(server.url, tmp_path).index(PREVIOUS)
    assert set(needed_names()) <= set(entries)
