#!/usr/bin/env bash
# Set everything up on a fresh machine and run the main job on the default model.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$ROOT"
edgelm quickstart
