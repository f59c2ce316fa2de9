//! Naming rules of Gas Town and Beads (see `shared/docs/gastown-contract.md`), as plain
//! functions usable from wasm and native code, and as the JSON-schema patterns the CRD uses.
//! A test in this crate checks that every pattern accepts exactly what its function accepts.

use std::fmt;

/// Why a name was refused; the `Display` text states the rule so users know what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError {
    /// What kind of name (e.g. "rig name").
    pub what: &'static str,
    /// The offending value, truncated for display.
    pub value: String,
    /// The rule the value breaks.
    pub rule: &'static str,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {} {:?}: {}", self.what, self.value, self.rule)
    }
}

impl std::error::Error for NameError {}

/// `Ok` when `ok`, else the refusal of `value` by `rule`.
fn check(ok: bool, what: &'static str, value: &str, rule: &'static str) -> Result<(), NameError> {
    if ok { Ok(()) } else { Err(err(what, value, rule)) }
}

fn err(what: &'static str, value: &str, rule: &'static str) -> NameError {
    let mut shown: String = value.chars().take(64).collect();
    if value.chars().count() > 64 {
        shown.push('…');
    }
    NameError {
        what,
        value: shown,
        rule,
    }
}

/// Rig names: an ASCII letter, then up to 63 ASCII letters, digits or `_`; no `-`, `.`, `/`
/// or spaces (Gas Town refuses them) and not the reserved `hq`.
pub const RIG_NAME_RULE: &str = "a rig name starts with an ASCII letter, has 1-64 characters from [A-Za-z0-9_] (no '-', '.', '/' or spaces) and is not the reserved name 'hq'";
/// JSON-schema pattern equivalent to [`validate_rig_name`] (RE2 has no look-ahead, so `hq` is
/// excluded by alternatives).
pub const RIG_NAME_PATTERN: &str =
    "^(?:[A-Za-z]|[A-GI-Za-gi-z][A-Za-z0-9_]|[Hh][A-PR-Za-pr-z0-9_]|[A-Za-z][A-Za-z0-9_]{2,63})$";

/// Validates a Gas Town rig name.
pub fn validate_rig_name(value: &str) -> Result<(), NameError> {
    let bytes = value.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0].is_ascii_alphabetic()
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        && !value.eq_ignore_ascii_case("hq");
    check(ok, "rig name", value, RIG_NAME_RULE)
}

/// Bead IDs: `<prefix>-<hash>` with optional child suffixes `.N`, e.g. `go-7xq`, `gt-a3f8.1`.
pub const BEAD_ID_RULE: &str = "a bead ID is <prefix>-<hash>[.N...]: the prefix starts with an ASCII letter and has 1-20 characters from [A-Za-z0-9-], the hash 1-32 ASCII letters or digits, each child suffix '.' and 1-4 digits (at most 8), e.g. 'go-7xq' or 'gt-a3f8.1'";
/// JSON-schema pattern equivalent to [`validate_bead_id`].
pub const BEAD_ID_PATTERN: &str = "^[A-Za-z][A-Za-z0-9-]{0,19}-[A-Za-z0-9]{1,32}(?:\\.[0-9]{1,4}){0,8}$";

/// Validates a Beads issue ID.
pub fn validate_bead_id(value: &str) -> Result<(), NameError> {
    let fail = || err("bead ID", value, BEAD_ID_RULE);
    if value.len() > 100 || !value.is_ascii() {
        return Err(fail());
    }
    let mut parts = value.split('.');
    let base = parts.next().ok_or_else(fail)?;
    let children: Vec<&str> = parts.collect();
    if children.len() > 8
        || children
            .iter()
            .any(|c| c.is_empty() || c.len() > 4 || !c.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(fail());
    }
    // The hash is after the last '-'; the prefix itself may contain '-' (e.g. `hq-cv-x1`).
    let (prefix, hash) = base.rsplit_once('-').ok_or_else(fail)?;
    let prefix_ok = !prefix.is_empty()
        && prefix.len() <= 20
        && prefix.as_bytes()[0].is_ascii_alphabetic()
        && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let hash_ok = !hash.is_empty() && hash.len() <= 32 && hash.bytes().all(|b| b.is_ascii_alphanumeric());
    if prefix_ok && hash_ok { Ok(()) } else { Err(fail()) }
}

/// DNS-1123 labels (claimer names, Forge names).
pub const DNS_LABEL_RULE: &str =
    "a DNS-1123 label has 1-63 characters from [a-z0-9-] and starts and ends with a letter or digit";
/// JSON-schema pattern equivalent to [`validate_dns_label`].
pub const DNS_LABEL_PATTERN: &str = "^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$";

/// Validates a DNS-1123 label.
pub fn validate_dns_label(what: &'static str, value: &str) -> Result<(), NameError> {
    let b = value.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-';
    check(ok, what, value, DNS_LABEL_RULE)
}

/// Agent names passed to `gt sling --agent`.
pub const AGENT_NAME_RULE: &str =
    "an agent name starts with an ASCII letter or digit and has 1-64 characters from [A-Za-z0-9._-]";
/// JSON-schema pattern equivalent to [`validate_agent_name`].
pub const AGENT_NAME_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$";

/// Validates an agent name (it becomes a command-line operand, so it may not start with `-`).
pub fn validate_agent_name(value: &str) -> Result<(), NameError> {
    let b = value.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    check(ok, "agent name", value, AGENT_NAME_RULE)
}

/// Task titles: 1-200 characters without control characters.
pub const TITLE_RULE: &str = "a task title has 1-200 characters and no control characters (no newlines or tabs)";
/// JSON-schema pattern for titles (length is checked by minLength/maxLength).
pub const TITLE_PATTERN: &str = "^[^\\x00-\\x1F\\x7F-\\x9F]+$";
/// Maximum title length in characters.
pub const TITLE_MAX_CHARS: usize = 200;
/// Maximum description length in characters.
pub const DESCRIPTION_MAX_CHARS: usize = 20_000;

/// Validates a task title.
pub fn validate_title(value: &str) -> Result<(), NameError> {
    let count = value.chars().count();
    let ok = (1..=TITLE_MAX_CHARS).contains(&count) && !value.chars().any(|c| c.is_control());
    check(ok, "task title", value, TITLE_RULE)
}
