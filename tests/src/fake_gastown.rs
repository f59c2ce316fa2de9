//! Test support for the fake Gas Town: a town directory whose `gt` and `bd` are symlinks to
//! the `fake-gastown` binary (`src/bin/fake-gastown/`), plus helpers that read and steer it.
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
use serde_json::Value;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

mod files;
pub use files::{AutoProgress, Call, Config, Faults};

/// The directory inside the town where the fake keeps its files.
pub const STATE_DIR: &str = ".fake-gastown";
/// Environment variable naming the `fake-gastown` binary.
pub const BIN_ENV: &str = "FAKE_GASTOWN_BIN";
/// Set this environment variable to keep temporary towns after the test (for debugging).
pub const KEEP_ENV: &str = "FAKE_GASTOWN_KEEP";
const INTERNAL_ENV: &str = "FAKE_GASTOWN_INTERNAL";
const BIN_NAME: &str = "fake-gastown";

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

    /// The controller flags that point its exec transport at this town: `--town-root`,
    /// `--gt-path` and `--bd-path`.
    pub fn exec_args(&self) -> Vec<String> {
        vec![
            "--town-root".into(),
            self.town.display().to_string(),
            "--gt-path".into(),
            self.gt_path().display().to_string(),
            "--bd-path".into(),
            self.bd_path().display().to_string(),
        ]
    }

    /// Runs `tool args` as a person or Gas Town itself would: no faults, and not counted in
    /// [`FakeGasTown::calls`]. Fails with the tool's stderr when it exits non-zero.
    pub fn by_hand(&self, tool: &str, args: &[&str]) -> anyhow::Result<String> {
        self.internal_ok(tool, args)
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

    /// The calls of others than this helper that concern `external_ref`: they name it, its
    /// lookup label, or a bead that carries it. A town that never saw the work has none.
    pub fn calls_about(&self, external_ref: &str) -> anyhow::Result<Vec<Call>> {
        let label = gastown_controller::gastown::ExternalRef::parse(external_ref)?.lookup_label();
        let beads: Vec<String> = self
            .beads_with_external_ref(external_ref)?
            .iter()
            .filter_map(|b| b["id"].as_str().map(str::to_string))
            .collect();
        let names_it = |arg: &String| *arg == label || arg == external_ref || beads.contains(arg);
        Ok(self
            .calls()?
            .into_iter()
            .filter(|c| c.argv.iter().any(names_it))
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
