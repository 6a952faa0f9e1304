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
#  - libssl-dev, pkg-config: the agent's SSH library (libssh2, built by the ssh2 crate) links OpenSSL.
BASE_DEBS=(apt ca-certificates curl openssh-client openssh-server rsync acl attr iproute2 procps libssl-dev pkg-config)

require_rust() {
  command -v cargo >/dev/null 2>&1 || die "cargo not found: install the Rust toolchain (rustup) first"
}
