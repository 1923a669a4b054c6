#!/usr/bin/env bash
# Configures and builds nibble into ${NIBBLE_BUILD:-build} (Release, Ninja). Extra arguments go to CMake,
# e.g. -DNIBBLE_CUDA=OFF or -DNIBBLE_CUDA_ARCHS=90a.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${NIBBLE_BUILD:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$build" -j"$(nproc)"
