#!/usr/bin/env bash
# Command 1 of the README: installs what is missing, builds, and runs the main job: `nibble run` on the
# bundled model (CPU), then `nibble inspect` on a synthetic Qwen3-8B-shaped NVFP4 checkpoint (layout only:
# sparse files, no data) for its bytes per token and decode bound.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh
build=${NIBBLE_BUILD:-build}
"$build/nibble" run --prompt "def fibonacci(n):" --max-tokens 64 --temperature 0
demo=$build/demo/qwen3-8b-nvfp4
rm -rf "$demo"
mkdir -p "$build/demo"
"$build/nibble" synth --config models/configs/qwen3-8b.json --scheme nvfp4 --no-data "$demo"
"$build/nibble" inspect "$demo"
