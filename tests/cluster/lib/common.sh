# Sourced by tests/cluster/cluster.sh: settings every part uses, messages, root and apt.
# shellcheck shell=bash
# shellcheck disable=SC2034 # settings used by the other files of cluster.sh

readonly K8S_VERSION="v1.20.2"
readonly CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/gastown-operator"
REPO_ROOT="$(cd "$(dirname "$SCRIPT_PATH")/../.." && pwd)"
readonly REPO_ROOT
readonly APT_TIMEOUT_SECS=900
# What every `up` needs (the build and the node have their own lists).
readonly RUNTIME_PACKAGES=(openssl curl python3 util-linux procps)

# shellcheck source=scripts/lib/as-root.sh
source "$REPO_ROOT/scripts/lib/as-root.sh"

log() { printf 'cluster.sh: %s\n' "$*" >&2; }

die() {
  log "error: $*"
  exit 1
}

# die_with_log MESSAGE LOGFILE: fail, showing the end of the log that explains why.
die_with_log() {
  local message="$1" logfile="$2"
  log "error: $message"
  if [[ -s "$logfile" ]]; then
    log "last lines of $logfile:"
    tail -n 40 "$logfile" | sed 's/^/    /' >&2
  fi
  exit 1
}

package_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

# Serialises our own apt use across concurrent `up` calls; dpkg's lock is waited for too.
with_apt_lock() {
  mkdir -p "$CACHE_ROOT"
  (
    flock -w "$APT_TIMEOUT_SECS" 9 || die "timed out waiting for $CACHE_ROOT/apt.lock"
    "$@"
  ) 9>"$CACHE_ROOT/apt.lock"
}

apt_get() {
  as_root env DEBIAN_FRONTEND=noninteractive timeout "$APT_TIMEOUT_SECS" \
    apt-get -o DPkg::Lock::Timeout=300 "$@"
}

install_packages_locked() {
  local missing=() pkg logfile="$CACHE_ROOT/logs/apt.log"
  for pkg in "$@"; do
    package_installed "$pkg" || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  mkdir -p "$CACHE_ROOT/logs"
  log "installing with apt: ${missing[*]}"
  if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
    log "apt-get update (package lists are missing or stale)"
    apt_get update >"$logfile" 2>&1 || die_with_log "apt-get update failed" "$logfile"
  fi
  if ! apt_get install -y --no-install-recommends "${missing[@]}" >>"$logfile" 2>&1; then
    # Stale package lists point at files the mirror no longer has: refresh once and retry.
    log "apt-get install failed; retrying after apt-get update"
    apt_get update >>"$logfile" 2>&1 || die_with_log "apt-get update failed" "$logfile"
    apt_get install -y --no-install-recommends "${missing[@]}" >>"$logfile" 2>&1 ||
      die_with_log "apt-get install ${missing[*]} failed" "$logfile"
  fi
}

ensure_packages() {
  local pkg any_missing=0
  for pkg in "$@"; do
    package_installed "$pkg" || any_missing=1
  done
  [[ $any_missing -eq 0 ]] || with_apt_lock install_packages_locked "$@"
}

ensure_runtime_tools() {
  local tool any_missing=0
  for tool in openssl curl python3 flock setsid timeout; do
    command -v "$tool" >/dev/null 2>&1 || any_missing=1
  done
  [[ $any_missing -eq 0 ]] || ensure_packages "${RUNTIME_PACKAGES[@]}"
}
