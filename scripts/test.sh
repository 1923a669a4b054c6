#!/usr/bin/env bash
# Command 2 of the README: installs what is missing, builds, and runs every test through CTest.
# Tests that need a GPU or the npm registry report SKIPPED when those are absent, never passed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh "$@"
build=${NIBBLE_BUILD:-build}
ctest --test-dir "$build" --output-on-failure -j"$(nproc)" --timeout 900
