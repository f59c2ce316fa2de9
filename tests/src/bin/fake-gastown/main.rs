//! `fake-gastown`: a stand-in for the Gas Town `gt` and Beads `bd` command-line tools, for
//! tests, benchmarks, chaos tests and the simulated `make run`.
//!
//! It behaves as `gt` or `bd` according to the name it is invoked as (symlinks named `gt` and
//! `bd`), or as `fake-gastown gt ...` / `fake-gastown bd ...`. It follows
//! `shared/docs/gastown-contract.md`: the town is found from the working directory (`mayor/town.json`
//! in it or an ancestor), `bd show --json` prints an array, `gt sling` prints only text, and so on.
//!
//! State lives in `<town>/.fake-gastown/`, one file per bead, convoy and polecat plus a small
//! `index.json`; most calls read only the index and the records they need, so their cost hardly
//! grows with the town (`bd list` reads every bead, as the real `bd` does). Every call takes an
//! exclusive lock for its read-modify-write and writes each file atomically, so many processes
//! may run at once. Every call appends one JSON line to `calls.jsonl`. Faults (`faults.json`)
//! and configuration (`config.json`) are re-read at each call. See `tests/src/fake_gastown.rs`
//! for the test-support API that drives it.
//!
//! `fake-gastown init <dir> [--rigs a,b] [--prefix p] [--auto-progress START_MS,CLOSE_MS]`
//! prepares a town outside of tests (e.g. a simulated `make run`) and prints the directory
//! holding the `gt`/`bd` symlinks, to put first on `PATH`.

mod args;
mod bd;
mod call;
mod clock;
mod config;
mod faults;
mod files;
mod gt;
mod init;
mod random;
mod records;
mod state;

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

pub use call::{Ctx, Outcome};

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

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args_os()
        .map(|a: OsString| a.to_string_lossy().into_owned())
        .collect();
    let invoked_as_tool = argv
        .first()
        .is_some_and(|a| Path::new(a).file_stem().is_some_and(|s| s == "gt" || s == "bd"));
    if !invoked_as_tool && argv.get(1).map(String::as_str) == Some("init") {
        return match init::init(&argv[2..]) {
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
    let code = call::run(&tool, &args);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
