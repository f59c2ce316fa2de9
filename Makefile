# gastown-operator — `make help` lists every target.
#
# The two commands a newcomer needs (both do all set-up themselves):
#   make run    the main job: controller + (when no cluster is reachable) a local API server,
#               the policy as admission webhook and a simulated Gas Town
#   make test   everything the CI runs

SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
WASM_TARGET := wasm32-wasip1
POLICY_WASM := policy/policy.wasm
POLICY_BUILT := target/$(WASM_TARGET)/policy/gastown_policy.wasm
POLICY_VERSION := $(shell sed -n 's/^ *io.kubewarden.policy.version: *//p' policy/metadata.yml 2>/dev/null | tr -d '"')
POLICY_OCI ?= ghcr.io/gastown-operator/policies/gastown-claim:v$(POLICY_VERSION)
KWCTL ?= kwctl
TEST_CLUSTER_DIR ?= $(CURDIR)/.cluster/test
# The controller image: by default exactly what the chart deploys (image.repository in
# charts/gastown-operator/values.yaml, tag = appVersion in Chart.yaml; tests/chart checks it).
IMAGE ?= $(shell scripts/image.sh repository)
TAG ?= $(shell scripts/image.sh tag)

include tests/cluster/cluster.mk
include bench/bench.mk
include fuzz/fuzz.mk
include tests/chaos.mk

.PHONY: help setup build policy test test-unit test-chart lint crds run run-node clean annotate push artifacthub artifacthub-readme image image-push

help: ## List the targets
	@printf 'gastown-operator targets:\n\n'
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | sort | \
		awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-26s\033[0m %s\n", $$1, $$2}'
	@printf '\nStart here: `make run` (main job) and `make test` (all tests).\n'

setup: ## Install what builds and tests need (wasm target, rustfmt/clippy, apt and pip packages, helm and kubectl)
	@scripts/setup.sh

build: setup policy ## Build the native workspace (controller, tools) and the wasm policy
	$(CARGO) build --workspace --all-targets

policy: ## Build the wasm policy and copy it to policy/policy.wasm
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)
	$(CARGO) build -p gastown-policy --target $(WASM_TARGET) --profile policy
	cp $(POLICY_BUILT) $(POLICY_WASM)
	@printf 'policy/policy.wasm: %s bytes\n' "$$(stat -c %s $(POLICY_WASM))"

test: setup policy ## Run every test, as CI does: cargo tests on a real API server (and a node, as root), bench smoke, Helm chart
	@scripts/test.sh

lint: setup ## cargo fmt --check, clippy -D warnings (native and wasm), cargo deny (licenses, bans, sources)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p gastown-policy -p gastown-crds --target $(WASM_TARGET) -- -D warnings
	@scripts/deny.sh

crds: ## Regenerate crds/automaton.yaml from the Rust types (and the chart's copy)
	$(CARGO) run -q -p gastown-crds --bin crdgen > crds/automaton.yaml
	cp crds/automaton.yaml charts/gastown-operator/crds/automaton.yaml

run: setup policy ## Main job: run the controller (local API server + simulated Gas Town when needed); TOWNS=2: two towns
	@scripts/run.sh

run-node: ## Print how to try the chart on a local node: image, helm install, an Automaton
	@scripts/run.sh --node

image: ## Build the static controller image $(IMAGE):$(TAG) (musl binary on scratch; amd64 only)
	@scripts/image.sh build $(IMAGE) $(TAG)

image-push: image ## Push $(IMAGE):$(TAG) (e.g. make image-push IMAGE=registry.example.com/gastown-controller)
	@scripts/image.sh push $(IMAGE) $(TAG)

clean: ## Remove build outputs and local clusters
	-@bash tests/cluster/cluster.sh down $(TEST_CLUSTER_DIR) >/dev/null 2>&1
	-@bash tests/cluster/cluster.sh down $(CLUSTER_DIR) >/dev/null 2>&1
	-@bash tests/cluster/cluster.sh down $(NODE_CLUSTER_DIR) >/dev/null 2>&1
	-@bash tests/cluster/cluster.sh down $(CURDIR)/.cluster/test-node >/dev/null 2>&1
	$(CARGO) clean
	rm -rf $(POLICY_WASM) policy/annotated-policy.wasm .cluster

define need_kwctl
	@command -v $(KWCTL) >/dev/null 2>&1 || { \
	  echo "kwctl is not installed: get it from https://github.com/kubewarden/kwctl/releases" >&2; \
	  echo "(it is not on crates.io; set KWCTL=/path/to/kwctl if it is elsewhere)" >&2; exit 1; }
endef

annotate: policy ## Embed metadata.yml + README into policy/annotated-policy.wasm (needs kwctl)
	$(need_kwctl)
	$(KWCTL) annotate -m policy/metadata.yml -u policy/README.md -o policy/annotated-policy.wasm $(POLICY_WASM)

push: annotate ## Push the annotated policy to registry://$(POLICY_OCI) (needs kwctl)
	$(KWCTL) push policy/annotated-policy.wasm registry://$(POLICY_OCI)

# The header of artifacthub/artifacthub-pkg.yml: kwctl's own, and what `make artifacthub`
# changes in kwctl's output.
define ARTIFACTHUB_HEADER
# Kubewarden Artifacthub Package config
#
# Use this config to submit the policy to https://artifacthub.io.
#
# This config can be saved to its default location with:
#   kwctl scaffold artifacthub > artifacthub-pkg.yml
#
# Regenerate with `make artifacthub` (needs kwctl) after changing policy/metadata.yml or
# policy/questions-ui.yml; the tests in policy/tests/packaging/ fail when this file and those disagree.
# Two changes to kwctl's output (made by `make artifacthub`): the `policy` link names the
# module the release pushes (`make push`: registry://POLICY_OCI) instead of a GitHub release
# asset that no release uploads, and the install text scaffolds with --allow-context-aware.
# Artifact Hub shows artifacthub/README.md, a copy of policy/README.md (`make artifacthub-readme`).
endef
export ARTIFACTHUB_HEADER

artifacthub-readme: ## Copy policy/README.md to artifacthub/README.md, the README Artifact Hub shows
	cp policy/README.md artifacthub/README.md

# kwctl scaffold artifacthub links `policy` to <source>/releases/download/v<version>/policy.wasm
# whenever the source is on github.com (kubewarden-controller
# crates/policy-evaluator/src/policy_artifacthub.rs, parse_links); no release uploads that file,
# so the link is pointed at the pushed module. Its install text runs `kwctl scaffold manifest`
# without --allow-context-aware, which drops contextAwareResources (crates/kwctl/src/scaffold/manifest.rs).
artifacthub: annotate artifacthub-readme ## Regenerate artifacthub/ (artifacthub-pkg.yml from the annotated module, README.md) (needs kwctl)
	set -o pipefail; { printf '%s\n' "$$ARTIFACTHUB_HEADER"; \
	  $(KWCTL) scaffold artifacthub --metadata-path policy/metadata.yml \
	    --questions-path policy/questions-ui.yml \
	  | sed -e '1,/^#   kwctl scaffold artifacthub/d' \
	    -e 's#^\( *url: \).*/releases/download/.*/policy\.wasm$$#\1registry://$(POLICY_OCI)#' \
	    -e 's#kwctl scaffold manifest -t ClusterAdmissionPolicy#kwctl scaffold manifest --allow-context-aware -t ClusterAdmissionPolicy#'; \
	} > artifacthub/artifacthub-pkg.yml.tmp
	mv artifacthub/artifacthub-pkg.yml.tmp artifacthub/artifacthub-pkg.yml
