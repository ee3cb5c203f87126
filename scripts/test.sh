#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh) and runs every test: unit, integration,
# real-data (../shared) and the time-bounded fuzz runs. GPU tests (label "gpu")
# run only where a GPU is present; slow and soak tests carry their own labels.
# Then the ThreadSanitizer run (scripts/tsan.sh: the tests labelled "tsan",
# rebuilt with -fsanitize=thread in build-tsan), unless ctest arguments were
# given (they select from the main suite only) or PACKD_TSAN=0. Both runs
# always happen; the script fails if either does.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
status=0
(cd build && ctest --output-on-failure -j "$(nproc)" "$@") || status=$?
if [ $# -eq 0 ] && [ "${PACKD_TSAN:-1}" != 0 ]; then
  scripts/tsan.sh || status=$?
fi
exit "$status"
