//! Town configuration (`config.json`): rigs, bead prefix, polecat names and auto progress.

use serde::Deserialize;
use std::path::Path;

use crate::files::read_json;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert!(valid_prefix("gt") && valid_prefix("go-x1"));
        assert!(!valid_prefix("1a") && !valid_prefix("") && !valid_prefix("a_b"));
    }
}
