#!/bin/bash
# Runs on the GPU machine over a build packed by tools/device_pack.sh: `nibble serve --device cuda` on a
# synthetic Qwen3-8B NVFP4 checkpoint (with the real Qwen3 tokenizer, QWEN3_TOKENIZER=DIR holding
# tokenizer.json and tokenizer_config.json), then `nibble bench serve` at concurrency 1 and 10 (C1_PROMPTS,
# C10_PROMPTS prompts: 10 and 100 by default).
# Results (JSON) go to $OUT.
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
[ -f .device/pack.tar.xz ] && tar xJf .device/pack.tar.xz -C .device
export LD_LIBRARY_PATH=$PWD/.device/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
N=.device/nibble
tok=${QWEN3_TOKENIZER:-.device/qwen3-tok}
d=/tmp/q8-serve
[ -d "$d" ] || $N synth --config models/configs/qwen3-8b.json --scheme nvfp4a16 --tokenizer "$tok" "$d" > /tmp/synth.log 2>&1 || { tail -3 /tmp/synth.log; exit 1; }
# Qwen3-8B's own generation_config.json (the sampling defaults `vllm bench serve` requests get: it sends
# no sampling parameters).
cat > "$d/generation_config.json" <<'JSON'
{"bos_token_id": 151643, "do_sample": true, "eos_token_id": [151645, 151643], "pad_token_id": 151643,
 "temperature": 0.6, "top_k": 20, "top_p": 0.95, "transformers_version": "4.51.0"}
JSON
port=8123
$N serve "$d" --device cuda --port $port --max-num-seqs 16 --max-model-len 1024 --max-num-batched-tokens 1024 > "$OUT/serve.log" 2>&1 &
srv=$!
for _ in $(seq 1 120); do
  python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/health', timeout=1)" 2> /dev/null && break
  sleep 1
done
for c in 1 10; do
  n=$((c == 1 ? ${C1_PROMPTS:-10} : ${C10_PROMPTS:-100}))
  $N bench serve --base-url "http://127.0.0.1:$port" --num-prompts $n --max-concurrency $c --random-input-len 128 \
    --random-output-len 128 --ignore-eos --tokenizer "$tok" --json > "$OUT/serve-c$c.json" 2> "$OUT/serve-c$c.err"
  echo "concurrency $c rc $?"
  python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print({k: round(j[k], 2) for k in ('completed','output_throughput','mean_ttft_ms','median_tpot_ms','mean_itl_ms') if k in j})" "$OUT/serve-c$c.json" || tail -3 "$OUT/serve-c$c.err"
done
kill -INT $srv; wait $srv
tail -n 3 "$OUT/serve.log"
