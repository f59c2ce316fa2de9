//! What the fuzz targets assert about the policy's answers, and a JSON-aware mutator.
//!
//! Input format of the `validate` target: one header byte that sets the fake claim ledger
//! ([`ledger_from_byte`]), then the `validate` payload (`{"settings": ..., "request": ...}`).
//! The seed corpus (`make fuzz-corpus`, fuzz/seed_corpus.py) is built from
//! policy/test_data/cases/*.json in that format.

mod invariants;
mod mutator;

pub use invariants::{
    FuzzLedger, check_mutation, check_validate_answer, ledger_from_byte, probe_request, run_settings, run_validate,
    split_input, strip_claim_fields,
};
pub use mutator::{mutate_in_place, mutate_json};

/// The fixed claim time given to the policy.
pub const NOW: &str = "2026-11-28T17:00:00Z";

#[cfg(test)]
mod tests {
    use gastown_crds::contract::{CLAIM_REQUESTED_BY_ANNOTATION, CLAIMED_AT_ANNOTATION, CLAIMED_BY_LABEL};
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn mutation_checker_accepts_only_claim_fields() {
        let original = json!({"metadata": {"name": "a"}, "spec": {"task": {"title": "t"}}});
        let mut good = original.clone();
        good["metadata"]["labels"] = json!({CLAIMED_BY_LABEL: "gastown-local"});
        good["metadata"]["annotations"] = json!({CLAIMED_AT_ANNOTATION: NOW, CLAIM_REQUESTED_BY_ANNOTATION: "alice"});
        good["spec"]["executionMode"] = json!("local");
        good["spec"]["rig"] = json!("gastown");
        check_mutation(&original, &good, "gastown-local", "alice", Some(NOW)).unwrap();
        let mut bad = good.clone();
        bad["spec"]["task"]["title"] = json!("changed");
        assert!(check_mutation(&original, &bad, "gastown-local", "alice", Some(NOW)).is_err());
        let mut bad = good.clone();
        bad["metadata"]["labels"]["extra"] = json!("x");
        assert!(check_mutation(&original, &bad, "gastown-local", "alice", Some(NOW)).is_err());
        let mut bad = good;
        bad["spec"]["rig"] = json!("a;b");
        assert!(check_mutation(&original, &bad, "gastown-local", "alice", Some(NOW)).is_err());
        // Created containers: `spec` and `metadata` absent or null in the original.
        let original = json!({"metadata": null});
        let good = json!({
            "metadata": {"labels": {CLAIMED_BY_LABEL: "c"}, "annotations": {CLAIMED_AT_ANNOTATION: NOW, CLAIM_REQUESTED_BY_ANNOTATION: "u"}},
            "spec": {"executionMode": "local", "rig": "r"}
        });
        check_mutation(&original, &good, "c", "u", Some(NOW)).unwrap();
    }

    #[test]
    fn seeds_from_the_fixtures_pass() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy/test_data/cases");
        for entry in std::fs::read_dir(dir).unwrap() {
            let case: Value = serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
            let payload = json!({"settings": case["settings"], "request": case["request"]}).to_string();
            for header in [0u8, 1, 2, 0x7f, 0x80, 0xfe, 0xff] {
                let mut input = vec![header];
                input.extend_from_slice(payload.as_bytes());
                run_validate(&input).unwrap();
                for seed in 0..20 {
                    if let Some(m) = mutate_json(&input, seed, true) {
                        run_validate(&m).unwrap();
                    }
                }
            }
            run_settings(case["settings"].to_string().as_bytes()).unwrap();
        }
    }
}
