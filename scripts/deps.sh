#!/usr/bin/env bash
# Installs what nibble needs from Debian's packages, when missing. As root it runs apt-get; otherwise it
# prints the exact apt line to run and fails. The CUDA toolkit is optional: with nvcc found (PATH or
# /usr/local/cuda) the CUDA backend is built too.
set -euo pipefail

packages=(
    cmake ninja-build g++ pkg-config git
    nlohmann-json3-dev libfmt-dev libcpp-httplib-dev libpcre2-dev libutf8proc-dev
    libgtest-dev clang libclang-rt-14-dev clang-format
    nodejs npm
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node/npm may come from elsewhere (nodesource); accept the commands when present.
if command -v node >/dev/null && command -v npm >/dev/null; then
    keep=()
    for p in "${missing[@]}"; do [[ $p == nodejs || $p == npm ]] || keep+=("$p"); done
    missing=("${keep[@]+"${keep[@]}"}")
fi

if ((${#missing[@]} == 0)); then
    exit 0
fi
if [[ $(id -u) -eq 0 ]]; then
    echo "nibble: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    echo "nibble: missing packages; run:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
