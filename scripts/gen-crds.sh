#!/usr/bin/env bash
# Regenerate deploy/crds/*.yaml from dr-syncer-core's API types. A test fails when they drift apart.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p deploy/crds
cargo run -q -p dr-syncer-core --example gen_crds -- deploy/crds
scripts/helm/sync-crds.sh
