"""Run one SQL query against the job's database (embedded or DATABASE_URL), print the rows.

    python -m modules.query "SELECT forecast_time, COUNT(*), AVG(value) FROM predictions
                             GROUP BY forecast_time ORDER BY forecast_time;"
"""
from __future__ import annotations

import sys

import psycopg2

from config.settings import SettingsError, load_settings
from graphcast_contract.errors import DatabaseError
from modules.job.logs import clean, redact, register_secrets
from modules.storage.db import open_database


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"configuration error: {clean(exc)}", file=sys.stderr)
        return 2
    register_secrets(settings.secrets())
    try:
        conn = open_database(settings)
        with conn, conn.cursor() as cur:
            cur.execute(argv[0])
            if cur.description is None:
                print(f"{cur.rowcount} row(s) affected")
                return 0
            print(" | ".join(col.name for col in cur.description))
            for row in cur.fetchall():
                print(" | ".join(str(value) for value in row))
        conn.close()
    except (DatabaseError, psycopg2.Error) as exc:
        print(f"error: {redact(str(exc).strip())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
