#!/bin/bash
# Runs on the GPU machine (the `run` tool, repository root) over a build packed by tools/device_pack.sh:
# the CUDA op tests, `nibble bench --kernels`, then `nibble bench` on synthetic Qwen3-8B checkpoints in
# each scheme. Logs and JSON go to $OUT; a short summary is printed last.
#   bash tools/gpu_check.sh [tests|kernels|variants|e2e]...   (default: tests kernels e2e)
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
[ -f .device/pack.tar.xz ] && tar xJf .device/pack.tar.xz -C .device
export LD_LIBRARY_PATH=$PWD/.device/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# The tests find the models through the source path compiled in (the development checkout).
src=$(strings .device/test_cuda_ops 2>/dev/null | grep -m1 -E '^/.*/main$' || echo /work/main)
[ -e "$src" ] || { mkdir -p "$(dirname "$src")"; ln -s "$PWD" "$src"; }
N=${NIBBLE_BIN:-.device/nibble}  # an A/B build: NIBBLE_BIN=.device/nibble-VARIANT
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(tests kernels e2e)
summary=()
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem,temperature.gpu --format=csv,noheader
for p in "${parts[@]}"; do
  case $p in
    tests)  # TESTS_TAG names the log (tests-TAG.log) when one call runs the tests more than once
      log="$OUT/tests${TESTS_TAG:+-$TESTS_TAG}.log"
      .device/test_cuda_ops ${GTEST_FILTER:+--gtest_filter=$GTEST_FILTER} > "$log" 2>&1
      summary+=("tests${TESTS_TAG:+ $TESTS_TAG} rc $?: $(grep -c '^\[       OK' "$log") ok, $(grep -c '^\[  FAILED' "$log") failed lines")
      grep -E '^\[  FAILED' "$log" | sort -u | head -20
      grep -E -A3 'Failure$' "$log" | head -40
      grep -E '^(e2e|linear) ' "$log" | head -80 > "${log%.log}-short.txt"
      grep -E '^attention (prefill-tc|.*prefill .*TFLOP)' "$log" | head -40
      ;;
    variants)  # NVFP4 GEMV design variants against the production kernel (bench/gemv_variants.cu)
      .device/gemv_variants ${VARIANT_ARGS:-} > "$OUT/variants.txt" 2>&1
      summary+=("variants rc $?")
      cat "$OUT/variants.txt"
      ;;
    kernels)
      $N bench --kernels ${KERNEL_ARGS:-} > "$OUT/kernels.txt" 2>&1
      summary+=("kernels rc $?")
      if [ -n "${KERNEL_AB:-}" ]; then  # the same with an A/B environment (e.g. NIBBLE_GEMV_LEGACY=1)
        env $KERNEL_AB $N bench --kernels ${KERNEL_ARGS:-} > "$OUT/kernels-ab.txt" 2>&1
        echo "== $KERNEL_AB"; grep -A40 '^% of the copy' "$OUT/kernels-ab.txt"
      fi
      echo "== default"; grep -A40 '^% of the copy' "$OUT/kernels.txt"
      ;;
    e2e)
      for scheme in ${SCHEMES:-nvfp4a16 fp8-dynamic bf16}; do
        d=/tmp/q8-$scheme
        [ -d "$d" ] || $N synth --config models/configs/qwen3-8b.json --scheme "$scheme" "$d" > "/tmp/synth-$scheme.log" 2>&1
        $N bench --model "$d" --device cuda ${BENCH_ARGS:---batch 1,4,16 --compare-eager} --json > "$OUT/bench-$scheme.json" 2>> "$OUT/bench.err"
        rc=$?
        summary+=("bench $scheme rc $rc")
        tail -n 3 "$OUT/bench.err"
        python3 - "$OUT/bench-$scheme.json" <<'PY' || true
import json, sys
j = json.load(open(sys.argv[1]))
print(sys.argv[1].split('/')[-1], 'copy', round(j['copy_bandwidth']['gbps']), 'GB/s', 'prefill', round(j['prefill']['tok_per_s']), 'tok/s')
for d in j['decode']:
    e = d.get('eager', {})
    print('  batch %3d graphs %s: %7.3f ms/step %8.1f tok/s %6.0f GB/s %5.1f %% | eager %s ms' % (d['batch'], d['graphs'], d['ms_per_step'], d['tok_per_s'], d['achieved_gbps'], d['roofline_pct'], e.get('ms_per_step')))
PY
      done
      ;;
  esac
done
printf '%s\n' "${summary[@]}"
