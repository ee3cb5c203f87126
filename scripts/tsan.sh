#!/usr/bin/env bash
# The ThreadSanitizer run: configures build-tsan (-DPACKD_SANITIZE=thread, no
# CUDA), builds only the tests labelled "tsan" (target packd_tsan_tests; see
# packd_tsan_tests in cmake/packd_helpers.cmake for adding one) and runs them.
# scripts/test.sh runs it after the main suite (PACKD_TSAN=0 skips it).
# Usage: scripts/tsan.sh [ctest arguments...]   e.g. scripts/tsan.sh -R placement
# Packages: scripts/setup.sh installs them (test.sh runs it first).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build_dir=build-tsan

if [ ! -f "$build_dir/build.ninja" ]; then
  # shellcheck disable=SC2086  # PACKD_CMAKE_ARGS is a list of words
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DPACKD_SANITIZE=thread -DPACKD_ENABLE_CUDA=OFF ${PACKD_CMAKE_ARGS:-}
fi
cmake --build "$build_dir" --parallel "$(nproc)" --target packd_tsan_tests

# halt_on_error: a report fails the test at once (exit code 66).
# second_deadlock_stack: both stacks of a lock-order inversion.
# suppressions: third-party races only (the file says why each is there).
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$root/scripts/tsan.supp ${TSAN_OPTIONS:-}"
cd "$build_dir"
ctest --output-on-failure -j "$(nproc)" -L tsan "$@"
