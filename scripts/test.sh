#!/usr/bin/env bash
# Run the whole test suite: lint, type check, pytest (sets up .venv first if needed).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$ROOT"
ruff check edgelm tests benchmarks android_bridge
mypy
python -m pytest "$@"
