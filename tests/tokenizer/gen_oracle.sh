#!/usr/bin/env bash
# CTest fixture step: writes OUT.json (the transformers.js ids for the test corpus) when the npm
# oracles are installed in ORACLE_DIR and OUT.json is missing or older than the generator.
# Without the oracles it writes nothing and the oracle tests report SKIPPED.
#   gen_oracle.sh ORACLE_DIR OUT.json
set -u
here=$(cd "$(dirname "$0")" && pwd)
oracle=$1
out=$2
if [ ! -d "$oracle/node_modules/@lenml/tokenizers" ] || ! command -v node >/dev/null; then
    echo "npm oracles not installed in $oracle: tokenizer oracle tests will be SKIPPED"
    rm -f "$out"
    exit 0
fi
if [ -f "$out" ] && [ "$out" -nt "$here/gen_oracle.mjs" ] && [ "$out" -nt "$here/corpus.mjs" ] &&
    [ "$out" -nt "$oracle/package.json" ]; then
    echo "tokenizer oracle up to date: $out"
    exit 0
fi
node "$here/gen_oracle.mjs" "$oracle/node_modules" "$out.tmp" && mv "$out.tmp" "$out"
