#!/usr/bin/env bash
# A real Kubernetes API server (kube-apiserver + etcd, no nodes unless --node) for tests and
# local runs.
#
#   cluster.sh up DIR [--node] [--watch-pid PID] [--remove-dir]
#                                  start etcd + kube-apiserver; state, logs, kubeconfigs in DIR
#                                  (--node: also a node where pods run; needs root)
#   cluster.sh down DIR            stop what `up DIR` started (safe to repeat)
#   cluster.sh restart-apiserver DIR
#                                  stop and start kube-apiserver on the same port, etcd data kept
#   cluster.sh env DIR             print `export KUBECONFIG=DIR/kubeconfig`
#   cluster.sh build [--node]      only obtain (build and cache) kube-apiserver [and the node's]
#
# Binaries come from $KUBEBUILDER_ASSETS (kube-apiserver, etcd) when it is set. Otherwise
# kube-apiserver v1.20.2 is built once from Debian's `kubernetes` source package and cached in
# ${XDG_CACHE_HOME:-$HOME/.cache}/gastown-operator/, and etcd comes from Debian's etcd-server
# package (unpacked, so no service is started). Each build step below says why it is needed.
#
# --node adds kube-controller-manager, kube-scheduler, a kubelet (dockershim, Debian's docker.io
# as the runtime, started as root when no docker daemon runs and stopped by `down` only then)
# and kube-proxy (iptables), built from the same source tree and Go build cache as
# kube-apiserver (the first `--node` on a machine builds them: 2-7 minutes
# once kube-apiserver is built, whose compiled packages they share). The node is
# named gastown-node; its IP is the docker0 bridge's, where the API server listens (not on
# 0.0.0.0) and which the serving certificate names, with 10.0.0.1 (the `kubernetes` Service).
# Images cannot be pulled here: the pod sandbox is a static `pause` in a FROM-scratch image
# (gastown-test/pause), and DIR/cluster.env names NODE_TEST_IMAGE, a FROM-scratch image of
# Debian's busybox-static for tests (use `imagePullPolicy: Never`). Pods get no DNS server (no
# query leaves the machine); they reach the API server by $KUBERNETES_SERVICE_HOST. One node
# cluster runs per machine (kubelet and kube-proxy own docker's k8s_* containers, the KUBE-*
# iptables chains and fixed ports). `down` stops the node's processes, removes its k8s_*
# containers, unmounts the kubelet's mounts under DIR/kubelet, deletes the KUBE-* chains and
# restores the kernel settings that kubelet and kube-proxy change.
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
# The prepared source tree (downloaded, generated, patched) and the Go build cache, kept so that
# the node binaries (`up --node`) build from the same preparation and reuse compiled packages.
readonly K8S_BUILD_DIR="$CACHE_ROOT/k8s-build-$K8S_VERSION"
# Bumped whenever the preparation changes; a tree prepared by an older recipe is prepared anew.
readonly PREPARE_RECIPE="1"
readonly NODE_CACHE_DIR="$CACHE_ROOT/kube-node-$K8S_VERSION"
readonly NODE_BINARIES=(kube-controller-manager kube-scheduler kube-proxy kubelet)
# Bumped whenever the node build recipe changes what the binaries do.
# 1: pods' OOM score adjustments are >= 0 (see step_patch_oom_score).
readonly NODE_BUILD_RECIPE="1"
# Serialises every build from the shared tree (the name predates the node binaries).
readonly BUILD_LOCK="$CACHE_ROOT/kube-apiserver-$K8S_VERSION.lock"
# Bumped whenever the build recipe changes what the binary does: a cached binary built by an
# older recipe is rebuilt. 2: empty strings in custom resources are no longer read as null.
readonly BUILD_RECIPE="2"
readonly GO_BIN_DIR="/usr/lib/go-1.19/bin"
readonly READY_TIMEOUT_SECS="${CLUSTER_READY_TIMEOUT_SECS:-60}"
readonly ETCD_READY_TIMEOUT_SECS=30
readonly BUILD_LOCK_TIMEOUT_SECS=7200
readonly BUILD_STEP_TIMEOUT_SECS=3600
readonly APT_TIMEOUT_SECS=900
readonly STOP_GRACE_SECS=10

# Runtime prerequisites (always) and build prerequisites (only when building kube-apiserver).
readonly RUNTIME_PACKAGES=(openssl curl python3 util-linux procps)
# What `up --node` needs: the container runtime, the tools kubelet and kube-proxy call, gcc and
# static libc for the pause binary, busybox-static for the test image.
readonly NODE_PACKAGES=(docker.io iptables ipset conntrack socat ebtables ethtool iproute2 mount
  gcc libc6-dev busybox-static)
readonly NODE_NAME="gastown-node"
# The pod sandbox image; bump the tag when ensure_pause_image builds something else.
readonly PAUSE_IMAGE="gastown-test/pause:1"
readonly TEST_IMAGE_REPO="gastown-test/busybox"
readonly SERVICE_CLUSTER_IP_RANGE="10.0.0.0/24"
readonly KUBERNETES_SERVICE_IP="10.0.0.1"
readonly DOCKER_CLI="/usr/bin/docker"
DOCKER_SCRIPT="$(cd "$(dirname "$SCRIPT_PATH")/../.." && pwd)/scripts/docker.sh"
readonly DOCKER_SCRIPT
readonly NODE_READY_TIMEOUT_SECS="${CLUSTER_NODE_READY_TIMEOUT_SECS:-180}"
# Names the directory of the one node cluster this machine may run at a time (machine-wide,
# whatever cache directory a run uses; --node runs as root).
readonly NODE_OWNER_FILE="/run/gastown-operator-node-cluster"
# Kernel settings kubelet (setupKernelTunables) and kube-proxy change at start; `down` puts back
# the values they had before `up`.
readonly NODE_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.conf.all.route_localnet)
readonly BUILD_PACKAGES=(golang-1.19-go make rsync golang-github-modern-go-reflect2-dev ca-certificates)

# Users written to DIR/users: file name | user name | groups (comma separated).
readonly USERS=(
  "alice|alice|gastown-claimers"
  "bob|bob|developers"
  "mallory|mallory|"
  "gastown-operator|system:serviceaccount:gastown-system:gastown-operator|system:serviceaccounts,system:serviceaccounts:gastown-system,system:authenticated"
)

# Set by `up` (from the options) or by load_cluster_env (from DIR/cluster.env).
NODE_MODE=0
APISERVER_HOST=127.0.0.1
NODE_IP=""
NODE_CIDR=""
NODE_BIN_DIR=""
DOCKERD_STARTED=0
SERVICE_ROUTE_ADDED=0
NODE_TEST_IMAGE=""

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
  sed -n '2,13p' "$SCRIPT_PATH" | sed 's/^# \{0,1\}//' >&2
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
# Building kube-apiserver and the node binaries from Debian's source package

CURRENT_STEP_PID=""
BUILD_WORK_DIR=""
BUILD_OUT_DIR=""

cleanup_build() {
  local dir
  if [[ -n "$CURRENT_STEP_PID" ]]; then
    kill -TERM -- "-$CURRENT_STEP_PID" 2>/dev/null || kill -TERM "$CURRENT_STEP_PID" 2>/dev/null || true
  fi
  for dir in "$BUILD_WORK_DIR" "$BUILD_OUT_DIR"; do
    if [[ -n "$dir" && -d "$dir" ]]; then
      chmod -R u+w "$dir" 2>/dev/null || true
      rm -rf "$dir"
    fi
  done
  BUILD_WORK_DIR=""
  BUILD_OUT_DIR=""
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

# Pod sandboxes get OOM score adjustment -998 and Guaranteed pods -997 from kubelet 1.20; a
# process here may not lower its OOM score ("echo -500 > /proc/self/oom_score_adj": Permission
# denied; docker then fails with "can't get final child's PID from pipe"), so no pod could start.
# Both become 0. Burstable pods keep their upstream floor of 3 (1000 + -997), which the upstream
# formula derives from the Guaranteed value, so they still rank above Guaranteed ones.
step_patch_oom_score() {
  local work="$1"
  cd "$work/gopath/src/k8s.io/kubernetes"
  patch_exact pkg/kubelet/dockershim/docker_sandbox.go \
    'defaultSandboxOOMAdj int = -998' 'defaultSandboxOOMAdj int = 0'
  patch_exact pkg/kubelet/qos/policy.go \
    'if int(oomScoreAdjust) < (1000 + guaranteedOOMScoreAdj) {' 'if int(oomScoreAdjust) < 3 {'
  patch_exact pkg/kubelet/qos/policy.go 'return (1000 + guaranteedOOMScoreAdj)' 'return 3'
  patch_exact pkg/kubelet/qos/policy.go \
    'guaranteedOOMScoreAdj int = -997' 'guaranteedOOMScoreAdj int = 0'
}

# patch_exact FILE OLD NEW: replace the one line containing OLD (a fixed string) by the same line
# with NEW; fails unless OLD occurs exactly once before and not at all after.
patch_exact() {
  local file="$1" old="$2" new="$3"
  [[ "$(grep -cF -- "$old" "$file")" == 1 ]] || { echo "$file: expected one '$old'"; return 1; }
  OLD="$old" NEW="$new" perl -0pi -e 's/\Q$ENV{OLD}\E/$ENV{NEW}/' "$file"
  ! grep -qF -- "$old" "$file" || { echo "$file: could not replace '$old'"; return 1; }
  echo "$file: '$old' -> '$new'"
}

# step_go_build WORK OUTDIR PACKAGE...: GOPATH mode (module mode fails with "updates to go.mod
# needed"), static (CGO_ENABLED=0 for every binary, kubelet included: its only cgo user is
# NVIDIA's NVML binding, github.com/mindprince/gonvml, which has a no-cgo stub; one build
# configuration lets all binaries share the Go build cache), and stamped with the real version
# so that clients do not see v0.0.0.
step_go_build() {
  local work="$1" out="$2" v=k8s.io/kubernetes/vendor/k8s.io ldflags="" pkg
  shift 2
  cd "$work/gopath/src/k8s.io/kubernetes"
  export PATH="$GO_BIN_DIR:$PATH" GOPATH="$work/gopath" GOCACHE="$work/gocache" GOFLAGS="" \
    GOPROXY=off GO111MODULE=off CGO_ENABLED=0
  for pkg in "$v/component-base/version" "$v/client-go/pkg/version"; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=20"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  go build -trimpath -ldflags "-s -w$ldflags" -o "$out/" "$@"
  for pkg in "$@"; do
    "$out/$(basename "$pkg")" --version
  done
}

# The cached kube-apiserver exists and was built by the current recipe.
cached_apiserver_current() {
  [[ -x "$APISERVER_CACHE_DIR/kube-apiserver" ]] &&
    [[ "$(cat "$APISERVER_CACHE_DIR/recipe" 2>/dev/null || true)" == "$BUILD_RECIPE" ]]
}

# The cached node binaries exist and were built by the current node recipe.
cached_node_current() {
  local bin
  for bin in "${NODE_BINARIES[@]}"; do
    [[ -x "$NODE_CACHE_DIR/$bin" ]] || return 1
  done
  [[ "$(cat "$NODE_CACHE_DIR/recipe" 2>/dev/null || true)" == "$NODE_BUILD_RECIPE" ]]
}

prepared_tree_current() {
  [[ -d "$K8S_BUILD_DIR/gopath/src/k8s.io/kubernetes/cmd/kube-apiserver" ]] &&
    [[ "$(cat "$K8S_BUILD_DIR/prepared" 2>/dev/null || true)" == "$PREPARE_RECIPE" ]]
}

# Downloads, unpacks, generates and patches the source tree once; it stays in K8S_BUILD_DIR
# (beside the Go build cache) for every later build. Called with the build lock held.
prepare_source_locked() {
  local logs="$CACHE_ROOT/logs" started=$SECONDS
  prepared_tree_current && return 0
  log "preparing Debian's kubernetes $K8S_VERSION source tree (download, generate, patch; about"
  log "3 minutes); it is kept in $K8S_BUILD_DIR with the Go build cache for later builds"
  ensure_packages "${BUILD_PACKAGES[@]}"
  mkdir -p "$logs"
  rm -f "$logs"/build-*.log
  if [[ -d "$K8S_BUILD_DIR" ]]; then
    chmod -R u+w "$K8S_BUILD_DIR" 2>/dev/null || true
    rm -rf "$K8S_BUILD_DIR"
  fi
  # Until the `prepared` marker is written, a failure removes the whole directory.
  BUILD_WORK_DIR="$K8S_BUILD_DIR"
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
  run_step "keep pods' OOM score adjustments >= 0 (kubelet)" "$logs/build-6-oom-score.log" \
    step_patch_oom_score "$BUILD_WORK_DIR"
  rm -rf "$BUILD_WORK_DIR/apt" "$BUILD_WORK_DIR/src" "$BUILD_WORK_DIR/unpack"
  echo "$PREPARE_RECIPE" >"$K8S_BUILD_DIR/prepared"
  BUILD_WORK_DIR=""
  log "source tree prepared in $((SECONDS - started))s"
}

# build_binaries_locked CACHE_DIR RECIPE LOGFILE DESCRIPTION PACKAGE...: `go build` the packages
# from the prepared tree into CACHE_DIR, then mark CACHE_DIR as built by RECIPE. Called with the
# build lock held.
build_binaries_locked() {
  local cache_dir="$1" recipe="$2" logfile="$3" description="$4" pkg
  shift 4
  trap cleanup_build EXIT
  trap 'exit 130' INT TERM
  prepare_source_locked
  BUILD_OUT_DIR="$(mktemp -d "$K8S_BUILD_DIR/out.XXXXXX")"
  run_step "go build $* ($description)" "$logfile" step_go_build "$K8S_BUILD_DIR" "$BUILD_OUT_DIR" "$@"
  mkdir -p "$cache_dir"
  # The recipe marker goes first and comes back last, so a reader never takes an old binary for
  # a current one; each rename is atomic (same file system).
  rm -f "$cache_dir/recipe"
  for pkg in "$@"; do
    mv -f "$BUILD_OUT_DIR/$(basename "$pkg")" "$cache_dir/"
  done
  echo "$recipe" >"$cache_dir/recipe.tmp"
  mv -f "$cache_dir/recipe.tmp" "$cache_dir/recipe"
  cleanup_build
  trap - EXIT INT TERM
}

build_apiserver_locked() {
  local started=$SECONDS
  if cached_apiserver_current; then
    log "kube-apiserver $K8S_VERSION was built meanwhile by another run"
    return 0
  fi
  log "building kube-apiserver $K8S_VERSION from Debian's kubernetes source package."
  log "this happens once per machine and takes about 6-10 minutes on 2 cores;"
  log "the binary is cached at $APISERVER_CACHE_DIR/kube-apiserver"
  build_binaries_locked "$APISERVER_CACHE_DIR" "$BUILD_RECIPE" "$CACHE_ROOT/logs/build-7-go-build.log" \
    "about 4-6 minutes" ./cmd/kube-apiserver
  log "kube-apiserver $K8S_VERSION built in $((SECONDS - started))s: $APISERVER_CACHE_DIR/kube-apiserver"
}

build_node_locked() {
  local started=$SECONDS
  if cached_node_current; then
    log "the node binaries $K8S_VERSION were built meanwhile by another run"
    return 0
  fi
  log "building ${NODE_BINARIES[*]} $K8S_VERSION from the same source tree as"
  log "kube-apiserver. This happens once per machine and takes about 2-7 minutes on 2 cores;"
  log "the binaries are cached in $NODE_CACHE_DIR"
  build_binaries_locked "$NODE_CACHE_DIR" "$NODE_BUILD_RECIPE" "$CACHE_ROOT/logs/build-8-go-build-node.log" \
    "about 2-7 minutes" ./cmd/kube-controller-manager ./cmd/kube-scheduler ./cmd/kube-proxy ./cmd/kubelet
  log "node binaries built in $((SECONDS - started))s: $NODE_CACHE_DIR"
}

# with_build_lock FUNCTION: run FUNCTION holding the lock that serialises every build from the
# shared source tree and Go build cache (output to stderr).
with_build_lock() {
  mkdir -p "$CACHE_ROOT"
  (
    if ! flock -n 9; then
      log "another run is building Kubernetes binaries; waiting (up to ${BUILD_LOCK_TIMEOUT_SECS}s)"
      flock -w "$BUILD_LOCK_TIMEOUT_SECS" 9 || die "timed out waiting for $BUILD_LOCK"
    fi
    "$@"
  ) 9>"$BUILD_LOCK" >&2
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
    with_build_lock build_apiserver_locked
  fi
  echo "$target"
}

# Prints the directory holding the node binaries (NODE_BINARIES), building them first if needed.
ensure_node_binaries() {
  if ! cached_node_current; then
    if [[ -x "$NODE_CACHE_DIR/kubelet" ]]; then
      log "the cached node binaries were built by an older recipe; rebuilding them"
    fi
    with_build_lock build_node_locked
  fi
  echo "$NODE_CACHE_DIR"
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

# stop_process NAME BINARY [GRACE_SECS]: SIGTERM, then SIGKILL after GRACE_SECS (default
# STOP_GRACE_SECS), only if the recorded pid still runs BINARY for this DIR.
stop_process() {
  local name="$1" binary="$2" grace="${3:-$STOP_GRACE_SECS}" pidfile="$DIR/pids/$1.pid" pid i
  [[ -f "$pidfile" ]] || return 0
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  if [[ -n "$pid" && "$pid" != "$$" ]] && pid_is "$pid" "$binary" "$DIR"; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
      pid_is "$pid" "$binary" "$DIR" || break
      sleep 0.1
    done
    if pid_is "$pid" "$binary" "$DIR"; then
      log "$name (pid $pid) ignored SIGTERM for ${grace}s; sending SIGKILL"
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
    "https://$APISERVER_HOST:$APISERVER_PORT/readyz" 2>/dev/null | grep -qx ok; do
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
  local mode_flags=(
    --bind-address 127.0.0.1
    --advertise-address 127.0.0.1
    --disable-admission-plugins ServiceAccount
    --endpoint-reconciler-type none
  )
  if ((NODE_MODE)); then
    # Pods reach the API server on the docker0 IP (the `kubernetes` Service's endpoint, kept by
    # the default endpoint reconciler); the ServiceAccount admission plugin mounts tokens; the
    # API server talks to the kubelet (logs, exec) on its InternalIP with a client certificate.
    mode_flags=(
      --bind-address "$NODE_IP"
      --advertise-address "$NODE_IP"
      --client-ca-file "$DIR/certs/ca.crt"
      --kubelet-preferred-address-types InternalIP
      --kubelet-client-certificate "$DIR/certs/apiserver-kubelet-client.crt"
      --kubelet-client-key "$DIR/certs/apiserver-kubelet-client.key"
    )
  fi
  spawn kube-apiserver "$APISERVER_BIN" \
    --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    "${mode_flags[@]}" \
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
    --service-cluster-ip-range "$SERVICE_CLUSTER_IP_RANGE" \
    --enable-priority-and-fairness=false \
    --allow-privileged=true \
    --profiling=false
  wait_for_apiserver
}

# ---------------------------------------------------------------------------------------------
# Certificates, tokens, kubeconfigs

generate_certs() {
  local c="$DIR/certs" logfile="$DIR/logs/openssl.log"
  local sans="IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
  if ((NODE_MODE)); then
    sans+=",DNS:kubernetes.default.svc.cluster.local,IP:$NODE_IP,IP:$KUBERNETES_SERVICE_IP"
  fi
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
        "subjectAltName=$sans" \
        >"$c/serving.ext" &&
      openssl x509 -req -sha256 -days 3650 -in "$c/serving.csr" -CA "$c/ca.crt" -CAkey "$c/ca.key" \
        -CAcreateserial -extfile "$c/serving.ext" -out "$c/serving.crt" &&
      openssl genrsa -out "$c/sa.key" 2048 &&
      openssl rsa -in "$c/sa.key" -pubout -out "$c/sa.pub"
  } >"$logfile" 2>&1 || die_with_log "generating certificates with openssl failed" "$logfile"
  if ((NODE_MODE)); then
    # The API server's client certificate for the kubelet (which trusts only this CA).
    {
      openssl req -new -nodes -newkey rsa:2048 -sha256 -keyout "$c/apiserver-kubelet-client.key" \
        -out "$c/apiserver-kubelet-client.csr" -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" &&
        printf '%s\n' "basicConstraints=critical,CA:FALSE" \
          "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=clientAuth" \
          >"$c/apiserver-kubelet-client.ext" &&
        openssl x509 -req -sha256 -days 3650 -in "$c/apiserver-kubelet-client.csr" -CA "$c/ca.crt" \
          -CAkey "$c/ca.key" -CAcreateserial -extfile "$c/apiserver-kubelet-client.ext" \
          -out "$c/apiserver-kubelet-client.crt"
    } >>"$logfile" 2>&1 || die_with_log "generating the kubelet client certificate failed" "$logfile"
  fi
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
    server: https://$APISERVER_HOST:$APISERVER_PORT
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
APISERVER_URL=https://$APISERVER_HOST:$APISERVER_PORT
APISERVER_HOST=$APISERVER_HOST
APISERVER_PORT=$APISERVER_PORT
ETCD_CLIENT_PORT=$ETCD_CLIENT_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
APISERVER_BIN=$APISERVER_BIN
ETCD_BIN=$ETCD_BIN
APISERVER_PID=$(cat "$DIR/pids/kube-apiserver.pid" 2>/dev/null || true)
ETCD_PID=$(cat "$DIR/pids/etcd.pid" 2>/dev/null || true)
KUBECONFIG=$DIR/kubeconfig
NODE=$NODE_MODE
EOF
  if ((NODE_MODE)); then
    cat >>"$DIR/cluster.env.tmp" <<EOF
NODE_NAME=$NODE_NAME
NODE_IP=$NODE_IP
NODE_CIDR=$NODE_CIDR
NODE_BIN_DIR=$NODE_BIN_DIR
DOCKERD_STARTED=$DOCKERD_STARTED
SERVICE_ROUTE_ADDED=$SERVICE_ROUTE_ADDED
PAUSE_IMAGE=$PAUSE_IMAGE
NODE_TEST_IMAGE=$NODE_TEST_IMAGE
EOF
  fi
  mv -f "$DIR/cluster.env.tmp" "$DIR/cluster.env"
}

# 1 for "1", else 0.
flag_value() {
  if [[ "$1" == 1 ]]; then echo 1; else echo 0; fi
}

load_cluster_env() {
  local key value
  CLUSTER_ID="" APISERVER_PORT="" ETCD_CLIENT_PORT="" ETCD_PEER_PORT="" APISERVER_BIN="" ETCD_BIN=""
  APISERVER_HOST=127.0.0.1 NODE_MODE=0 NODE_IP="" NODE_CIDR="" NODE_BIN_DIR="" DOCKERD_STARTED=0
  SERVICE_ROUTE_ADDED=0
  NODE_TEST_IMAGE=""
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
      APISERVER_HOST) APISERVER_HOST="$value" ;;
      NODE) NODE_MODE="$(flag_value "$value")" ;;
      NODE_IP) NODE_IP="$value" ;;
      NODE_CIDR) NODE_CIDR="$value" ;;
      NODE_BIN_DIR) NODE_BIN_DIR="$value" ;;
      DOCKERD_STARTED) DOCKERD_STARTED="$(flag_value "$value")" ;;
      SERVICE_ROUTE_ADDED) SERVICE_ROUTE_ADDED="$(flag_value "$value")" ;;
      NODE_TEST_IMAGE) NODE_TEST_IMAGE="$value" ;;
    esac
  done <"$DIR/cluster.env"
  return 0
}

# ---------------------------------------------------------------------------------------------
# The node (--node): docker, images, kubelet, kube-proxy, controller-manager, scheduler

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
# (one whose `up` is under way is named by NODE_OWNER_FILE; any running kubelet or kube-proxy
# counts, whoever started it).
claim_node_slot() {
  (
    flock -w 60 9 || die "timed out waiting for $NODE_OWNER_FILE.lock"
    local owner other
    owner="$(cat "$NODE_OWNER_FILE" 2>/dev/null || true)"
    other="$(other_node_process)" || true
    if [[ -z "$other" && -n "$owner" && "$owner" != "$DIR" ]] && node_up_under_way "$owner"; then
      other="\`up --node\` of $owner"
    fi
    if [[ -n "$other" ]]; then
      die "a node cluster is running ($other); only one can run on a machine (kubelet and" \
        "kube-proxy own docker's k8s_* containers, the KUBE-* iptables chains and fixed ports)." \
        "Use that one (its kubeconfig), or take it down (cluster.sh down DIR)"
    fi
    echo "$DIR" >"$NODE_OWNER_FILE"
  ) 9>"$NODE_OWNER_FILE.lock"
}

# Prints "kubelet pid PID, cluster directory OTHER" for a running kubelet or kube-proxy that is
# not this DIR's; fails when there is none.
other_node_process() {
  local proc pid name cmdline kubeconfig
  for proc in /proc/[0-9]*; do
    pid="${proc#/proc/}"
    name="$(basename "$(pid_exe "$pid")")"
    [[ "$name" == kubelet || "$name" == kube-proxy ]] || continue
    cmdline="$(pid_cmdline "$pid")"
    [[ "$cmdline" == *"$DIR/"* ]] && continue
    kubeconfig="$(sed -nE 's/.*--kubeconfig[ =]([^ ]+).*/\1/p' <<<"$cmdline")"
    printf '%s pid %s, cluster directory %s\n' "$name" "$pid" "$(dirname "${kubeconfig:-unknown/x}")"
    return 0
  done
  return 1
}

# node_up_under_way DIR: an `up --node DIR` (a bash running this script) is still running.
node_up_under_way() {
  local proc
  for proc in /proc/[0-9]*; do
    [[ "$(pid_cmdline "${proc#/proc/}")" == *"cluster.sh up $1 "*"--node"* ]] && return 0
  done
  return 1
}

release_node_slot() {
  [[ "$(cat "$NODE_OWNER_FILE" 2>/dev/null || true)" == "$DIR" ]] && rm -f "$NODE_OWNER_FILE"
  return 0
}

# node_processes_alive DIR: a kubelet or kube-proxy started for DIR still runs (per pid files).
node_processes_alive() {
  local dir="$1" name pid
  for name in kubelet kube-proxy; do
    pid="$(cat "$dir/pids/$name.pid" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || continue
    [[ "$(basename "$(pid_exe "$pid")")" == "$name" && "$(pid_cmdline "$pid")" == *"$dir/"* ]] && return 0
  done
  return 1
}

save_sysctls() {
  local key value
  : >"$DIR/sysctl.before.tmp"
  for key in "${NODE_SYSCTLS[@]}"; do
    value="$(sysctl -n "$key" 2>/dev/null)" || continue
    printf '%s=%s\n' "$key" "$value" >>"$DIR/sysctl.before.tmp"
  done
  mv -f "$DIR/sysctl.before.tmp" "$DIR/sysctl.before"
}

restore_sysctls() {
  local key value
  [[ -f "$DIR/sysctl.before" ]] || return 0
  while IFS='=' read -r key value; do
    [[ -n "$key" && "$(sysctl -n "$key" 2>/dev/null || true)" != "$value" ]] || continue
    sysctl -q -w "$key=$value" >/dev/null 2>&1 || log "could not restore $key=$value"
  done <"$DIR/sysctl.before"
  rm -f "$DIR/sysctl.before"
}

# api_get PATH: GET from the API server as admin (JSON on stdout).
api_get() {
  curl -fsS --max-time 5 --cacert "$DIR/certs/ca.crt" -H "Authorization: Bearer $(cat "$DIR/admin.token")" \
    "https://$APISERVER_HOST:$APISERVER_PORT$1"
}

# The node is Ready and untainted (so pods schedule), the `default` ServiceAccount has its token
# Secret (controller-manager), and kube-proxy has programmed the `kubernetes` Service.
node_ready() {
  api_get "/api/v1/nodes/$NODE_NAME" 2>/dev/null | python3 -c '
import json, sys
node = json.load(sys.stdin)
ready = any(c.get("type") == "Ready" and c.get("status") == "True"
            for c in node.get("status", {}).get("conditions", []))
sys.exit(0 if ready and not node.get("spec", {}).get("taints") else 1)' 2>/dev/null || return 1
  api_get /api/v1/namespaces/default/serviceaccounts/default 2>/dev/null |
    python3 -c 'import json, sys; sys.exit(0 if json.load(sys.stdin).get("secrets") else 1)' 2>/dev/null ||
    return 1
  iptables -w 5 -t nat -S KUBE-SERVICES 2>/dev/null | grep -qF -- "-d $KUBERNETES_SERVICE_IP/32"
}

# Service IPs exist only as kube-proxy's DNAT rules. Until those are in place (or after a rule
# is gone) a connection to one would follow the default route off this machine; routed to the
# docker bridge instead, it stays here and finds nobody.
add_service_route() {
  if ip route show exact "$SERVICE_CLUSTER_IP_RANGE" 2>/dev/null | grep -q .; then
    log "a route for $SERVICE_CLUSTER_IP_RANGE exists already: $(ip route show exact "$SERVICE_CLUSTER_IP_RANGE")"
    return 0
  fi
  ip route add "$SERVICE_CLUSTER_IP_RANGE" dev docker0 || die "could not route $SERVICE_CLUSTER_IP_RANGE to docker0"
  SERVICE_ROUTE_ADDED=1
  write_cluster_env
}

delete_service_route() {
  ((SERVICE_ROUTE_ADDED)) || return 0
  ip route del "$SERVICE_CLUSTER_IP_RANGE" dev docker0 2>/dev/null || true
  SERVICE_ROUTE_ADDED=0
}

start_node() {
  local deadline name
  add_service_route
  save_sysctls
  spawn kube-controller-manager "$NODE_BIN_DIR/kube-controller-manager" \
    --kubeconfig "$DIR/kubeconfig" \
    --service-account-private-key-file "$DIR/certs/sa.key" \
    --root-ca-file "$DIR/certs/ca.crt" \
    --leader-elect=false \
    --port 0 \
    --secure-port 0 \
    --profiling=false
  spawn kube-scheduler "$NODE_BIN_DIR/kube-scheduler" \
    --kubeconfig "$DIR/kubeconfig" \
    --leader-elect=false \
    --port 0 \
    --secure-port 0 \
    --profiling=false
  mkdir -p "$DIR/kubelet/pki" "$DIR/kubelet/volume-plugins"
  # Images are never garbage-collected (they cannot be pulled back here), eviction thresholds
  # are low (a busy shared disk must not taint the node), pods get no DNS server; the cgroup
  # driver is docker's (its default, cgroupfs on cgroup v1, when we start dockerd).
  spawn kubelet "$NODE_BIN_DIR/kubelet" \
    --kubeconfig "$DIR/kubeconfig" \
    --container-runtime docker \
    --pod-infra-container-image "$PAUSE_IMAGE" \
    --cgroup-driver "$(docker_cli info -f '{{.CgroupDriver}}')" \
    --cgroups-per-qos=false \
    --enforce-node-allocatable= \
    --fail-swap-on=false \
    --root-dir "$DIR/kubelet" \
    --experimental-dockershim-root-directory "$DIR/kubelet/dockershim" \
    --volume-plugin-dir "$DIR/kubelet/volume-plugins" \
    --cert-dir "$DIR/kubelet/pki" \
    --hostname-override "$NODE_NAME" \
    --node-ip "$NODE_IP" \
    --address "$NODE_IP" \
    --read-only-port 0 \
    --anonymous-auth=false \
    --authentication-token-webhook=false \
    --client-ca-file "$DIR/certs/ca.crt" \
    --authorization-mode AlwaysAllow \
    --resolv-conf "" \
    --image-gc-high-threshold 100 \
    --image-gc-low-threshold 99 \
    --eviction-hard "memory.available<1Mi,nodefs.available<1%,imagefs.available<1%" \
    --oom-score-adj 0
  spawn kube-proxy "$NODE_BIN_DIR/kube-proxy" \
    --kubeconfig "$DIR/kubeconfig" \
    --proxy-mode iptables \
    --hostname-override "$NODE_NAME" \
    --cluster-cidr "$NODE_CIDR" \
    --bind-address "$NODE_IP" \
    --nodeport-addresses "$NODE_IP/32" \
    --healthz-bind-address 127.0.0.1:10256 \
    --metrics-bind-address 127.0.0.1:10249 \
    --conntrack-max-per-core 0 \
    --conntrack-tcp-timeout-established 0 \
    --conntrack-tcp-timeout-close-wait 0 \
    --oom-score-adj 0
  deadline=$((SECONDS + NODE_READY_TIMEOUT_SECS))
  until node_ready; do
    for name in "${NODE_BINARIES[@]}"; do
      pid_is "$(cat "$DIR/pids/$name.pid")" "$NODE_BIN_DIR/$name" "$DIR" ||
        die_with_log "$name exited during start" "$DIR/logs/$name.log"
    done
    ((SECONDS < deadline)) ||
      die_with_log "node $NODE_NAME not ready after ${NODE_READY_TIMEOUT_SECS}s" "$DIR/logs/kubelet.log"
    sleep 1
  done
}

# The k8s_* containers (all of them belong to this machine's one node cluster), the pod log
# directories kubelet made for them (/var/log/pods/NS_POD_UID) and its links to their logs
# (/var/log/containers/POD_NS_CONTAINER-ID.log).
remove_pod_containers() {
  local ids id uid
  docker_running || return 0
  mapfile -t ids < <(docker_cli ps -aq --no-trunc --filter 'name=^k8s_')
  ((${#ids[@]} > 0)) || return 0
  log "removing ${#ids[@]} k8s_* containers"
  for uid in $(docker_cli inspect -f '{{index .Config.Labels "io.kubernetes.pod.uid"}}' "${ids[@]}" 2>/dev/null | sort -u); do
    if [[ "$uid" =~ ^[0-9a-f-]+$ ]]; then
      rm -rf /var/log/pods/*_"$uid"
    fi
  done
  docker_cli rm -f -v "${ids[@]}" >/dev/null || log "could not remove every k8s_* container"
  for id in "${ids[@]}"; do
    if [[ "$id" =~ ^[0-9a-f]+$ ]]; then
      rm -f /var/log/containers/*-"$id".log
    fi
  done
}

# Unmounts what kubelet mounted under DIR/kubelet (Secret and token tmpfs volumes), deepest first.
unmount_kubelet_mounts() {
  local target
  [[ -d "$DIR/kubelet" ]] || return 0
  findmnt -rn -o TARGET | awk -v root="$DIR/kubelet" '$0 == root || index($0, root "/") == 1' |
    sort -r | while read -r target; do
    umount "$target" 2>/dev/null || umount -l "$target" || log "could not unmount $target"
  done
}

# Deletes every KUBE-* chain (kube-proxy's and kubelet's) and the rules that jump to them, in
# iptables and ip6tables.
delete_kube_chains() {
  python3 - <<'PYEOF'
import shlex, shutil, subprocess

def run(*argv):
    return subprocess.run(argv, capture_output=True, text=True)

for cmd in ("iptables", "ip6tables"):
    if not shutil.which(cmd) or not shutil.which(cmd + "-save"):
        continue
    for table in ("nat", "filter", "mangle", "raw"):
        saved = run(cmd + "-save", "-t", table)
        if saved.returncode != 0:
            continue
        chains, jumps = [], []
        for line in saved.stdout.splitlines():
            if line.startswith(":KUBE-"):
                chains.append(line[1:].split()[0])
            elif line.startswith("-A "):
                args = shlex.split(line)
                targets = [args[i + 1] for i in range(len(args) - 1) if args[i] in ("-j", "-g")]
                if not args[1].startswith("KUBE-") and any(t.startswith("KUBE-") for t in targets):
                    jumps.append(args[1:])
        for rule in jumps:
            run(cmd, "-w", "5", "-t", table, "-D", *rule)
        for chain in chains:
            run(cmd, "-w", "5", "-t", table, "-F", chain)
        for chain in chains:
            if run(cmd, "-w", "5", "-t", table, "-X", chain).returncode != 0:
                print(f"cluster.sh: could not delete {cmd} -t {table} chain {chain}")
PYEOF
}

# Takes down what `up --node` added, in an order that leaves nothing behind: no new pods, no
# kubelet to restart containers, containers gone before their mounts, kube-proxy gone before
# its chains.
stop_node() {
  local bin_dir="${NODE_BIN_DIR:-$NODE_CACHE_DIR}" owner
  stop_process kube-scheduler "$bin_dir/kube-scheduler"
  stop_process kube-controller-manager "$bin_dir/kube-controller-manager"
  stop_process kubelet "$bin_dir/kubelet"
  # A failed `up` beside a running node cluster, or a repeated `down` after another node
  # cluster came up, must not touch that one's containers and chains.
  if owner="$(other_node_process)"; then
    log "another node cluster is running ($owner): the k8s_* containers and KUBE-* chains stay"
    unmount_kubelet_mounts
    stop_process kube-proxy "$bin_dir/kube-proxy"
    return 0
  fi
  remove_pod_containers
  unmount_kubelet_mounts
  stop_process kube-proxy "$bin_dir/kube-proxy"
  delete_kube_chains
}

# After etcd and kube-apiserver are stopped.
stop_node_host_parts() {
  delete_service_route
  restore_sysctls
  if ((DOCKERD_STARTED)); then
    bash "$DOCKER_SCRIPT" stop "$DIR/run"
  fi
  release_node_slot
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
  ((NODE_MODE)) && node_processes_alive "$DIR" && return 0
  pid="$(cat "$DIR/pids/kube-apiserver.pid" 2>/dev/null || true)"
  [[ -n "$pid" ]] && pid_is "$pid" "$APISERVER_BIN" "$DIR" && return 0
  pid="$(cat "$DIR/pids/etcd.pid" 2>/dev/null || true)"
  [[ -n "$pid" ]] && pid_is "$pid" "$ETCD_BIN" "$DIR"
}

cmd_up() {
  local watch_pid="" remove_dir=0 node=0 attempt started=$SECONDS
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
      --node)
        node=1
        shift
        ;;
      *) die "unknown option for up: $1" ;;
    esac
  done
  if cluster_running; then
    die "a cluster from $DIR is already running; run: $SCRIPT_PATH down $DIR"
  fi
  if ((node)); then
    [[ "$(id -u)" == 0 ]] || die "--node needs root (dockerd, kubelet and kube-proxy run as root): sudo $SCRIPT_PATH up $DIR --node"
    # A node cluster that was not taken down (its processes are gone) may have left mounts.
    if [[ -f "$DIR/cluster.env" ]]; then
      cmd_down "$DIR"
    fi
  fi
  ensure_runtime_tools
  ((node)) && ensure_packages "${NODE_PACKAGES[@]}"
  APISERVER_BIN="$(ensure_apiserver)"
  ETCD_BIN="$(ensure_etcd)"
  log "using $APISERVER_BIN and $ETCD_BIN"
  if ((node)); then
    NODE_BIN_DIR="$(ensure_node_binaries)"
    log "using ${NODE_BINARIES[*]} from $NODE_BIN_DIR"
  fi

  # A fresh cluster each time: previous state (if any) is discarded.
  rm -rf "$DIR/etcd" "$DIR/certs" "$DIR/users" "$DIR/pids" "$DIR/logs" "$DIR/run" "$DIR/kubelet" \
    "$DIR/kubeconfig" "$DIR/tokens.csv" "$DIR/admin.token" "$DIR/cluster.env" "$DIR/sysctl.before"
  mkdir -p "$DIR/pids" "$DIR/logs"
  CLUSTER_ID="$(date +%s)-$$-$RANDOM"
  UP_COMPLETE=0
  NODE_MODE="$node"
  DOCKERD_STARTED=0
  SERVICE_ROUTE_ADDED=0
  APISERVER_HOST=127.0.0.1
  ETCD_CLIENT_PORT="" ETCD_PEER_PORT="" APISERVER_PORT=""
  trap cleanup_failed_up EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  if ((NODE_MODE)); then
    claim_node_slot
    write_cluster_env
    ensure_dockerd
    detect_node_network
    ensure_pause_image
    ensure_test_image
    write_cluster_env
  fi
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
  log "kube-apiserver $K8S_VERSION ready at https://$APISERVER_HOST:$APISERVER_PORT in $((SECONDS - started))s"
  if ((NODE_MODE)); then
    start_node
    log "node $NODE_NAME ($NODE_IP) ready in $((SECONDS - started))s; test image: $NODE_TEST_IMAGE"
  fi
  if [[ -n "$watch_pid" ]]; then
    start_watcher "$watch_pid" "$remove_dir"
  fi
  UP_COMPLETE=1
  trap - EXIT INT TERM
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
    trap - EXIT
    if ((NODE_MODE)); then
      (stop_node) || true
    fi
    stop_process kube-apiserver "$APISERVER_BIN" || true
    stop_process etcd "$ETCD_BIN" || true
    if ((NODE_MODE)); then
      (stop_node_host_parts) || true
    fi
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
  if ((NODE_MODE)); then
    stop_node
  fi
  stop_process kube-apiserver "$APISERVER_BIN"
  stop_process etcd "$ETCD_BIN"
  if ((NODE_MODE)); then
    stop_node_host_parts
  fi
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
    python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1], int(sys.argv[2])))' \
      "$APISERVER_HOST" "$APISERVER_PORT" 2>/dev/null && break
    sleep 0.2
  done
  start_apiserver
  write_cluster_env
  log "kube-apiserver restarted on $APISERVER_HOST:$APISERVER_PORT"
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
      case "${1:-}" in
        "") ;;
        --node) ;;
        *) die "unknown option for build: $1" ;;
      esac
      ensure_runtime_tools
      ensure_apiserver >/dev/null
      ensure_etcd >/dev/null
      log "kube-apiserver and etcd are available"
      if [[ "${1:-}" == --node ]]; then
        ensure_node_binaries >/dev/null
        log "the node binaries (${NODE_BINARIES[*]}) are available in $NODE_CACHE_DIR"
      fi
      ;;
    __watch) cmd_watch "$@" ;;
    __step)
      case "${1:-}" in
        step_download_source | step_unpack_source | step_generated_files | step_replace_reflect2 | \
          step_patch_openapi_validation | step_patch_oom_score | step_go_build) "$@" ;;
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
