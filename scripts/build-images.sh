#!/usr/bin/env bash
# Build dr-syncer's operator and agent images from deploy/images/Dockerfile with podman, into the default
# image storage (root's when run as root), tagged REGISTRY/dr-syncer-operator:TAG and
# REGISTRY/dr-syncer-agent:TAG. Prints the two names.
#
#   scripts/build-images.sh                 release binaries built on this host, the *-prebuilt targets
#   scripts/build-images.sh --binaries DIR  the release binaries already in DIR
#   scripts/build-images.sh --from-source   the Dockerfile's Rust builder stage (needs the rust image)
#   --registry REG   default: dr-syncer-core's IMAGE_REGISTRY (the images' published home)
#   --tag TAG        default: the workspace version
#   --push           push both images after building (podman push; log in first)
#   --print-names    print the two image names and exit (nothing is built)
#
# The Debian base (debian:bookworm-slim) is pulled, or made once with debootstrap where no container
# registry is reachable (see scripts/lib/common.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib/common.sh
. scripts/lib/common.sh

registry=$(sed -n 's/^        "\(.*\)"$/\1/p' dr-syncer-core/src/version.rs | head -1)
workspace_version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
tag=$workspace_version
mode=host
binaries=""
push=false
while [ $# -gt 0 ]; do
  case "$1" in
    --registry) registry=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --binaries) mode=dir; binaries=$2; shift 2 ;;
    --from-source) mode=source; shift ;;
    --push) push=true; shift ;;
    --print-names) mode=print; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
[ -n "$registry" ] || die "cannot read IMAGE_REGISTRY from dr-syncer-core/src/version.rs"
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ "$mode" = print ]; then
  echo "$registry/dr-syncer-operator:$tag"
  echo "$registry/dr-syncer-agent:$tag"
  exit 0
fi

podman_setup
ensure_debian_base

build() { # TARGET NAME CONTEXT
  step "image $registry/$2:$tag (target $1)"
  "${PODMAN[@]}" build -q --network host -f deploy/images/Dockerfile --target "$1" \
    --build-arg VERSION="$tag" --build-arg REVISION="$revision" \
    -t "$registry/$2:$tag" "$3" >/dev/null
}

case "$mode" in
  source)
    build operator dr-syncer-operator .
    build agent dr-syncer-agent .
    ;;
  host|dir)
    if [ "$mode" = host ]; then
      require_rust
      step "release binaries (cargo build --release)"
      # --version-json reports the commit and its time (stable per commit: no rebuild for the clock).
      DR_SYNCER_GIT_COMMIT=$revision \
        DR_SYNCER_BUILD_TIME=$(git log -1 --format=%cI 2>/dev/null || echo unknown) \
        cargo build --release --locked -p dr-syncer-operator -p dr-syncer-agent \
        --bin dr-syncer-operator --bin dr-syncer-agent
      binaries=target/release
    fi
    context=target/images/context
    rm -rf "$context" && mkdir -p "$context/prebuilt"
    for b in dr-syncer-operator dr-syncer-agent; do
      [ -x "$binaries/$b" ] || die "$binaries/$b: no such executable"
      cp "$binaries/$b" "$context/prebuilt/$b"
    done
    build operator-prebuilt dr-syncer-operator "$context"
    build agent-prebuilt dr-syncer-agent "$context"
    ;;
esac

for name in dr-syncer-operator dr-syncer-agent; do
  image="$registry/$name:$tag"
  version=$("${PODMAN[@]}" run --rm --network none "$image" --version-json | sed -n 's/.*"version":"\([^"]*\)".*/\1/p')
  [ "$version" = "$workspace_version" ] || die "$image reports version '$version', not $workspace_version"
  $push && "${PODMAN[@]}" push "$image"
  echo "$image"
done
