//! Adversarial requests through the compiled policy (`policy/policy.wasm` in waPC/wasmtime, as
//! policy-server runs it), and injection attempts against the policy's validation and the Gas
//! Town client's argv building.
//!
//! Policy: forged claim marks (CREATE and UPDATE), claim hijack by a second claimer, status
//! spoofing, claims by unauthorized users, changes to claimed work by anyone but the controller,
//! controller look-alike identities, injection through `spec.rig` and `spec.task.beadId`, and
//! with several towns: other towns' controllers and orphaned claims.
//! Client: the public validation API and the exec and proxy transports with hostile values.

// A test crate: panicking on setup failures is the point.
#![allow(clippy::unwrap_used)]

mod claimed_work;
mod client;
mod forged_marks;
mod harness;
mod identities;
mod injection;
mod status;
mod towns;

use std::path::Path;

use gastown_tests::policy_host::default_module_path;

#[test]
fn module_path_is_the_compiled_policy() {
    // The adversarial tests must run against the module `make policy` builds.
    assert!(Path::new(&default_module_path()).exists(), "run `make policy` first");
}
