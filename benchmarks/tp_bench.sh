#!/usr/bin/env bash
# tp_bench.sh BUILD_DIR [REPS] [-- BENCH_TP_ARGS]: tensor parallelism on the CPU backend under
# mpirun at one global batch: the pure tp layouts (world = tp = 1, 2, 4) and a fixed world of 4
# split as dp 4 x tp 1, dp 2 x tp 2, dp 1 x tp 4. Each layout runs REPS times (default 3); every
# run prints one JSON line (benchmarks/bench_tp.c: tokens/s, bytes on the tp group against
# Megatron's count, per-rank memory) and fails if the counted bytes differ from the formula.
# Afterwards the medians of tokens/s per layout, and whether the first and last losses agree
# across layouts (they must, to float rounding). Used by `make bench` and docs/benchmarks.md.
set -euo pipefail
build=${1:?usage: tp_bench.sh BUILD_DIR [REPS] [-- BENCH_TP_ARGS]}
reps=${2:-3}
shift $(($# < 2 ? $# : 2))
[ "${1:-}" = "--" ] && shift
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_pml=${OMPI_MCA_pml:-ob1} OMPI_MCA_btl=${OMPI_MCA_btl:-self,vader}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for layout in "1 1" "2 2" "4 4" "4 1" "4 2"; do
  read -r np tp <<<"$layout"
  for _ in $(seq "$reps"); do
    mpirun --oversubscribe -np "$np" "$build/benchmarks/bench_tp" --tp "$tp" "$@" | tee -a "$out"
  done
done
python3 - "$out" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
by = {}
for r in runs:
    by.setdefault((r["world"], r["tp"]), []).append(r)
losses = {(r["first_loss"], r["last_loss"]) for r in runs}
first = [r["first_loss"] for r in runs]
last = [r["last_loss"] for r in runs]
spread = max(max(last) - min(last), max(first) - min(first)) / abs(min(last))
for (w, tp), rs in sorted(by.items()):
    r = rs[0]
    print(json.dumps({"bench": "tp_summary", "world": w, "tp": tp, "dp": r["dp"],
                      "tok_per_s_median": statistics.median(x["tok_per_s"] for x in rs),
                      "runs": len(rs), "tp_bytes_per_step": r["tp_bytes_per_step"],
                      "megatron_bytes_per_step": r["megatron_bytes_per_step"],
                      "param_bytes": r["param_bytes"], "grad_bytes": r["grad_bytes"],
                      "adamw_bytes": r["adamw_bytes"], "activation_bytes": r["activation_bytes"],
                      "logits_bytes": r["logits_bytes"]}))
print(json.dumps({"bench": "tp_losses", "relative_spread": spread, "agree": spread < 1e-5}))
sys.exit(0 if spread < 1e-5 else 1)
PY
