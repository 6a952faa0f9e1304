#!/usr/bin/env bash
# Supply-chain checks with cargo-deny and deny.toml: licenses, banned crates, sources; with --advisories
# also the RustSec advisory database (fetched from the internet).
#
#   scripts/audit.sh               licenses bans sources
#   scripts/audit.sh --advisories  and advisories
#
# Not part of CI (scripts/test.sh): installing cargo-deny compiles it (about 10 minutes on 2 cores) and the
# advisory database cannot be fetched where only package registries are reachable. Run it before a release
# and when dependencies change.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib/common.sh
. scripts/lib/common.sh

require_rust
if ! cargo deny --version >/dev/null 2>&1; then
  step "installing cargo-deny (cargo install --locked cargo-deny; compiles it once)"
  cargo install --locked cargo-deny
fi
checks=(licenses bans sources)
[ "${1:-}" = --advisories ] && checks+=(advisories)
step "cargo deny check ${checks[*]}"
cargo deny --all-features check "${checks[@]}"
