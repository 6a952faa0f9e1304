#!/usr/bin/env bash
# dr-syncer's main job on this machine, without a real cluster: bring up two local Kubernetes control
# planes ("prod" and "dr"), put a small application into prod, and show both sides.
#
# First run installs what it needs (Debian packages, the test control plane build, cached under
# ~/.cache/dr-syncer). The control planes keep running afterwards so you can explore them with kubectl;
# stop them with `scripts/testenv.sh down`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib/common.sh
. scripts/lib/common.sh

ensure_debs "${BASE_DEBS[@]}"
step "test control plane (build or reuse)"
scripts/build-control-plane.sh | tail -n 2

step "starting control planes prod and dr"
scripts/testenv.sh up prod dr --simulate-workloads

KUBECTL=target/testenv/bin/kubectl
PROD=$(scripts/testenv.sh kubeconfig prod)
DR=$(scripts/testenv.sh kubeconfig dr)

step "production: deploying the sample application (examples/demo/shop.yaml)"
"$KUBECTL" --kubeconfig "$PROD" apply --server-side -f examples/demo/shop.yaml
"$KUBECTL" --kubeconfig "$PROD" rollout status deployment/storefront -n shop --timeout=60s

step "production: namespace shop"
"$KUBECTL" --kubeconfig "$PROD" get deployments,services,configmaps,secrets,persistentvolumeclaims -n shop

step "DR: namespaces (nothing replicated yet)"
"$KUBECTL" --kubeconfig "$DR" get namespaces

cat <<MSG

Both control planes are running. Try:
  export KUBECONFIG=$PROD
  $KUBECTL get all -n shop
Stop them with: scripts/testenv.sh down
MSG
