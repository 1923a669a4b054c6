#!/usr/bin/env bash
# Command 2 of the README: installs what is missing, builds, and runs every test through CTest.
# Tests that need a GPU or the npm registry report SKIPPED when those are absent, never passed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh "$@"
build=${NIBBLE_BUILD:-build}
# ctest runs one test per core; each test's OpenMP code runs single-threaded so that tests do not
# oversubscribe the cores (a 2-thread team on a busy core waits a scheduler slice per parallel region;
# results do not depend on the thread count: each output is computed by one thread in a fixed order).
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} ctest --test-dir "$build" --output-on-failure -j"$(nproc)" --timeout 900
