#!/usr/bin/env bash
# Command 1 of the README: installs what is missing, builds, and runs the main job.
# Until the CPU engine lands the main job is `nibble inspect` on a synthetic Qwen3-8B-shaped NVFP4
# checkpoint (its layout only: sparse files, no data), which prints bytes per token and the decode bound.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh
build=${NIBBLE_BUILD:-build}
demo=$build/demo/qwen3-8b-nvfp4
rm -rf "$demo"
mkdir -p "$build/demo"
"$build/nibble" synth --config models/configs/qwen3-8b.json --scheme nvfp4 --no-data "$demo"
"$build/nibble" inspect "$demo"
