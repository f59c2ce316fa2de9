//! The claims of a run: how they are made and deleted through API server outages, and what the
//! test has seen of them.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gastown_crds::Automaton;
use gastown_tests::fixtures::claimed_automaton;
use gastown_tests::status::bead_id;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::{CLAIM_TIMEOUT, EXPIRE_AFTER, Kind, SLOW_RIG, UNKNOWN_RIG, claim_name};

/// Gives up on one API request after this long (the server may be restarting).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the test knows of one claim.
pub(crate) struct Claim {
    pub(crate) kind: Kind,
    pub(crate) uid: String,
    pub(crate) created: Instant,
    /// When it was seen terminal (or gone, for Cancel).
    pub(crate) finished: Option<Instant>,
    /// The object as last seen terminal, before the final deletion.
    pub(crate) last: Option<Automaton>,
    /// Reject: the bead was closed by the test. Cancel: the delete was accepted.
    pub(crate) acted: bool,
}

/// The claims created so far (name → uid, when), filled in by the creating task.
pub(crate) type Created = Arc<Mutex<BTreeMap<String, (String, Instant)>>>;

/// Every claim the test knows of, and each object as last listed.
#[derive(Default)]
pub(crate) struct Claims {
    pub(crate) claims: BTreeMap<String, Claim>,
    pub(crate) seen: HashMap<String, Automaton>,
}

impl Claims {
    /// Takes in the claims the creating task has made since the last look.
    pub(crate) fn add_created(&mut self, created: &Created) {
        for (name, (uid, at)) in created.lock().unwrap().iter() {
            self.claims.entry(name.clone()).or_insert_with(|| {
                let index: usize = name.trim_start_matches("claim-").parse().unwrap();
                Claim {
                    kind: Kind::of(index),
                    uid: uid.clone(),
                    created: *at,
                    finished: None,
                    last: None,
                    acted: false,
                }
            });
        }
    }

    /// Records what a list of the Automatons shows: terminal claims finish (a Released one once
    /// the controller has also removed its claim), deleted cancelled ones too.
    pub(crate) fn observe(&mut self, items: &[Automaton]) {
        let present: HashMap<String, &Automaton> = items.iter().map(|a| (a.name_any(), a)).collect();
        for (name, c) in self.claims.iter_mut() {
            match present.get(name) {
                Some(a) => {
                    self.seen.insert(name.clone(), (*a).clone());
                    if c.finished.is_none()
                        && c.kind != Kind::Cancel
                        && a.is_terminal()
                        && (a.phase() != Some(gastown_crds::Phase::Released) || a.claimed_by().is_none())
                    {
                        c.finished = Some(Instant::now());
                        c.last = Some((*a).clone());
                    }
                }
                None if c.kind == Kind::Cancel && c.acted && c.finished.is_none() => c.finished = Some(Instant::now()),
                None => {}
            }
        }
    }

    /// Every one of the `total` claims exists and has finished.
    pub(crate) fn all_finished(&self, total: usize) -> bool {
        self.claims.len() == total && self.claims.values().all(|c| c.finished.is_some())
    }

    /// Progress of the run in [0, 1]: a quarter for claims with a bead, three quarters for
    /// finished claims (creation and bead creation are quick; faults should land all along).
    pub(crate) fn progress(&self, total: usize) -> f64 {
        let with_bead = self
            .claims
            .keys()
            .filter(|n| self.seen.get(*n).is_some_and(|a| bead_id(a).is_some()))
            .count();
        let finished = self.claims.values().filter(|c| c.finished.is_some()).count();
        (with_bead + 3 * finished) as f64 / (4 * total.max(1)) as f64
    }

    /// The claims that have not finished, with their status as last seen.
    pub(crate) fn unfinished(&self) -> String {
        let mut out = String::new();
        for (name, c) in self.claims.iter().filter(|(_, c)| c.finished.is_none()) {
            let status = self
                .seen
                .get(name)
                .map(|a| serde_json::to_string(&a.status).unwrap_or_default())
                .unwrap_or_else(|| "(not seen)".into());
            out.push_str(&format!("\n  {name} ({:?}, uid {}): {status}", c.kind, c.uid));
        }
        out
    }
}

pub(crate) async fn within<T, E: std::fmt::Display>(
    what: &str,
    f: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(REQUEST_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: timed out")),
    }
}

/// Deletes an Automaton; already gone counts as done (an earlier answer may have been lost).
pub(crate) async fn delete(api: &Api<Automaton>, name: &str) -> Result<(), String> {
    match tokio::time::timeout(REQUEST_TIMEOUT, api.delete(name, &DeleteParams::default())).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(kube::Error::Api(status))) if status.code == 404 => Ok(()),
        Ok(Err(e)) => Err(format!("deleting {name}: {e}")),
        Err(_) => Err(format!("deleting {name}: timed out")),
    }
}

pub(crate) fn status_json(a: Option<&Automaton>) -> String {
    a.map(|a| serde_json::to_string(&a.status).unwrap_or_default())
        .unwrap_or_else(|| "(never seen)".into())
}

pub(crate) fn external_ref(ns: &str, name: &str, uid: &str) -> String {
    format!("automaton:{ns}/{name}/{uid}")
}

/// Creates claim `index` as the claim policy leaves it (retrying through API outages) and
/// returns its uid.
pub(crate) async fn create_claim(api: &Api<Automaton>, index: usize) -> String {
    let name = claim_name(index);
    // Whole seconds, as the claim policy writes it (`now_rfc3339`).
    let mut claimed_at = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap();
    let rig = match Kind::of(index) {
        Kind::Merge => "gastown",
        Kind::Reject | Kind::Cancel => SLOW_RIG,
        Kind::Expire => {
            let back = jiff::SignedDuration::try_from(CLAIM_TIMEOUT - EXPIRE_AFTER).unwrap();
            claimed_at = claimed_at.checked_sub(back).unwrap();
            UNKNOWN_RIG
        }
    };
    let extra = json!({"spec": {"task": {"description": "chaos"}, "rig": rig}});
    let obj = claimed_automaton(&name, claimed_at, &extra).unwrap();
    let give_up = Instant::now() + Duration::from_secs(90);
    loop {
        match within("creating", api.create(&PostParams::default(), &obj)).await {
            Ok(a) => return a.uid().unwrap(),
            Err(e) => {
                // The create may have landed before the connection broke.
                if let Ok(Some(a)) = within("reading", api.get_opt(&name)).await {
                    return a.uid().unwrap();
                }
                assert!(Instant::now() < give_up, "creating {name}: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Creates the run's claims in the background, one every `CREATE_EVERY`, the way the claim
/// policy leaves them; creation retries through API server restarts.
pub(crate) fn spawn_creator(api: Api<Automaton>, total: usize) -> (tokio::task::JoinHandle<()>, Created) {
    let created = Created::default();
    let record = Arc::clone(&created);
    let creator = tokio::spawn(async move {
        for index in 0..total {
            let name = claim_name(index);
            let uid = create_claim(&api, index).await;
            record.lock().unwrap().insert(name, (uid, Instant::now()));
            tokio::time::sleep(crate::CREATE_EVERY).await;
        }
    });
    (creator, created)
}
