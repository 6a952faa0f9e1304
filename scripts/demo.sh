#!/usr/bin/env bash
# dr-syncer's main job on this machine, without a real cluster: bring up two local Kubernetes control
# planes ("prod" and "dr"), put a small application into prod, and run a DR drill on it with
# dr-syncer-cli: preflight, plan, stage, diff, cutover, failback; then the day production is down: its
# control plane stopped, promote (DR only), production back (both sites active), fence, failback. Each run
# starts from fresh control planes.
#
# `--separate-networks`: production and DR nodes on networks of their own, joined by a router through which
# the DR side reaches only production's "external" node addresses (as two VPCs whose nodes have public
# IPs): the preflight shows which exposure mode reaches the agents, and the copies take that path.
#
# First run installs what it needs (Debian packages, the test control plane build, cached under
# ~/.cache/dr-syncer). The control planes keep running afterwards so you can explore them with kubectl;
# stop them with `scripts/testenv.sh down`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib/common.sh
. scripts/lib/common.sh

SEPARATE=0
for arg in "$@"; do
  case "$arg" in
    --separate-networks) SEPARATE=1 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $arg (usage: scripts/demo.sh [--separate-networks])" ;;
  esac
done

ensure_debs "${BASE_DEBS[@]}"
step "test control plane (build or reuse)"
scripts/build-control-plane.sh | tail -n 2

step "starting control planes prod and dr (fresh: state of an earlier demo run is removed)"
scripts/testenv.sh reset prod dr
scripts/testenv.sh up prod dr --simulate-workloads

KUBECTL=target/testenv/bin/kubectl
PROD=$(scripts/testenv.sh kubeconfig prod)
DR=$(scripts/testenv.sh kubeconfig dr)

step "building dr-syncer-cli, the agent and the node simulator"
cargo build --quiet --release -p dr-syncer-cli -p dr-syncer-agent -p dr-syncer-testenv --bin dr-syncer-cli \
  --bin dr-syncer-agent --bin sim-nodes
CLI=(target/release/dr-syncer-cli --source-kubeconfig "$PROD" --dest-kubeconfig "$DR" --source-namespace shop
     --resource-types configmaps,secrets,deployments,services,persistentvolumeclaims)

# PVC data needs nodes: sim-nodes plays kubelet, scheduler, DaemonSet controller and PV provisioner for
# both clusters (one node each, in network namespaces), running the real agent with sshd and rsync.
DATA=()
REVERSE=()
SIM_STATE=target/testenv/sim-nodes.state
rm -f "$SIM_STATE"
if [ "$SEPARATE" = 1 ]; then
  step "simulated nodes in separated networks: prod-a (10.88.0.11, external 203.0.113.11), dr-a (10.89.0.21, external 203.0.113.21);" \
    "DR cannot route to 10.88.0.0/24"
  NODES=(--separate-networks "prod=$PROD=prod-a@10.88.0.11/203.0.113.11" "dr=$DR=dr-a@10.89.0.21/203.0.113.21")
else
  step "simulated nodes: prod-a for prod, dr-a for dr (PVC storage and the agent's pods)"
  NODES=("prod=$PROD=prod-a@10.88.0.11" "dr=$DR=dr-a@10.88.0.21")
fi
target/release/sim-nodes --state "$SIM_STATE" --image "dr-syncer-agent=$PWD/target/release/dr-syncer-agent" \
  "${NODES[@]}" >target/testenv/sim-nodes.log 2>&1 &
SIM_PID=$!
stop_sim() { kill -TERM "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null; return 0; }
trap stop_sim EXIT
for _ in $(seq 1 300); do [ -s "$SIM_STATE" ] && break; kill -0 "$SIM_PID" 2>/dev/null || break; sleep 0.2; done
if [ -s "$SIM_STATE" ]; then
  DATA=(--migrate-pvc-data)
  REVERSE=(--reverse-migrate-pvc-data)
else
  stop_sim
  echo "no simulated nodes ($(tail -n 1 target/testenv/sim-nodes.log)): this demo runs without PVC data"
fi
volume() { # CLUSTER KUBECONFIG: the storage directory of PVC shop/uploads there
  local pv storage
  pv=$("$KUBECTL" --kubeconfig "$2" -n shop get pvc uploads -o jsonpath='{.spec.volumeName}') || return 1
  storage=$(awk -v c="$1" '$1 == c {print $2}' "$SIM_STATE")
  [ -n "$pv" ] && [ -n "$storage" ] && [ -d "$storage/$pv" ] || return 1
  echo "$storage/$pv"
}

step "production: deploying the sample application (examples/demo/shop.yaml)"
"$KUBECTL" --kubeconfig "$PROD" apply --server-side -f examples/demo/shop.yaml
"$KUBECTL" --kubeconfig "$PROD" rollout status deployment/storefront -n shop --timeout=60s
if [ ${#DATA[@]} -gt 0 ]; then
  "$KUBECTL" --kubeconfig "$PROD" -n shop wait pvc/uploads --for=jsonpath='{.status.phase}'=Bound --timeout=60s
  PROD_UPLOADS=$(volume prod "$PROD") || die "no storage directory for prod's PVC shop/uploads"
  mkdir -p "$PROD_UPLOADS/images"
  echo "order #1001: 2 mugs" >"$PROD_UPLOADS/orders.log"
  head -c 2097152 /dev/urandom >"$PROD_UPLOADS/images/banner.jpg"
  echo "production's PVC shop/uploads holds:"; (cd "$PROD_UPLOADS" && find . -type f -exec ls -l {} +)
fi

step "preflight: namespaces, storage classes, resource types and permissions on both sides${DATA:+, and the PVC data path}"
"${CLI[@]}" preflight "${DATA[@]}"

step "plan: what a stage would create on the DR side (Secret values redacted)"
"${CLI[@]}" plan

step "stage: copy the namespace${DATA:+ and the PVC data}; the DR side stays quiet (storefront at 0 replicas)"
"${CLI[@]}" stage "${DATA[@]}"
"$KUBECTL" --kubeconfig "$DR" get deployments,services,configmaps,persistentvolumeclaims -n shop
if [ ${#DATA[@]} -gt 0 ]; then
  DR_UPLOADS=$(volume dr "$DR") || die "no storage directory for DR's PVC shop/uploads"
  echo "DR's PVC shop/uploads now holds:"; (cd "$DR_UPLOADS" && find . -type f -exec ls -l {} +)
  cmp -s "$PROD_UPLOADS/images/banner.jpg" "$DR_UPLOADS/images/banner.jpg" || die "banner.jpg differs on DR"
  echo "banner.jpg: identical on both sides"
fi

step "diff: source and DR are in sync (exit 0)"
"${CLI[@]}" diff

step "a change in production is drift until the next stage (diff exits 3)"
"$KUBECTL" --kubeconfig "$PROD" -n shop patch configmap shop-settings --type merge -p '{"data":{"CURRENCY":"USD"}}'
set +e; "${CLI[@]}" diff; code=$?; set -e
echo "diff exit code: $code"
"${CLI[@]}" stage >/dev/null

[ ${#DATA[@]} -gt 0 ] && echo "order #1002: 1 teapot" >>"$PROD_UPLOADS/orders.log"
step "cutover: quiet production${DATA:+, copy the last data changes}, activate DR (storefront 3 replicas on DR, 0 in prod)"
"${CLI[@]}" cutover "${DATA[@]}" --yes --wait 60s
echo "prod: $("$KUBECTL" --kubeconfig "$PROD" -n shop get deployment storefront -o jsonpath='{.spec.replicas}') replicas," \
     "DR: $("$KUBECTL" --kubeconfig "$DR" -n shop get deployment storefront -o jsonpath='{.spec.replicas}') replicas"
if [ ${#DATA[@]} -gt 0 ]; then
  echo "DR's orders.log (the order placed just before the cutover came along):"; cat "$DR_UPLOADS/orders.log"
  grep -q '#1002' "$DR_UPLOADS/orders.log" || die "the last change before the cutover did not reach DR"
  echo "order #1003: 4 spoons (taken while DR was active)" >>"$DR_UPLOADS/orders.log"
fi

step "failback: quiet DR${DATA:+, copy the data back from DR}, reactivate production from its recorded originals"
"${CLI[@]}" failback "${REVERSE[@]}" --yes --wait 60s
echo "prod: $("$KUBECTL" --kubeconfig "$PROD" -n shop get deployment storefront -o jsonpath='{.spec.replicas}') replicas," \
     "DR: $("$KUBECTL" --kubeconfig "$DR" -n shop get deployment storefront -o jsonpath='{.spec.replicas}') replicas"
if [ ${#DATA[@]} -gt 0 ]; then
  echo "production's orders.log (DR's order came back):"; cat "$PROD_UPLOADS/orders.log"
  grep -q '#1003' "$PROD_UPLOADS/orders.log" || die "DR's change did not come back to production"
fi

stop_sim
trap - EXIT
step "the day production is down: stop prod's control plane, stage first so DR is fresh"
"${CLI[@]}" stage >/dev/null
scripts/testenv.sh down prod
ONE_DR=(target/release/dr-syncer-cli --dest-kubeconfig "$DR" --dest-namespace shop
        --resource-types configmaps,secrets,deployments,services,persistentvolumeclaims)
step "promote: make DR live without contacting production (prints how fresh the DR copy is: the RPO accepted)"
"${ONE_DR[@]}" promote --yes
echo "DR: $("$KUBECTL" --kubeconfig "$DR" -n shop get deployment storefront -o jsonpath='{.spec.replicas}') replicas," \
     "marked $("$KUBECTL" --kubeconfig "$DR" get namespace shop -o jsonpath='{.metadata.annotations.dr-syncer\.io/activated-by}')"

step "production comes back with its workloads running: status reports both sites active"
scripts/testenv.sh up prod --simulate-workloads
"${CLI[@]}" status

step "fence: quiet production (never touching DR), then fail back as after a cutover"
target/release/dr-syncer-cli --source-kubeconfig "$PROD" --source-namespace shop \
  --resource-types configmaps,secrets,deployments,services,persistentvolumeclaims fence --yes
"${CLI[@]}" failback --yes --wait 60s
"${CLI[@]}" status
echo "prod: $("$KUBECTL" --kubeconfig "$PROD" -n shop get deployment storefront -o jsonpath='{.spec.replicas}') replicas," \
     "DR: $("$KUBECTL" --kubeconfig "$DR" -n shop get deployment storefront -o jsonpath='{.spec.replicas}') replicas"

cat <<MSG

Both control planes are still running (the simulated nodes and their PVC storage are gone). Try:
  target/release/dr-syncer-cli --help
  export KUBECONFIG=$PROD
  $KUBECTL get all -n shop
Stop them with: scripts/testenv.sh down
MSG
