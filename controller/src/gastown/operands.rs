//! The validated operands of `gt`/`bd` commands: bead IDs, external references and their
//! lookup labels, agent addresses, descriptions and close reasons. Rig, agent and title rules
//! are the shared ones of [`gastown_crds::validate`]; a value that breaks a rule becomes
//! [`Error::InvalidArgument`] and nothing is run.

use std::fmt;

use gastown_crds::validate::{
    DESCRIPTION_MAX_CHARS, NameError, validate_agent_name, validate_bead_id, validate_dns_label, validate_rig_name,
};
use serde::{Deserialize, Serialize};

use super::error::Error;

/// A shared naming rule's refusal as the client's error.
pub(crate) fn invalid(err: NameError) -> Error {
    Error::InvalidArgument {
        what: err.what,
        message: err.to_string(),
    }
}

/// `Ok` when `ok`, else the refusal of a `what` with the message `explain` makes.
fn require(ok: bool, what: &'static str, explain: impl FnOnce() -> String) -> Result<(), Error> {
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            what,
            message: explain(),
        })
    }
}

/// A Beads issue ID that passed [`validate_bead_id`] (e.g. `go-7xq`, `gt-a3f8.1`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BeadId(String);

impl BeadId {
    /// Validates `value` as a bead ID.
    pub fn parse(value: &str) -> Result<Self, Error> {
        validate_bead_id(value).map_err(invalid)?;
        Ok(BeadId(value.to_owned()))
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for BeadId {
    type Error = Error;
    fn try_from(value: String) -> Result<Self, Error> {
        validate_bead_id(&value).map_err(invalid)?;
        Ok(BeadId(value))
    }
}

impl From<BeadId> for String {
    fn from(id: BeadId) -> String {
        id.0
    }
}

impl AsRef<str> for BeadId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BeadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Rule for [`ExternalRef`], stated in error messages.
pub const EXTERNAL_REF_RULE: &str = "an external reference starts with an ASCII letter and has 1-400 characters from [A-Za-z0-9._:/-], e.g. 'automaton:<namespace>/<name>/<uid>'";
/// Longest accepted external reference.
pub const EXTERNAL_REF_MAX_CHARS: usize = 400;

/// The `--external-ref` a bead is created with, so that a bead can be found again after a
/// crash between `bd create` and the status write (see [`super::GasTown::find_bead_by_external_ref`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExternalRef(String);

impl ExternalRef {
    /// The reference of an Automaton: `automaton:<namespace>/<name>/<uid>`. The UID makes it
    /// unique across deletion and re-creation of an object with the same name.
    pub fn for_automaton(namespace: &str, name: &str, uid: &str) -> Result<Self, Error> {
        validate_dns_label("namespace", namespace).map_err(invalid)?;
        validate_object_name(name)?;
        validate_uid(uid)?;
        ExternalRef::parse(&format!("automaton:{namespace}/{name}/{uid}"))
    }

    /// Validates a reference against [`EXTERNAL_REF_RULE`].
    pub fn parse(value: &str) -> Result<Self, Error> {
        let bytes = value.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= EXTERNAL_REF_MAX_CHARS
            && bytes[0].is_ascii_alphabetic()
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || b"._:/-".contains(b))
            && !value.split('/').any(|segment| segment == "." || segment == "..");
        require(ok, "external reference", || {
            format!("invalid external reference {}: {EXTERNAL_REF_RULE}", shown(value))
        })?;
        Ok(ExternalRef(value.to_owned()))
    }

    /// The reference as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The label that finds this reference's bead: [`REF_LABEL_PREFIX`] and 16 hex digits of
    /// the FNV-1a (64 bit) hash of the reference, e.g. `gastown-operator-ref:5f0c...`. Every bead
    /// the controller creates carries it, so `bd list -l <label>` answers with that bead alone
    /// however big the town is. (A hash, not the reference itself: a label is at most 255
    /// characters in beads, `labels.label VARCHAR(255)`, a reference up to 400. Two references
    /// with the same hash only list both beads; the lookup then compares the references.)
    pub fn lookup_label(&self) -> String {
        format!("{REF_LABEL_PREFIX}{:016x}", fnv1a64(self.0.as_bytes()))
    }
}

/// The label on every bead the controller creates (`bd list -l gastown-operator` lists them).
pub const OPERATOR_LABEL: &str = "gastown-operator";
/// The start of [`ExternalRef::lookup_label`].
pub const REF_LABEL_PREFIX: &str = "gastown-operator-ref:";

/// 64-bit FNV-1a: small, stable across versions and platforms (the labels it makes are stored
/// in Gas Town and must be computed the same way by every controller version).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl fmt::Display for ExternalRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A value quoted and truncated for an error message.
fn shown(value: &str) -> String {
    let mut text: String = value.chars().take(64).collect();
    if value.chars().count() > 64 {
        text.push('…');
    }
    format!("{text:?}")
}

/// Kubernetes object names (DNS-1123 subdomains).
fn validate_object_name(value: &str) -> Result<(), Error> {
    let b = value.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 253
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'.')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !value.contains("..");
    require(ok, "object name", || {
        format!(
            "invalid object name {}: a Kubernetes object name has 1-253 characters from [a-z0-9.-] and starts and ends with a letter or digit",
            shown(value)
        )
    })
}

/// Kubernetes UIDs (UUIDs in practice).
fn validate_uid(value: &str) -> Result<(), Error> {
    let b = value.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-');
    require(ok, "object UID", || {
        format!(
            "invalid object UID {}: a UID has 1-64 characters from [A-Za-z0-9-]",
            shown(value)
        )
    })
}

/// Descriptions may span lines but carry no NUL or other control characters except
/// newline, carriage return and tab, and are at most [`DESCRIPTION_MAX_CHARS`] long.
pub fn validate_description(value: &str) -> Result<(), Error> {
    let ok = value.chars().count() <= DESCRIPTION_MAX_CHARS
        && !value
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'));
    require(ok, "task description", || {
        format!(
            "invalid task description: at most {DESCRIPTION_MAX_CHARS} characters and no control characters other than newline, carriage return and tab (no NUL)"
        )
    })
}

/// Longest accepted close reason.
pub const REASON_MAX_CHARS: usize = 500;

/// Close reasons: one line of 1-500 characters without control characters.
pub fn validate_reason(value: &str) -> Result<(), Error> {
    let count = value.chars().count();
    let ok = (1..=REASON_MAX_CHARS).contains(&count) && !value.chars().any(char::is_control);
    require(ok, "close reason", || {
        format!(
            "invalid close reason {}: one line of 1-{REASON_MAX_CHARS} characters without control characters",
            shown(value)
        )
    })
}

/// The agent holding a bead, as `gt` prints it in the bead's assignee:
/// `<rig>/<name>` or `<rig>/polecats/<name>` / `<rig>/crew/<name>`.
pub fn validate_agent_address(value: &str) -> Result<(), Error> {
    let parts: Vec<&str> = value.split('/').collect();
    let ok = match parts.as_slice() {
        [rig, name] => validate_rig_name(rig).is_ok() && validate_agent_name(name).is_ok(),
        [rig, kind, name] => {
            validate_rig_name(rig).is_ok() && matches!(*kind, "polecats" | "crew") && validate_agent_name(name).is_ok()
        }
        _ => false,
    };
    // An agent name may contain '.', but never be a path component such as "..".
    require(ok && !parts.iter().any(|p| p.starts_with('.')), "agent address", || {
        format!(
            "invalid agent address {}: expected <rig>/<name> or <rig>/polecats/<name> with a valid rig name and agent name",
            shown(value)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::argv::{close_bead, create_bead, sling, unsling};
    use super::*;

    fn id(s: &str) -> BeadId {
        BeadId::parse(s).unwrap()
    }

    const INJECTIONS: &[&str] = &[
        "a;b",
        "a$(id)",
        "a`id`",
        "a\nb",
        "-rf",
        "--force",
        "..",
        "a/../b",
        "a b",
        "a|b",
        "a&b",
        "a>b",
        "",
        "gаstown",  // Cyrillic 'а'
        "ｇastown", // full-width 'ｇ'
        "a\u{0}b",
    ];

    #[test]
    fn rig_name_refusals() {
        for bad in INJECTIONS
            .iter()
            .chain(["hq", "HQ", "my-rig", "my.rig", "rig/x"].iter())
        {
            let err = sling(&id("go-7xq"), bad, None, None).unwrap_err();
            assert_eq!(err.metric_label(), "invalid_argument", "{bad:?}");
        }
    }

    #[test]
    fn agent_name_refusals() {
        for bad in INJECTIONS {
            let err = sling(&id("go-7xq"), "gastown", None, Some(bad)).unwrap_err();
            assert_eq!(err.metric_label(), "invalid_argument", "{bad:?}");
        }
    }

    #[test]
    fn bead_id_refusals() {
        for bad in INJECTIONS
            .iter()
            .chain(["go", "go-", "-go-7xq", "go-7xq.", "gо-7xq"].iter())
        {
            assert!(BeadId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<BeadId>("\"go-7xq;id\"").is_err());
        assert_eq!(serde_json::from_str::<BeadId>("\"go-7xq\"").unwrap().as_str(), "go-7xq");
    }

    #[test]
    fn external_ref_refusals() {
        for bad in INJECTIONS
            .iter()
            .chain(["automaton:ns/../x", "1abc", "automaton:ns/./x"].iter())
        {
            assert!(ExternalRef::parse(bad).is_err(), "{bad:?}");
        }
        for (ns, name, uid) in [
            ("ns;x", "a", "u"),
            ("ns", "a$(id)", "u"),
            ("ns", "a", "u`id`"),
            ("ns", "a", "-u"),
            ("ns", "-a", "u"),
            ("ns", "a..b", "u"),
            ("nѕ", "a", "u"), // Cyrillic 'ѕ'
            ("ns", "a\nb", "u"),
            ("ns", "a/b", "u"),
        ] {
            assert!(
                ExternalRef::for_automaton(ns, name, uid).is_err(),
                "{ns:?} {name:?} {uid:?}"
            );
        }
        assert_eq!(
            ExternalRef::for_automaton("default", "a.b-c", "0f9c-1")
                .unwrap()
                .as_str(),
            "automaton:default/a.b-c/0f9c-1"
        );
    }

    #[test]
    fn title_description_reason_refusals() {
        let r = ExternalRef::parse("automaton:a/b/c").unwrap();
        for bad in ["", "a\nb", "a\tb", "a\u{0}b", "a\u{1b}[31m"] {
            assert!(create_bead(bad, "", &r).is_err(), "{bad:?}");
            assert!(close_bead(&id("go-7xq"), bad).is_err(), "{bad:?}");
        }
        assert!(create_bead(&"x".repeat(201), "", &r).is_err());
        assert!(create_bead("ok", "a\u{0}b", &r).is_err());
        assert!(create_bead("ok", "a\u{1b}[2J", &r).is_err());
        assert!(create_bead("ok", &"x".repeat(DESCRIPTION_MAX_CHARS + 1), &r).is_err());
        assert!(create_bead("ok", "multi\nline\r\n\twith tab", &r).is_ok());
        assert!(close_bead(&id("go-7xq"), &"x".repeat(REASON_MAX_CHARS + 1)).is_err());
    }

    #[test]
    fn agent_address_rules() {
        for ok in ["gastown/Toast", "gastown/polecats/Toast", "gastown/crew/max", "g/a.b-c"] {
            assert!(validate_agent_address(ok).is_ok(), "{ok}");
        }
        for bad in [
            "gastown",
            "gastown/",
            "/Toast",
            "gastown/../Toast",
            "gastown/x/Toast",
            "gastown/polecats/Toast/x",
            "hq/Toast",
            "gastown/-Toast",
            "gastown/Toast;id",
            "gastown/.hidden",
        ] {
            assert!(validate_agent_address(bad).is_err(), "{bad}");
            assert!(unsling(&id("go-7xq"), Some(bad), true).is_err(), "{bad}");
        }
    }

    #[test]
    fn lookup_labels_are_stable_short_and_distinct() {
        // Stored in Gas Town: the value for a given reference must never change.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        let a = ExternalRef::parse("automaton:ns/a/u1").unwrap();
        let b = ExternalRef::parse("automaton:ns/a/u2").unwrap();
        assert!(a.lookup_label().starts_with("gastown-operator-ref:"));
        assert_eq!(a.lookup_label().len(), REF_LABEL_PREFIX.len() + 16);
        assert_ne!(a.lookup_label(), b.lookup_label());
        assert_eq!(
            a.lookup_label(),
            ExternalRef::parse("automaton:ns/a/u1").unwrap().lookup_label()
        );
        let long = ExternalRef::parse(&format!("automaton:{}", "x".repeat(390))).unwrap();
        assert!(long.lookup_label().len() < 255);
        // No comma (bd splits label lists on commas) and nothing a shell or pflag would read.
        assert!(
            a.lookup_label()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':')
        );
    }
}
