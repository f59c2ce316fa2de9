//! The `gastown-controller` process under test: started with the bench's flags and the
//! production log filter, waited for until ready, and scraped for its metrics.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use gastown_tests::controller_process::{admin_addr_in_log, http_get};
use gastown_tests::fake_gastown::FakeGasTown;

use crate::Ctx;

/// How long a controller may take to serve `/metrics` and be ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running controller; killed on drop.
pub struct Controller {
    child: Child,
    log: PathBuf,
    metrics: String,
}

impl Controller {
    /// Starts a controller for `claimer` on namespace `ns` and the fake `town`, logging to
    /// `log_name` in the log directory; returns once it is ready (its watch has listed
    /// everything).
    pub async fn spawn(
        ctx: &Ctx<'_>,
        ns: &str,
        town: &FakeGasTown,
        claimer: &str,
        log_name: &str,
    ) -> Result<Controller> {
        let log = ctx.log_dir.join(log_name);
        let child = start(ctx, ns, town, claimer, &log)?;
        let mut c = Controller {
            child,
            log,
            metrics: String::new(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        c.metrics = c.wait_for_admin_addr(deadline).await?;
        c.wait_ready(deadline).await?;
        Ok(c)
    }

    /// The admin server's address, once the log announces it.
    async fn wait_for_admin_addr(&mut self, deadline: Instant) -> Result<String> {
        loop {
            if let Some(addr) = admin_addr_in_log(&self.log_text()) {
                return Ok(addr);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!(
                    "the controller exited ({status}); log {}:\n{}",
                    self.log.display(),
                    self.log_text()
                );
            }
            ensure!(
                Instant::now() < deadline,
                "the controller did not serve /metrics within 60 s; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `/readyz` answers 200.
    async fn wait_ready(&self, deadline: Instant) -> Result<()> {
        loop {
            let addr = self.metrics.clone();
            let ready = tokio::task::spawn_blocking(move || http_get(&addr, "/readyz")).await?;
            if ready.is_ok_and(|(code, _)| code == 200) {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "the controller was not ready within 60 s; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn scrape(&self) -> Result<Metrics> {
        let addr = self.metrics.clone();
        let (code, body) = tokio::task::spawn_blocking(move || http_get(&addr, "/metrics")).await??;
        ensure!(code == 200, "/metrics answered {code}");
        Ok(Metrics::parse(&body))
    }
}

/// Starts the binary. Not `ControllerProcess::spawn`: the bench must run the production log
/// filter (debug logging would be measured too) and a fresh log per run.
fn start(ctx: &Ctx<'_>, ns: &str, town: &FakeGasTown, claimer: &str, log: &Path) -> Result<Child> {
    let args = ctx.args;
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    Command::new(&ctx.controller_bin)
        .args(["--namespaces", ns, "--claimer", claimer])
        .args(town.exec_args())
        .args(["--metrics-addr", "127.0.0.1:0", "--log-format", "json"])
        .args(["--sync-interval", &args.sync_interval])
        .args(["--concurrency", &args.concurrency.to_string()])
        .args(["--gastown-concurrency", &args.gastown_concurrency.to_string()])
        // Nothing in the bench may be released or killed for being slow.
        .args([
            "--claim-timeout",
            "2h",
            "--release-timeout",
            "2h",
            "--command-timeout",
            "5m",
        ])
        .env("KUBECONFIG", ctx.cluster.kubeconfig())
        // The production default filter (main.rs), so logging costs what it costs there.
        .env("RUST_LOG", "info,kube=warn")
        .env_remove("GT_ROLE")
        .env_remove("GT_POLECAT")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("starting {}", ctx.controller_bin.display()))
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Samples of the Prometheus text format: (name, labels) → value.
#[derive(Default, Debug, Clone)]
pub struct Metrics(Vec<(String, BTreeMap<String, String>, f64)>);

impl Metrics {
    fn parse(text: &str) -> Metrics {
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let mut labels = BTreeMap::new();
                    for pair in rest.trim_end_matches('}').split(',').filter(|p| !p.is_empty()) {
                        if let Some((k, v)) = pair.split_once('=') {
                            labels.insert(k.to_string(), v.trim_matches('"').to_string());
                        }
                    }
                    (name.to_string(), labels)
                }
                None => (series.to_string(), BTreeMap::new()),
            };
            out.push((name, labels, value));
        }
        Metrics(out)
    }

    /// Sum of `name` over series whose labels include `filter`.
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(n, l, _)| n == name && filter.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
            .map(|(_, _, v)| v)
            .sum()
    }

    /// `name` by the value of `label`.
    pub fn by(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (n, l, v) in &self.0 {
            if n == name {
                *out.entry(l.get(label).cloned().unwrap_or_default()).or_insert(0.0) += v;
            }
        }
        out
    }

    /// Per `tool verb`: (count, mean seconds) of Gas Town commands.
    pub fn commands(&self) -> BTreeMap<String, (f64, f64)> {
        let mut sums: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        for (n, l, v) in &self.0 {
            let key = format!(
                "{} {}",
                l.get("tool").map_or("", String::as_str),
                l.get("verb").map_or("", String::as_str)
            );
            if n == "gastown_command_duration_seconds_count" {
                sums.entry(key).or_default().0 += v;
            } else if n == "gastown_command_duration_seconds_sum" {
                sums.entry(key).or_default().1 += v;
            }
        }
        sums.into_iter()
            .map(|(k, (c, s))| (k, (c, if c > 0.0 { s / c } else { f64::NAN })))
            .collect()
    }
}
