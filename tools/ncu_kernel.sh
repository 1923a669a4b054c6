#!/bin/bash
# Runs on the GPU machine over a build packed by tools/device_pack.sh: Nsight Compute's speed-of-light,
# scheduler, warp-state and instruction sections (clocks left alone) for the kernels whose names match
# REGEX in `nibble bench --kernels` on one shape and batch, and the SASS of those kernels.
#   bash tools/ncu_kernel.sh REGEX SHAPE BATCH FORMAT [launches]
# e.g. bash tools/ncu_kernel.sh stream_kernel 4096x12288 1 nvfp4
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
[ -f .device/pack.tar.xz ] && [ ! -x .device/nibble ] && tar xJf .device/pack.tar.xz -C .device
export LD_LIBRARY_PATH=$PWD/.device/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
re=$1 shape=$2 batch=$3 fmt=$4 count=${5:-2}
tag=$(echo "$re-$shape-m$batch-$fmt" | tr -c 'A-Za-z0-9_.-' _)
ncu --clock-control none -k "regex:$re" --launch-skip 4 --launch-count "$count" \
  --section SpeedOfLight --section SchedulerStats --section WarpStateStats --section InstructionStats \
  --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats \
  .device/nibble bench --kernels --shapes "$shape" --batch "$batch" --formats "$fmt" --reps 3 \
  > "$OUT/ncu-$tag.txt" 2>&1
echo "ncu rc $? -> $OUT/ncu-$tag.txt"
grep -E "Duration|DRAM Throughput|Issue Slots Busy|Issued Ipc Active|Executed Instructions  |No Eligible|Warp Cycles Per Issued|Eligible Warps|Registers Per|Achieved Occupancy|Stall" \
  "$OUT/ncu-$tag.txt" | head -40
cuobjdump -sass .device/nibble 2>/dev/null | awk -v re="$re" '/Function :/ {p = ($0 ~ re)} p' \
  > "$OUT/sass-$tag.txt"
echo "sass lines: $(wc -l < "$OUT/sass-$tag.txt")"
