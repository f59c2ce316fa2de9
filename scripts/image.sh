#!/usr/bin/env bash
# The controller image (`make image`, `make image-push`; see Dockerfile).
#
#   scripts/image.sh repository        the chart's default image.repository (values.yaml)
#   scripts/image.sh tag               the chart's appVersion (Chart.yaml): the default tag
#   scripts/image.sh build IMAGE TAG   static musl build of gastown-controller, strip, docker build
#   scripts/image.sh push IMAGE TAG    docker push IMAGE:TAG
#
# The chart files are the one source of truth for the image name: `make image` without
# arguments produces exactly the image the chart deploys by default (tests/chart checks this).
# Installs what is missing (the x86_64-unknown-linux-musl Rust target, Debian's musl-tools,
# docker.io) and starts dockerd when no daemon answers; a dockerd started here is stopped
# again when the command ends (the image stays in /var/lib/docker). Only x86_64 (amd64) images
# are built: see controller/README.md "The image" for what an arm64 build needs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/docker.sh
source "$root/scripts/docker.sh"

readonly TARGET=x86_64-unknown-linux-musl
readonly CHART_DIR="$root/charts/gastown-operator"
readonly STAGED="target/image/gastown-controller"
say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'image.sh: error: %s\n' "$*" >&2; exit 1; }

# image.repository from values.yaml: the `repository:` key of the top-level `image:` block.
chart_repository() {
  local repo
  repo="$(awk '
    /^image:[[:space:]]*$/ { in_image = 1; next }
    in_image && /^[^[:space:]#]/ { in_image = 0 }
    in_image && /^[[:space:]]+repository:/ { sub(/^[[:space:]]+repository:[[:space:]]*/, ""); sub(/[[:space:]]+#.*$/, ""); gsub(/["\047]/, ""); print; exit }
  ' "$CHART_DIR/values.yaml")"
  [[ -n "$repo" ]] || die "no image.repository in $CHART_DIR/values.yaml"
  printf '%s\n' "$repo"
}

# appVersion from Chart.yaml.
chart_app_version() {
  local version
  version="$(sed -n 's/^appVersion:[[:space:]]*//p' "$CHART_DIR/Chart.yaml" | sed 's/[[:space:]]*#.*$//' | tr -d "\"'")"
  [[ -n "$version" ]] || die "no appVersion in $CHART_DIR/Chart.yaml"
  printf '%s\n' "$version"
}

ensure_musl_toolchain() {
  if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
    say "adding the $TARGET Rust target"
    rustup target add "$TARGET"
  fi
  if ! command -v musl-gcc >/dev/null 2>&1; then
    say "installing Debian's musl-tools (musl-gcc compiles ring's C parts)"
    local lock_dir="${XDG_CACHE_HOME:-$HOME/.cache}/gastown-operator"
    mkdir -p "$lock_dir"
    (
      flock -w 900 9 || die "timed out waiting for $lock_dir/apt.lock"
      as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -qq
      as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq musl-tools
    ) 9>"$lock_dir/apt.lock"
  fi
}

# Builds the static binary and stages it, stripped, at target/image/gastown-controller.
build_binary() {
  ensure_musl_toolchain
  say "cargo build --release --target $TARGET -p gastown-controller"
  # musl-gcc as the C compiler only; Rust's default linker makes a static-pie executable.
  CC_x86_64_unknown_linux_musl=musl-gcc \
    cargo build --release --locked --target "$TARGET" -p gastown-controller
  mkdir -p "$(dirname "$STAGED")"
  strip --strip-all -o "$STAGED.tmp" "target/$TARGET/release/gastown-controller"
  # A dynamically linked binary would not start on the empty base: refuse it here.
  if readelf -l "$STAGED.tmp" | grep -q 'INTERP'; then
    rm -f "$STAGED.tmp"
    die "target/$TARGET/release/gastown-controller asks for a dynamic loader (is a linker set for $TARGET?)"
  fi
  chmod 0755 "$STAGED.tmp"
  mv "$STAGED.tmp" "$STAGED"
  say "$STAGED: $(stat -c %s "$STAGED") bytes (static, stripped)"
}

docker_state_dir="$root/.cluster/image-docker"
cleanup() { docker_stop "$docker_state_dir"; }

build_image() {
  local image="$1" tag="$2" revision
  build_binary
  docker_ensure "$docker_state_dir"
  trap cleanup EXIT
  revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
  if [[ "$revision" != unknown ]] && [[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
    revision="$revision-dirty"
  fi
  say "docker build -t $image:$tag"
  docker build --quiet -f Dockerfile \
    --build-arg "BINARY=$STAGED" \
    --build-arg "VERSION=$tag" \
    --build-arg "REVISION=$revision" \
    -t "$image:$tag" . >/dev/null
  local size
  size="$(docker image inspect -f '{{.Size}}' "$image:$tag")"
  say "$image:$tag: $size bytes ($(awk -v s="$size" 'BEGIN { printf "%.1f MB", s / 1e6 }')) uncompressed"
}

push_image() {
  local image="$1" tag="$2"
  docker_ensure "$docker_state_dir"
  trap cleanup EXIT
  docker image inspect "$image:$tag" >/dev/null 2>&1 || die "no image $image:$tag: run \`make image IMAGE=$image\` first"
  say "docker push $image:$tag"
  docker push "$image:$tag"
}

case "${1:-}" in
  repository) chart_repository ;;
  tag) chart_app_version ;;
  build) [[ $# -eq 3 ]] || die "usage: $0 build IMAGE TAG"; build_image "$2" "$3" ;;
  push) [[ $# -eq 3 ]] || die "usage: $0 push IMAGE TAG"; push_image "$2" "$3" ;;
  *) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
