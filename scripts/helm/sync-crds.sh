#!/usr/bin/env bash
# Copy the generated CRDs (deploy/crds/*.yaml) and the alert rules (deploy/prometheus-rule.yaml) into the
# Helm chart (charts/dr-syncer/files/), byte for byte. The chart renders them from there
# (templates/crds.yaml, templates/prometheusrule.yaml); a test checks that the copies are equal.
#
#   scripts/helm/sync-crds.sh          copy (and remove copies whose source is gone)
#   scripts/helm/sync-crds.sh --check  change nothing; exit 1 and name the files that differ
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

CHECK=0
case "${1:-}" in
  "") ;;
  --check) CHECK=1 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

SRC_CRDS=deploy/crds
DST_CRDS=charts/dr-syncer/files/crds
SRC_RULE=deploy/prometheus-rule.yaml
DST_RULE=charts/dr-syncer/files/prometheus-rule.yaml

shopt -s nullglob
srcs=("$SRC_CRDS"/*.yaml)
[ ${#srcs[@]} -gt 0 ] || { echo "error: no CRDs in $SRC_CRDS" >&2; exit 1; }

# copies: from[i] -> to[i]
from=() to=()
for f in "${srcs[@]}"; do from+=("$f"); to+=("$DST_CRDS/$(basename "$f")"); done
from+=("$SRC_RULE"); to+=("$DST_RULE")

stale=()
for f in "$DST_CRDS"/*.yaml; do
  [ -f "$SRC_CRDS/$(basename "$f")" ] || stale+=("$f")
done

if [ "$CHECK" = 1 ]; then
  bad=0
  for i in "${!from[@]}"; do
    if ! cmp -s "${from[$i]}" "${to[$i]}"; then echo "differs: ${to[$i]} (from ${from[$i]})" >&2; bad=1; fi
  done
  for f in "${stale[@]}"; do echo "stale: $f (no $SRC_CRDS/$(basename "$f"))" >&2; bad=1; done
  [ "$bad" = 0 ] || { echo "run scripts/helm/sync-crds.sh" >&2; exit 1; }
  echo "chart copies are up to date"
  exit 0
fi

mkdir -p "$DST_CRDS"
for i in "${!from[@]}"; do
  cmp -s "${from[$i]}" "${to[$i]}" || { cp "${from[$i]}" "${to[$i]}"; echo "copied ${from[$i]} -> ${to[$i]}"; }
done
for f in "${stale[@]}"; do rm -f "$f"; echo "removed $f"; done
