#!/usr/bin/env bash
# One command for the whole test suite on a fresh machine: environment, dependencies, tests.
#   ./scripts/test.sh            every test
#   ./scripts/test.sh --fast     all but the `slow` ones (the demo, GraphCast_small-scale runs),
#                                spread over the cores
# Other arguments go to pytest (e.g. ./scripts/test.sh -k ingest).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh requirements.txt requirements-service.txt requirements-backfill.txt requirements-dev.txt
if [ "${1:-}" = "--fast" ]; then
    shift
    set -- -m "not slow" -n auto "$@"   # one pytest-xdist worker per core
fi
# Tests never read the working copy's .env (ENV_FILE empty: no .env file at all).
ENV_FILE="" exec .venv/bin/python -m pytest "$@"
