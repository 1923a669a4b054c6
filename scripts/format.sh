#!/usr/bin/env bash
# Formats every tracked C++/CUDA source in place with .clang-format.
set -euo pipefail
cd "$(dirname "$0")/.."
git ls-files '*.h' '*.cpp' '*.cu' '*.cuh' | xargs clang-format -i
