//! Fuzzes `gastown_policy::validate_payload` (the `validate` waPC function, natively) with a
//! fixed `now` and a ledger chosen by the input's first byte. See gastown_policy_fuzz for the
//! input format and the invariants.
#![no_main]

use libfuzzer_sys::{fuzz_mutator, fuzz_target, fuzzer_mutate};

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = gastown_policy_fuzz::run_validate(data) {
        panic!("invariant violated: {violation}");
    }
});

// Three mutations in four are JSON-aware (values the policy reads, wrong types, copied
// subtrees); the rest, and inputs that are not JSON, get libFuzzer's byte mutations.
fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    gastown_policy_fuzz::mutate_in_place(data, size, max_size, seed, true)
        .unwrap_or_else(|| fuzzer_mutate(data, size, max_size))
});
