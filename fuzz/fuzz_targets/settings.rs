//! Fuzzes `gastown_policy::validate_settings_payload` and checks that `validate` agrees with
//! it (valid settings are never reported as a misconfiguration, invalid ones always are).
#![no_main]

use libfuzzer_sys::{fuzz_mutator, fuzz_target, fuzzer_mutate};

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = gastown_policy_fuzz::run_settings(data) {
        panic!("invariant violated: {violation}");
    }
});

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    gastown_policy_fuzz::mutate_in_place(data, size, max_size, seed, false)
        .unwrap_or_else(|| fuzzer_mutate(data, size, max_size))
});
