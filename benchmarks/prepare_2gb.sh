#!/usr/bin/env bash
# prepare_2gb.sh [BUILD] [MB]: the issue 19 benchmark. `tessera prepare --tokenizer gpt2` of the
# King James Bible repeated to MB megabytes (default 2000: 2 GB) as plain text, on one thread and
# on all cores, under GNU time -v (peak RSS, user and system CPU seconds), with the shards of the
# two runs compared byte for byte; then the tokenizer's own single-thread encode rate on the
# same text (bench_tokenizer) as the ceiling per core. One JSON line per configuration, with
# peak RSS (must stay under 1 GB: the run fails otherwise), wall, MB/s, MB/s per core, MB per
# CPU-second, and the ratio to the encode rate.
# Needs: the KJV text at $TEXT or ~/.cache/tessera/corpora/kjv/kjv.txt (what `make demo`
# caches), GPT-2's files (`tessera tokenizer fetch gpt2`). Run it niced on a shared machine:
#   nice -n 19 benchmarks/prepare_2gb.sh build 2000
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
mb=${2:-2000}
bin="$build/launch/tessera"
work=${TS_BENCH_DIR:-/tmp/tessera-bench-prepare}
src=${TEXT:-${TESSERA_HOME:-$HOME/.cache/tessera}/corpora/kjv/kjv.txt}
[ -s "$src" ] || {
  echo "prepare_2gb: no text at $src: run \`make demo\` once (it caches the KJV) or set TEXT" >&2
  exit 77 # meson: skipped
}
mkdir -p "$work"
corpus="$work/corpus_${mb}MB.txt"
if [ ! -s "$corpus" ] || [ "$(stat -c %s "$corpus")" -ne $((mb * 1000000)) ]; then
  : >"$corpus"
  while [ "$(stat -c %s "$corpus")" -lt $((mb * 1000000)) ]; do cat "$src" >>"$corpus"; done
  truncate -s $((mb * 1000000)) "$corpus"
fi
cores=$(nproc)
machine="$(uname -m) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $cores cores"
build_id=$(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo unknown)

# The encode ceiling: bench_tokenizer's one-thread GPT-2 rate on the KJV, in MB per CPU-second
# (the figure a loaded machine does not distort much), median of 3.
enc_line=$("$build/benchmarks/bench_tokenizer" "$src" 3 | grep '"encode_1t"\|threads":1' | head -1 || true)
enc_cpu=$(printf '%s' "$enc_line" | sed -n 's/.*"mb_per_cpu_s":\([0-9.]*\).*/\1/p')
enc_wall=$(printf '%s' "$enc_line" | sed -n 's/.*"mb_per_s":\([0-9.]*\).*/\1/p')
echo "{\"bench\":\"encode\",\"threads\":1,\"mb_per_s\":${enc_wall:-null},\"mb_per_cpu_s\":${enc_cpu:-null},\"machine\":\"$machine\",\"build\":\"$build_id\"}"

run() { # NAME THREADS
  local name=$1 threads=$2 out="$work/out_$1"
  /usr/bin/time -v -o "$work/time_$name" "$bin" prepare --tokenizer gpt2 --input "$corpus" \
    --out "$out" --overwrite --quiet --threads "$threads" --shard-tokens 100M >/dev/null
  local rss_kb wall user sys
  rss_kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/time_$name")
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$work/time_$name" |
    awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }')
  user=$(sed -n 's/.*User time (seconds): //p' "$work/time_$name")
  sys=$(sed -n 's/.*System time (seconds): //p' "$work/time_$name")
  if [ "$name" != text_1 ]; then
    for f in "$work"/out_text_1/*.bin; do cmp -s "$f" "$out/$(basename "$f")" || {
      echo "prepare_2gb: $name: $(basename "$f") differs from the one-thread run" >&2
      exit 1
    }; done
  fi
  if [ "$rss_kb" -ge $((1024 * 1024)) ]; then
    echo "prepare_2gb: $name: peak RSS $((rss_kb / 1024)) MB, over 1 GB" >&2
    exit 1
  fi
  local used=$threads
  [ "$used" = 0 ] && used=$cores
  awk -v n="$name" -v t="$used" -v r="$rss_kb" -v w="$wall" -v u="$user" -v s="$sys" -v mb="$mb" \
    -v e="${enc_cpu:-0}" -v m="$machine" -v b="$build_id" 'BEGIN {
      cpu = u + s; per_cpu = mb / cpu
      ratio = "null"
      if (e > 0) ratio = sprintf("%.2f", per_cpu / e)
      printf "{\"bench\":\"prepare\",\"config\":\"%s\",\"threads\":%d,\"corpus_mb\":%d,\"peak_rss_mb\":%.1f,\"wall_s\":%.1f,\"cpu_s\":%.1f,\"mb_per_s\":%.2f,\"mb_per_s_per_core\":%.2f,\"mb_per_cpu_s\":%.2f,\"of_encode_rate\":%s,\"machine\":\"%s\",\"build\":\"%s\",\"identical\":true}\n",
        n, t, mb, r / 1024, w, cpu, mb / w, mb / w / t, per_cpu, ratio, m, b }'
}

run text_1 1
run text_all 0
