//! The damage the generator does to some requests: 100 KB+ strings, values of the wrong JSON
//! type or removed at any depth, and malformed raw `validate` payloads.

use gastown_crds::contract::{CLAIM_REQUEST_ANNOTATION, CLAIMED_BY_LABEL};
use serde_json::{Map, Value, json};

use super::generator::{AdmissionGen, admission_request};
use crate::fixtures::admission_automaton;

impl AdmissionGen {
    /// A 100 KB+ string somewhere that matters.
    pub(super) fn put_huge_string(&mut self, req: &mut Value) {
        let len = 100_000 + self.rng.below(100_000);
        let unit = *self.rng.pick(&["x", "é", "🚀", "a;b$(id)", "\u{200b}", "local", "\n"]);
        let huge: String = unit.repeat(len / unit.len() + 1);
        let (claimed_by, claim) = (escape(CLAIMED_BY_LABEL), escape(CLAIM_REQUEST_ANNOTATION));
        let pointers = [
            "/object/spec/task/title".to_string(),
            "/object/spec/task/description".to_string(),
            "/object/spec/rig".to_string(),
            "/object/spec/executionMode".to_string(),
            "/object/metadata/name".to_string(),
            "/object/metadata/labels/app".to_string(),
            format!("/object/metadata/labels/{claimed_by}"),
            format!("/object/metadata/annotations/{claim}"),
            format!("/oldObject/metadata/labels/{claimed_by}"),
            "/userInfo/username".to_string(),
            "/namespace".to_string(),
            "/object/spec/forge".to_string(),
            "/object/spec/task/beadId".to_string(),
        ];
        let pointer: &String = self.rng.pick(&pointers);
        set_pointer(req, pointer, json!(huge));
        if self.rng.one_in(4) {
            // Many labels instead.
            if let Some(l) = req
                .pointer_mut("/object/metadata/labels")
                .and_then(Value::as_object_mut)
            {
                for i in 0..5_000 {
                    l.insert(format!("example.com/label-{i}"), json!(format!("value-{i}")));
                }
            }
        }
    }

    /// Replaces the value at a random path with one of another JSON type, or removes it.
    pub(super) fn corrupt(&mut self, req: &mut Value) {
        let mut paths = Vec::new();
        collect_pointers(req, String::new(), &mut paths);
        if paths.is_empty() {
            return;
        }
        // Favour the fields the policy reads.
        let interesting: Vec<&String> = paths
            .iter()
            .filter(|p| {
                [
                    "/operation",
                    "/subResource",
                    "/resource",
                    "/userInfo",
                    "/namespace",
                    "/labels",
                    "/annotations",
                    "/spec",
                    "/status",
                    "/metadata",
                ]
                .iter()
                .any(|k| p.contains(k))
            })
            .collect();
        let path = if !interesting.is_empty() && self.rng.percent(70) {
            interesting[self.rng.below(interesting.len())].clone()
        } else {
            paths[self.rng.below(paths.len())].clone()
        };
        if self.rng.one_in(3) {
            remove_pointer(req, &path);
            return;
        }
        let current_kind = req.pointer(&path).map(kind);
        for _ in 0..8 {
            let v = match self.rng.below(10) {
                0 => Value::Null,
                1 => json!(true),
                2 => json!(0),
                3 => json!(-1),
                4 => json!(1.5),
                5 => json!("string"),
                6 => json!([]),
                7 => json!({}),
                8 => json!([1, "a", null]),
                _ => json!({"a": 1}),
            };
            if Some(kind(&v)) != current_kind {
                set_pointer(req, &path, v);
                return;
            }
        }
    }

    /// A malformed or unusual raw `validate` payload.
    pub(super) fn raw_payload(&mut self, settings: &Value) -> Vec<u8> {
        let base = json!({"settings": settings, "request": self.create()}).to_string();
        match self.rng.below(14) {
            0 => (0..self.rng.below(300)).map(|_| self.rng.next_u64() as u8).collect(),
            1 => {
                let cut = self.rng.below(base.len());
                base.as_bytes()[..cut].to_vec()
            }
            2 => "[".repeat(10_000).into_bytes(),
            3 => format!(
                "{{\"settings\":null,\"request\":{{\"operation\":\"CREATE\",\"userInfo\":{{}},\"object\":{}1{}}}}}",
                "[".repeat(120),
                "]".repeat(120)
            )
            .into_bytes(),
            4 => {
                let mut v = b"\xEF\xBB\xBF".to_vec();
                v.extend_from_slice(base.as_bytes());
                v
            }
            5 => base
                .replacen("Fix the login bug", "Fix \u{FFFD}", 1)
                .replace('\u{FFFD}', "\u{0}")
                .into_bytes(),
            6 => {
                let mut v = base.into_bytes();
                if let Some(p) = v.windows(3).position(|w| w == b"Fix") {
                    v[p] = 0xff;
                }
                v
            }
            7 => base.replacen("Fix the login bug", "\\ud800", 1).into_bytes(),
            8 => {
                // Duplicate keys: serde_json keeps the last.
                let dup =
                    admission_request("CREATE", "", "bob", &[], admission_automaton("x"), Value::Null).to_string();
                format!(
                    "{{\"settings\":{settings},\"request\":{dup},\"request\":{}}}",
                    &base[base.find("\"request\":").map_or(0, |i| i + 10)..base.len() - 1]
                )
                .into_bytes()
            }
            9 => format!("{}{}", " ".repeat(100_000), "{}").into_bytes(),
            10 => (*self.rng.pick(&[
                "null",
                "[]",
                "\"x\"",
                "1",
                "{}",
                "{\"request\":7}",
                "{\"request\":{}}",
                "{\"settings\":[],\"request\":null}",
            ]))
            .into(),
            11 => base.replacen("\"CREATE\"", "1e999", 1).into_bytes(),
            12 if self.rng.one_in(200) => {
                // Above the 8 MiB cap.
                format!(
                    "{{\"settings\":null,\"request\":{{\"operation\":\"{}\"}}}}",
                    "x".repeat(8 * 1024 * 1024 + 10)
                )
                .into_bytes()
            }
            _ => base.into_bytes(),
        }
    }
}

/// Removes `key` from the object at `pointer` (`""`: the root), when there is one.
pub(super) fn remove_at(root: &mut Value, pointer: &str, key: &str) {
    if let Some(Value::Object(m)) = root.pointer_mut(pointer) {
        m.remove(key);
    }
}

fn kind(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn collect_pointers(v: &Value, prefix: String, out: &mut Vec<String>) {
    if out.len() > 10_000 {
        return;
    }
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let p = format!("{prefix}/{}", escape(k));
                out.push(p.clone());
                collect_pointers(child, p, out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                let p = format!("{prefix}/{i}");
                out.push(p.clone());
                collect_pointers(child, p, out);
            }
        }
        _ => {}
    }
}

/// Sets the value at a JSON pointer, creating objects on the way (replacing non-objects).
fn set_pointer(root: &mut Value, pointer: &str, value: Value) {
    let tokens: Vec<String> = pointer.split('/').skip(1).map(unescape).collect();
    set_tokens(root, &tokens, value);
}

fn set_tokens(cur: &mut Value, tokens: &[String], value: Value) {
    let Some((token, rest)) = tokens.split_first() else {
        *cur = value;
        return;
    };
    if let Value::Array(a) = cur
        && let Ok(i) = token.parse::<usize>()
        && i < a.len()
    {
        return set_tokens(&mut a[i], rest, value);
    }
    if !cur.is_object() {
        *cur = Value::Object(Map::new());
    }
    if let Value::Object(map) = cur {
        set_tokens(map.entry(token.clone()).or_insert(Value::Null), rest, value);
    }
}

fn remove_pointer(root: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let last = unescape(last);
    match root.pointer_mut(parent) {
        Some(Value::Object(m)) => {
            m.remove(&last);
        }
        Some(Value::Array(a)) => {
            if let Ok(i) = last.parse::<usize>()
                && i < a.len()
            {
                a.remove(i);
            }
        }
        _ => {}
    }
}
