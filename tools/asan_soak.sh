#!/usr/bin/env bash
# A soak of nibble serve under AddressSanitizer + UndefinedBehaviorSanitizer (LeakSanitizer on):
# builds only the nibble binary into ${NIBBLE_ASAN_BUILD:-build-asan} (CPU, RelWithDebInfo,
# -fsanitize=address,undefined), serves the bundled model (4 KV slots, max_model_len 1024), drives it
# for SECONDS (default 60) with tests/server/load_client.mjs (16 streaming openai-npm clients a round,
# malformed requests, clients that disconnect), stops it with SIGTERM while 3 streams run and fails
# when the load client failed, the server's exit status is not 0 or a sanitizer reported anything
# (its log is printed then). About 30 s a round of the load client under the sanitizers on 2 cores.
#
# usage: tools/asan_soak.sh [SECONDS]
# env:   NIBBLE_ASAN_BUILD (build folder), JOBS (build parallelism, default 2),
#        NODE_MODULES (folder holding the openai npm package; default: the first build*/oracle/node_modules)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
build=${NIBBLE_ASAN_BUILD:-build-asan}
modules=${NODE_MODULES:-}
if [ -z "$modules" ]; then
    for d in build*/oracle/node_modules; do
        if [ -f "$d/openai/package.json" ]; then
            modules=$(realpath "$d")
            break
        fi
    done
fi
if [ -z "$modules" ] || [ ! -f "$modules/openai/package.json" ] || ! command -v node >/dev/null; then
    echo "asan_soak: needs node and the openai npm package (tests/oracle/install.sh DIR; NODE_MODULES=DIR/node_modules)"
    exit 2
fi

san="-fsanitize=address,undefined -fno-omit-frame-pointer"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNIBBLE_CUDA=OFF -DNIBBLE_STATIC_RUNTIME=OFF \
    -DCMAKE_CXX_FLAGS="$san" -DCMAKE_EXE_LINKER_FLAGS="$san" >/dev/null
cmake --build "$build" -j"${JOBS:-2}" --target nibble

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp /tmp/asan_soak.XXXXXX.log)
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=0
export OMP_NUM_THREADS=1
"$build/nibble" serve models/qwen3-tiny --host 127.0.0.1 --port "$port" --served-model-name tiny \
    --max-num-seqs 4 --max-num-batched-tokens 64 --max-model-len 1024 >"$log" 2>&1 &
pid=$!
up=0
for _ in $(seq 600); do
    if curl -sf "http://127.0.0.1:$port/health" >/dev/null; then
        up=1
        break
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
client_rc=0
if [ "$up" = 1 ]; then
    timeout $((secs + 300)) node tests/server/load_client.mjs "$modules" "http://127.0.0.1:$port/v1" tiny 1024 \
        "$secs" || client_rc=$?
else
    echo "asan_soak: the server did not come up"
    client_rc=1
fi
# Shut down with streams in flight (the stop path under the sanitizers too).
curls=()
for _ in 1 2 3; do
    curl -s -N "http://127.0.0.1:$port/v1/completions" -H 'Content-Type: application/json' \
        -d '{"prompt": "def f(x):", "max_tokens": 900, "ignore_eos": true, "stream": true}' >/dev/null &
    curls+=($!)
done
sleep 2
kill -TERM "$pid" 2>/dev/null || true
server_rc=0
for _ in $(seq 300); do  # 30 s: LeakSanitizer's exit scan is slow
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
    echo "asan_soak: the server did not exit within 30 s of SIGTERM"
    kill -KILL "$pid"
fi
wait "$pid" || server_rc=$?
wait "${curls[@]}" 2>/dev/null || true

reports=$(grep -cE "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: (Address|Undefined|Leak)" "$log" || true)
echo "asan_soak: ${secs} s, load client exit ${client_rc}, server exit ${server_rc}, sanitizer reports ${reports}"
if [ "$client_rc" != 0 ] || [ "$server_rc" != 0 ] || [ "$reports" != 0 ]; then
    echo "---- server log ($log) ----"
    cat "$log"
    exit 1
fi
rm -f "$log"
echo "asan_soak: clean"
