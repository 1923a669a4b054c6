#!/bin/bash
# Runs on the GPU machine over a build packed by tools/device_pack.sh: the CUDA backend op tests, then `nibble
# bench` on synthetic Qwen3-8B checkpoints with BF16 decode batches on tensor cores (default, from 3 rows) and
# on the CUDA-core GEMV (NIBBLE_BF16_TC_MIN_ROWS=17), in one run.
set -u
OUT=${OUT:-/tmp/gpu-out}
GTEST_FILTER='cuda_backend.*:CudaSampling.*' bash tools/gpu_check.sh tests 2>&1 | tail -5
N=.device/nibble
export LD_LIBRARY_PATH=$PWD/.device/lib
for scheme in nvfp4a16 bf16; do
  d=/tmp/q8-$scheme
  [ -d "$d" ] || $N synth --config models/configs/qwen3-8b.json --scheme "$scheme" "$d" > /dev/null 2>&1
  for v in 3 17; do
    NIBBLE_BF16_TC_MIN_ROWS=$v $N bench --model "$d" --device cuda --batch 1,4,10,16 --json > "$OUT/ab-$scheme-$v.json" 2>/dev/null
    python3 - "$OUT/ab-$scheme-$v.json" "$scheme tc_min_rows=$v" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
print(sys.argv[2], ' '.join('b%d %.3f ms (%.1f%%)' % (d['batch'], d['ms_per_step'], d['roofline_pct']) for d in j['decode']))
PY
  done
done
