#!/usr/bin/env bash
# CTest fixture step: writes OUT.json (chat-template renders by @huggingface/jinja) when the npm
# oracles are installed in ORACLE_DIR. Without them it writes nothing and the chat-template
# oracle tests report SKIPPED.
#   gen_template_oracle.sh ORACLE_DIR OUT.json
set -u
here=$(cd "$(dirname "$0")" && pwd)
oracle=$1
out=$2
if [ ! -d "$oracle/node_modules/@huggingface/jinja" ] || ! command -v node >/dev/null; then
    echo "npm oracles not installed in $oracle: chat-template oracle tests will be SKIPPED"
    rm -f "$out"
    exit 0
fi
node "$here/template_oracle.mjs" "$oracle/node_modules" "$here/templates" "$out.tmp" && mv "$out.tmp" "$out"
