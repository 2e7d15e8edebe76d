#!/usr/bin/env bash
# demo.sh BUILD: trains a small byte-level GPT on the CPU for about a minute and shows the loss
# falling. The corpus is the license texts every Debian system ships (/usr/share/common-licenses,
# ~200 KB of English); the data issue replaces it with a real corpus and the GPT-2 tokenizer.
set -euo pipefail
build=${1:-build}
tessera="$build/launch/tessera"
out=${DEMO_OUT:-runs/demo}
steps=${DEMO_STEPS:-450}

mapfile -t corpus < <(find /usr/share/common-licenses -maxdepth 1 -type f | sort)
if [ ${#corpus[@]} -eq 0 ]; then
  echo "demo: no text found under /usr/share/common-licenses" >&2
  exit 2
fi

echo "== 1/3 prepare: ${#corpus[@]} license texts -> byte-level token shards"
"$tessera" prepare --tokenizer bytes --input "${corpus[@]}" --out "$out/data" --val-fraction 0.05

echo "== 2/3 train: 4 layers, 4 heads, 128 channels, seq 64, batch 16, $steps steps on the CPU"
"$tessera" train --data "$out/data/train_*.bin" --val-data "$out/data/val.bin" \
  --vocab-size 256 --layers 4 --heads 4 --channels 128 --seq-len 64 --batch 16 \
  --steps "$steps" --lr 2e-3 --warmup 20 --eval-every 150 --eval-batches 16 --log-every 20 \
  --seed 1337 --out "$out/run" --overwrite

echo "== 3/3 eval: the trained model on held-out text"
"$tessera" eval --ckpt "$out/run" --data "$out/data/val.bin" --batch 16 --seq-len 64 \
  --batches 0 --json
echo "demo: metrics in $out/run/metrics.jsonl, weights in $out/run/model.bin"
