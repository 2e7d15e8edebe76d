#!/usr/bin/env bash
# fuzz.sh [RUNS] [BUILD_DIR]: runs every libFuzzer harness of tests/fuzz, one after the other, to
# RUNS executions (default one million) from a copy of its seed corpus, with the per-input limits
# of tests/fuzz/limits.sh (-timeout=1, -rss_limit_mb, -malloc_limit_mb, -max_len), and prints one
# JSON line per harness: executions, seconds, executions per second, peak RSS, corpus size after,
# finding. With FUZZ_TABLE=FILE it also writes the results as a markdown table (the one in
# docs/fuzzing.md). FUZZ_ONLY="fuzz_a fuzz_b" runs only those; FUZZ_MAX_S caps each harness's time
# (the line then shows fewer executions); FUZZ_NICE (default 19) is the priority it runs at.
# Exits 1 when any harness found something; its input is in $FUZZ_ARTIFACTS (./fuzz-artifacts).
set -uo pipefail
runs=${1:-1000000}
src=$(cd "$(dirname "$0")/.." && pwd)
build=${2:-$src/build-fuzz}
. "$src/tests/fuzz/limits.sh"
if [ ! -f "$build/build.ninja" ]; then
  CC=clang meson setup "$build" "$src" -Dfuzz=enabled -Dcuda=disabled -Dtests=disabled \
    -Dmpi=disabled -Dbuildtype=debugoptimized >/dev/null || exit 1
fi
ninja -C "$build" >/dev/null || exit 1
artifacts=${FUZZ_ARTIFACTS:-$PWD/fuzz-artifacts}
mkdir -p "$artifacts"
scratch=$(mktemp -d "$( [ -w /dev/shm ] && echo /dev/shm || echo /tmp )/ts_fuzz_bench.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
only=${FUZZ_ONLY:-}
table=${FUZZ_TABLE:-}
machine="$(uname -m), $(nproc) cores, $(clang --version | head -1 | sed 's/ (.*//')"
if [ -n "$table" ]; then
  {
    echo "Machine: $machine; $(date -u +%Y-%m-%d); \`benchmarks/fuzz.sh $runs\`."
    echo
    echo "| harness | executions | seconds | exec/s | peak RSS (MB) | -max_len | corpus after | finding |"
    echo "|---|---|---|---|---|---|---|---|"
  } >"$table"
fi
status=0
for corpus in "$src"/tests/fuzz/corpus/fuzz_*; do
  name=$(basename "$corpus")
  if [ -n "$only" ] && [[ " $only " != *" $name "* ]]; then continue; fi
  work="$scratch/corpus_$name"
  mkdir -p "$work"
  cp "$corpus"/* "$work"/
  log="$scratch/$name.log"
  flags=$(fuzz_flags "$name")
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086 # the flags are words
  TMPDIR=$scratch nice -n "${FUZZ_NICE:-19}" "$build/tests/fuzz/$name" "$work" -runs="$runs" \
    ${FUZZ_MAX_S:+-max_total_time=$FUZZ_MAX_S} $flags -artifact_prefix="$artifacts/$name-" \
    -print_final_stats=1 >"$log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log")
  finding=none
  if [ $rc -ne 0 ]; then
    finding=$(grep -m1 -oE "runtime error: .*|ERROR: [A-Za-z]+: [a-z -]+|property failed: .*|ALARM: .*" "$log" | tr '"|' "'/")
    finding=${finding:-"exit $rc"}
    cp "$log" "$artifacts/$name.log"
    status=1
  fi
  max_len=${flags##*-max_len=}
  awk -v h="$name" -v n="${n:-0}" -v t0="$t0" -v t1="$t1" -v c="$(find "$work" -type f | wc -l)" \
    -v f="$finding" -v m="$machine" -v rss="${rss:-0}" -v ml="$max_len" -v table="$table" 'BEGIN {
      s = t1 - t0
      printf "{\"harness\":\"%s\",\"executions\":%d,\"seconds\":%.1f,\"exec_per_s\":%.0f,", h, n, s, n / s
      printf "\"peak_rss_mb\":%d,\"max_len\":%d,\"corpus\":%d,\"finding\":\"%s\",\"machine\":\"%s\"}\n", rss, ml, c, f, m
      if (table != "")
        printf "| `%s` | %d | %.0f | %.0f | %d | %d | %d | %s |\n", h, n, s, n / s, rss, ml, c, f >> table
    }'
done
exit $status
