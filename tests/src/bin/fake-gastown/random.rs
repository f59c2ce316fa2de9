//! Randomness of the fake: per-call random bits, reproducible bits for seeded faults, and
//! bd-style base-36 IDs.

use std::collections::hash_map::{DefaultHasher, RandomState};
use std::hash::{BuildHasher, Hash, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

/// A random number, different in every process and call (std's randomly keyed SipHash).
pub fn random_u64(salt: u64) -> u64 {
    let mut h = RandomState::new().build_hasher();
    salt.hash(&mut h);
    std::process::id().hash(&mut h);
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
        .hash(&mut h);
    h.finish()
}

/// A reproducible number for (seed, call sequence number).
pub fn seeded_u64(seed: u64, seq: u64) -> u64 {
    let mut h = DefaultHasher::new();
    seed.hash(&mut h);
    seq.hash(&mut h);
    h.finish()
}

/// A number in [0, 1) from 64 random bits.
pub fn unit_interval(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// `len` lowercase base-36 characters from `bits`.
pub fn base36(mut bits: u64, len: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    (0..len)
        .map(|_| {
            let c = DIGITS[(bits % 36) as usize] as char;
            bits /= 36;
            c
        })
        .collect()
}
