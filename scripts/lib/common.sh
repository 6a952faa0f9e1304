# Shared helpers for dr-syncer's scripts. Source it; do not run it.

DR_SYNCER_CACHE_DIR="${DR_SYNCER_CACHE_DIR:-$HOME/.cache/dr-syncer}"
export DR_SYNCER_CACHE_DIR

# Print a step header.
step() { printf '\n==> %s\n' "$*"; }

# Print an error and exit.
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Run a command as root (directly, or through sudo when available).
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root to run: $* (run this script as root or install sudo)"
  fi
}

# Install Debian packages that are missing. Usage: ensure_debs PKG...
ensure_debs() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null 2>&1 || die "missing packages ${missing[*]} and no apt-get: this script expects Debian or Ubuntu"
  step "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq || die "apt-get update failed: check the machine's Debian package sources"
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

# The Debian packages dr-syncer's scripts and tests use.
#  - dpkg-dev/apt/ca-certificates: private download of the control plane's Go sources;
#  - openssh-server, openssh-client, rsync: the PVC data path; acl, attr: its tests set ACLs and
#    extended attributes (setfacl, setfattr) to check they are copied;
#  - iproute2: network namespaces for data-path tests; curl: probes in scripts;
#  - libssl-dev, pkg-config: the agent's SSH library (libssh2, built by the ssh2 crate) links OpenSSL;
#  - make: jemalloc, the operator's allocator, is built from source (tikv-jemalloc-sys).
BASE_DEBS=(apt ca-certificates curl openssh-client openssh-server rsync acl attr iproute2 procps libssl-dev pkg-config make)

require_rust() {
  command -v cargo >/dev/null 2>&1 || die "cargo not found: install the Rust toolchain (rustup) first"
}

# Podman as these scripts and the container tests run it (dr_syncer_testenv::images does the same):
# default ulimits dropped (a sandbox without CAP_SYS_RESOURCE cannot set them) and runc as the runtime
# (crun refuses a cgroup v1 "hybrid" layout). Harmless elsewhere. Sets PODMAN=(podman …).
podman_setup() {
  ensure_debs podman runc
  local conf="$DR_SYNCER_CACHE_DIR/containers.conf"
  mkdir -p "$DR_SYNCER_CACHE_DIR"
  printf '[containers]\ndefault_ulimits = []\n' > "$conf"
  export CONTAINERS_CONF="$conf"
  PODMAN=(podman --runtime "$(command -v runc)")
}

# The Debian 12 base image the Dockerfile starts from (debian:bookworm-slim). Pulled when a registry is
# reachable; else made once with debootstrap from the Debian archive this machine uses (its apt sources,
# security updates included, go into the image as the official image has them) and cached as a tarball.
ensure_debian_base() {
  local ref=docker.io/library/debian:bookworm-slim
  "${PODMAN[@]}" image exists "$ref" && return 0
  "${PODMAN[@]}" pull -q "$ref" >/dev/null 2>&1 && return 0
  ensure_debs debootstrap
  local tarball="$DR_SYNCER_CACHE_DIR/images/debian-bookworm-minbase.tar"
  if [ ! -s "$tarball" ]; then
    step "making the Debian 12 base image (debootstrap; cached in $DR_SYNCER_CACHE_DIR/images)"
    local rootfs
    rootfs=$(mktemp -d)
    as_root debootstrap --variant=minbase bookworm "$rootfs" >/dev/null \
      || die "debootstrap failed: check that the Debian archive is reachable"
    rm -f "$rootfs/etc/apt/sources.list"
    [ -f /etc/apt/sources.list ] && as_root cp /etc/apt/sources.list "$rootfs/etc/apt/sources.list"
    for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] && as_root cp "$f" "$rootfs/etc/apt/sources.list.d/"
    done
    as_root rm -rf "$rootfs/var/lib/apt/lists/"* "$rootfs/var/cache/apt/archives/"*.deb
    mkdir -p "$(dirname "$tarball")"
    as_root tar -C "$rootfs" -c . > "$tarball.tmp" && mv "$tarball.tmp" "$tarball"
    as_root rm -rf "$rootfs"
  fi
  "${PODMAN[@]}" import -q "$tarball" "$ref" >/dev/null
}
