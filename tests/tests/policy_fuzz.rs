//! Generated AdmissionRequests (tests/src/admission_gen/) through the compiled policy
//! (`policy/policy.wasm`) in the waPC/wasmtime engine, the way policy-server runs it.
//!
//! Every answer is checked by `admission_gen::check`: no trap, valid JSON with `accepted`, a
//! message with every rejection, a JSONPatch (`json_patch::diff`, as policy-server computes it)
//! that touches only the claim fields, and the claim rules (no forged or hijacked claims, no
//! claims by unauthorized users, no changes to claimed work except by the controller), and a
//! claim counts the active claims of its own town only (`check_counted_town`).
//!
//! Environment:
//! - `GASTOWN_FUZZ_REQUESTS`: how many requests (default 10,000; `make fuzz` runs 1,000,000 in
//!   release mode),
//! - `GASTOWN_FUZZ_SEED`: the run seed (default fixed, so the suite is reproducible),
//! - `GASTOWN_FUZZ_THREADS`: worker threads (default: the available parallelism, at most 8),
//! - `GASTOWN_FUZZ_FRESH_EVERY`: calls per instance before a fresh one is made (default 500),
//! - `GASTOWN_FUZZ_CASE`: run only this case index (prints the request; for reproducing),
//! - `GASTOWN_FUZZ_FLOATS=0`: only floats that round-trip under any serde_json configuration
//!   (default: arbitrary bit patterns, see `the_policy_returns_float_fields_exactly`),
//! - `GASTOWN_POLICY_WASM`: another module than policy/policy.wasm (e.g. to try a fix).
//!
//! A failing case is written as a fixture skeleton to target/policy-fuzz-failures/.

// A test crate: panicking on setup failures is the point.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use gastown_crds::contract::{CLAIMED_BY_LABEL, DEFAULT_CLAIMER};
use gastown_tests::admission_gen::{
    AdmissionGen, CLAIM_PATHS, Case, LedgerAnswer, Options, Scenario, SettingsModel, admission_request, check, shorten,
};
use gastown_tests::fixtures::{admission_automaton, claimed_json};
use gastown_tests::policy_host::{HostCapabilities, PolicyInstance, PolicyModule, ScriptedList, default_module_path};
use serde_json::Value;

fn module_path() -> PathBuf {
    std::env::var_os("GASTOWN_POLICY_WASM").map_or_else(default_module_path, PathBuf::from)
}

fn options() -> Options {
    Options {
        arbitrary_floats: std::env::var("GASTOWN_FUZZ_FLOATS").map_or(true, |v| v != "0"),
    }
}

const DEFAULT_SEED: u64 = 0x6761_7374_6f77_6e21; // "gastown!"

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => {
            let v = v.trim().replace('_', "");
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            };
            parsed.unwrap_or_else(|e| panic!("{name}={v:?}: {e}"))
        }
        Err(_) => default,
    }
}

#[derive(Default)]
struct Stats {
    cases: u64,
    scenarios: BTreeMap<String, u64>,
    accepted: u64,
    mutated: u64,
    codes: BTreeMap<u64, u64>,
    raw: u64,
    huge: u64,
    corrupted: u64,
    instances: u64,
    failures: Vec<String>,
}

impl Stats {
    fn merge(&mut self, other: Stats) {
        self.cases += other.cases;
        for (k, v) in other.scenarios {
            *self.scenarios.entry(k).or_default() += v;
        }
        self.accepted += other.accepted;
        self.mutated += other.mutated;
        for (k, v) in other.codes {
            *self.codes.entry(k).or_default() += v;
        }
        self.raw += other.raw;
        self.huge += other.huge;
        self.corrupted += other.corrupted;
        self.instances += other.instances;
        self.failures.extend(other.failures);
    }

    fn report(&self, run_seed: u64, seconds: f64, threads: u64) {
        println!(
            "{} generated requests (seed {run_seed:#x}) in {seconds:.1} s ({:.0}/s) on {threads} threads, {} instances: \
             {} accepted ({} mutated), rejected by code {:?}; scenarios {:?}; {} raw, {} corrupted, {} with 100 KB+ strings",
            self.cases,
            self.cases as f64 / seconds.max(1e-9),
            self.instances,
            self.accepted,
            self.mutated,
            self.codes,
            self.scenarios,
            self.raw,
            self.corrupted,
            self.huge
        );
    }

    /// The generator reaches every kind of answer (a broken generator would pass vacuously).
    fn assert_every_kind_of_answer(&self, total: u64) {
        assert!(self.mutated > total / 100, "too few claims: {}", self.mutated);
        for code in [400, 403, 409, 429, 500, 503] {
            assert!(
                self.codes.get(&code).is_some_and(|n| *n > 0),
                "no rejection with code {code}: {:?}",
                self.codes
            );
        }
        for scenario in [
            Scenario::Create,
            Scenario::UpdateUnclaimed,
            Scenario::UpdateClaimed,
            Scenario::Status,
            Scenario::Delete,
            Scenario::Other,
            Scenario::OtherResource,
            Scenario::Raw,
        ] {
            assert!(
                self.scenarios.contains_key(&format!("{scenario:?}")),
                "scenario {scenario:?} never generated"
            );
        }
        assert!(self.huge > 0 && self.raw > 0 && self.corrupted > 0);
    }
}

/// The scripted claim count, recording which town's claims each call lists.
struct CountedList {
    list: ScriptedList,
    selectors: Mutex<Vec<String>>,
}

impl HostCapabilities for CountedList {
    fn kubernetes(&self, operation: &str, request: &Value) -> Result<Value, String> {
        let selector = request["label_selector"].as_str().unwrap_or_default().to_string();
        self.selectors.lock().unwrap().push(selector);
        self.list.kubernetes(operation, request)
    }
}

/// A claim counts the claims of its own town, and only when that town has a limit.
fn check_counted_town(case: &Case, response: &Value, selectors: &[String]) -> Result<(), String> {
    let (Some(model), Some(town)) = (
        &case.model,
        response.pointer(&format!("/mutated_object{}", CLAIM_PATHS[0])),
    ) else {
        return Ok(());
    };
    let town = town.as_str().unwrap_or_default();
    let want = format!("{CLAIMED_BY_LABEL}={town}");
    if let Some(other) = selectors.iter().find(|s| **s != want) {
        return Err(format!("a claim for {town:?} counted the claims of {other:?}"));
    }
    let limited = model.towns.iter().any(|t| t.name == town && t.limit.is_some());
    if limited && selectors.is_empty() {
        return Err(format!("a claim for {town:?}, which has a limit, counted nothing"));
    }
    Ok(())
}

/// Runs one case; returns the guest's answer and whether a patch resulted.
fn run_case(instance: &PolicyInstance, ledger: &CountedList, case: &Case) -> Result<(Value, bool), String> {
    ledger.list.set(case.ledger.host_answer());
    ledger.selectors.lock().unwrap().clear();
    if let Some(raw) = &case.raw {
        let out = instance
            .call("validate", raw)
            .map_err(|e| format!("the guest trapped or failed: {e:#}"))?;
        let response: Value = serde_json::from_slice(&out)
            .map_err(|e| format!("the answer is not JSON ({e}): {}", String::from_utf8_lossy(&out)))?;
        check(case, &response, None)?;
        let mutated = response.get("mutated_object").is_some_and(|m| !m.is_null());
        return Ok((response, mutated));
    }
    let admission = instance
        .validate(&case.settings, &case.request)
        .map_err(|e| format!("the guest trapped or answered badly: {e:#}"))?;
    check(case, &admission.response, admission.patch.as_ref())?;
    check_counted_town(case, &admission.response, &ledger.selectors.lock().unwrap())?;
    Ok((admission.response, admission.patch.is_some()))
}

impl CountedList {
    fn new() -> CountedList {
        CountedList {
            list: ScriptedList::new(),
            selectors: Mutex::new(Vec::new()),
        }
    }
}

fn failure_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("policy-fuzz-failures")
}

fn record_failure(run_seed: u64, index: u64, case: &Case, message: &str) -> String {
    let dir = failure_dir();
    let file = dir.join(format!("case-{run_seed:x}-{index}.json"));
    let fixture = case.to_fixture(&format!(
        "generated case {index} of seed {run_seed:#x} ({:?}): {}",
        case.scenario,
        shorten(message)
    ));
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&file, serde_json::to_vec_pretty(&fixture).unwrap_or_default()));
    format!(
        "case {index} (GASTOWN_FUZZ_SEED={run_seed:#x} GASTOWN_FUZZ_CASE={index}, {:?}{}{}): {}\n  request: {}\n  fixture: {}",
        case.scenario,
        if case.corrupted { ", corrupted" } else { "" },
        if case.huge { ", huge" } else { "" },
        message,
        shorten(&case.request.to_string()),
        match written {
            Ok(()) => file.display().to_string(),
            Err(e) => format!("not written: {e}"),
        }
    )
}

/// Runs the cases `first, first + step, ...` below `total` on one thread.
fn worker(
    module: &PolicyModule,
    run_seed: u64,
    first: u64,
    step: u64,
    total: u64,
    fresh_every: u64,
    done: &AtomicU64,
) -> Stats {
    let ledger = Arc::new(CountedList::new());
    let mut stats = Stats::default();
    let mut instance: Option<PolicyInstance> = None;
    let mut calls = 0u64;
    let mut index = first;
    while index < total {
        if instance.is_none() || calls >= fresh_every {
            instance = Some(module.instance(ledger.clone()).unwrap());
            stats.instances += 1;
            calls = 0;
        }
        let Some(current) = instance.as_ref() else {
            unreachable!()
        };
        let case = AdmissionGen::case_with(run_seed, index, options());
        calls += 1;
        stats.cases += 1;
        *stats.scenarios.entry(format!("{:?}", case.scenario)).or_default() += 1;
        stats.raw += u64::from(case.raw.is_some());
        stats.huge += u64::from(case.huge);
        stats.corrupted += u64::from(case.corrupted);
        match run_case(current, &ledger, &case) {
            Ok((response, mutated)) => {
                if response["accepted"] == Value::Bool(true) {
                    stats.accepted += 1;
                    stats.mutated += u64::from(mutated);
                } else if let Some(code) = response["code"].as_u64() {
                    *stats.codes.entry(code).or_default() += 1;
                }
            }
            Err(message) => {
                if stats.failures.len() < 50 {
                    stats.failures.push(record_failure(run_seed, index, &case, &message));
                }
                // A trapped instance is not reused.
                instance = None;
            }
        }
        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(100_000) {
            eprintln!("  {n} / {total} requests");
        }
        index += step;
    }
    stats
}

#[test]
fn generated_admission_requests_through_the_compiled_module() {
    let total = env_u64("GASTOWN_FUZZ_REQUESTS", 10_000);
    let run_seed = env_u64("GASTOWN_FUZZ_SEED", DEFAULT_SEED);
    let fresh_every = env_u64("GASTOWN_FUZZ_FRESH_EVERY", 500).max(1);
    let parallelism = std::thread::available_parallelism()
        .map_or(2, |n| n.get() as u64)
        .min(8);
    let threads = env_u64("GASTOWN_FUZZ_THREADS", parallelism).clamp(1, 64);
    let module = PolicyModule::load(&module_path()).unwrap();
    let started = Instant::now();

    if let Ok(one) = std::env::var("GASTOWN_FUZZ_CASE") {
        run_one(&module, run_seed, one.trim().parse().unwrap());
        return;
    }

    let done = AtomicU64::new(0);
    let mut stats = Stats::default();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (module, done) = (&module, &done);
                scope.spawn(move || worker(module, run_seed, t, threads, total, fresh_every, done))
            })
            .collect();
        for h in handles {
            stats.merge(h.join().unwrap());
        }
    });
    stats.report(run_seed, started.elapsed().as_secs_f64(), threads);
    assert!(
        stats.failures.is_empty(),
        "{} of {} generated requests broke an invariant (first {} shown):\n{}",
        stats.failures.len(),
        stats.cases,
        stats.failures.len().min(50),
        stats.failures.join("\n\n")
    );
    assert_eq!(stats.cases, total);
    if total >= 10_000 {
        stats.assert_every_kind_of_answer(total);
    }
}

/// `GASTOWN_FUZZ_CASE`: one case, printed, for reproducing a failure.
fn run_one(module: &PolicyModule, run_seed: u64, index: u64) {
    let case = AdmissionGen::case_with(run_seed, index, options());
    println!(
        "case {index}: {:?}\nsettings: {}\nrequest: {}",
        case.scenario, case.settings, case.request
    );
    let ledger = Arc::new(CountedList::new());
    let instance = module.instance(ledger.clone()).unwrap();
    match run_case(&instance, &ledger, &case) {
        Ok((response, _)) => println!("answer: {}", shorten(&response.to_string())),
        Err(e) => panic!("{}", record_failure(run_seed, index, &case, &e)),
    }
}

#[test]
fn the_generator_is_deterministic() {
    for index in [0, 1, 17, 9_999, 123_456] {
        let a = AdmissionGen::case(DEFAULT_SEED, index);
        let b = AdmissionGen::case(DEFAULT_SEED, index);
        assert_eq!(a.request, b.request);
        assert_eq!(a.settings, b.settings);
        assert_eq!(a.raw, b.raw);
        assert_eq!(a.ledger, b.ledger);
    }
    assert_ne!(
        AdmissionGen::case(DEFAULT_SEED, 1).request,
        AdmissionGen::case(DEFAULT_SEED + 1, 1).request
    );
}

/// The floats of policy/test_data/cases/regression-float-roundtrip.json, as written there.
const FLOATS: [(&str, &str); 3] = [
    ("ratio", "7.356185117690742e+226"),
    ("small", "6.663607431596492e+90"),
    ("half", "0.5"),
];

fn float_fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy/test_data/cases/regression-float-roundtrip.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The number text after `"key":` in a JSON answer.
fn number_after<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let start = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &json[start..];
    let end = rest.find([',', '}', ']']).unwrap_or(rest.len());
    Some(rest[..end].trim())
}

/// Regression (found by the generator, fixed with serde_json's `float_roundtrip`): the policy
/// parsed requests with serde_json's default float parser, which can be one ULP off, and
/// answers with the whole object, so a claim rewrote float values it does not own. The
/// payload's bytes go to the guest unchanged and the floats of its answer are compared
/// exactly (`f64::from_str`), so this checks the guest alone.
#[test]
fn the_policy_returns_float_fields_exactly() {
    let fixture = float_fixture();
    let mut request = fixture["request"].clone();
    for (key, _) in FLOATS {
        request["object"]["spec"]["futureField"][key] = Value::String(format!("@{key}@"));
    }
    let mut payload = serde_json::json!({"settings": fixture["settings"], "request": request}).to_string();
    for (key, text) in FLOATS {
        payload = payload.replace(&format!("\"@{key}@\""), text);
    }
    let module = PolicyModule::load(&module_path()).unwrap();
    let instance = module.instance(Arc::new(ScriptedList::new())).unwrap();
    let answer = String::from_utf8(instance.call("validate", payload.as_bytes()).unwrap()).unwrap();
    assert!(answer.contains("\"mutated_object\""), "no claim: {answer}");
    let mut changed = Vec::new();
    for (key, text) in FLOATS {
        let got = number_after(&answer, key).unwrap_or_else(|| panic!("{key} missing: {answer}"));
        let (want, got_value): (f64, f64) = (text.parse().unwrap(), got.parse().unwrap());
        if want.to_bits() != got_value.to_bits() {
            changed.push(format!("{key}: sent {text}, answered {got}"));
        }
    }
    assert!(
        changed.is_empty(),
        "the claim rewrote floats it does not own: {changed:?}"
    );
}

/// The same fixture through the host path of tests/src/policy_host.rs (JSONPatch by
/// `json_patch::diff`). The host must parse exactly too: this workspace's serde_json has
/// `float_roundtrip`. A policy-server built with serde_json's default features still reads
/// some floats of the answer as their neighbours and would patch them; that is outside the
/// policy, and not reachable for Automatons today (the CRD's structural schema has no float
/// fields and the API server prunes unknown fields before admission).
#[test]
fn float_fields_survive_a_claim_through_the_host() {
    let fixture = float_fixture();
    let module = PolicyModule::load(&module_path()).unwrap();
    let instance = module.instance(Arc::new(ScriptedList::new())).unwrap();
    let admission = instance.validate(&fixture["settings"], &fixture["request"]).unwrap();
    assert!(admission.allowed, "{}", admission.response);
    let patch = admission.patch.expect("a claim");
    let foreign: Vec<String> = patch
        .0
        .iter()
        .map(|op| op.path().to_string())
        .filter(|p| !CLAIM_PATHS.contains(&p.as_str()))
        .collect();
    assert!(foreign.is_empty(), "the claim's JSONPatch also touches {foreign:?}");
    let case = Case {
        seed: 0,
        scenario: Scenario::Create,
        settings: fixture["settings"].clone(),
        model: None,
        settings_valid: Some(true),
        request: fixture["request"].clone(),
        ledger: LedgerAnswer::Error("not used".to_string()),
        raw: None,
        corrupted: false,
        huge: false,
    };
    check(&case, &admission.response, Some(&patch)).unwrap();
}

#[test]
fn standard_settings_are_valid_in_the_module() {
    let module = PolicyModule::load(&module_path()).unwrap();
    let instance = module.instance(Arc::new(ScriptedList::new())).unwrap();
    for settings in [SettingsModel::standard(), SettingsModel::defaults()] {
        let answer = instance.validate_settings(&settings.to_json()).unwrap();
        assert_eq!(answer["valid"], Value::Bool(true), "{answer}");
    }
}

/// Regression (found while fuzzing the settings, fixed in `Settings::from_json`): serde's
/// derived `Deserialize` also accepts a JSON array and assigns it to the fields by position, so
/// `["gastown-local", [], [], ["mallory"]]` was valid and made `mallory` a controller identity
/// (`deny_unknown_fields` cannot catch anything in a nameless array). Settings must be a JSON
/// object or `null`; fixture: fuzz/regressions/regression-settings-array.json.
#[test]
fn settings_must_be_an_object() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/regression-settings-array.json");
    let fixture: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let module = PolicyModule::load(&module_path()).unwrap();
    let instance = module.instance(Arc::new(ScriptedList::new())).unwrap();
    let answer = instance.validate_settings(&fixture["settings"]).unwrap();
    assert_eq!(
        answer["valid"], fixture["valid"],
        "settings {} were accepted: {answer}",
        fixture["settings"]
    );
    let message = answer["message"].as_str().unwrap_or_default();
    for part in fixture["messageContains"].as_array().unwrap() {
        assert!(message.contains(part.as_str().unwrap()), "{message:?} lacks {part}");
    }
    // With those settings mallory must not pass for the controller: `validate` refuses to run.
    let claimed = claimed_json(admission_automaton("fix-login"), DEFAULT_CLAIMER, "alice", "gastown");
    let status = admission_request("UPDATE", "status", "mallory", &[], claimed.clone(), claimed);
    let admission = instance.validate(&fixture["settings"], &status).unwrap();
    assert!(
        !admission.allowed,
        "mallory may write the status of a claimed Automaton"
    );
    assert_eq!(admission.code, Some(500), "{:?}", admission.message);
    // Odd shapes of every kind.
    for odd in [
        serde_json::json!([]),
        serde_json::json!("x"),
        serde_json::json!(7),
        serde_json::json!(true),
    ] {
        let answer = instance.validate_settings(&odd).unwrap();
        assert_eq!(answer["valid"], Value::Bool(false), "settings {odd}: {answer}");
    }
}
