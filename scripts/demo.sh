#!/usr/bin/env bash
# The README's first command: set-up, then the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/tvm-mpq demo "$@"
