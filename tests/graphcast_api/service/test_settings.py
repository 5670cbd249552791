"""The one settings loader of serve/predict/bench: command line > environment > .env > default."""
from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import pytest

from graphcast_api.service.app import ServiceLimits
from graphcast_api.settings import (
    ENV,
    SettingsError,
    default_cache_dir,
    load_service_settings,
)
from graphcast_contract.project import PROJECT_ROOT


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No setting in the environment."""
    for variable, _ in ENV.values():
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


def test_defaults_without_env_file(no_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = load_service_settings(argparse.Namespace(), env_file=tmp_path / "absent.env")
    assert (settings.host, settings.port, settings.queue_wait_s) == ("127.0.0.1", 8001, 300.0)
    assert settings.max_body_bytes is None  # sized from the loaded model
    assert (settings.queue_slots, settings.max_sites, settings.max_site_name_chars,
            settings.max_values) == (2, 1000, 100, 200_000)
    assert (settings.insecure, settings.log_file) == (False, None)
    assert (settings.checkpoint, settings.stats_dir, settings.token) == (None, None, None)
    assert (settings.precision, settings.device, settings.compile, settings.cache_dir) == (
        None, None, None, None)


def test_command_line_beats_environment_beats_env_file_beats_default(
        no_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("GRAPHCAST_API_PORT=7001\nGRAPHCAST_API_HOST=10.0.0.1\n"
                        "GRAPHCAST_API_PRECISION=bf16\nGRAPHCAST_COMPILE=1\n"
                        f"GRAPHCAST_CACHE_DIR={tmp_path / 'from-file'}\n"
                        "GRAPHCAST_API_TOKEN=file-token\n")
    no_env.setenv("GRAPHCAST_API_PORT", "7002")
    no_env.setenv("GRAPHCAST_API_PRECISION", "fp32")
    no_env.setenv("GRAPHCAST_COMPILE", "0")
    no_env.setenv("GRAPHCAST_API_DEVICE", "cpu")
    args = argparse.Namespace(port="7003", device="cuda")
    settings = load_service_settings(args, env_file=env_file)
    assert settings.port == 7003                    # command line over environment and .env
    assert settings.device == "cuda"                # command line over environment
    assert settings.precision == "fp32"             # environment over .env
    assert settings.compile is False                # environment over .env
    assert settings.host == "10.0.0.1"              # .env over the default
    assert settings.cache_dir == tmp_path / "from-file"
    assert settings.token == "file-token"
    assert settings.queue_wait_s == 300.0           # default
    without_args = load_service_settings(argparse.Namespace(), env_file=env_file)
    assert (without_args.port, without_args.device) == (7002, "cpu")
    no_env.delenv("GRAPHCAST_COMPILE")
    no_env.setenv("GRAPHCAST_API_PORT", "")         # empty counts as unset
    from_file = load_service_settings(None, env_file=env_file)
    assert (from_file.port, from_file.compile) == (7001, True)
    no_env.setenv("GRAPHCAST_CACHE_DIR", "~/graphs")
    assert load_service_settings(None, env_file=env_file).cache_dir == Path.home() / "graphs"


def test_relative_paths_from_env_are_the_projects_from_the_command_line_the_cwds(
        no_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`.env.example`: relative paths in the environment or `.env` are the project's, whatever
    the current directory (as the job reads them); a command-line argument stays relative."""
    no_env.chdir(tmp_path)
    env_file = tmp_path / ".env"
    env_file.write_text("GRAPHCAST_API_STATS_DIR=weights/stats\n")
    paths = {"checkpoint": "weights/params/model.npz", "log_file": "logs/graphcast-api.log",
             "cache_dir": "cache/graphs"}
    for name, text in paths.items():
        no_env.setenv(ENV[name][0], text)
    settings = load_service_settings(argparse.Namespace(), env_file=env_file)
    assert settings.stats_dir == PROJECT_ROOT / "weights/stats"
    for name, text in paths.items():
        assert getattr(settings, name) == PROJECT_ROOT / text, name
    given = argparse.Namespace(checkpoint="model.npz", stats_dir="stats", log_file="api.log")
    settings = load_service_settings(given, env_file=env_file)
    assert (settings.checkpoint, settings.stats_dir, settings.log_file) == (
        Path("model.npz"), Path("stats"), Path("api.log"))


@pytest.mark.parametrize("variable, value, message", [
    ("GRAPHCAST_API_PRECISION", "fp16", "--precision (or GRAPHCAST_API_PRECISION) must be one of "
                                        "fp32, bf16, got 'fp16'"),
    ("GRAPHCAST_COMPILE", "maybe", "GRAPHCAST_COMPILE must be 1 or 0, got 'maybe'"),
    ("GRAPHCAST_API_DEVICE", "cuda1", "--device (or GRAPHCAST_API_DEVICE) must be cpu, cuda "
                                      "or cuda:N, got 'cuda1'"),
    ("GRAPHCAST_API_MAX_BODY_MB", "-1", "--max-body-mb must be a positive number up to 1048576, "
                                         "got '-1'"),
    ("GRAPHCAST_API_MAX_SITES", "0", "--max-sites must be a whole number of at least 1"),
    ("GRAPHCAST_API_QUEUE_SLOTS", "-1", "--queue-slots must be a whole number of at least 0"),
    ("GRAPHCAST_API_MAX_VALUES", "1e5", "--max-values must be a whole number of at least 1"),
    ("GRAPHCAST_API_INSECURE", "sure", "GRAPHCAST_API_INSECURE must be 1 or 0, got 'sure'"),
    ("GRAPHCAST_API_TOKEN", "token ", "GRAPHCAST_API_TOKEN contains whitespace, control or "
                                      "non-ASCII characters (value not shown)"),
])
def test_invalid_values_are_named(no_env: pytest.MonkeyPatch, tmp_path: Path, variable: str,
                                  value: str, message: str) -> None:
    no_env.setenv(variable, value)
    with pytest.raises(SettingsError, match=re.escape(message)):
        load_service_settings(argparse.Namespace(), env_file=tmp_path / "absent.env")


# `| `--option` | `VARIABLE` | `default` |` in the README's table of the service's options
README_DEFAULT = re.compile(r"^\| [^|]+ \| `([A-Z0-9_]+)` \| `([^`]*)` \|", re.M)
# `# VARIABLE=value` in .env.example
ENV_EXAMPLE_LINE = re.compile(r"^# ([A-Z0-9_]+)=(.*)$", re.M)
# The settings .env.example shows with an example value: they have no default (None in ENV)
ENV_EXAMPLES = {"checkpoint", "stats_dir", "precision", "device", "compile"}


def assert_shown_defaults_are_the_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                           shown: list[tuple[str, str]], document: str) -> None:
    """Each (variable, default) that `document` shows, given as the setting, changes nothing
    (the graph cache folder, left to the engine when unset, is default_cache_dir())."""
    absent = tmp_path / "absent.env"
    defaults = load_service_settings(None, env_file=absent)
    for variable, text in shown:
        monkeypatch.setenv(variable, text)
        settings = load_service_settings(None, env_file=absent)
        monkeypatch.delenv(variable)
        if variable == ENV["cache_dir"][0]:
            assert settings.cache_dir == default_cache_dir()
        else:
            assert settings == defaults, f"{document}: {variable}={text!r}"


def test_readme_defaults_are_the_defaults(no_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    documented = README_DEFAULT.findall((PROJECT_ROOT / "README.md").read_text())
    assert {variable for variable, _ in documented} >= {
        "GRAPHCAST_API_HOST", "GRAPHCAST_API_PORT", "GRAPHCAST_API_QUEUE_WAIT_S",
        "GRAPHCAST_API_QUEUE_SLOTS", "GRAPHCAST_API_MAX_SITES", "GRAPHCAST_CACHE_DIR"}
    assert_shown_defaults_are_the_defaults(no_env, tmp_path, documented, "README.md")


def test_env_example_shows_every_setting_with_its_default(no_env: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    """Every setting of ENV has its line in .env.example, with its default, or an example
    where it has none."""
    shown = dict(ENV_EXAMPLE_LINE.findall((PROJECT_ROOT / ".env.example").read_text()))
    missing = [variable for variable, _ in ENV.values() if variable not in shown]
    assert not missing, f".env.example lacks {', '.join(missing)}"
    for name in ENV_EXAMPLES:
        assert ENV[name][1] is None, f"{ENV[name][0]} has a default: show it, not an example"
    examples = {ENV[name][0] for name in ENV_EXAMPLES}
    assert_shown_defaults_are_the_defaults(
        no_env, tmp_path, [(variable, shown[variable]) for variable, _ in ENV.values()
                           if variable not in examples], ".env.example")


def test_service_limits_default_to_the_settings_defaults(no_env: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    settings = load_service_settings(None, env_file=tmp_path / "absent.env")
    for field in dataclasses.fields(ServiceLimits):
        if field.name == "body_idle_s":  # a constant, not a setting
            continue
        assert getattr(ServiceLimits(), field.name) == getattr(settings, field.name), field.name
