# Sourced by tests/cluster/cluster.sh: the node's docker daemon and its two local images.
# shellcheck shell=bash
# shellcheck disable=SC2034 # state.sh records these for `down`

# The pod sandbox image; bump the tag when ensure_pause_image builds something else.
readonly PAUSE_IMAGE="gastown-test/pause:1"
readonly TEST_IMAGE_REPO="gastown-test/busybox"
readonly DOCKER_CLI="/usr/bin/docker"
readonly DOCKER_SCRIPT="$REPO_ROOT/scripts/docker.sh"

docker_cli() { timeout 120 "$DOCKER_CLI" "$@"; }

docker_running() { timeout 10 "$DOCKER_CLI" info >/dev/null 2>&1; }

# Uses the running docker daemon, or starts Debian's dockerd through scripts/docker.sh (the
# one place that starts and stops a dockerd of ours; state and log in DIR/run). DOCKERD_STARTED
# records which, so that `down` stops only its own.
ensure_dockerd() {
  if docker_running; then
    log "using the docker daemon that is already running"
    return 0
  fi
  mkdir -p "$DIR/run"
  # Recorded before the start: a `down` after a failed start still stops what it left.
  DOCKERD_STARTED=1
  write_cluster_env
  bash "$DOCKER_SCRIPT" ensure "$DIR/run" || die "could not start dockerd (log: $DIR/run/dockerd.log)"
}

# NODE_IP and NODE_CIDR from the docker0 bridge: pods live there (docker's own networking, no
# CNI plugin), the node's InternalIP is the bridge's address.
detect_node_network() {
  local cidr
  cidr="$(ip -4 -o addr show dev docker0 2>/dev/null | awk '{print $4; exit}')"
  [[ -n "$cidr" ]] || die "the docker daemon has no docker0 bridge with an IPv4 address (ip addr show docker0)"
  NODE_IP="${cidr%/*}"
  NODE_CIDR="$(python3 -c 'import ipaddress, sys; print(ipaddress.ip_interface(sys.argv[1]).network)' "$cidr")"
  APISERVER_HOST="$NODE_IP"
}

# docker_import_dir ROOTFS TAG CHANGE...: a FROM-scratch image of ROOTFS (owned by root).
docker_import_dir() {
  local rootfs="$1" tag="$2" change args=()
  shift 2
  for change in "$@"; do
    args+=(--change "$change")
  done
  tar -C "$rootfs" --owner=0 --group=0 --numeric-owner -cf - . |
    docker_cli import "${args[@]}" --message "built by cluster.sh" - "$tag" >/dev/null
}

# The pod sandbox image (no registry to pull k8s.gcr.io/pause from): a static pause that sleeps
# until SIGINT/SIGTERM and reaps children, in a FROM-scratch image.
ensure_pause_image() {
  local tmp logfile="$DIR/logs/pause-image.log"
  docker_cli image inspect "$PAUSE_IMAGE" >/dev/null 2>&1 && return 0
  log "building the pod sandbox image $PAUSE_IMAGE (static pause, FROM scratch)"
  tmp="$(mktemp -d "$DIR/pause.XXXXXX")"
  mkdir -p "$tmp/rootfs"
  cat >"$tmp/pause.c" <<'CSRC'
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void reap(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }
static void quit(int sig) { (void)sig; _exit(0); }
int main(void) { signal(SIGINT, quit); signal(SIGTERM, quit); signal(SIGCHLD, reap); for (;;) pause(); }
CSRC
  if ! { gcc -static -Os -s -o "$tmp/rootfs/pause" "$tmp/pause.c" &&
    docker_import_dir "$tmp/rootfs" "$PAUSE_IMAGE" 'ENTRYPOINT ["/pause"]'; } >"$logfile" 2>&1; then
    rm -rf "$tmp"
    die_with_log "building $PAUSE_IMAGE failed" "$logfile"
  fi
  rm -rf "$tmp"
}

# NODE_TEST_IMAGE: Debian's busybox-static with one link per applet in /bin, FROM scratch.
ensure_test_image() {
  local version tmp applet logfile="$DIR/logs/test-image.log"
  version="$(dpkg-query -W -f='${Version}' busybox-static)"
  NODE_TEST_IMAGE="$TEST_IMAGE_REPO:$(printf '%s' "$version" | tr -c 'A-Za-z0-9_.-' '_')"
  docker_cli image inspect "$NODE_TEST_IMAGE" >/dev/null 2>&1 && return 0
  [[ -x /bin/busybox ]] || die "busybox-static is installed but /bin/busybox is missing"
  log "building the test image $NODE_TEST_IMAGE (busybox-static, FROM scratch)"
  tmp="$(mktemp -d "$DIR/busybox.XXXXXX")"
  mkdir -p "$tmp/rootfs/bin" "$tmp/rootfs/tmp"
  chmod 1777 "$tmp/rootfs/tmp"
  cp /bin/busybox "$tmp/rootfs/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [[ "$applet" == busybox || "$applet" == */* ]] || ln -sf busybox "$tmp/rootfs/bin/$applet"
  done
  if ! docker_import_dir "$tmp/rootfs" "$NODE_TEST_IMAGE" 'ENV PATH=/bin' 'CMD ["/bin/sh"]' >"$logfile" 2>&1; then
    rm -rf "$tmp"
    die_with_log "building $NODE_TEST_IMAGE failed" "$logfile"
  fi
  rm -rf "$tmp"
}

# claim_node_slot: this DIR becomes the machine's one node cluster, unless another one runs
