#!/usr/bin/env bash
# Print the fault suite's summary line from a nextest JUnit report:
#   faults: N scenarios, S survived
# The scenarios are the tests of the test binaries named `faults` (dr-syncer-operator/tests/faults.rs,
# dr-syncer-cli/tests/faults.rs, ...); a scenario survives when its test passed.
set -euo pipefail
report=${1:?usage: faults-summary.sh JUNIT_XML}
if [ ! -f "$report" ]; then
  echo "faults: no test report ($report)"
  exit 0
fi
# <testsuite name="dr-syncer-operator::faults" tests="5" disabled="0" errors="0" failures="1">
grep -o '<testsuite name="[^"]*::faults"[^>]*>' "$report" | awk '
  {
    t = $0; sub(/.* tests="/, "", t); sub(/".*/, "", t)
    f = $0; sub(/.* failures="/, "", f); sub(/".*/, "", f)
    e = $0; sub(/.* errors="/, "", e); sub(/".*/, "", e)
    tests += t; failed += f + e
  }
  END { printf "faults: %d scenarios, %d survived\n", tests, tests - failed }'
