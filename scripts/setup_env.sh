#!/usr/bin/env bash
# Create .venv (if missing) and install the requirement sets named as arguments.
# Re-running is quick: pip skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check "${@/#/-r}"
