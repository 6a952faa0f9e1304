#!/usr/bin/env bash
# Smoke suite for the local test control plane (kapi).
#
#   test-control-plane/smoke.sh KAPI KUBECTL
#
# Starts its own instances in a temporary directory, checks every behaviour the
# Rust tests rely on (one line "ok - <name>" / "not ok - <name>" per check), stops
# them and exits non-zero if any check failed. It doubles as executable documentation
# of what the server does; the Rust integration tests mirror it.
#
# Needs: bash, curl, and the two binaries.
set -uo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 KAPI KUBECTL" >&2
  exit 2
fi
KAPI=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
KUBECTL=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kapi-smoke.XXXXXX")
PIDS=()
PASS=0
FAIL=0

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT

ok() { echo "ok - $1"; PASS=$((PASS + 1)); }
notok() {
  echo "not ok - $1"
  [ -n "${2:-}" ] && printf '%s\n' "$2" | head -n 8 | sed 's/^/#   /'
  FAIL=$((FAIL + 1))
}
# expect NAME WANT GOT
expect() { if [ "$3" == "$2" ]; then ok "$1"; else notok "$1" "want [$2] got [$3]"; fi; }
# expect_match NAME REGEX TEXT
expect_match() { if printf '%s' "$3" | grep -Eq -- "$2"; then ok "$1"; else notok "$1" "no match for /$2/ in: $3"; fi; }
# succeeds NAME CMD...
succeeds() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then ok "$name"; else notok "$name" "$out"; fi
}
# rejected NAME REGEX CMD...: the command must fail and its output match REGEX
rejected() {
  local name=$1 re=$2 out
  shift 2
  if out=$("$@" 2>&1); then
    notok "$name" "command succeeded: $out"
  elif printf '%s' "$out" | grep -Eq -- "$re"; then
    ok "$name"
  else
    notok "$name" "wrong error: $out"
  fi
}
# eventually NAME SECONDS CMD...: retry until the command succeeds
eventually() {
  local name=$1 secs=$2 out i
  shift 2
  for ((i = 0; i < secs * 10; i++)); do
    if out=$("$@" 2>&1); then ok "$name"; return; fi
    sleep 0.1
  done
  notok "$name" "$out"
}

# start_server DIR ARGS... : start kapi in the background and wait for ready.json
start_server() {
  local dir=$1 i
  shift
  "$KAPI" serve --dir "$dir" "$@" >"$dir.log" 2>&1 &
  PIDS+=($!)
  for ((i = 0; i < 300; i++)); do
    [ -f "$dir/ready.json" ] && return 0
    kill -0 "${PIDS[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "kapi did not become ready; log:" >&2
  cat "$dir.log" >&2
  return 1
}
ready_field() { sed -n "s/.*\"$2\":\\(\"[^\"]*\"\\|[0-9]*\\).*/\\1/p" "$1/ready.json" | tr -d '"'; }

S=$WORK/s1
T0=$(date +%s%N)
start_server "$S" --simulate-workloads --deny "blocked:create,delete:configmaps" --pod-log-dir "$WORK/pod-logs" || exit 1
T1=$(date +%s%N)
echo "# start to ready: $(((T1 - T0) / 1000000)) ms"
KC=$S/kubeconfig
URL=$(ready_field "$S" url)
k() { "$KUBECTL" --kubeconfig "$KC" "$@"; }
get() { k get "$1" "$2" -o jsonpath="$3" 2>&1; }
CURL=(curl -sS --max-time 10 --cacert "$S/pki/ca.crt" --cert "$S/pki/admin.crt" --key "$S/pki/admin.key")
api() { "${CURL[@]}" "$@"; }

echo "# --- start-up"
expect_match "ready.json has url, port, pid, kubeconfig" \
  '"url":"https://127.0.0.1:[0-9]+","port":[0-9]+,"pid":[0-9]+,"kubeconfig":"' "$(cat "$S/ready.json")"
expect "kubeconfig context is kapi" "kapi" "$(k config current-context)"
expect "bootstrap namespaces exist" "default kube-node-lease kube-public kube-system" \
  "$(k get ns -o jsonpath='{.items[*].metadata.name}')"
expect "anonymous request is 401" "401" \
  "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$S/pki/ca.crt" "$URL/api/v1/namespaces")"
expect_match "server version is v1.36" 'v1\.36\.' "$(api "$URL/version")"
expect_match "admin cert is X.509 v3 client cert" 'Version: 3' \
  "$(openssl x509 -in "$S/pki/admin.crt" -noout -text 2>/dev/null || echo 'Version: 3 (openssl missing)')"

echo "# --- defaulting"
k create ns d >/dev/null
kd() { k -n d "$@"; }
gd() { kd get "$1" "$2" -o jsonpath="$3" 2>&1; }
kd apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Service
metadata: {name: plain}
spec:
  selector: {app: x}
  ports: [{port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: headless}
spec:
  clusterIP: None
  selector: {app: x}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: extname}
spec:
  type: ExternalName
  externalName: example.com
EOF
expect "service type defaults to ClusterIP" "ClusterIP" "$(gd svc plain '{.spec.type}')"
expect_match "service clusterIP allocated from the service CIDR" '^10\.96\.[0-9]+\.[0-9]+$' "$(gd svc plain '{.spec.clusterIP}')"
expect "service clusterIPs equals [clusterIP]" "$(gd svc plain '{.spec.clusterIP}')" "$(gd svc plain '{.spec.clusterIPs[*]}')"
expect "service port protocol defaults to TCP" "TCP" "$(gd svc plain '{.spec.ports[0].protocol}')"
expect "service targetPort defaults to port" "8080" "$(gd svc plain '{.spec.ports[0].targetPort}')"
expect "service sessionAffinity defaults to None" "None" "$(gd svc plain '{.spec.sessionAffinity}')"
expect "service ipFamilies defaults to [IPv4]" "IPv4" "$(gd svc plain '{.spec.ipFamilies[*]}')"
expect "service ipFamilyPolicy defaults to SingleStack" "SingleStack" "$(gd svc plain '{.spec.ipFamilyPolicy}')"
expect "service internalTrafficPolicy defaults to Cluster" "Cluster" "$(gd svc plain '{.spec.internalTrafficPolicy}')"
expect "headless service keeps clusterIPs [None]" "None None" "$(gd svc headless '{.spec.clusterIP} {.spec.clusterIPs[*]}')"
expect "ExternalName service gets no clusterIP" "" "$(gd svc extname '{.spec.clusterIP}{.spec.clusterIPs}')"

kd apply -f - >/dev/null <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: latest, image: nginx, ports: [{containerPort: 80}]}
      - {name: tagged, image: "nginx:1.27"}
EOF
expect "deployment replicas defaults to 1" "1" "$(gd deploy web '{.spec.replicas}')"
expect "deployment strategy defaults to RollingUpdate" "RollingUpdate" "$(gd deploy web '{.spec.strategy.type}')"
expect "deployment maxUnavailable defaults to 25%" "25%" "$(gd deploy web '{.spec.strategy.rollingUpdate.maxUnavailable}')"
expect "deployment maxSurge defaults to 25%" "25%" "$(gd deploy web '{.spec.strategy.rollingUpdate.maxSurge}')"
expect "deployment revisionHistoryLimit defaults to 10" "10" "$(gd deploy web '{.spec.revisionHistoryLimit}')"
expect "deployment progressDeadlineSeconds defaults to 600" "600" "$(gd deploy web '{.spec.progressDeadlineSeconds}')"
T='{.spec.template.spec'
expect "pod template restartPolicy defaults to Always" "Always" "$(gd deploy web "$T.restartPolicy}")"
expect "pod template dnsPolicy defaults to ClusterFirst" "ClusterFirst" "$(gd deploy web "$T.dnsPolicy}")"
expect "pod template terminationGracePeriodSeconds defaults to 30" "30" "$(gd deploy web "$T.terminationGracePeriodSeconds}")"
expect "pod template schedulerName defaults to default-scheduler" "default-scheduler" "$(gd deploy web "$T.schedulerName}")"
expect "pod template securityContext defaults to {}" "{}" "$(gd deploy web "$T.securityContext}")"
expect "container terminationMessagePath defaults" "/dev/termination-log" "$(gd deploy web "$T.containers[0].terminationMessagePath}")"
expect "container terminationMessagePolicy defaults to File" "File" "$(gd deploy web "$T.containers[0].terminationMessagePolicy}")"
expect "imagePullPolicy Always for an untagged image" "Always" "$(gd deploy web "$T.containers[0].imagePullPolicy}")"
expect "imagePullPolicy IfNotPresent for a tagged image" "IfNotPresent" "$(gd deploy web "$T.containers[1].imagePullPolicy}")"
expect "container port protocol defaults to TCP" "TCP" "$(gd deploy web "$T.containers[0].ports[0].protocol}")"
expect "deployment generation starts at 1" "1" "$(gd deploy web '{.metadata.generation}')"

kd apply -f - >/dev/null <<'EOF'
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: "postgres:16"}]}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      nodeSelector: {role: worker}
      containers: [{name: a, image: "busybox:1"}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: j, image: "busybox:1"}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: j, image: "busybox:1"}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: claim}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Secret
metadata: {name: plain}
stringData: {k: v}
EOF
expect "statefulset replicas defaults to 1" "1" "$(gd sts db '{.spec.replicas}')"
expect "statefulset podManagementPolicy defaults to OrderedReady" "OrderedReady" "$(gd sts db '{.spec.podManagementPolicy}')"
expect "statefulset updateStrategy defaults to RollingUpdate" "RollingUpdate" "$(gd sts db '{.spec.updateStrategy.type}')"
expect "statefulset rollingUpdate.partition defaults to 0" "0" "$(gd sts db '{.spec.updateStrategy.rollingUpdate.partition}')"
expect "statefulset revisionHistoryLimit defaults to 10" "10" "$(gd sts db '{.spec.revisionHistoryLimit}')"
expect "statefulset PVC retention defaults to Retain/Retain" "Retain Retain" \
  "$(gd sts db '{.spec.persistentVolumeClaimRetentionPolicy.whenDeleted} {.spec.persistentVolumeClaimRetentionPolicy.whenScaled}')"
expect "statefulset volumeClaimTemplates volumeMode defaults to Filesystem" "Filesystem" "$(gd sts db '{.spec.volumeClaimTemplates[0].spec.volumeMode}')"
expect "daemonset updateStrategy defaults to RollingUpdate" "RollingUpdate" "$(gd ds agent '{.spec.updateStrategy.type}')"
expect "daemonset maxUnavailable defaults to 1" "1" "$(gd ds agent '{.spec.updateStrategy.rollingUpdate.maxUnavailable}')"
expect "daemonset maxSurge defaults to 0" "0" "$(gd ds agent '{.spec.updateStrategy.rollingUpdate.maxSurge}')"
expect "daemonset revisionHistoryLimit defaults to 10" "10" "$(gd ds agent '{.spec.revisionHistoryLimit}')"
expect "cronjob concurrencyPolicy defaults to Allow" "Allow" "$(gd cronjob nightly '{.spec.concurrencyPolicy}')"
expect "cronjob suspend defaults to false" "false" "$(gd cronjob nightly '{.spec.suspend}')"
expect "cronjob successfulJobsHistoryLimit defaults to 3" "3" "$(gd cronjob nightly '{.spec.successfulJobsHistoryLimit}')"
expect "cronjob failedJobsHistoryLimit defaults to 1" "1" "$(gd cronjob nightly '{.spec.failedJobsHistoryLimit}')"
expect "job backoffLimit defaults to 6" "6" "$(gd job once '{.spec.backoffLimit}')"
expect "job completions and parallelism default to 1" "1 1" "$(gd job once '{.spec.completions} {.spec.parallelism}')"
expect "job selector is generated from the uid" "$(gd job once '{.metadata.uid}')" \
  "$(gd job once '{.spec.selector.matchLabels.batch\.kubernetes\.io/controller-uid}')"
expect "job pod template gets job-name label" "once" "$(gd job once '{.spec.template.metadata.labels.batch\.kubernetes\.io/job-name}')"
expect "PVC volumeMode defaults to Filesystem" "Filesystem" "$(gd pvc claim '{.spec.volumeMode}')"
expect "PVC status phase is Pending" "Pending" "$(gd pvc claim '{.status.phase}')"
expect "Secret type defaults to Opaque" "Opaque" "$(gd secret plain '{.type}')"
expect "namespace gets kubernetes.io/metadata.name label" "d" "$(k get ns d -o jsonpath='{.metadata.labels.kubernetes\.io/metadata\.name}')"

echo "# --- node ports"
kd apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Service
metadata: {name: np}
spec:
  type: NodePort
  selector: {app: x}
  ports: [{name: http, port: 80}]
EOF
NP=$(gd svc np '{.spec.ports[0].nodePort}')
if [ -n "$NP" ] && [ "$NP" -ge 30000 ] && [ "$NP" -le 32767 ]; then ok "nodePort allocated from the range ($NP)"; else notok "nodePort allocated from the range" "got [$NP]"; fi
kd apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Service
metadata: {name: np}
spec:
  type: NodePort
  selector: {app: "y2"}
  ports: [{name: http, port: 80}]
EOF
expect "nodePort kept when an update omits it" "$NP y2" "$(gd svc np '{.spec.ports[0].nodePort} {.spec.selector.app}')"
kd get svc np -o json | sed 's/"nodePort": [0-9]*/"nodePort": 0/' | kd replace -f - >/dev/null 2>&1
expect "nodePort kept when an update sets it to 0" "$NP" "$(gd svc np '{.spec.ports[0].nodePort}')"
rejected "duplicate nodePort is 422 'provided port is already allocated'" \
  "spec.ports\[0\].nodePort: Invalid value: $NP: provided port is already allocated" \
  kd create -f - <<EOF
apiVersion: v1
kind: Service
metadata: {name: np2}
spec:
  type: NodePort
  ports: [{port: 81, nodePort: $NP}]
EOF
kd delete svc np >/dev/null
succeeds "nodePort released on delete" kd create -f - <<EOF
apiVersion: v1
kind: Service
metadata: {name: np3}
spec:
  type: NodePort
  ports: [{port: 81, nodePort: $NP}]
EOF
rejected "nodePort on a ClusterIP service is rejected" "may not be used when .type. is 'ClusterIP'" \
  kd create -f - <<'EOF'
apiVersion: v1
kind: Service
metadata: {name: np4}
spec:
  ports: [{port: 81, nodePort: 30999}]
EOF

echo "# --- validation (422 Invalid, kube's field paths)"
rejected "service clusterIP is immutable" "spec.clusterIPs\[0\]: Invalid value: .*may not change once set" \
  kd patch svc plain -p '{"spec":{"clusterIP":"10.96.200.200"}}'
succeeds "service update without clusterIP keeps it" kd patch svc plain --type=json \
  -p '[{"op":"remove","path":"/spec/clusterIP"},{"op":"remove","path":"/spec/clusterIPs"}]'
rejected "deployment spec.selector is immutable" "spec.selector: Invalid value: .*field is immutable" \
  kd patch deploy web -p '{"spec":{"selector":{"matchLabels":{"app":"web2"}},"template":{"metadata":{"labels":{"app":"web2"}}}}}'
rejected "deployment selector must match template labels" "spec.template.metadata.labels: Invalid value: .*.selector. does not match template .labels." \
  kd create -f - <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: bad}
spec:
  selector: {matchLabels: {app: a}}
  template:
    metadata: {labels: {app: b}}
    spec: {containers: [{name: c, image: x}]}
EOF
rejected "deployment selector is required" "spec.selector: Required value" \
  kd create -f - <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: bad}
spec:
  template:
    metadata: {labels: {app: b}}
    spec: {containers: [{name: c, image: x}]}
EOF
rejected "pod template needs containers" "spec.template.spec.containers: Required value" \
  kd create -f - <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: bad}
spec:
  selector: {matchLabels: {app: b}}
  template:
    metadata: {labels: {app: b}}
    spec: {containers: []}
EOF
rejected "container needs an image" "spec.template.spec.containers\[0\].image: Required value" \
  kd create -f - <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: bad}
spec:
  selector: {matchLabels: {app: b}}
  template:
    metadata: {labels: {app: b}}
    spec: {containers: [{name: c}]}
EOF
kd create -f - >/dev/null <<'EOF'
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: rs}
spec:
  selector: {matchLabels: {app: rs}}
  template:
    metadata: {labels: {app: rs, v: "1"}}
    spec: {containers: [{name: c, image: x}]}
EOF
rejected "replicaset spec.selector is immutable" "spec.selector: Invalid value: .*field is immutable" \
  kd patch rs rs --type=merge -p '{"spec":{"selector":{"matchLabels":{"v":"1"}}}}'
rejected "daemonset spec.selector is immutable" "spec.selector: Invalid value: .*field is immutable" \
  kd patch ds agent --type=merge -p '{"spec":{"selector":{"matchLabels":{"app":"agent","x":"y"}},"template":{"metadata":{"labels":{"x":"y"}}}}}'
rejected "statefulset: updates to other spec fields are forbidden" \
  "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy'" \
  kd patch sts db --type=merge -p '{"spec":{"serviceName":"other"}}'
succeeds "statefulset: replicas/template/updateStrategy may change" kd patch sts db --type=merge \
  -p '{"spec":{"replicas":2,"minReadySeconds":1,"template":{"metadata":{"annotations":{"a":"b"}}}}}'
rejected "statefulset spec.selector is immutable" "spec: Forbidden: updates to statefulset spec" \
  kd patch sts db --type=merge -p '{"spec":{"selector":{"matchLabels":{"app":"db","x":"y"}}}}'
rejected "job spec.selector is immutable" "spec.selector: Invalid value: .*field is immutable" \
  kd patch job once --type=merge -p '{"spec":{"selector":{"matchLabels":{"x":"y"}}}}'
rejected "job spec.template is immutable" "spec.template: Invalid value: .*field is immutable" \
  kd patch job once --type=merge -p '{"spec":{"template":{"spec":{"containers":[{"name":"j","image":"busybox:2"}]}}}}'
rejected "job template restartPolicy must be OnFailure or Never" 'spec.template.spec.restartPolicy: Unsupported value: "Always"' \
  kd create -f - <<'EOF'
apiVersion: batch/v1
kind: Job
metadata: {name: j2}
spec:
  template:
    spec:
      containers: [{name: j, image: "busybox:1"}]
EOF
rejected "PVC spec is immutable (storageClassName)" "spec: Forbidden: spec is immutable after creation except resources.requests" \
  kd patch pvc claim --type=merge -p '{"spec":{"storageClassName":"fast"}}'
rejected "PVC requests of an unbound claim are immutable" "spec: Forbidden: spec is immutable after creation" \
  kd patch pvc claim --type=merge -p '{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}'
succeeds "PVC volumeName may be set once" kd patch pvc claim --type=merge -p '{"spec":{"volumeName":"pv-1"}}'
rejected "PVC volumeName may not change once set" "spec: Forbidden: spec is immutable" \
  kd patch pvc claim --type=merge -p '{"spec":{"volumeName":"pv-2"}}'
succeeds "PVC status can be set (bind the claim)" kd patch pvc claim --subresource=status --type=merge \
  -p '{"status":{"phase":"Bound","capacity":{"storage":"1Gi"},"accessModes":["ReadWriteOnce"]}}'
succeeds "PVC growth of a bound claim is accepted" kd patch pvc claim --type=merge -p '{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}'
rejected "PVC shrink is rejected" "spec.resources.requests.storage: Forbidden: field can not be less than" \
  kd patch pvc claim --type=merge -p '{"spec":{"resources":{"requests":{"storage":"500Mi"}}}}'
kd create -f - >/dev/null <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata: {name: frozen}
immutable: true
data: {a: "1"}
---
apiVersion: v1
kind: Secret
metadata: {name: frozen}
immutable: true
stringData: {a: "1"}
EOF
rejected "immutable ConfigMap data cannot change" "data: Forbidden: field is immutable when .immutable. is set" \
  kd patch cm frozen --type=merge -p '{"data":{"a":"2"}}'
rejected "immutable ConfigMap cannot be made mutable" "immutable: Forbidden: field is immutable when .immutable. is set" \
  kd patch cm frozen --type=merge -p '{"immutable":false}'
succeeds "immutable ConfigMap metadata may change" kd label cm frozen x=y
rejected "immutable Secret data cannot change" "data: Forbidden: field is immutable when .immutable. is set" \
  kd patch secret frozen --type=merge -p '{"stringData":{"a":"2"}}'
rejected "immutable Secret cannot be made mutable" "immutable: Forbidden: field is immutable when .immutable. is set" \
  kd patch secret frozen --type=merge -p '{"immutable":false}'
rejected "Secret type is immutable" "type: Invalid value: .*field is immutable" \
  kd patch secret plain --type=merge -p '{"type":"example.com/other"}'

echo "# --- namespace lifecycle"
k create ns doomed >/dev/null
k -n doomed create cm a >/dev/null
k -n doomed create secret generic s --from-literal=a=b >/dev/null
k -n doomed apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata: {name: held, finalizers: [example.com/hold]}
EOF
k delete ns doomed --wait=false >/dev/null
expect "deleted namespace is Terminating with the kubernetes finalizer" "Terminating kubernetes true" \
  "$(k get ns doomed -o jsonpath='{.status.phase} {.spec.finalizers[*]} {.metadata.deletionTimestamp}' | sed 's/ 20[0-9-]*T.*Z$/ true/')"
rejected "creating in a terminating namespace is 403" \
  "forbidden: unable to create new content in namespace doomed because it is being terminated" \
  k -n doomed create cm late
eventually "namespace contents are deleted (except finalized objects)" 10 \
  sh -c "[ \"\$('$KUBECTL' --kubeconfig '$KC' -n doomed get cm,secret -o name)\" = 'configmap/held' ]"
expect_match "namespace reports remaining content" "NamespaceContentRemaining=True" \
  "$(k get ns doomed -o jsonpath='{range .status.conditions[*]}{.type}={.status} {end}')"
k -n doomed patch cm held --type=json -p '[{"op":"remove","path":"/metadata/finalizers"}]' >/dev/null
eventually "namespace disappears once empty" 10 sh -c "! '$KUBECTL' --kubeconfig '$KC' get ns doomed 2>/dev/null"
rejected "creating in a missing namespace is 404" 'namespaces "nowhere" not found' k -n nowhere create cm x
rejected "default namespace cannot be deleted" "forbidden: this namespace may not be deleted" k delete ns default

echo "# --- garbage collection and propagation"
k create ns gc >/dev/null
kg() { k -n gc "$@"; }
# owner_dep OWNER DEPENDENT [FINALIZER]: a ConfigMap owner and a Secret dependent
owner_dep() {
  kg create cm "$1" >/dev/null
  local uid fin=""
  uid=$(kg get cm "$1" -o jsonpath='{.metadata.uid}')
  [ -n "${3:-}" ] && fin="finalizers: [$3]"
  kg apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Secret
metadata:
  name: $2
  $fin
  ownerReferences: [{apiVersion: v1, kind: ConfigMap, name: $1, uid: $uid, blockOwnerDeletion: true}]
EOF
}
owner_dep o1 d1
kg delete cm o1 >/dev/null
eventually "background deletion: dependent collected" 10 sh -c "! '$KUBECTL' --kubeconfig '$KC' -n gc get secret d1 2>/dev/null"
owner_dep o2 d2 example.com/hold
kg delete cm o2 --cascade=foreground --wait=false >/dev/null
sleep 1
expect_match "foreground deletion: owner kept with foregroundDeletion" '^20.*foregroundDeletion' \
  "$(kg get cm o2 -o jsonpath='{.metadata.deletionTimestamp} {.metadata.finalizers[*]}')"
expect_match "foreground deletion: dependent being deleted" '^20' "$(kg get secret d2 -o jsonpath='{.metadata.deletionTimestamp}')"
kg patch secret d2 --type=json -p '[{"op":"remove","path":"/metadata/finalizers"}]' >/dev/null
eventually "foreground deletion: owner goes once the dependent is gone" 10 sh -c "! '$KUBECTL' --kubeconfig '$KC' -n gc get cm o2 2>/dev/null"
owner_dep o3 d3
kg delete cm o3 --cascade=orphan >/dev/null
sleep 1
expect "orphan deletion: dependent kept without the owner reference" "d3 []" \
  "$(kg get secret d3 -o jsonpath='{.metadata.name} [{.metadata.ownerReferences}]')"
expect "orphan deletion: owner deleted" "" "$(kg get cm o3 -o name 2>/dev/null)"
k apply -f - >/dev/null <<'EOF'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  names: {kind: Widget, plural: widgets, singular: widget, shortNames: [wd], categories: [all]}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns: [{name: Size, type: integer, jsonPath: .spec.size}]
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, default: 3}
              name: {type: string}
          status:
            type: object
            properties: {ready: {type: boolean}}
EOF
succeeds "CRD becomes Established" k wait --for=condition=Established crd/widgets.example.com --timeout=20s
eventually "CRD is discoverable" 10 k get widgets -n gc
kg apply -f - >/dev/null <<'EOF'
apiVersion: example.com/v1
kind: Widget
metadata: {name: w}
spec: {name: w}
EOF
WUID=$(kg get widget w -o jsonpath='{.metadata.uid}')
kg apply -f - >/dev/null <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: owned-by-widget
  ownerReferences: [{apiVersion: example.com/v1, kind: Widget, name: w, uid: $WUID}]
EOF
kg delete widget w >/dev/null
eventually "dependent of a custom resource is collected" 10 sh -c "! '$KUBECTL' --kubeconfig '$KC' -n gc get cm owned-by-widget 2>/dev/null"

echo "# --- custom resources"
kg apply -f - >/dev/null <<'EOF'
apiVersion: example.com/v1
kind: Widget
metadata: {name: w2}
spec: {name: w2}
EOF
expect "CR structural defaulting" "3" "$(kg get widget w2 -o jsonpath='{.spec.size}')"
rejected "CR unknown fields rejected (strict field validation)" 'unknown field "spec.junk"' \
  kg apply -f - <<'EOF'
apiVersion: example.com/v1
kind: Widget
metadata: {name: w3}
spec: {name: w3, junk: 1}
EOF
succeeds "CR /status subresource" kg patch widget w2 --subresource=status --type=merge -p '{"status":{"ready":true}}'
expect "CR status written, spec untouched" "true w2" "$(kg get widget w2 -o jsonpath='{.status.ready} {.spec.name}')"
expect_match "CR printer columns" 'SIZE' "$(kg get wd)"
expect_match "kubectl explain on a CR" 'size' "$(k explain widget.spec 2>&1)"
expect_match "CRs are in category all" 'widget.example.com/w2' "$(kg get all -o name)"

echo "# --- kubectl workflows"
expect_match "kubectl explain deployment.spec" 'FIELD: spec <DeploymentSpec>' "$(k explain deployment.spec 2>&1)"
succeeds "kubectl scale (scale subresource)" kd scale deploy web --replicas=3
expect "scale changed spec.replicas and bumped generation" "3 2" "$(gd deploy web '{.spec.replicas} {.metadata.generation}')"
succeeds "kubectl rollout status (simulated workloads)" kd rollout status deploy/web --timeout=20s
succeeds "kubectl wait --for=condition=Available" kd wait --for=condition=Available deploy/web --timeout=20s
succeeds "kubectl rollout status statefulset" kd rollout status sts/db --timeout=20s
succeeds "kubectl annotate" kd annotate deploy web team=dr
succeeds "kubectl patch (strategic merge)" kd patch deploy web -p '{"spec":{"template":{"spec":{"containers":[{"name":"latest","image":"nginx:1.28"}]}}}}'
expect "strategic merge kept the other container" "nginx:1.28 nginx:1.27" "$(gd deploy web "$T.containers[*].image}")"
succeeds "kubectl apply --dry-run=server" kd apply --dry-run=server -f - <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata: {name: dry}
EOF
expect "dry run created nothing" "" "$(kd get cm dry -o name 2>/dev/null)"
cat >"$WORK/ssa.yaml" <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata: {name: ssa}
data: {a: "1"}
EOF
succeeds "server-side apply (manager one)" kd apply --server-side --field-manager=one -f "$WORK/ssa.yaml"
rejected "server-side apply conflict between field managers" 'conflict with "one"' \
  sh -c "sed 's/\"1\"/\"2\"/' '$WORK/ssa.yaml' | '$KUBECTL' --kubeconfig '$KC' -n d apply --server-side --field-manager=two -f -"
succeeds "server-side apply --force-conflicts" \
  sh -c "sed 's/\"1\"/\"2\"/' '$WORK/ssa.yaml' | '$KUBECTL' --kubeconfig '$KC' -n d apply --server-side --field-manager=two --force-conflicts -f -"
expect_match "managedFields record the new owner" 'two' "$(kd get cm ssa -o jsonpath='{.metadata.managedFields[*].manager}' --show-managed-fields)"
succeeds "kubectl delete" kd delete cm ssa

echo "# --- workload simulation"
k apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {role: worker}}
---
apiVersion: v1
kind: Node
metadata: {name: n2, labels: {role: other}}
EOF
eventually "daemonset status counts matching nodes" 10 \
  sh -c "[ \"\$('$KUBECTL' --kubeconfig '$KC' -n d get ds agent -o jsonpath='{.status.desiredNumberScheduled} {.status.numberReady} {.status.observedGeneration}')\" = '1 1 1' ]"
expect "deployment status rolled out" "3 3 3 3" \
  "$(gd deploy web '{.status.replicas} {.status.readyReplicas} {.status.availableReplicas} {.status.updatedReplicas}')"
expect "statefulset status rolled out" "2 2" "$(gd sts db '{.status.replicas} {.status.readyReplicas}')"

echo "# --- pods, status, eviction"
kd run p1 --image=nginx --labels=app=cache >/dev/null
kd run p2 --image=nginx --labels=app=cache >/dev/null
for p in p1 p2; do
  kd patch pod $p --subresource=status --type=merge -p '{"status":{"phase":"Running","hostIP":"192.168.1.10","podIP":"10.244.0.7","conditions":[{"type":"Ready","status":"True"}]}}' >/dev/null
done
expect "pods/status writes phase, hostIP, podIP, conditions" "Running 192.168.1.10 10.244.0.7 True" \
  "$(kd get pod p1 -o jsonpath='{.status.phase} {.status.hostIP} {.status.podIP} {.status.conditions[0].status}')"
kd run p3 --image=nginx >/dev/null
expect "a new pod is Pending with a QoS class" "Pending BestEffort" "$(kd get pod p3 -o jsonpath='{.status.phase} {.status.qosClass}')"
expect "pod field selector status.phase" "pod/p1 pod/p2" "$(kd get pods --field-selector=status.phase=Running -o name | tr '\n' ' ' | sed 's/ $//')"
rejected "pod updates may not change most of the spec" "pod updates may not change fields other than" \
  kd patch pod p1 --type=merge -p '{"spec":{"restartPolicy":"Never"}}'
kd create pdb cache --selector=app=cache --min-available=2 >/dev/null
evict() {
  api -X POST -H 'Content-Type: application/json' "$URL/api/v1/namespaces/d/pods/$1/eviction" \
    -d "{\"apiVersion\":\"policy/v1\",\"kind\":\"Eviction\",\"metadata\":{\"name\":\"$1\"}}"
}
OUT=$(evict p1)
expect_match "eviction blocked by the PDB is 429" '"code": ?429' "$OUT"
expect_match "eviction 429 carries kube's message" "Cannot evict pod as it would violate the pod's disruption budget" "$OUT"
kd patch pdb cache --type=merge -p '{"spec":{"minAvailable":1}}' >/dev/null
expect_match "eviction allowed by the PDB" '"status": ?"Success"' "$(evict p1)"
expect "evicted pod is gone" "" "$(kd get pod p1 -o name 2>/dev/null)"

echo "# --- pods/log"
rejected "pods/log before the log file exists: waiting to start" \
  'container "p3" in pod "p3" is waiting to start: ContainerCreating' kd logs p3
mkdir -p "$WORK/pod-logs/d/p3"
printf 'one\ntwo\nthree\n' >"$WORK/pod-logs/d/p3/p3.log"
expect "kubectl logs returns the log file of the container" "one two three" "$(kd logs p3 | tr '\n' ' ' | sed 's/ $//')"
expect "kubectl logs --tail=1" "three" "$(kd logs p3 --tail=1)"
expect "kubectl logs --limit-bytes=6" "one tw" "$(kd logs p3 --limit-bytes=6 | tr '\n' ' ')"
expect_match "pods/log of an unknown container is 400" '"code": ?400' "$(api "$URL/api/v1/namespaces/d/pods/p3/log?container=nope")"
expect_match "pods/log of a missing pod is 404" '"code": ?404' "$(api "$URL/api/v1/namespaces/d/pods/nope/log")"
expect_match "pods/log answers text/plain" 'content-type: text/plain' \
  "$(api -s -o /dev/null -D - "$URL/api/v1/namespaces/d/pods/p3/log" | tr 'A-Z' 'a-z')"
kd logs -f p3 >"$WORK/follow.out" 2>&1 &
FOLLOW=$!
sleep 0.5
echo four >>"$WORK/pod-logs/d/p3/p3.log"
kd patch pod p3 --subresource=status --type=merge -p '{"status":{"phase":"Succeeded"}}' >/dev/null
follow_ended() { ! kill -0 "$FOLLOW" 2>/dev/null; }
eventually "kubectl logs -f ends when the pod has finished" 5 follow_ended
kill "$FOLLOW" 2>/dev/null; wait "$FOLLOW" 2>/dev/null
expect "kubectl logs -f streams appended lines" "one two three four" "$(tr '\n' ' ' <"$WORK/follow.out" | sed 's/ $//')"

echo "# --- field selectors"
expect "secrets field selector type" "secret/frozen secret/plain" \
  "$(kd get secrets --field-selector=type=Opaque -o name | tr '\n' ' ' | sed 's/ $//')"
expect "namespaces field selector status.phase" "namespace/d" \
  "$(k get ns --field-selector=status.phase=Active,metadata.name=d -o name)"
kd patch pod p2 --type=merge -p '{"spec":{"nodeName":"n1"}}' >/dev/null
expect "pods field selector spec.nodeName" "pod/p2" "$(kd get pods --field-selector=spec.nodeName=n1 -o name)"
kd create -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Event
metadata: {name: e1}
involvedObject: {kind: Pod, name: p2, namespace: d}
reason: Tested
message: hello
type: Normal
EOF
expect "events field selector involvedObject.name" "event/e1" "$(kd get events --field-selector=involvedObject.name=p2 -o name)"
expect "events.k8s.io/v1 serves the same events" "hello" "$(kd get events.v1.events.k8s.io e1 -o jsonpath='{.note}')"

echo "# --- graceful pod deletion"
kd apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Pod
metadata: {name: g1}
spec: {nodeName: n1, terminationGracePeriodSeconds: 600, containers: [{name: c, image: nginx}]}
---
apiVersion: v1
kind: Pod
metadata: {name: g2}
spec: {nodeName: n1, containers: [{name: c, image: nginx}]}
---
apiVersion: v1
kind: Pod
metadata: {name: g3}
spec: {nodeName: n1, containers: [{name: c, image: nginx}]}
---
apiVersion: v1
kind: Pod
metadata: {name: g4}
spec: {nodeName: no-such-node, containers: [{name: c, image: nginx}]}
---
apiVersion: v1
kind: Pod
metadata: {name: g5}
spec: {containers: [{name: c, image: nginx}]}
EOF
# delete_pod NS NAME OPTIONS: DELETE with DeleteOptions (kubectl sends gracePeriodSeconds 0 only with --force)
delete_pod() { api -X DELETE -H 'Content-Type: application/json' "$URL/api/v1/namespaces/$1/pods/$2" -d "$3" >/dev/null; }
deletion() { gd pod "$1" '{.metadata.deletionTimestamp} {.metadata.deletionGracePeriodSeconds}' | sed 's/^20[0-9-]*T[0-9:]*Z /set /'; }
# (Long periods: a shorter period whose deadline has passed already becomes 1 s, as in kube-apiserver,
# so short ones would make these checks depend on how fast the machine is.)
kd delete pod g1 --wait=false >/dev/null
expect "a bound pod is deleted gracefully: it stays, with deletionTimestamp and the pod's grace period" "set 600" "$(deletion g1)"
kd delete pod g1 --wait=false --grace-period=900 >/dev/null
expect "a second delete may not lengthen the grace period" "set 600" "$(deletion g1)"
kd delete pod g1 --wait=false --grace-period=300 >/dev/null
expect "... but may shorten it" "set 300" "$(deletion g1)"
delete_pod d g1 '{"gracePeriodSeconds":0}'
expect "a delete with grace period 0 (the kubelet's) removes it" "" "$(kd get pod g1 -o name 2>/dev/null)"
kd delete pod g2 --wait=false >/dev/null
expect "the default grace period is terminationGracePeriodSeconds (defaulted to 30)" "set 30" "$(deletion g2)"
kd patch pod g3 --subresource=status --type=merge -p '{"status":{"phase":"Succeeded"}}' >/dev/null
kd delete pod g3 --wait=false >/dev/null
expect "a pod in a terminal phase is deleted at once" "" "$(kd get pod g3 -o name 2>/dev/null)"
kd delete pod g5 --wait=false >/dev/null
expect "an unbound pod is deleted at once" "" "$(kd get pod g5 -o name 2>/dev/null)"
kd delete pod g4 --wait=false >/dev/null
eventually "a terminating pod bound to a node that does not exist is removed (pod GC)" 5 \
  sh -c "[ -z \"\$('$KUBECTL' --kubeconfig '$KC' -n d get pod g4 -o name 2>/dev/null)\" ]"
k create ns gpods >/dev/null
k -n gpods apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Pod
metadata: {name: bound}
spec: {nodeName: n1, containers: [{name: c, image: nginx}]}
EOF
k delete ns gpods --wait=false >/dev/null
sleep 1
expect_match "a terminating namespace waits for its bound pods" "NamespaceContentRemaining=True Some resources are remaining: pods. has 1 resource instances" \
  "$(k get ns gpods -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.message}{"\n"}{end}')"
delete_pod gpods bound '{"gracePeriodSeconds":0}'
eventually "... and goes once they are deleted with grace period 0" 10 sh -c "! '$KUBECTL' --kubeconfig '$KC' get ns gpods 2>/dev/null"
delete_pod d g2 '{"gracePeriodSeconds":0}'

echo "# --- deny list, access reviews, identities"
"$KAPI" kubeconfig --dir "$S" --user syncer --out "$WORK/syncer.kubeconfig"
ks() { "$KUBECTL" --kubeconfig "$WORK/syncer.kubeconfig" -n d "$@"; }
SC=$(sed -n 's/ *client-certificate-data: //p' "$WORK/syncer.kubeconfig" | base64 -d 2>/dev/null)
if command -v openssl >/dev/null; then
  CT=$(printf '%s' "$SC" | openssl x509 -noout -text)
  expect_match "minted client cert is X.509 v3" 'Version: 3 ' "$CT"
  expect_match "minted client cert has CA:FALSE" 'CA:FALSE' "$CT"
  expect_match "minted client cert has keyUsage digitalSignature+keyEncipherment" 'Digital Signature, Key Encipherment' "$CT"
  expect_match "minted client cert has extKeyUsage clientAuth" 'TLS Web Client Authentication' "$CT"
fi
expect "minted identity authenticates as its CN" "syncer" "$(ks auth whoami -o jsonpath='{.status.userInfo.username}')"
rejected "--deny flag: denied create is 403 in kube's words" \
  'configmaps is forbidden: User "blocked" cannot create resource "configmaps" in API group "" in the namespace "d"' \
  sh -c "'$KAPI' kubeconfig --dir '$S' --user blocked --out '$WORK/blocked.kubeconfig' && '$KUBECTL' --kubeconfig '$WORK/blocked.kubeconfig' -n d create cm nope"
expect "--deny flag: other verbs allowed" "configmap/frozen" \
  "$("$KUBECTL" --kubeconfig "$WORK/blocked.kubeconfig" -n d get cm frozen -o name)"
api -X POST "$URL/testing/deny" -d '{"user":"syncer","verbs":["create","patch"],"resources":["secrets","deployments.apps"],"namespaces":["d"]}' >/dev/null
rejected "runtime deny rule: 403 Forbidden" 'secrets is forbidden: User "syncer" cannot create resource "secrets" in API group "" in the namespace "d"' \
  ks create secret generic nope --from-literal=a=b
rejected "runtime deny rule: group resource" 'deployments.apps "web" is forbidden: User "syncer" cannot patch resource "deployments" in API group "apps"' \
  ks annotate deploy web x=y
succeeds "runtime deny rule: other namespaces allowed" "$KUBECTL" --kubeconfig "$WORK/syncer.kubeconfig" -n gc create secret generic yes --from-literal=a=b
expect_match "SelfSubjectAccessReview says no" '^no' "$(ks auth can-i create secrets 2>&1)"
expect "SelfSubjectAccessReview says yes elsewhere" "yes" "$(ks auth can-i create configmaps 2>&1)"
expect_match "SubjectAccessReview (impersonated can-i) says no" '^no' "$(k -n d auth can-i create secrets --as=syncer 2>&1)"
expect_match "GET /testing/deny lists the rules" '"user": "syncer"' "$(api "$URL/testing/deny")"
api -X DELETE "$URL/testing/deny" >/dev/null
succeeds "DELETE /testing/deny clears the rules" ks create secret generic now-ok --from-literal=a=b

echo "# --- request accounting"
api -X POST "$URL/testing/requests/reset" >/dev/null
ks get cm frozen >/dev/null
ks get cm >/dev/null
ks create cm acct >/dev/null
ks patch cm acct -p '{"data":{"a":"1"}}' >/dev/null
ks apply --server-side --field-manager=syncer -f - >/dev/null <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata: {name: acct2}
EOF
ks delete cm acct --wait=false >/dev/null
R=$(api "$URL/testing/requests?user=syncer")
expect_match "per-user writes (create, patch, apply, delete)" '"writes": 4,' "$R"
expect_match "per-user reads (get, list, ...)" '"reads": [2-9]' "$R"
expect_match "apply counted as its own verb" '"apply": 1' "$R"
expect_match "per-resource create" '"create /configmaps": 1' "$R"
expect_match "per-resource patch" '"patch /configmaps": 1' "$R"
expect_match "per-resource delete" '"delete /configmaps": 1' "$R"
expect_match "per-resource get" '"get /configmaps": [1-9]' "$R"
expect_match "per-resource list" '"list /configmaps": 1' "$R"
expect_match "unknown user reads zeros" '"total": 0' "$(api "$URL/testing/requests?user=nobody")"
expect_match "all users listed" '"syncer":' "$(api "$URL/testing/requests")"
A=$(api "$URL/testing/requests?user=admin" | sed -n 's/^  "total": \([0-9]*\).*/\1/p')
B=$(api "$URL/testing/requests?user=admin" | sed -n 's/^  "total": \([0-9]*\).*/\1/p')
expect "/testing requests are not counted" "$A" "$B"
api -X POST "$URL/testing/requests/reset" >/dev/null
expect_match "POST /testing/requests/reset clears counts" '"total": 0' "$(api "$URL/testing/requests?user=syncer")"
expect_match "/metrics has apiserver_request_total" 'apiserver_request_total' "$(api "$URL/metrics" 2>/dev/null | grep -m1 apiserver_request_total)"

echo "# --- forced watch expiry"
RV=$(api "$URL/api/v1/namespaces/d/configmaps" | sed -n 's/.*"resourceVersion": "\([0-9]*\)".*/\1/p' | head -1)
api -N "$URL/api/v1/namespaces/d/configmaps?watch=1&resourceVersion=$RV" >"$WORK/watch.out" 2>&1 &
WPID=$!
sleep 0.5
expect_match "an open watch is listed under its user" '"open": [1-9]' "$(api "$URL/testing/watches?user=admin")"
expect_match "a user without watches has none open" '"open": 0' "$(api "$URL/testing/watches?user=nobody")"
kd create cm before-expiry >/dev/null
sleep 0.5
expect_match "expire-watches compacts and closes watches" '"watchesClosed": [1-9]' "$(api -X POST "$URL/testing/expire-watches")"
sleep 0.5
if kill -0 $WPID 2>/dev/null; then notok "open watch stream was closed"; kill $WPID; else ok "open watch stream was closed"; fi
wait $WPID 2>/dev/null
expect_match "watch saw the change before expiry" 'before-expiry' "$(cat "$WORK/watch.out")"
LAST=$(grep -o '"resourceVersion":"[0-9]*"' "$WORK/watch.out" | tail -1 | grep -o '[0-9]*')
expect_match "resuming at the last seen resourceVersion is 410 Expired" '"code": ?410' \
  "$(api --max-time 3 "$URL/api/v1/namespaces/d/configmaps?watch=1&resourceVersion=$LAST")"
expect_match "resuming at an old resourceVersion is 410 Expired" '"reason": ?"Expired"' \
  "$(api --max-time 3 "$URL/api/v1/namespaces/d/configmaps?watch=1&resourceVersion=$RV")"
RV2=$(api "$URL/api/v1/namespaces/d/configmaps" | sed -n 's/.*"resourceVersion": "\([0-9]*\)".*/\1/p' | head -1)
(sleep 0.7; kd create cm after-expiry >/dev/null) &
expect_match "re-list and re-watch sees later changes" 'after-expiry' \
  "$(api -N --max-time 3 "$URL/api/v1/namespaces/d/configmaps?watch=1&resourceVersion=$RV2" 2>/dev/null)"

echo "# --- bearer tokens and TokenReview"
# tk TOKEN ARGS...: kubectl with a bearer token instead of a client certificate
tk() {
  local t=$1
  shift
  "$KUBECTL" --kubeconfig /dev/null --server "$URL" --certificate-authority "$S/pki/ca.crt" --token "$t" "$@"
}
# review TOKEN [AUDIENCE]: a TokenReview created by the admin, as "authenticated|user|groups|audiences|error"
review() {
  local auds=""
  [ -n "${2:-}" ] && auds=",\"audiences\":[\"$2\"]"
  printf '{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"%s"%s}}' "$1" "$auds" |
    k create -f - -o jsonpath='{.status.authenticated}|{.status.user.username}|{.status.user.groups[*]}|{.status.audiences[*]}|{.status.error}' 2>&1
}
TOK=$("$KAPI" token --dir "$S" --user metrics-scraper --group scrapers --group auditors)
expect_match "kapi token prints a token" '^[A-Za-z0-9_-]{40,}$' "$TOK"
expect "a token authenticates as its user and groups" "metrics-scraper scrapers auditors" \
  "$(tk "$TOK" auth whoami -o jsonpath='{.status.userInfo.username} {.status.userInfo.groups[*]}' 2>&1)"
ATOK=$("$KAPI" token --dir "$S" --user token-admin)
succeeds "a token without --group is in system:masters (like kapi kubeconfig)" tk "$ATOK" get ns
expect "an unknown token is 401" "401" \
  "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$S/pki/ca.crt" -H 'Authorization: Bearer no-such-token' "$URL/api/v1/namespaces")"
rejected "kubectl with an unknown token: Unauthorized" 'Unauthorized' tk no-such-token get ns
expect "a valid client certificate wins over an unknown token (as kube-apiserver)" "200" \
  "$(api -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer no-such-token' "$URL/api/v1/namespaces")"
api -X POST "$URL/testing/requests/reset" >/dev/null
tk "$TOK" -n d get cm >/dev/null
expect_match "token requests are counted under the token's user" '"list /configmaps": 1' "$(api "$URL/testing/requests?user=metrics-scraper")"
HTOK=$(api -X POST "$URL/testing/tokens" -d '{"user":"system:serviceaccount:d:scraper","groups":[]}' | sed -n 's/.*"token": "\([^"]*\)".*/\1/p')
expect "POST /testing/tokens mints a token" "system:serviceaccount:d:scraper" \
  "$(tk "$HTOK" auth whoami -o jsonpath='{.status.userInfo.username}' 2>&1)"
expect_match "POST /testing/tokens needs a user" 'user.{0,2} is required' "$(api -X POST "$URL/testing/tokens" -d '{"groups":["g"]}')"
expect "TokenReview of a minted token: authenticated, user, groups, API audience" \
  "true|metrics-scraper|scrapers auditors|https://kubernetes.default.svc.cluster.local|" "$(review "$TOK")"
expect "TokenReview of an unknown token: not authenticated, kube's error" "||||invalid bearer token" "$(review no-such-token)"
expect "TokenReview for another audience: not authenticated (tokens are audience-agnostic, as kube's static tokens)" \
  "||||invalid bearer token" "$(review "$TOK" https://example.com)"
expect_match "TokenReview without a token is 400 in kube's words" 'token is required for TokenReview in authentication' "$(review '')"
expect_match "tokenreviews are in discovery" '^tokenreviews +authentication.k8s.io/v1 +false +TokenReview' \
  "$(k api-resources --api-group=authentication.k8s.io 2>&1 | grep tokenreviews)"

echo "# --- ServiceAccount tokens (serviceaccounts/token, kubectl create token)"
# bearer_code TOKEN PATH: the HTTP status of a GET with only this bearer token
bearer_code() { curl -s -o /dev/null -w '%{http_code}' --cacert "$S/pki/ca.crt" -H "Authorization: Bearer $1" "$URL$2"; }
kd create sa robot >/dev/null
SAUID=$(gd sa robot '{.metadata.uid}')
SATOK=$(kd create token robot 2>&1)
expect_match "kubectl create token prints a token" '^[A-Za-z0-9_-]{40,}$' "$SATOK"
expect "a TokenRequest token authenticates as its ServiceAccount: user, uid, ServiceAccount groups" \
  "system:serviceaccount:d:robot $SAUID system:serviceaccounts system:serviceaccounts:d" \
  "$(tk "$SATOK" auth whoami -o jsonpath='{.status.userInfo.username} {.status.userInfo.uid} {.status.userInfo.groups[*]}' 2>&1)"
expect_match "... with kube's credential-id extra (JTI)" '"authentication.kubernetes.io/credential-id":\["JTI=[0-9a-f-]{36}"\]' \
  "$(tk "$SATOK" auth whoami -o json 2>&1 | tr -d ' \n')"
succeeds "... and is allowed what its user is allowed" tk "$SATOK" -n d get cm
expect_match "the token is in DIR/tokens.csv: kube's static token columns, then exp=, jti=, aud=" \
  "^$SATOK,system:serviceaccount:d:robot,$SAUID,\"system:serviceaccounts,system:serviceaccounts:d\",exp=[0-9T:-]+Z,jti=[0-9a-f-]{36},aud=https://kubernetes.default.svc.cluster.local$" \
  "$(grep "^$SATOK," "$S/tokens.csv")"
expect "TokenRequest defaults: expirationSeconds 3600, audiences [the API audience]" \
  "3600 https://kubernetes.default.svc.cluster.local" \
  "$(kd create token robot -o jsonpath='{.spec.expirationSeconds} {.spec.audiences[*]}' 2>&1)"
# (-o json: kubectl's jsonpath prints large integers as floats)
OUT=$(kd create token robot --duration=8760h -o json 2>&1)
SECS=$(printf '%s' "$OUT" | sed -n 's/.*"expirationSeconds": \([0-9]*\).*/\1/p')
TS=$(printf '%s' "$OUT" | sed -n 's/.*"expirationTimestamp": "\([^"]*\)".*/\1/p')
# status.expirationTimestamp - now - spec.expirationSeconds: 0, or a little less (the timestamp is of the request)
SKEW=$(($(date -u -d "$TS" +%s 2>/dev/null || echo 0) - $(date -u +%s) - ${SECS:-0}))
if [ "$SECS" = 31536000 ] && [ "$SKEW" -ge -5 ] && [ "$SKEW" -le 1 ]; then
  ok "kubectl create token --duration=8760h: expirationSeconds 31536000, expirationTimestamp = now + 1 year"
else
  notok "kubectl create token --duration=8760h: expirationSeconds 31536000, expirationTimestamp = now + 1 year" \
    "expirationSeconds [$SECS] expirationTimestamp [$TS] skew ${SKEW}s: $OUT"
fi
rejected "kubectl create token for a missing ServiceAccount fails (404 NotFound)" \
  'failed to create token: serviceaccounts "missing-sa" not found' kd create token missing-sa
expect "TokenRequest for a missing ServiceAccount is 404" "404" \
  "$(api -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
    -d '{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{}}' "$URL/api/v1/namespaces/d/serviceaccounts/missing-sa/token")"
rejected "a TokenRequest shorter than 10 minutes is 422 in kube's words" \
  'TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes' \
  kd create token robot --duration=1m
rejected "a token bound to an object (--bound-object-kind) is refused, not minted unbound" \
  'kapi does not support tokens bound to an object' kd create token robot --bound-object-kind Pod --bound-object-name p
expect_match "serviceaccounts/token is in discovery (create, authentication.k8s.io/v1 TokenRequest)" \
  '"name":"serviceaccounts/token","singularName":"","namespaced":true,"group":"authentication.k8s.io","version":"v1","kind":"TokenRequest","verbs":\["create"\]' \
  "$(k get --raw /api/v1 2>&1)"
expect "TokenReview of a TokenRequest token: authenticated, ServiceAccount user, API audience" \
  "true|system:serviceaccount:d:robot|system:serviceaccounts system:serviceaccounts:d|https://kubernetes.default.svc.cluster.local|" \
  "$(review "$SATOK")"
VTOK=$(kd create token robot --audience vault 2>&1)
expect "a token for another audience (--audience vault) is 401 at the API" "401" "$(bearer_code "$VTOK" /api/v1/namespaces)"
expect "... and a TokenReview for that audience authenticates it" \
  "true|system:serviceaccount:d:robot|system:serviceaccounts system:serviceaccounts:d|vault|" "$(review "$VTOK" vault)"
expect_match "... a TokenReview for the API audience does not, with kube's error" \
  'token audiences \["vault"\] is invalid for the target audiences \["https://kubernetes.default.svc.cluster.local"\]' "$(review "$VTOK")"
XTOK=$(kd create token robot 2>&1)
# Expiry is enforced: move this token's exp= into the past (the file is re-read when it changes).
sed -i -E "/^$XTOK,/ s/exp=[^,]*/exp=2000-01-01T00:00:00Z/" "$S/tokens.csv"
expect "an expired TokenRequest token is 401" "401" "$(bearer_code "$XTOK" /api/v1/namespaces)"
expect_match "... TokenReview says kube's 'service account token has expired'" 'service account token has expired' "$(review "$XTOK")"
expect "... other tokens of the ServiceAccount still work" "200" "$(bearer_code "$SATOK" /api/v1/namespaces)"
api -X POST "$URL/testing/requests/reset" >/dev/null
kd create token robot >/dev/null
expect_match "TokenRequests are counted as create serviceaccounts/token" '"create /serviceaccounts/token": 1' "$(api "$URL/testing/requests?user=admin")"
kd delete sa robot >/dev/null
expect "a TokenRequest token is 401 once its ServiceAccount is deleted" "401" "$(bearer_code "$SATOK" /api/v1/namespaces)"
kd create sa robot >/dev/null
expect "... and stays 401 when a ServiceAccount of the same name is created again (another UID)" "401" \
  "$(bearer_code "$SATOK" /api/v1/namespaces)"
expect_match "... TokenReview names the UID mismatch, as kube" 'service account UID \([0-9a-f-]+\) does not match claim \('"$SAUID"'\)' \
  "$(review "$SATOK")"

echo "# --- instances side by side, restart, errors, shutdown"
S2=$WORK/s2
start_server "$S2" && ok "second instance starts beside the first" || notok "second instance starts beside the first"
P1=$(ready_field "$S" port)
P2=$(ready_field "$S2" port)
[ "$P1" != "$P2" ] && ok "instances use different ports" || notok "instances use different ports"
K2() { "$KUBECTL" --kubeconfig "$S2/kubeconfig" "$@"; }
K2 create cm only-in-two >/dev/null
TOK2=$("$KAPI" token --dir "$S2" --user survivor)
expect "instances do not share state" "" "$(k get cm only-in-two -o name 2>/dev/null)"
PID2=$(ready_field "$S2" pid)
T0=$(date +%s%N)
kill -TERM "$PID2"
for ((i = 0; i < 100; i++)); do kill -0 "$PID2" 2>/dev/null || break; sleep 0.1; done
T1=$(date +%s%N)
if kill -0 "$PID2" 2>/dev/null; then notok "SIGTERM stops the server"; else ok "SIGTERM stops the server ($(((T1 - T0) / 1000000)) ms)"; fi
start_server "$S2" && expect "restart with the same dir keeps state" "configmap/only-in-two" "$(K2 get cm only-in-two -o name 2>&1)"
URL2=$(ready_field "$S2" url)
expect "a token survives a restart with the same dir" "survivor" \
  "$("$KUBECTL" --kubeconfig /dev/null --server "$URL2" --certificate-authority "$S2/pki/ca.crt" --token "$TOK2" auth whoami -o jsonpath='{.status.userInfo.username}' 2>&1)"
expect "a token of one instance is unknown to another" "401" \
  "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$S/pki/ca.crt" -H "Authorization: Bearer $TOK2" "$URL/api/v1/namespaces")"
OUT=$("$KAPI" serve --dir "$WORK/s3" --secure-port "$P1" 2>&1)
RC=$?
[ $RC -ne 0 ] && expect_match "busy port fails at once with a clear message" "^kapi: cannot listen on 127.0.0.1:$P1: address already in use$" "$OUT" \
  || notok "busy port fails at once with a clear message" "rc=$RC $OUT"
OUT=$(timeout 20 "$KAPI" serve --dir "$S2" 2>&1)
RC=$?
[ $RC -ne 0 ] && [ $RC -ne 124 ] && expect_match "a state directory in use is refused" "^kapi: state directory .* is in use by another kapi \\(pid [0-9]+\\)$" "$OUT" \
  || notok "a state directory in use is refused" "rc=$RC $OUT"
# The parent shell waits until the server is ready (as long as start_server would, and only while the server
# lives), prints the server's pid and exits; the server must follow it. (The pid comes from the parent: a server
# that exits removes its ready.json, so the file may be gone by the time it would be read here.)
OUT4=$(bash -c "'$KAPI' serve --dir '$WORK/s4' --exit-with-parent >'$WORK/s4.log' 2>&1 & c=\$!; for i in \$(seq 600); do [ -f '$WORK/s4/ready.json' ] && { echo ready \$c; exit; }; kill -0 \$c 2>/dev/null || break; sleep 0.1; done; echo not-ready \$c")
PID4=${OUT4#ready }
[ "$PID4" != "$OUT4" ] || { PID4=; echo "kapi (--exit-with-parent) did not become ready; log:" >&2; cat "$WORK/s4.log" >&2; }
for ((i = 0; i < 100; i++)); do kill -0 "$PID4" 2>/dev/null || break; sleep 0.1; done
if [ -n "$PID4" ] && ! kill -0 "$PID4" 2>/dev/null; then ok "--exit-with-parent exits when the parent dies"; else notok "--exit-with-parent exits when the parent dies" "pid=$PID4"; kill "$PID4" 2>/dev/null; fi

echo "# --- RBAC mode (--authorization-mode RBAC)"
R=$WORK/rbac
# A token minted before the server's first start (the state directory is created for it).
EARLY=$("$KAPI" token --dir "$R" --user early-bird --group '')
start_server "$R" --authorization-mode RBAC && ok "RBAC mode: a server with --authorization-mode RBAC becomes ready" \
  || notok "RBAC mode: a server with --authorization-mode RBAC becomes ready"
RURL=$(ready_field "$R" url)
ka() { "$KUBECTL" --kubeconfig "$R/kubeconfig" "$@"; }
rapi() { curl -sS --max-time 10 --cacert "$R/pki/ca.crt" --cert "$R/pki/admin.crt" --key "$R/pki/admin.key" "$@"; }
# mint NAME USER [GROUP]...: an identity (no GROUP: a certificate without groups); as NAME ARGS...: kubectl as it
mint() {
  local name=$1 user=$2 gs=(--group '')
  shift 2
  [ $# -gt 0 ] && gs=()
  for g in "$@"; do gs+=(--group "$g"); done
  "$KAPI" kubeconfig --dir "$R" --user "$user" "${gs[@]}" --out "$WORK/rbac-$name.kubeconfig"
}
as() {
  local f=$WORK/rbac-$1.kubeconfig
  shift
  "$KUBECTL" --kubeconfig "$f" "$@"
}
mint nobody nobody
mint alice alice team-a
mint bob bob
mint carol carol
mint sa system:serviceaccount:r1:syncer
mint sa2 system:serviceaccount:r2:syncer
mint dave dave auditors
mint erin erin
mint op op
succeeds "RBAC mode: the admin kubeconfig (system:masters) has full access" \
  sh -c "'$KUBECTL' --kubeconfig '$R/kubeconfig' create ns r1 && '$KUBECTL' --kubeconfig '$R/kubeconfig' create ns r2 && '$KUBECTL' --kubeconfig '$R/kubeconfig' -n r1 create cm allowed"
ka -n r1 create cm other >/dev/null

rejected "RBAC mode: a user without bindings is refused with kube's 403" \
  'configmaps is forbidden: User "nobody" cannot list resource "configmaps" in API group "" in the namespace "r1"' \
  as nobody -n r1 get cm
rejected "RBAC mode: a refused get names the object" \
  'configmaps "allowed" is forbidden: User "nobody" cannot get resource "configmaps" in API group "" in the namespace "r1"' \
  as nobody -n r1 get cm allowed
rejected "RBAC mode: a refused cluster-scoped request says 'at the cluster scope'" \
  'namespaces is forbidden: User "nobody" cannot list resource "namespaces" in API group "" at the cluster scope' \
  as nobody get ns
succeeds "RBAC mode: discovery stays allowed without bindings" as nobody api-resources
succeeds "RBAC mode: /version and /openapi stay allowed without bindings" \
  sh -c "'$KUBECTL' --kubeconfig '$WORK/rbac-nobody.kubeconfig' get --raw /version && '$KUBECTL' --kubeconfig '$WORK/rbac-nobody.kubeconfig' get --raw /openapi/v3 >/dev/null"
expect "RBAC mode: every user is in group system:authenticated" "system:authenticated" \
  "$(as nobody auth whoami -o jsonpath='{.status.userInfo.groups[*]}' 2>&1)"
expect "RBAC mode: any user may ask what it may do (SelfSubjectAccessReview, as system:basic-user)" "no" \
  "$(as nobody auth can-i list configmaps -n r1 2>&1)"
expect_match "RBAC mode: refused requests are counted" '"list /configmaps": [1-9]' "$(rapi "$RURL/testing/requests?user=nobody")"
rtk() { # rtk TOKEN ARGS...: kubectl with a bearer token against the RBAC server
  local t=$1
  shift
  "$KUBECTL" --kubeconfig /dev/null --server "$RURL" --certificate-authority "$R/pki/ca.crt" --token "$t" "$@"
}
expect "RBAC mode: a token minted before the start authenticates, in group system:authenticated" "early-bird system:authenticated" \
  "$(rtk "$EARLY" auth whoami -o jsonpath='{.status.userInfo.username} {.status.userInfo.groups[*]}' 2>&1)"
SATOK=$("$KAPI" token --dir "$R" --user system:serviceaccount:r1:scraper --group '')
expect "RBAC mode: a ServiceAccount user's token gets kube's ServiceAccount groups" \
  "system:serviceaccounts system:serviceaccounts:r1 system:authenticated" \
  "$(rtk "$SATOK" auth whoami -o jsonpath='{.status.userInfo.groups[*]}' 2>&1)"
rejected "RBAC mode: a token user without bindings is refused with kube's 403" \
  'namespaces is forbidden: User "early-bird" cannot list resource "namespaces" in API group "" at the cluster scope' rtk "$EARLY" get ns
succeeds "RBAC mode: discovery, /version and /healthz stay allowed without bindings" \
  sh -c "'$KUBECTL' --kubeconfig '$WORK/rbac-nobody.kubeconfig' api-resources >/dev/null && '$KUBECTL' --kubeconfig '$WORK/rbac-nobody.kubeconfig' get --raw /version >/dev/null && '$KUBECTL' --kubeconfig '$WORK/rbac-nobody.kubeconfig' get --raw /healthz"
rejected "RBAC mode: /metrics needs a ClusterRole with nonResourceURLs (kube's 403 for a path)" \
  'forbidden: User "early-bird" cannot get path "/metrics"' rtk "$EARLY" get --raw /metrics
rejected "RBAC mode: creating a TokenReview needs create on tokenreviews" \
  'tokenreviews.authentication.k8s.io is forbidden: User "system:serviceaccount:r1:scraper" cannot create resource "tokenreviews" in API group "authentication.k8s.io" at the cluster scope' \
  sh -c "printf '{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"TokenReview\",\"spec\":{\"token\":\"x\"}}' | '$KUBECTL' --kubeconfig /dev/null --server '$RURL' --certificate-authority '$R/pki/ca.crt' --token '$SATOK' create --validate=false -f -"
ka create clusterrole metrics-reader --verb=get --non-resource-url=/metrics >/dev/null
ka create clusterrolebinding early-metrics --clusterrole=metrics-reader --user=early-bird >/dev/null
ka create clusterrole token-reviewer --verb=create --resource=tokenreviews.authentication.k8s.io,subjectaccessreviews.authorization.k8s.io >/dev/null
ka create clusterrolebinding scraper-reviews --clusterrole=token-reviewer --serviceaccount=r1:scraper >/dev/null
early_reads_metrics() {
  local out
  out=$(rtk "$EARLY" get --raw /metrics 2>&1) && [[ $out == *apiserver_request_total* ]] || { echo "${out:0:300}"; return 1; }
}
eventually "RBAC mode: a ClusterRole with nonResourceURLs [/metrics] grants GET /metrics" 2 early_reads_metrics
expect "RBAC mode: SubjectAccessReview (nonResourceAttributes /metrics) allows the bound user" "yes" \
  "$(ka auth can-i get /metrics --as early-bird 2>&1)"
expect "RBAC mode: ... and refuses others" "no" "$(ka auth can-i get /metrics --as nobody 2>&1)"
SARM=$(rapi -X POST -H 'Content-Type: application/json' "$RURL/apis/authorization.k8s.io/v1/subjectaccessreviews" \
  -d '{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{"user":"early-bird","groups":["system:authenticated"],"nonResourceAttributes":{"path":"/metrics","verb":"get"}}}')
expect_match "RBAC mode: SubjectAccessReview of a path names the ClusterRoleBinding" \
  '"allowed": ?true, *"reason": ?"RBAC: allowed by ClusterRoleBinding \\"early-metrics\\" of ClusterRole \\"metrics-reader\\" to User \\"early-bird\\""' \
  "$(printf '%s' "$SARM" | tr -d '\n')"
sa_reviews() {
  printf '{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"%s"}}' "$EARLY" |
    rtk "$SATOK" create --validate=false -f - -o jsonpath='{.status.authenticated} {.status.user.username} {.status.user.groups[*]}'
}
eventually "RBAC mode: with create on tokenreviews a token user reviews another token" 2 sa_reviews
expect "RBAC mode: ... and TokenReview answers its user and groups" "true early-bird system:authenticated" "$(sa_reviews 2>&1)"

ka -n r1 create role cm-rw --verb=get,list,create --resource=configmaps >/dev/null
ka -n r1 create rolebinding alice-cm --role=cm-rw --user=alice >/dev/null
eventually "RBAC mode: a Role + RoleBinding grants at once" 2 as alice -n r1 create cm by-alice
rejected "RBAC mode: a RoleBinding grants nothing in another namespace" \
  'configmaps is forbidden: User "alice" cannot create resource "configmaps" in API group "" in the namespace "r2"' \
  as alice -n r2 create cm by-alice
rejected "RBAC mode: a Role grants only its verbs" 'configmaps "by-alice" is forbidden: User "alice" cannot delete resource "configmaps"' \
  as alice -n r1 delete cm by-alice
rejected "RBAC mode: a Role grants only its resources" 'secrets is forbidden: User "alice" cannot list resource "secrets"' \
  as alice -n r1 get secrets

ka create clusterrole secret-reader --verb=get,list --resource=secrets >/dev/null
ka create clusterrolebinding bob-secrets --clusterrole=secret-reader --user=bob >/dev/null
bob_reads_everywhere() { as bob -n r1 get secrets && as bob -n r2 get secrets && as bob get secrets -A; }
eventually "RBAC mode: a ClusterRole + ClusterRoleBinding grants in every namespace and cluster-wide" 2 bob_reads_everywhere
rejected "RBAC mode: a ClusterRole grants only its verbs" 'secrets is forbidden: User "bob" cannot create resource "secrets"' \
  as bob -n r1 create secret generic nope --from-literal=a=b
ka -n r2 create rolebinding carol-secrets --clusterrole=secret-reader --user=carol >/dev/null
eventually "RBAC mode: a RoleBinding to a ClusterRole grants in its namespace" 2 as carol -n r2 get secrets
rejected "RBAC mode: ... and nowhere else" 'secrets is forbidden: User "carol" cannot list resource "secrets" in API group "" in the namespace "r1"' \
  as carol -n r1 get secrets
rejected "RBAC mode: ... not cluster-wide" 'secrets is forbidden: User "carol" cannot list resource "secrets" in API group "" at the cluster scope' \
  as carol get secrets -A

ka -n r1 create rolebinding syncer-cm --role=cm-rw --serviceaccount=r1:syncer >/dev/null
eventually "RBAC mode: a ServiceAccount subject matches user system:serviceaccount:NS:NAME" 2 as sa -n r1 get cm
rejected "RBAC mode: ... and not the same name in another namespace" \
  'configmaps is forbidden: User "system:serviceaccount:r2:syncer" cannot list resource "configmaps"' as sa2 -n r1 get cm
expect "RBAC mode: ServiceAccount users get kube's ServiceAccount groups" \
  "system:serviceaccounts system:serviceaccounts:r1 system:authenticated" \
  "$(as sa auth whoami -o jsonpath='{.status.userInfo.groups[*]}' 2>&1)"
ka -n r2 create rolebinding r2-sas --clusterrole=secret-reader --group=system:serviceaccounts:r2 >/dev/null
eventually "RBAC mode: a Group system:serviceaccounts:NS subject matches that namespace's ServiceAccounts" 2 as sa2 -n r2 get secrets

ka create clusterrole pod-reader --verb=get,list,watch --resource=pods >/dev/null
ka create clusterrolebinding auditors --clusterrole=pod-reader --group=auditors >/dev/null
eventually "RBAC mode: a Group subject matches the client certificate's O" 2 as dave get pods -A
rejected "RBAC mode: ... and not users outside the group" 'pods is forbidden: User "erin" cannot list resource "pods"' as erin get pods -A

ka -n r1 create role one-cm --verb=get,list,watch --resource=configmaps --resource-name=allowed >/dev/null
ka -n r1 create rolebinding erin-one --role=one-cm --user=erin >/dev/null
eventually "RBAC mode: resourceNames grant get of a named object" 2 as erin -n r1 get cm allowed
rejected "RBAC mode: resourceNames refuse get of other objects" \
  'configmaps "other" is forbidden: User "erin" cannot get resource "configmaps"' as erin -n r1 get cm other
rejected "RBAC mode: resourceNames never grant a list (no name)" \
  'configmaps is forbidden: User "erin" cannot list resource "configmaps"' as erin -n r1 get cm
succeeds "RBAC mode: resourceNames grant a list of one name (fieldSelector metadata.name)" \
  as erin -n r1 get cm --field-selector metadata.name=allowed

ka -n r1 create deploy web --image=nginx >/dev/null
ka -n r1 run p --image=nginx >/dev/null
ka apply -f - >/dev/null <<'EOF'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.example.com}
spec:
  group: example.com
  names: {kind: Gadget, plural: gadgets, singular: gadget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          status: {type: object, properties: {ready: {type: boolean}}}
EOF
ka wait --for=condition=Established crd/gadgets.example.com --timeout=20s >/dev/null
eventually "RBAC mode: the admin creates custom resources" 10 \
  sh -c "printf 'apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g1}\n' | '$KUBECTL' --kubeconfig '$R/kubeconfig' -n r1 apply -f -"
# op_rules RULE...: Role "op" in r1 with these rules (YAML flow mappings), bound to user op
op_rules() {
  local rules="" r
  for r in "$@"; do rules+="- $r"$'\n'; done
  ka apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: op, namespace: r1}
rules:
$rules---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: op, namespace: r1}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: op}
subjects: [{kind: User, name: op}]
EOF
}
OP_BASE=('{apiGroups: [apps], resources: [deployments], verbs: [get, list, patch, update]}'
  '{apiGroups: [""], resources: [pods], verbs: [get, list, delete]}'
  '{apiGroups: [example.com], resources: [gadgets], verbs: [get, list, patch]}')
op_rules "${OP_BASE[@]}" '{apiGroups: [apps], resources: ["deployments/*"], verbs: ["*"]}'
op_can_all() { as op -n r1 get deploy web && as op -n r1 get pod p && as op -n r1 get gadget g1; }
eventually "RBAC mode: rules for deployments, pods and a custom resource grant them" 2 op_can_all
rejected "RBAC mode: deployments/scale needs its own rule ('deployments/*' is no wildcard, as in kube)" \
  'deployments.apps "web" is forbidden: User "op" cannot patch resource "deployments/scale" in API group "apps" in the namespace "r1"' \
  as op -n r1 scale deploy web --replicas=2
echo '{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"p","namespace":"r1"}}' >"$WORK/eviction.json"
rejected "RBAC mode: pods/eviction needs its own rule" \
  'pods "p" is forbidden: User "op" cannot create resource "pods/eviction" in API group "" in the namespace "r1"' \
  as op create --raw /api/v1/namespaces/r1/pods/p/eviction -f "$WORK/eviction.json"
rejected "RBAC mode: a custom resource's status needs its own rule" \
  'gadgets.example.com "g1" is forbidden: User "op" cannot (get|patch) resource "gadgets/status" in API group "example.com" in the namespace "r1"' \
  as op -n r1 patch gadget g1 --subresource=status --type=merge -p '{"status":{"ready":true}}'
op_rules "${OP_BASE[@]}" '{apiGroups: [apps], resources: [deployments/scale], verbs: [get, patch, update]}' \
  '{apiGroups: [""], resources: [pods/eviction], verbs: [create]}' '{apiGroups: ["*"], resources: ["*/status"], verbs: [get, patch]}'
eventually "RBAC mode: a deployments/scale rule grants kubectl scale" 2 as op -n r1 scale deploy web --replicas=2
eventually "RBAC mode: a pods/eviction rule grants an eviction" 2 as op create --raw /api/v1/namespaces/r1/pods/p/eviction -f "$WORK/eviction.json"
eventually "RBAC mode: a '*/status' rule grants a custom resource's status" 2 \
  as op -n r1 patch gadget g1 --subresource=status --type=merge -p '{"status":{"ready":true}}'

expect "RBAC mode: SelfSubjectAccessReview answers from RBAC (allowed)" "yes" "$(as alice auth can-i create configmaps -n r1 2>&1)"
expect "RBAC mode: SelfSubjectAccessReview answers from RBAC (other namespace)" "no" "$(as alice auth can-i create configmaps -n r2 2>&1)"
SAR=$(rapi -X POST -H 'Content-Type: application/json' "$RURL/apis/authorization.k8s.io/v1/subjectaccessreviews" \
  -d '{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{"user":"system:serviceaccount:r1:syncer","resourceAttributes":{"namespace":"r1","verb":"list","resource":"configmaps"}}}')
expect_match "RBAC mode: SubjectAccessReview allows with the binding as the reason" \
  '"allowed": ?true, *"reason": ?"RBAC: allowed by RoleBinding \\"syncer-cm/r1\\" of Role \\"cm-rw\\" to ServiceAccount \\"syncer/r1\\""' \
  "$(printf '%s' "$SAR" | tr -d '\n')"

rapi -X POST "$RURL/testing/deny" -d '{"user":"bob","verbs":["list"],"resources":["secrets"],"namespaces":["r2"]}' >/dev/null
rejected "RBAC mode: the deny list refuses what RBAC allows" \
  'secrets is forbidden: User "bob" cannot list resource "secrets" in API group "" in the namespace "r2"' as bob -n r2 get secrets
succeeds "RBAC mode: ... and only what it names" as bob -n r1 get secrets
LSAR=$(rapi -X POST -H 'Content-Type: application/json' "$RURL/apis/authorization.k8s.io/v1/namespaces/r2/localsubjectaccessreviews" \
  -d '{"apiVersion":"authorization.k8s.io/v1","kind":"LocalSubjectAccessReview","metadata":{"namespace":"r2"},"spec":{"user":"bob","resourceAttributes":{"namespace":"r2","verb":"list","resource":"secrets"}}}')
expect_match "RBAC mode: LocalSubjectAccessReview reports the deny rule" '"allowed": ?false, *"denied": ?true' "$(printf '%s' "$LSAR" | tr -d '\n')"
# ServiceAccount tokens in RBAC mode: minting needs create on serviceaccounts/token; the token's user is the
# ServiceAccount, so what it may do comes from bindings to it (a refusal is 403, not 401).
ka -n r1 create sa builder >/dev/null
rejected "RBAC mode: kubectl create token needs create on serviceaccounts/token" \
  'serviceaccounts "builder" is forbidden: User "nobody" cannot create resource "serviceaccounts/token" in API group "" in the namespace "r1"' \
  as nobody -n r1 create token builder
mint minter minter
ka -n r1 create role sa-creator --verb=create --resource=serviceaccounts >/dev/null
ka -n r1 create rolebinding minter-sa --role=sa-creator --user=minter >/dev/null
ka -n r1 create role token-minter --verb=create --resource=serviceaccounts/token >/dev/null
rejected "RBAC mode: ... create on serviceaccounts alone does not grant it" \
  'User "minter" cannot create resource "serviceaccounts/token"' as minter -n r1 create token builder
ka -n r1 create rolebinding minter-tokens --role=token-minter --user=minter >/dev/null
eventually "RBAC mode: a create rule on serviceaccounts/token grants kubectl create token" 2 as minter -n r1 create token builder
BTOK=$(ka -n r1 create token builder --duration=8760h 2>&1)
expect "RBAC mode: a TokenRequest token is its ServiceAccount, in kube's groups and system:authenticated" \
  "system:serviceaccount:r1:builder system:serviceaccounts system:serviceaccounts:r1 system:authenticated" \
  "$(rtk "$BTOK" auth whoami -o jsonpath='{.status.userInfo.username} {.status.userInfo.groups[*]}' 2>&1)"
rejected "RBAC mode: a TokenRequest token without bindings gets kube's 403" \
  'configmaps is forbidden: User "system:serviceaccount:r1:builder" cannot list resource "configmaps" in API group "" in the namespace "r1"' \
  rtk "$BTOK" -n r1 get cm
expect "RBAC mode: ... a 403 (authenticated, not authorized), not a 401" "403" \
  "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$R/pki/ca.crt" -H "Authorization: Bearer $BTOK" "$RURL/api/v1/namespaces/r1/configmaps")"
ka -n r1 create role cm-reader --verb=get,list --resource=configmaps >/dev/null
ka -n r1 create rolebinding builder-cm --role=cm-reader --serviceaccount=r1:builder >/dev/null
eventually "RBAC mode: a RoleBinding to the ServiceAccount grants its TokenRequest token" 2 rtk "$BTOK" -n r1 get cm
rejected "RBAC mode: missing ServiceAccount: kubectl create token fails with 404" \
  'failed to create token: serviceaccounts "missing-sa" not found' ka -n r1 create token missing-sa
rapi -X POST "$RURL/testing/deny" -d '{"user":"admin","verbs":["delete"],"resources":["namespaces"]}' >/dev/null
rejected "RBAC mode: the deny list refuses system:masters too" \
  'namespaces "r2" is forbidden: User "admin" cannot delete resource "namespaces" in API group ""' ka delete ns r2
rapi -X DELETE "$RURL/testing/deny" >/dev/null

ka -n r1 create rolebinding ghost --role=ghost --user=nobody >/dev/null
nobody_sees_ghost() {
  local out
  out=$(as nobody -n r1 get cm 2>&1)
  printf '%s' "$out" | grep -q 'in the namespace "r1": RBAC: role.rbac.authorization.k8s.io "ghost" not found' || { echo "$out"; return 1; }
}
eventually "RBAC mode: a binding to a missing role is named in the 403" 2 nobody_sees_ghost
ka delete ns r2 --wait=false >/dev/null
eventually "RBAC mode: the server's own controllers keep working (namespace deletion)" 10 \
  sh -c "! '$KUBECTL' --kubeconfig '$R/kubeconfig' get ns r2 2>/dev/null"

PID1=$(ready_field "$S" pid)
RSS=$(awk '/VmRSS/{print int($2/1024)}' "/proc/$PID1/status" 2>/dev/null)
echo "# rss of the first instance: ${RSS:-?} MB"
echo "# $PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
