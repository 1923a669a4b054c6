#!/bin/bash
# Runs on the GPU machine over a build packed by tools/device_pack.sh: the L2-prefetch switches of the
# weight-streaming GEMV (linear_stream.h: NIBBLE_GEMV_L2PF, NIBBLE_GEMV_LATE, NIBBLE_GEMV_PREFETCH_NEXT; and
# NIBBLE_PDL_EARLY, kernel_util.cuh) in one run: their bit-identity op test and the linear op tests, the
# end-to-end GPU-vs-CPU tests with all of them on, `nibble bench` at batch 1 under each (interleaved,
# medians: tools/ab_env.sh; an A/B build packed as nibble-head joins as BIN=.device/nibble-head), and the
# GEMV timeline (NIBBLE_GEMV_TRACE, tools/gemv_timeline.py) of the default and of every switch on.
#   bash tools/ab_prefetch.sh [SCHEME]   (default nvfp4a16; ROUNDS=3)
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
[ -f .device/pack.tar.xz ] && [ ! -f .device/nibble ] && tar xJf .device/pack.tar.xz -C .device
export LD_LIBRARY_PATH=$PWD/.device/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
scheme=${1:-nvfp4a16}
all="NIBBLE_GEMV_LATE=1 NIBBLE_GEMV_L2PF=2 NIBBLE_GEMV_PREFETCH_NEXT=16 NIBBLE_PDL_EARLY=1"
GTEST_FILTER='cuda_backend.gemv_prefetch_modes_are_bit_identical:cuda_backend.linear_every_format:cuda_backend.fused_qkv_and_swiglu:cuda_backend.norms_and_residual_adds_fused_into_linears' \
  TESTS_TAG=prefetch bash tools/gpu_check.sh tests 2>&1 | tail -3
env $all GTEST_FILTER='*cuda_end*:cuda_attention.*' TESTS_TAG=prefetch-e2e bash tools/gpu_check.sh tests 2>&1 | tail -3
variants=(- NIBBLE_GEMV_L2PF=2 NIBBLE_GEMV_LATE=1 "NIBBLE_GEMV_LATE=1 NIBBLE_GEMV_L2PF=2"
          NIBBLE_GEMV_PREFETCH_NEXT=16 "NIBBLE_GEMV_PREFETCH_NEXT=16 NIBBLE_PDL_EARLY=1" "$all")
[ -x .device/nibble-head ] && variants=(BIN=.device/nibble-head "${variants[@]}")
AB_TAG=prefetch-$scheme SCHEME=$scheme BENCH_ARGS='--batch 1' ROUNDS=${ROUNDS:-3} bash tools/ab_env.sh "${variants[@]}"
d=/tmp/q8-$scheme
for v in default all; do
  env $([ $v = all ] && echo "$all") NIBBLE_GEMV_TRACE="$OUT/gemv-$v.bin" .device/nibble bench --model "$d" \
    --device cuda --batch 1 > /dev/null 2>&1
  echo "== GEMV timeline, $v"
  python3 tools/gemv_timeline.py "$OUT/gemv-$v.bin" | tail -n +4
  xz -T4 -f "$OUT/gemv-$v.bin"
done
