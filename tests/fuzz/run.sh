#!/usr/bin/env bash
# run.sh [SECONDS] [BUILD_DIR]: runs every libFuzzer harness of tests/fuzz for SECONDS (default
# 20) on a copy of its seed corpus, with a memory and time limit per input (limits.sh:
# -rss_limit_mb, -malloc_limit_mb, -timeout=1, -max_len). Exits 1 on the first finding (crash,
# sanitizer report, leak, timeout, out-of-memory, failed property), whose input is left in
# $FUZZ_ARTIFACTS (default ./fuzz-artifacts). The build dir must be configured with CC=clang -Dfuzz=enabled (made here
# as build-fuzz when missing).
set -euo pipefail
secs=${1:-20}
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${2:-$src/build-fuzz}
. "$src/tests/fuzz/limits.sh"
if [ ! -f "$build/build.ninja" ]; then
  CC=clang meson setup "$build" "$src" -Dfuzz=enabled -Dcuda=disabled -Dtests=disabled \
    -Dmpi=disabled -Dbuildtype=debugoptimized >/dev/null
fi
ninja -C "$build" >/dev/null
artifacts=${FUZZ_ARTIFACTS:-$PWD/fuzz-artifacts}
mkdir -p "$artifacts"
# scratch files of the harnesses in memory when possible: they write an input per execution
scratch=$(mktemp -d "$( [ -w /dev/shm ] && echo /dev/shm || echo /tmp )/ts_fuzz_run.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
fail=0
for corpus in "$src"/tests/fuzz/corpus/fuzz_*; do
  name=$(basename "$corpus")
  work="$scratch/corpus_$name"
  mkdir -p "$work"
  cp "$corpus"/* "$work"/
  log="$scratch/$name.log"
  # shellcheck disable=SC2046 # the flags are words
  if TMPDIR=$scratch "$build/tests/fuzz/$name" "$work" -max_total_time="$secs" \
      $(fuzz_flags "$name") -artifact_prefix="$artifacts/$name-" -print_final_stats=1 >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    echo "fuzz: $name: $runs executions, $rate/s, no finding"
  else
    echo "fuzz: $name: FINDING (input in $artifacts/$name-*):"
    grep -E "ERROR|SUMMARY|runtime error|property failed|Test unit written" "$log" | head -10 || tail -20 "$log"
    fail=1
  fi
done
exit $fail
