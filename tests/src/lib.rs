//! Test support for gastown-operator's end-to-end tests: the waPC host that runs the compiled
//! policy, the real test cluster, and the fake Gas Town.

pub mod admission_gen;
pub mod cluster;
pub mod controller_env;
pub mod controller_process;
pub mod fake_gastown;
pub mod fixtures;
pub mod policy_host;
pub mod rng;
pub mod stats;
pub mod status;
pub mod webhook;
