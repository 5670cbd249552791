"""The report (table and PNG) and the command line: output, exit codes, nothing partial."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from psycopg2.extensions import connection as Connection

from graphcast_contract.errors import ExitCode
from modules.verification.cli import main
from modules.verification.report import format_table, write_plots
from modules.verification.scores import verify
from tests.modules.verification.store_helpers import GRID_10, MODEL, T0, store_field, store_forecast

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SITES = [("Paris", 48.86, 2.35), ("Berlin", 52.52, 13.40)]


def _store_two_cycles(conn: Connection) -> None:
    """Two cycles with constant fields: forecasts 1 K too warm, persistence 2 K too cold."""
    for hours in (0, 6, 12):
        store_field(conn, T0 + timedelta(hours=hours), np.full(GRID_10.shape, 280.0 + hours / 3))
    for init in (T0, T0 + timedelta(hours=6)):
        t0_value = 280.0 + (init - T0).total_seconds() / 3600 / 3
        store_forecast(conn, init, SITES, {6: [t0_value + 3.0] * 2})


def test_png_is_written_and_valid(conn: Connection, tmp_path: Path) -> None:
    _store_two_cycles(conn)
    [path] = write_plots(verify(conn).scores, tmp_path / "plots")
    assert path == tmp_path / "plots" / f"verification_{MODEL}.png"
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
    assert image.std() > 0  # something was drawn


def test_table_shows_scores_by_lead_and_site(conn: Connection) -> None:
    _store_two_cycles(conn)
    table = format_table(verify(conn).scores)
    lines = table.splitlines()
    assert lines[0].startswith(f"{MODEL} - 2m_temperature (K)")
    [lead_line] = [line for line in lines if line.startswith("+6h")]
    # n, bias, MAE, RMSE, persistence RMSE, skill = 1 - 1/2
    assert lead_line.split()[1:] == ["4", "1.000", "1.000", "1.000", "2.000", "0.500"]
    assert any(line.split()[:2] == ["Berlin", "2"] for line in lines)
    assert format_table([]) == "No verified forecasts yet."


def test_cli_verifies_prints_and_plots(conn: Connection, clean_db: str, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    _store_two_cycles(conn)
    monkeypatch.setenv("DATABASE_URL", clean_db)
    assert main(["--plot-dir", str(tmp_path), "--model", MODEL]) == 0
    assert "+6h" in capsys.readouterr().out
    assert (tmp_path / f"verification_{MODEL}.png").read_bytes()[:8] == PNG_SIGNATURE
    assert main(["--plot-dir", str(tmp_path), "--since", "2022-01-01"]) == 0
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM verification_pairs")
        assert cur.fetchone()[0] == 4


def test_cli_rejects_a_bad_date(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--since", "yesterday"])
    assert exit_info.value.code == 2
    assert "not an ISO 8601 date/time: 'yesterday'" in capsys.readouterr().err


def test_cli_database_unreachable(monkeypatch: pytest.MonkeyPatch,
                                  caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/none")
    assert main(["--plot-dir", "/nonexistent"]) == ExitCode.DATABASE
    assert "database error" in caplog.text


def test_cli_unwritable_plot_dir_keeps_the_scores(conn: Connection, clean_db: str,
                                                  tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    _store_two_cycles(conn)
    monkeypatch.setenv("DATABASE_URL", clean_db)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    assert main(["--plot-dir", str(blocker)]) == ExitCode.OUTPUT_FAILED
    assert f"cannot write plots to {blocker}" in caplog.text
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM forecast_scores WHERE site IS NULL")
        assert cur.fetchone()[0] == 1


def test_dollar_signs_in_names_are_plain_text(conn: Connection, tmp_path: Path) -> None:
    """matplotlib would read `$` as mathtext and fail on an unbalanced one."""
    from dataclasses import replace

    _store_two_cycles(conn)
    scores = [replace(s, model="Cast $\\v2$", site=f"{s.site} US$ hub $^$" if s.site else None)
              for s in verify(conn).scores]
    [path] = write_plots(scores, tmp_path / "plots")
    assert path.read_bytes()[:8] == PNG_SIGNATURE
