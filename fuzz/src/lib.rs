//! What the fuzz targets assert about the policy's answers, and a JSON-aware mutator.
//!
//! Input format of the `validate` target: one header byte that sets the fake claim ledger
//! ([`ledger_from_byte`]), then the `validate` payload (`{"settings": ..., "request": ...}`).
//! The seed corpus (`make fuzz-corpus`, fuzz/seed_corpus.py) is built from
//! policy/test_data/cases/*.json in that format.

use gastown_crds::validate::validate_rig_name;
use gastown_policy::decision::ClaimLedger;
use serde_json::{Map, Value, json};

/// The fixed claim time given to the policy.
pub const NOW: &str = "2026-11-28T17:00:00Z";

/// The claim label and annotations the policy may set.
pub const CLAIMED_BY: &str = "gastown.io/claimed-by";
/// See [`CLAIMED_BY`].
pub const CLAIMED_AT: &str = "gastown.io/claimed-at";
/// See [`CLAIMED_BY`].
pub const REQUESTED_BY: &str = "gastown.io/claim-requested-by";

/// The claimer name when the settings do not name one.
pub const DEFAULT_CLAIMER: &str = "gastown-local";

/// A claim ledger whose answer the fuzzer chooses.
#[derive(Debug, Clone)]
pub struct FuzzLedger(pub Result<u64, String>);

impl ClaimLedger for FuzzLedger {
    fn active_claims(&self, _namespace: &str, _claimer: &str) -> Result<u64, String> {
        self.0.clone()
    }
}

/// `0x00..=0x7f`: that many active claims; `0xff`: `u64::MAX`; `0xfe`: an error with an empty
/// message; other bytes `>= 0x80`: an error.
pub fn ledger_from_byte(byte: u8) -> FuzzLedger {
    FuzzLedger(match byte {
        0xff => Ok(u64::MAX),
        0xfe => Err(String::new()),
        0x80..=0xfd => Err("fuzz: the API server is not reachable".to_string()),
        n => Ok(u64::from(n)),
    })
}

/// Splits a `validate` fuzz input into the ledger and the payload.
pub fn split_input(data: &[u8]) -> (FuzzLedger, &[u8]) {
    match data.split_first() {
        Some((&b, rest)) => (ledger_from_byte(b), rest),
        None => (ledger_from_byte(0), data),
    }
}

/// Runs the `validate` entry point on one fuzz input and checks every invariant.
pub fn run_validate(data: &[u8]) -> Result<(), String> {
    let (ledger, payload) = split_input(data);
    let answer = gastown_policy::validate_payload(payload, NOW, &ledger);
    check_validate_answer(payload, &answer)
}

/// The invariants of a `validate` answer: valid JSON with a boolean `accepted`; a rejection
/// carries a non-empty message and a code and no object; a mutation is made only for CREATE or
/// UPDATE of the main resource and changes nothing but the claim fields.
pub fn check_validate_answer(payload: &[u8], answer: &[u8]) -> Result<(), String> {
    let answer: Value = serde_json::from_slice(answer).map_err(|e| format!("answer is not JSON: {e}"))?;
    let accepted = answer
        .get("accepted")
        .and_then(Value::as_bool)
        .ok_or_else(|| format!("answer lacks a boolean `accepted`: {answer}"))?;
    let mutated = answer.get("mutated_object").filter(|m| !m.is_null());
    if !accepted {
        let message = answer.get("message").and_then(Value::as_str).unwrap_or_default();
        if message.trim().is_empty() {
            return Err(format!("rejection without a message: {answer}"));
        }
        if !answer.get("code").is_some_and(Value::is_u64) {
            return Err(format!("rejection without a code: {answer}"));
        }
        if mutated.is_some() {
            return Err(format!("rejection with a mutated object: {answer}"));
        }
        return Ok(());
    }
    let Some(mutated) = mutated else {
        return Ok(());
    };
    let payload: Value =
        serde_json::from_slice(payload).map_err(|e| format!("mutation of a payload that is not JSON ({e})"))?;
    let request = &payload["request"];
    let operation = request.get("operation").and_then(Value::as_str);
    if !matches!(operation, Some("CREATE" | "UPDATE")) {
        return Err(format!("mutation of a {operation:?} request"));
    }
    if !matches!(request.get("subResource"), None | Some(Value::Null))
        && request.get("subResource").and_then(Value::as_str) != Some("")
    {
        return Err(format!("mutation of subresource {}", request["subResource"]));
    }
    let claimer = payload["settings"]
        .get("claimer")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_CLAIMER);
    let username = request["userInfo"]
        .get("username")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let original = request.get("object").unwrap_or(&Value::Null);
    check_mutation(original, mutated, claimer, username, Some(NOW))
}

/// Checks a mutated object against the original: the claim fields hold what the policy must
/// write, and nothing else differs (containers the policy had to create excepted).
/// `now`: the expected claimed-at, or `None` to require only an RFC 3339 timestamp.
pub fn check_mutation(
    original: &Value,
    mutated: &Value,
    claimer: &str,
    username: &str,
    now: Option<&str>,
) -> Result<(), String> {
    if !original.is_object() || !mutated.is_object() {
        return Err(format!("mutation of a non-object: {original} -> {mutated}"));
    }
    let got = |p: &str| mutated.pointer(p).and_then(Value::as_str);
    if got("/metadata/labels/gastown.io~1claimed-by") != Some(claimer) {
        return Err(format!("claimed-by is not {claimer:?}: {mutated}"));
    }
    if got("/metadata/annotations/gastown.io~1claim-requested-by") != Some(username) {
        return Err(format!("claim-requested-by is not {username:?}"));
    }
    let at = got("/metadata/annotations/gastown.io~1claimed-at").unwrap_or_default();
    match now {
        Some(now) if at != now => return Err(format!("claimed-at {at:?} is not {now:?}")),
        None if at.parse::<jiff::Timestamp>().is_err() => {
            return Err(format!("claimed-at {at:?} is not RFC 3339"));
        }
        _ => {}
    }
    if got("/spec/executionMode") != Some("local") {
        return Err("spec.executionMode is not \"local\"".to_string());
    }
    let rig = got("/spec/rig").unwrap_or_default();
    if let Err(e) = validate_rig_name(rig) {
        return Err(format!("mutation writes an invalid rig: {e}"));
    }
    let (o, m) = (strip_claim_fields(original), strip_claim_fields(mutated));
    let m = restore_created_containers(&o, m);
    if o != m {
        return Err(format!(
            "mutation changes more than the claim fields:\n original {}\n mutated  {}",
            shorten(&o.to_string()),
            shorten(&m.to_string())
        ));
    }
    Ok(())
}

fn shorten(s: &str) -> String {
    if s.len() <= 2000 {
        return s.to_string();
    }
    let mut end = 2000;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

/// The object without the five fields the policy owns.
pub fn strip_claim_fields(value: &Value) -> Value {
    let mut v = value.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        if let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut) {
            labels.remove(CLAIMED_BY);
        }
        if let Some(ann) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            ann.remove(CLAIMED_AT);
            ann.remove(REQUESTED_BY);
        }
    }
    if let Some(spec) = v.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("executionMode");
        spec.remove("rig");
    }
    v
}

/// Where the mutation has an empty container the original lacked (absent or `null`), puts back
/// what the original had: the policy creates `metadata`, `labels`, `annotations` and `spec`
/// when it must.
fn restore_created_containers(original: &Value, mut mutated: Value) -> Value {
    fn fix(orig: Option<&Map<String, Value>>, m: &mut Map<String, Value>, key: &str) {
        let created = m.get(key).and_then(Value::as_object).is_some_and(Map::is_empty)
            && matches!(orig.and_then(|o| o.get(key)), None | Some(Value::Null));
        if created {
            match orig.and_then(|o| o.get(key)) {
                None => {
                    m.remove(key);
                }
                Some(_) => {
                    m.insert(key.to_string(), Value::Null);
                }
            }
        }
    }
    let orig_meta = original.get("metadata").and_then(Value::as_object);
    if let Some(meta) = mutated.get_mut("metadata").and_then(Value::as_object_mut) {
        fix(orig_meta, meta, "labels");
        fix(orig_meta, meta, "annotations");
    }
    if let Some(m) = mutated.as_object_mut() {
        fix(original.as_object(), m, "metadata");
        fix(original.as_object(), m, "spec");
    }
    mutated
}

/// A request every valid configuration answers without a configuration error.
pub fn probe_request() -> Value {
    json!({
        "uid": "fuzz",
        "kind": {"group": "olympus.io", "version": "v1alpha1", "kind": "Automaton"},
        "resource": {"group": "olympus.io", "version": "v1alpha1", "resource": "automatons"},
        "namespace": "team-a",
        "operation": "CREATE",
        "userInfo": {"username": "alice", "groups": ["gastown-claimers", "system:authenticated"]},
        "object": {
            "apiVersion": "olympus.io/v1alpha1",
            "kind": "Automaton",
            "metadata": {"name": "fix-login", "namespace": "team-a"},
            "spec": {"task": {"title": "Fix it"}, "forge": "web-forge", "executionMode": "local"}
        },
        "oldObject": null
    })
}

/// Runs `validate_settings` on one fuzz input and checks its invariants; when the input is
/// JSON, also checks that `validate` agrees: valid settings never produce a configuration error,
/// invalid ones always do.
pub fn run_settings(data: &[u8]) -> Result<(), String> {
    let answer = gastown_policy::validate_settings_payload(data);
    let answer: Value = serde_json::from_slice(&answer).map_err(|e| format!("settings answer is not JSON: {e}"))?;
    let valid = answer
        .get("valid")
        .and_then(Value::as_bool)
        .ok_or_else(|| format!("settings answer lacks a boolean `valid`: {answer}"))?;
    let message = answer.get("message").and_then(Value::as_str).unwrap_or_default();
    if !valid && message.trim().is_empty() {
        return Err(format!("invalid settings without a message: {answer}"));
    }
    let Ok(settings) = serde_json::from_slice::<Value>(data) else {
        if valid {
            return Err("input that is not JSON was declared valid".to_string());
        }
        return Ok(());
    };
    // Settings are named fields: anything but an object (or null, the defaults) is refused, or
    // an array would be read positionally (the bug of fuzz/regressions/regression-settings-array.json).
    if valid && !(settings.is_object() || settings.is_null()) {
        return Err(format!(
            "settings that are not a JSON object were declared valid: {settings}"
        ));
    }
    let payload = json!({"settings": settings, "request": probe_request()}).to_string();
    for ledger in [0u8, 0xff, 0x80] {
        let raw = gastown_policy::validate_payload(payload.as_bytes(), NOW, &ledger_from_byte(ledger));
        check_validate_answer(payload.as_bytes(), &raw)?;
        let v: Value = serde_json::from_slice(&raw).map_err(|e| e.to_string())?;
        let misconfigured = v.get("code").and_then(Value::as_u64) == Some(500);
        if valid && misconfigured {
            return Err(format!(
                "settings declared valid but `validate` calls them misconfigured: {v}"
            ));
        }
        if !valid && !misconfigured {
            return Err(format!(
                "settings declared invalid ({message}) but `validate` used them: {v}"
            ));
        }
    }
    Ok(())
}

/// A small deterministic PRNG (xorshift64*) for the mutator.
struct Rng(u64);

impl Rng {
    fn new(seed: u32) -> Rng {
        Rng(u64::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Keys worth inserting: the ones the policy reads.
const KEYS: &[&str] = &[
    CLAIMED_BY,
    CLAIMED_AT,
    REQUESTED_BY,
    "gastown.io/claim",
    "executionMode",
    "rig",
    "forge",
    "task",
    "beadId",
    "title",
    "status",
    "phase",
    "labels",
    "annotations",
    "metadata",
    "spec",
    "name",
    "generateName",
    "object",
    "oldObject",
    "operation",
    "subResource",
    "userInfo",
    "username",
    "groups",
    "resource",
    "group",
    "namespace",
    "claimer",
    "allowedUsers",
    "allowedGroups",
    "controllerUsers",
    "forgeRigs",
    "defaultRig",
    "maxActiveClaimsPerNamespace",
];

fn interesting(rng: &mut Rng) -> Value {
    const STRINGS: &[&str] = &[
        "",
        "local",
        "Local",
        "local ",
        "kubernetes",
        "CREATE",
        "UPDATE",
        "DELETE",
        "CONNECT",
        "status",
        "scale",
        "olympus.io",
        "automatons",
        "gastown-local",
        "other-town",
        "Gastown-Local",
        "gastown",
        "webrig",
        "web-forge",
        "hq",
        "HQ",
        "a;b",
        "$(id)",
        "`id`",
        "-rf",
        "..",
        "a\nb",
        "gаstown",
        "go-7xq",
        "go-7xq.1",
        "go-7xq;id",
        "alice",
        "bob",
        "gastown-claimers",
        "system:anonymous",
        "system:unauthenticated",
        "system:authenticated",
        "system:serviceaccount:gastown-system:gastown-operator",
        "System:serviceaccount:gastown-system:gastown-operator",
        "system:serviceaccount:gastown-system:gastown-operator ",
        "Pending",
        "Running",
        "Succeeded",
        "Failed",
        "Released",
        "2026-11-28T10:00:01Z",
        "\u{202e}lacol",
        "\u{200b}",
        "\u{0}",
    ];
    match rng.below(12) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => json!(rng.next() as i64),
        3 => json!(u64::MAX),
        4 => json!(1.5e300),
        5 => json!([]),
        6 => json!({}),
        7 => json!(["gastown-claimers", "system:authenticated"]),
        8 => json!(0),
        _ => Value::from(STRINGS[rng.below(STRINGS.len())]),
    }
}

/// One step of a path into a JSON value.
#[derive(Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

fn collect_paths(v: &Value, prefix: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    if out.len() >= 4096 {
        return;
    }
    out.push(prefix.clone());
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                prefix.push(Seg::Key(k.clone()));
                collect_paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                prefix.push(Seg::Index(i));
                collect_paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn at_mut<'v>(v: &'v mut Value, path: &[Seg]) -> Option<&'v mut Value> {
    let mut cur = v;
    for seg in path {
        cur = match seg {
            Seg::Key(k) => cur.as_object_mut()?.get_mut(k)?,
            Seg::Index(i) => cur.as_array_mut()?.get_mut(*i)?,
        };
    }
    Some(cur)
}

fn at<'v>(v: &'v Value, path: &[Seg]) -> Option<&'v Value> {
    let mut cur = v;
    for seg in path {
        cur = match seg {
            Seg::Key(k) => cur.as_object()?.get(k)?,
            Seg::Index(i) => cur.as_array()?.get(*i)?,
        };
    }
    Some(cur)
}

/// A structure-aware mutation of a `validate` input (header byte + JSON payload): replaces,
/// deletes, inserts or copies JSON values with ones the policy cares about. Returns `None` when
/// the input is not JSON (the caller then uses libFuzzer's byte mutations).
pub fn mutate_json(data: &[u8], seed: u32, with_header: bool) -> Option<Vec<u8>> {
    let (header, body) = if with_header {
        (data.first().copied(), data.get(1..)?)
    } else {
        (None, data)
    };
    let mut value: Value = serde_json::from_slice(body).ok()?;
    let mut rng = Rng::new(seed);
    let mut header = header;
    let rounds = 1 + rng.below(3);
    for _ in 0..rounds {
        let mut paths = Vec::new();
        collect_paths(&value, &mut Vec::new(), &mut paths);
        let path = paths[rng.below(paths.len())].clone();
        match rng.below(8) {
            0 | 1 => {
                if let Some(slot) = at_mut(&mut value, &path) {
                    *slot = interesting(&mut rng);
                }
            }
            2 => {
                // Delete the value at `path` from its parent.
                if let Some((last, parent)) = path.split_last()
                    && let Some(p) = at_mut(&mut value, parent)
                {
                    match (p, last) {
                        (Value::Object(m), Seg::Key(k)) => {
                            m.remove(k);
                        }
                        (Value::Array(a), Seg::Index(i)) if *i < a.len() => {
                            a.remove(*i);
                        }
                        _ => {}
                    }
                }
            }
            3 | 4 => {
                let key = KEYS[rng.below(KEYS.len())];
                let new = interesting(&mut rng);
                match at_mut(&mut value, &path) {
                    Some(Value::Object(m)) => {
                        m.insert(key.to_string(), new);
                    }
                    Some(Value::Array(a)) => a.push(new),
                    _ => {}
                }
            }
            5 => {
                // Copy one subtree over another (e.g. object over oldObject).
                let from = paths[rng.below(paths.len())].clone();
                if let Some(src) = at(&value, &from).cloned()
                    && !path.is_empty()
                    && let Some(slot) = at_mut(&mut value, &path)
                {
                    *slot = src;
                }
            }
            6 => {
                // Flip a string's case or append/prepend a look-alike or whitespace.
                if let Some(Value::String(s)) = at_mut(&mut value, &path) {
                    *s = match rng.below(5) {
                        0 => s.to_uppercase(),
                        1 => format!("{s} "),
                        2 => format!(" {s}"),
                        3 => format!("{s}\u{200b}"),
                        _ => s.chars().rev().collect(),
                    };
                }
            }
            _ => header = Some(rng.next() as u8),
        }
    }
    let mut out = Vec::new();
    if with_header {
        out.push(header.unwrap_or(0));
    }
    serde_json::to_writer(&mut out, &value).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutation_checker_accepts_only_claim_fields() {
        let original = json!({"metadata": {"name": "a"}, "spec": {"task": {"title": "t"}}});
        let mut good = original.clone();
        good["metadata"]["labels"] = json!({CLAIMED_BY: "gastown-local"});
        good["metadata"]["annotations"] = json!({CLAIMED_AT: NOW, REQUESTED_BY: "alice"});
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
            "metadata": {"labels": {CLAIMED_BY: "c"}, "annotations": {CLAIMED_AT: NOW, REQUESTED_BY: "u"}},
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
