#!/bin/sh
# Runs a libFuzzer binary for a bounded time. Exits 77 (CTest: skipped, printed as SKIPPED) when the
# fuzzer could not be built here, so that a missing clang never looks like a passing fuzz run.
# usage: run_fuzz.sh BINARY SKIP_REASON WORK_CORPUS SEED_CORPUS DICT SECONDS
bin=$1
reason=$2
work=$3
seeds=$4
dict=$5
secs=$6
if [ -z "$bin" ]; then
    echo "SKIPPED: $reason"
    exit 77
fi
if [ ! -x "$bin" ]; then
    echo "SKIPPED: $bin was not built (build the target fuzz_safetensors)"
    exit 77
fi
mkdir -p "$work/corpus" "$work/artifacts"
exec "$bin" -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -dict="$dict" -artifact_prefix="$work/artifacts/" "$work/corpus" "$seeds"
