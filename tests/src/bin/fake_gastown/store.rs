//! The fake town's files: where the town is, its configuration, fault settings and state,
//! the lock that serialises concurrent invocations, IDs, randomness and time formatting.
//!
//! Layout under `<town>/.fake-gastown/`:
//! `beads/`, `convoys/`, `polecats/<rig>/` (one JSON file per record) and `index.json` (see
//! [`State`]), `config.json` (rigs, prefix, auto progress),
//! `faults.json` (fault injection), `calls.jsonl` (call log), `seq` (call counter), `lock`,
//! `bin/` (the `gt` and `bd` links made by `fake-gastown init`), and `state.json.migrated`
//! where a town of the older whole-file fake was moved into per-record files.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::hash_map::{DefaultHasher, RandomState};
use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hash, Hasher};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The directory, inside the town, that holds the fake's files.
pub const STATE_DIR: &str = ".fake-gastown";

/// Finds the town root: `start` or its nearest ancestor holding `mayor/town.json`.
pub fn find_town(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|dir| dir.join("mayor").join("town.json").is_file())
        .map(Path::to_path_buf)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Howard Hinnant's days-to-civil: (year, month, day) for days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn split_time(ms: u64) -> (i64, u32, u32, u64, u64, u64, u64) {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let (y, mo, d) = civil_from_days(days);
    let sod = secs % 86_400;
    (y, mo, d, sod / 3600, sod % 3600 / 60, sod % 60, ms % 1000)
}

/// RFC 3339 in UTC, with the fraction trimmed like Go's `RFC3339Nano` (as `bd --json` prints).
pub fn rfc3339(ms: u64) -> String {
    let (y, mo, d, h, mi, s, frac) = split_time(ms);
    let mut out = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
    if frac != 0 {
        let f = format!("{frac:03}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// `YYYY-MM-DD HH:MM:SS`, the format of `gt polecat status --json` times.
pub fn gt_time(ms: u64) -> String {
    let (y, mo, d, h, mi, s, _) = split_time(ms);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}

/// A random number, different in every process and call (std's randomly keyed SipHash).
pub fn random_u64(salt: u64) -> u64 {
    let mut h = RandomState::new().build_hasher();
    salt.hash(&mut h);
    std::process::id().hash(&mut h);
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
        .hash(&mut h);
    h.finish()
}

/// A reproducible number for (seed, call sequence number).
pub fn seeded_u64(seed: u64, seq: u64) -> u64 {
    let mut h = DefaultHasher::new();
    seed.hash(&mut h);
    seq.hash(&mut h);
    h.finish()
}

/// A number in [0, 1) from 64 random bits.
pub fn unit_interval(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// `len` lowercase base-36 characters from `bits`.
pub fn base36(mut bits: u64, len: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    (0..len)
        .map(|_| {
            let c = DIGITS[(bits % 36) as usize] as char;
            bits /= 36;
            c
        })
        .collect()
}

/// Writes `contents` to `path` atomically: a uniquely named temporary file, then a rename.
/// (No fsync: readers must never see a torn file, but surviving a machine crash is not needed.)
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        random_u64(0) % 1_000_000
    ));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(contents)?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Takes the town-wide exclusive lock; it is released when the returned file is dropped.
pub fn lock(dir: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(dir.join("lock"))?;
    file.lock()?;
    Ok(file)
}

/// Increments and returns the call counter (call under the lock).
pub fn next_seq(dir: &Path) -> io::Result<u64> {
    let path = dir.join("seq");
    let current = match fs::read_to_string(&path) {
        Ok(s) => s.trim().parse::<u64>().unwrap_or(0),
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    };
    let next = current + 1;
    write_atomic(&path, next.to_string().as_bytes())?;
    Ok(next)
}

/// Reads a JSON file; a missing file gives the default value.
pub fn read_json<T: for<'de> Deserialize<'de> + Default>(path: &Path) -> Result<T, String> {
    match fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|e| format!("reading {}: invalid JSON: {e}", path.display()))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

/// Fault injection settings (`faults.json`), re-read at every call.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Probability that a matching call fails with exit 1 and changes nothing.
    pub fail_rate: f64,
    /// Probability that a matching call hangs for `hang_seconds`.
    pub hang_rate: f64,
    pub hang_seconds: Option<u64>,
    /// Delay before every call.
    pub delay_ms: u64,
    /// Every call fails as if the Dolt server were down.
    pub down: bool,
    /// Verbs (`sling`, `create`, or qualified `gt sling`) the rates apply to; absent = all.
    pub fail_verbs: Option<Vec<String>>,
    /// Makes the fail/hang decisions reproducible (per call sequence number).
    pub seed: Option<u64>,
    /// Probability that a matching call that succeeded (its change saved) then exits 1 with
    /// an error and without its normal output: "the work was done, then the call failed".
    pub after_work_fail_rate: f64,
    /// Probability that a matching call that succeeded (its change saved, the lock released)
    /// then hangs for `hang_seconds` (default 3600) until the caller's timeout kills it.
    pub after_work_hang_rate: f64,
    /// Probability that a matching call that succeeded (its change saved) is then killed by a
    /// signal (`SIGABRT`): no exit code, as a child killed by the OOM killer or a timeout.
    pub after_work_kill_rate: f64,
    /// Verbs the after-work rates apply to; absent = `fail_verbs` (absent too = all).
    pub after_work_verbs: Option<Vec<String>>,
}

/// What an after-work fault does to a call that did its work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterWork {
    Fail,
    Hang,
    Kill,
}

impl AfterWork {
    /// The `fault` written to `calls.jsonl`.
    pub fn label(self) -> &'static str {
        match self {
            AfterWork::Fail => "after_work_fail",
            AfterWork::Hang => "after_work_hang",
            AfterWork::Kill => "after_work_kill",
        }
    }
}

fn matches_verb(verbs: Option<&Vec<String>>, tool: &str, verb: &str) -> bool {
    match verbs {
        None => true,
        Some(verbs) => verbs.iter().any(|v| v == verb || *v == format!("{tool} {verb}")),
    }
}

impl Faults {
    pub fn applies_to(&self, tool: &str, verb: &str) -> bool {
        matches_verb(self.fail_verbs.as_ref(), tool, verb)
    }

    /// Whether the after-work rates apply to this verb.
    pub fn after_work_applies_to(&self, tool: &str, verb: &str) -> bool {
        matches_verb(self.after_work_verbs.as_ref().or(self.fail_verbs.as_ref()), tool, verb)
    }

    /// The after-work fault for a call that did its work, given a roll in [0, 1).
    pub fn after_work(&self, tool: &str, verb: &str, roll: f64) -> Option<AfterWork> {
        if !self.after_work_applies_to(tool, verb) {
            return None;
        }
        let fail = self.after_work_fail_rate.max(0.0);
        let hang = fail + self.after_work_hang_rate.max(0.0);
        let kill = hang + self.after_work_kill_rate.max(0.0);
        if roll < fail {
            Some(AfterWork::Fail)
        } else if roll < hang {
            Some(AfterWork::Hang)
        } else if roll < kill {
            Some(AfterWork::Kill)
        } else {
            None
        }
    }
}

/// Auto progress of slung beads, evaluated lazily when they are read.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct AutoProgress {
    pub start_after_ms: u64,
    pub close_after_ms: Option<u64>,
    pub close_reason: Option<String>,
    pub close_rigs: Option<Vec<String>>,
}

/// Town configuration (`config.json`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    pub prefix: Option<String>,
    pub rigs: Option<Vec<String>>,
    pub auto_progress: Option<AutoProgress>,
    pub polecat_names: Option<Vec<String>>,
    /// `bd list --all` without `--limit` lists every bead, as bd >= v0.49.5 does; by default it
    /// keeps the limit of 50, as bd v0.42.0-v0.49.4 did (see `bd::list`).
    pub bd_all_lifts_limit: Option<bool>,
}

/// The polecat name pool used when config.json does not give one.
pub const DEFAULT_POLECAT_NAMES: &[&str] = &[
    "Toast",
    "Nux",
    "Capable",
    "Furiosa",
    "Slit",
    "Rictus",
    "Cheedo",
    "Dag",
    "Keeper",
    "Morsov",
    "Ace",
    "Coma",
    "Angharad",
    "Valkyrie",
    "Toecutter",
    "Organic",
];

/// Whether a prefix matches `^[a-zA-Z][a-zA-Z0-9-]{0,19}$`.
pub fn valid_prefix(p: &str) -> bool {
    let mut chars = p.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && p.len() <= 20
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
}

impl Config {
    pub fn load(dir: &Path) -> Result<Config, String> {
        let cfg: Config = read_json(&dir.join("config.json"))?;
        if let Some(p) = &cfg.prefix
            && !valid_prefix(p)
        {
            return Err(format!(
                "config.json: invalid prefix \"{p}\" (must match ^[a-zA-Z][a-zA-Z0-9-]{{0,19}}$)"
            ));
        }
        Ok(cfg)
    }

    pub fn prefix(&self) -> &str {
        self.prefix.as_deref().unwrap_or("gt")
    }

    pub fn rigs(&self) -> Vec<String> {
        self.rigs
            .clone()
            .unwrap_or_else(|| vec!["gastown".to_string(), "demo".to_string()])
    }

    pub fn polecat_names(&self) -> Vec<String> {
        match &self.polecat_names {
            Some(names) if !names.is_empty() => names.clone(),
            _ => DEFAULT_POLECAT_NAMES.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// One bead (issue). Times are kept in Unix milliseconds and printed as RFC 3339.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Bead {
    pub id: String,
    pub title: String,
    pub description: String,
    pub status: String,
    pub priority: i64,
    pub issue_type: String,
    pub assignee: Option<String>,
    pub owner: Option<String>,
    pub created_at_ms: u64,
    pub created_by: String,
    pub updated_at_ms: u64,
    pub started_at_ms: Option<u64>,
    pub closed_at_ms: Option<u64>,
    pub close_reason: Option<String>,
    pub external_ref: Option<String>,
    pub metadata: Map<String, Value>,
    pub labels: Vec<String>,
    /// When the bead was last slung (drives auto progress); never printed.
    pub slung_at_ms: Option<u64>,
    /// The merge strategy it was slung with (`local` closes with reason `Closed`); never printed.
    pub merge: Option<String>,
    /// Creation order (`bd list` order); never printed.
    pub order: u64,
}

impl Bead {
    /// The JSON object `bd show --json` / `bd list --json` print.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "status": self.status,
            "priority": self.priority,
            "issue_type": self.issue_type,
            "assignee": self.assignee,
            "owner": self.owner,
            "created_at": rfc3339(self.created_at_ms),
            "created_by": self.created_by,
            "updated_at": rfc3339(self.updated_at_ms),
            "started_at": self.started_at_ms.map(rfc3339),
            "closed_at": self.closed_at_ms.map(rfc3339),
            "close_reason": self.close_reason,
            "external_ref": self.external_ref,
            "metadata": Value::Object(self.metadata.clone()),
            "labels": self.labels,
        })
    }

    /// Whether a worker holds the bead (slung and not finished).
    pub fn is_active(&self) -> bool {
        matches!(self.status.as_str(), "hooked" | "in_progress")
    }

    /// Applies auto progress (see [`AutoProgress`]); returns whether the bead changed.
    pub fn auto_progress(&mut self, cfg: &Config, now: u64) -> bool {
        let (Some(ap), Some(slung)) = (&cfg.auto_progress, self.slung_at_ms) else {
            return false;
        };
        if !self.is_active() {
            return false;
        }
        let elapsed = now.saturating_sub(slung);
        let rig = self.assignee.as_deref().and_then(|a| a.split('/').next()).unwrap_or("");
        let close_after = ap
            .close_after_ms
            .filter(|_| ap.close_rigs.as_ref().is_none_or(|rigs| rigs.iter().any(|r| r == rig)));
        if let Some(close_after) = close_after
            && elapsed >= close_after
        {
            self.started_at_ms
                .get_or_insert(slung + ap.start_after_ms.min(close_after));
            self.status = "closed".to_string();
            self.closed_at_ms = Some(slung + close_after);
            // `gt done` of a local merge closes without a reason (see `AutoProgress`).
            let reason = if self.merge.as_deref() == Some("local") {
                "Closed".to_string()
            } else {
                ap.close_reason.clone().unwrap_or_else(|| "merged".into())
            };
            self.close_reason = Some(reason);
            self.updated_at_ms = now;
            return true;
        }
        if self.status == "hooked" && elapsed >= ap.start_after_ms {
            self.status = "in_progress".to_string();
            self.started_at_ms.get_or_insert(slung + ap.start_after_ms);
            self.updated_at_ms = now;
            return true;
        }
        false
    }
}

/// A convoy created by `gt sling` (tracks the slung beads).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Convoy {
    pub id: String,
    pub title: String,
    pub beads: Vec<String>,
    pub created_at_ms: u64,
    pub created_by: String,
    /// Creation order; never printed.
    pub order: u64,
}

impl Convoy {
    /// A convoy seen through `bd show` (convoys are beads of type `convoy` in the real town);
    /// `done` when every bead it tracks is closed.
    pub fn to_json(&self, done: bool) -> Value {
        let status = if done { "closed" } else { "open" };
        Bead {
            id: self.id.clone(),
            title: self.title.clone(),
            description: format!("Tracks: {}", self.beads.join(", ")),
            status: status.to_string(),
            priority: 2,
            issue_type: "convoy".to_string(),
            owner: Some(self.created_by.clone()),
            created_at_ms: self.created_at_ms,
            created_by: self.created_by.clone(),
            updated_at_ms: self.created_at_ms,
            ..Bead::default()
        }
        .to_json()
    }
}

/// A worker known to the town.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Polecat {
    pub rig: String,
    pub name: String,
    pub issue: Option<String>,
    pub branch: Option<String>,
    pub agent: Option<String>,
    pub base_branch: Option<String>,
    pub created_at_ms: u64,
    pub last_activity_ms: u64,
    /// Its tmux session is gone (killed, crashed, machine restarted); `gt sling` to it starts
    /// a new one.
    pub session_ended: bool,
}

/// The index (`index.json`): what must be known without reading every record.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct Index {
    /// Creation counter of beads and convoys (gives `bd list` its order).
    next_order: u64,
    /// Number of beads (bd's ID length grows with it).
    beads: usize,
    /// Beads held by a worker (`hooked` or `in_progress` with an assignee): (bead ID, assignee).
    /// Never less than the truth on disk; see [`State::save`].
    held: BTreeSet<(String, String)>,
}

/// A record read from disk: its value and the bytes it was read from (unchanged records are
/// not written back).
#[derive(Debug)]
struct Loaded<T> {
    value: T,
    read_as: Option<Vec<u8>>,
}

/// Everything the fake town remembers: `beads/<id>.json`, `convoys/<id>.json`,
/// `polecats/<rig>/<name>.json` (one file per record) and `index.json` (the bead count and the
/// held beads, which grow only with the work in progress). A call reads the index and the
/// records it needs, on first use, so most calls cost about the same whatever the size of the
/// town; only `bd list`, `gt status` and the `list` subcommands read every record, like the
/// real tools do. [`State::save`] writes what changed.
#[derive(Debug)]
pub struct State {
    dir: PathBuf,
    index: Index,
    index_read_as: Option<Vec<u8>>,
    beads: HashMap<String, Loaded<Bead>>,
    convoys: HashMap<String, Loaded<Convoy>>,
    polecats: HashMap<(String, String), Loaded<Polecat>>,
    /// The first record that could not be read; the call fails with it and saves nothing.
    error: Option<String>,
}

/// Whether `s` can name a record's file: IDs and names from the command line must not
/// reach outside the state directory.
fn file_safe(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.len() <= 200
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl State {
    /// Opens the town's state: reads the index (and moves a town of the older whole-file fake
    /// into per-record files).
    pub fn open(dir: &Path) -> Result<State, String> {
        let path = dir.join("index.json");
        let (index, index_read_as) = match fs::read(&path) {
            Ok(bytes) => (
                serde_json::from_slice(&bytes).map_err(|e| format!("reading {}: invalid JSON: {e}", path.display()))?,
                Some(bytes),
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => (Index::default(), None),
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        };
        let mut state = State {
            dir: dir.to_path_buf(),
            index,
            index_read_as,
            beads: HashMap::new(),
            convoys: HashMap::new(),
            polecats: HashMap::new(),
            error: None,
        };
        state.migrate_legacy()?;
        Ok(state)
    }

    /// A town written by an older fake kept everything in one `state.json`: its records are
    /// moved into files (in their order) and the file is renamed to `state.json.migrated`.
    fn migrate_legacy(&mut self) -> Result<(), String> {
        #[derive(Default, Deserialize)]
        #[serde(default)]
        struct Legacy {
            beads: Vec<Bead>,
            convoys: Vec<Convoy>,
            polecats: Vec<Polecat>,
        }
        let path = self.dir.join("state.json");
        if !path.is_file() {
            return Ok(());
        }
        let legacy: Legacy = read_json(&path)?;
        for bead in legacy.beads {
            if !file_safe(&bead.id) || self.load_bead(&bead.id) {
                return Err(format!("{}: cannot migrate bead {:?}", path.display(), bead.id));
            }
            self.add_bead(bead);
        }
        for convoy in legacy.convoys {
            if !file_safe(&convoy.id) || self.load_convoy(&convoy.id) {
                return Err(format!("{}: cannot migrate convoy {:?}", path.display(), convoy.id));
            }
            self.add_convoy(convoy);
        }
        for polecat in legacy.polecats {
            if !file_safe(&polecat.rig) || !file_safe(&polecat.name) {
                return Err(format!("{}: cannot migrate polecat {:?}", path.display(), polecat.name));
            }
            self.add_polecat(polecat);
        }
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        self.save()?;
        fs::rename(&path, self.dir.join("state.json.migrated")).map_err(|e| format!("renaming {}: {e}", path.display()))
    }

    /// The first record that could not be read, if any.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    fn bead_path(&self, id: &str) -> PathBuf {
        self.dir.join("beads").join(format!("{id}.json"))
    }

    fn convoy_path(&self, id: &str) -> PathBuf {
        self.dir.join("convoys").join(format!("{id}.json"))
    }

    fn polecat_path(&self, rig: &str, name: &str) -> PathBuf {
        self.dir.join("polecats").join(rig).join(format!("{name}.json"))
    }

    fn load_bead(&mut self, id: &str) -> bool {
        let path = file_safe(id).then(|| self.bead_path(id));
        load_into(&mut self.beads, id.to_string(), path, &mut self.error)
    }

    pub fn bead(&mut self, id: &str) -> Option<&Bead> {
        self.load_bead(id);
        self.beads.get(id).map(|l| &l.value)
    }

    /// A bead this call has already read (see [`State::bead_ids`]).
    pub fn loaded_bead(&self, id: &str) -> Option<&Bead> {
        self.beads.get(id).map(|l| &l.value)
    }

    pub fn bead_mut(&mut self, id: &str) -> Option<&mut Bead> {
        self.load_bead(id);
        self.beads.get_mut(id).map(|l| &mut l.value)
    }

    /// Adds a new bead (its creation order is set here).
    pub fn add_bead(&mut self, mut bead: Bead) {
        bead.order = self.next_order();
        self.index.beads += 1;
        self.beads.insert(
            bead.id.clone(),
            Loaded {
                value: bead,
                read_as: None,
            },
        );
    }

    fn next_order(&mut self) -> u64 {
        self.index.next_order += 1;
        self.index.next_order
    }

    /// Names of the files in `sub` (without `.json`), sorted.
    fn record_names(&mut self, sub: &Path) -> Vec<String> {
        let dir = self.dir.join(sub);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                self.error
                    .get_or_insert_with(|| format!("reading {}: {e}", dir.display()));
                return Vec::new();
            }
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
            .filter(|n| file_safe(n))
            .collect();
        names.sort();
        names
    }

    /// Every bead ID, in creation order (reads every bead).
    pub fn bead_ids(&mut self) -> Vec<String> {
        for id in self.record_names(Path::new("beads")) {
            self.load_bead(&id);
        }
        let mut ids: Vec<(u64, &String)> = self.beads.iter().map(|(id, l)| (l.value.order, id)).collect();
        ids.sort();
        ids.into_iter().map(|(_, id)| id.clone()).collect()
    }

    fn load_convoy(&mut self, id: &str) -> bool {
        let path = file_safe(id).then(|| self.convoy_path(id));
        load_into(&mut self.convoys, id.to_string(), path, &mut self.error)
    }

    pub fn convoy(&mut self, id: &str) -> Option<&Convoy> {
        self.load_convoy(id);
        self.convoys.get(id).map(|l| &l.value)
    }

    pub fn convoy_mut(&mut self, id: &str) -> Option<&mut Convoy> {
        self.load_convoy(id);
        self.convoys.get_mut(id).map(|l| &mut l.value)
    }

    pub fn add_convoy(&mut self, mut convoy: Convoy) {
        convoy.order = self.next_order();
        self.convoys.insert(
            convoy.id.clone(),
            Loaded {
                value: convoy,
                read_as: None,
            },
        );
    }

    /// Every convoy, in creation order (reads every convoy).
    pub fn convoys(&mut self) -> Vec<Convoy> {
        for id in self.record_names(Path::new("convoys")) {
            self.load_convoy(&id);
        }
        let mut all: Vec<Convoy> = self.convoys.values().map(|l| l.value.clone()).collect();
        all.sort_by_key(|c| c.order);
        all
    }

    /// A convoy as `bd show` prints it: closed once every bead it tracks is closed.
    pub fn convoy_json(&mut self, id: &str) -> Option<Value> {
        let convoy = self.convoy(id)?.clone();
        let done = convoy.beads.iter().all(|b| {
            self.bead(b)
                .is_some_and(|b| matches!(b.status.as_str(), "closed" | "tombstone"))
        });
        Some(convoy.to_json(done))
    }

    fn load_polecat(&mut self, rig: &str, name: &str) -> bool {
        let path = (file_safe(rig) && file_safe(name)).then(|| self.polecat_path(rig, name));
        load_into(
            &mut self.polecats,
            (rig.to_string(), name.to_string()),
            path,
            &mut self.error,
        )
    }

    pub fn polecat(&mut self, rig: &str, name: &str) -> Option<&Polecat> {
        self.load_polecat(rig, name);
        self.polecats
            .get(&(rig.to_string(), name.to_string()))
            .map(|l| &l.value)
    }

    pub fn polecat_mut(&mut self, rig: &str, name: &str) -> Option<&mut Polecat> {
        self.load_polecat(rig, name);
        self.polecats
            .get_mut(&(rig.to_string(), name.to_string()))
            .map(|l| &mut l.value)
    }

    pub fn add_polecat(&mut self, polecat: Polecat) {
        self.polecats.insert(
            (polecat.rig.clone(), polecat.name.clone()),
            Loaded {
                value: polecat,
                read_as: None,
            },
        );
    }

    /// Every polecat, oldest first (reads every polecat).
    pub fn polecats(&mut self) -> Vec<Polecat> {
        for rig in self.record_dirs(Path::new("polecats")) {
            for name in self.record_names(&Path::new("polecats").join(&rig)) {
                self.load_polecat(&rig, &name);
            }
        }
        let mut all: Vec<Polecat> = self.polecats.values().map(|l| l.value.clone()).collect();
        all.sort_by(|a, b| (a.created_at_ms, &a.rig, &a.name).cmp(&(b.created_at_ms, &b.rig, &b.name)));
        all
    }

    fn record_dirs(&mut self, sub: &Path) -> Vec<String> {
        let dir = self.dir.join(sub);
        match fs::read_dir(&dir) {
            Ok(entries) => {
                let mut names: Vec<String> = entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| file_safe(n))
                    .collect();
                names.sort();
                names
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                self.error
                    .get_or_insert_with(|| format!("reading {}: {e}", dir.display()));
                Vec::new()
            }
        }
    }

    /// The workers holding a bead: assignee → bead IDs. From the index, with the beads this
    /// call has read (and maybe changed) in their current state.
    pub fn busy(&self) -> HashMap<String, Vec<String>> {
        let mut busy: HashMap<String, Vec<String>> = HashMap::new();
        for (id, assignee) in &self.index.held {
            if !self.beads.contains_key(id) {
                busy.entry(assignee.clone()).or_default().push(id.clone());
            }
        }
        for (id, l) in &self.beads {
            if let Some(a) = l.value.assignee.as_ref().filter(|_| l.value.is_active()) {
                busy.entry(a.clone()).or_default().push(id.clone());
            }
        }
        for ids in busy.values_mut() {
            ids.sort();
        }
        busy
    }

    /// Number of beads (for bd's adaptive ID length).
    pub fn bead_count(&self) -> usize {
        self.index.beads
    }

    fn id_taken(&mut self, id: &str) -> bool {
        self.load_bead(id) || self.load_convoy(id)
    }

    /// Writes what this call changed. The index is written before the records with both the
    /// old and the new holds, and after them with the new holds only: a call killed half way
    /// leaves an index that names every bead held on disk, and at worst one that is no longer
    /// held, which only makes a polecat name look busy (never two beads on one polecat).
    pub fn save(&mut self) -> Result<(), String> {
        let mut exact = self.index.held.clone();
        exact.retain(|(id, _)| !self.beads.contains_key(id));
        for (id, l) in &self.beads {
            if let Some(a) = l.value.assignee.as_ref().filter(|_| l.value.is_active()) {
                exact.insert((id.clone(), a.clone()));
            }
        }
        self.index.held.extend(exact.iter().cloned());
        self.write_index()?;
        let mut writes: Vec<(PathBuf, Vec<u8>)> = Vec::new();
        for (id, l) in &self.beads {
            writes.extend(changed_bytes(l, || self.bead_path(id))?);
        }
        for (id, l) in &self.convoys {
            writes.extend(changed_bytes(l, || self.convoy_path(id))?);
        }
        for ((rig, name), l) in &self.polecats {
            writes.extend(changed_bytes(l, || self.polecat_path(rig, name))?);
        }
        for (path, bytes) in writes {
            let write = || -> io::Result<()> {
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent)?;
                }
                write_atomic(&path, &bytes)
            };
            write().map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        // The union is the exact set unless holds were dropped.
        if self.index.held.len() != exact.len() {
            self.index.held = exact;
            self.write_index()?;
        }
        Ok(())
    }

    /// Writes the index unless it is what was read or last written.
    fn write_index(&mut self) -> Result<(), String> {
        let index = serde_json::to_vec(&self.index).map_err(|e| format!("encoding the index: {e}"))?;
        if self.index_read_as.as_ref() != Some(&index) {
            write_atomic(&self.dir.join("index.json"), &index).map_err(|e| format!("writing the index: {e}"))?;
            self.index_read_as = Some(index);
        }
        Ok(())
    }

    /// A fresh `<prefix>-<hash>` ID: lowercase base 36, 3 to 6 characters, growing with the
    /// number of beads and on collisions, like bd's adaptive IDs.
    pub fn new_bead_id(&mut self, prefix: &str, salt: u64) -> Option<String> {
        let start = match self.bead_count() {
            0..500 => 3,
            500..20_000 => 4,
            _ => 5,
        };
        for len in start..=6 {
            for attempt in 0..16u64 {
                let id = format!(
                    "{prefix}-{}",
                    base36(random_u64(salt.wrapping_mul(31).wrapping_add(attempt)), len)
                );
                if !self.id_taken(&id) {
                    return Some(id);
                }
            }
        }
        None
    }

    /// A fresh convoy ID `hq-cv-xxxx`.
    pub fn new_convoy_id(&mut self, salt: u64) -> Option<String> {
        for len in 4..=8 {
            for attempt in 0..16u64 {
                let id = format!("hq-cv-{}", base36(random_u64(salt.wrapping_add(attempt << 8)), len));
                if !self.id_taken(&id) {
                    return Some(id);
                }
            }
        }
        None
    }
}

/// Reads the record at `path` (`None`: its key cannot name a file) into `map` unless it is
/// there already; whether it exists. An unreadable file is remembered as the call's error.
fn load_into<K: Hash + Eq, T: for<'de> Deserialize<'de>>(
    map: &mut HashMap<K, Loaded<T>>,
    key: K,
    path: Option<PathBuf>,
    error: &mut Option<String>,
) -> bool {
    if map.contains_key(&key) {
        return true;
    }
    let Some(path) = path else { return false };
    let read = match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(|value| Loaded {
                value,
                read_as: Some(bytes),
            })
            .map_err(|e| format!("reading {}: invalid JSON: {e}", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return false,
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    };
    match read {
        Ok(loaded) => {
            map.insert(key, loaded);
            true
        }
        Err(e) => {
            error.get_or_insert(e);
            false
        }
    }
}

/// The record's file and new bytes, if it is new or changed since it was read.
fn changed_bytes<T: Serialize>(
    l: &Loaded<T>,
    path: impl FnOnce() -> PathBuf,
) -> Result<Option<(PathBuf, Vec<u8>)>, String> {
    let bytes = serde_json::to_vec(&l.value).map_err(|e| format!("encoding a record: {e}"))?;
    Ok((l.read_as.as_ref() != Some(&bytes)).then(|| (path(), bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400_500), "2000-02-29T00:00:00.5Z");
        assert_eq!(rfc3339(1_767_225_599_123), "2025-12-31T23:59:59.123Z");
        assert_eq!(gt_time(1_767_225_599_123), "2025-12-31 23:59:59");
    }

    /// A fresh state directory under the system's temporary directory.
    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("fake-gastown-{name}-{}-{}", std::process::id(), now_ms()));
        fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn held(dir: &Path) -> Vec<(String, String)> {
        let st = State::open(dir).expect("open");
        st.index.held.into_iter().collect()
    }

    #[test]
    fn the_index_holds_exactly_the_held_beads_after_a_save() {
        let dir = temp_dir("held");
        let pair = |b: &str, a: &str| (b.to_string(), a.to_string());
        let mut st = State::open(&dir).expect("open");
        for id in ["gt-a", "gt-b"] {
            st.add_bead(Bead {
                id: id.into(),
                status: "hooked".into(),
                assignee: Some(format!("gastown/polecats/{id}")),
                ..Bead::default()
            });
        }
        st.save().expect("save");
        assert_eq!(
            held(&dir),
            [
                pair("gt-a", "gastown/polecats/gt-a"),
                pair("gt-b", "gastown/polecats/gt-b")
            ]
        );

        // Moved to another worker, and closed: the old holds go, the new one stays.
        let mut st = State::open(&dir).expect("open");
        st.bead_mut("gt-a").expect("gt-a").assignee = Some("demo/polecats/Nux".into());
        st.bead_mut("gt-b").expect("gt-b").status = "closed".into();
        assert_eq!(st.busy().len(), 1, "the call sees its own changes before saving");
        st.save().expect("save");
        assert_eq!(held(&dir), [pair("gt-a", "demo/polecats/Nux")]);
        assert_eq!(State::open(&dir).expect("open").bead_count(), 2);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn prefixes() {
        assert!(valid_prefix("gt") && valid_prefix("go-x1"));
        assert!(!valid_prefix("1a") && !valid_prefix("") && !valid_prefix("a_b"));
    }
}
