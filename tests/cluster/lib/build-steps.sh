# Sourced by tests/cluster/cluster.sh: the build steps, each run in its own process
# (`cluster.sh __step STEP ...`, see run_step in binaries.sh) with its output in a log file.
# shellcheck shell=bash
# shellcheck disable=SC2164 # cluster.sh runs every step with set -e

readonly GO_BIN_DIR="/usr/lib/go-1.19/bin"

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

