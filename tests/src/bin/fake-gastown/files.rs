//! The fake town's files: where the town is, atomic writes, the lock that serialises
//! concurrent invocations, the call counter and JSON reads.

use serde::Deserialize;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::random::random_u64;

/// The directory, inside the town, that holds the fake's files.
pub const STATE_DIR: &str = ".fake-gastown";

/// Finds the town root: `start` or its nearest ancestor holding `mayor/town.json`.
pub fn find_town(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|dir| dir.join("mayor").join("town.json").is_file())
        .map(Path::to_path_buf)
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
