#!/usr/bin/env bash
# Create .venv (if missing), install the requirement sets named as arguments, then the
# project itself in editable mode, so that its packages and console scripts come from this
# working copy and its defaults (.env, logs/, .pgdata/) resolve here.
# Re-running is quick: pip skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" "${@/#/-r}"
"${pip[@]}" --no-deps --editable .
