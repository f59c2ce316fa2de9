# Chaos test of the controller (controller/tests/chaos/), included from the main Makefile.
# A private kube-apiserver (restarted during the run), two controller replicas with leader
# election (SIGKILLed four times), and the fake Gas Town failing 20 % and hanging 5 % of the
# gt/bd calls, and failing, hanging or being killed after doing the work in 15 % of the
# `bd create`/`gt sling` calls, in a town with 60 other beads of a higher priority than the
# controller's (more than `bd list`'s default limit of 50); the same workload runs fault-free
# first and both timings are printed as a table.
# `cargo test` runs the same test with 30 claims.
#
#   make chaos                               # 200 claims (about 4-5 minutes on 2 cores)
#   make chaos CHAOS_CLAIMS=50               # another size
#   make chaos CHAOS_SEED=1795888862862162430   # replay the random points of a failed run
#   FAKE_GASTOWN_KEEP=1 make chaos           # keep the fake towns (call logs, controller logs)

CARGO ?= cargo
CHAOS_CLAIMS ?= 200
CHAOS_SEED ?=

.PHONY: chaos

chaos: ## Chaos test: 200 claims through API server restart, SIGKILLs, leader loss, failing/hanging gt/bd (also after the work), > 50 other beads
	$(CARGO) build --workspace --bins
	GASTOWN_CHAOS_CLAIMS=$(CHAOS_CLAIMS) $(if $(CHAOS_SEED),GASTOWN_CHAOS_SEED=$(CHAOS_SEED)) \
		$(CARGO) test --workspace --test chaos -- --nocapture
