# Benchmarks (bench/README.md). Included from the Makefile (`include bench/bench.mk`); uses its
# CARGO, WASM_TARGET and `policy` target.
#
#   make bench          release build; policy vs the baseline module, then the controller
#                       against a real kube-apiserver of its own; writes bench/results/*.json
#   make bench-smoke    dev profile, a few calls and a burst of 20: checks that the benchmark
#                       code works and writes its results to $(BENCH_SMOKE_DIR); asserts
#                       nothing about speed (scripts/test.sh runs it)
#
# Builds name the whole workspace (`--workspace --bins`), never `-p`: a `-p` build unifies
# features over fewer packages, so cargo would compile every dependency a second time beside
# `cargo test --workspace`'s copy (time, and gigabytes of disk on CI).
#
# Knobs: BENCH_NOTE="..." (recorded in the results), BENCH_BURSTS (default 100,500,2000),
# BENCH_TOWNS (town counts per burst, default 1,3: one town vs the same claims over three
# towns), BENCH_CACHED (default 5000), BENCH_SMOKE_DIR.

BENCH_RESULTS ?= bench/results
BENCH_SMOKE_DIR ?= target/bench-smoke
BENCH_BASELINE_WASM := target/bench-baseline/$(WASM_TARGET)/release/baseline_policy.wasm
BENCH_NOTE ?= 2-core machine shared with other jobs; see load_average_before/after
BENCH_BURSTS ?= 100,500,2000
BENCH_CACHED ?= 5000
BENCH_TOWNS ?= 1,3

.PHONY: bench bench-smoke bench-baseline

bench-baseline: ## Build the baseline policy module the benchmarks compare against (bench/baseline-policy)
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)
	$(CARGO) build --release --target $(WASM_TARGET) --manifest-path bench/baseline-policy/Cargo.toml \
		--target-dir target/bench-baseline
	@printf 'baseline module: %s bytes\n' "$$(stat -c %s $(BENCH_BASELINE_WASM))"

bench: policy bench-baseline ## Run every benchmark in release mode; print tables, write bench/results/{policy,controller}.json
	$(CARGO) build --release --workspace --bins
	target/release/bench-policy --baseline $(BENCH_BASELINE_WASM) \
		--out $(BENCH_RESULTS)/policy.json --note "$(BENCH_NOTE)" --command "make bench"
	env -u GASTOWN_TEST_CLUSTER_DIR target/release/bench-controller --bursts $(BENCH_BURSTS) \
		--towns $(BENCH_TOWNS) --cached $(BENCH_CACHED) --concurrency 16 --gastown-concurrency 8 --sync-interval 15s \
		--out $(BENCH_RESULTS)/controller.json --note "$(BENCH_NOTE)" --command "make bench"

bench-smoke: policy bench-baseline ## Check the benchmark code works (dev profile, tiny runs, results in target/bench-smoke)
	$(CARGO) build --workspace --bins
	target/debug/bench-policy --baseline $(BENCH_BASELINE_WASM) --rounds 2 --calls 100 \
		--fresh-calls 20 --warmup 5 --compiles 1 \
		--out $(BENCH_SMOKE_DIR)/smoke-policy.json --note "smoke (dev profile)" --command "make bench-smoke"
	target/debug/bench-controller --bursts 20 --towns 1,3 --cached 50 --sync-interval 2s \
		--out $(BENCH_SMOKE_DIR)/smoke-controller.json --note "smoke (dev profile)" --command "make bench-smoke"
	@printf 'bench-smoke: results in %s (speed is not checked)\n' "$(BENCH_SMOKE_DIR)"
