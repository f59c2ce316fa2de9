//! Injection through `spec.rig`, `spec.task.beadId`, Forge names and settings.

use gastown_tests::admission_gen::{BEAD_ID_INJECTIONS, INJECTIONS};
use gastown_tests::fixtures::{admission_automaton, claim_requested};
use gastown_tests::policy_host::ScriptedList;
use serde_json::json;
use std::sync::Arc;

use crate::harness::{Policy, create, local, module, update};

#[test]
fn injection_through_rig_and_bead_id_is_refused_by_the_policy() {
    let mut p = Policy::standard();
    let mut rigs: Vec<String> = INJECTIONS.iter().map(|s| (*s).to_string()).collect();
    rigs.extend([
        "a".repeat(65),
        "1gastown".to_string(),
        "_gastown".to_string(),
        "gastown\u{301}".to_string(),
        "gas\u{2028}town".to_string(),
    ]);
    for rig in &rigs {
        for (user, how) in [("alice", "CREATE"), ("alice", "UPDATE")] {
            let mut o = local(admission_automaton("fix-login"));
            o["spec"]["rig"] = json!(rig);
            let req = if how == "CREATE" {
                create(user, &[], o)
            } else {
                update(user, &[], o, admission_automaton("fix-login"))
            };
            p.refuses(
                &format!("{how} with spec.rig {rig:?}"),
                &req,
                400,
                &["spec.rig", "rig name"],
            );
        }
    }
    for id in BEAD_ID_INJECTIONS {
        let mut o = claim_requested(admission_automaton("fix-login"));
        o["spec"]["task"]["beadId"] = json!(id);
        p.refuses(
            &format!("spec.task.beadId {id:?}"),
            &create("alice", &[], o),
            400,
            &["spec.task.beadId"],
        );
    }
    // A hostile Forge name is never used as a rig: it maps to nothing, so the default rig is used.
    for forge in ["$(id)", "-rf", "../x", "web-forge;x"] {
        let mut o = local(admission_automaton("fix-login"));
        o["spec"]["forge"] = json!(forge);
        if let Some(patched) = p.claims(&format!("forge {forge:?}"), &create("alice", &[], o)) {
            assert_eq!(patched["spec"]["rig"], json!("gastown"), "forge {forge:?}");
        }
    }
    p.finish("injection_through_rig_and_bead_id_is_refused_by_the_policy");

    // Settings cannot smuggle them in either.
    let instance = module().instance(Arc::new(ScriptedList::new())).unwrap();
    for rig in &rigs {
        for settings in [json!({"defaultRig": rig}), json!({"forgeRigs": {"web-forge": rig}})] {
            let answer = instance.validate_settings(&settings).unwrap();
            assert_eq!(answer["valid"], json!(false), "{settings}: {answer}");
        }
    }
    for claimer in ["gas;town", "$(id)", "-town", "Town", "town\n", "t\u{43e}wn", "a.b"] {
        let answer = instance.validate_settings(&json!({"claimer": claimer})).unwrap();
        assert_eq!(answer["valid"], json!(false), "claimer {claimer:?}: {answer}");
    }
}
