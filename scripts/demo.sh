#!/usr/bin/env bash
# demo.sh BUILD: from raw text to a trained model in about four minutes on two idle CPU cores.
#   1. fetch the King James Bible from Debian's bible-kjv package (public domain, ~4.3 MB)
#   2. train a 4096-token byte-level BPE tokenizer on it
#   3. prepare shards: one ~8 KB segment in ten to val, the rest to train
#   4. train a small GPT for about two minutes (1000 steps; val loss rises again past ~1000)
#   5. evaluate, and compare the val loss with the unigram entropy (the loss of a model that
#      knows only token frequencies) and in bits per byte
# Environment: DEMO_OUT (runs/demo), DEMO_STEPS (1500), TESSERA_HOME (~/.cache/tessera).
set -euo pipefail
build=${1:-build}
tessera="$build/launch/tessera"
out=${DEMO_OUT:-runs/demo}
steps=${DEMO_STEPS:-1000}
warmup=$((steps < 500 ? steps / 10 : 50)) # a warmup must fit in the run
cache=${TESSERA_HOME:-$HOME/.cache/tessera}
corpus="$cache/corpora/kjv/kjv.txt"
t0=$SECONDS

echo "== 1/6 corpus: the King James Bible (Debian package bible-kjv)"
if [ ! -s "$corpus" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  if command -v bible >/dev/null 2>&1 && [ -f /usr/lib/bible.data ]; then
    bible_cmd=(bible)
  else
    echo "   apt-get download bible-kjv bible-kjv-text (unpacked with dpkg -x, not installed)"
    (cd "$tmp" && apt-get download -q bible-kjv bible-kjv-text >/dev/null 2>&1) || {
      echo "demo: apt-get download bible-kjv failed; run apt-get update, or install bible-kjv" >&2
      exit 2
    }
    for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$tmp/root"; done
    bible_cmd=("$tmp/root/usr/bin/bible" -p "$tmp/root/usr/lib")
  fi
  mkdir -p "$(dirname "$corpus")"
  # Genesis 1:1 to Revelation 22:21, pretty-printed: book and chapter headings, numbered verses.
  "${bible_cmd[@]}" Gen1:1-Rev22:21 </dev/null >"$corpus.tmp"
  mv "$corpus.tmp" "$corpus"
fi
echo "   $corpus: $(wc -c <"$corpus") bytes, $(wc -l <"$corpus") lines"

echo "== 2/6 tokenizer: byte-level BPE, 4096 tokens, GPT-2 pre-splitting"
mkdir -p "$out"
"$tessera" tokenizer train --input "$corpus" --vocab-size 4096 --out "$out/tokenizer"

echo "== 3/6 prepare: one segment in ten -> val, the rest -> train"
"$tessera" prepare --tokenizer "$out/tokenizer" --input "$corpus" --out "$out/data" \
  --val-fraction 0.1 --overwrite

echo "== 4/6 train: 4 layers, 4 heads, 128 channels, seq 64, batch 16, $steps steps (~2 min on 2 idle cores)"
"$tessera" train --data "$out/data/train_*.bin" --val-data "$out/data/val.bin" \
  --layers 4 --heads 4 --channels 128 --seq-len 64 --batch 16 --steps "$steps" \
  --lr 2e-3 --warmup "$warmup" --eval-every 500 --eval-batches 16 --log-every 100 \
  --seed 1337 --out "$out/run" --overwrite

echo "== 5/6 eval: the whole val split"
"$tessera" eval --ckpt "$out/run" --data "$out/data/val.bin" --batch 16 --seq-len 64 \
  --batches 0 --json | tee "$out/eval.txt"
loss=$(tail -n 1 "$out/eval.txt" | python3 -c 'import json,sys; print(json.load(sys.stdin)["loss"])')

# The unigram baseline: val tokens scored by train-split token frequencies (add-1/2 smoothing),
# and the bytes the val tokens stand for (decoded), for bits per byte.
python3 - "$out/data" >"$out/val_ids.txt" 2>"$out/unigram.txt" <<'PY'
import array, glob, json, math, sys
d = sys.argv[1]
vocab = json.load(open(d + "/manifest.json"))["tokenizer"]["vocab_size"]
def tokens(path):
    a = array.array("H")
    a.frombytes(open(path, "rb").read()[1024:])
    return a
counts = [0] * vocab
n = 0
for p in sorted(glob.glob(d + "/train_*.bin")):
    for t in tokens(p):
        counts[t] += 1
        n += 1
val = tokens(d + "/val.bin")
h = -sum(c / n * math.log(c / n) for c in counts if c)
ce = -sum(math.log((counts[t] + 0.5) / (n + 0.5 * vocab)) for t in val) / len(val)
print(" ".join(map(str, val)))
print(f"{h:.4f} {ce:.4f} {len(val)}", file=sys.stderr)
PY
read -r h_train ce_val ntok <"$out/unigram.txt"
nbytes=$("$tessera" tokenize --tokenizer "$out/tokenizer" --decode --input "$out/val_ids.txt" | wc -c)
rm -f "$out/val_ids.txt"
python3 - "$loss" "$h_train" "$ce_val" "$ntok" "$nbytes" <<'PY'
import math, sys
loss, h, ce, ntok, nbytes = map(float, sys.argv[1:])
bpb = lambda nats: nats * ntok / nbytes / math.log(2)
print()
print(f"  val loss, the trained model        {loss:6.3f} nats/token   {bpb(loss):5.3f} bits/byte")
print(f"  unigram baseline on val            {ce:6.3f} nats/token   {bpb(ce):5.3f} bits/byte")
print(f"  (unigram entropy of the train split {h:.3f} nats/token; {nbytes / ntok:.2f} bytes/token)")
print(f"  the model is {ce - loss:.3f} nats/token better than token frequencies alone")
PY
echo
echo "== 6/6 sample: 200 tokens after \"And God said\" (temperature 0.8, top-k 40)"
"$tessera" sample --ckpt "$out/run" --prompt "And God said" --max-tokens 200 \
  --temperature 0.8 --top-k 40 --seed 1
echo
"$tessera" report "$out/run" --out "$out/report.html" --title "Tessera demo"
echo
echo "demo: done in $((SECONDS - t0)) s. Everything is under $out/:"
echo "  tokenizer/ (encoder.json, vocab.bpe)  data/ (shards, manifest.json)  run/ (metrics.jsonl, config.json, checkpoints/)"
echo "  report.html: the run's plots and cost, opened offline (docs/report.md)"
echo "next:"
echo "  # more text from the model, another seed each time"
echo "  $tessera sample --ckpt $out/run --prompt 'And the LORD' --max-tokens 300 --seed 2"
echo "  # see how the tokenizer cuts a sentence, and back"
echo "  echo 'In the beginning' | $tessera tokenize --tokenizer $out/tokenizer"
echo "  # train longer or bigger: DEMO_STEPS=4000 make demo; $tessera train --help"
echo "  # GPT-2's own vocabulary on the same text"
echo "  $tessera prepare --tokenizer gpt2 --input $corpus --out $out/gpt2 --val-fraction 0.1"
