#!/bin/bash
# Runs on the GPU machine over a build packed by tools/device_pack.sh: `nibble bench` on one synthetic
# Qwen3-8B checkpoint under several environments (A/B switches), interleaved over ROUNDS rounds in one run,
# and prints each variant's median prefill tok/s and decode ms/step per batch size. "-" is the default
# environment; a variant of several settings is one quoted argument; BIN=PATH in a variant runs that binary
# (an A/B build packed as nibble-VARIANT) instead of .device/nibble.
#   SCHEME=nvfp4a16 BENCH_ARGS='--batch 1' ROUNDS=2 bash tools/ab_env.sh - NIBBLE_GEMV_HFMA2=1 ...
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
[ -f .device/nibble ] || tar xJf .device/pack.tar.xz -C .device
export LD_LIBRARY_PATH=$PWD/.device/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
N=.device/nibble
scheme=${SCHEME:-nvfp4a16}
d=/tmp/q8-$scheme
[ -d "$d" ] || $N synth --config models/configs/qwen3-8b.json --scheme "$scheme" "$d" > /dev/null 2>&1
tag=${AB_TAG:-ab-$scheme}
for r in $(seq 1 "${ROUNDS:-1}"); do
  i=0
  for v in "$@"; do
    i=$((i + 1))
    envs=()
    [ "$v" != - ] && read -r -a envs <<< "$v"
    bin=$N
    for e in "${envs[@]}"; do [ "${e%%=*}" = BIN ] && bin=${e#BIN=}; done
    env "${envs[@]}" $bin bench --model "$d" --device cuda ${BENCH_ARGS:---batch 1} --json \
      > "$OUT/$tag-v$i-r$r.json" 2>> "$OUT/$tag.err" || echo "variant '$v' round $r failed: rc $?"
  done
done
python3 - "$OUT" "$tag" "$@" <<'PY'
import glob, json, statistics, sys
out, tag, variants = sys.argv[1], sys.argv[2], sys.argv[3:]
for i, v in enumerate(variants, 1):
    runs = []
    for f in sorted(glob.glob('%s/%s-v%d-r*.json' % (out, tag, i))):
        try:
            runs.append(json.load(open(f)))
        except Exception:
            pass
    if not runs:
        print('%-48s no result' % v)
        continue
    pre = statistics.median(r['prefill']['tok_per_s'] for r in runs)
    cells = []
    for b in sorted({d['batch'] for r in runs for d in r['decode']}):
        ms = [d['ms_per_step'] for r in runs for d in r['decode'] if d['batch'] == b]
        pct = [d['roofline_pct'] for r in runs for d in r['decode'] if d['batch'] == b]
        cells.append('b%d %.3f ms %.1f%%' % (b, statistics.median(ms), statistics.median(pct)))
    print('%-48s prefill %8.0f tok/s | %s (%d runs)' % (v, pre, ' | '.join(cells), len(runs)))
PY
