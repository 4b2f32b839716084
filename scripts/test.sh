#!/usr/bin/env bash
# The README's test command: set-up, then the whole test suite (slow tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q -n "${MPQ_TEST_JOBS:-2}" "$@"
