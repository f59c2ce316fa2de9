# Fuzzing targets, included from the Makefile (`include fuzz/fuzz.mk`).
#
#   make fuzz         libFuzzer (cargo-fuzz, nightly) on the policy's native entry points for
#                     FUZZ_SECONDS (validate) and FUZZ_SETTINGS_SECONDS (settings), then
#                     FUZZ_REQUESTS generated AdmissionRequests through the compiled module
#                     (tests/tests/policy_fuzz.rs in release mode, seed FUZZ_SEED).
#   make fuzz-smoke   the same, briefly (a minute or two once built).
#
# Crashes land in fuzz/artifacts/<target>/; `python3 fuzz/artifact_to_fixture.py <file>` turns a
# `validate` one into a fixture skeleton for policy/test_data/cases/regression-*.json. A failing
# generated request is written to target/policy-fuzz-failures/ and replays with the
# GASTOWN_FUZZ_SEED / GASTOWN_FUZZ_CASE values printed with it.

FUZZ_SECONDS ?= 300
FUZZ_SETTINGS_SECONDS ?= 60
FUZZ_REQUESTS ?= 1000000
# libFuzzer worker processes per target (-fork); 1 runs in-process.
FUZZ_JOBS ?= 1
# A fresh seed per run (printed, so a failure can be replayed); set it to repeat a run.
ifeq ($(origin FUZZ_SEED),undefined)
FUZZ_SEED := 0x$(shell od -An -N8 -tx8 /dev/urandom | tr -d ' \n')
endif
FUZZ_MAX_LEN ?= 65536
FUZZ_FLAGS = -dict=fuzz/policy.dict -max_len=$(FUZZ_MAX_LEN) -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 $(if $(filter-out 1,$(FUZZ_JOBS)),-fork=$(FUZZ_JOBS))

.PHONY: fuzz fuzz-smoke fuzz-corpus fuzz-tools fuzz-libfuzzer

fuzz-tools:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@$(CARGO) +nightly fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz

fuzz-corpus: ## Build the fuzz seed corpora from policy/test_data (fuzz/corpus/, not committed)
	python3 fuzz/seed_corpus.py

fuzz-libfuzzer: fuzz-tools fuzz-corpus
	$(CARGO) +nightly fuzz run -O validate fuzz/corpus/validate -- $(FUZZ_FLAGS) -max_total_time=$(FUZZ_SECONDS)
	$(CARGO) +nightly fuzz run -O settings fuzz/corpus/settings -- $(FUZZ_FLAGS) -max_total_time=$(FUZZ_SETTINGS_SECONDS)

fuzz: policy fuzz-libfuzzer ## Fuzz the policy: libFuzzer on validate/settings (FUZZ_SECONDS), then 1,000,000 generated requests through policy.wasm
	@echo "==> $(FUZZ_REQUESTS) generated AdmissionRequests through $(POLICY_WASM) (seed $(FUZZ_SEED), release build)"
	GASTOWN_FUZZ_REQUESTS=$(FUZZ_REQUESTS) GASTOWN_FUZZ_SEED=$(FUZZ_SEED) \
		$(CARGO) test --release --workspace --test policy_fuzz -- --nocapture generated_admission_requests

fuzz-smoke: FUZZ_SECONDS = 30
fuzz-smoke: FUZZ_SETTINGS_SECONDS = 15
fuzz-smoke: policy fuzz-libfuzzer ## Short fuzzing run: 30 s libFuzzer per target and 20,000 generated requests (dev build)
	GASTOWN_FUZZ_REQUESTS=20000 GASTOWN_FUZZ_SEED=$(FUZZ_SEED) \
		$(CARGO) test --workspace --test policy_fuzz -- --nocapture generated_admission_requests
