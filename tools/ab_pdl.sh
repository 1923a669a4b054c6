#!/bin/bash
# Runs on the GPU machine over a build packed by tools/device_pack.sh: the CUDA op tests, then `nibble bench`
# on synthetic Qwen3-8B checkpoints with programmatic dependent launch on (default) and off
# (NIBBLE_NO_PDL=1), in one run. Usage: bash tools/ab_pdl.sh [SCHEME...]
set -u
OUT=${OUT:-/tmp/gpu-out}
bash tools/gpu_check.sh tests 2>&1 | tail -4
N=.device/nibble
export LD_LIBRARY_PATH=$PWD/.device/lib
for scheme in "${@:-nvfp4a16}"; do
  d=/tmp/q8-$scheme
  [ -d "$d" ] || $N synth --config models/configs/qwen3-8b.json --scheme "$scheme" "$d" > /dev/null 2>&1
  for pdl in on off; do
    env $([ $pdl = off ] && echo NIBBLE_NO_PDL=1) $N bench --model "$d" --device cuda --batch 1,4,16 --json \
      > "$OUT/pdl-$scheme-$pdl.json" 2> /dev/null
    python3 - "$OUT/pdl-$scheme-$pdl.json" "$scheme pdl $pdl" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
print(sys.argv[2], ' '.join('b%d %.3f ms (%.1f%%)' % (d['batch'], d['ms_per_step'], d['roofline_pct']) for d in j['decode']))
PY
  done
done
