#!/usr/bin/env bash
# run_tests.sh BUILD SUITE: runs a meson test suite and ends with the closing line CI reads,
# "N passed, N failed, N skipped", counting Criterion's individual tests (TAP, one line each).
set -uo pipefail
build=$1
suite=$2
meson test -C "$build" --suite "$suite" --print-errorlogs
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
