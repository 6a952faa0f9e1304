#!/usr/bin/env bash
# Print a suite's summary line from a nextest JUnit report, e.g.
#   faults: N scenarios, S survived       (suite-summary.sh REPORT faults scenarios survived)
#   security: N attacks, R refused        (suite-summary.sh REPORT security attacks refused)
# A suite is the tests of the test binaries with that name in every crate (dr-syncer-operator/tests/faults.rs,
# dr-syncer-cli/tests/security.rs, ...); a test counts in the second number when it passed.
set -euo pipefail
report=${1:?usage: suite-summary.sh JUNIT_XML SUITE NOUN VERB}
suite=${2:?suite name}
noun=${3:?noun}
verb=${4:?verb}
if [ ! -f "$report" ]; then
  echo "$suite: no test report ($report)"
  exit 0
fi
# <testsuite name="dr-syncer-operator::faults" tests="5" disabled="0" errors="0" failures="1">
{ grep -o "<testsuite name=\"[^\"]*::$suite\"[^>]*>" "$report" || true; } | awk -v suite="$suite" -v noun="$noun" -v verb="$verb" '
  {
    t = $0; sub(/.* tests="/, "", t); sub(/".*/, "", t)
    f = $0; sub(/.* failures="/, "", f); sub(/".*/, "", f)
    e = $0; sub(/.* errors="/, "", e); sub(/".*/, "", e)
    tests += t; failed += f + e
  }
  END { printf "%s: %d %s, %d %s\n", suite, tests, noun, tests - failed, verb }'
