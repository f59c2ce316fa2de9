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
    if !seed.is_multiple_of(4)
        && let Some(out) = gastown_policy_fuzz::mutate_json(&data[..size], seed, false)
        && out.len() <= max_size
    {
        data[..out.len()].copy_from_slice(&out);
        return out.len();
    }
    fuzzer_mutate(data, size, max_size)
});
