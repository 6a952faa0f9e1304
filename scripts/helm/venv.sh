#!/usr/bin/env bash
# Make (once) and print the path of a Python virtualenv with helm-python-sdk, the Helm v4 Go SDK built
# as a C library with Python bindings: scripts/helm/render.py renders and lints charts with it (Debian
# ships no helm binary).
#
#   "$(scripts/helm/venv.sh)/bin/python" scripts/helm/render.py charts/dr-syncer --release R --namespace NS
#
# The virtualenv lives under ${DR_SYNCER_CACHE_DIR:-$HOME/.cache/dr-syncer}/helm-venv/<version> and is
# reused while it imports the pinned version. Progress goes to stderr; stdout is only the path.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
. scripts/lib/common.sh

HELM_PYTHON_SDK_VERSION=0.2.2
VENV="$DR_SYNCER_CACHE_DIR/helm-venv/$HELM_PYTHON_SDK_VERSION"

ready() {
  [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - "$HELM_PYTHON_SDK_VERSION" <<'PY' >/dev/null 2>&1
import sys
import helm_python
sys.exit(0 if helm_python.__version__ == sys.argv[1] else 1)
PY
}

if ready; then
  printf '%s\n' "$VENV"
  exit 0
fi

# Python >= 3.10 with venv and ensurepip (Debian splits them into python3-venv).
PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null 2>&1 || ensure_debs python3 python3-venv >&2
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
  || die "$PYTHON is older than 3.10 (helm-python-sdk needs 3.10 or later)"
"$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1 || ensure_debs python3-venv >&2

# One builder at a time.
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock -w 600 9 || die "another process holds $VENV.lock"
if ready; then
  printf '%s\n' "$VENV"
  exit 0
fi
step "making the helm-python-sdk $HELM_PYTHON_SDK_VERSION virtualenv in $VENV" >&2
rm -rf "$VENV"
trap 'ready || rm -rf "$VENV"' EXIT
"$PYTHON" -m venv "$VENV" >&2 || die "$PYTHON -m venv failed"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input --only-binary=:all: \
  "helm-python-sdk==$HELM_PYTHON_SDK_VERSION" >&2 \
  || die "pip install helm-python-sdk==$HELM_PYTHON_SDK_VERSION failed (it needs PyPI, and a wheel for this platform)"
ready || die "the virtualenv in $VENV does not import helm_python $HELM_PYTHON_SDK_VERSION"
printf '%s\n' "$VENV"
