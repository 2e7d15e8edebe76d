#!/usr/bin/env bash
# time_to_loss.sh BUILD [SECONDS]: the val loss Tessera reaches in a fixed wall-clock budget on
# the King James text with GPT-2's tokenizer (first 90% train, last 10% val), 4 layers, 4 heads,
# 256 channels, batch 4, sequence 64, lr 1e-3 with 20 warmup steps and cosine decay: the run the
# data issue compares with nanoGPT on PyTorch (val loss 5.65 after 3 minutes, 128k tokens).
# The step count is sized from a short timed run so the cosine schedule ends at the budget.
# Needs the corpus `make demo` fetches and GPT-2's vocabulary (tessera tokenizer fetch gpt2).
set -euo pipefail
build=${1:-build}
budget=${2:-180}
tessera="$build/launch/tessera"
cache=${TESSERA_HOME:-$HOME/.cache/tessera}
corpus="$cache/corpora/kjv/kjv.txt"
out=${TTL_OUT:-runs/time_to_loss}
[ -f "$corpus" ] || { echo "time_to_loss: $corpus is missing; run make demo first" >&2; exit 2; }
"$tessera" tokenizer fetch gpt2 >/dev/null
"$tessera" prepare --tokenizer gpt2 --input "$corpus" --out "$out/data" --val-fraction 0.1 >/dev/null

flags=(--data "$out/data/train_*.bin" --layers 4 --heads 4 --channels 256 --seq-len 64
       --batch 4 --lr 1e-3 --warmup 20 --seed 1337 --log-every 1000000)
# Size the run: median step time of a short run.
TS_LOG=warn "$tessera" train "${flags[@]}" --steps 30 --out "$out/probe" --overwrite
ms=$(python3 -c 'import json,statistics,sys; print(statistics.median([json.loads(l)["step_ms"] for l in open(sys.argv[1]) if "step_ms" in l][5:]))' "$out/probe/metrics.jsonl")
steps=$(python3 -c "print(max(30, int($budget * 1000 / $ms)))")
echo "time_to_loss: median step ${ms} ms -> $steps steps for a ${budget} s budget"
t0=$(date +%s.%N)
TS_LOG=warn "$tessera" train "${flags[@]}" --steps "$steps" --out "$out/run" --overwrite
t1=$(date +%s.%N)
"$tessera" eval --ckpt "$out/run" --data "$out/data/val.bin" --batch 4 --seq-len 64 --batches 0 \
  --json | tail -n 1 >"$out/eval.json"
python3 - "$out/eval.json" "$t0" "$t1" "$steps" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))
t0, t1, steps = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
print(json.dumps({"bench": "time_to_loss_kjv_gpt2", "train_s": round(t1 - t0, 1), "steps": steps,
                  "tokens_seen": steps * 256, "val_loss": round(e["loss"], 4),
                  "pytorch_reference_val_loss_3min": 5.65}))
PY
