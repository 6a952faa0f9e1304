#!/usr/bin/env bash
# dr-syncer's main job on this machine, without a real cluster: bring up two local Kubernetes control
# planes ("prod" and "dr"), put a small application into prod, and run a DR drill on it with
# dr-syncer-cli: preflight, plan, stage, diff, cutover, failback. Each run starts from fresh control planes.
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

step "starting control planes prod and dr (fresh: state of an earlier demo run is removed)"
scripts/testenv.sh reset prod dr
scripts/testenv.sh up prod dr --simulate-workloads

KUBECTL=target/testenv/bin/kubectl
PROD=$(scripts/testenv.sh kubeconfig prod)
DR=$(scripts/testenv.sh kubeconfig dr)

step "production: deploying the sample application (examples/demo/shop.yaml)"
"$KUBECTL" --kubeconfig "$PROD" apply --server-side -f examples/demo/shop.yaml
"$KUBECTL" --kubeconfig "$PROD" rollout status deployment/storefront -n shop --timeout=60s

step "building dr-syncer-cli"
cargo build --quiet --release -p dr-syncer-cli
CLI=(target/release/dr-syncer-cli --source-kubeconfig "$PROD" --dest-kubeconfig "$DR" --source-namespace shop
     --resource-types configmaps,secrets,deployments,services,persistentvolumeclaims)

step "preflight: namespaces, storage classes, resource types and permissions on both sides"
"${CLI[@]}" preflight

step "plan: what a stage would create on the DR side (Secret values redacted)"
"${CLI[@]}" plan

step "stage: copy the namespace; the DR side stays quiet (storefront at 0 replicas)"
"${CLI[@]}" stage
"$KUBECTL" --kubeconfig "$DR" get deployments,services,configmaps,persistentvolumeclaims -n shop

step "diff: source and DR are in sync (exit 0)"
"${CLI[@]}" diff

step "a change in production is drift until the next stage (diff exits 3)"
"$KUBECTL" --kubeconfig "$PROD" -n shop patch configmap shop-settings --type merge -p '{"data":{"CURRENCY":"USD"}}'
set +e; "${CLI[@]}" diff; code=$?; set -e
echo "diff exit code: $code"
"${CLI[@]}" stage >/dev/null

step "cutover: quiet production, activate DR (storefront 3 replicas on DR, 0 in prod)"
"${CLI[@]}" cutover --yes --wait 60s
echo "prod: $("$KUBECTL" --kubeconfig "$PROD" -n shop get deployment storefront -o jsonpath='{.spec.replicas}') replicas," \
     "DR: $("$KUBECTL" --kubeconfig "$DR" -n shop get deployment storefront -o jsonpath='{.spec.replicas}') replicas"

step "failback: quiet DR, reactivate production from its recorded originals"
"${CLI[@]}" failback --yes --wait 60s
echo "prod: $("$KUBECTL" --kubeconfig "$PROD" -n shop get deployment storefront -o jsonpath='{.spec.replicas}') replicas," \
     "DR: $("$KUBECTL" --kubeconfig "$DR" -n shop get deployment storefront -o jsonpath='{.spec.replicas}') replicas"

cat <<MSG

Both control planes are still running. Try:
  target/release/dr-syncer-cli --help
  export KUBECONFIG=$PROD
  $KUBECTL get all -n shop
Stop them with: scripts/testenv.sh down
MSG
