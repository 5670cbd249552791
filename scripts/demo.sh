#!/usr/bin/env bash
# The quick start: environment, dependencies, then one forecast cycle end to end
# (scripts/demo.py). Options go to the demo: --offline, --live, --port N, --base-url URL.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh requirements.txt requirements-service.txt
exec .venv/bin/python scripts/demo.py "$@"
