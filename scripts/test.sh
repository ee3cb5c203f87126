#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh) and runs every test: unit, integration,
# real-data (../shared) and the time-bounded fuzz runs. GPU tests (label "gpu")
# run only where a GPU is present; slow and soak tests carry their own labels.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
cd build
ctest --output-on-failure -j "$(nproc)" "$@"
