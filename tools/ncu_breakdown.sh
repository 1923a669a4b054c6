#!/bin/bash
# Runs on the GPU machine over a build packed by tools/device_pack.sh: per-kernel GPU time of a few decode
# steps (`nibble bench --eager`, so that every kernel is a launch ncu sees; a 1-token prompt, so that the
# prefill runs decode-shaped kernels too), grouped by kernel name, from
# Nsight Compute's duration metric (clocks left alone). Usage: bash tools/ncu_breakdown.sh SCHEME BATCH
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
[ -f .device/pack.tar.xz ] && tar xJf .device/pack.tar.xz -C .device
export LD_LIBRARY_PATH=$PWD/.device/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
N=.device/nibble
scheme=${1:-nvfp4a16}
batch=${2:-1}
d=/tmp/q8-$scheme
[ -d "$d" ] || $N synth --config models/configs/qwen3-8b.json --scheme "$scheme" "$d" > /dev/null 2>&1
ncu --clock-control none --metrics gpu__time_duration.sum --csv --log-file "$OUT/ncu-$scheme-b$batch.log" \
  $N bench --model "$d" --device cuda --batch "$batch" --prompt-len 1 --gen-len 6 --reps 1 --eager \
  > "$OUT/ncu-$scheme-b$batch.out" 2> "$OUT/ncu-$scheme-b$batch.err"
python3 - "$OUT/ncu-$scheme-b$batch.log" "$scheme batch $batch" "$OUT/ncu-$scheme-b$batch.err" <<'PY'
import csv, os, sys, collections
def text(p):
    return open(p, errors='replace').read() if os.path.exists(p) else ''
rows = [r for r in csv.reader(text(sys.argv[1]).splitlines()) if len(r) > 10]
if not rows:  # ncu wrote no report (the log has its CSV): show why
    print(sys.argv[2], 'no ncu report;', text(sys.argv[1])[-600:], text(sys.argv[3])[-600:])
    sys.exit(0)
head = rows[0]
ki, mi, vi, ui = (head.index(c) for c in ('Kernel Name', 'Metric Name', 'Metric Value', 'Metric Unit'))
scale = {'nsecond': 1.0, 'usecond': 1e3, 'msecond': 1e6, 'second': 1e9}
tot = collections.defaultdict(float); cnt = collections.Counter()
for r in rows[1:]:
    if r[mi] != 'gpu__time_duration.sum': continue
    name = r[ki].split('(')[0].split('<')[0][:60]
    tot[name] += float(r[vi].replace(',', '')) * scale.get(r[ui], 1.0); cnt[name] += 1
all_ns = sum(tot.values())
print(sys.argv[2], 'total kernel time %.2f ms over %d kernels' % (all_ns / 1e6, sum(cnt.values())))
for n, t in sorted(tot.items(), key=lambda x: -x[1])[:14]:
    print('  %-60s %6d calls %9.3f ms %5.1f %%' % (n, cnt[n], t / 1e6, 100 * t / all_ns))
PY
