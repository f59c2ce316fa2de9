# A real kube-apiserver (v1.20.2, etcd, no nodes) for local runs and tests.
# Included from the main Makefile. The first `cluster-up` on a machine builds kube-apiserver
# from Debian's source package (about 6-10 minutes), later ones start in seconds.
#
#   make cluster-up                    # then: export KUBECONFIG=$(CLUSTER_DIR)/kubeconfig
#   GASTOWN_TEST_CLUSTER_DIR=$(CLUSTER_DIR) cargo test --workspace --test cluster
#   make cluster-down
#
# With a node (pods really run: kubelet on Debian's docker, kube-proxy, controller-manager,
# scheduler; root needed; the first run also builds the node binaries, about 2-7 minutes):
#   make cluster-node-up               # then: export KUBECONFIG=$(NODE_CLUSTER_DIR)/kubeconfig
#   make cluster-node-down

CLUSTER_DIR ?= $(CURDIR)/.cluster
NODE_CLUSTER_DIR ?= $(CURDIR)/.cluster/node
CLUSTER_SH := $(dir $(lastword $(MAKEFILE_LIST)))cluster.sh

.PHONY: cluster-up cluster-down cluster-restart-apiserver cluster-build cluster-node-up cluster-node-down cluster-build-node

cluster-up: ## Start etcd + kube-apiserver in $(CLUSTER_DIR) and print the KUBECONFIG export line
	@bash $(CLUSTER_SH) up $(CLUSTER_DIR)
	@bash $(CLUSTER_SH) env $(CLUSTER_DIR)

cluster-down: ## Stop the kube-apiserver and etcd started by cluster-up (safe to repeat)
	@bash $(CLUSTER_SH) down $(CLUSTER_DIR)

cluster-restart-apiserver: ## Restart kube-apiserver in $(CLUSTER_DIR) on the same port, etcd data kept
	@bash $(CLUSTER_SH) restart-apiserver $(CLUSTER_DIR)

cluster-build: ## Only build and cache kube-apiserver (once per machine; times in bench/README.md)
	@bash $(CLUSTER_SH) build

cluster-node-up: ## Start a cluster with a node (pods run on Debian's docker) in $(NODE_CLUSTER_DIR); needs root
	@bash $(CLUSTER_SH) up $(NODE_CLUSTER_DIR) --node
	@bash $(CLUSTER_SH) env $(NODE_CLUSTER_DIR)

cluster-node-down: ## Stop the node cluster, remove its pods' containers, mounts and iptables chains (safe to repeat)
	@bash $(CLUSTER_SH) down $(NODE_CLUSTER_DIR)

cluster-build-node: ## Only build and cache kube-apiserver and the node binaries (once per machine; times in bench/README.md)
	@bash $(CLUSTER_SH) build --node
