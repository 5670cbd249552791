"""Secrets never reach the log, stderr or the ledger; external text cannot forge log lines."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from psycopg2.extensions import make_dsn

from tests.modules.contract_api_server import ContractApi
from tests.modules.job_helpers import (
    PROJECT_ROOT,
    JobRunner,
    clean_environment,
    ledger,
    predictions,
)

INIT = "2022-01-01T06:00"
PASSWORD = "pw%@:\nSecr3t"  # %, @, : and a newline: all need care in a URL
TOKEN = "tok-9f8e7d6c5b4a"
FORGED = "2026-01-01 00:00:00,000 INFO forecast_job: summary init_time=x status=succeeded"


def _everything(result_output: str, log_file: Path, url: str) -> str:
    reasons = " ".join(str(row[2]) for row in ledger(url))
    log = log_file.read_text() if log_file.exists() else ""
    return "\n".join((result_output, log, reasons))


def _assert_no_secret(text: str) -> None:
    for fragment in ("Secr3t", "pw%@", "pw%25", TOKEN):
        assert fragment not in text, fragment


def test_malformed_database_url_is_one_line_without_the_password(run_job: JobRunner,
                                                                  era5_db: str) -> None:
    raw = f"postgresql://dev_user:{PASSWORD}@127.0.0.1:9/trading_data"  # not percent-encoded
    result = run_job("--init-time", INIT, DATABASE_URL=raw)
    assert result.returncode == 2, result.output
    assert "DATABASE_URL malformed" in result.output
    assert len(result.output.strip().splitlines()) == 1
    _assert_no_secret(_everything(result.output, result.log_file, era5_db))
    assert ledger(era5_db) == []


def test_secrets_echoed_by_the_api_are_masked_everywhere(run_job: JobRunner, era5_db: str,
                                                         api: ContractApi) -> None:
    api.token = TOKEN
    api.failures_before_success = 1
    api.detail = f"proxy echo: {PASSWORD} auth {TOKEN}"
    url = make_dsn(era5_db, password=PASSWORD)  # trust auth: the password is not checked
    result = run_job("--init-time", INIT, DATABASE_URL=url, GRAPHCAST_API_TOKEN=TOKEN)
    assert result.returncode == 4, result.output
    everything = _everything(result.output, result.log_file, era5_db)
    _assert_no_secret(everything)
    reason = ledger(era5_db)[0][2]
    assert "HTTP 500" in reason and "***" in reason and "\n" not in reason


def test_token_with_a_newline_is_refused_without_echo(run_job: JobRunner, era5_db: str) -> None:
    result = run_job("--init-time", INIT, GRAPHCAST_API_TOKEN="abc\nSecr3t")
    assert result.returncode == 2
    assert "GRAPHCAST_API_TOKEN" in result.output
    _assert_no_secret(result.output)
    assert ledger(era5_db) == []


def test_api_detail_cannot_forge_a_log_line(run_job: JobRunner, era5_db: str,
                                            api: ContractApi) -> None:
    api.failures_before_success = 1
    api.detail = f"boom\n{FORGED}\r\x1b[2K"
    result = run_job("--init-time", INIT)
    assert result.returncode == 4
    lines = result.log_file.read_text().splitlines()
    assert not any(line.startswith(FORGED) for line in lines)
    assert any("boom\\n2026-01-01" in line for line in lines)
    assert "\x1b" not in result.log_file.read_text()
    assert "\n" not in ledger(era5_db)[0][2]


def test_site_name_with_a_newline_is_refused(run_job: JobRunner, era5_db: str,
                                             tmp_path: Path) -> None:
    sites = tmp_path / "sites.csv"
    sites.write_text(f'name,latitude,longitude\n"Paris\n{FORGED}",48.85,2.35\n')
    result = run_job("--init-time", INIT, SITES_FILE=str(sites))
    assert result.returncode == 2
    assert "control character" in result.output and f"{sites}:2" in result.output
    assert not any(line.startswith(FORGED) for line in result.output.splitlines())
    assert predictions(era5_db) == []


@pytest.mark.parametrize("program", [["-m", "modules.era5_loader", "status", "--days", "1"],
                                     ["-m", "modules.verification", "--plot-dir", "unused"],
                                     ["-m", "modules.query", "SELECT 1"]])
def test_every_program_reports_a_malformed_database_url_alike(program: list[str],
                                                              tmp_path: Path) -> None:
    raw = f"postgresql://dev_user:{PASSWORD}@127.0.0.1:9/trading_data"
    env = {**clean_environment(), "DATABASE_URL": raw}
    done = subprocess.run([sys.executable, *program], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "DATABASE_URL malformed" in done.stderr
    _assert_no_secret(done.stdout + done.stderr)
