#!/usr/bin/env bash
# Fails when a C++/CUDA source is not formatted as .clang-format says (fix with scripts/format.sh).
# Exit 77 (SKIPPED in CTest) when clang-format is not installed.
set -u
cd "$1" || exit 2
fmt=$(command -v clang-format-14 || command -v clang-format) || { echo "SKIPPED: clang-format not found"; exit 77; }
mapfile -t files < <(git ls-files '*.h' '*.cpp' '*.cu' '*.cuh' 2>/dev/null || find src tests bench -name '*.h' -o -name '*.cpp' -o -name '*.cu')
((${#files[@]})) || { echo "no sources found"; exit 1; }
"$fmt" --dry-run --Werror "${files[@]}" && echo "${#files[@]} files formatted"
