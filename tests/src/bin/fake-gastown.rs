//! `fake-gastown`: a stand-in for the Gas Town `gt` and Beads `bd` command-line tools, for
//! tests, benchmarks, chaos tests and the simulated `make run`.
//!
//! It behaves as `gt` or `bd` according to the name it is invoked as (symlinks named `gt` and
//! `bd`), or as `fake-gastown gt ...` / `fake-gastown bd ...`. It follows
//! `shared/docs/gastown-contract.md`: the town is found from the working directory (`mayor/town.json`
//! in it or an ancestor), `bd show --json` prints an array, `gt sling` prints only text, and so on.
//!
//! State lives in `<town>/.fake-gastown/`, one file per bead, convoy and polecat plus a small
//! `index.json`; most calls read only the index and the records they need, so their cost
//! hardly grows with the town (`bd list` reads every bead, as the real `bd` does). Every call takes an
//! exclusive lock for its read-modify-write and writes each file atomically, so many processes
//! may run at once. Every
//! call appends one JSON line to `calls.jsonl`. Faults (`faults.json`) and configuration
//! (`config.json`) are re-read at each call. See `tests/src/fake_gastown.rs` for the
//! test-support API that drives it.
//!
//! `fake-gastown init <dir> [--rigs a,b] [--prefix p] [--auto-progress START_MS,CLOSE_MS]`
//! prepares a town outside of tests (e.g. a simulated `make run`) and prints the directory
//! holding the `gt`/`bd` symlinks, to put first on `PATH`.

#[path = "fake_gastown/args.rs"]
mod args;
#[path = "fake_gastown/bd.rs"]
mod bd;
#[path = "fake_gastown/gt.rs"]
mod gt;
#[path = "fake_gastown/store.rs"]
mod store;

use serde_json::json;
use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use store::{AfterWork, Config, Faults, State};

/// Set by the test-support API on its own calls: no faults, and the call is logged as internal.
const INTERNAL_ENV: &str = "FAKE_GASTOWN_INTERNAL";

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

/// Splits argv into the tool (`gt` or `bd`) and its arguments.
fn split_tool(argv: Vec<String>) -> Result<(String, Vec<String>), String> {
    let mut it = argv.into_iter();
    let argv0 = it.next().unwrap_or_default();
    let base = Path::new(&argv0)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if base == "gt" || base == "bd" {
        return Ok((base, it.collect()));
    }
    match it.next() {
        Some(tool) if tool == "gt" || tool == "bd" => Ok((tool, it.collect())),
        _ => Err(format!(
            "usage: {argv0} gt|bd [args...]  (or invoke through symlinks named gt / bd)\n       {argv0} init <town-dir> [--rigs a,b] [--prefix p] [--auto-progress START_MS,CLOSE_MS[,REASON]]"
        )),
    }
}

/// One line of `calls.jsonl`.
struct CallRecord<'a> {
    ts_ms: u64,
    tool: &'a str,
    argv: &'a [String],
    exit_code: i32,
    hung: bool,
    fault: Option<&'a str>,
    dispatched: bool,
    created: Option<&'a str>,
    seq: u64,
}

fn record(dir: &Path, internal: bool, env_gt_role: bool, rec: &CallRecord<'_>) {
    let line = json!({
        "ts_ms": rec.ts_ms,
        "tool": rec.tool,
        "argv": rec.argv,
        "exit_code": rec.exit_code,
        "env_gt_role": env_gt_role,
        "hung": rec.hung,
        "fault": rec.fault,
        "dispatched": rec.dispatched,
        "created": rec.created,
        "internal": internal,
        "seq": rec.seq,
        "pid": std::process::id(),
    });
    let result = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("calls.jsonl"))
        .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
    if let Err(e) = result {
        eprintln!("fake-gastown: cannot write calls.jsonl: {e}");
    }
}

fn emit(outcome: &Outcome) {
    // Ignore write errors (closed pipes): the exit code is what callers rely on.
    let _ = std::io::stdout().write_all(outcome.stdout.as_bytes());
    let _ = std::io::stderr().write_all(outcome.stderr.as_bytes());
    let _ = std::io::stdout().flush();
}

/// Salt that keeps the after-work roll independent of the before-work one.
const AFTER_WORK_SALT: u64 = 0x5eed_af7e_4000_0001;

fn down_message(tool: &str) -> String {
    match tool {
        "bd" => "Error: failed to open database: cannot connect to Dolt server at 127.0.0.1:3307: dial tcp 127.0.0.1:3307: connect: connection refused\nHint: is the Dolt server running? (gt dolt start)\n".to_string(),
        _ => "Error: cannot connect to Dolt server at 127.0.0.1:3307: dial tcp 127.0.0.1:3307: connect: connection refused\n".to_string(),
    }
}

fn run(tool: &str, args: &[String]) -> i32 {
    let ts_ms = store::now_ms();
    let cwd = match std::env::current_dir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("Error: cannot read the working directory: {e}");
            return 1;
        }
    };
    let Some(town) = store::find_town(&cwd) else {
        eprintln!(
            "Error: not in a Gas Town workspace: no mayor/town.json in {} or any parent directory\n(run {tool} from inside your town, e.g. cd ~/gt)",
            cwd.display()
        );
        return 1;
    };
    let dir = town.join(store::STATE_DIR);
    if let Err(e) = fs::create_dir_all(&dir) {
        eprintln!("Error: cannot create {}: {e}", dir.display());
        return 1;
    }
    let internal = std::env::var_os(INTERNAL_ENV).is_some();
    let env_gt_role = non_empty_env("GT_ROLE");
    let env_gt_polecat = non_empty_env("GT_POLECAT");
    let agent_env = env_gt_role.is_some() || env_gt_polecat.is_some();
    let verb = if tool == "gt" { gt::verb(args) } else { bd::verb(args) };

    let faults: Faults = if internal {
        Faults::default()
    } else {
        match store::read_json(&dir.join("faults.json")) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("fake-gastown: ignoring faults.json: {e}");
                Faults::default()
            }
        }
    };
    if faults.delay_ms > 0 {
        std::thread::sleep(Duration::from_millis(faults.delay_ms));
    }

    let lock = match store::lock(&dir) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("Error: cannot lock {}: {e}", dir.display());
            return 1;
        }
    };
    let seq = store::next_seq(&dir).unwrap_or(0);
    let mut rec = CallRecord {
        ts_ms,
        tool,
        argv: args,
        exit_code: 1,
        hung: false,
        fault: None,
        dispatched: false,
        created: None,
        seq,
    };

    if faults.down {
        rec.fault = Some("down");
        record(&dir, internal, agent_env, &rec);
        drop(lock);
        emit(&Outcome::fail(down_message(tool)));
        return 1;
    }
    if faults.applies_to(tool, &verb) && (faults.hang_rate > 0.0 || faults.fail_rate > 0.0) {
        let bits = match faults.seed {
            Some(seed) => store::seeded_u64(seed, seq),
            None => store::random_u64(seq),
        };
        let roll = store::unit_interval(bits);
        if roll < faults.hang_rate {
            // Logged before hanging, with no exit code yet (-1); the lock is released first so
            // that other calls go on while this one hangs.
            rec.hung = true;
            rec.exit_code = -1;
            rec.fault = Some("hang");
            record(&dir, internal, agent_env, &rec);
            drop(lock);
            std::thread::sleep(Duration::from_secs(faults.hang_seconds.unwrap_or(3600)));
            eprintln!("Error: {tool} {verb}: timed out (injected hang)");
            return 1;
        }
        if roll < faults.hang_rate + faults.fail_rate {
            rec.fault = Some("fail");
            record(&dir, internal, agent_env, &rec);
            drop(lock);
            emit(&Outcome::fail(format!(
                "Error: {tool} {verb}: operation failed: transient error (injected by fake-gastown)\n"
            )));
            return 1;
        }
    }

    let outcome = match (Config::load(&dir), State::open(&dir)) {
        (Err(e), _) | (_, Err(e)) => Outcome::fail(format!("Error: {e}\n")),
        (Ok(cfg), Ok(mut state)) => {
            let ctx = Ctx {
                town: town.clone(),
                now_ms: ts_ms,
                seq,
                actor: non_empty_env("BD_ACTOR")
                    .or_else(|| non_empty_env("USER"))
                    .unwrap_or_else(|| "unknown".to_string()),
                env_gt_role,
                env_gt_polecat,
                internal,
            };
            let mut outcome = if tool == "gt" {
                gt::run(args, &mut state, &cfg, &ctx)
            } else {
                bd::run(args, &mut state, &cfg, &ctx)
            };
            if let Some(e) = state.error() {
                outcome = Outcome::fail(format!("Error: {e}\n"));
            } else if outcome.changed
                && let Err(e) = state.save()
            {
                outcome = Outcome::fail(format!("Error: {e}\n"));
            }
            outcome
        }
    };
    rec.exit_code = outcome.code;
    rec.dispatched = outcome.dispatched && outcome.code == 0;
    rec.created = outcome.created.as_deref().filter(|_| outcome.code == 0);
    // "The work was done, then the call failed / hung / was killed": only for a call that
    // succeeded, after its change was saved, so the change stays whatever the caller sees.
    let after = if outcome.code == 0 {
        let bits = match faults.seed {
            Some(seed) => store::seeded_u64(seed ^ AFTER_WORK_SALT, seq),
            None => store::random_u64(seq ^ AFTER_WORK_SALT),
        };
        faults.after_work(tool, &verb, store::unit_interval(bits))
    } else {
        None
    };
    let Some(after) = after else {
        record(&dir, internal, agent_env, &rec);
        drop(lock);
        emit(&outcome);
        return outcome.code;
    };
    rec.fault = Some(after.label());
    match after {
        AfterWork::Fail => {
            rec.exit_code = 1;
            record(&dir, internal, agent_env, &rec);
            drop(lock);
            emit(&Outcome::fail(format!(
                "Error: {tool} {verb}: the change was committed, then the command failed: connection to the Dolt server lost (injected by fake-gastown)\n"
            )));
            1
        }
        AfterWork::Hang => {
            // Logged before hanging, like a before-work hang; the lock is released first.
            rec.hung = true;
            rec.exit_code = -1;
            record(&dir, internal, agent_env, &rec);
            drop(lock);
            std::thread::sleep(Duration::from_secs(faults.hang_seconds.unwrap_or(3600)));
            eprintln!("Error: {tool} {verb}: timed out after the change was committed (injected hang)");
            1
        }
        AfterWork::Kill => {
            // The output may already be out when a process is killed; the exit code never is.
            rec.exit_code = -1;
            record(&dir, internal, agent_env, &rec);
            drop(lock);
            emit(&outcome);
            std::process::abort()
        }
    }
}

const INIT_FLAGS: &[args::Flag] = &[
    args::flag("rigs", None, args::Kind::Value),
    args::flag("prefix", None, args::Kind::Value),
    args::flag("auto-progress", None, args::Kind::Value),
];

const INIT_USAGE: &str =
    "usage: fake-gastown init <town-dir> [--rigs a,b] [--prefix p] [--auto-progress START_MS,CLOSE_MS[,REASON]]";

/// `fake-gastown init <dir>`: makes `<dir>` a town (mayor/town.json), links
/// `<dir>/.fake-gastown/bin/{gt,bd}` to this binary, optionally writes config.json, and prints
/// the bin directory (to put first on PATH), e.g. for a simulated `make run`.
fn init(rest: &[String]) -> Result<String, String> {
    let p = args::parse(rest, INIT_FLAGS)?;
    let [dir] = p.positionals.as_slice() else {
        return Err(INIT_USAGE.to_string());
    };
    let town = PathBuf::from(dir);
    let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
    fs::create_dir_all(town.join("mayor")).map_err(|e| io("creating mayor/", e))?;
    let marker = town.join("mayor").join("town.json");
    if !marker.is_file() {
        let body = json!({"type": "town", "version": 2, "name": "fake-town", "owner": "fake-gastown"});
        store::write_atomic(&marker, format!("{body:#}\n").as_bytes()).map_err(|e| io("writing mayor/town.json", e))?;
    }
    let bin = town.join(store::STATE_DIR).join("bin");
    fs::create_dir_all(&bin).map_err(|e| io("creating bin/", e))?;
    let exe = std::env::current_exe().map_err(|e| io("locating fake-gastown", e))?;
    for tool in ["gt", "bd"] {
        let link = bin.join(tool);
        let _ = fs::remove_file(&link);
        #[cfg(unix)]
        std::os::unix::fs::symlink(&exe, &link).map_err(|e| io("linking", e))?;
        #[cfg(not(unix))]
        fs::copy(&exe, &link).map_err(|e| io("copying", e))?;
    }
    let mut cfg = serde_json::Map::new();
    if let Some(rigs) = p.value("rigs") {
        let rigs: Vec<&str> = rigs.split(',').map(str::trim).filter(|r| !r.is_empty()).collect();
        cfg.insert("rigs".into(), json!(rigs));
    }
    if let Some(prefix) = p.value("prefix") {
        if !store::valid_prefix(prefix) {
            return Err(format!("invalid prefix \"{prefix}\""));
        }
        cfg.insert("prefix".into(), json!(prefix));
    }
    if let Some(ap) = p.value("auto-progress") {
        let parts: Vec<&str> = ap.splitn(3, ',').collect();
        let ms = |s: Option<&&str>| s.and_then(|v| v.trim().parse::<u64>().ok());
        let (Some(start), close) = (ms(parts.first()), ms(parts.get(1))) else {
            return Err(INIT_USAGE.to_string());
        };
        cfg.insert(
            "auto_progress".into(),
            json!({"start_after_ms": start, "close_after_ms": close, "close_reason": parts.get(2).unwrap_or(&"merged")}),
        );
    }
    if !cfg.is_empty() {
        let body = format!("{:#}\n", serde_json::Value::Object(cfg));
        store::write_atomic(&town.join(store::STATE_DIR).join("config.json"), body.as_bytes())
            .map_err(|e| io("writing config.json", e))?;
    }
    let bin = bin.canonicalize().unwrap_or(bin);
    Ok(format!("{}\n", bin.display()))
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args_os()
        .map(|a: OsString| a.to_string_lossy().into_owned())
        .collect();
    let invoked_as_tool = argv
        .first()
        .is_some_and(|a| Path::new(a).file_stem().is_some_and(|s| s == "gt" || s == "bd"));
    if !invoked_as_tool && argv.get(1).map(String::as_str) == Some("init") {
        return match init(&argv[2..]) {
            Ok(out) => {
                let _ = std::io::stdout().write_all(out.as_bytes());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("fake-gastown init: {e}");
                ExitCode::from(2)
            }
        };
    }
    let (tool, args) = match split_tool(argv) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let code = run(&tool, &args);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
