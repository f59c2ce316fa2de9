//! The Automatons the generator puts into requests: random ones, claim requests as users write
//! them, claimed ones, and the marks and status fields others must not forge.

use gastown_crds::contract::{
    CLAIM_REQUEST_ANNOTATION, CLAIM_REQUESTED_BY_ANNOTATION, CLAIMED_AT_ANNOTATION, CLAIMED_BY_LABEL, DEFAULT_CLAIMER,
    RELEASE_FINALIZER,
};
use serde_json::{Map, Value, json};

use super::corrupt::remove_at;
use super::generator::AdmissionGen;
use super::values::{BEAD_ID_INJECTIONS, INJECTIONS, PHASES, SAFE_FLOATS};
use crate::fixtures::{CLAIM_TIME, admission_automaton, claimed_json};

impl AdmissionGen {
    /// A random Automaton: execution mode, claim request, rig, forge, bead, phase, extras.
    pub(super) fn random_automaton(&mut self) -> Value {
        let name = if self.rng.one_in(10) {
            self.string_value()
        } else {
            "fix-login".to_string()
        };
        let mut o = admission_automaton(&name);
        self.draw_claim_fields(&mut o);
        self.draw_work_fields(&mut o);
        if self.rng.percent(40) {
            o["status"] = json!({"phase": self.rng.pick(PHASES)});
            if self.rng.one_in(4) {
                self.controller_status(&mut o);
            }
        }
        if self.rng.one_in(8) {
            o["metadata"]["finalizers"] = json!([RELEASE_FINALIZER]);
        }
        if self.rng.one_in(10) {
            self.forge_marks(&mut o);
        }
        self.draw_oddities(&mut o);
        o
    }

    /// `spec.executionMode`, the claim request annotation and `spec.rig`, right or wrong.
    fn draw_claim_fields(&mut self, o: &mut Value) {
        let mode = match self.rng.below(12) {
            0..=3 => None,
            4..=6 => Some(json!("local")),
            7..=8 => Some(json!("kubernetes")),
            9 => Some(Value::Null),
            _ => Some(json!(self.string_value())),
        };
        if let Some(mode) = mode {
            o["spec"]["executionMode"] = mode;
        }
        match self.rng.below(12) {
            0..=6 => {}
            7..=9 => o["metadata"]["annotations"][CLAIM_REQUEST_ANNOTATION] = json!("local"),
            _ => {
                let v = self
                    .rng
                    .pick(&[
                        "Local",
                        "LOCAL",
                        "true",
                        "",
                        "local ",
                        " local",
                        "kubernetes",
                        "l\u{43e}cal",
                    ])
                    .to_string();
                o["metadata"]["annotations"][CLAIM_REQUEST_ANNOTATION] = json!(v);
            }
        }
        match self.rng.below(10) {
            0..=4 => {}
            5..=6 => o["spec"]["rig"] = json!(self.rng.pick(&["gastown", "webrig", "Rig_2", "a", "h", "hqx"])),
            7 => o["spec"]["rig"] = json!(""),
            8 => o["spec"]["rig"] = json!(self.rng.pick(INJECTIONS)),
            _ => o["spec"]["rig"] = json!(self.string_value()),
        }
    }

    /// `spec.forge` and `spec.task.beadId`, right or wrong.
    fn draw_work_fields(&mut self, o: &mut Value) {
        match self.rng.below(10) {
            0..=5 => {}
            6 => remove_at(o, "/spec", "forge"),
            7 => o["spec"]["forge"] = json!("other-forge"),
            8 => o["spec"]["forge"] = Value::Null,
            _ => o["spec"]["forge"] = json!(self.string_value()),
        }
        match self.rng.below(10) {
            0..=6 => {}
            7 => o["spec"]["task"]["beadId"] = json!(self.rng.pick(&["go-7xq", "gt-a3f8.1", "hq-cv-x1"])),
            8 => o["spec"]["task"]["beadId"] = json!(self.rng.pick(BEAD_ID_INJECTIONS)),
            _ => o["spec"]["task"]["beadId"] = Value::Null,
        }
    }

    /// Claim-looking keys, numbers of every kind, and missing or `null` metadata maps and spec.
    fn draw_oddities(&mut self, o: &mut Value) {
        if self.rng.one_in(12) {
            // Claim-looking keys that are not the claim keys.
            let key = *self.rng.pick(&[
                "gastown.io/Claimed-By",
                "gastown.io/claimed-by ",
                "gastown.io/claimed_by",
                "gastown.io/claimedby",
                "x.gastown.io/claimed-by",
                "gastown.io/claimed-by/x",
            ]);
            if let Some(l) = labels_mut(o) {
                l.insert(key.to_string(), json!(DEFAULT_CLAIMER));
            }
        }
        if self.rng.one_in(15) {
            // Numbers of every kind in an untouched field.
            let f = if self.options.arbitrary_floats {
                f64::from_bits(self.rng.next_u64() & 0x7fef_ffff_ffff_ffff)
            } else {
                *self.rng.pick(SAFE_FLOATS)
            };
            o["spec"]["futureField"]["numbers"] = json!([0, -1, u64::MAX, i64::MIN, 1.5, 1e300, -0.0, f]);
        }
        match self.rng.below(25) {
            0 => remove_at(o, "/metadata", "labels"),
            1 => o["metadata"]["labels"] = Value::Null,
            2 => remove_at(o, "/metadata", "annotations"),
            3 => o["metadata"]["annotations"] = Value::Null,
            4 => remove_at(o, "", "metadata"),
            5 => remove_at(o, "", "spec"),
            6 => o["spec"] = Value::Null,
            7 => o["metadata"] = Value::Null,
            _ => {}
        }
    }

    /// Adds one or more claim marks with right or wrong values.
    pub(super) fn forge_marks(&mut self, o: &mut Value) {
        let value = match self.rng.below(6) {
            0 => DEFAULT_CLAIMER.to_string(),
            1 => "other-town".to_string(),
            2 => "Gastown-Local".to_string(),
            3 => String::new(),
            4 => "town-2".to_string(),
            _ => self.string_value(),
        };
        let which = 1 + self.rng.below(7);
        if which & 1 != 0 {
            o["metadata"]["labels"][CLAIMED_BY_LABEL] = json!(value);
        }
        if which & 2 != 0 {
            o["metadata"]["annotations"][CLAIMED_AT_ANNOTATION] = json!(CLAIM_TIME);
        }
        if which & 4 != 0 {
            o["metadata"]["annotations"][CLAIM_REQUESTED_BY_ANNOTATION] = json!("alice");
        }
    }

    /// Puts fields only the controller writes into the status: a bead (maybe another team's),
    /// the claim as the controller saw it, or both.
    pub(super) fn controller_status(&mut self, o: &mut Value) {
        if !o.get("status").is_some_and(Value::is_object) {
            o["status"] = json!({});
        }
        match self.rng.below(4) {
            0 => o["status"]["claim"] = json!({"claimedBy": DEFAULT_CLAIMER, "requestedBy": "alice"}),
            1 => o["status"]["gastown"] = Value::Null,
            _ => {
                o["status"]["gastown"] = json!({
                    "beadId": self.rng.pick(&["gt-a3f8", "gt-team7.3", "go-7xq"]),
                    "beadCreated": self.rng.percent(50),
                })
            }
        }
    }

    /// An Automaton that asks for a claim the way users do (mode local or the annotation,
    /// a valid or no rig, no forged marks), so that many cases reach the claim itself.
    pub(super) fn claim_request(&mut self) -> Value {
        let mut o = admission_automaton("fix-login");
        match self.rng.below(4) {
            0 => o["spec"]["executionMode"] = json!("local"),
            1 => o["metadata"]["annotations"][CLAIM_REQUEST_ANNOTATION] = json!("local"),
            2 => {
                // A town by name (of the single-town or three-town settings, or none).
                let town = *self
                    .rng
                    .pick(&[DEFAULT_CLAIMER, "town-alice", "town-bob", "town-carol", "town-zed"]);
                o["metadata"]["annotations"][CLAIM_REQUEST_ANNOTATION] = json!(town);
            }
            _ => {
                o["spec"]["executionMode"] = json!("local");
                o["metadata"]["annotations"][CLAIM_REQUEST_ANNOTATION] = json!("local");
            }
        }
        match self.rng.below(4) {
            0 => {
                o["spec"]["rig"] = json!(
                    self.rng
                        .pick(&["gastown", "webrig", "Rig_2", "api", "docs", "payments"])
                )
            }
            1 => remove_at(&mut o, "/spec", "forge"),
            2 => o["spec"]["forge"] = json!("other-forge"),
            _ => {}
        }
        if self.rng.one_in(4) {
            o["spec"]["task"]["beadId"] = json!("go-7xq");
        }
        if self.rng.one_in(5) {
            o["status"] = json!({"phase": self.rng.pick(&["Pending", "Claimed", "Dispatched"])});
        }
        o
    }

    /// An Automaton claimed by `claimer` (mostly) or by another or odd claimer.
    pub(super) fn claimed_automaton(&mut self, claimer: &str) -> Value {
        let holder = match self.rng.below(10) {
            0..=6 => claimer.to_string(),
            7 => self
                .rng
                .pick(&["other-town", "town-alice", "town-bob", "town-carol"])
                .to_string(),
            8 => "Gastown-Local".to_string(),
            _ => self.string_value(),
        };
        let rig = self.rng.pick(&["gastown", "webrig"]).to_string();
        let mut o = claimed_json(admission_automaton("fix-login"), &holder, "alice", &rig);
        if self.rng.percent(40) {
            o["metadata"]["annotations"][CLAIM_REQUEST_ANNOTATION] = json!("local");
        }
        if self.rng.percent(60) {
            o["status"] = json!({"phase": self.rng.pick(PHASES)});
        }
        if self.rng.percent(50) {
            o["metadata"]["finalizers"] = json!([RELEASE_FINALIZER]);
        }
        o
    }
}

/// `o` without its claim marks.
pub(super) fn strip_marks(mut o: Value) -> Value {
    remove_at(&mut o, "/metadata/labels", CLAIMED_BY_LABEL);
    remove_at(&mut o, "/metadata/annotations", CLAIMED_AT_ANNOTATION);
    remove_at(&mut o, "/metadata/annotations", CLAIM_REQUESTED_BY_ANNOTATION);
    o
}

fn labels_mut(object: &mut Value) -> Option<&mut Map<String, Value>> {
    object.get_mut("metadata")?.get_mut("labels")?.as_object_mut()
}
