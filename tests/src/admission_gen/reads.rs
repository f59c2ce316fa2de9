//! The rule model's reads of a request and its objects, lenient the way the policy reads them,
//! and which JSONPatch operations a claim may contain.

use gastown_crds::Automaton;
use gastown_crds::contract::{
    CLAIM_REQUEST_ANNOTATION, CLAIM_REQUESTED_BY_ANNOTATION, CLAIMED_AT_ANNOTATION, CLAIMED_BY_LABEL, RELEASE_FINALIZER,
};
use json_patch::PatchOperation;
use kube::Resource as _;
use serde_json::Value;

/// The status fields only the controller writes, spelled again on purpose: the policy reads
/// `contract::CONTROLLER_STATUS_FIELDS`, and this independent copy catches a change there.
pub const CONTROLLER_STATUS: [&str; 2] = ["claim", "gastown"];
/// The phases only the controller writes, as their wire strings (an independent copy of
/// `contract::CONTROLLER_PHASES`).
pub const CONTROLLER_PHASES: [&str; 3] = ["Claimed", "Dispatched", "Released"];

/// The JSON pointers of the fields a mutation may set, spelled out as the JSONPatch carries
/// them (an independent check of the claim keys' escaping).
pub const CLAIM_PATHS: [&str; 5] = [
    "/metadata/labels/gastown.io~1claimed-by",
    "/metadata/annotations/gastown.io~1claimed-at",
    "/metadata/annotations/gastown.io~1claim-requested-by",
    "/spec/executionMode",
    "/spec/rig",
];

/// Lenient reads of a request, mirroring how the policy reads it.
pub(super) struct Req<'a>(pub(super) &'a Value);

impl<'a> Req<'a> {
    fn str_or_empty(v: Option<&'a Value>) -> Option<&'a str> {
        match v {
            None | Some(Value::Null) => Some(""),
            Some(Value::String(s)) => Some(s),
            Some(_) => None,
        }
    }
    pub(super) fn operation(&self) -> Option<&'a str> {
        Self::str_or_empty(self.0.get("operation"))
    }
    pub(super) fn sub_resource(&self) -> Option<&'a str> {
        Self::str_or_empty(self.0.get("subResource"))
    }
    pub(super) fn is_automatons(&self) -> bool {
        let r = self.0.get("resource");
        Self::str_or_empty(r.and_then(|r| r.get("group"))) == Some(&*Automaton::group(&()))
            && Self::str_or_empty(r.and_then(|r| r.get("resource"))) == Some(&*Automaton::plural(&()))
            && r.is_some_and(Value::is_object)
    }
    pub(super) fn username(&self) -> Option<&'a str> {
        Self::str_or_empty(self.0.get("userInfo").and_then(|u| u.get("username")))
    }
    pub(super) fn groups(&self) -> Vec<&'a str> {
        self.0
            .get("userInfo")
            .and_then(|u| u.get("groups"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }
    pub(super) fn object(&self) -> &'a Value {
        self.0.get("object").unwrap_or(&Value::Null)
    }
    pub(super) fn old(&self) -> &'a Value {
        self.0.get("oldObject").unwrap_or(&Value::Null)
    }
}

pub(super) fn meta_str<'a>(o: &'a Value, map: &str, key: &str) -> Option<&'a str> {
    o.get("metadata")?
        .as_object()?
        .get(map)?
        .as_object()?
        .get(key)?
        .as_str()
}

pub(super) fn has_meta_key(o: &Value, map: &str, key: &str) -> bool {
    o.get("metadata")
        .and_then(Value::as_object)
        .and_then(|m| m.get(map))
        .and_then(Value::as_object)
        .is_some_and(|m| m.contains_key(key))
}

/// Whether the policy can read `o`'s metadata: an object whose `metadata` is absent, `null` or
/// an object, with `labels` and `annotations` absent, `null` or maps of strings.
pub(super) fn readable_meta(o: &Value) -> bool {
    let string_map = |v: Option<&Value>| match v {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.values().all(Value::is_string),
        Some(_) => false,
    };
    match o.as_object().map(|m| m.get("metadata")) {
        None => false,
        Some(None | Some(Value::Null)) => true,
        Some(Some(Value::Object(m))) => string_map(m.get("labels")) && string_map(m.get("annotations")),
        Some(Some(_)) => false,
    }
}

/// Whether `o` carries the claim label (whoever the claimer).
pub(super) fn is_claimed(o: &Value) -> bool {
    has_meta_key(o, "labels", CLAIMED_BY_LABEL)
}

pub(super) fn marks(o: &Value) -> [Option<&str>; 3] {
    [
        meta_str(o, "labels", CLAIMED_BY_LABEL),
        meta_str(o, "annotations", CLAIMED_AT_ANNOTATION),
        meta_str(o, "annotations", CLAIM_REQUESTED_BY_ANNOTATION),
    ]
}

/// Whether `o` carries any of the three claim marks as a key (of any type).
pub(super) fn has_any_mark(o: &Value) -> bool {
    has_meta_key(o, "labels", CLAIMED_BY_LABEL)
        || has_meta_key(o, "annotations", CLAIMED_AT_ANNOTATION)
        || has_meta_key(o, "annotations", CLAIM_REQUESTED_BY_ANNOTATION)
}

pub(super) fn claim_annotation(o: &Value) -> Option<&str> {
    meta_str(o, "annotations", CLAIM_REQUEST_ANNOTATION)
}

pub(super) fn spec_field<'a>(o: &'a Value, name: &str) -> Option<&'a Value> {
    o.get("spec")?.get(name)
}

pub(super) fn requests_claim(o: &Value) -> bool {
    spec_field(o, "executionMode").and_then(Value::as_str) == Some("local") || claim_annotation(o) == Some("local")
}

pub(super) fn phase(o: &Value) -> Option<&str> {
    o.get("status")?.as_object()?.get("phase")?.as_str()
}

/// `status.<name>`, `None` when absent or `null`.
pub(super) fn status_field<'a>(o: &'a Value, name: &str) -> Option<&'a Value> {
    o.get("status")?.as_object()?.get(name).filter(|v| !v.is_null())
}

pub(super) fn has_release_finalizer(o: &Value) -> bool {
    o.get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|x| x.as_str() == Some(RELEASE_FINALIZER)))
}

/// Why one JSONPatch operation of a mutation is not allowed (`None`: allowed). Allowed: `add`
/// or `replace` of the five claim fields, and `add`/`replace` of `metadata`, `labels`,
/// `annotations` or `spec` where the original has none (absent or `null`), holding only claim
/// fields.
pub fn patch_op_violation(original: &Value, op: &PatchOperation) -> Option<String> {
    let path = op.path().to_string();
    let value = match op {
        PatchOperation::Add(a) => &a.value,
        PatchOperation::Replace(r) => &r.value,
        other => return Some(format!("patch operation {other} is not an add or replace")),
    };
    if CLAIM_PATHS.contains(&path.as_str()) {
        return (!value.is_string()).then(|| format!("{path} set to a non-string {value}"));
    }
    fn only(value: &Value, keys: &[&str]) -> bool {
        value
            .as_object()
            .is_some_and(|m| m.keys().all(|k| keys.contains(&k.as_str())))
    }
    const ANNOTATIONS: [&str; 2] = [CLAIMED_AT_ANNOTATION, CLAIM_REQUESTED_BY_ANNOTATION];
    let claim_only = match path.as_str() {
        "/metadata/labels" => only(value, &[CLAIMED_BY_LABEL]),
        "/metadata/annotations" => only(value, &ANNOTATIONS),
        "/spec" => only(value, &["executionMode", "rig"]),
        "/metadata" => {
            only(value, &["labels", "annotations"])
                && value.get("labels").is_none_or(|l| only(l, &[CLAIMED_BY_LABEL]))
                && value.get("annotations").is_none_or(|a| only(a, &ANNOTATIONS))
        }
        _ => return Some(format!("patch touches {path}, which is not a claim field")),
    };
    if !claim_only {
        return Some(format!(
            "patch sets {path} to {value}, which holds more than claim fields"
        ));
    }
    if !matches!(original.pointer(&path), None | Some(Value::Null)) {
        return Some(format!("patch replaces the existing {path}"));
    }
    None
}
