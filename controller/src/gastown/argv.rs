//! The argv of every `gt`/`bd` operation, built from validated operands ([`super::operands`]).
//!
//! Every builder validates its inputs first and then lays the argv out as
//! `<verb> <options...> -- <operands...>`: option values are separate argv elements that
//! follow their option (cobra/pflag always consume them as values), and everything after
//! `--` is an operand, so no user-controlled value can ever be read as an option. Nothing here
//! goes through a shell.

use std::fmt;

use gastown_crds::MergeStrategy;
use gastown_crds::validate::{validate_agent_name, validate_rig_name, validate_title};

use super::error::Error;
use super::operands::{
    BeadId, ExternalRef, OPERATOR_LABEL, invalid, validate_agent_address, validate_description, validate_reason,
};

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
