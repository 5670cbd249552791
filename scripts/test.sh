#!/usr/bin/env bash
# One command for the whole test suite on a fresh machine: environment, dependencies, tests.
# Extra arguments go to pytest (e.g. ./scripts/test.sh -k ingest).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh requirements.txt graphcast_api/requirements.txt requirements-dev.txt
exec .venv/bin/python -m pytest "$@"
