//! The town's state on disk, under `<town>/.fake-gastown/`: `beads/`, `convoys/`,
//! `polecats/<rig>/` (one JSON file per record) and `index.json` (see [`State`]). Beside them:
//! `config.json` (rigs, prefix, auto progress), `faults.json` (fault injection), `calls.jsonl`
//! (call log), `seq` (call counter), `lock`, `bin/` (the `gt` and `bd` links made by
//! `fake-gastown init`), and `state.json.migrated` where a town of the older whole-file fake was
//! moved into per-record files.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::hash::Hash;
use std::io;
use std::path::{Path, PathBuf};

use crate::files::{read_json, write_atomic};
use crate::random::{base36, random_u64};
use crate::records::{Bead, Convoy, Polecat};

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

impl<T> Loaded<T> {
    /// A record this call made: never read, so always written.
    fn made(value: T) -> Loaded<T> {
        Loaded { value, read_as: None }
    }
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
        self.beads.insert(bead.id.clone(), Loaded::made(bead));
    }

    fn next_order(&mut self) -> u64 {
        self.index.next_order += 1;
        self.index.next_order
    }

    /// Names of the files in `sub` (without `.json`), sorted.
    fn record_names(&mut self, sub: &Path) -> Vec<String> {
        self.entries(sub, |e| {
            e.file_name()
                .into_string()
                .ok()
                .and_then(|n| n.strip_suffix(".json").map(str::to_string))
        })
    }

    /// The names `pick` takes from the entries of `sub` that can name a record, sorted; none
    /// when `sub` does not exist (any other error is remembered as the call's error).
    fn entries(&mut self, sub: &Path, pick: impl Fn(fs::DirEntry) -> Option<String>) -> Vec<String> {
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
            .filter_map(pick)
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
        self.convoys.insert(convoy.id.clone(), Loaded::made(convoy));
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
        self.polecats
            .insert((polecat.rig.clone(), polecat.name.clone()), Loaded::made(polecat));
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

    /// Names of the directories in `sub`, sorted.
    fn record_dirs(&mut self, sub: &Path) -> Vec<String> {
        self.entries(sub, |e| {
            e.file_type()
                .is_ok_and(|t| t.is_dir())
                .then(|| e.file_name().into_string().ok())
                .flatten()
        })
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
    use crate::clock::now_ms;

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
}
