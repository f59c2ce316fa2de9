//! Test support for the fake Gas Town: a town directory whose `gt` and `bd` are symlinks to
//! the `fake-gastown` binary (`src/bin/fake-gastown.rs`), plus helpers that read and steer it.
//!
//! The helpers drive the real binary (so the state has a single source of truth); their own
//! calls carry `FAKE_GASTOWN_INTERNAL=1`, which bypasses injected faults and marks them
//! `"internal": true` in the call log, and [`FakeGasTown::calls`] leaves them out.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use gastown_tests::fake_gastown::{FakeGasTown, Faults};
//! let town = FakeGasTown::new()?; // finds target/<profile>/fake-gastown
//! let out = town.command("bd").args(["create", "Fix it", "--silent"]).output()?;
//! let id = String::from_utf8(out.stdout)?.trim().to_string();
//! town.set_faults(&Faults::fail(1.0).verbs(["sling"]))?;
//! assert_eq!(town.bead(&id)?.unwrap()["status"], "open");
//! # Ok(()) }
//! ```
//!
//! The binary is found through `FAKE_GASTOWN_BIN`, else next to the running test executable
//! (`target/<profile>/fake-gastown`). Integration tests of this crate get it built
//! automatically; other crates must build it first (`cargo build --workspace --bins`)
//! or pass `env!("CARGO_BIN_EXE_fake-gastown")` to [`FakeGasTown::with_binary`].

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The directory inside the town where the fake keeps its files.
pub const STATE_DIR: &str = ".fake-gastown";
/// Environment variable naming the `fake-gastown` binary.
pub const BIN_ENV: &str = "FAKE_GASTOWN_BIN";
/// Set this environment variable to keep temporary towns after the test (for debugging).
pub const KEEP_ENV: &str = "FAKE_GASTOWN_KEEP";
const INTERNAL_ENV: &str = "FAKE_GASTOWN_INTERNAL";
const BIN_NAME: &str = "fake-gastown";

/// Fault injection (`<town>/.fake-gastown/faults.json`), read by the binary at every call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Probability in [0, 1] that a matching call fails (exit 1, state unchanged).
    pub fail_rate: f64,
    /// Probability that a matching call hangs for `hang_seconds` (logged with `hung: true`).
    pub hang_rate: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hang_seconds: Option<u64>,
    /// Delay added to every call.
    pub delay_ms: u64,
    /// Every call fails with exit 1 and a "cannot connect to Dolt server" error.
    pub down: bool,
    /// Verbs the rates apply to (`"sling"`, `"create"`, or `"gt sling"`); `None` = all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail_verbs: Option<Vec<String>>,
    /// Makes fail/hang decisions reproducible.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Probability that a matching call that succeeded (its change saved) then exits 1 with an
    /// error and none of its output: the work was done, then the call failed. Logged with
    /// `fault: "after_work_fail"`.
    pub after_work_fail_rate: f64,
    /// Probability that a matching call that succeeded (its change saved) then hangs for
    /// `hang_seconds` (default 3600), until the caller's timeout kills it. Logged (before
    /// hanging) with `hung: true`, `fault: "after_work_hang"`.
    pub after_work_hang_rate: f64,
    /// Probability that a matching call that succeeded (its change saved, its output printed)
    /// is then killed by a signal (no exit code; through gt-proxy-server `exitCode: -1`).
    /// Logged with `fault: "after_work_kill"`.
    pub after_work_kill_rate: f64,
    /// Verbs the after-work rates apply to (`"create"`, `"bd create"`, ...); `None` = the same
    /// as `fail_verbs` (and `None` there too = all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_work_verbs: Option<Vec<String>>,
}

impl Faults {
    /// Gas Town is unreachable: every call fails.
    pub fn down() -> Faults {
        Faults {
            down: true,
            ..Faults::default()
        }
    }

    /// Matching calls fail with probability `rate`.
    pub fn fail(rate: f64) -> Faults {
        Faults {
            fail_rate: rate,
            ..Faults::default()
        }
    }

    /// Matching calls hang for `seconds` with probability `rate`.
    pub fn hang(rate: f64, seconds: u64) -> Faults {
        Faults {
            hang_rate: rate,
            hang_seconds: Some(seconds),
            ..Faults::default()
        }
    }

    /// Restricts the rates to these verbs.
    pub fn verbs<I, S>(mut self, verbs: I) -> Faults
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.fail_verbs = Some(verbs.into_iter().map(Into::into).collect());
        self
    }

    /// Matching calls do their work, then fail (exit 1, no output) with probability `rate`.
    pub fn fail_after_work(rate: f64) -> Faults {
        Faults::default().with_fail_after_work(rate)
    }

    /// Matching calls do their work, then hang for `seconds` with probability `rate` (until
    /// the caller's timeout kills them).
    pub fn hang_after_work(rate: f64, seconds: u64) -> Faults {
        Faults::default().with_hang_after_work(rate, seconds)
    }

    /// Matching calls do their work, then are killed by a signal with probability `rate`.
    pub fn kill_after_work(rate: f64) -> Faults {
        Faults::default().with_kill_after_work(rate)
    }

    /// Adds "did the work, then failed" with probability `rate` to these faults.
    pub fn with_fail_after_work(mut self, rate: f64) -> Faults {
        self.after_work_fail_rate = rate;
        self
    }

    /// Adds "did the work, then hung for `seconds`" with probability `rate` (`seconds` is
    /// shared with the before-work hang).
    pub fn with_hang_after_work(mut self, rate: f64, seconds: u64) -> Faults {
        self.after_work_hang_rate = rate;
        self.hang_seconds = Some(seconds);
        self
    }

    /// Adds "did the work, then was killed" with probability `rate`.
    pub fn with_kill_after_work(mut self, rate: f64) -> Faults {
        self.after_work_kill_rate = rate;
        self
    }

    /// Restricts the after-work rates to these verbs (the before-work rates keep
    /// [`Faults::verbs`]).
    pub fn after_work_verbs<I, S>(mut self, verbs: I) -> Faults
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.after_work_verbs = Some(verbs.into_iter().map(Into::into).collect());
        self
    }

    pub fn seed(mut self, seed: u64) -> Faults {
        self.seed = Some(seed);
        self
    }

    pub fn delay_ms(mut self, ms: u64) -> Faults {
        self.delay_ms = ms;
        self
    }
}

/// Lazy progress of slung beads: when a hooked bead is read (`bd show`, `bd list`,
/// `gt polecat status`) `start_after_ms` after it was slung it becomes `in_progress`; after
/// `close_after_ms` it becomes `closed` with `close_reason` (default `merged`). Beads slung
/// with `--merge=local` close too, with reason `Closed`: the polecat's `gt done` closes its
/// hooked bead in every merge mode (gastown `internal/cmd/done.go`: the `local` strategy skips
/// push and merge queue, then `updateAgentStateOnDone` runs `bd close` without a reason, which
/// beads `cmd/bd/close.go` records as `Closed`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AutoProgress {
    pub start_after_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_after_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_reason: Option<String>,
    /// Only beads held by a worker of these rigs close by themselves (default: every rig): the
    /// others' agents take longer than the test, which closes or cancels that work itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_rigs: Option<Vec<String>>,
}

/// Town configuration (`<town>/.fake-gastown/config.json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Bead ID prefix (default `gt`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Known rigs (default `["gastown", "demo"]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rigs: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_progress: Option<AutoProgress>,
    /// Polecat name pool (default Toast, Nux, Capable, Furiosa, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub polecat_names: Option<Vec<String>>,
    /// `Some(true)`: `bd list --all` without `--limit` lists every bead, as bd >= v0.49.5
    /// (which Gas Town requires) does. Default: it keeps `bd list`'s limit of 50, as bd
    /// v0.42.0-v0.49.4 did. Either way `--limit 0` lists all and rows are sorted by priority,
    /// then newest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bd_all_lifts_limit: Option<bool>,
}

/// One line of `calls.jsonl`: one invocation of `gt` or `bd`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Call {
    pub ts_ms: u64,
    /// `gt` or `bd`.
    pub tool: String,
    /// The arguments after the tool name.
    pub argv: Vec<String>,
    /// The exit code; `-1` for a call that hung (logged before hanging).
    pub exit_code: i32,
    /// `GT_ROLE` or `GT_POLECAT` was set in the caller's environment.
    pub env_gt_role: bool,
    #[serde(default)]
    pub hung: bool,
    /// `down`, `fail` or `hang` when a fault was injected before the work (nothing changed);
    /// `after_work_fail`, `after_work_hang` or `after_work_kill` when it was injected after the
    /// work was done and saved.
    #[serde(default)]
    pub fault: Option<String>,
    /// A `gt sling` that hooked the bead (not a no-op re-sling, dry run or failure), even if
    /// an after-work fault then made the call fail.
    #[serde(default)]
    pub dispatched: bool,
    /// The bead a `bd create` made, even if an after-work fault then made the call fail.
    #[serde(default)]
    pub created: Option<String>,
    /// Made by this test-support API.
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub seq: u64,
}

impl Call {
    /// The sub-command: the first argument that does not look like a flag (good enough for
    /// calls that put the verb first, as the controller does).
    pub fn verb(&self) -> Option<&str> {
        self.argv.iter().find(|a| !a.starts_with('-')).map(String::as_str)
    }

    /// Whether this is a `gt sling` of `bead` (dry runs excluded).
    pub fn is_sling_of(&self, bead: &str) -> bool {
        self.tool == "gt"
            && self.verb() == Some("sling")
            && self.argv.iter().any(|a| a == bead)
            && !self
                .argv
                .iter()
                .any(|a| a == "--dry-run" || a == "-n" || a == "--dry-run=true")
    }
}

/// A fake town on disk with `gt`/`bd` symlinks to the `fake-gastown` binary.
#[derive(Debug)]
pub struct FakeGasTown {
    town: PathBuf,
    binary: PathBuf,
    /// A temporary town, removed on drop.
    owned: bool,
}

/// Finds the `fake-gastown` binary: `$FAKE_GASTOWN_BIN`, else next to the running executable
/// or one directory up (test executables live in `target/<profile>/deps/`).
pub fn locate_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os(BIN_ENV) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("{BIN_ENV}={} is not a file", p.display());
    }
    let exe = std::env::current_exe().context("locating the current executable")?;
    let file = format!("{BIN_NAME}{}", std::env::consts::EXE_SUFFIX);
    for dir in exe.ancestors().skip(1).take(2) {
        let candidate = dir.join(&file);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "cannot find the {BIN_NAME} binary near {}: build it with `cargo build --workspace --bins` or set {BIN_ENV}",
        exe.display()
    )
}

fn unique_temp_dir() -> anyhow::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    for _ in 0..100 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("fake-gastown-{}-{n}-{nanos:x}", std::process::id()));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }
    bail!("cannot create a unique temporary directory")
}

fn write_atomic(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tmp = path.with_extension(format!(
        "tmp.{}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

fn link(binary: &Path, at: &Path) -> anyhow::Result<()> {
    match fs::remove_file(at) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", at.display())),
    }
    #[cfg(unix)]
    std::os::unix::fs::symlink(binary, at)
        .with_context(|| format!("linking {} -> {}", at.display(), binary.display()))?;
    #[cfg(not(unix))]
    fs::copy(binary, at).with_context(|| format!("copying {} to {}", binary.display(), at.display()))?;
    Ok(())
}

impl FakeGasTown {
    /// A fresh town in a temporary directory (removed on drop), using [`locate_binary`].
    pub fn new() -> anyhow::Result<FakeGasTown> {
        FakeGasTown::with_binary(&locate_binary()?)
    }

    /// A fresh town in a temporary directory, using the given `fake-gastown` binary.
    pub fn with_binary(binary: &Path) -> anyhow::Result<FakeGasTown> {
        let dir = unique_temp_dir()?;
        let town = dir.canonicalize().unwrap_or(dir);
        let mut fake = FakeGasTown::setup(&town, binary)?;
        fake.owned = true;
        Ok(fake)
    }

    /// A town in an existing directory (kept on drop), using [`locate_binary`]. Creates
    /// `mayor/town.json` if it is missing; existing state is kept.
    pub fn at(town_root: &Path) -> anyhow::Result<FakeGasTown> {
        FakeGasTown::at_with_binary(town_root, &locate_binary()?)
    }

    /// Like [`FakeGasTown::at`] with an explicit binary.
    pub fn at_with_binary(town_root: &Path, binary: &Path) -> anyhow::Result<FakeGasTown> {
        fs::create_dir_all(town_root).with_context(|| format!("creating {}", town_root.display()))?;
        let town = town_root
            .canonicalize()
            .with_context(|| format!("resolving {}", town_root.display()))?;
        FakeGasTown::setup(&town, binary)
    }

    fn setup(town: &Path, binary: &Path) -> anyhow::Result<FakeGasTown> {
        let binary = binary
            .canonicalize()
            .with_context(|| format!("the fake-gastown binary {}", binary.display()))?;
        let mayor = town.join("mayor");
        fs::create_dir_all(&mayor).with_context(|| format!("creating {}", mayor.display()))?;
        let marker = mayor.join("town.json");
        if !marker.is_file() {
            let body = serde_json::json!({"type": "town", "version": 2, "name": "fake-town", "owner": "fake-gastown"});
            write_atomic(&marker, format!("{body:#}\n").as_bytes())?;
        }
        let fake = FakeGasTown {
            town: town.to_path_buf(),
            binary,
            owned: false,
        };
        fs::create_dir_all(fake.bin_dir()).with_context(|| format!("creating {}", fake.bin_dir().display()))?;
        link(&fake.binary, &fake.gt_path())?;
        link(&fake.binary, &fake.bd_path())?;
        Ok(fake)
    }

    /// Keeps a temporary town on disk after drop.
    pub fn keep(mut self) -> PathBuf {
        self.owned = false;
        self.town.clone()
    }

    pub fn town_root(&self) -> &Path {
        &self.town
    }

    /// `<town>/.fake-gastown`: state, config, faults, call log.
    pub fn state_dir(&self) -> PathBuf {
        self.town.join(STATE_DIR)
    }

    /// The directory holding the `gt` and `bd` symlinks (put it first on `PATH`).
    pub fn bin_dir(&self) -> PathBuf {
        self.state_dir().join("bin")
    }

    pub fn gt_path(&self) -> PathBuf {
        self.bin_dir().join(format!("gt{}", std::env::consts::EXE_SUFFIX))
    }

    pub fn bd_path(&self) -> PathBuf {
        self.bin_dir().join(format!("bd{}", std::env::consts::EXE_SUFFIX))
    }

    /// `PATH` with [`FakeGasTown::bin_dir`] first.
    pub fn path_env(&self) -> OsString {
        let mut dirs = vec![self.bin_dir()];
        if let Some(path) = std::env::var_os("PATH") {
            dirs.extend(std::env::split_paths(&path));
        }
        std::env::join_paths(dirs).unwrap_or_else(|_| self.bin_dir().into_os_string())
    }

    /// A command for `gt` or `bd` run the way the controller must run it: working directory
    /// at the town root, agent variables (`GT_ROLE`, `GT_POLECAT`) removed. Its calls are
    /// logged and subject to faults.
    pub fn command(&self, tool: &str) -> Command {
        let path = if tool == "gt" { self.gt_path() } else { self.bd_path() };
        let mut cmd = Command::new(path);
        cmd.current_dir(&self.town)
            .env_remove("GT_ROLE")
            .env_remove("GT_POLECAT")
            .env_remove(INTERNAL_ENV);
        cmd
    }

    /// Runs a helper call (no faults, logged as internal).
    fn internal(&self, tool: &str, args: &[&str]) -> anyhow::Result<Output> {
        let mut cmd = self.command(tool);
        cmd.env(INTERNAL_ENV, "1").args(args);
        cmd.output()
            .with_context(|| format!("running {tool} {}", args.join(" ")))
    }

    fn internal_ok(&self, tool: &str, args: &[&str]) -> anyhow::Result<String> {
        let out = self.internal(tool, args)?;
        if !out.status.success() {
            bail!(
                "{tool} {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Every logged call, helper calls included.
    pub fn all_calls(&self) -> anyhow::Result<Vec<Call>> {
        let path = self.state_dir().join("calls.jsonl");
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{} line {}: {l}", path.display(), i + 1)))
            .collect()
    }

    /// The logged calls made by others than this helper (the controller, tests).
    pub fn calls(&self) -> anyhow::Result<Vec<Call>> {
        Ok(self.all_calls()?.into_iter().filter(|c| !c.internal).collect())
    }

    /// How many `gt sling` calls named this bead (any outcome, dry runs excluded).
    pub fn sling_count(&self, bead: &str) -> usize {
        self.calls()
            .map(|calls| calls.iter().filter(|c| c.is_sling_of(bead)).count())
            .unwrap_or(0)
    }

    /// How many `gt sling` calls actually hooked this bead (no-op re-slings excluded).
    pub fn dispatch_count(&self, bead: &str) -> usize {
        self.calls()
            .map(|calls| calls.iter().filter(|c| c.dispatched && c.is_sling_of(bead)).count())
            .unwrap_or(0)
    }

    /// The bead as `bd show <id> --json` prints it (`[0]`), or `None` if it does not exist.
    pub fn bead(&self, id: &str) -> anyhow::Result<Option<Value>> {
        let out = self.internal("bd", &["show", "--json", "--", id])?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.contains("no issue found") {
                return Ok(None);
            }
            bail!("bd show {id} failed ({}): {}", out.status, stderr.trim());
        }
        let beads: Vec<Value> = serde_json::from_slice(&out.stdout).context("parsing bd show --json")?;
        Ok(beads.into_iter().next())
    }

    /// Every bead, closed ones included (`bd list --all --limit 0 --json`; like real `bd`,
    /// the fake lists at most 50 beads without `--limit 0`).
    pub fn beads(&self) -> anyhow::Result<Vec<Value>> {
        let out = self.internal_ok("bd", &["list", "--all", "--limit", "0", "--json"])?;
        serde_json::from_str(&out).context("parsing bd list --json")
    }

    /// Every bead (closed ones included) whose `external_ref` is `external_ref`: more than
    /// one means the same work was created twice.
    pub fn beads_with_external_ref(&self, external_ref: &str) -> anyhow::Result<Vec<Value>> {
        Ok(self
            .beads()?
            .into_iter()
            .filter(|b| b["external_ref"].as_str() == Some(external_ref))
            .collect())
    }

    /// The beads made by `bd create` calls of others than this helper (the controller,
    /// tests), in call order, counting those an after-work fault then made fail.
    pub fn created_beads(&self) -> anyhow::Result<Vec<String>> {
        Ok(self.calls()?.into_iter().filter_map(|c| c.created).collect())
    }

    /// Fills the town with `count` open beads of priority `priority` (0 is the highest; the
    /// controller creates its beads with priority 2) and returns their IDs. Real `bd list`
    /// sorts by priority, so `count > 50` beads of a higher priority push the controller's
    /// beads out of an unlimited `bd list`'s first 50.
    pub fn fill_with_beads(&self, count: usize, priority: u8) -> anyhow::Result<Vec<String>> {
        let priority = priority.to_string();
        (0..count)
            .map(|i| {
                let title = format!("Other work {i}");
                let out = self.internal_ok("bd", &["create", "-p", &priority, "--silent", "--", &title])?;
                Ok(out.trim().to_string())
            })
            .collect()
    }

    /// Creates a bead (like a user would) and returns its ID.
    pub fn create_bead(&self, title: &str) -> anyhow::Result<String> {
        let out = self.internal_ok("bd", &["create", "--silent", "--", title])?;
        Ok(out.trim().to_string())
    }

    /// Creates a bead carrying `external_ref` and the labels the controller's `bd create` sets
    /// (`gastown-operator` and the reference's lookup label), as if the controller had created
    /// it, and returns its ID.
    pub fn create_bead_with_external_ref(&self, title: &str, external_ref: &str) -> anyhow::Result<String> {
        let reference = gastown_controller::gastown::ExternalRef::parse(external_ref)?;
        let labels = format!(
            "{},{}",
            gastown_controller::gastown::OPERATOR_LABEL,
            reference.lookup_label()
        );
        let out = self.internal_ok(
            "bd",
            &[
                "create",
                "--silent",
                "--external-ref",
                external_ref,
                "-l",
                &labels,
                "--",
                title,
            ],
        )?;
        Ok(out.trim().to_string())
    }

    /// Creates a bead carrying `external_ref` but no labels, as a controller build before the
    /// lookup label did, and returns its ID.
    pub fn create_unlabelled_bead_with_external_ref(&self, title: &str, external_ref: &str) -> anyhow::Result<String> {
        let out = self.internal_ok(
            "bd",
            &["create", "--silent", "--external-ref", external_ref, "--", title],
        )?;
        Ok(out.trim().to_string())
    }

    /// Writes `faults.json` (applies from the next call).
    pub fn set_faults(&self, faults: &Faults) -> anyhow::Result<()> {
        fs::create_dir_all(self.state_dir())?;
        let body = serde_json::to_vec_pretty(faults)?;
        write_atomic(&self.state_dir().join("faults.json"), &body)
    }

    /// Removes `faults.json`.
    pub fn clear_faults(&self) {
        let _ = fs::remove_file(self.state_dir().join("faults.json"));
    }

    /// Writes `config.json`.
    pub fn set_config(&self, cfg: &Config) -> anyhow::Result<()> {
        fs::create_dir_all(self.state_dir())?;
        let body = serde_json::to_vec_pretty(cfg)?;
        write_atomic(&self.state_dir().join("config.json"), &body)
    }

    /// What the agent does when it picks the work up: status `in_progress`, assignee kept.
    pub fn start_work(&self, bead: &str) -> anyhow::Result<()> {
        self.internal_ok("bd", &["update", "--status", "in_progress", "--", bead])
            .map(drop)
    }

    /// The worker's tmux session is gone (killed, crashed, machine restarted): real `gt
    /// unsling <bead> <rig>/<Name>` then fails to resolve the worker, while its bead stays as
    /// it was. `worker` is `<rig>/<Name>` or the bead's assignee `<rig>/polecats/<Name>`. The
    /// next `gt sling` to that worker starts a new session.
    pub fn end_session(&self, worker: &str) -> anyhow::Result<()> {
        self.internal_ok("gt", &["_end-session", worker]).map(drop)
    }

    /// What the refinery (or `gt done`) does: close the bead with a reason.
    pub fn close(&self, bead: &str, reason: &str) -> anyhow::Result<()> {
        self.internal_ok("bd", &["close", "--reason", reason, "--", bead])
            .map(drop)
    }
}

impl Drop for FakeGasTown {
    fn drop(&mut self) {
        if self.owned && std::env::var_os(KEEP_ENV).is_none() {
            let _ = fs::remove_dir_all(&self.town);
        }
    }
}
