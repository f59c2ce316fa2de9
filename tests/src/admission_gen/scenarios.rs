//! The kinds of request the generator makes (see [`Scenario`]): creates, updates of unclaimed
//! and of claimed Automatons, status writes, deletes, other operations and other resources.

use gastown_crds::contract::{
    CLAIM_REQUEST_ANNOTATION, CLAIM_REQUESTED_BY_ANNOTATION, CLAIMED_AT_ANNOTATION, CLAIMED_BY_LABEL, RELEASE_FINALIZER,
};
use serde_json::{Value, json};

use super::Scenario;
use super::corrupt::remove_at;
use super::generator::AdmissionGen;
use super::objects::strip_marks;
use super::values::{BEAD_ID_INJECTIONS, PHASES};
use crate::fixtures::CLAIM_TIME;

impl AdmissionGen {
    /// One request of a drawn scenario.
    pub(super) fn scenario(&mut self, claimer: &str) -> (Scenario, Value) {
        match self.rng.below(100) {
            0..=29 => (Scenario::Create, self.create()),
            30..=51 => (Scenario::UpdateUnclaimed, self.update_unclaimed(claimer)),
            52..=73 => (Scenario::UpdateClaimed, self.update_claimed(claimer)),
            74..=83 => (Scenario::Status, self.status_update(claimer)),
            84..=90 => (Scenario::Delete, self.delete(claimer)),
            91..=95 => (Scenario::Other, self.other_operation(claimer)),
            _ => (Scenario::OtherResource, self.other_resource()),
        }
    }

    pub(super) fn create(&mut self) -> Value {
        let claim = self.rng.percent(40);
        let o = if claim {
            self.claim_request()
        } else {
            self.random_automaton()
        };
        let old = if self.rng.one_in(10) {
            self.random_automaton()
        } else {
            Value::Null
        };
        let mut req = self.request("CREATE", "", o, old);
        if claim && self.rng.percent(60) {
            self.authorized_user(&mut req);
        }
        req
    }

    fn update_unclaimed(&mut self, claimer: &str) -> Value {
        let old = strip_marks(self.random_automaton());
        let claim = self.rng.percent(30);
        let mut new = if claim {
            let mut n = self.claim_request();
            n["status"] = old.get("status").cloned().unwrap_or(Value::Null);
            n
        } else {
            old.clone()
        };
        for _ in 0..self.rng.below(4) {
            self.change_unclaimed(&mut new, claimer);
        }
        if claim && self.rng.one_in(4) {
            // A claim of an Automaton Gas Town released, or whose status someone planted.
            let mut stored = old.clone();
            stored["status"] = json!({"phase": self.rng.pick(&["Released", "Pending", "Claimed"])});
            if self.rng.percent(70) {
                self.controller_status(&mut stored);
            }
            new["status"] = stored["status"].clone();
            let mut req = self.request("UPDATE", "", new, stored);
            self.authorized_user(&mut req);
            return req;
        }
        if self.rng.one_in(10) {
            // Marks already on the stored object (without the label), kept by the update.
            let mut stored = old.clone();
            stored["metadata"]["annotations"][CLAIMED_AT_ANNOTATION] = json!(CLAIM_TIME);
            new["metadata"]["annotations"][CLAIMED_AT_ANNOTATION] = json!(CLAIM_TIME);
            return self.request("UPDATE", "", new, stored);
        }
        let mut req = self.request("UPDATE", "", new, old);
        if claim && self.rng.percent(60) {
            self.authorized_user(&mut req);
        }
        req
    }

    /// One change a user makes to an unclaimed Automaton.
    fn change_unclaimed(&mut self, new: &mut Value, claimer: &str) {
        match self.rng.below(11) {
            0 => new["metadata"]["annotations"][CLAIM_REQUEST_ANNOTATION] = json!("local"),
            1 => new["spec"]["executionMode"] = json!("local"),
            2 => self.forge_marks(new),
            3 => new["spec"]["rig"] = json!(self.string_value()),
            4 => new["spec"]["task"]["title"] = json!(self.string_value()),
            5 => new["metadata"]["labels"][CLAIMED_BY_LABEL] = json!(claimer),
            6 => new["spec"]["executionMode"] = json!("kubernetes"),
            7 => new["status"] = json!({"phase": self.rng.pick(PHASES)}),
            8 => new["metadata"]["finalizers"] = json!([RELEASE_FINALIZER]),
            9 => new["metadata"]["finalizers"] = json!([]),
            _ => *new = self.random_automaton(),
        }
    }

    fn update_claimed(&mut self, claimer: &str) -> Value {
        let old = self.claimed_automaton(claimer);
        let mut new = old.clone();
        for _ in 0..self.rng.below(4) {
            self.change_claimed(&mut new);
        }
        self.request("UPDATE", "", new, old)
    }

    /// One change to a claimed Automaton: its marks, its spec, its finalizers, or all of it.
    fn change_claimed(&mut self, new: &mut Value) {
        let label = |new: &Value| {
            new["metadata"]["labels"][CLAIMED_BY_LABEL]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        match self.rng.below(27) {
            20 => new["spec"]["timeoutSeconds"] = json!(self.rng.pick(&[999_999, 1, 0, -1])),
            21 => new["spec"]["agent"]["model"] = json!("sonnet"),
            22 => new["spec"]["mergeStrategy"] = json!(self.rng.pick(&["direct", "mr", "local"])),
            23 => new["spec"]["forge"] = json!("other-forge"),
            24 => new["metadata"]["finalizers"] = json!([RELEASE_FINALIZER, "example.com/keep"]),
            25 => new["metadata"]["finalizers"] = json!(["example.com/keep"]),
            26 => new["spec"]["futureField"] = json!({"kept": false}),
            0 => {
                new["metadata"]["labels"][CLAIMED_BY_LABEL] =
                    json!(self.rng.pick(&["other-town", "town-alice", "town-bob"]))
            }
            1 => new["metadata"]["labels"][CLAIMED_BY_LABEL] = json!(label(new).to_uppercase()),
            2 => new["metadata"]["labels"][CLAIMED_BY_LABEL] = json!(format!("{} ", label(new))),
            3 => remove_at(new, "/metadata/labels", CLAIMED_BY_LABEL),
            4 => new["metadata"]["annotations"][CLAIMED_AT_ANNOTATION] = json!("2030-01-01T00:00:00Z"),
            5 => remove_at(new, "/metadata/annotations", CLAIMED_AT_ANNOTATION),
            6 => new["metadata"]["annotations"][CLAIM_REQUESTED_BY_ANNOTATION] = json!("mallory"),
            7 => remove_at(new, "/metadata/annotations", CLAIM_REQUESTED_BY_ANNOTATION),
            8 => remove_at(new, "/metadata/annotations", CLAIM_REQUEST_ANNOTATION),
            9 => new["spec"]["rig"] = json!(self.string_value()),
            10 => new["spec"]["executionMode"] = json!("kubernetes"),
            11 => remove_at(new, "/spec", "executionMode"),
            12 => new["spec"]["task"]["title"] = json!("Something else"),
            13 => new["spec"]["task"]["beadId"] = json!(self.rng.pick(BEAD_ID_INJECTIONS)),
            14 => new["metadata"]["labels"]["app"] = json!("changed"),
            15 => new["metadata"]["finalizers"] = json!([]),
            16 => new["status"] = json!({"phase": "Succeeded"}),
            17 => new["metadata"]["labels"] = Value::Null,
            18 => remove_at(new, "", "metadata"),
            _ => *new = self.random_automaton(),
        }
    }

    fn status_update(&mut self, claimer: &str) -> Value {
        let mut old = match self.rng.below(4) {
            0 => strip_marks(self.random_automaton()),
            _ => self.claimed_automaton(claimer),
        };
        if self.rng.one_in(3) {
            // Released by Gas Town, or planted earlier.
            old["status"] = json!({"phase": self.rng.pick(&["Released", "Running", "Pending"])});
            self.controller_status(&mut old);
        }
        let mut new = old.clone();
        match self.rng.below(4) {
            // The executor's way: the controller's fields kept as they are.
            0 => {
                if !new.get("status").is_some_and(Value::is_object) {
                    new["status"] = json!({});
                }
                new["status"]["phase"] = json!(self.rng.pick(PHASES));
                new["status"]["message"] = json!("written by the executor");
            }
            _ => {
                new["status"] = json!({
                    "phase": self.rng.pick(PHASES),
                    "conditions": [{"type": "Completed", "status": "True", "reason": "Spoofed"}]
                });
                if self.rng.one_in(3) {
                    self.controller_status(&mut new);
                }
            }
        }
        if self.rng.one_in(4) {
            remove_at(&mut new, "/metadata/labels", CLAIMED_BY_LABEL);
        }
        self.request("UPDATE", "status", new, old)
    }

    fn delete(&mut self, claimer: &str) -> Value {
        let old = if self.rng.percent(60) {
            self.claimed_automaton(claimer)
        } else {
            self.random_automaton()
        };
        let object = if self.rng.percent(85) { Value::Null } else { old.clone() };
        let mut req = self.request("DELETE", "", object, old);
        if self.rng.one_in(3) {
            req["options"] =
                json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1", "propagationPolicy": "Background"});
        }
        req
    }

    fn other_operation(&mut self, claimer: &str) -> Value {
        let object = self.random_automaton();
        let old = self.claimed_automaton(claimer);
        match self.rng.below(6) {
            0 => self.request(
                "CONNECT",
                "",
                json!({"kind": "PodExecOptions", "command": ["sh", "-c", "id"]}),
                Value::Null,
            ),
            1 => self.request(
                "UPDATE",
                "scale",
                json!({"kind": "Scale", "spec": {"replicas": 3}}),
                json!({"kind": "Scale"}),
            ),
            2 => self.request("CREATE", "status", object, Value::Null),
            3 => {
                let op = *self
                    .rng
                    .pick(&["create", "Update", "PATCH", " CREATE", "UPDATE ", "GET", "\u{0}"]);
                self.request(op, "", object, old)
            }
            4 => self.request("UPDATE", "Status", object, old),
            _ => self.request("UPDATE", "finalizers", object, old),
        }
    }

    fn other_resource(&mut self) -> Value {
        let object = self.random_automaton();
        let mut req = self.request("CREATE", "", object, Value::Null);
        // Other resources and near misses of the Automaton resource, spelled out on purpose.
        let (g, r) = *self.rng.pick(&[
            ("apps", "deployments"),
            ("olympus.io", "forges"),
            ("Olympus.io", "automatons"),
            ("olympus.io", "Automatons"),
            ("olympus.io", "automaton"),
            ("", "automatons"),
            ("olympus.io ", "automatons"),
        ]);
        req["resource"]["group"] = json!(g);
        req["resource"]["resource"] = json!(r);
        req
    }
}
