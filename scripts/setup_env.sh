#!/usr/bin/env bash
# Create .venv (if missing or without pip), install the requirement sets named as arguments, then the
# project itself in editable mode, so that its packages and console scripts come from this
# working copy and its defaults (.env, logs/, .pgdata/) resolve here.
# Re-running is quick: pip skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
# A run on a machine without the venv module's ensurepip (Debian's python3-venv) leaves a
# .venv without pip, on which every later run would fail: made anew (--clear) then too.
if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
    "$PYTHON" -m venv --clear .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" "${@/#/-r}"
"${pip[@]}" --no-deps --editable .
