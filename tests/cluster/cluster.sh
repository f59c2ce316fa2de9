#!/usr/bin/env bash
# A real Kubernetes API server (kube-apiserver + etcd, no nodes) for tests and local runs.
#
#   cluster.sh up DIR [--watch-pid PID] [--remove-dir]
#                                  start etcd + kube-apiserver; state, logs, kubeconfigs in DIR
#   cluster.sh down DIR            stop what `up DIR` started (safe to repeat)
#   cluster.sh restart-apiserver DIR
#                                  stop and start kube-apiserver on the same port, etcd data kept
#   cluster.sh env DIR             print `export KUBECONFIG=DIR/kubeconfig`
#   cluster.sh build               only obtain (build and cache) the kube-apiserver binary
#
# Binaries come from $KUBEBUILDER_ASSETS (kube-apiserver, etcd) when it is set. Otherwise
# kube-apiserver v1.20.2 is built once from Debian's `kubernetes` source package and cached in
# ${XDG_CACHE_HOME:-$HOME/.cache}/gastown-operator/, and etcd comes from Debian's etcd-server
# package (unpacked, so no service is started). Each build step below says why it is needed.
#
# --watch-pid PID starts a detached watcher that runs `down DIR` when PID exits, so a test
# process that dies never leaks a cluster; with --remove-dir the watcher also deletes DIR.
#
# Users (static tokens, RBAC is enforced): admin (system:masters) in DIR/kubeconfig, and in
# DIR/users/<name>.kubeconfig + DIR/users/<name>.token: alice (gastown-claimers), bob
# (developers), mallory (no groups), gastown-operator
# (system:serviceaccount:gastown-system:gastown-operator).

# Functions run indirectly (traps, `__step`, with_apt_lock) and the one-line `main; exit` at the
# end make shellcheck think code is unreachable.
# shellcheck disable=SC2317
set -euo pipefail
shopt -s inherit_errexit

readonly K8S_VERSION="v1.20.2"
SCRIPT_PATH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
readonly SCRIPT_PATH
readonly CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/gastown-operator"
readonly APISERVER_CACHE_DIR="$CACHE_ROOT/kube-apiserver-$K8S_VERSION"
# Bumped whenever the build recipe changes what the binary does: a cached binary built by an
# older recipe is rebuilt. 2: empty strings in custom resources are no longer read as null.
readonly BUILD_RECIPE="2"
readonly GO_BIN_DIR="/usr/lib/go-1.19/bin"
readonly READY_TIMEOUT_SECS="${CLUSTER_READY_TIMEOUT_SECS:-60}"
readonly ETCD_READY_TIMEOUT_SECS=30
readonly BUILD_LOCK_TIMEOUT_SECS=3600
readonly BUILD_STEP_TIMEOUT_SECS=2400
readonly APT_TIMEOUT_SECS=900
readonly STOP_GRACE_SECS=10

# Runtime prerequisites (always) and build prerequisites (only when building kube-apiserver).
readonly RUNTIME_PACKAGES=(openssl curl python3 util-linux procps)
readonly BUILD_PACKAGES=(golang-1.19-go make rsync golang-github-modern-go-reflect2-dev ca-certificates)

# Users written to DIR/users: file name | user name | groups (comma separated).
readonly USERS=(
  "alice|alice|gastown-claimers"
  "bob|bob|developers"
  "mallory|mallory|"
  "gastown-operator|system:serviceaccount:gastown-system:gastown-operator|system:serviceaccounts,system:serviceaccounts:gastown-system,system:authenticated"
)

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

usage() {
  sed -n '2,10p' "$SCRIPT_PATH" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# ---------------------------------------------------------------------------------------------
# Privileges and apt

as_root() {
  if [[ "$(id -u)" == 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
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

# ---------------------------------------------------------------------------------------------
# Building kube-apiserver from Debian's source package

CURRENT_STEP_PID=""
BUILD_WORK_DIR=""

cleanup_build() {
  if [[ -n "$CURRENT_STEP_PID" ]]; then
    kill -TERM -- "-$CURRENT_STEP_PID" 2>/dev/null || kill -TERM "$CURRENT_STEP_PID" 2>/dev/null || true
  fi
  if [[ -n "$BUILD_WORK_DIR" && -d "$BUILD_WORK_DIR" ]]; then
    chmod -R u+w "$BUILD_WORK_DIR" 2>/dev/null || true
    rm -rf "$BUILD_WORK_DIR"
  fi
}

# run_step NAME LOGFILE STEP ARGS...: run a long build step (a step_* function of this script)
# in its own process group with its output
# in LOGFILE, print a heartbeat every 30 s, kill it after BUILD_STEP_TIMEOUT_SECS.
run_step() {
  local name="$1" logfile="$2" started elapsed rc=0
  shift 2
  started=$SECONDS
  log "  $name (log: $logfile)"
  # A new session (own process group) so that a timeout can stop the whole step.
  setsid bash "$SCRIPT_PATH" __step "$@" >"$logfile" 2>&1 </dev/null &
  CURRENT_STEP_PID=$!
  while kill -0 "$CURRENT_STEP_PID" 2>/dev/null; do
    sleep 2
    elapsed=$((SECONDS - started))
    if ((elapsed > BUILD_STEP_TIMEOUT_SECS)); then
      kill -KILL -- "-$CURRENT_STEP_PID" 2>/dev/null || kill -KILL "$CURRENT_STEP_PID" 2>/dev/null || true
      wait "$CURRENT_STEP_PID" 2>/dev/null || true
      CURRENT_STEP_PID=""
      die_with_log "$name timed out after ${elapsed}s" "$logfile"
    fi
    if ((elapsed > 0 && elapsed % 30 < 2)); then
      log "    ... $name still running (${elapsed}s)"
    fi
  done
  wait "$CURRENT_STEP_PID" || rc=$?
  CURRENT_STEP_PID=""
  if ((rc != 0)); then
    die_with_log "$name failed (exit $rc)" "$logfile"
  fi
  log "    done in $((SECONDS - started))s"
}

# A private apt configuration whose sources are the system's own, with Types: deb-src.
write_source_apt_config() {
  local apt_dir="$1" f n=0
  mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] || continue
    sed -E 's/^Types:.*/Types: deb-src/' "$f" >"$apt_dir/sources.list.d/$(basename "$f")"
    n=$((n + 1))
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f "$f" ]] || continue
    if grep -Eq '^[[:space:]]*deb[[:space:]]' "$f"; then
      sed -nE 's/^[[:space:]]*deb[[:space:]]/deb-src /p' "$f" >"$apt_dir/sources.list.d/from-$(basename "$f" .list).list"
      n=$((n + 1))
    fi
  done
  ((n > 0)) || die "no apt sources found in /etc/apt to derive deb-src entries from"
}

# apt-get with the private deb-src configuration (command-line options win over apt.conf.d).
private_apt_get() {
  local apt_dir="$1"
  shift
  local opts=(
    -o "Dir::Etc::SourceList=/dev/null"
    -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
    -o "Dir::State::Lists=$apt_dir/lists"
    -o "Dir::Cache=$apt_dir/cache"
    -o "Dir::Cache::pkgcache="
    -o "Dir::Cache::srcpkgcache="
    -o "Debug::NoLocking=true"
  )
  if [[ "$(id -u)" == 0 ]]; then
    opts+=(-o "APT::Sandbox::User=root")
  fi
  timeout "$APT_TIMEOUT_SECS" apt-get "${opts[@]}" "$@"
}

step_download_source() {
  local work="$1"
  private_apt_get "$work/apt" update
  cd "$work/src"
  private_apt_get "$work/apt" source --download-only kubernetes
  ls -l "$work/src"
}

step_unpack_source() {
  local work="$1" orig tree
  orig="$(find "$work/src" -maxdepth 1 -name 'kubernetes_*.orig.tar.*' | head -n 1)"
  [[ -n "$orig" ]] || { echo "no kubernetes_*.orig.tar.* downloaded"; return 1; }
  echo "source: $orig"
  mkdir -p "$work/unpack" "$work/gopath/src/k8s.io"
  tar -xf "$orig" -C "$work/unpack"
  tree="$(find "$work/unpack" -mindepth 1 -maxdepth 1 -type d | head -n 1)"
  [[ -d "$tree/cmd/kube-apiserver" && -d "$tree/vendor" ]] || {
    echo "unexpected tarball layout in $tree"
    return 1
  }
  mv "$tree" "$work/gopath/src/k8s.io/kubernetes"
}

# pkg/generated/openapi is not in the tarball; the generators run in Go's default module mode.
step_generated_files() {
  local work="$1"
  cd "$work/gopath/src/k8s.io/kubernetes"
  export PATH="$GO_BIN_DIR:$PATH" GOPATH="$work/gopath" GOCACHE="$work/gocache" GOFLAGS="" \
    GOPROXY=off CGO_ENABLED=0
  unset GO111MODULE
  go version
  make generated_files
}

# The vendored modern-go/reflect2 1.0.1 crashes under Go >= 1.18 on the first custom-resource
# create; Debian's 1.0.2 works.
step_replace_reflect2() {
  local work="$1" src=/usr/share/gocode/src/github.com/modern-go/reflect2
  [[ -d "$src" ]] || { echo "$src missing (golang-github-modern-go-reflect2-dev)"; return 1; }
  rsync -aL --delete --exclude '*_test.go' "$src/" \
    "$work/gopath/src/k8s.io/kubernetes/vendor/github.com/modern-go/reflect2/"
  ls "$work/gopath/src/k8s.io/kubernetes/vendor/github.com/modern-go/reflect2/"
}

# The vendored OpenAPI validators test "is this null?" with
# reflect.DeepEqual(reflect.Zero(T), reflect.ValueOf(data)), comparing two reflect.Value
# structs. Built with Go >= 1.19, a run-time empty string shares its pointer with reflect's zero
# value, so every "" in a custom resource is rejected as null ("in body must be of type string:
# "null""). Upstream later reduced the test to `data == nil`, which is what it meant.
step_patch_openapi_validation() {
  local work="$1" file count=0
  local broken='if data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {'
  cd "$work/gopath/src/k8s.io/kubernetes"
  for file in vendor/github.com/go-openapi/validate/type.go \
    vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go; do
    [[ -f "$file" ]] || continue
    if grep -qF "$broken" "$file"; then
      sed -i "s/if data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {/if data == nil {/" "$file"
      grep -qF "$broken" "$file" && { echo "could not patch $file"; return 1; }
      echo "patched $file"
      count=$((count + 1))
    fi
  done
  ((count > 0)) || { echo "no OpenAPI type validator found to patch"; return 1; }
}

# GOPATH mode (module mode fails with "updates to go.mod needed"), static, and stamped with
# the real version so that clients do not see v0.0.0.
step_go_build() {
  local work="$1" v=k8s.io/kubernetes/vendor/k8s.io ldflags="" pkg
  cd "$work/gopath/src/k8s.io/kubernetes"
  export PATH="$GO_BIN_DIR:$PATH" GOPATH="$work/gopath" GOCACHE="$work/gocache" GOFLAGS="" \
    GOPROXY=off GO111MODULE=off CGO_ENABLED=0
  for pkg in "$v/component-base/version" "$v/client-go/pkg/version"; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=20"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  go build -trimpath -ldflags "-s -w$ldflags" -o "$work/kube-apiserver" ./cmd/kube-apiserver
  "$work/kube-apiserver" --version
}

# The cached kube-apiserver exists and was built by the current recipe.
cached_apiserver_current() {
  [[ -x "$APISERVER_CACHE_DIR/kube-apiserver" ]] &&
    [[ "$(cat "$APISERVER_CACHE_DIR/recipe" 2>/dev/null || true)" == "$BUILD_RECIPE" ]]
}

build_apiserver_locked() {
  local target="$APISERVER_CACHE_DIR/kube-apiserver" logs="$CACHE_ROOT/logs" started=$SECONDS
  if cached_apiserver_current; then
    log "kube-apiserver $K8S_VERSION was built meanwhile by another run"
    return 0
  fi
  log "building kube-apiserver $K8S_VERSION from Debian's kubernetes source package."
  log "this happens once per machine and takes about 6-10 minutes on 2 cores;"
  log "the binary is cached at $target"
  ensure_packages "${BUILD_PACKAGES[@]}"
  mkdir -p "$logs"
  rm -f "$logs"/build-*.log
  BUILD_WORK_DIR="$(mktemp -d "$CACHE_ROOT/build.XXXXXX")"
  trap cleanup_build EXIT
  trap 'exit 130' INT TERM
  mkdir -p "$BUILD_WORK_DIR/src"
  write_source_apt_config "$BUILD_WORK_DIR/apt"
  run_step "download source (apt-get source kubernetes)" "$logs/build-1-download.log" \
    step_download_source "$BUILD_WORK_DIR"
  run_step "unpack source" "$logs/build-2-unpack.log" step_unpack_source "$BUILD_WORK_DIR"
  run_step "make generated_files (about 80 s)" "$logs/build-3-generated-files.log" \
    step_generated_files "$BUILD_WORK_DIR"
  run_step "use Debian's reflect2 1.0.2" "$logs/build-4-reflect2.log" \
    step_replace_reflect2 "$BUILD_WORK_DIR"
  run_step "fix the OpenAPI null check for Go >= 1.19" "$logs/build-5-openapi-null.log" \
    step_patch_openapi_validation "$BUILD_WORK_DIR"
  run_step "go build ./cmd/kube-apiserver (about 4-6 minutes)" "$logs/build-6-go-build.log" \
    step_go_build "$BUILD_WORK_DIR"
  mkdir -p "$APISERVER_CACHE_DIR"
  # Same file system (both under CACHE_ROOT): the rename is atomic. The recipe marker comes
  # second, so a reader never takes an old binary for a current one.
  mv -f "$BUILD_WORK_DIR/kube-apiserver" "$target"
  echo "$BUILD_RECIPE" >"$APISERVER_CACHE_DIR/recipe.tmp"
  mv -f "$APISERVER_CACHE_DIR/recipe.tmp" "$APISERVER_CACHE_DIR/recipe"
  cleanup_build
  BUILD_WORK_DIR=""
  trap - EXIT INT TERM
  log "kube-apiserver $K8S_VERSION built in $((SECONDS - started))s: $target"
}

# Prints the path of a kube-apiserver binary, building it first if needed.
ensure_apiserver() {
  local target="$APISERVER_CACHE_DIR/kube-apiserver"
  if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
    [[ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ]] ||
      die "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no executable kube-apiserver"
    echo "$KUBEBUILDER_ASSETS/kube-apiserver"
    return 0
  fi
  if ! cached_apiserver_current; then
    if [[ -x "$target" ]]; then
      log "the cached kube-apiserver was built by an older recipe; rebuilding it"
    fi
    mkdir -p "$CACHE_ROOT"
    (
      if ! flock -n 9; then
        log "another run is building kube-apiserver; waiting (up to ${BUILD_LOCK_TIMEOUT_SECS}s)"
        flock -w "$BUILD_LOCK_TIMEOUT_SECS" 9 || die "timed out waiting for $CACHE_ROOT/build.lock"
      fi
      build_apiserver_locked
    ) 9>"$CACHE_ROOT/kube-apiserver-$K8S_VERSION.lock" >&2
  fi
  echo "$target"
}

ensure_etcd_locked() {
  local version dest tmp deb
  version="$(apt-cache policy etcd-server 2>/dev/null | awk '/Candidate:/ {print $2}')"
  if [[ -z "$version" || "$version" == "(none)" ]]; then
    log "apt-get update (to find etcd-server)"
    apt_get update >"$CACHE_ROOT/logs/apt.log" 2>&1 ||
      die_with_log "apt-get update failed" "$CACHE_ROOT/logs/apt.log"
    version="$(apt-cache policy etcd-server 2>/dev/null | awk '/Candidate:/ {print $2}')"
  fi
  [[ -n "$version" && "$version" != "(none)" ]] || die "apt knows no etcd-server package"
  dest="$CACHE_ROOT/etcd-${version//[^A-Za-z0-9.+~-]/_}"
  [[ -x "$dest/etcd" ]] && return 0
  log "downloading etcd-server $version (apt-get download; unpacked, no service is started)"
  tmp="$(mktemp -d "$CACHE_ROOT/etcd.XXXXXX")"
  if ! (cd "$tmp" && timeout "$APT_TIMEOUT_SECS" apt-get -o APT::Sandbox::User=root download "etcd-server=$version") \
    >"$CACHE_ROOT/logs/etcd-download.log" 2>&1; then
    rm -rf "$tmp"
    die_with_log "apt-get download etcd-server failed" "$CACHE_ROOT/logs/etcd-download.log"
  fi
  deb="$(find "$tmp" -maxdepth 1 -name 'etcd-server_*.deb' | head -n 1)"
  dpkg-deb -x "$deb" "$tmp/root"
  [[ -x "$tmp/root/usr/bin/etcd" ]] || { rm -rf "$tmp"; die "etcd-server package has no usr/bin/etcd"; }
  mkdir -p "$dest"
  mv -f "$tmp/root/usr/bin/etcd" "$dest/etcd"
  rm -rf "$tmp"
}

# Prints the path of an etcd binary.
ensure_etcd() {
  local found
  if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
    [[ -x "$KUBEBUILDER_ASSETS/etcd" ]] || die "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no executable etcd"
    echo "$KUBEBUILDER_ASSETS/etcd"
    return 0
  fi
  if package_installed etcd-server && [[ -x /usr/bin/etcd ]]; then
    echo /usr/bin/etcd
    return 0
  fi
  found="$(find "$CACHE_ROOT" -maxdepth 2 -path "$CACHE_ROOT/etcd-*/etcd" -type f -perm -u+x 2>/dev/null | sort | tail -n 1)"
  if [[ -z "$found" ]]; then
    mkdir -p "$CACHE_ROOT/logs"
    with_apt_lock ensure_etcd_locked >&2
    found="$(find "$CACHE_ROOT" -maxdepth 2 -path "$CACHE_ROOT/etcd-*/etcd" -type f -perm -u+x | sort | tail -n 1)"
  fi
  [[ -n "$found" ]] || die "could not obtain etcd"
  echo "$found"
}

# ---------------------------------------------------------------------------------------------
# Processes

# Prints N distinct free loopback TCP ports (bound together, then released).
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# The executable of a running pid ("" when gone), without the " (deleted)" suffix.
pid_exe() {
  local exe
  exe="$(readlink "/proc/$1/exe" 2>/dev/null)" || return 0
  echo "${exe% (deleted)}"
}

pid_cmdline() {
  tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true
}

# pid_is PID BINARY DIR: the pid runs BINARY with a path under DIR on its command line.
pid_is() {
  local pid="$1" binary="$2" dir="$3"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ "$(pid_exe "$pid")" == "$(readlink -f "$binary" 2>/dev/null || echo "$binary")" ]] || return 1
  [[ "$(pid_cmdline "$pid")" == *"$dir/"* ]]
}

# spawn NAME BINARY ARGS...: start a detached daemon (own session, no inherited fds) with its
# output in DIR/logs/NAME.log and its pid in DIR/pids/NAME.pid.
spawn() {
  local name="$1" pidfile="$DIR/pids/$1.pid" i
  shift
  rm -f "$pidfile"
  # The inner shell writes its own pid, then execs the daemon: the pid is the daemon's.
  # shellcheck disable=SC2016 # expanded by the inner shell
  setsid -f bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$pidfile" "$@" \
    </dev/null >>"$DIR/logs/$name.log" 2>&1
  for ((i = 0; i < 100; i++)); do
    [[ -s "$pidfile" ]] && return 0
    sleep 0.05
  done
  die_with_log "$name did not start" "$DIR/logs/$name.log"
}

# stop_process NAME BINARY: SIGTERM, then SIGKILL after STOP_GRACE_SECS, only if the recorded
# pid still runs BINARY for this DIR.
stop_process() {
  local name="$1" binary="$2" pidfile="$DIR/pids/$1.pid" pid i
  [[ -f "$pidfile" ]] || return 0
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  if [[ -n "$pid" && "$pid" != "$$" ]] && pid_is "$pid" "$binary" "$DIR"; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_GRACE_SECS * 10; i++)); do
      pid_is "$pid" "$binary" "$DIR" || break
      sleep 0.1
    done
    if pid_is "$pid" "$binary" "$DIR"; then
      log "$name (pid $pid) ignored SIGTERM for ${STOP_GRACE_SECS}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do
        pid_is "$pid" "$binary" "$DIR" || break
        sleep 0.1
      done
      pid_is "$pid" "$binary" "$DIR" && die "could not stop $name (pid $pid)"
    fi
  fi
  rm -f "$pidfile"
}

wait_for_etcd() {
  local deadline=$((SECONDS + ETCD_READY_TIMEOUT_SECS)) pid
  pid="$(cat "$DIR/pids/etcd.pid")"
  until curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_CLIENT_PORT/health" 2>/dev/null | grep -q '"health":"true"'; do
    pid_is "$pid" "$ETCD_BIN" "$DIR" || die_with_log "etcd exited during start" "$DIR/logs/etcd.log"
    ((SECONDS < deadline)) || die_with_log "etcd not healthy after ${ETCD_READY_TIMEOUT_SECS}s" "$DIR/logs/etcd.log"
    sleep 0.2
  done
}

wait_for_apiserver() {
  local deadline=$((SECONDS + READY_TIMEOUT_SECS)) pid token
  pid="$(cat "$DIR/pids/kube-apiserver.pid")"
  token="$(cat "$DIR/admin.token")"
  until curl -fsS --max-time 5 --cacert "$DIR/certs/ca.crt" -H "Authorization: Bearer $token" \
    "https://127.0.0.1:$APISERVER_PORT/readyz" 2>/dev/null | grep -qx ok; do
    pid_is "$pid" "$APISERVER_BIN" "$DIR" ||
      die_with_log "kube-apiserver exited during start" "$DIR/logs/kube-apiserver.log"
    ((SECONDS < deadline)) ||
      die_with_log "kube-apiserver not ready after ${READY_TIMEOUT_SECS}s (/readyz)" "$DIR/logs/kube-apiserver.log"
    sleep 0.5
  done
}

start_etcd() {
  spawn etcd "$ETCD_BIN" \
    --name default \
    --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "default=http://127.0.0.1:$ETCD_PEER_PORT" \
    --listen-metrics-urls "" \
    --logger zap --log-outputs stderr
  wait_for_etcd
}

start_apiserver() {
  spawn kube-apiserver "$APISERVER_BIN" \
    --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --bind-address 127.0.0.1 \
    --advertise-address 127.0.0.1 \
    --secure-port "$APISERVER_PORT" \
    --insecure-port 0 \
    --cert-dir "$DIR/certs" \
    --tls-cert-file "$DIR/certs/serving.crt" \
    --tls-private-key-file "$DIR/certs/serving.key" \
    --token-auth-file "$DIR/tokens.csv" \
    --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --api-audiences https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$DIR/certs/sa.pub" \
    --service-account-signing-key-file "$DIR/certs/sa.key" \
    --service-cluster-ip-range 10.0.0.0/24 \
    --disable-admission-plugins ServiceAccount \
    --enable-priority-and-fairness=false \
    --endpoint-reconciler-type none \
    --allow-privileged=true \
    --profiling=false
  wait_for_apiserver
}

# ---------------------------------------------------------------------------------------------
# Certificates, tokens, kubeconfigs

generate_certs() {
  local c="$DIR/certs" logfile="$DIR/logs/openssl.log"
  mkdir -p "$c"
  {
    openssl req -x509 -new -nodes -newkey rsa:2048 -sha256 -days 3650 \
      -keyout "$c/ca.key" -out "$c/ca.crt" -subj "/CN=gastown-test-cluster-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" &&
      openssl req -new -nodes -newkey rsa:2048 -sha256 \
        -keyout "$c/serving.key" -out "$c/serving.csr" -subj "/CN=kube-apiserver" &&
      printf '%s\n' \
        "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth" \
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc" \
        >"$c/serving.ext" &&
      openssl x509 -req -sha256 -days 3650 -in "$c/serving.csr" -CA "$c/ca.crt" -CAkey "$c/ca.key" \
        -CAcreateserial -extfile "$c/serving.ext" -out "$c/serving.crt" &&
      openssl genrsa -out "$c/sa.key" 2048 &&
      openssl rsa -in "$c/sa.key" -pubout -out "$c/sa.pub"
  } >"$logfile" 2>&1 || die_with_log "generating certificates with openssl failed" "$logfile"
  chmod 600 "$c"/*.key
}

new_token() { openssl rand -hex 24; }

# write_kubeconfig FILE TOKEN USERNAME
write_kubeconfig() {
  local file="$1" token="$2" user="$3" ca
  ca="$(base64 -w0 <"$DIR/certs/ca.crt")"
  umask 077
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: gastown-test
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $ca
users:
- name: $user
  user:
    token: $token
contexts:
- name: gastown-test
  context:
    cluster: gastown-test
    user: $user
    namespace: default
current-context: gastown-test
EOF
}

write_tokens() {
  local entry file user groups token admin_token
  mkdir -p "$DIR/users"
  admin_token="$(new_token)"
  umask 077
  echo "$admin_token" >"$DIR/admin.token"
  printf '%s,admin,admin,"system:masters"\n' "$admin_token" >"$DIR/tokens.csv"
  for entry in "${USERS[@]}"; do
    IFS='|' read -r file user groups <<<"$entry"
    token="$(new_token)"
    echo "$token" >"$DIR/users/$file.token"
    if [[ -n "$groups" ]]; then
      printf '%s,%s,%s,"%s"\n' "$token" "$user" "$user" "$groups" >>"$DIR/tokens.csv"
    else
      printf '%s,%s,%s\n' "$token" "$user" "$user" >>"$DIR/tokens.csv"
    fi
  done
}

write_kubeconfigs() {
  local entry file user groups
  write_kubeconfig "$DIR/kubeconfig" "$(cat "$DIR/admin.token")" admin
  for entry in "${USERS[@]}"; do
    IFS='|' read -r file user groups <<<"$entry"
    write_kubeconfig "$DIR/users/$file.kubeconfig" "$(cat "$DIR/users/$file.token")" "$user"
  done
}

write_cluster_env() {
  cat >"$DIR/cluster.env.tmp" <<EOF
# Written by cluster.sh up; read (not sourced) by cluster.sh down/restart-apiserver.
CLUSTER_ID=$CLUSTER_ID
K8S_VERSION=$K8S_VERSION
APISERVER_URL=https://127.0.0.1:$APISERVER_PORT
APISERVER_PORT=$APISERVER_PORT
ETCD_CLIENT_PORT=$ETCD_CLIENT_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
APISERVER_BIN=$APISERVER_BIN
ETCD_BIN=$ETCD_BIN
APISERVER_PID=$(cat "$DIR/pids/kube-apiserver.pid" 2>/dev/null || true)
ETCD_PID=$(cat "$DIR/pids/etcd.pid" 2>/dev/null || true)
KUBECONFIG=$DIR/kubeconfig
EOF
  mv -f "$DIR/cluster.env.tmp" "$DIR/cluster.env"
}

load_cluster_env() {
  local key value
  CLUSTER_ID="" APISERVER_PORT="" ETCD_CLIENT_PORT="" ETCD_PEER_PORT="" APISERVER_BIN="" ETCD_BIN=""
  [[ -f "$DIR/cluster.env" ]] || return 1
  # Parsed, not sourced: only the keys we know.
  while IFS='=' read -r key value; do
    case "$key" in
      CLUSTER_ID) CLUSTER_ID="$value" ;;
      APISERVER_PORT) APISERVER_PORT="$value" ;;
      ETCD_CLIENT_PORT) ETCD_CLIENT_PORT="$value" ;;
      ETCD_PEER_PORT) ETCD_PEER_PORT="$value" ;;
      APISERVER_BIN) APISERVER_BIN="$value" ;;
      ETCD_BIN) ETCD_BIN="$value" ;;
    esac
  done <"$DIR/cluster.env"
}

# ---------------------------------------------------------------------------------------------
# Commands

# set_dir PATH [create]: DIR becomes the absolute, symlink-free PATH.
set_dir() {
  [[ -n "${1:-}" ]] || usage
  if [[ "${2:-}" == create ]]; then
    mkdir -p "$1"
  fi
  DIR="$(realpath -m "$1")"
  [[ "$DIR" != "/" ]] || die "refusing to use / as the cluster directory"
}

cluster_running() {
  load_cluster_env || return 1
  local pid
  pid="$(cat "$DIR/pids/kube-apiserver.pid" 2>/dev/null || true)"
  [[ -n "$pid" ]] && pid_is "$pid" "$APISERVER_BIN" "$DIR" && return 0
  pid="$(cat "$DIR/pids/etcd.pid" 2>/dev/null || true)"
  [[ -n "$pid" ]] && pid_is "$pid" "$ETCD_BIN" "$DIR"
}

cmd_up() {
  local watch_pid="" remove_dir=0 attempt started=$SECONDS
  set_dir "${1:-}" create
  shift
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --watch-pid)
        [[ "${2:-}" =~ ^[0-9]+$ ]] || die "--watch-pid needs a pid"
        watch_pid="$2"
        shift 2
        ;;
      --remove-dir)
        remove_dir=1
        shift
        ;;
      *) die "unknown option for up: $1" ;;
    esac
  done
  if cluster_running; then
    die "a cluster from $DIR is already running; run: $SCRIPT_PATH down $DIR"
  fi
  ensure_runtime_tools
  APISERVER_BIN="$(ensure_apiserver)"
  ETCD_BIN="$(ensure_etcd)"
  log "using $APISERVER_BIN and $ETCD_BIN"

  # A fresh cluster each time: previous state (if any) is discarded.
  rm -rf "$DIR/etcd" "$DIR/certs" "$DIR/users" "$DIR/pids" "$DIR/logs" \
    "$DIR/kubeconfig" "$DIR/tokens.csv" "$DIR/admin.token" "$DIR/cluster.env"
  mkdir -p "$DIR/pids" "$DIR/logs"
  CLUSTER_ID="$(date +%s)-$$-$RANDOM"
  UP_COMPLETE=0
  trap cleanup_failed_up EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  generate_certs
  write_tokens

  # Ports are free when picked but may be taken before the daemon binds: retry with new ones.
  for attempt in 1 2 3; do
    read -r ETCD_CLIENT_PORT ETCD_PEER_PORT APISERVER_PORT < <(free_ports 3) || true
    [[ -n "${APISERVER_PORT:-}" ]] || die "could not pick free ports (python3 failed)"
    write_cluster_env
    if (start_etcd) 2>>"$DIR/logs/up.log"; then
      break
    fi
    stop_process etcd "$ETCD_BIN"
    if ! grep -q "address already in use" "$DIR/logs/etcd.log" 2>/dev/null || ((attempt == 3)); then
      die_with_log "etcd failed to start: $(last_start_error)" "$DIR/logs/etcd.log"
    fi
    log "etcd port taken; retrying with other ports"
    rm -rf "$DIR/etcd"
  done
  log "etcd up on 127.0.0.1:$ETCD_CLIENT_PORT"
  for attempt in 1 2 3; do
    write_cluster_env
    if (start_apiserver) 2>>"$DIR/logs/up.log"; then
      break
    fi
    stop_process kube-apiserver "$APISERVER_BIN"
    if grep -q "address already in use" "$DIR/logs/kube-apiserver.log" 2>/dev/null && ((attempt < 3)); then
      log "kube-apiserver port taken; retrying with another port"
      read -r APISERVER_PORT < <(free_ports 1) || true
      continue
    fi
    die_with_log "kube-apiserver failed to start: $(last_start_error)" "$DIR/logs/kube-apiserver.log"
  done
  write_cluster_env
  write_kubeconfigs
  if [[ -n "$watch_pid" ]]; then
    start_watcher "$watch_pid" "$remove_dir"
  fi
  UP_COMPLETE=1
  trap - EXIT INT TERM
  log "kube-apiserver $K8S_VERSION ready at https://127.0.0.1:$APISERVER_PORT in $((SECONDS - started))s"
  log "admin kubeconfig: $DIR/kubeconfig; users: $DIR/users/"
}

# Why the last start attempt failed (its messages go to DIR/logs/up.log, not the terminal).
last_start_error() {
  grep 'error: ' "$DIR/logs/up.log" 2>/dev/null | tail -n 1 | sed 's/^cluster.sh: error: //' || true
}

# A failed `up` leaves nothing running.
cleanup_failed_up() {
  local rc=$?
  if [[ "${UP_COMPLETE:-0}" != 1 ]]; then
    stop_process kube-apiserver "$APISERVER_BIN" || true
    stop_process etcd "$ETCD_BIN" || true
  fi
  exit "$rc"
}

cmd_down() {
  local watcher_pid
  set_dir "${1:-}"
  if [[ ! -d "$DIR" ]] || ! load_cluster_env; then
    log "nothing to stop in $DIR"
    return 0
  fi
  stop_process kube-apiserver "$APISERVER_BIN"
  stop_process etcd "$ETCD_BIN"
  # The watcher is a bash running this script: stop it unless we are it.
  watcher_pid="$(cat "$DIR/pids/watcher.pid" 2>/dev/null || true)"
  if [[ -n "$watcher_pid" && "$watcher_pid" != "$$" ]] &&
    [[ "$(pid_cmdline "$watcher_pid")" == *"__watch $DIR "* ]]; then
    kill -TERM "$watcher_pid" 2>/dev/null || true
  fi
  rm -f "$DIR/pids/watcher.pid"
  log "cluster in $DIR is down"
}

cmd_restart_apiserver() {
  set_dir "${1:-}"
  load_cluster_env || die "no cluster in $DIR (cluster.env missing)"
  [[ -n "$APISERVER_PORT" ]] || die "cluster.env in $DIR has no APISERVER_PORT"
  stop_process kube-apiserver "$APISERVER_BIN"
  local i
  # The port lingers briefly after exit; the apiserver itself retries binding for a while too.
  for ((i = 0; i < 50; i++)); do
    python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' \
      "$APISERVER_PORT" 2>/dev/null && break
    sleep 0.2
  done
  start_apiserver
  write_cluster_env
  log "kube-apiserver restarted on 127.0.0.1:$APISERVER_PORT"
}

start_watcher() {
  local watch_pid="$1" remove_dir="$2"
  # shellcheck disable=SC2016 # expanded by the inner shell
  setsid -f bash -c 'echo $$ >"$0" && exec "$@"' "$DIR/pids/watcher.pid" \
    bash "$SCRIPT_PATH" __watch "$DIR" "$watch_pid" "$CLUSTER_ID" "$remove_dir" \
    </dev/null >>"$DIR/logs/watcher.log" 2>&1
  log "watcher: cluster goes down when pid $watch_pid exits"
}

proc_start_time() {
  awk '{print $22}' "/proc/$1/stat" 2>/dev/null || true
}

# __watch DIR PID CLUSTER_ID REMOVE_DIR: runs `down DIR` once PID is gone, unless the cluster
# was already taken down or replaced by a newer `up` in the same DIR.
cmd_watch() {
  local dir="$1" watch_pid="$2" cluster_id="$3" remove_dir="$4" start_time
  DIR="$dir"
  start_time="$(proc_start_time "$watch_pid")"
  while [[ -n "$start_time" && "$(proc_start_time "$watch_pid")" == "$start_time" ]]; do
    load_cluster_env || exit 0
    [[ "$CLUSTER_ID" == "$cluster_id" ]] || exit 0
    sleep 1
  done
  load_cluster_env || exit 0
  [[ "$CLUSTER_ID" == "$cluster_id" ]] || exit 0
  log "pid $watch_pid exited; taking the cluster in $DIR down"
  cmd_down "$DIR"
  if [[ "$remove_dir" == 1 && -f "$DIR/cluster.env" && "$DIR" != "/" ]]; then
    rm -rf "$DIR"
  fi
}

main() {
  local command="${1:-}"
  [[ -n "$command" ]] || usage
  shift
  case "$command" in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    restart-apiserver) cmd_restart_apiserver "$@" ;;
    env)
      set_dir "${1:-}"
      echo "export KUBECONFIG=$DIR/kubeconfig"
      ;;
    build)
      ensure_runtime_tools
      ensure_apiserver >/dev/null
      ensure_etcd >/dev/null
      log "kube-apiserver and etcd are available"
      ;;
    __watch) cmd_watch "$@" ;;
    __step)
      case "${1:-}" in
        step_download_source | step_unpack_source | step_generated_files | step_replace_reflect2 | \
          step_patch_openapi_validation | step_go_build) "$@" ;;
        *) die "unknown build step: ${1:-}" ;;
      esac
      ;;
    -h | --help | help) usage ;;
    *) usage ;;
  esac
}

# One line: bash reads scripts as it runs them, so a long-running instance (the watcher) must not
# read past this point if the file is edited meanwhile.
main "$@"; exit "$?"
