#!/usr/bin/env bash
# run_tests.sh BUILD SUITE...: runs meson test suites and ends with the closing line CI reads,
# "N passed, N failed, N skipped", counting Criterion's individual tests (TAP, one line each).
# The multirank suite launches mpirun itself (with the Open MPI settings it needs as root); a
# build without MPI has no such suite and it is skipped here.
set -uo pipefail
build=$1
shift
suites=()
for s in "$@"; do
  # The list is read whole before grep looks at it: `grep -q` on a pipe would exit at the first
  # match, meson would die of SIGPIPE and pipefail would call the suite missing.
  if [ "$s" = multirank ] && ! grep -q ':multirank /' <<<"$(meson test -C "$build" --list 2>/dev/null)"; then
    echo "run_tests: no multirank suite in $build (built without MPI); skipping it" >&2
    continue
  fi
  suites+=(--suite "$s")
done
meson test -C "$build" "${suites[@]}" --print-errorlogs
rc=$?
python3 - "$build/meson-logs/testlog.json" <<'PY'
import json, sys
passed = failed = skipped = 0
for line in open(sys.argv[1]):
    t = json.loads(line)
    out = t.get("stdout") or ""
    counted = False
    for l in out.splitlines():
        if l.startswith("ok "):
            counted = True
            if "# SKIP" in l:
                skipped += 1
            else:
                passed += 1
        elif l.startswith("not ok "):
            counted = True
            failed += 1
    if not counted:  # a test that printed no TAP counts as one
        if t["result"] == "OK":
            passed += 1
        elif t["result"] == "SKIP":
            skipped += 1
        else:
            failed += 1
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
exit $rc
