#!/usr/bin/env bash
# check_same_training.sh [BASE_REV] [BUILD]: proves a refactor left training unchanged. Builds
# BASE_REV (default: origin of this check, the commit before the run-loop move) in a scratch
# worktree, then trains the demo's model configuration with both binaries, once as one process
# and once as `mpirun -np 2 --zero 1`, and compares every metrics.jsonl value that is not a
# timing, and every dataset of every checkpoint file, bit for bit. Prints one line per run and
# exits non-zero on the first difference. Both builds run on this machine, so the CPU's BLAS
# kernels are the same on both sides (a stored golden file would not survive another CPU).
set -euo pipefail
base_rev=${1:-0e3ceaf}
build=${2:-build}
top=$(git rev-parse --show-toplevel)
cd "$top"
work=${TS_CHECK_DIR:-/tmp/tessera-same-training}
base_src="$work/base-$base_rev"
mkdir -p "$work"

if [ ! -x "$base_src/build/launch/tessera" ]; then
  rm -rf "$base_src"
  git worktree prune
  git worktree add -q --detach "$base_src" "$base_rev"
  meson setup "$base_src/build" "$base_src" -Dcuda=disabled -Dtests=disabled >/dev/null
  ninja -C "$base_src/build" launch/tessera >/dev/null
fi
[ -x "$build/launch/tessera" ] || ninja -C "$build" launch/tessera >/dev/null
base_bin="$base_src/build/launch/tessera"
new_bin="$(cd "$build" && pwd)/launch/tessera"

# A small corpus any Debian machine has, one byte per token, prepared by the base build: its
# manifest.json is a version both builds read (a newer build reads older manifests, not the
# reverse).
data="$work/data"
if [ ! -f "$data/val.bin" ]; then
  cat /usr/share/common-licenses/* >"$work/corpus.txt"
  "$base_bin" prepare --tokenizer bytes --input "$work/corpus.txt" --out "$data" \
    --val-fraction 0.1 >/dev/null 2>&1
fi

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_pml=ob1 \
  OMPI_MCA_btl=self,vader
demo=(--data "$data/train_*.bin" --val-data "$data/val.bin" --layers 4 --heads 4
  --channels 128 --seq-len 64 --lr 2e-3 --warmup 10 --steps 40 --eval-every 20
  --eval-batches 4 --ckpt-every 20 --log-every 20 --seed 1337 --threads 1 --overwrite)

run() { # NAME BIN NP ARGS...
  local name=$1 bin=$2 np=$3
  shift 3
  rm -rf "$work/$name"
  if [ "$np" = 1 ]; then
    "$bin" train "${demo[@]}" --out "$work/$name" "$@" 2>"$work/$name.log"
  else
    mpirun --oversubscribe -np "$np" "$bin" train "${demo[@]}" --out "$work/$name" "$@" \
      2>"$work/$name.log"
  fi
}

compare() { # A B [SKIP_EVAL]
  /usr/bin/python3 - "$work/$1" "$work/$2" "${3:-}" <<'PY'
import glob, json, os, sys
import h5py, numpy as np
a, b, skip_eval = sys.argv[1], sys.argv[2], sys.argv[3] == "skip-eval"
timing = {"step_ms", "tok_per_s", "comm_wait_ms", "checkpoint_s", "checkpoint", "save_s"}
def lines(d):
    out = []
    for l in open(os.path.join(d, "metrics.jsonl")):
        o = json.loads(l)
        if skip_eval and "val_loss" in o:
            continue
        out.append({k: v for k, v in o.items() if k not in timing})
    return out
# The order of an eval and a checkpoint line at one step is not training behaviour.
order = lambda o: (o["step"], json.dumps(o, sort_keys=True))
la, lb = sorted(lines(a), key=order), sorted(lines(b), key=order)
if la != lb:
    for x, y in zip(la, lb):
        if x != y:
            sys.exit(f"metrics differ: {x} vs {y}")
    sys.exit(f"metrics differ in length: {len(la)} vs {len(lb)}")
n = 0
for step in sorted(os.listdir(os.path.join(a, "checkpoints"))):
    if not step.startswith("step_"):
        continue
    for fa in sorted(glob.glob(os.path.join(a, "checkpoints", step, "*.h5"))):
        fb = fa.replace(a, b, 1)
        with h5py.File(fa, "r") as ha, h5py.File(fb, "r") as hb:
            names = []
            ha.visititems(lambda k, v: names.append(k) if isinstance(v, h5py.Dataset) else None)
            for k in names:
                x, y = ha[k][()], hb[k][()]
                if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
                    sys.exit(f"{step}/{os.path.basename(fa)}:{k} differs")
                n += 1
print(f"{len(la)} metrics lines and {n} checkpoint datasets bit-identical")
PY
}

# Since issue 10 the in-training eval covers --eval-batches global batches whatever the layout;
# before it, dp ranks evaluated batches of their own micro-batch (half the windows at dp 2). So
# with a base older than that change, the dp2 run's eval lines are compared with the new single
# run's (the same windows; float rounding apart) instead of the base's.
for layout in single dp2-zero1; do
  if [ "$layout" = single ]; then np=1 extra=(--batch 16); else np=2 extra=(--batch 8 --zero 1); fi
  run "base-$layout" "$base_bin" "$np" "${extra[@]}"
  run "new-$layout" "$new_bin" "$np" "${extra[@]}"
  printf '%-10s ' "$layout"
  if [ "$layout" != single ] && ! "$base_bin" train --help | grep -q 'global batches per eval'; then
    compare "base-$layout" "new-$layout" skip-eval
    /usr/bin/python3 - "$work/new-single" "$work/new-$layout" <<'PY'
import json, os, sys
ev = lambda d: [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl")) if "val_loss" in l]
a, b = ev(sys.argv[1]), ev(sys.argv[2])
assert len(a) == len(b) and a, f"eval lines: {len(a)} vs {len(b)}"
for x, y in zip(a, b):
    assert x["step"] == y["step"] and x["val_tokens"] == y["val_tokens"], f"{x} vs {y}"
    assert abs(x["val_loss"] - y["val_loss"]) <= 1e-5 * abs(x["val_loss"]), f"{x} vs {y}"
print(f"           {len(a)} eval lines: the same val_tokens as one rank, val_loss within 1e-5")
PY
  else
    compare "base-$layout" "new-$layout"
  fi
done
