# Sourced by tests/cluster/cluster.sh: where kube-apiserver, etcd and the node binaries come
# from ($KUBEBUILDER_ASSETS, the cache, or a build from Debian's kubernetes source package).
# shellcheck shell=bash

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
readonly BUILD_LOCK_TIMEOUT_SECS=7200
readonly BUILD_STEP_TIMEOUT_SECS=3600
readonly BUILD_PACKAGES=(golang-1.19-go make rsync golang-github-modern-go-reflect2-dev ca-certificates)

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

# run_step NAME LOGFILE STEP ARGS...: run a long build step (a step_* function of build-steps.sh)
# in its own process group with its output in LOGFILE, print a heartbeat every 30 s, kill it
# after BUILD_STEP_TIMEOUT_SECS.
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

# assets_binary NAME: prints $KUBEBUILDER_ASSETS/NAME when KUBEBUILDER_ASSETS is set (which
# then must hold it); fails when it is not set.
assets_binary() {
  [[ -n "${KUBEBUILDER_ASSETS:-}" ]] || return 1
  [[ -x "$KUBEBUILDER_ASSETS/$1" ]] || die "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no executable $1"
  echo "$KUBEBUILDER_ASSETS/$1"
}

# ensure_built CURRENT_CHECK OLD_BINARY WHAT BUILD_FUNCTION: unless CURRENT_CHECK finds the cache
# current, run BUILD_FUNCTION holding the build lock (saying so when it replaces an older build).
ensure_built() {
  local current="$1" old="$2" what="$3" build="$4"
  "$current" && return 0
  [[ ! -x "$old" ]] || log "the cached $what built by an older recipe; rebuilding"
  with_build_lock "$build"
}

# Prints the path of a kube-apiserver binary, building it first if needed.
ensure_apiserver() {
  local target="$APISERVER_CACHE_DIR/kube-apiserver"
  assets_binary kube-apiserver && return 0
  ensure_built cached_apiserver_current "$target" "kube-apiserver was" build_apiserver_locked
  echo "$target"
}

# Prints the directory holding the node binaries (NODE_BINARIES), building them first if needed.
ensure_node_binaries() {
  ensure_built cached_node_current "$NODE_CACHE_DIR/kubelet" "node binaries were" build_node_locked
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
  assets_binary etcd && return 0
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
