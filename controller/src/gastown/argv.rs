//! Validated identifiers and the argv of every `gt`/`bd` operation.
//!
//! Every builder validates its inputs first and then lays the argv out as
//! `<verb> <options...> -- <operands...>`: option values are separate argv elements that
//! follow their option (cobra/pflag always consume them as values), and everything after
//! `--` is an operand, so no user-controlled value can ever be read as an option. Nothing here
//! goes through a shell.

use std::fmt;

use gastown_crds::MergeStrategy;
use gastown_crds::validate::{
    DESCRIPTION_MAX_CHARS, NameError, validate_agent_name, validate_bead_id, validate_dns_label, validate_rig_name,
    validate_title,
};
use serde::{Deserialize, Serialize};

use super::error::Error;

/// The two Gas Town command-line tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tool {
    /// `gt`, Gas Town.
    Gt,
    /// `bd`, Beads.
    Bd,
}

impl Tool {
    /// The program name, as `argv[0]` on gt-proxy-server and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Tool::Gt => "gt",
            Tool::Bd => "bd",
        }
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated command: the tool and its arguments (the verb first, no program name).
///
/// Only the builders in this module create one, so every `CommandLine` has passed validation.
/// Its `Display` form is safe to log: arguments are quoted and long ones truncated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    tool: Tool,
    verb: &'static str,
    args: Vec<String>,
}

impl CommandLine {
    fn new(tool: Tool, verb: &'static str) -> Self {
        CommandLine {
            tool,
            verb,
            args: vec![verb.to_owned()],
        }
    }

    fn arg(mut self, value: impl Into<String>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Which tool runs the command.
    pub fn tool(&self) -> Tool {
        self.tool
    }

    /// The subcommand (`create`, `show`, `sling`, ...), used in metrics and errors.
    pub fn verb(&self) -> &'static str {
        self.verb
    }

    /// The arguments after the program name, starting with the verb.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// The full argv as gt-proxy-server expects it: the tool name, then [`Self::args`].
    pub fn argv(&self) -> Vec<String> {
        let mut argv = Vec::with_capacity(self.args.len() + 1);
        argv.push(self.tool.as_str().to_owned());
        argv.extend(self.args.iter().cloned());
        argv
    }
}

/// Longest argument shown in full by `Display` (errors and logs).
const SHOWN_ARG_CHARS: usize = 80;

impl fmt::Display for CommandLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tool.as_str())?;
        for arg in &self.args {
            f.write_str(" ")?;
            let plain = !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,@".contains(c));
            let mut shown: String = arg.chars().take(SHOWN_ARG_CHARS).collect();
            if arg.chars().count() > SHOWN_ARG_CHARS {
                shown.push('…');
            }
            if plain {
                f.write_str(&shown)?;
            } else {
                // Debug quoting escapes newlines and control characters.
                write!(f, "{shown:?}")?;
            }
        }
        Ok(())
    }
}

fn invalid(err: NameError) -> Error {
    Error::InvalidArgument {
        what: err.what,
        message: err.to_string(),
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
        if ok {
            Ok(ExternalRef(value.to_owned()))
        } else {
            Err(Error::InvalidArgument {
                what: "external reference",
                message: format!("invalid external reference {}: {EXTERNAL_REF_RULE}", shown(value)),
            })
        }
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
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            what: "object name",
            message: format!(
                "invalid object name {}: a Kubernetes object name has 1-253 characters from [a-z0-9.-] and starts and ends with a letter or digit",
                shown(value)
            ),
        })
    }
}

/// Kubernetes UIDs (UUIDs in practice).
fn validate_uid(value: &str) -> Result<(), Error> {
    let b = value.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            what: "object UID",
            message: format!(
                "invalid object UID {}: a UID has 1-64 characters from [A-Za-z0-9-]",
                shown(value)
            ),
        })
    }
}

/// Descriptions may span lines but carry no NUL or other control characters except
/// newline, carriage return and tab, and are at most [`DESCRIPTION_MAX_CHARS`] long.
pub fn validate_description(value: &str) -> Result<(), Error> {
    let ok = value.chars().count() <= DESCRIPTION_MAX_CHARS
        && !value
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            what: "task description",
            message: format!(
                "invalid task description: at most {DESCRIPTION_MAX_CHARS} characters and no control characters other than newline, carriage return and tab (no NUL)"
            ),
        })
    }
}

/// Longest accepted close reason.
pub const REASON_MAX_CHARS: usize = 500;

/// Close reasons: one line of 1-500 characters without control characters.
pub fn validate_reason(value: &str) -> Result<(), Error> {
    let count = value.chars().count();
    let ok = (1..=REASON_MAX_CHARS).contains(&count) && !value.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            what: "close reason",
            message: format!(
                "invalid close reason {}: one line of 1-{REASON_MAX_CHARS} characters without control characters",
                shown(value)
            ),
        })
    }
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
    if ok && !parts.iter().any(|p| p.starts_with('.')) {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            what: "agent address",
            message: format!(
                "invalid agent address {}: expected <rig>/<name> or <rig>/polecats/<name> with a valid rig name and agent name",
                shown(value)
            ),
        })
    }
}

/// `bd create -t task -p 2 -d <description> --external-ref <ref> -l gastown-operator,<lookup
/// label> --silent -- <title>` (`-l a,b` sets labels; beads `cmd/bd/create.go`
/// `StringSliceP("labels", "l", ...)`).
pub(crate) fn create_bead(title: &str, description: &str, external_ref: &ExternalRef) -> Result<CommandLine, Error> {
    validate_title(title).map_err(invalid)?;
    validate_description(description)?;
    Ok(CommandLine::new(Tool::Bd, "create")
        .arg("-t")
        .arg("task")
        .arg("-p")
        .arg("2")
        .arg("-d")
        .arg(description)
        .arg("--external-ref")
        .arg(external_ref.as_str())
        .arg("-l")
        .arg(format!("{OPERATOR_LABEL},{}", external_ref.lookup_label()))
        .arg("--silent")
        .arg("--")
        .arg(title))
}

/// `bd show --json -- <id>`.
pub(crate) fn show_bead(id: &BeadId) -> CommandLine {
    CommandLine::new(Tool::Bd, "show")
        .arg("--json")
        .arg("--")
        .arg(id.as_str())
}

/// `bd show --json -- <id>...`: several beads in one call (one JSON array).
pub(crate) fn show_beads(ids: &[BeadId]) -> CommandLine {
    ids.iter().fold(
        CommandLine::new(Tool::Bd, "show").arg("--json").arg("--"),
        |command, id| command.arg(id.as_str()),
    )
}

/// `bd list --json --all --limit 0 -l <lookup label>`: the beads created with `external_ref`,
/// closed ones included, however many other beads the town has.
///
/// Real `bd list` (beads `cmd/bd/list.go`) prints at most 50 beads unless `--limit` says
/// otherwise (`IntP("limit", "n", 50, "Limit results (default 50, use 0 for unlimited)")`,
/// since v0.42.0), sorted by priority, then newest first; the controller's priority-2 bead is
/// missing from those 50 in a town with 50 beads of a higher priority. `--all` only drops the
/// default status filter (closed and pinned beads are hidden); it lifts the limit only since
/// bd v0.49.5, and then lists the whole town. An explicit `--limit 0` means "all" in every
/// version, and the label filter (`-l`, `id IN (SELECT issue_id FROM labels WHERE label = ?)`,
/// an indexed column) keeps the answer to our bead, so the lookup's cost does not grow with the
/// town. A label given also turns off bd's directory-based label scoping (GH#541).
pub(crate) fn list_beads(external_ref: &ExternalRef) -> CommandLine {
    CommandLine::new(Tool::Bd, "list")
        .arg("--json")
        .arg("--all")
        .arg("--limit")
        .arg("0")
        .arg("-l")
        .arg(external_ref.lookup_label())
}

/// `gt sling [--merge=<m>] [--agent <a>] -- <bead> <rig>`.
pub(crate) fn sling(
    bead: &BeadId,
    rig: &str,
    merge: Option<MergeStrategy>,
    agent: Option<&str>,
) -> Result<CommandLine, Error> {
    validate_rig_name(rig).map_err(invalid)?;
    if let Some(agent) = agent {
        validate_agent_name(agent).map_err(invalid)?;
    }
    let mut cmd = CommandLine::new(Tool::Gt, "sling");
    if let Some(merge) = merge {
        cmd = cmd.arg(format!("--merge={}", merge.as_str()));
    }
    if let Some(agent) = agent {
        cmd = cmd.arg("--agent").arg(agent);
    }
    Ok(cmd.arg("--").arg(bead.as_str()).arg(rig))
}

/// `gt unsling [--force] -- <bead> [<holder>]`.
pub(crate) fn unsling(bead: &BeadId, holder: Option<&str>, force: bool) -> Result<CommandLine, Error> {
    if let Some(holder) = holder {
        validate_agent_address(holder)?;
    }
    let mut cmd = CommandLine::new(Tool::Gt, "unsling");
    if force {
        cmd = cmd.arg("--force");
    }
    cmd = cmd.arg("--").arg(bead.as_str());
    if let Some(holder) = holder {
        cmd = cmd.arg(holder);
    }
    Ok(cmd)
}

/// `bd close -r <reason> -- <id>`.
pub(crate) fn close_bead(id: &BeadId, reason: &str) -> Result<CommandLine, Error> {
    validate_reason(reason)?;
    Ok(CommandLine::new(Tool::Bd, "close")
        .arg("-r")
        .arg(reason)
        .arg("--")
        .arg(id.as_str()))
}

/// `bd update --status open --assignee "" -- <id>`: what `gt unsling` does to the bead, with
/// a subcommand gt-proxy-server allows by default.
pub(crate) fn reopen_bead(id: &BeadId) -> CommandLine {
    CommandLine::new(Tool::Bd, "update")
        .arg("--status")
        .arg("open")
        .arg("--assignee")
        .arg("")
        .arg("--")
        .arg(id.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> BeadId {
        BeadId::parse(s).unwrap()
    }

    fn args(cmd: &CommandLine) -> Vec<&str> {
        cmd.args().iter().map(String::as_str).collect()
    }

    /// Everything before `--` is an option or an option's value; operands follow it.
    fn split_at_separator(cmd: &CommandLine) -> (Vec<&str>, Vec<&str>) {
        let all = args(cmd);
        let pos = all.iter().position(|a| *a == "--").expect("every command has --");
        (all[..pos].to_vec(), all[pos + 1..].to_vec())
    }

    #[test]
    fn create_bead_argv() {
        let r = ExternalRef::for_automaton("team-a", "fix-login", "1b4e28ba-2fa1-11d2-883f-0016d3cca427").unwrap();
        let cmd = create_bead("Fix login; rm -rf / $(id) `id`", "line 1\n-line 2", &r).unwrap();
        let labels = format!("gastown-operator,{}", r.lookup_label());
        assert_eq!(cmd.tool(), Tool::Bd);
        assert_eq!(cmd.verb(), "create");
        assert_eq!(
            args(&cmd),
            vec![
                "create",
                "-t",
                "task",
                "-p",
                "2",
                "-d",
                "line 1\n-line 2",
                "--external-ref",
                "automaton:team-a/fix-login/1b4e28ba-2fa1-11d2-883f-0016d3cca427",
                "-l",
                labels.as_str(),
                "--silent",
                "--",
                "Fix login; rm -rf / $(id) `id`",
            ]
        );
        let (_, operands) = split_at_separator(&cmd);
        assert_eq!(operands, vec!["Fix login; rm -rf / $(id) `id`"]);
        assert_eq!(cmd.argv()[0], "bd");
    }

    #[test]
    fn show_list_close_reopen_argv() {
        assert_eq!(args(&show_bead(&id("go-7xq"))), vec!["show", "--json", "--", "go-7xq"]);
        let r = ExternalRef::parse("automaton:ns/a/u1").unwrap();
        let label = r.lookup_label();
        assert_eq!(
            args(&list_beads(&r)),
            vec!["list", "--json", "--all", "--limit", "0", "-l", label.as_str()]
        );
        assert_eq!(
            args(&close_bead(&id("gt-a3f8.1"), "released by the operator").unwrap()),
            vec!["close", "-r", "released by the operator", "--", "gt-a3f8.1"]
        );
        assert_eq!(
            args(&reopen_bead(&id("go-7xq"))),
            vec!["update", "--status", "open", "--assignee", "", "--", "go-7xq"]
        );
    }

    #[test]
    fn sling_argv_options_before_operands() {
        let cmd = sling(&id("go-7xq"), "gastown", Some(MergeStrategy::Mr), Some("claude")).unwrap();
        assert_eq!(cmd.tool(), Tool::Gt);
        assert_eq!(
            args(&cmd),
            vec!["sling", "--merge=mr", "--agent", "claude", "--", "go-7xq", "gastown"]
        );
        let plain = sling(&id("go-7xq"), "gastown", None, None).unwrap();
        assert_eq!(args(&plain), vec!["sling", "--", "go-7xq", "gastown"]);
        let direct = sling(&id("go-7xq"), "g", Some(MergeStrategy::Direct), None).unwrap();
        assert_eq!(args(&direct), vec!["sling", "--merge=direct", "--", "go-7xq", "g"]);
        let local = sling(&id("go-7xq"), "g", Some(MergeStrategy::Local), None).unwrap();
        assert_eq!(args(&local), vec!["sling", "--merge=local", "--", "go-7xq", "g"]);
    }

    #[test]
    fn unsling_argv() {
        assert_eq!(
            args(&unsling(&id("go-7xq"), None, false).unwrap()),
            vec!["unsling", "--", "go-7xq"]
        );
        assert_eq!(
            args(&unsling(&id("go-7xq"), Some("gastown/polecats/Toast"), true).unwrap()),
            vec!["unsling", "--force", "--", "go-7xq", "gastown/polecats/Toast"]
        );
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

    #[test]
    fn display_quotes_and_truncates() {
        let r = ExternalRef::parse("automaton:a/b/c").unwrap();
        let cmd = create_bead("Fix it", &"d".repeat(500), &r).unwrap();
        let shown = cmd.to_string();
        assert!(shown.starts_with("bd create -t task -p 2 -d ddd"), "{shown}");
        assert!(shown.contains('…'));
        assert!(shown.ends_with("-- \"Fix it\""), "{shown}");
        assert!(shown.len() < 300);
        let multi = create_bead("t", "a\nb", &r).unwrap().to_string();
        assert!(multi.contains("\"a\\nb\""), "{multi}");
    }
}
