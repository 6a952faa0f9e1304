#!/usr/bin/env bash
# Build (or reuse) the local Kubernetes test control plane `kapi` and sid's `kubectl`.
#
#   scripts/build-control-plane.sh [--force] [--print-path]
#
# kapi is our Go program in test-control-plane/, built offline against Debian sid's
# Go toolchain and the Go sources of Kubernetes' server libraries (golang-*-dev
# packages). The packages are fetched with `apt-get download` through a private apt
# configuration and unpacked with `dpkg-deb -x` into a private prefix: /etc/apt and
# the dpkg database are never touched, nothing is installed.
#
# The binary is cached under ${DR_SYNCER_CACHE_DIR:-$HOME/.cache/dr-syncer}/control-plane/<key>/
# where <key> hashes the exact package versions (manifest.txt, kept next to the
# binary), our Go sources and this script. A warm run reuses it without network.
# Stable links: <repo>/target/testenv/bin/{kapi,kubectl}.
#
# Output: progress on stderr; on success the last two lines on stdout are
#   kapi: <path>
#   kubectl: <path>
# (--print-path prints only the kapi path). --force rebuilds even if cached.
set -euo pipefail

SCRIPT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
REPO=$(cd "$(dirname "$SCRIPT")/.." && pwd)
SRC=$REPO/test-control-plane
CACHE=${DR_SYNCER_CACHE_DIR:-$HOME/.cache/dr-syncer}/control-plane
LINKS=$REPO/target/testenv/bin

FORCE=0
PRINT_PATH=0
for arg in "$@"; do
  case $arg in
    --force) FORCE=1 ;;
    --print-path) PRINT_PATH=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$SCRIPT" | sed '$d' | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "build-control-plane: unknown option: $arg (use --force, --print-path)" >&2
      exit 2
      ;;
  esac
done

log() { echo "build-control-plane: $*" >&2; }
die() {
  echo "build-control-plane: FAILED: $*" >&2
  exit 1
}

# Go library packages needed to build kapi (derived from `go list -deps`).
DEV_PACKAGES=(
  golang-cel-cel-go-dev golang-cel-expr-dev golang-etcd-server-dev golang-github-antlr4-go-antlr-dev
  golang-github-beorn7-perks-dev golang-github-blang-semver-dev golang-github-cenkalti-backoff-v5-dev
  golang-github-cespare-xxhash-v2-dev golang-github-coreos-bbolt-dev golang-github-coreos-go-semver-dev
  golang-github-coreos-go-systemd-dev golang-github-davecgh-go-spew-dev golang-github-docker-spdystream-dev
  golang-github-dustin-go-humanize-dev golang-github-emicklei-go-restful-dev golang-github-evanphx-json-patch-dev
  golang-github-felixge-httpsnoop-dev golang-github-fsnotify-fsnotify-dev golang-github-fxamacker-cbor-dev
  golang-github-go-logr-logr-dev golang-github-go-logr-stdr-dev golang-github-go-openapi-jsonpointer-dev
  golang-github-go-openapi-jsonreference-dev golang-github-go-openapi-swag-dev golang-github-gogo-protobuf-dev
  golang-github-golang-jwt-jwt-dev golang-github-golang-protobuf-1-5-dev golang-github-google-btree-dev
  golang-github-google-gnostic-models-dev golang-github-google-uuid-dev golang-github-gorilla-websocket-dev
  golang-github-grpc-ecosystem-go-grpc-middleware-dev golang-github-grpc-ecosystem-go-grpc-prometheus-dev
  golang-github-grpc-ecosystem-grpc-gateway-dev golang-github-jonboulle-clockwork-dev golang-github-json-iterator-go-dev
  golang-github-kubernetes-gengo-dev golang-github-kylelemons-godebug-dev golang-github-modern-go-concurrent-dev
  golang-github-modern-go-reflect2-dev golang-github-munnerz-goautoneg-dev golang-github-mxk-go-flowrate-dev
  golang-github-nytimes-gziphandler-dev golang-github-pkg-errors-dev golang-github-pmezard-go-difflib-dev
  golang-github-prometheus-client-golang-dev golang-github-prometheus-client-model-dev
  golang-github-prometheus-common-dev golang-github-prometheus-procfs-dev golang-github-sirupsen-logrus-dev
  golang-github-soheilhy-cmux-dev golang-github-spf13-cobra-dev golang-github-spf13-pflag-dev
  golang-github-tmc-grpc-websocket-proxy-dev golang-github-x448-float16-dev golang-github-xiang90-probing-dev
  golang-go.uber-multierr-dev golang-go.uber-zap-dev golang-golang-x-crypto-dev golang-golang-x-exp-dev
  golang-golang-x-mod-dev golang-golang-x-net-dev golang-golang-x-oauth2-dev golang-golang-x-sync-dev
  golang-golang-x-sys-dev golang-golang-x-term-dev golang-golang-x-text-dev golang-golang-x-time-dev
  golang-golang-x-tools-dev golang-google-genproto-dev golang-google-grpc-dev golang-google-protobuf-dev
  golang-gopkg-inf.v0-dev golang-gopkg-natefinch-lumberjack.v2-dev golang-gopkg-yaml.v2-dev golang-gopkg-yaml.v3-dev
  golang-k8s-api-dev golang-k8s-apiextensions-apiserver-dev golang-k8s-apimachinery-dev golang-k8s-apiserver-dev
  golang-k8s-client-go-dev golang-k8s-component-base-dev golang-k8s-klog-dev golang-k8s-kms-dev
  golang-k8s-kube-openapi-dev golang-k8s-sigs-apiserver-network-proxy-dev golang-k8s-sigs-json-dev
  golang-k8s-sigs-randfill-dev golang-k8s-sigs-structured-merge-diff-v6-dev golang-k8s-sigs-yaml-dev
  golang-k8s-streaming-dev golang-k8s-utils-dev golang-opentelemetry-contrib-dev golang-opentelemetry-otel-dev
  golang-opentelemetry-proto-dev
)
GO_VERSIONS=(1.26 1.27) # preferred first
# API packages whose OpenAPI definitions kapi serves (generated at build time).
OPENAPI_PACKAGES=(
  k8s.io/apimachinery/pkg/apis/meta/v1 k8s.io/apimachinery/pkg/runtime k8s.io/apimachinery/pkg/version
  k8s.io/apimachinery/pkg/api/resource k8s.io/apimachinery/pkg/util/intstr
  k8s.io/api/core/v1 k8s.io/api/apps/v1 k8s.io/api/networking/v1 k8s.io/api/coordination/v1 k8s.io/api/events/v1
  k8s.io/api/admissionregistration/v1 k8s.io/api/autoscaling/v1 k8s.io/api/autoscaling/v2 k8s.io/api/policy/v1
  k8s.io/api/batch/v1 k8s.io/api/rbac/v1 k8s.io/api/discovery/v1 k8s.io/api/storage/v1
  k8s.io/api/authentication/v1 k8s.io/api/authorization/v1
)

sha() { sha256sum | cut -c1-64; }

# Hash of everything in our control (Go sources, go.mod, this script).
source_hash() {
  (
    cd "$SRC"
    find . -maxdepth 1 -type f \( -name '*.go' -o -name go.mod \) | LC_ALL=C sort | xargs sha256sum
    sha256sum <"$SCRIPT"
  ) | sha
}

key_for() { printf '%s\n%s\n' "$(cat "$1")" "$2" | sha | cut -c1-24; }

link_and_print() {
  local dir=$1
  mkdir -p "$LINKS"
  ln -sfn "$dir/kapi" "$LINKS/kapi"
  ln -sfn "$dir/kubectl" "$LINKS/kubectl"
  if [ "$PRINT_PATH" = 1 ]; then
    echo "$LINKS/kapi"
  else
    echo "kapi: $LINKS/kapi"
    echo "kubectl: $LINKS/kubectl"
  fi
}

[ -d "$SRC" ] || die "Go sources not found in $SRC"
mkdir -p "$CACHE"
SRC_HASH=$(source_hash)

# --- warm path: the last manifest plus our sources name a cached binary; no network ---
if [ "$FORCE" = 0 ] && [ -f "$CACHE/last-manifest.txt" ]; then
  KEY=$(key_for "$CACHE/last-manifest.txt" "$SRC_HASH")
  if [ -x "$CACHE/$KEY/kapi" ] && [ -x "$CACHE/$KEY/kubectl" ]; then
    log "cached build $KEY is current (sources and package manifest unchanged)"
    link_and_print "$CACHE/$KEY"
    exit 0
  fi
fi

# Only one build at a time per cache directory.
exec 9>"$CACHE/.lock"
if ! flock -w 3600 9; then die "another build holds $CACHE/.lock for over an hour"; fi

for tool in apt-get apt-cache dpkg-deb flock timeout sha256sum; do
  command -v "$tool" >/dev/null || die "required tool not found: $tool"
done

# --- private apt configuration for sid (never touches /etc/apt or the dpkg database) ---
APT=$CACHE/apt
mkdir -p "$APT"/{parts,prefs,lists/partial,cache/archives/partial,debs}
SYS_SOURCES=/etc/apt/sources.list.d/debian.sources
[ -r "$SYS_SOURCES" ] || die "cannot read $SYS_SOURCES (needed for the Debian archive URI and keyring)"
URI=$(awk '/^URIs:/{print $2; exit}' "$SYS_SOURCES")
KEYRING=$(awk '/^Signed-By:/{print $2; exit}' "$SYS_SOURCES")
[ -n "$URI" ] || die "no 'URIs:' line in $SYS_SOURCES"
{
  printf 'Types: deb\nURIs: %s\nSuites: sid\nComponents: main\n' "$URI"
  if [ -n "$KEYRING" ] && [ -r "$KEYRING" ]; then printf 'Signed-By: %s\n' "$KEYRING"; fi
} >"$APT/parts/sid.sources.new"
mv "$APT/parts/sid.sources.new" "$APT/parts/sid.sources"
APT_OPTS=(
  -o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$APT/parts"
  -o Dir::Etc::Preferences=/dev/null -o "Dir::Etc::PreferencesParts=$APT/prefs"
  -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache" -o Dir::State::status=/dev/null
  -o Acquire::Retries=2 -o Acquire::http::Timeout=20 -o Acquire::https::Timeout=20
  -o Acquire::Languages=none -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
  -o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false
  -o Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false
  -o Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled=false
  -o Acquire::IndexTargets::deb::CNF::DefaultEnabled=false
)
if [ "$(id -u)" = 0 ]; then APT_OPTS+=(-o APT::Sandbox::User=root); fi

# A rebuild is needed: refresh the package lists (falling back to the cached lists
# when the archive is unreachable).
T_START=$(date +%s)
if ! ls "$APT/lists/"*_Packages* >/dev/null 2>&1; then HAVE_LISTS=0; else HAVE_LISTS=1; fi
log "updating sid package lists from $URI"
if ! timeout 300 apt-get "${APT_OPTS[@]}" -q update >"$APT/update.log" 2>&1 ||
  grep -q '^\(E:\|Err:\)' "$APT/update.log"; then
  if [ "$HAVE_LISTS" = 1 ]; then
    log "WARNING: apt-get update failed; using the cached package lists:"
    sed 's/^/    /' "$APT/update.log" | tail -n 5 >&2
  else
    sed 's/^/    /' "$APT/update.log" | tail -n 20 >&2
    die "step 'apt-get update' (sid at $URI): archive unreachable and no cached package lists"
  fi
fi

# Exact versions: the candidate of each package in the private sid lists.
candidates() {
  apt-cache "${APT_OPTS[@]}" policy "$@" 2>/dev/null |
    awk '/^[^ ].*:$/ {p = substr($1, 1, length($1) - 1)} /^  Candidate:/ {print p, $2}'
}
GOV=""
for v in "${GO_VERSIONS[@]}"; do
  c=$(candidates "golang-$v-go" "golang-$v-src" | awk '$2 != "(none)"' | wc -l)
  if [ "$c" = 2 ]; then
    GOV=$v
    break
  fi
  log "Go toolchain golang-$v-go/golang-$v-src not available in sid; trying the next one"
done
[ -n "$GOV" ] || die "no Go toolchain in sid: tried ${GO_VERSIONS[*]/#/golang-} (-go and -src)"
PACKAGES=("golang-$GOV-go" "golang-$GOV-src" kubectl "${DEV_PACKAGES[@]}")
MANIFEST_NEW=$CACHE/manifest.new
candidates "${PACKAGES[@]}" | awk '$2 != "(none)"' | LC_ALL=C sort >"$MANIFEST_NEW"
MISSING=()
for p in "${PACKAGES[@]}"; do
  grep -q "^$p " "$MANIFEST_NEW" || MISSING+=("$p")
done
[ ${#MISSING[@]} -eq 0 ] || die "package(s) missing from sid: ${MISSING[*]}"
mv "$MANIFEST_NEW" "$CACHE/manifest.txt"
MANIFEST=$CACHE/manifest.txt
MANIFEST_HASH=$(sha <"$MANIFEST" | cut -c1-24)
KEY=$(key_for "$MANIFEST" "$SRC_HASH")
OUT=$CACHE/$KEY
if [ "$FORCE" = 0 ] && [ -x "$OUT/kapi" ] && [ -x "$OUT/kubectl" ]; then
  cp "$MANIFEST" "$CACHE/last-manifest.txt"
  log "cached build $KEY matches the current package versions"
  link_and_print "$OUT"
  exit 0
fi
log "building $KEY (Go $GOV, $(wc -l <"$MANIFEST") packages)"

# --- download the .debs and unpack them into a private prefix (one per manifest) ---
DEBS=$APT/debs
deb_file() { ls "$DEBS/${1}_${2//:/%3a}_"*.deb 2>/dev/null | head -n 1; }
PREFIX=$CACHE/prefix-$MANIFEST_HASH
if [ ! -f "$PREFIX/.complete" ]; then
  NEED=()
  while read -r p v; do
    [ -n "$(deb_file "$p" "$v")" ] || NEED+=("$p=$v")
  done <"$MANIFEST"
  if [ ${#NEED[@]} -gt 0 ]; then
    log "downloading ${#NEED[@]} packages"
    if ! (cd "$DEBS" && timeout 900 apt-get "${APT_OPTS[@]}" -q download "${NEED[@]}") >"$APT/download.log" 2>&1; then
      grep -E '^(E|Err|W):' "$APT/download.log" | head -n 20 | sed 's/^/    /' >&2 || true
      tail -n 5 "$APT/download.log" | sed 's/^/    /' >&2
      die "step 'apt-get download' failed (see the packages named above)"
    fi
  fi
  while read -r p v; do
    [ -n "$(deb_file "$p" "$v")" ] || die "package $p $v was not downloaded (see $APT/download.log)"
  done <"$MANIFEST"
  log "unpacking into $PREFIX"
  rm -rf "$PREFIX" "$PREFIX.tmp"
  mkdir -p "$PREFIX.tmp"
  while read -r p v; do deb_file "$p" "$v"; done <"$MANIFEST" |
    xargs -P 2 -I{} sh -c 'dpkg-deb -x "$1" "$2" || { echo "dpkg-deb -x failed for $1" >&2; exit 255; }' _ {} "$PREFIX.tmp" ||
    die "step 'dpkg-deb -x' failed"
  touch "$PREFIX.tmp/.complete"
  mv "$PREFIX.tmp" "$PREFIX"
fi
GOROOT_DIR=$PREFIX/usr/lib/go-$GOV
[ -x "$GOROOT_DIR/bin/go" ] || die "Go toolchain missing in $GOROOT_DIR after unpacking"
[ -x "$PREFIX/usr/bin/kubectl" ] || die "kubectl missing in $PREFIX/usr/bin after unpacking"

# --- build (GOPATH mode, offline) ---
BUILD=$CACHE/build-$KEY
LOGS=$CACHE/logs
mkdir -p "$LOGS"
BUILD_LOG=$LOGS/build-$KEY.log
: >"$BUILD_LOG"
rm -rf "$CACHE"/build-* # leftovers of failed builds
mkdir -p "$BUILD/gopath/src/kapi/generated/openapi"
cp "$SRC"/*.go "$SRC/go.mod" "$BUILD/gopath/src/kapi/"
export GO111MODULE=off GOPROXY=off GOTOOLCHAIN=local GOTELEMETRY=off GOENV=off GOFLAGS=-p=2 CGO_ENABLED=0
export GOROOT=$GOROOT_DIR GOPATH=$BUILD/gopath:$PREFIX/usr/share/gocode GOCACHE=$CACHE/gocache
export PATH=$GOROOT_DIR/bin:$PATH

run_step() { # NAME CMD... : run with output to the build log; on failure show its tail
  local name=$1
  shift
  echo "### $name: $*" >>"$BUILD_LOG"
  if ! timeout 5400 "$@" >>"$BUILD_LOG" 2>&1; then
    echo "---- last lines of $BUILD_LOG ----" >&2
    tail -n 40 "$BUILD_LOG" >&2
    die "step '$name' failed"
  fi
}

if [ ! -x "$PREFIX/bin/openapi-gen" ]; then
  log "building openapi-gen"
  mkdir -p "$PREFIX/bin"
  run_step "build openapi-gen" go build -o "$PREFIX/bin/openapi-gen" k8s.io/kube-openapi/cmd/openapi-gen
fi
log "generating OpenAPI definitions"
touch "$BUILD/boilerplate.txt"
(
  cd "$BUILD/gopath/src/kapi"
  run_step "openapi-gen" "$PREFIX/bin/openapi-gen" --output-dir generated/openapi --output-pkg kapi/generated/openapi \
    --output-file zz_generated.openapi.go --go-header-file "$BUILD/boilerplate.txt" --report-filename /dev/null \
    "${OPENAPI_PACKAGES[@]}"
)

# Version stamped into the binary: the Kubernetes version of the apiserver library.
LIBV=$(awk '$1 == "golang-k8s-apiserver-dev" {print $2}' "$MANIFEST" | sed 's/^[0-9]*://; s/[-+~].*//')
MINOR=$(echo "$LIBV" | cut -d. -f2)
PATCH=$(echo "$LIBV" | cut -d. -f3)
GITVERSION="v1.$MINOR.${PATCH:-0}"
VPKG=k8s.io/component-base/version
LDFLAGS="-s -w -X $VPKG.gitVersion=$GITVERSION -X $VPKG.gitMajor=1 -X $VPKG.gitMinor=$MINOR -X $VPKG.gitTreeState=clean"
LDFLAGS="$LDFLAGS -X $VPKG.gitCommit=$(printf '%s' "$KEY$MANIFEST_HASH" | sha | cut -c1-40)"
LDFLAGS="$LDFLAGS -X $VPKG.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
log "compiling kapi $GITVERSION (a cold build takes several minutes on 2 cores; log: $BUILD_LOG)"
(
  cd "$BUILD/gopath/src/kapi"
  run_step "go build kapi" go build -trimpath -ldflags "$LDFLAGS" -o "$BUILD/kapi" .
)
"$BUILD/kapi" version >/dev/null 2>&1 || die "the built kapi does not run ($BUILD/kapi version)"

# --- install atomically into the cache ---
rm -rf "$OUT.tmp"
mkdir -p "$OUT.tmp"
cp "$BUILD/kapi" "$OUT.tmp/kapi"
cp "$PREFIX/usr/bin/kubectl" "$OUT.tmp/kubectl"
cp "$MANIFEST" "$OUT.tmp/manifest.txt"
echo "$SRC_HASH" >"$OUT.tmp/source-hash.txt"
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
cp "$MANIFEST" "$CACHE/last-manifest.txt"
rm -rf "$BUILD"

# Prune: keep the three newest builds, the current prefix and the current .debs.
find "$CACHE" -mindepth 1 -maxdepth 1 -type d -regextype posix-extended -regex '.*/[0-9a-f]{24}' -printf '%T@ %p\n' |
  sort -rn | tail -n +4 | cut -d' ' -f2- | xargs -r rm -rf
for d in "$CACHE"/prefix-*; do
  [ "$d" = "$PREFIX" ] || rm -rf "$d"
done
KEEP=$(while read -r p v; do f=$(deb_file "$p" "$v"); [ -z "$f" ] || basename "$f"; done <"$MANIFEST")
for f in "$DEBS"/*.deb; do
  grep -qxF "$(basename "$f")" <<<"$KEEP" || rm -f "$f"
done

log "built $KEY in $(($(date +%s) - T_START))s ($("$OUT/kapi" version))"
link_and_print "$OUT"
