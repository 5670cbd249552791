"""The explicit environment the tests give the programs they run as subprocesses.

A developer's settings (DATABASE_URL, FORECAST_VARIABLES, GRAPHCAST_API_TOKEN, ...) and
their `.env` must not change what a test checks, so subprocesses get only how to find
programs and temporary space, the session's engine cache folder (never the user's), plus
ENV_FILE="" (no `.env` at all), plus what the test sets.
"""
from __future__ import annotations

import os

PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TEMP", "TMP", "SYSTEMROOT",
                  "WINDIR", "USERPROFILE")
# Set for the whole session by tests/conftest.py's engine_cache_dir: built graphs and
# compiled kernels are shared by the session's processes, and ~/.cache is left alone.
SESSION_CACHE = ("GRAPHCAST_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR")


def clean_environment(**settings: str) -> dict[str, str]:
    """PASSED_THROUGH and SESSION_CACHE from this process's environment, ENV_FILE="", then
    `settings`."""
    return {**{key: os.environ[key] for key in PASSED_THROUGH + SESSION_CACHE
               if key in os.environ},
            "ENV_FILE": "", **settings}
