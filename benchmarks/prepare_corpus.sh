#!/usr/bin/env bash
# prepare_corpus.sh [BUILD] [MB]: `tessera prepare` of a large corpus (the King James Bible,
# repeated to MB megabytes, default 2000) as plain text, gzip and zstd JSONL, with GPT-2 on one
# thread and on all cores. Checks that every run's shards are identical to the first one's, and
# prints one JSON line per configuration: peak RSS (GNU time), wall seconds, input MB/s and MB/s
# per core. The tokenizer's own encode rate (bench_tokenizer) is the ceiling per core.
# Needs: bible-kjv (`bible` prints the text; apt-get install bible-kjv) or any text as $TEXT.
set -euo pipefail
build=${1:-build}
mb=${2:-2000}
bin="$(cd "$build" && pwd)/launch/tessera"
work=${TS_BENCH_DIR:-/tmp/tessera-bench-prepare}
mkdir -p "$work"
src=${TEXT:-}
if [ -z "$src" ]; then
  src="$work/kjv.txt"
  [ -s "$src" ] || bible -f Gen1:1-Rev22:21 >"$src" 2>/dev/null || {
    echo "prepare_corpus: no text: install bible-kjv or set TEXT=file" >&2
    exit 2
  }
fi
corpus="$work/corpus_${mb}MB.txt"
if [ ! -s "$corpus" ]; then
  : >"$corpus"
  while [ "$(stat -c %s "$corpus")" -lt $((mb * 1000000)) ]; do cat "$src" >>"$corpus"; done
  head -c $((mb * 1000000)) "$corpus" >"$corpus.tmp" && mv "$corpus.tmp" "$corpus"
fi
cores=$(nproc)
machine="$(uname -m) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $cores cores"
build_id=$(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo unknown)

run() { # NAME THREADS INPUT [FLAGS...]
  local name=$1 threads=$2 input=$3
  shift 3
  local out="$work/out_$name"
  /usr/bin/time -f "%M %e" -o "$work/time_$name" "$bin" prepare --tokenizer gpt2 --input "$input" \
    --out "$out" --overwrite --quiet --threads "$threads" --shard-tokens 100M "$@" >/dev/null
  read -r rss_kb wall <"$work/time_$name"
  if [ "$name" != text_1 ]; then
    for f in "$work"/out_text_1/*.bin; do cmp -s "$f" "$out/$(basename "$f")" || {
      echo "prepare_corpus: $name: $(basename "$f") differs from text_1" >&2
      exit 1
    }; done
  fi
  local used=$threads
  [ "$used" = 0 ] && used=$cores
  awk -v n="$name" -v t="$used" -v r="$rss_kb" -v w="$wall" -v mb="$mb" -v m="$machine" \
    -v b="$build_id" 'BEGIN { printf "{\"bench\":\"prepare\",\"config\":\"%s\",\"threads\":%d,\"corpus_mb\":%d,\"peak_rss_mb\":%.1f,\"wall_s\":%.2f,\"mb_per_s\":%.3f,\"mb_per_s_per_core\":%.3f,\"machine\":\"%s\",\"build\":\"%s\",\"identical\":true}\n", n, t, mb, r/1024, w, mb/w, mb/w/t, m, b }'
}

run text_1 1 "$corpus"
run text_all 0 "$corpus"
if [ "${FORMATS:-1}" = 1 ]; then
  [ -s "$corpus.gz" ] || gzip -1 -k -c "$corpus" >"$corpus.gz"
  run gzip_all 0 "$corpus.gz"
  if command -v zstd >/dev/null; then
    [ -s "$corpus.zst" ] || zstd -q -1 -c "$corpus" >"$corpus.zst"
    run zstd_all 0 "$corpus.zst"
  fi
fi
