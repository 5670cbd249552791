"""`python -m graphcast_api serve`: option resolution, bad options, a checkpoint that fails."""
from __future__ import annotations

import argparse
import re
import signal
import socket
from pathlib import Path

import pytest
from api_helpers import REFERENCE_DIR, serve_command

from graphcast_api import settings as settings_module
from graphcast_api.service import serve
from graphcast_api.service.app import DEFAULT_MAX_BODY_BYTES
from graphcast_api.settings import SettingsError
from graphcast_contract.errors import ExitCode

NO_OPTIONS = argparse.Namespace()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No GRAPHCAST_* variables; the project root (where `.env` is read) is tmp_path."""
    for variable, _ in settings_module.ENV.values():
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(settings_module, "PROJECT_ROOT", tmp_path)
    return tmp_path


def test_defaults_bind_loopback_and_dotenv_is_read(clean_env: Path, stats_dir: Path) -> None:
    (clean_env / ".env").write_text(
        f"GRAPHCAST_API_CHECKPOINT={REFERENCE_DIR / 'params.npz'}\n"
        f"GRAPHCAST_API_STATS_DIR={stats_dir}\nGRAPHCAST_API_TOKEN=abc\n")
    settings = serve.resolve_settings(NO_OPTIONS)
    assert (settings.host, settings.port) == ("127.0.0.1", 8001)
    assert settings.checkpoint == REFERENCE_DIR / "params.npz"
    assert settings.token == "abc"
    assert settings.max_body_bytes == DEFAULT_MAX_BODY_BYTES
    options = argparse.Namespace(port="9000", max_body_mb="2", host="0.0.0.0")
    settings = serve.resolve_settings(options)  # the command line wins
    assert (settings.host, settings.port, settings.max_body_bytes) == (
        "0.0.0.0", 9000, 2 * 1024**2)


@pytest.mark.parametrize("options, message", [
    ({}, "--checkpoint (or GRAPHCAST_API_CHECKPOINT) is required"),
    ({"checkpoint": "nowhere.npz", "stats_dir": "."}, "checkpoint nowhere.npz is not a file"),
    ({"stats_dir": "."}, "lacks mean_by_level.nc"),
    ({"port": "eighty"}, "--port must be a positive number"),
    ({"queue_wait_s": "0"}, "--queue-wait-s must be a positive number"),
])
def test_bad_options_are_named(clean_env: Path, stats_dir: Path, options: dict,
                               message: str) -> None:
    complete = {"checkpoint": str(REFERENCE_DIR / "params.npz"), "stats_dir": str(stats_dir)}
    args = argparse.Namespace(**({**complete, **options} if options else {}))
    with pytest.raises(SettingsError, match=re.escape(message)):
        serve.resolve_settings(args)


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
