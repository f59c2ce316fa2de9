#!/usr/bin/env bash
# The Docker engine the image build and the node tests use: Debian's docker.io (dockerd 20.10).
#
#   scripts/docker.sh ensure STATE_DIR   install docker.io when dockerd is missing; start dockerd
#                                        when no daemon answers, and record that in STATE_DIR
#   scripts/docker.sh stop STATE_DIR     stop the dockerd that `ensure STATE_DIR` started (and
#                                        nothing else); safe to repeat
#   scripts/docker.sh status             exit 0 when a Docker daemon answers
#
# Also sourced (`source scripts/docker.sh`) for the functions docker_ensure, docker_stop and
# docker_running. A daemon that was already running (systemd, a developer's own) is used and
# never stopped. The daemon runs as root with its defaults (overlay2, /var/lib/docker), so
# images it built or loaded survive a stop/start.
set -euo pipefail

DOCKER_APT_TIMEOUT_SECS="${DOCKER_APT_TIMEOUT_SECS:-900}"
DOCKER_START_TIMEOUT_SECS="${DOCKER_START_TIMEOUT_SECS:-60}"

docker_log() { printf 'docker.sh: %s\n' "$*" >&2; }

# shellcheck source=scripts/lib/as-root.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/as-root.sh"

# A daemon answers on the default socket (or $DOCKER_HOST).
docker_running() {
  command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1
}

docker_install() {
  if command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1; then
    return 0
  fi
  local lock_dir="${XDG_CACHE_HOME:-$HOME/.cache}/gastown-operator"
  mkdir -p "$lock_dir"
  docker_log "installing Debian's docker.io (dockerd, docker CLI)"
  (
    # The same lock file as tests/cluster/cluster.sh, so concurrent installs do not collide.
    flock -w "$DOCKER_APT_TIMEOUT_SECS" 9 || { docker_log "error: timed out waiting for $lock_dir/apt.lock"; exit 1; }
    as_root env DEBIAN_FRONTEND=noninteractive timeout "$DOCKER_APT_TIMEOUT_SECS" \
      apt-get -o DPkg::Lock::Timeout=300 update -qq
    as_root env DEBIAN_FRONTEND=noninteractive timeout "$DOCKER_APT_TIMEOUT_SECS" \
      apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends docker.io iptables
  ) 9>"$lock_dir/apt.lock"
}

# docker_ensure STATE_DIR: a daemon answers afterwards. When this call started it, its pid is
# in STATE_DIR/dockerd.pid (and its log in STATE_DIR/dockerd.log).
docker_ensure() {
  local state_dir="$1"
  docker_install
  if docker_running; then
    return 0
  fi
  mkdir -p "$state_dir"
  state_dir="$(cd "$state_dir" && pwd)"
  docker_log "no Docker daemon answers: starting dockerd (log: $state_dir/dockerd.log)"
  # setsid: the daemon outlives this script (the caller stops it with `stop STATE_DIR`).
  # dockerd writes its own pid to STATE_DIR/dockerd.pid, which is what `stop` reads.
  rm -f "$state_dir/dockerd.pid"
  as_root setsid dockerd --pidfile "$state_dir/dockerd.pid" \
    >"$state_dir/dockerd.log" 2>&1 </dev/null &
  local launcher=$!
  local deadline=$((SECONDS + DOCKER_START_TIMEOUT_SECS))
  until [[ -s "$state_dir/dockerd.pid" ]] && docker_running; do
    if ! kill -0 "$launcher" 2>/dev/null; then
      docker_log "error: dockerd exited; last lines of $state_dir/dockerd.log:"
      tail -n 30 "$state_dir/dockerd.log" | sed 's/^/    /' >&2
      rm -f "$state_dir/dockerd.pid"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      docker_log "error: dockerd did not answer within ${DOCKER_START_TIMEOUT_SECS}s; see $state_dir/dockerd.log"
      docker_stop "$state_dir"
      return 1
    fi
    sleep 0.5
  done
}

# docker_stop STATE_DIR: stops the dockerd recorded there, if it is still that process.
docker_stop() {
  local state_dir="$1" pid
  [[ -f "$state_dir/dockerd.pid" ]] || return 0
  pid="$(cat "$state_dir/dockerd.pid")"
  if [[ "$pid" =~ ^[0-9]+$ ]] && [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == */dockerd ]]; then
    docker_log "stopping the dockerd started here (pid $pid)"
    as_root kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      docker_log "dockerd (pid $pid) did not stop within 30 s: killing it"
      as_root kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$state_dir/dockerd.pid"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  case "${1:-}" in
    ensure) [[ $# -eq 2 ]] || { echo "usage: $0 ensure STATE_DIR" >&2; exit 2; }; docker_ensure "$2" ;;
    stop) [[ $# -eq 2 ]] || { echo "usage: $0 stop STATE_DIR" >&2; exit 2; }; docker_stop "$2" ;;
    status) docker_running ;;
    *) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
fi
