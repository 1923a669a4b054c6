#!/bin/bash
# Runs on the GPU machine over a build packed by tools/device_pack.sh: the timeline of every kernel of a
# `nibble bench` decode run, graph replays included (bench/kernel_trace.cpp, a CUPTI injection library:
# Nsight Systems is not installed there), cut into steps at GPU idle gaps, and where a decode step's time
# goes: per kernel, and between kernels per (previous, next) pair (tools/trace_gaps.py). CUPTI's kernel
# timestamps cost a little per kernel: compare the span with the bench's own ms/step (printed last).
#   bash tools/trace_gaps.sh SCHEME BATCH
# Writes $OUT/trace-SCHEME-bBATCH.{txt,out,err} and the trace as .csv.gz (tools/trace_gaps.py reads it
# back here: python3 tools/trace_gaps.py <(zcat F.csv.gz), with --step-len or --split-us to re-cut it).
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
[ -f .device/pack.tar.xz ] && [ ! -x .device/nibble ] && tar xJf .device/pack.tar.xz -C .device
export LD_LIBRARY_PATH=$PWD/.device/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
N=.device/nibble
scheme=${1:-nvfp4a16}
batch=${2:-1}
tag=trace-$scheme-b$batch
d=/tmp/q8-$scheme
[ -d "$d" ] || $N synth --config models/configs/qwen3-8b.json --scheme "$scheme" "$d" > /dev/null 2>&1
rm -f "$OUT/$tag.csv" "$OUT/$tag.csv.gz"
[ -f .device/libnibble_kernel_trace.so ] || echo "no .device/libnibble_kernel_trace.so: packed without CUPTI?"
CUDA_INJECTION64_PATH=$PWD/.device/libnibble_kernel_trace.so NIBBLE_TRACE_OUT=$OUT/$tag.csv \
  $N bench --model "$d" --device cuda --batch "$batch" --prompt-len 128 --gen-len 16 --reps 1 \
  > "$OUT/$tag.out" 2> "$OUT/$tag.err"
echo "bench rc $?; $(grep -h nibble_kernel_trace "$OUT/$tag.err" | tail -3)"
python3 tools/trace_gaps.py "$OUT/$tag.csv" --err "$OUT/$tag.err" --label "$scheme batch $batch" \
  > "$OUT/$tag.txt"
cat "$OUT/$tag.txt"
echo "the bench's own figures (this traced run):"
tail -n 6 "$OUT/$tag.out"
[ -f "$OUT/$tag.csv" ] && gzip -f "$OUT/$tag.csv"
