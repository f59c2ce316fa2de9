//! `fake-gastown init <dir>`: prepares a town outside of tests (e.g. a simulated `make run`).

use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};

use crate::args;
use crate::config::valid_prefix;
use crate::files::{STATE_DIR, write_atomic};

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
pub fn init(rest: &[String]) -> Result<String, String> {
    let p = args::parse(rest, INIT_FLAGS)?;
    let [dir] = p.positionals.as_slice() else {
        return Err(INIT_USAGE.to_string());
    };
    let town = PathBuf::from(dir);
    mark_town(&town)?;
    let bin = link_tools(&town)?;
    let cfg = config_from(&p)?;
    if !cfg.is_empty() {
        let body = format!("{:#}\n", serde_json::Value::Object(cfg));
        write_atomic(&town.join(STATE_DIR).join("config.json"), body.as_bytes())
            .map_err(|e| io("writing config.json", e))?;
    }
    let bin = bin.canonicalize().unwrap_or(bin);
    Ok(format!("{}\n", bin.display()))
}

fn io(what: &str, e: std::io::Error) -> String {
    format!("{what}: {e}")
}

/// Writes `mayor/town.json` unless the town has one.
fn mark_town(town: &Path) -> Result<(), String> {
    fs::create_dir_all(town.join("mayor")).map_err(|e| io("creating mayor/", e))?;
    let marker = town.join("mayor").join("town.json");
    if !marker.is_file() {
        let body = json!({"type": "town", "version": 2, "name": "fake-town", "owner": "fake-gastown"});
        write_atomic(&marker, format!("{body:#}\n").as_bytes()).map_err(|e| io("writing mayor/town.json", e))?;
    }
    Ok(())
}

/// Links `gt` and `bd` in the town's `bin/` to this binary; returns that directory.
fn link_tools(town: &Path) -> Result<PathBuf, String> {
    let bin = town.join(STATE_DIR).join("bin");
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
    Ok(bin)
}

/// The `config.json` the flags ask for (empty: none).
fn config_from(p: &args::Parsed) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let mut cfg = serde_json::Map::new();
    if let Some(rigs) = p.value("rigs") {
        let rigs: Vec<&str> = rigs.split(',').map(str::trim).filter(|r| !r.is_empty()).collect();
        cfg.insert("rigs".into(), json!(rigs));
    }
    if let Some(prefix) = p.value("prefix") {
        if !valid_prefix(prefix) {
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
    Ok(cfg)
}
