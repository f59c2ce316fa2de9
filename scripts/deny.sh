#!/usr/bin/env bash
# cargo-deny for `make lint`: licenses, bans and sources of the dependency tree (deny.toml).
# Works offline. Installs cargo-deny from crates.io when it is missing.
#
# The RustSec advisory check needs the advisory database from GitHub, so it is not run here;
# where that is reachable (CI with network, a developer machine) run:
#     cargo deny check advisories
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if ! cargo deny --version >/dev/null 2>&1; then
  echo "==> cargo-deny not found: installing it (cargo install cargo-deny --locked)"
  cargo install cargo-deny --locked
fi

echo "==> cargo deny check licenses bans sources"
cargo deny --log-level "${DENY_LOG_LEVEL:-warn}" check --hide-inclusion-graph licenses bans sources

cat <<'MSG'
==> cargo-deny: licenses, bans and sources OK.
    Security advisories are not checked here (the RustSec database must be downloaded); run
        cargo deny check advisories
    where github.com is reachable.
MSG
