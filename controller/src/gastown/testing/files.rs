//! Temporary directories and a town of stand-in `gt`/`bd` scripts.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::TownExecHandler;
use crate::gastown::Transport;

/// A directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a fresh, uniquely named directory.
    pub fn new(prefix: &str) -> io::Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "{prefix}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path)?;
        Ok(TempDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a file (creating parent directories) and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> io::Result<PathBuf> {
        let path = self.path.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, contents)?;
        Ok(path)
    }

    /// Writes an executable file (mode 0755), e.g. a `#!/bin/sh` stand-in for `gt` or `bd`.
    #[cfg(unix)]
    pub fn write_executable(&self, name: &str, contents: &str) -> io::Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.write(name, contents)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        Ok(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A town for stand-in binaries: `<dir>/town` with `mayor/town.json` (the file `gt` and `bd`
/// find their town by) and executable `gt`/`bd` scripts in `<dir>/bin`.
#[derive(Debug)]
pub struct StandInTown {
    /// Holds everything; removed on drop.
    pub dir: TempDir,
    /// The town root.
    pub root: PathBuf,
    /// The stand-in `gt`.
    pub gt: PathBuf,
    /// The stand-in `bd`.
    pub bd: PathBuf,
}

impl StandInTown {
    /// A fresh town under a directory named after `prefix`, with `gt_script` and `bd_script`
    /// (e.g. `#!/bin/sh` scripts) as the binaries.
    #[cfg(unix)]
    pub fn new(prefix: &str, gt_script: &str, bd_script: &str) -> io::Result<Self> {
        let dir = TempDir::new(prefix)?;
        let root = dir.path().join("town");
        std::fs::create_dir_all(root.join("mayor"))?;
        std::fs::write(root.join("mayor/town.json"), "{}")?;
        let gt = dir.write_executable("bin/gt", gt_script)?;
        let bd = dir.write_executable("bin/bd", bd_script)?;
        Ok(StandInTown { dir, root, gt, bd })
    }

    /// The local transport running these binaries in this town, as `actor`.
    pub fn transport(&self, actor: Option<&str>) -> Transport {
        Transport::Exec {
            town_root: self.root.clone(),
            gt_path: self.gt.clone(),
            bd_path: self.bd.clone(),
            actor: actor.map(str::to_owned),
        }
    }

    /// A fake gt-proxy-server handler running these binaries in this town.
    pub fn exec_handler(&self) -> TownExecHandler {
        TownExecHandler::new(&self.root, &self.gt, &self.bd)
    }

    /// The contents of a file in the town root (where the stand-ins write), or `""`.
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.root.join(name)).unwrap_or_default()
    }
}
