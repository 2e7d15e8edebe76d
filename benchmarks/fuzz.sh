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
    echo "| harness | executions | seconds | exec/s | peak RSS (MB) | -max_len | corpus after | finding | spurious timeouts |"
    echo "|---|---|---|---|---|---|---|---|---|"
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
  # A timeout here is wall-clock time at nice 19 on a shared machine: when the input it saved
  # runs in time alone (three times), it was the machine, not the input; the run then goes on
  # from its corpus for the executions left, and the line counts it under spurious_timeouts.
  # Any other finding, or a timeout that repeats alone, stops the harness.
  n=0 rss=0 spurious=0 rc=0 finding=none
  t0=$(date +%s.%N)
  while [ "$n" -lt "$runs" ]; do
    : >"$log"
    # shellcheck disable=SC2086 # the flags are words
    TMPDIR=$scratch nice -n "${FUZZ_NICE:-19}" "$build/tests/fuzz/$name" "$work" \
      -runs=$((runs - n)) ${FUZZ_MAX_S:+-max_total_time=$FUZZ_MAX_S} $flags \
      -artifact_prefix="$scratch/$name-" -print_final_stats=1 >"$log" 2>&1
    rc=$?
    m=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    r=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log")
    if [ -z "$m" ]; then # killed before its stats: count the last status line's executions
      m=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
    fi
    n=$((n + ${m:-0}))
    [ "${r:-0}" -gt "$rss" ] && rss=${r:-0}
    [ $rc -eq 0 ] && break
    unit=$(find "$scratch" -maxdepth 1 -name "$name-timeout-*" | head -1)
    # shellcheck disable=SC2086 # the flags are words
    if [ -n "$unit" ] && grep -q "ERROR: libFuzzer: timeout" "$log" &&
      (for _ in 1 2 3; do "$build/tests/fuzz/$name" $flags "$unit" >/dev/null 2>&1 || exit 1; done); then
      spurious=$((spurious + 1))
      cp "$log" "$artifacts/$name.spurious-timeout-$spurious.log"
      rm -f "$unit"
      [ -n "${FUZZ_MAX_S:-}" ] && break
      continue
    fi
    finding=$(grep -m1 -oE "runtime error: .*|ERROR: [A-Za-z]+: [a-z -]+|property failed: .*|ALARM: .*" "$log" | tr '"|' "'/")
    finding=${finding:-"exit $rc"}
    cp "$log" "$artifacts/$name.log"
    cp "$scratch/$name"-* "$artifacts"/ 2>/dev/null
    status=1
    break
  done
  t1=$(date +%s.%N)
  max_len=${flags##*-max_len=}
  awk -v h="$name" -v n="$n" -v t0="$t0" -v t1="$t1" -v c="$(find "$work" -type f | wc -l)" \
    -v f="$finding" -v m="$machine" -v rss="$rss" -v ml="$max_len" -v table="$table" \
    -v sp="$spurious" 'BEGIN {
      s = t1 - t0
      printf "{\"harness\":\"%s\",\"executions\":%d,\"seconds\":%.1f,\"exec_per_s\":%.0f,", h, n, s, n / s
      printf "\"peak_rss_mb\":%d,\"max_len\":%d,\"corpus\":%d,\"finding\":\"%s\",", rss, ml, c, f
      printf "\"spurious_timeouts\":%d,\"machine\":\"%s\"}\n", sp, m
      if (table != "")
        printf "| `%s` | %d | %.0f | %.0f | %d | %d | %d | %s | %d |\n", h, n, s, n / s, rss, ml, c, f, sp >> table
    }'
done
exit $status
