//! One run of the workload: replicas kept running as a kubelet would, claims created and
//! followed, Gas Town's side played, faults fired, then everything deleted.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gastown_crds::Automaton;
use gastown_tests::cluster::{TestCluster, TestNamespace};
use gastown_tests::controller_process::{ControllerProcess, base_args, leader_election_args};
use gastown_tests::fake_gastown::{AutoProgress, Config, FakeGasTown, Faults};
use gastown_tests::rng::Rng;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde_json::Value;

use crate::claims::{Claims, delete, external_ref, spawn_creator, within};
use crate::report::Report;
use crate::schedule::{Event, Schedule};
use crate::*;

/// A controller replica: started again (same identity, like a pod restarted by the kubelet)
/// after it exits or is killed.
struct Replica {
    identity: &'static str,
    process: Option<ControllerProcess>,
    start_at: Option<Instant>,
    exits: u32,
    kills: u32,
}

pub(crate) struct RunOptions {
    pub(crate) label: &'static str,
    pub(crate) claims: usize,
    pub(crate) chaos: bool,
    pub(crate) seed: u64,
}

pub(crate) struct Run {
    pub(crate) opts: RunOptions,
    cluster: Arc<TestCluster>,
    pub(crate) ns: TestNamespace,
    pub(crate) town: FakeGasTown,
    /// The town's other work ([`OTHER_BEADS`]), not the controller's.
    pub(crate) other_beads: Vec<String>,
    api: Api<Automaton>,
    replicas: Vec<Replica>,
    rng: Rng,
}

impl Run {
    pub(crate) async fn new(cluster: Arc<TestCluster>, opts: RunOptions) -> Run {
        let ns = cluster.namespace(&format!("chaos-{}", opts.label)).await.unwrap();
        let town = FakeGasTown::new().unwrap();
        town.set_config(&Config {
            auto_progress: Some(AutoProgress {
                start_after_ms: START_AFTER_MS,
                close_after_ms: Some(CLOSE_AFTER_MS),
                close_reason: None,
                // The rejected and cancelled work runs in the other rig, whose agents are
                // slower than the test: it closes or deletes that work itself.
                close_rigs: Some(vec!["gastown".to_string()]),
            }),
            ..Config::default()
        })
        .unwrap();
        let other_beads = town.fill_with_beads(OTHER_BEADS, 1).unwrap();
        let api = Api::namespaced(cluster.client(), ns.name());
        let replicas = REPLICAS
            .iter()
            .map(|identity| Replica {
                identity,
                process: None,
                start_at: Some(Instant::now()),
                exits: 0,
                kills: 0,
            })
            .collect();
        let rng = Rng::new(opts.seed ^ if opts.chaos { 0xC4A0_5000 } else { 0 });
        Run {
            opts,
            cluster,
            ns,
            town,
            other_beads,
            api,
            replicas,
            rng,
        }
    }

    fn spawn(&self, identity: &str) -> ControllerProcess {
        let mut args = base_args(self.ns.name());
        args.extend(self.town.exec_args());
        let claim_timeout = format!("{}s", CLAIM_TIMEOUT.as_secs());
        for (flag, value) in [
            ("--command-timeout", COMMAND_TIMEOUT),
            ("--claim-timeout", &claim_timeout),
            ("--create-outcome-wait", CREATE_OUTCOME_WAIT),
        ] {
            args.extend([flag.to_string(), value.to_string()]);
        }
        args.extend(leader_election_args(self.ns.name(), LEASE_DURATION, identity));
        ControllerProcess::spawn(
            Path::new(env!("CARGO_BIN_EXE_gastown-controller")),
            &self.cluster.kubeconfig(),
            &args,
            &self.town.state_dir().join(format!("{identity}.log")),
        )
        .unwrap()
    }

    /// Restarts replicas that exited (a replica that loses its lease exits) or were killed.
    fn supervise(&mut self) {
        let now = Instant::now();
        for i in 0..self.replicas.len() {
            let exited = self.replicas[i].process.as_mut().and_then(ControllerProcess::try_wait);
            if exited.is_some() {
                let r = &mut self.replicas[i];
                r.process = None;
                r.exits += 1;
                r.start_at = Some(now + Duration::from_secs(1));
            }
            if self.replicas[i].process.is_none() && self.replicas[i].start_at.is_some_and(|t| t <= now) {
                let process = self.spawn(self.replicas[i].identity);
                let r = &mut self.replicas[i];
                r.process = Some(process);
                r.start_at = None;
            }
        }
    }

    async fn lease_holder(&self) -> Option<String> {
        let leases: Api<Lease> = Api::namespaced(self.cluster.client(), self.ns.name());
        within("reading the Lease", leases.get(LEASE_NAME))
            .await
            .ok()
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
    }

    /// Kills a replica; `None` when none is running (the caller retries once one has restarted).
    async fn kill(&mut self, event: Event) -> Option<String> {
        let running: Vec<usize> = (0..self.replicas.len())
            .filter(|i| self.replicas[*i].process.is_some())
            .collect();
        if running.is_empty() {
            return None;
        }
        let holder = if event == Event::KillLeader {
            self.lease_holder().await
        } else {
            None
        };
        let target = holder
            .as_deref()
            .and_then(|h| running.iter().copied().find(|i| self.replicas[*i].identity == h))
            .unwrap_or_else(|| running[self.rng.below(running.len())]);
        let restart_in = Duration::from_millis(500 + self.rng.below(2000) as u64);
        let r = &mut self.replicas[target];
        if let Some(mut p) = r.process.take() {
            p.kill();
        }
        r.kills += 1;
        r.start_at = Some(Instant::now() + restart_in);
        let leader = holder.map(|h| format!(", lease holder {h}")).unwrap_or_default();
        Some(format!(
            "SIGKILL {}{leader} ({event:?}), restarted in {restart_in:?}",
            r.identity
        ))
    }

    /// The whole run: claims to their end under the faults, then everything deleted, then the
    /// invariants checked ([`Run::check`]).
    pub(crate) async fn execute(mut self) -> Report {
        let started = Instant::now();
        let mut report = Report {
            label: self.opts.label,
            claims: self.opts.claims,
            logs: self.town.state_dir(),
            ..Report::default()
        };
        let mut schedule = Schedule::new(self.opts.chaos, &mut self.rng);
        if self.opts.chaos {
            self.inject_gastown_faults();
            println!(
                "[{}] schedule (progress, delay, event): {:?}",
                self.opts.label, schedule.left
            );
        }
        self.supervise();
        let (creator, created) = spawn_creator(self.api.clone(), self.opts.claims);
        let mut claims = Claims::default();
        let deadline = started + Duration::from_secs(90) + Duration::from_secs(2) * self.opts.claims as u32;
        loop {
            self.supervise();
            claims.add_created(&created);
            // What the API says (skipped while the server is down).
            if let Ok(list) = within("listing Automatons", self.api.list(&ListParams::default())).await {
                claims.observe(&list.items);
            }
            self.act_as_gastown(&mut claims).await;
            self.fire_due_fault(&mut schedule, &claims, started, &mut report).await;
            self.note_restart_done(&mut schedule, started, &mut report).await;
            if claims.all_finished(self.opts.claims) && schedule.is_over() {
                break;
            }
            if Instant::now() > deadline {
                panic!(
                    "[{}] seed {}: not every claim finished within {:?} (events left: {:?}); logs in {}; unfinished:{}",
                    self.opts.label,
                    self.opts.seed,
                    deadline - started,
                    schedule.left,
                    self.town.state_dir().display(),
                    claims.unfinished()
                );
            }
            tokio::time::sleep(TICK).await;
        }
        creator.await.unwrap();
        report.to_terminal = started.elapsed();
        report.latencies = claims
            .claims
            .values()
            .filter_map(|c| Some(c.finished? - c.created))
            .collect();
        report.deletion = self.delete_everything(&claims).await;
        self.stop_replicas(&mut report);
        // Calls of the killed processes that were already running finish and log themselves.
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.town.clear_faults();
        self.check(&claims.claims, &mut report);
        report
    }

    /// Gas Town fails, hangs, and fails after the work, at the rates above.
    fn inject_gastown_faults(&self) {
        let faults = Faults {
            fail_rate: FAIL_RATE,
            hang_rate: HANG_RATE,
            hang_seconds: Some(HANG_SECONDS),
            after_work_fail_rate: AFTER_WORK_RATE,
            after_work_hang_rate: AFTER_WORK_RATE,
            after_work_kill_rate: AFTER_WORK_RATE,
            ..Faults::default()
        }
        .after_work_verbs(AFTER_WORK_VERBS)
        .seed(self.opts.seed);
        self.town.set_faults(&faults).unwrap();
    }

    /// Gas Town's side: reject and cancel once the work is with an agent.
    async fn act_as_gastown(&self, claims: &mut Claims) {
        let beads = self.town.beads().unwrap_or_default();
        let by_ref: HashMap<&str, &Value> = beads
            .iter()
            .filter_map(|b| Some((b["external_ref"].as_str()?, b)))
            .collect();
        for (name, c) in claims.claims.iter_mut() {
            if c.acted || !matches!(c.kind, Kind::Reject | Kind::Cancel) {
                continue;
            }
            let Some(bead) = by_ref.get(external_ref(self.ns.name(), name, &c.uid).as_str()) else {
                continue;
            };
            let status = bead["status"].as_str().unwrap_or_default();
            match c.kind {
                Kind::Reject if status == "in_progress" => {
                    c.acted = self
                        .town
                        .close(bead["id"].as_str().unwrap_or_default(), REJECT_REASON)
                        .is_ok();
                }
                Kind::Cancel if matches!(status, "hooked" | "in_progress") => {
                    c.acted = delete(&self.api, name).await.is_ok();
                }
                _ => {}
            }
        }
    }

    /// Faults, at random points of the run.
    async fn fire_due_fault(
        &mut self,
        schedule: &mut Schedule,
        claims: &Claims,
        started: Instant,
        report: &mut Report,
    ) {
        let progress = claims.progress(self.opts.claims);
        let Some(event) = schedule.due(progress) else {
            return;
        };
        let what = match event {
            Event::RestartApiServer => {
                let cluster = Arc::clone(&self.cluster);
                schedule.restart = Some(tokio::spawn(async move {
                    let t = Instant::now();
                    let result = cluster.restart_apiserver().await.map_err(|e| format!("{e:#}"));
                    (t, result)
                }));
                report.api_restarts += 1;
                Some("restarting the API server".to_string())
            }
            kill => self.kill(kill).await,
        };
        match what {
            Some(what) => println!(
                "[{}] {:>6.1}s progress {:.2}: {what}",
                self.opts.label,
                started.elapsed().as_secs_f64(),
                progress
            ),
            // Every replica is being restarted: kill one once it is back.
            None => schedule.retry_soon(event),
        }
    }

    /// Records how long the API server restart took, once it is over.
    async fn note_restart_done(&self, schedule: &mut Schedule, started: Instant, report: &mut Report) {
        let Some(handle) = schedule.finished_restart() else {
            return;
        };
        let (t, result) = handle.await.unwrap();
        report.api_restart_time = t.elapsed();
        if let Err(e) = result {
            panic!("restarting the API server failed: {e}");
        }
        println!(
            "[{}] {:>6.1}s API server back after {:?}",
            self.opts.label,
            started.elapsed().as_secs_f64(),
            report.api_restart_time
        );
    }

    /// Everything is deleted (faults still on, no more kills) and the controller lets go;
    /// returns how long that took.
    async fn delete_everything(&mut self, claims: &Claims) -> Duration {
        let deleting = Instant::now();
        for name in claims.claims.keys() {
            loop {
                match delete(&self.api, name).await {
                    Ok(()) => break,
                    Err(e) => {
                        assert!(deleting.elapsed() < Duration::from_secs(60), "deleting {name}: {e}");
                        tokio::time::sleep(TICK).await;
                    }
                }
            }
        }
        let deletion_deadline = Duration::from_secs(60) + Duration::from_millis(500) * self.opts.claims as u32;
        loop {
            self.supervise();
            if let Ok(list) = within("listing Automatons", self.api.list(&ListParams::default())).await {
                if list.items.is_empty() {
                    return deleting.elapsed();
                }
                if deleting.elapsed() > deletion_deadline {
                    let left: Vec<String> = list
                        .items
                        .iter()
                        .map(|a| format!("{} {:?} finalizers {:?}", a.name_any(), a.phase(), a.finalizers()))
                        .collect();
                    panic!(
                        "[{}] seed {}: Automatons still there {deletion_deadline:?} after deletion: {left:?}",
                        self.opts.label, self.opts.seed
                    );
                }
            }
            tokio::time::sleep(TICK).await;
        }
    }

    /// Counts the replicas' kills and exits, and stops them.
    fn stop_replicas(&mut self, report: &mut Report) {
        for r in &mut self.replicas {
            report.kills += r.kills;
            report.exits += r.exits;
            if let Some(mut p) = r.process.take() {
                p.kill();
            }
        }
    }
}
