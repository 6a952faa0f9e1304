#!/usr/bin/env bash
# Start and stop named local Kubernetes control planes (our test control plane, `kapi`) by hand.
#
#   scripts/testenv.sh up prod dr      start (or reuse) control planes "prod" and "dr"; prints their kubeconfigs
#   scripts/testenv.sh status          list running control planes
#   scripts/testenv.sh kubeconfig prod print the kubeconfig path of "prod"
#   scripts/testenv.sh down [NAME...]  stop the named control planes (all when no name is given)
#   scripts/testenv.sh reset NAME...   stop them and delete their state
#
# Options for `up`: --simulate-workloads (Deployments etc. report themselves ready).
# State lives in ${DR_SYNCER_TESTENV_DIR:-~/.cache/dr-syncer/testenv}/NAME: certificates, etcd data, kapi.log,
# kubeconfig. Control planes keep running after this script exits, until `down`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib/common.sh
. scripts/lib/common.sh

ENV_DIR="${DR_SYNCER_TESTENV_DIR:-$DR_SYNCER_CACHE_DIR/testenv}"
KAPI="${DR_SYNCER_KAPI:-target/testenv/bin/kapi}"

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

valid_name() { [[ "$1" =~ ^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$ ]] || die "invalid name '$1': use lowercase letters, digits and '-'"; }

pid_of() { # running pid of NAME, or nothing
  local f="$ENV_DIR/$1/kapi.pid" pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null && grep -q kapi "/proc/$pid/cmdline" 2>/dev/null; then echo "$pid"; fi
}

up() {
  local simulate=() names=() n
  for n in "$@"; do
    case "$n" in
      --simulate-workloads) simulate=(--simulate-workloads) ;;
      -*) die "unknown option $n" ;;
      *) valid_name "$n"; names+=("$n") ;;
    esac
  done
  [ ${#names[@]} -gt 0 ] || die "usage: scripts/testenv.sh up NAME... (e.g. up prod dr)"
  if [ ! -x "$KAPI" ]; then
    step "building the test control plane (first run only)"
    scripts/build-control-plane.sh >&2
  fi
  for n in "${names[@]}"; do
    local dir="$ENV_DIR/$n"
    mkdir -p "$dir"
    if [ -n "$(pid_of "$n")" ]; then
      echo "$n: already running"
      continue
    fi
    rm -f "$dir/ready.json"
    # Reuse the previous port when restarting, so existing kubeconfigs keep working.
    local port=0
    [ -f "$dir/port" ] && port=$(cat "$dir/port")
    start_one "$n" "$dir" "$port" "${simulate[@]}" || {
      if [ "$port" != 0 ]; then
        echo "$n: port $port is taken now; starting on a new port (re-read the kubeconfig)" >&2
        start_one "$n" "$dir" 0 "${simulate[@]}" || die "$n: failed to start; see $dir/kapi.log"
      else
        die "$n: failed to start; see $dir/kapi.log"
      fi
    }
  done
  echo
  for n in "${names[@]}"; do
    printf '%-10s %s  (kubeconfig: %s)\n' "$n" "$(sed -n 's/.*"url": *"\([^"]*\)".*/\1/p' "$ENV_DIR/$n/ready.json")" "$ENV_DIR/$n/kubeconfig"
  done
  echo
  echo "Use one with: export KUBECONFIG=$ENV_DIR/${names[0]}/kubeconfig"
  echo "Stop them with: scripts/testenv.sh down"
}

start_one() { # NAME DIR PORT [ARGS...]
  local n=$1 dir=$2 port=$3; shift 3
  mkdir -p "$dir/pod-logs"
  nohup "$KAPI" serve --dir "$dir" --secure-port "$port" --pod-log-dir "$dir/pod-logs" "$@" >>"$dir/kapi.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$dir/kapi.pid"
  local i
  for i in $(seq 1 600); do
    if [ -s "$dir/ready.json" ]; then
      sed -n 's/.*"port": *\([0-9]*\).*/\1/p' "$dir/ready.json" >"$dir/port"
      echo "$n: ready"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$n: kapi exited: $(tail -n 3 "$dir/kapi.log")" >&2
      return 1
    fi
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true
  echo "$n: not ready after 60s; see $dir/kapi.log" >&2
  return 1
}

down() {
  local names=("$@") n pid
  if [ ${#names[@]} -eq 0 ]; then
    [ -d "$ENV_DIR" ] || return 0
    for n in "$ENV_DIR"/*/; do [ -d "$n" ] && names+=("$(basename "$n")"); done
  fi
  for n in "${names[@]}"; do
    pid=$(pid_of "$n")
    if [ -z "$pid" ]; then echo "$n: not running"; continue; fi
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    rm -f "$ENV_DIR/$n/kapi.pid"
    echo "$n: stopped"
  done
}

status() {
  [ -d "$ENV_DIR" ] || { echo "no control planes"; return 0; }
  local n name pid
  for n in "$ENV_DIR"/*/; do
    [ -d "$n" ] || continue
    name=$(basename "$n"); pid=$(pid_of "$name")
    if [ -n "$pid" ]; then
      printf '%-10s running (pid %s)  kubeconfig: %s\n' "$name" "$pid" "$n"kubeconfig
    else
      printf '%-10s stopped\n' "$name"
    fi
  done
}

cmd="${1:-}"; [ $# -gt 0 ] && shift
case "$cmd" in
  up) up "$@" ;;
  down) down "$@" ;;
  status) status ;;
  kubeconfig) [ $# -eq 1 ] || die "usage: scripts/testenv.sh kubeconfig NAME"; valid_name "$1"
              [ -f "$ENV_DIR/$1/kubeconfig" ] || die "no control plane named $1 (start it with: scripts/testenv.sh up $1)"
              echo "$ENV_DIR/$1/kubeconfig" ;;
  reset) [ $# -gt 0 ] || die "usage: scripts/testenv.sh reset NAME..."
         for n in "$@"; do valid_name "$n"; done
         down "$@"; for n in "$@"; do rm -rf "${ENV_DIR:?}/$n"; echo "$n: state deleted"; done ;;
  -h|--help|help) usage 0 ;;
  *) usage 1 >&2 ;;
esac
