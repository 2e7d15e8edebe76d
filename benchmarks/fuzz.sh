#!/usr/bin/env bash
# fuzz.sh [RUNS] [BUILD_DIR]: runs every libFuzzer harness to RUNS executions (default one
# million) from its seed corpus, with the limits of tests/fuzz/run.sh, and prints one JSON line
# per harness: executions, seconds, executions per second, corpus size, finding. FUZZ_MAX_S caps
# each harness's time (for a machine too slow to reach RUNS; the line then says so). Results go
# to docs/fuzzing.md by hand, with the machine.
set -uo pipefail
runs=${1:-1000000}
src=$(cd "$(dirname "$0")/.." && pwd)
build=${2:-$src/build-fuzz}
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
status=0
for corpus in "$src"/tests/fuzz/corpus/fuzz_*; do
  name=$(basename "$corpus")
  if [ -n "$only" ] && [[ " $only " != *" $name "* ]]; then continue; fi
  work="$scratch/corpus_$name"
  mkdir -p "$work"
  cp "$corpus"/* "$work"/
  log="$scratch/$name.log"
  t0=$(date +%s.%N)
  TMPDIR=$scratch "$build/tests/fuzz/$name" "$work" -runs="$runs" \
    ${FUZZ_MAX_S:+-max_total_time=$FUZZ_MAX_S} -rss_limit_mb=2048 -malloc_limit_mb=1024 \
    -timeout=1 -max_len=65536 -artifact_prefix="$artifacts/$name-" -print_final_stats=1 \
    >"$log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  finding=none
  if [ $rc -ne 0 ]; then
    finding=$(grep -m1 -oE "runtime error: .*|ERROR: [A-Za-z]+: [a-z-]+|property failed: .*" "$log" | tr '"' "'")
    status=1
  fi
  awk -v h="$name" -v n="${n:-0}" -v t0="$t0" -v t1="$t1" -v c="$(ls "$work" | wc -l)" \
    -v f="$finding" -v m="$(uname -m) $(nproc) cores" 'BEGIN {
      printf "{\"harness\":\"%s\",\"executions\":%d,\"seconds\":%.1f,\"exec_per_s\":%.0f,", h, n, t1 - t0, n / (t1 - t0)
      printf "\"corpus\":%d,\"finding\":\"%s\",\"machine\":\"%s\"}\n", c, f, m }'
done
exit $status
