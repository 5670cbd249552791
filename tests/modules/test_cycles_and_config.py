"""Cycle arithmetic (J-6), init-time parsing, sites, settings and log redaction."""
from __future__ import annotations

import codecs
import re
import subprocess
import sys
from dataclasses import fields
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from config.settings import ENVIRONMENT, PROJECT_ROOT, Settings, SettingsError, load_settings
from graphcast_contract.cycles import earlier_cycles, iso_utc, parse_cycle, target_init_time
from graphcast_contract.errors import ConfigError, ExitCode
from modules.job.logs import redact
from modules.job.sites import load_sites
from tests.subprocess_env import clean_environment

UTC = timezone.utc


@pytest.mark.parametrize("now, expected", [
    (datetime(2024, 5, 20, 13, 47, tzinfo=UTC), datetime(2024, 5, 14, 12, tzinfo=UTC)),
    (datetime(2024, 5, 20, 18, 0, tzinfo=UTC), datetime(2024, 5, 14, 18, tzinfo=UTC)),
    (datetime(2024, 5, 20, 5, 59, 59, tzinfo=UTC), datetime(2024, 5, 14, 0, tzinfo=UTC)),
    (datetime(2023, 3, 3, 2, 0, tzinfo=UTC), datetime(2023, 2, 25, 0, tzinfo=UTC)),   # month
    (datetime(2024, 3, 5, 23, 59, tzinfo=UTC), datetime(2024, 2, 28, 18, tzinfo=UTC)),  # leap
    (datetime(2023, 1, 4, 7, 30, tzinfo=UTC), datetime(2022, 12, 29, 6, tzinfo=UTC)),  # year
    # 01:30 in Paris (UTC+1) is 00:30 UTC on the previous cycle day boundary.
    (datetime.fromisoformat("2023-01-01T01:30+01:00"), datetime(2022, 12, 26, 0, tzinfo=UTC)),
])
def test_target_init_time_is_j6_on_the_6_hourly_slot(now: datetime, expected: datetime) -> None:
    assert target_init_time(now, 6) == expected


def test_lag_is_configurable() -> None:
    assert target_init_time(datetime(2024, 1, 1, 12, tzinfo=UTC), 0) == datetime(
        2024, 1, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize("text, expected", [
    ("2022-01-01T06:00", datetime(2022, 1, 1, 6, tzinfo=UTC)),
    ("2022-01-01T06:00:00Z", datetime(2022, 1, 1, 6, tzinfo=UTC)),
    ("2022-01-01T07:00+01:00", datetime(2022, 1, 1, 6, tzinfo=UTC)),
    ("2022-01-01", datetime(2022, 1, 1, 0, tzinfo=UTC)),
])
def test_parse_cycle(text: str, expected: datetime) -> None:
    assert parse_cycle(text) == expected


@pytest.mark.parametrize("text, message", [
    ("yesterday", "not an ISO 8601"), ("2022-01-01T03:00", "6-hourly slot"),
    ("2022-01-01T06:30", "6-hourly slot"),
    ("0001-01-01T00:00+01:00", "outside the years 1 to 9999 in UTC"),
])
def test_parse_cycle_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_cycle(text)


def test_earlier_cycles_cross_the_year_oldest_first() -> None:
    assert earlier_cycles(datetime(2023, 1, 1, 6, tzinfo=UTC), 3) == [
        datetime(2022, 12, 31, 12, tzinfo=UTC), datetime(2022, 12, 31, 18, tzinfo=UTC),
        datetime(2023, 1, 1, 0, tzinfo=UTC)]


def test_shipped_sites_are_20_european_places() -> None:
    sites = load_sites(PROJECT_ROOT / "config" / "sites.csv")
    assert len(sites) == 20 and len({s.name for s in sites}) == 20
    assert all(35 <= s.latitude <= 71 and -11 <= s.longitude <= 32 for s in sites)


@pytest.mark.parametrize("text, message", [
    ("name,lat,lon\nParis,48.8,2.3\n", "header"),
    ("name,latitude,longitude\nParis,north,2.3\n", ":2: latitude/longitude are not numbers"),
    ("name,latitude,longitude\nParis,98.8,2.3\n", "out of range"),
    ("name,latitude,longitude\nParis,48.8,2.3\nParis,48.8,2.3\n", "duplicate"),
    ("name,latitude,longitude\n", "no sites"),
    ("name,latitude,longitude\nParis,48.8,2.3\nLe\u00a0Mans,48.0,0.2\n",
     ":3: the site name contains a non-printable character"),  # a no-break space
    ("name,latitude,longitude\nParis\u200b,48.8,2.3\n",
     ":2: the site name contains a non-printable character"),  # a zero-width space
    ("name,latitude,longitude\nPa\tris,48.8,2.3\n", ":2: .*control character"),
])
def test_bad_sites_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "sites.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_sites(path)


@pytest.mark.parametrize("data, message", [
    ("name,latitude,longitude\nParis,48.8,2.3\nM\u00fcnchen,48.1,11.6\n".encode("cp1252"),
     r":3: byte 0xFC is not UTF-8 text; save the file as UTF-8"),  # Excel's plain "CSV"
    (b'name,latitude,longitude\nParis,48.8,2.3\n"Lyon,45.8,4.8\n' + b"x" * 200_000,
     r":3: not a CSV row \(field larger than field limit"),  # a quote left open
    (b"name,latitude,longitude\nPa\x00ris,48.8,2.3\n", ":2: .*control character"),
], ids=["excel-cp1252", "open-quote", "nul-byte"])
def test_sites_file_that_is_not_utf8_text_is_a_config_error(tmp_path: Path, data: bytes,
                                                             message: str) -> None:
    path = tmp_path / "sites.csv"
    path.write_bytes(data)
    with pytest.raises(ConfigError, match=f"^{re.escape(str(path))}{message}"):
        load_sites(path)


def test_sites_file_saved_as_excel_csv_utf8_is_read(tmp_path: Path) -> None:
    """Excel's "CSV UTF-8" starts with a byte-order mark."""
    path = tmp_path / "sites.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "name,latitude,longitude\r\nM\u00fcnchen,48.1,11.6\r\n"
                     .encode())
    assert [site.name for site in load_sites(path)] == ["M\u00fcnchen"]


def test_settings_parse_lists(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FORECAST_LEAD_HOURS", "6, 12")
    monkeypatch.setenv("FORECAST_VARIABLES", "2m_temperature,temperature@850")
    settings = load_settings(tmp_path / "absent.env")
    assert settings.lead_hours == (6, 12)
    assert settings.variables == (("2m_temperature", 0), ("temperature", 850))


def test_every_setting_has_a_variable_and_unset_ones_get_the_default(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert sorted(field for field, _ in ENVIRONMENT.values()) == sorted(
        field.name for field in fields(Settings))
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    assert load_settings(tmp_path / "absent.env") == Settings()


# `| `NAME` | `default` |` in the README's table; `# NAME=default` in .env.example, whose
# DATABASE_URL line is an example, not the default (unset)
DOCUMENTED_DEFAULTS = {"README.md": re.compile(r"^\| `([A-Z0-9_]+)` \| `([^`]*)` \|", re.M),
                       ".env.example": re.compile(r"^# ((?!DATABASE_URL)[A-Z0-9_]+)=(.*)$", re.M)}


@pytest.mark.parametrize("document", DOCUMENTED_DEFAULTS)
def test_documented_defaults_are_the_settings_defaults(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path, document: str) -> None:
    """Each default the README and .env.example show, read as a setting, is the default in
    Settings (a relative path there is read as relative to the project)."""
    documented = {name: text for name, text in
                  DOCUMENTED_DEFAULTS[document].findall((PROJECT_ROOT / document).read_text())
                  if name in ENVIRONMENT}
    assert len(documented) >= 15
    defaults = Settings()
    for name, text in documented.items():
        monkeypatch.setenv(name, text)
        field = ENVIRONMENT[name][0]
        value = getattr(load_settings(tmp_path / "absent.env"), field)
        expected = getattr(defaults, field)
        assert value == expected, f"{document}: {name}={text!r}"
        monkeypatch.delenv(name)


def test_relative_paths_are_the_projects_whatever_the_current_directory(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """cron starts the job in $HOME, Task Scheduler in System32: the same `.env` must name
    the same database, sites file and log folder there."""
    monkeypatch.chdir(tmp_path)
    values = {"EMBEDDED_PG_DIR": ".pgdata", "SITES_FILE": "config/sites.csv",
              "LOG_DIR": "logs", "IFS_OPENDATA_CACHE_DIR": "data/ifs-opendata"}
    for name, text in values.items():
        monkeypatch.setenv(name, text)
    settings = load_settings(tmp_path / "absent.env")
    for name, text in values.items():
        assert getattr(settings, ENVIRONMENT[name][0]) == PROJECT_ROOT / text, name
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))
    assert load_settings(tmp_path / "absent.env").log_dir == tmp_path / "logs"
    monkeypatch.setenv("LOG_DIR", "~/logs")  # a leading ~ is the home folder, as the service's
    assert load_settings(tmp_path / "absent.env").log_dir == Path.home() / "logs"


@pytest.mark.parametrize("name, value, message", [
    ("FORECAST_LEAD_HOURS", "6,6", "distinct positive"),
    ("FORECAST_VARIABLES", "temperature@high", "NAME@LEVEL"),
    ("GRAPHCAST_API_RETRIES", "-1", "must be a whole number from 0 to 100"),
    ("GRAPHCAST_API_TIMEOUT_S", "soon", "not a valid float"),
    # float() takes these, and nan passes every range check: each failed later, exit 1
    ("GRAPHCAST_API_TIMEOUT_S", "nan", "must be a finite number from 0.01 to 86400"),
    ("GRAPHCAST_API_CONNECT_TIMEOUT_S", "inf", "must be a finite number from 0.01 to 86400"),
    ("GRAPHCAST_API_CONNECT_TIMEOUT_S", "1e400", "must be a finite number from 0.01 to 86400"),
    ("GRAPHCAST_API_BACKOFF_S", "-inf", "must be a finite number from 0 to 86400"),
    ("ERA5_MIN_GRID_STEP", "nan", "must be a finite number from 0.001 to 90"),
    ("FORECAST_LAG_DAYS", "1000000", "must be a whole number from 0 to 36500"),  # overflowed
    # these failed each run as an unreachable service (exit 4), not naming the setting
    ("GRAPHCAST_API_URL", "127.0.0.1:8001", "is not an http:// or https:// URL"),
    ("GRAPHCAST_API_URL", "http://127.0.0.1:80O1", "is not an http:// or https:// URL"),
    ("GRAPHCAST_API_URL", "http://127.0.0.1:70000", "is not an http:// or https:// URL"),
    ("GRAPHCAST_API_URL_IFS_OPENDATA", "http://:8002", "is not an http:// or https:// URL"),
    ("IFS_OPENDATA_URL", "ftp://mirror.example/forecasts", "is not an http:// or https:// URL"),
    ("GRAPHCAST_API_TOKEN", "t\u00f6ken", "non-ASCII characters \\(value not shown\\)"),
    ("LOG_LEVEL", "verbose", "must be one of DEBUG, INFO, WARNING, ERROR"),
])
def test_settings_errors_name_the_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                          name: str, value: str, message: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=f"{name}.*{message}"):
        load_settings(tmp_path / "absent.env")


# What stops at the settings or the command line needs no database: should it get that
# far (a regression), this one is refused at once, and no embedded server is started.
NO_DATABASE = {"DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"}


def run_job_command(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The job as a subprocess with a clean environment, NO_DATABASE, then `env`."""
    return subprocess.run([sys.executable, str(PROJECT_ROOT / "trigger_and_ingest_forecast.py"),
                           *args], cwd=PROJECT_ROOT,
                          env=clean_environment(**NO_DATABASE, **env), capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("name, value", [
    ("GRAPHCAST_API_TIMEOUT_S", "nan"), ("GRAPHCAST_API_CONNECT_TIMEOUT_S", "1e400"),
    ("ERA5_MIN_GRID_STEP", "nan"), ("FORECAST_LAG_DAYS", "1000000"),
    ("GRAPHCAST_API_URL", "127.0.0.1:8001"), ("GRAPHCAST_API_URL", "http://127.0.0.1:80O1"),
])
def test_unusable_numbers_and_urls_stop_the_job_with_exit_2_naming_them(
        tmp_path: Path, name: str, value: str) -> None:
    done = run_job_command("--dry-run", LOG_DIR=str(tmp_path), **{
        name: value})
    assert done.returncode == ExitCode.USAGE, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"configuration error: {name}={value!r} "), done.stderr
    assert done.stdout == ""


def test_log_level_is_read_in_any_case(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LOG_LEVEL", " warning")
    assert load_settings(tmp_path / "absent.env").log_level == "WARNING"


def test_redact_masks_passwords_and_tokens() -> None:
    text = ("postgresql://dev_user:p@ss:w0rd@localhost:5432/trading_data "
            "user=x password=hunter2 host=y Authorization: Bearer abc.def")
    masked = redact(text)
    assert "w0rd" not in masked and "hunter2" not in masked and "abc.def" not in masked
    assert "postgresql://dev_user:***@localhost:5432/trading_data" in masked


HOSTILE_ENV = "FORECAST_VARIABLES=no_such_variable\nGRAPHCAST_API_TOKEN=leaked\n"


def test_env_file_setting_chooses_the_dotenv(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    """ENV_FILE unset reads the project's `.env`; empty reads none; a path reads that file.
    The project root is a copy here, so no `.env` is ever written into the working copy."""
    import config.settings as settings_module
    from graphcast_contract import project as project_module

    project = tmp_path / "project"
    project.mkdir()
    (project / ".env").write_text(HOSTILE_ENV)
    monkeypatch.setattr(project_module, "PROJECT_ROOT", project)
    for name in ("ENV_FILE", "FORECAST_VARIABLES", "GRAPHCAST_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert settings_module.env_file_path() == project / ".env"
    monkeypatch.setenv("ENV_FILE", "")
    settings = load_settings()
    assert settings.variables == (("2m_temperature", 0),) and settings.api_token is None
    other = tmp_path / "other.env"
    other.write_text("FORECAST_LEAD_HOURS=6\n")
    monkeypatch.setenv("ENV_FILE", str(other))
    monkeypatch.delenv("FORECAST_LEAD_HOURS", raising=False)
    assert load_settings().lead_hours == (6,)
    monkeypatch.setenv("ENV_FILE", str(tmp_path / "absent.env"))
    with pytest.raises(SettingsError, match="ENV_FILE=.*absent.env' is not a file"):
        load_settings()


def test_job_subprocesses_get_a_clean_environment(run_job, era5_db: str,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    """A developer's settings in the test process's environment, and a hostile `.env` named
    by ENV_FILE there, do not reach the job the tests run."""
    hostile = tmp_path / "hostile.env"
    hostile.write_text(HOSTILE_ENV)
    monkeypatch.setenv("ENV_FILE", str(hostile))
    monkeypatch.setenv("FORECAST_VARIABLES", "no_such_variable")
    monkeypatch.setenv("GRAPHCAST_API_TOKEN", "leaked")
    runner = type(run_job)(era5_db, run_job.env["GRAPHCAST_API_URL"], tmp_path / "logs")
    assert runner.env["ENV_FILE"] == ""
    assert "FORECAST_VARIABLES" not in runner.env and "GRAPHCAST_API_TOKEN" not in runner.env
    result = runner("--init-time", "2022-01-01T06:00")
    assert result.returncode == 0, result.output


@pytest.mark.parametrize("data, where", [
    (b"\xff\xfeL\x00O\x00G\x00", "1: byte 0xFF"),  # Notepad's "Unicode": UTF-16
    ("LOG_LEVEL=INFO\n# caf\u00e9\n".encode("cp1252"), "2: byte 0xE9"),
], ids=["utf-16", "windows-1252"])
def test_a_dotenv_that_is_not_utf8_stops_the_job_with_one_line(tmp_path: Path, data: bytes,
                                                               where: str) -> None:
    """It crashed every program with a UnicodeDecodeError (exit 1); `serve` reads the same
    file (tests/graphcast_api/service/test_serve_cli.py)."""
    env_file = tmp_path / "settings.env"
    env_file.write_bytes(data)
    done = run_job_command("--dry-run", ENV_FILE=str(env_file), LOG_DIR=str(tmp_path))
    assert done.returncode == ExitCode.USAGE, done.stdout + done.stderr
    assert done.stderr.splitlines() == [f"configuration error: {env_file}:{where} is not UTF-8 "
                                        "text; save the file as UTF-8"]
    assert done.stdout == ""


def test_an_unreadable_dotenv_is_named(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.mkdir()  # unreadable as a file, also for root (a chmod 0 file is not)
    with pytest.raises(SettingsError,
                       match=f"^{re.escape(str(env_file))}: not readable: Is a directory$"):
        load_settings(env_file)


def test_a_dotenv_saved_with_a_byte_order_mark_is_read(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    """UTF-8 with a byte-order mark (Windows Notepad): the first setting is not lost."""
    env_file = tmp_path / ".env"
    env_file.write_bytes(codecs.BOM_UTF8 + b"LOG_LEVEL=debug\n")
    monkeypatch.setenv("LOG_LEVEL", "")
    monkeypatch.delenv("LOG_LEVEL")  # restored (unset) after the test, as .env sets it
    assert load_settings(env_file).log_level == "DEBUG"


@pytest.mark.parametrize("package", ["psutil", "tqdm", "ray"])
def test_backfill_without_its_packages_says_what_to_install(tmp_path: Path,
                                                           package: str) -> None:
    """requirements-backfill.txt is an extra: without it `--backfill` printed a
    ModuleNotFoundError traceback (or, without Ray, failed later)."""
    script = (f"import sys; sys.modules[{package!r}] = None; import trigger_and_ingest_forecast"
              " as job; sys.exit(job.main(['--backfill', '2022-01-01T06:00', "
              "'2022-01-01T06:00']))")
    done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT,
                          env=clean_environment(**NO_DATABASE, LOG_DIR=str(tmp_path)),
                          capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == ExitCode.USAGE, output
    assert len(output.splitlines()) == 1 and "Traceback" not in output, output
    assert (f"--backfill needs the packages of requirements-backfill.txt ({package} is not "
            "installed): pip install -r requirements-backfill.txt") in output


@pytest.mark.parametrize("args, message", [
    (["--catch-up", "100000000"], "--catch-up must be 0 to 1460 (a year of cycles; --backfill "
                                  "takes longer ranges)"),
    (["--catch-up", "-1"], "--catch-up must be 0 to 1460"),
    (["--precision", "bf16"], "--precision: only with --backfill"),
    (["--device", "cuda", "--stats-dir", "/x"], "--stats-dir, --device: only with --backfill"),
])
def test_options_out_of_range_or_of_backfill_alone_are_usage_errors(
        tmp_path: Path, args: list[str], message: str) -> None:
    """A huge --catch-up was a traceback (OverflowError, exit 1) or a plan of millions of
    cycles; --precision, --device and --stats-dir without --backfill were silently ignored."""
    done = run_job_command("--init-time", "2022-01-01T06:00", *args, LOG_DIR=str(tmp_path))
    output = done.stdout + done.stderr
    assert done.returncode == ExitCode.USAGE, output
    assert message in output and "Traceback" not in output


@pytest.mark.parametrize("password", ["Sup3rPw/Secret99", "Sup3rPw@Secret99", "Sup3rPw?Secret99",
                                      "Sup3rPw#Secret99"])
def test_a_password_with_an_unencoded_url_character_is_malformed_unshown(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, password: str) -> None:
    """libpq took 'Sup3rPw' of such a password for the port (or 'Secret99@127.0.0.1' for the
    host) and its error quoted it to the log."""
    monkeypatch.setenv("DATABASE_URL", f"postgresql://u:{password}@127.0.0.1:5432/db")
    with pytest.raises(SettingsError, match="DATABASE_URL malformed") as error:
        load_settings(tmp_path / "absent.env")
    assert "Secret99" not in str(error.value) and "Sup3rPw" not in str(error.value)


@pytest.mark.parametrize("url", ["postgresql://u:p%2Fw%40x@127.0.0.1:5432/db?sslmode=disable",
                                 "postgresql:///db?host=/var/run/postgresql",
                                 "host=127.0.0.1 password=a@b/c dbname=db"])
def test_database_urls_with_encoded_or_keyword_passwords_are_taken(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    assert load_settings(tmp_path / "absent.env").database_url == url


@pytest.mark.parametrize(("name", "value", "message"), [
    ("LOG_DIR", "", "LOG_DIR is empty: give a path, or unset it for the default"),
    ("SITES_FILE", " ", "SITES_FILE is empty: give a path, or unset it for the default"),
    ("EMBEDDED_PG_DIR", "", "EMBEDDED_PG_DIR is empty"),
    ("FORECAST_VARIABLES", "temperature@²",  # was a raw ValueError from int()
     "FORECAST_VARIABLES entry 'temperature@²' is not NAME or NAME@LEVEL"),
])
def test_empty_paths_and_odd_levels_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                              name: str, value: str, message: str) -> None:
    """An empty path named the project folder itself (the embedded server's data there)."""
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=f"^{re.escape(message)}"):
        load_settings(tmp_path / "absent.env")


@pytest.mark.parametrize(("when", "text"), [
    (datetime(2022, 1, 1, 6, 0, 0, 999_999, tzinfo=timezone.utc), "2022-01-01T06:00:00Z"),
    (datetime(1, 1, 1, 6), "0001-01-01T06:00:00Z"),  # was "1-01-01T06:00:00Z"
    (datetime(999, 12, 31, 18, tzinfo=timezone(timedelta(hours=2))), "0999-12-31T16:00:00Z"),
])
def test_iso_utc_has_four_digit_years_and_whole_seconds(when: datetime, text: str) -> None:
    assert iso_utc(when) == text
