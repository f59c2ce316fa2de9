# shellcheck shell=bash
# Sourced by the scripts that install packages or start daemons (tests/cluster/cluster.sh,
# scripts/docker.sh and through it scripts/image.sh), so that they ask for root the same way.

# as_root CMD...: runs CMD as root, through `sudo -n` (never a prompt) when not root.
as_root() {
  if [[ "$(id -u)" == 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@"
  else
    printf '%s: error: need root (or sudo) to run: %s\n' "$(basename "$0")" "$*" >&2
    return 1
  fi
}
