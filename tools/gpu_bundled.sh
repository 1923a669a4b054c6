#!/bin/bash
# Runs on the GPU machine (the `run` tool, repository root): trains both bundled models, writes the
# NVFP4A16 and FP8-dynamic variants with `nibble quantize`, and computes every golden.json on the CPU.
# nibble is built on the development machine and carried with the libraries it links (NIBBLE_LIB).
#   NIBBLE=.device/nibble NIBBLE_LIB=.device/lib OUT=/tmp/out bash tools/gpu_bundled.sh [train_bundled.py options]
set -u
NIBBLE=${NIBBLE:-.device/nibble}
OUT=${OUT:-/tmp/bundled-out}
mkdir -p "$OUT"
python3 -c "import torch, transformers, tokenizers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'tokenizers', tokenizers.__version__, torch.cuda.get_device_name(0))"
python3 tools/train_bundled.py --out models "$@" > "$OUT/train.log" 2>&1
echo "train rc $?"
grep -v -E '^\[.*\] \{' "$OUT/train.log" | tail -n 25
: > "$OUT/quant.log"
for m in qwen3-tiny qwen3-moe-tiny; do
  for s in nvfp4a16 fp8-dynamic; do
    rm -rf "models/$m-$s"
    LD_LIBRARY_PATH="${NIBBLE_LIB:-.device/lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$NIBBLE" quantize "models/$m" "models/$m-$s" --scheme "$s" >> "$OUT/quant.log" 2>&1
    echo "quantize $m $s rc $?"
  done
done
pids=()
for d in models/qwen3-tiny models/qwen3-moe-tiny models/qwen3-tiny-nvfp4a16 models/qwen3-tiny-fp8-dynamic \
         models/qwen3-moe-tiny-nvfp4a16 models/qwen3-moe-tiny-fp8-dynamic; do
  [ -d "$d" ] || continue
  python3 tools/golden.py "$d" --threads 2 > "/tmp/golden-$(basename "$d").log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
cat /tmp/golden-*.log > "$OUT/golden.log" 2>/dev/null
grep -h -E '^golden |Error|error' /tmp/golden-*.log | tail -n 30
du -sb models/qwen3-* | tee -a "$OUT/golden.log"
tar czf "$OUT/models.tgz" models/heldout.txt models/qwen3-tiny* models/qwen3-moe-tiny*
(cd "$OUT" && md5sum models.tgz > models.md5 && split -b 15m models.tgz models.tgz. && rm models.tgz)  # <= 16 MiB a file
ls -la "$OUT"
