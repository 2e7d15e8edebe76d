#!/usr/bin/env bash
# cost_sweep.sh [BUILD] [STEPS] [--quick]: what a token costs across layouts on this machine
# (issue 12). Trains a grid of real short CPU runs: model size (L2 C64 and L4 C128, T 64) x
# micro-batch (4, 16) x data-parallel size (1, 2) x ZeRO stage (0, 1 at dp 2), every rank on one
# core (--threads 1, so one device = one core and device-hours compare across dp sizes), each
# writing its ledger with the price table's CPU price; then prints `tessera cost ... --sort
# usd_per_1m_tokens` and checks that every row equals its ledger (tokens = the step lines'
# tokens, device_seconds = the segments' device_s). --quick: three configurations.
set -euo pipefail
build=${1:-build}
steps=${2:-30}
quick=${3:-}
bin="$(cd "$build" && pwd)/launch/tessera"
work=${TS_SWEEP_DIR:-/tmp/tessera-cost-sweep}
mkdir -p "$work"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_pml=${OMPI_MCA_pml:-ob1} OMPI_MCA_btl=${OMPI_MCA_btl:-self,vader}
data="$work/data"
if [ ! -f "$data/val.bin" ]; then
  cat /usr/share/common-licenses/* >"$work/corpus.txt"
  "$bin" prepare --tokenizer bytes --input "$work/corpus.txt" --out "$data" --val-fraction 0.1 \
    >/dev/null 2>&1
fi

declare -A model=([s]="--layers 2 --heads 2 --channels 64" [m]="--layers 4 --heads 4 --channels 128")
configs=()
for m in s m; do
  for b in 4 16; do
    configs+=("$m b$b dp1 z0")
    configs+=("$m b$b dp2 z0")
    configs+=("$m b$b dp2 z1")
  done
done
[ "$quick" = --quick ] && configs=("s b4 dp1 z0" "s b4 dp2 z0" "s b4 dp2 z1")

runs=()
for c in "${configs[@]}"; do
  read -r m b dp z <<<"$c"
  name="$m-$b-$dp-$z"
  args=(train --data "$data/train_*.bin" ${model[$m]} --seq-len 64 --batch "${b#b}" --zero "${z#z}"
    --lr 1e-3 --steps "$steps" --log-every 1000 --seed 1337 --threads 1 --overwrite
    --out "$work/$name")
  if [ "${dp#dp}" = 1 ]; then
    TS_NO_LIVE=1 "$bin" "${args[@]}" >"$work/$name.log" 2>&1
  else
    TS_NO_LIVE=1 mpirun --oversubscribe -np "${dp#dp}" "$bin" "${args[@]}" >"$work/$name.log" 2>&1
  fi
  runs+=("$work/$name")
done

"$bin" cost "${runs[@]}" --sort usd_per_1m_tokens
"$bin" cost --json "${runs[@]}" --sort usd_per_1m_tokens >"$work/cost.jsonl"

# Every row equals its ledger, recomputed here from the raw lines.
/usr/bin/python3 - "$work/cost.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for r in rows:
    lines = [json.loads(l) for l in open(r["run"] + "/ledger.jsonl")]
    tokens = sum(l["tokens"] for l in lines if l["type"] == "step")
    dev_s = sum(l["device_s"] for l in lines if l["type"] == "segment")
    usd = sum(l["usd"] for l in lines if l["type"] == "segment")
    assert r["tokens"] == tokens, (r["run"], r["tokens"], tokens)
    assert abs(r["device_seconds"] - dev_s) <= 1e-12 * dev_s, (r["run"], r["device_seconds"], dev_s)
    assert abs(r["usd"] - usd) <= 1e-12 * usd, (r["run"], r["usd"], usd)
    # Not an invariant of real runs: on a loaded machine the steady steps can be slower than
    # the job's mean (warm-up steps included), and then goodput < steady. Say so.
    if r["goodput_usd_per_1m_tokens"] < r["usd_per_1m_tokens"]:
        print(f"note: {r['run']}: goodput below steady state (steps slowed during the run)")
print(f"cost_sweep: {len(rows)} rows equal their ledgers (tokens, device-seconds, usd)")
best = rows[0]
print(f"cheapest per token (steady state): {best['run'].rsplit('/', 1)[-1]} at "
      f"${best['usd_per_1m_tokens']:.4f} per 1M tokens, MFU {100 * best['mfu']:.2f}%")
PY
