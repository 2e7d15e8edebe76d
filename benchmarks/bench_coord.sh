#!/usr/bin/env bash
# bench_coord.sh BUILD [REPS] [STEPS]: the coordinator's per-step cost (issue 10). Trains the
# demo's 4-layer model (C 128, T 64, batch 8 per rank) at dp 2 under mpirun, REPS times with the
# coordinator and REPS times without it (TS_COORD_BYPASS=1: the run loop's cadence alone),
# alternating so machine load hits both alike, and compares the loop's wall time per step
# (boundary to boundary, so the coordinator's two collectives are in it). Also reports the
# coordinator's own timing of its decisions, which is immune to the noise of a shared machine.
# Checks the result: both ways must train to bit-identical losses. Prints one JSON line.
set -euo pipefail
build=${1:-build}
reps=${2:-3}
steps=${3:-40}
bin="$(cd "$build" && pwd)/launch/tessera"
work=${TS_BENCH_DIR:-/tmp/tessera-bench-coord}
mkdir -p "$work"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_pml=${OMPI_MCA_pml:-ob1} OMPI_MCA_btl=${OMPI_MCA_btl:-self,vader}
data="$work/data"
if [ ! -f "$data/val.bin" ]; then
  cat /usr/share/common-licenses/* >"$work/corpus.txt"
  "$bin" prepare --tokenizer bytes --input "$work/corpus.txt" --out "$data" --val-fraction 0.1 \
    >/dev/null 2>&1
fi
demo=(--data "$data/train_*.bin" --layers 4 --heads 4 --channels 128 --seq-len 64 --batch 8
  --lr 2e-3 --warmup 10 --steps "$steps" --log-every 1000 --seed 1337 --threads 1 --overwrite)
run() { # NAME BYPASS
  env TS_COORD_BYPASS="$2" TS_NO_LIVE=1 mpirun --oversubscribe -np 2 "$bin" train "${demo[@]}" \
    --out "$work/$1" >"$work/$1.log" 2>&1
}
for i in $(seq "$reps"); do
  run "with-$i" 0
  run "without-$i" 1
done
/usr/bin/python3 - "$work" "$reps" "$steps" <<'PY'
import json, os, platform, re, statistics, sys
work, reps, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def loop_ms(name):
    log = open(os.path.join(work, name + ".log")).read()
    m = re.search(r"(\d+) steps in ([0-9.]+) s", log)
    return 1e3 * float(m.group(2)) / int(m.group(1)), log
def losses(name):
    return [json.loads(l)["loss"] for l in open(os.path.join(work, name, "metrics.jsonl"))
            if '"loss"' in l]
with_ms, without_ms, decide_us, rank0_us = [], [], [], []
for i in range(1, reps + 1):
    w, log = loop_ms(f"with-{i}")
    wo, _ = loop_ms(f"without-{i}")
    with_ms.append(w)
    without_ms.append(wo)
    m = re.search(r"decisions, ([0-9.]+) us each .*rank 0 spent ([0-9.]+) us", log)
    decide_us.append(float(m.group(1)))
    rank0_us.append(float(m.group(2)))
    assert losses(f"with-{i}") == losses(f"without-{i}"), "the coordinator changed training"
mw, mwo = statistics.median(with_ms), statistics.median(without_ms)
print(json.dumps({
    "bench": "coordinator", "machine": platform.node(), "cpus": os.cpu_count(),
    "model": "L4 C128 T64 B8/rank", "dp": 2, "steps": steps, "reps": reps,
    "step_ms_with": round(mw, 2), "step_ms_without": round(mwo, 2),
    "overhead_pct": round(100 * (mw - mwo) / mwo, 2),
    "decide_us": round(statistics.median(decide_us), 1),
    "decide_pct_of_step": round(100 * statistics.median(decide_us) / 1e3 / mw, 3),
    "rank0_decide_us_incl_wait": round(statistics.median(rank0_us), 1),
    "losses_identical": True}))
PY
