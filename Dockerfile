# The gastown-controller image: one static binary on an empty base.
#
# The binary is built OUTSIDE this file (as kube-rs' controller-rs does) and copied in:
#
#   make image        # cargo build --release --target x86_64-unknown-linux-musl -p gastown-controller,
#                     # strip, then docker build with the build args below
#
# or by hand, from the repository root:
#
#   CC_x86_64_unknown_linux_musl=musl-gcc \
#     cargo build --release --locked --target x86_64-unknown-linux-musl -p gastown-controller
#   mkdir -p target/image && strip -o target/image/gastown-controller \
#     target/x86_64-unknown-linux-musl/release/gastown-controller
#   docker build -t ghcr.io/gastown-operator/gastown-controller:0.1.0 .
#
# (podman build / buildah bud take the same command line.) The binary must be static: musl,
# built with Rust's default linker (a static-pie executable). `musl-gcc` is only the C compiler
# for ring's C and assembly parts (Debian's musl-tools); used as the *linker* it produces a
# dynamically linked program that needs a loader this image does not have.
#
# TLS roots: the controller uses rustls (ring) and no system trust store, so the image carries
# no CA bundle. In a pod kube-rs' in-cluster config trusts exactly the ServiceAccount CA
# (/var/run/secrets/kubernetes.io/serviceaccount/ca.crt, mounted by Kubernetes); the proxy
# transport trusts exactly the CA in its Secret (--proxy-ca, /etc/gastown/proxy/ca.crt). Only a
# kubeconfig *without* a certificate authority would fall back to the operating system's roots
# (rustls-platform-verifier), which a pod never uses.
FROM scratch

# Where the prebuilt, stripped binary is, relative to the build context. .dockerignore lets
# only target/image/ into the context.
ARG BINARY=target/image/gastown-controller
# Filled in by `make image` from charts/gastown-operator/Chart.yaml (appVersion) and git.
ARG VERSION=0.0.0-dev
ARG REVISION=unknown

LABEL org.opencontainers.image.title="gastown-controller" \
      org.opencontainers.image.description="Dispatches claimed Automaton objects (olympus.io/v1alpha1) to a local Gas Town through gt-proxy-server" \
      org.opencontainers.image.source="https://github.com/gastown-operator/gastown-operator" \
      org.opencontainers.image.url="https://github.com/gastown-operator/gastown-operator" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

# Owned by root and not writable by the user the controller runs as.
COPY ${BINARY} /gastown-controller

# The distroless `nonroot` user and group, numeric so that Kubernetes' runAsNonRoot can check
# it without an /etc/passwd. The chart sets the same ids and a read-only root filesystem.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/gastown-controller"]
