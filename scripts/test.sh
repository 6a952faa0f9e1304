#!/usr/bin/env bash
# Run dr-syncer's whole test suite, as CI does (.ci/run calls exactly this).
#
# Installs what it needs (Debian packages; the local Kubernetes test control plane, built once and cached
# under ~/.cache/dr-syncer), then: rustfmt check, clippy (-D warnings), the operator and agent images
# (scripts/build-images.sh), the unit, integration and container tests (nextest), doc tests, rustdoc
# (-D warnings), examples and benches compile, and the control plane's smoke suite. Any failure stops the run with a non-zero exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=lib/common.sh
. scripts/lib/common.sh

require_rust
ensure_debs "${BASE_DEBS[@]}"

# Incremental compilation caches take more disk than the build itself (tens of GB over a few runs) and
# do not speed up a fresh build; a developer re-running often may set CARGO_INCREMENTAL=1.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
step "disk"
# A full run needs about DISK_NEEDED_GB free where target/ lives (measured from a fresh clone: target/
# peaks near 5 GB with the debug and release builds; the first run's caches take about 4 GB more).
# When the disk fills, the linker dies with a bus error; say so up front instead.
DISK_NEEDED_GB=12
mkdir -p target
free_kb=$(df -Pk target | awk 'NR==2 {print $4}')
echo "free where target/ lives: $((free_kb / 1024 / 1024)) GiB (a full run needs about $DISK_NEEDED_GB GiB)"
[ "$free_kb" -ge $((DISK_NEEDED_GB * 1024 * 1024)) ] \
  || echo "WARNING: less than $DISK_NEEDED_GB GiB free: the build may fail with 'No space left on device' or a linker bus error"

step "test control plane (build or reuse)"
scripts/build-control-plane.sh

step "toolchain"
rustc --version
want=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
have=$(rustc --version | awk '{print $2}')
[ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -1)" = "$want" ] \
  || die "rustc $have is older than the pinned rust-version $want"

step "cargo fmt --check"
cargo fmt --all --check

step "import circles between modules (scripts/check-import-cycles.py)"
python3 scripts/check-import-cycles.py

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "dr-syncer-core without its default features (a plugin author's dependency)"
# The core's feature sets a library user may pick (default: client + data):
# - none: the types, selection, transformers, plugins and the engine's traits (what a plugin or
#   transformer author needs: no Kubernetes client, no SSH keys, no rsync);
# - client: the Kubernetes implementations and the operations above the engine, without the data path;
# - data: the data path without the client; ssh: the verified SSH transport.
cargo clippy -p dr-syncer-core --no-default-features --locked -- -D warnings
cargo clippy -p dr-syncer-core --no-default-features --features client --locked -- -D warnings
cargo clippy -p dr-syncer-core --no-default-features --features data --locked -- -D warnings
cargo clippy -p dr-syncer-core --no-default-features --features ssh --locked -- -D warnings

step "images (scripts/build-images.sh: release binaries, podman)"
# The container tests (tests named `images`) run the images built here. Where podman cannot run at all
# they are skipped, and said so; where it can, a failed build fails the run and the tests must not skip.
podman_setup
if podman_error=$("${PODMAN[@]}" info 2>&1 >/dev/null); then
  scripts/build-images.sh
  export DR_SYNCER_REQUIRE_IMAGES=1
else
  echo "container tests: SKIPPED (podman cannot run here: $(echo "$podman_error" | tail -1))"
fi

step "Helm's engine (helm-python-sdk virtualenv, cached)"
# The chart tests (dr-syncer-operator/tests/chart.rs) render and lint charts/dr-syncer with it.
DR_SYNCER_HELM_PYTHON="$(scripts/helm/venv.sh)/bin/python"
export DR_SYNCER_HELM_PYTHON DR_SYNCER_REQUIRE_HELM=1
"$DR_SYNCER_HELM_PYTHON" -c 'import helm_python; print("helm-python-sdk", helm_python.__version__)'

step "tests"
# The data-path tests (sshd, rsync) and the simulated-node tests (network namespaces, bind mounts) need
# root with CAP_NET_ADMIN and CAP_SYS_ADMIN; without them they print SKIPPED. Say which it is.
caps=$(awk '/^CapEff:/ {print $2}' /proc/self/status 2>/dev/null || echo 0)
if [ "$(id -u)" = 0 ] && [ $(((16#${caps:-0} >> 12) & 1)) = 1 ] && [ $(((16#${caps:-0} >> 21) & 1)) = 1 ]; then
  echo "data-path and simulated-node tests: run (root, CAP_NET_ADMIN, CAP_SYS_ADMIN)"
else
  echo "data-path and simulated-node tests: SKIPPED (need root with CAP_NET_ADMIN and CAP_SYS_ADMIN)"
fi
# The examples as programs (`--all-targets` builds them as test harnesses): examples/tests runs
# custom_operator against test control planes.
cargo build --locked -p dr-syncer-examples --examples
if cargo nextest --version >/dev/null 2>&1; then
  rm -f target/nextest/default/junit.xml
  tests_rc=0
  cargo nextest run --workspace --all-targets --locked --no-fail-fast || tests_rc=$?
  # The fault and security suites' summaries (the test binaries named `faults` and `security`), from
  # nextest's own JUnit report.
  scripts/suite-summary.sh target/nextest/default/junit.xml faults scenarios survived
  scripts/suite-summary.sh target/nextest/default/junit.xml security attacks refused
  [ "$tests_rc" = 0 ] || exit "$tests_rc"
else
  echo "cargo-nextest not installed; using cargo test"
  cargo test --workspace --all-targets --locked --no-fail-fast
fi

step "doc tests"
cargo test --workspace --doc --locked

step "examples run"
for ex in examples/examples/*.rs; do
  name=$(basename "$ex" .rs)
  case "$name" in
    # An operator needs a controller cluster: examples/tests/custom_operator.rs runs it against test
    # control planes (bounded by --once); here it only has to start and answer.
    custom_operator) args=(--version-json) ;;
    *) args=() ;;
  esac
  cargo run --quiet --locked -p dr-syncer-examples --example "$name" -- "${args[@]}" >/dev/null
  echo "example $name: ok"
done

step "rustdoc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

step "control plane smoke suite"
test-control-plane/smoke.sh target/testenv/bin/kapi target/testenv/bin/kubectl

echo
echo "all checks passed"
