#!/usr/bin/env bash
# Run the dr-syncer operator on this machine against three local control planes — "ctl" (where the
# custom resources live), "prod" and "dr" — with a sample application and a Continuous NamespaceMapping,
# so you can watch a namespace stay in sync. See docs/operator.md.
#
#   scripts/operator-local.sh          set everything up, then run the operator in the foreground (Ctrl+C stops it)
#   scripts/operator-local.sh --setup  set up only (run the operator yourself; the command is printed)
#
# The control planes keep running after the operator stops; `scripts/testenv.sh down` stops them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib/common.sh
. scripts/lib/common.sh

require_rust
ensure_debs "${BASE_DEBS[@]}"

step "test control plane (build or reuse)"
scripts/build-control-plane.sh | tail -n 2

step "starting control planes ctl, prod and dr (fresh)"
scripts/testenv.sh reset ctl prod dr
scripts/testenv.sh up ctl prod dr --simulate-workloads >/dev/null
KUBECTL=target/testenv/bin/kubectl
CTL=$(scripts/testenv.sh kubeconfig ctl)
PROD=$(scripts/testenv.sh kubeconfig prod)
DR=$(scripts/testenv.sh kubeconfig dr)

step "building dr-syncer-operator"
cargo build --quiet --release -p dr-syncer-operator
OPERATOR=target/release/dr-syncer-operator

step "ctl: CRDs, namespace dr-syncer, kubeconfig Secrets and RemoteClusters prod and dr"
"$OPERATOR" crd | "$KUBECTL" --kubeconfig "$CTL" apply -f - >/dev/null
"$KUBECTL" --kubeconfig "$CTL" wait --for condition=Established --timeout=60s \
  crd/remoteclusters.dr-syncer.io crd/clustermappings.dr-syncer.io crd/namespacemappings.dr-syncer.io >/dev/null
"$KUBECTL" --kubeconfig "$CTL" create namespace dr-syncer >/dev/null
"$KUBECTL" --kubeconfig "$CTL" -n dr-syncer create secret generic prod-kubeconfig --from-file=kubeconfig="$PROD" >/dev/null
"$KUBECTL" --kubeconfig "$CTL" -n dr-syncer create secret generic dr-kubeconfig --from-file=kubeconfig="$DR" >/dev/null
"$KUBECTL" --kubeconfig "$CTL" apply -f - <<'YAML'
apiVersion: dr-syncer.io/v1alpha1
kind: RemoteCluster
metadata: {name: prod, namespace: dr-syncer}
spec:
  kubeconfigSecretRef: {name: prod-kubeconfig, namespace: dr-syncer}
---
apiVersion: dr-syncer.io/v1alpha1
kind: RemoteCluster
metadata: {name: dr, namespace: dr-syncer}
spec:
  kubeconfigSecretRef: {name: dr-kubeconfig, namespace: dr-syncer}
---
apiVersion: dr-syncer.io/v1alpha1
kind: ClusterMapping
metadata: {name: prod-to-dr, namespace: dr-syncer}
spec: {sourceCluster: prod, targetCluster: dr}
YAML

step "prod: the sample application (examples/demo/shop.yaml)"
"$KUBECTL" --kubeconfig "$PROD" apply --server-side -f examples/demo/shop.yaml >/dev/null
"$KUBECTL" --kubeconfig "$PROD" get all -n shop

step "ctl: NamespaceMapping shop (Continuous: changes reach DR within seconds; prune on)"
"$KUBECTL" --kubeconfig "$CTL" apply -f - <<'YAML'
apiVersion: dr-syncer.io/v1alpha1
kind: NamespaceMapping
metadata: {name: shop, namespace: dr-syncer}
spec:
  replicationMode: Continuous
  clusterMappingRef: {name: prod-to-dr}
  sourceNamespace: shop
  destinationNamespace: shop
  resourceTypes: [configmaps, secrets, deployments, services, persistentvolumeclaims]
  prune: true
  continuous: {backgroundSyncInterval: 10m}
YAML

RUN=("$OPERATOR" --kubeconfig "$CTL" --metrics-bind-address 127.0.0.1:8080 --health-probe-bind-address 127.0.0.1:8081)
cat <<MSG

Ready. In another terminal:
  export CTL=$CTL PROD=$PROD DR=$DR
  $KUBECTL --kubeconfig \$CTL -n dr-syncer get remoteclusters,clustermappings,namespacemappings
  $KUBECTL --kubeconfig \$DR -n shop get deployments,configmaps
  $KUBECTL --kubeconfig \$PROD -n shop create configmap hello --from-literal=greeting=hi
  curl -s 127.0.0.1:8080/metrics | grep dr_syncer_
MSG
if [ "${1:-}" = "--setup" ]; then
  echo "Run the operator with:"
  echo "  ${RUN[*]}"
  exit 0
fi
step "running the operator (Ctrl+C stops it)"
exec "${RUN[@]}"
