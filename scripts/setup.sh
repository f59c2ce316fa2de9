#!/usr/bin/env bash
# Installs everything the build and the tests need on a fresh Debian machine with rustup:
# the wasm32-wasip1 target, rustfmt/clippy, Python packages for the chart tests, and the apt
# packages the test cluster uses (cluster.sh installs its own build prerequisites on first use).
# Safe to run repeatedly; it only installs what is missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf '==> %s\n' "$*"; }

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
say "setup complete"
