//! One invocation of `gt` or `bd`: find the town, roll the before-work faults, run the command
//! under the town's lock, save what it changed, then roll the after-work faults. Every call is
//! logged to `calls.jsonl`.

use serde_json::json;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::clock::now_ms;
use crate::config::Config;
use crate::faults::{AfterWork, Faults};
use crate::files::{STATE_DIR, find_town, next_seq, read_json};
use crate::random::{random_u64, seeded_u64, unit_interval};
use crate::state::State;
use crate::{bd, gt};

/// Set by the test-support API on its own calls: no faults, and the call is logged as internal.
const INTERNAL_ENV: &str = "FAKE_GASTOWN_INTERNAL";

/// Salt that keeps the after-work roll independent of the before-work one.
const AFTER_WORK_SALT: u64 = 0x5eed_af7e_4000_0001;

/// What a command produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The state must be saved.
    pub changed: bool,
    /// A `gt sling` that actually hooked the bead (not a no-op, dry run or failure).
    pub dispatched: bool,
    /// The bead a `bd create` made.
    pub created: Option<String>,
}

impl Outcome {
    pub fn ok(stdout: impl Into<String>) -> Outcome {
        Outcome {
            stdout: stdout.into(),
            ..Outcome::default()
        }
    }

    pub fn fail(stderr: impl Into<String>) -> Outcome {
        Outcome {
            code: 1,
            stderr: stderr.into(),
            ..Outcome::default()
        }
    }

    pub fn changed(self) -> Outcome {
        Outcome { changed: true, ..self }
    }
}

/// Facts about this invocation.
#[derive(Debug)]
pub struct Ctx {
    pub town: PathBuf,
    pub now_ms: u64,
    /// The call's sequence number in this town (also salts IDs).
    pub seq: u64,
    /// Audit name: BD_ACTOR, else USER, else "unknown".
    pub actor: String,
    pub env_gt_role: Option<String>,
    pub env_gt_polecat: Option<String>,
    /// A call of the test-support API (`FAKE_GASTOWN_INTERNAL`): may use the fake's own
    /// helper commands (`gt _end-session`).
    pub internal: bool,
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// One line of `calls.jsonl`.
struct CallRecord<'a> {
    ts_ms: u64,
    tool: &'a str,
    argv: &'a [String],
    exit_code: i32,
    hung: bool,
    fault: Option<&'static str>,
    dispatched: bool,
    created: Option<String>,
    seq: u64,
}

fn emit(outcome: &Outcome) {
    // Ignore write errors (closed pipes): the exit code is what callers rely on.
    let _ = std::io::stdout().write_all(outcome.stdout.as_bytes());
    let _ = std::io::stderr().write_all(outcome.stderr.as_bytes());
    let _ = std::io::stdout().flush();
}

fn down_message(tool: &str) -> String {
    match tool {
        "bd" => "Error: failed to open database: cannot connect to Dolt server at 127.0.0.1:3307: dial tcp 127.0.0.1:3307: connect: connection refused\nHint: is the Dolt server running? (gt dolt start)\n".to_string(),
        _ => "Error: cannot connect to Dolt server at 127.0.0.1:3307: dial tcp 127.0.0.1:3307: connect: connection refused\n".to_string(),
    }
}

/// The town root (from the working directory) and its state directory, created if need be.
fn locate(tool: &str) -> Result<(PathBuf, PathBuf), String> {
    let cwd = std::env::current_dir().map_err(|e| format!("Error: cannot read the working directory: {e}"))?;
    let Some(town) = find_town(&cwd) else {
        return Err(format!(
            "Error: not in a Gas Town workspace: no mayor/town.json in {} or any parent directory\n(run {tool} from inside your town, e.g. cd ~/gt)",
            cwd.display()
        ));
    };
    let dir = town.join(STATE_DIR);
    fs::create_dir_all(&dir).map_err(|e| format!("Error: cannot create {}: {e}", dir.display()))?;
    Ok((town, dir))
}

/// The faults for this call: none for the test-support API, and none (with a warning) when
/// `faults.json` cannot be read.
fn read_faults(dir: &Path, internal: bool) -> Faults {
    if internal {
        return Faults::default();
    }
    read_json(&dir.join("faults.json")).unwrap_or_else(|e| {
        eprintln!("fake-gastown: ignoring faults.json: {e}");
        Faults::default()
    })
}

/// 64 random bits for this call: reproducible from the faults' seed, else fresh.
fn roll_bits(faults: &Faults, salt: u64, seq: u64) -> u64 {
    match faults.seed {
        Some(seed) => seeded_u64(seed ^ salt, seq),
        None => random_u64(seq ^ salt),
    }
}

/// Runs `gt` or `bd` with `args` in the town of the working directory; returns the exit code.
pub fn run(tool: &str, args: &[String]) -> i32 {
    let ts_ms = now_ms();
    let (town, dir) = match locate(tool) {
        Ok(found) => found,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let env = Env::read();
    let faults = read_faults(&dir, env.internal);
    if faults.delay_ms > 0 {
        std::thread::sleep(Duration::from_millis(faults.delay_ms));
    }
    let lock = match crate::files::lock(&dir) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("Error: cannot lock {}: {e}", dir.display());
            return 1;
        }
    };
    let seq = next_seq(&dir).unwrap_or(0);
    let mut call = Call {
        verb: if tool == "gt" { gt::verb(args) } else { bd::verb(args) },
        dir,
        env,
        faults,
        lock: Some(lock),
        rec: CallRecord {
            ts_ms,
            tool,
            argv: args,
            exit_code: 1,
            hung: false,
            fault: None,
            dispatched: false,
            created: None,
            seq,
        },
    };
    if let Some(code) = call.fault_before_work() {
        return code;
    }
    let outcome = call.execute(town);
    call.finish(outcome)
}

/// What the environment says about the caller.
struct Env {
    internal: bool,
    gt_role: Option<String>,
    gt_polecat: Option<String>,
}

impl Env {
    fn read() -> Env {
        Env {
            internal: std::env::var_os(INTERNAL_ENV).is_some(),
            gt_role: non_empty_env("GT_ROLE"),
            gt_polecat: non_empty_env("GT_POLECAT"),
        }
    }

    /// The caller runs as a Gas Town agent (logged as `env_gt_role`).
    fn is_agent(&self) -> bool {
        self.gt_role.is_some() || self.gt_polecat.is_some()
    }
}

/// A call in progress: it holds the town's lock until it is logged.
struct Call<'a> {
    dir: PathBuf,
    verb: String,
    env: Env,
    faults: Faults,
    lock: Option<File>,
    rec: CallRecord<'a>,
}

impl Call<'_> {
    /// Appends the call to `calls.jsonl`, then releases the lock.
    fn log_and_unlock(&mut self) {
        let rec = &self.rec;
        let line = json!({
            "ts_ms": rec.ts_ms,
            "tool": rec.tool,
            "argv": rec.argv,
            "exit_code": rec.exit_code,
            "env_gt_role": self.env.is_agent(),
            "hung": rec.hung,
            "fault": rec.fault,
            "dispatched": rec.dispatched,
            "created": rec.created,
            "internal": self.env.internal,
            "seq": rec.seq,
            "pid": std::process::id(),
        });
        let result = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("calls.jsonl"))
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
        if let Err(e) = result {
            eprintln!("fake-gastown: cannot write calls.jsonl: {e}");
        }
        self.lock = None;
    }

    /// Logged before hanging with no exit code yet (-1), the lock released first so that other
    /// calls go on while this one hangs.
    fn hang(&mut self, fault: &'static str, message: &str) -> i32 {
        self.rec.hung = true;
        self.rec.exit_code = -1;
        self.rec.fault = Some(fault);
        self.log_and_unlock();
        std::thread::sleep(Duration::from_secs(self.faults.hang_seconds.unwrap_or(3600)));
        eprintln!("Error: {} {}: {message}", self.rec.tool, self.verb);
        1
    }

    /// Fails the call with `stderr`, logged with `fault`.
    fn fail(&mut self, fault: &'static str, stderr: String) -> i32 {
        self.rec.exit_code = 1;
        self.rec.fault = Some(fault);
        self.log_and_unlock();
        emit(&Outcome::fail(stderr));
        1
    }

    /// The faults that strike before the work (down, hang, fail): the exit code if one did.
    fn fault_before_work(&mut self) -> Option<i32> {
        let (tool, verb) = (self.rec.tool, self.verb.clone());
        if self.faults.down {
            return Some(self.fail("down", down_message(tool)));
        }
        let f = &self.faults;
        if !(f.applies_to(tool, &verb) && (f.hang_rate > 0.0 || f.fail_rate > 0.0)) {
            return None;
        }
        let roll = unit_interval(roll_bits(f, 0, self.rec.seq));
        if roll < f.hang_rate {
            return Some(self.hang("hang", "timed out (injected hang)"));
        }
        if roll < f.hang_rate + f.fail_rate {
            let msg = format!("Error: {tool} {verb}: operation failed: transient error (injected by fake-gastown)\n");
            return Some(self.fail("fail", msg));
        }
        None
    }

    /// Runs the command against the town's state and saves what it changed.
    fn execute(&self, town: PathBuf) -> Outcome {
        let (cfg, mut state) = match (Config::load(&self.dir), State::open(&self.dir)) {
            (Err(e), _) | (_, Err(e)) => return Outcome::fail(format!("Error: {e}\n")),
            (Ok(cfg), Ok(state)) => (cfg, state),
        };
        let ctx = Ctx {
            town,
            now_ms: self.rec.ts_ms,
            seq: self.rec.seq,
            actor: non_empty_env("BD_ACTOR")
                .or_else(|| non_empty_env("USER"))
                .unwrap_or_else(|| "unknown".to_string()),
            env_gt_role: self.env.gt_role.clone(),
            env_gt_polecat: self.env.gt_polecat.clone(),
            internal: self.env.internal,
        };
        let outcome = if self.rec.tool == "gt" {
            gt::run(self.rec.argv, &mut state, &cfg, &ctx)
        } else {
            bd::run(self.rec.argv, &mut state, &cfg, &ctx)
        };
        if let Some(e) = state.error() {
            Outcome::fail(format!("Error: {e}\n"))
        } else if outcome.changed
            && let Err(e) = state.save()
        {
            Outcome::fail(format!("Error: {e}\n"))
        } else {
            outcome
        }
    }

    /// Logs the call and prints its outcome, unless an after-work fault strikes: "the work was
    /// done, then the call failed / hung / was killed", only for a call that succeeded, after
    /// its change was saved, so the change stays whatever the caller sees.
    fn finish(mut self, outcome: Outcome) -> i32 {
        self.rec.exit_code = outcome.code;
        self.rec.dispatched = outcome.dispatched && outcome.code == 0;
        self.rec.created = outcome.created.clone().filter(|_| outcome.code == 0);
        let (tool, verb) = (self.rec.tool, self.verb.clone());
        let after = (outcome.code == 0)
            .then(|| {
                let roll = unit_interval(roll_bits(&self.faults, AFTER_WORK_SALT, self.rec.seq));
                self.faults.after_work(tool, &verb, roll)
            })
            .flatten();
        let Some(after) = after else {
            self.log_and_unlock();
            emit(&outcome);
            return outcome.code;
        };
        match after {
            AfterWork::Fail => self.fail(
                after.label(),
                format!("Error: {tool} {verb}: the change was committed, then the command failed: connection to the Dolt server lost (injected by fake-gastown)\n"),
            ),
            AfterWork::Hang => self.hang(after.label(), "timed out after the change was committed (injected hang)"),
            AfterWork::Kill => {
                // The output may already be out when a process is killed; the exit code never is.
                self.rec.exit_code = -1;
                self.rec.fault = Some(after.label());
                self.log_and_unlock();
                emit(&outcome);
                std::process::abort()
            }
        }
    }
}
