"""`python -m graphcast_api serve`: option resolution, bad options, a checkpoint that fails."""
from __future__ import annotations

import argparse
import logging
import re
import signal
import socket
import subprocess
from logging.handlers import RotatingFileHandler
from pathlib import Path

import pytest
import requests

from graphcast_api import settings as settings_module
from graphcast_api.service import serve
from graphcast_api.settings import SettingsError
from graphcast_contract.errors import ExitCode
from graphcast_contract.log_files import LOG_FILE_BYTES, LOG_FILE_COUNT
from tests.graphcast_api.service.helpers import REFERENCE_DIR, serve_command

NO_OPTIONS = argparse.Namespace()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No GRAPHCAST_* variables; the `.env` read is tmp_path/.env (ENV_FILE), empty at first."""
    for variable, _ in settings_module.ENV.values():
        monkeypatch.delenv(variable, raising=False)
    (tmp_path / ".env").touch()
    monkeypatch.setenv("ENV_FILE", str(tmp_path / ".env"))
    return tmp_path


def test_defaults_bind_loopback_and_dotenv_is_read(clean_env: Path, stats_dir: Path) -> None:
    (clean_env / ".env").write_text(
        f"GRAPHCAST_API_CHECKPOINT={REFERENCE_DIR / 'params.npz'}\n"
        f"GRAPHCAST_API_STATS_DIR={stats_dir}\nGRAPHCAST_API_TOKEN=abc\n")
    settings = serve.resolve_settings(NO_OPTIONS)
    assert (settings.host, settings.port) == ("127.0.0.1", 8001)
    assert settings.checkpoint == REFERENCE_DIR / "params.npz"
    assert settings.token == "abc"
    assert settings.max_body_bytes is None  # sized from the model once loaded
    options = argparse.Namespace(port="9000", max_body_mb="2", host="0.0.0.0")
    settings = serve.resolve_settings(options)  # the command line wins
    assert (settings.host, settings.port, settings.max_body_bytes) == (
        "0.0.0.0", 9000, 2 * 1024**2)


@pytest.mark.parametrize("options, message", [
    ({}, "--checkpoint (or GRAPHCAST_API_CHECKPOINT) is required"),
    ({"port": "eighty"}, "--port must be a whole number from 1 to 65535"),
    ({"queue_wait_s": "0"}, "--queue-wait-s must be a positive number"),
])
def test_bad_options_are_named(clean_env: Path, stats_dir: Path, options: dict,
                               message: str) -> None:
    complete = {"checkpoint": str(REFERENCE_DIR / "params.npz"), "stats_dir": str(stats_dir)}
    args = argparse.Namespace(**({**complete, **options} if options else {}))
    with pytest.raises(SettingsError, match=re.escape(message)):
        serve.resolve_settings(args)


@pytest.mark.parametrize("options, env, message", [
    (["--port", "70000"], {}, "--port must be a whole number from 1 to 65535, got '70000'"),
    (["--port", "0.5"], {}, "--port must be a whole number from 1 to 65535, got '0.5'"),
    (["--port", "8001.9"], {}, "--port must be a whole number from 1 to 65535, got '8001.9'"),
    (["--port", "inf"], {}, "--port must be a whole number from 1 to 65535, got 'inf'"),
    (["--host", "localhost", "--port", "70000"], {}, "--port must be a whole number"),
    ([], {"GRAPHCAST_API_MAX_BODY_MB": "inf"}, "--max-body-mb must be a positive number "
                                               "up to 1048576, got 'inf'"),
    ([], {"GRAPHCAST_API_MAX_BODY_MB": "1e303"}, "--max-body-mb must be a positive number "
                                                 "up to 1048576, got '1e303'"),
    (["--queue-wait-s", "inf"], {}, "--queue-wait-s must be a positive number, got 'inf'"),
    (["--body-timeout-s", "nan"], {}, "--body-timeout-s must be a positive number, got 'nan'"),
    (["--device", "gpu"], {}, "--device (or GRAPHCAST_API_DEVICE) must be cpu, cuda or cuda:N, "
                              "got 'gpu'"),
])
def test_bad_values_exit_2_with_one_line(stats_dir: Path, options: list[str],
                                          env: dict[str, str], message: str) -> None:
    args = ["--checkpoint", str(REFERENCE_DIR / "params.npz"), "--stats-dir", str(stats_dir),
            *options]  # after serve_command's own --port: the last one counts
    with serve_command(args, env=env, wait=False) as (_, process):
        output, _ = process.communicate(timeout=60)
    assert process.returncode == ExitCode.USAGE, output
    assert len(output.splitlines()) == 1 and message in output, output


def test_a_dotenv_that_is_not_utf8_exits_2_with_one_line(stats_dir: Path,
                                                         tmp_path: Path) -> None:
    """A `.env` saved as UTF-16 (Notepad's "Unicode") crashed `serve` with a traceback; the
    job reads the same file (tests/modules/test_cycles_and_config.py)."""
    env_file = tmp_path / ".env"
    env_file.write_bytes(b"\xff\xfeG\x00R\x00")
    args = ["--checkpoint", str(REFERENCE_DIR / "params.npz"), "--stats-dir", str(stats_dir)]
    with serve_command(args, env={"ENV_FILE": str(env_file)}, wait=False) as (_, process):
        output, _ = process.communicate(timeout=60)
    assert process.returncode == ExitCode.USAGE, output
    assert len(output.splitlines()) == 1, output
    assert f"{env_file}:1: byte 0xFF is not UTF-8 text; save the file as UTF-8" in output


def test_an_unreadable_dotenv_is_named(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.mkdir()  # unreadable as a file, also for root (a chmod 0 file is not)
    with pytest.raises(SettingsError, match=f"^{re.escape(str(env_file))}: not readable: "):
        settings_module.load_service_settings(env_file=env_file)


@pytest.mark.parametrize("absent", ["checkpoint", "stats"])
def test_an_absent_checkpoint_or_statistics_file_exits_12_with_one_line(
        stats_dir: Path, tmp_path: Path, absent: str) -> None:
    """Named but not there: exit MODEL_FAILED, as `predict` gives, not 2 (which is for an
    option not given at all)."""
    checkpoint = tmp_path / "nowhere.npz" if absent == "checkpoint" else (
        REFERENCE_DIR / "params.npz")
    folder = tmp_path if absent == "stats" else stats_dir
    with serve_command(["--checkpoint", str(checkpoint), "--stats-dir", str(folder)],
                       wait=False) as (_, process):
        output, _ = process.communicate(timeout=60)
    assert process.returncode == ExitCode.MODEL_FAILED, output
    message = (f"checkpoint {checkpoint} is not a file" if absent == "checkpoint"
               else f"stats folder {folder} lacks mean_by_level.nc")
    assert len(output.splitlines()) == 1 and message in output, output


def test_an_unwritable_cache_folder_exits_11_with_one_line_before_loading(
        stats_dir: Path, tmp_path: Path) -> None:
    """Checked before the server starts and the model loads: not exit 12 ("could not load"),
    which would send one looking at the checkpoint."""
    plain_file = tmp_path / "a-file"
    plain_file.write_text("not a folder")
    args = ["--checkpoint", str(REFERENCE_DIR / "params.npz"), "--stats-dir", str(stats_dir)]
    with serve_command(args, env={"GRAPHCAST_CACHE_DIR": str(plain_file / "cache")},
                       wait=False) as (_, process):
        output, _ = process.communicate(timeout=60)
    assert process.returncode == ExitCode.OUTPUT_FAILED, output
    assert len(output.splitlines()) == 1, output
    assert f"cache folder {plain_file / 'cache'} cannot be created or written" in output


def unusable_devices() -> list[str]:
    """CUDA devices this host lacks: `cuda` without a GPU, and one GPU past the last."""
    import torch

    devices = [f"cuda:{torch.cuda.device_count()}"]
    return devices if torch.cuda.is_available() else ["cuda", *devices]


def test_an_unusable_device_exits_14_with_one_line(stats_dir: Path) -> None:
    """Looked up here, not in a parametrize: collection is the same with or without a GPU."""
    for device in unusable_devices():
        args = ["--checkpoint", str(REFERENCE_DIR / "params.npz"), "--stats-dir",
                str(stats_dir), "--device", device]
        with serve_command(args, wait=False) as (_, process):
            output, _ = process.communicate(timeout=120)
        assert process.returncode == ExitCode.DEVICE_UNAVAILABLE, output
        errors = [line for line in output.splitlines() if " ERROR " in line]
        assert len(errors) == 1 and f"device {device!r} requested" in errors[0], output
        assert "Traceback" not in output and "could not load" not in output


def test_sigint_stops_a_server_started_ignoring_it(stats_dir: Path) -> None:
    """A command put in the background by a script starts with SIGINT ignored; uvicorn still
    stops on it, and the service exits 0 saying so (uvicorn's re-raise of the signal is
    ignored then)."""
    args = ["--checkpoint", str(REFERENCE_DIR / "params.npz"), "--stats-dir", str(stats_dir)]
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited through exec
    try:
        with serve_command(args) as (_, process):
            signal.signal(signal.SIGINT, previous)
            process.send_signal(signal.SIGINT)
            output, _ = process.communicate(timeout=60)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert process.returncode == 0, output
    assert "graphcast_api.serve: stopped" in output


def test_command_exit_codes(stats_dir: Path, tmp_path: Path) -> None:
    args = ["--checkpoint", str(REFERENCE_DIR / "params.npz"), "--stats-dir", str(stats_dir)]
    for stop in (signal.SIGTERM, signal.SIGINT):
        with serve_command(args) as (_, process):  # waits until healthy
            process.send_signal(stop)
            output, _ = process.communicate(timeout=60)
            assert process.returncode == 0, output
            assert "graphcast_api.serve: stopped" in output
    with serve_command(["--stats-dir", str(tmp_path)], wait=False) as (_, process):
        output, _ = process.communicate(timeout=60)
        assert process.returncode == ExitCode.USAGE
        assert "--checkpoint (or GRAPHCAST_API_CHECKPOINT) is required" in output
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a checkpoint")
    with serve_command(["--checkpoint", str(broken), "--stats-dir", str(stats_dir)],
                       wait=False) as (_, process):
        output, _ = process.communicate(timeout=120)
        assert process.returncode == ExitCode.MODEL_FAILED
        assert f"could not load {broken}" in output
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        with serve_command([*args, "--port", port], wait=False) as (_, process):
            output, _ = process.communicate(timeout=120)
            assert process.returncode == ExitCode.CANNOT_LISTEN
            assert f"could not listen on 127.0.0.1:{port}" in output


STRONG_TOKEN = "0123456789abcdef"  # 16 characters


@pytest.mark.parametrize("host, token, insecure, refused", [
    ("127.0.0.1", None, None, False),
    ("localhost", None, None, False),
    ("::1", "", None, False),
    ("0.0.0.0", None, None, True),
    ("192.168.1.5", "short-token", None, True),
    ("my-host.example", None, None, True),
    ("0.0.0.0", STRONG_TOKEN, None, False),
    ("0.0.0.0", None, "1", False),
])
def test_non_loopback_address_needs_a_strong_token_or_insecure(
        clean_env: Path, stats_dir: Path, monkeypatch: pytest.MonkeyPatch, host: str,
        token: str | None, insecure: str | None, refused: bool) -> None:
    if token is not None:
        monkeypatch.setenv("GRAPHCAST_API_TOKEN", token)
    args = argparse.Namespace(checkpoint=str(REFERENCE_DIR / "params.npz"),
                              stats_dir=str(stats_dir), host=host, insecure=insecure)
    settings = serve.resolve_settings(args)
    if refused:
        with pytest.raises(SettingsError, match=re.escape(f"--host {host} is not a loopback")):
            serve.check_exposure(settings)
    else:
        warning = serve.check_exposure(settings)
        assert (warning is not None) == (insecure is not None)


def test_exposed_without_token_exits_2_before_binding(stats_dir: Path) -> None:
    args = ["--checkpoint", str(REFERENCE_DIR / "params.npz"), "--stats-dir", str(stats_dir),
            "--host", "0.0.0.0"]
    with serve_command(args, env={"GRAPHCAST_API_TOKEN": ""}, wait=False) as (url, process):
        output, _ = process.communicate(timeout=60)
        assert process.returncode == ExitCode.USAGE
        refusal = [line for line in output.splitlines() if "is not a loopback" in line]
        assert len(refusal) == 1 and "GRAPHCAST_API_TOKEN" in refusal[0], output
        assert "listening" not in output
    with serve_command([*args, "--insecure"], env={"GRAPHCAST_API_TOKEN": ""},
                       wait=False) as (url, process):
        output = wait_for_line(process, "listening on")
        assert "WARNING graphcast_api.serve: serving 0.0.0.0 without a token (--insecure)" in output


@pytest.mark.parametrize("token", [" padded-token-0123456", "padded-token-0123456\t", "   ",
                                   "t\u00f6ken-0123456789"])
def test_a_token_no_client_can_send_exits_2_without_showing_it(stats_dir: Path,
                                                               token: str) -> None:
    """An Authorization header carries printable ASCII without spaces: the same rule as the
    job's (graphcast_contract.wire.bearer_token_problem)."""
    args = ["--checkpoint", str(REFERENCE_DIR / "params.npz"), "--stats-dir", str(stats_dir)]
    with serve_command(args, env={"GRAPHCAST_API_TOKEN": token}, wait=False) as (_, process):
        output, _ = process.communicate(timeout=60)
    assert process.returncode == ExitCode.USAGE, output
    assert len(output.splitlines()) == 1, output
    assert "GRAPHCAST_API_TOKEN contains whitespace, control or non-ASCII characters" in output
    secret = token.strip()
    assert not secret or secret not in output


def wait_for_line(process: subprocess.Popen, text: str) -> str:
    """The process's output up to the first line containing `text`."""
    lines = []
    for line in process.stdout:
        lines.append(line)
        if text in line:
            return "".join(lines)
    raise AssertionError("".join(lines))


def test_log_file_is_written_and_rotated(stats_dir: Path, tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "graphcast-api.log"
    args = ["--checkpoint", str(REFERENCE_DIR / "params.npz"), "--stats-dir", str(stats_dir)]
    with serve_command(args, env={"GRAPHCAST_API_LOG_FILE": str(log_file)}) as (url, _):
        request_id = requests.get(f"{url}/v1/model", timeout=10).headers["X-Request-ID"]
        assert requests.get(f"{url}/v1/model", timeout=10).status_code == 200
    text = log_file.read_text()
    assert "graphcast_api.serve: serving" in text         # the service's own lines
    assert "GET /v1/model HTTP/1.1" in text                # uvicorn's access lines
    assert request_id  # every answer carries an id
    handler = serve_handlers(log_file)
    assert (handler.maxBytes, handler.backupCount) == (LOG_FILE_BYTES, LOG_FILE_COUNT)


def serve_handlers(log_file: Path) -> RotatingFileHandler:
    """The rotating handler `setup_logging` installs for `log_file` (then removed)."""
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        serve.setup_logging(log_file)
        return next(h for h in root.handlers if isinstance(h, RotatingFileHandler))
    finally:
        for handler in root.handlers:
            if handler not in before:
                handler.close()
        root.handlers[:] = before
