//! A structure-aware mutator for libFuzzer: JSON values replaced, deleted, inserted or copied
//! with ones the policy reads.

use gastown_crds::contract::{
    CLAIM_REQUEST_ANNOTATION, CLAIM_REQUESTED_BY_ANNOTATION, CLAIMED_AT_ANNOTATION, CLAIMED_BY_LABEL,
};
use serde_json::{Value, json};

/// A small deterministic PRNG (xorshift64*) for the mutator. Not `gastown_tests::rng`: this
/// standalone fuzz workspace does not link the test crate, and libFuzzer supplies the seed.
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
    CLAIMED_BY_LABEL,
    CLAIMED_AT_ANNOTATION,
    CLAIM_REQUESTED_BY_ANNOTATION,
    CLAIM_REQUEST_ANNOTATION,
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
    "towns",
    "defaultTown",
    "rigs",
    "maxActiveClaims",
];

fn interesting(rng: &mut Rng) -> Value {
    // Spelled out on purpose, each next to its near-misses: the values, not the contract.
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
                if let Some(src) = at_mut(&mut value, &from).cloned()
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

/// The targets' `fuzz_mutator!` body: three mutations in four are [`mutate_json`], written
/// over `data` when they fit in `max_size`; `None` leaves the input to libFuzzer's byte mutations.
pub fn mutate_in_place(data: &mut [u8], size: usize, max_size: usize, seed: u32, with_header: bool) -> Option<usize> {
    if seed.is_multiple_of(4) {
        return None;
    }
    let out = mutate_json(data.get(..size)?, seed, with_header)?;
    if out.len() > max_size {
        return None;
    }
    data.get_mut(..out.len())?.copy_from_slice(&out);
    Some(out.len())
}
