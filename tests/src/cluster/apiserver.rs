//! Disturbing a test cluster's kube-apiserver on purpose: restarting it, freezing it.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, ensure};

use super::{CLUSTER_SH, TestCluster, run_with_timeout};

const RESTART_TIMEOUT: Duration = Duration::from_secs(120);

impl TestCluster {
    /// Stops kube-apiserver and starts it again on the same port with the etcd data kept.
    /// On the shared cluster this disturbs every test of the process: prefer
    /// [`TestCluster::start_dedicated`] for such tests.
    pub async fn restart_apiserver(&self) -> anyhow::Result<()> {
        let dir = self.dir.clone();
        let status = tokio::task::spawn_blocking(move || {
            let mut restart = Command::new("bash");
            restart.arg(CLUSTER_SH).arg("restart-apiserver").arg(&dir);
            run_with_timeout(restart, RESTART_TIMEOUT, true)
        })
        .await
        .context("the restart task panicked")??;
        ensure!(status.success(), "cluster.sh restart-apiserver failed ({status})");
        Ok(())
    }

    /// The pid of this cluster's kube-apiserver, from `pids/kube-apiserver.pid` (written by
    /// `cluster.sh`), checked to be a `kube-apiserver` started for this directory.
    pub fn apiserver_pid(&self) -> anyhow::Result<u32> {
        let file = self.dir.join("pids").join("kube-apiserver.pid");
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        let pid: u32 = text
            .trim()
            .parse()
            .with_context(|| format!("{} holds {text:?}, not a pid", file.display()))?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .with_context(|| format!("kube-apiserver (pid {pid}) is not running"))?;
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let dir = format!("{}/", self.dir.display());
        ensure!(
            cmdline.contains("kube-apiserver") && cmdline.contains(&dir),
            "pid {pid} from {} is not the kube-apiserver of {}: {cmdline}",
            file.display(),
            self.dir.display()
        );
        Ok(pid)
    }

    /// Freezes kube-apiserver with SIGSTOP: its connections stay open and every request hangs,
    /// neither answered nor refused, as when the API server or the network to it hangs. The
    /// returned guard sends SIGCONT when resumed or dropped (also when the test panics). Use a
    /// dedicated cluster ([`TestCluster::start_dedicated`]): it stalls every client.
    pub fn pause_apiserver(&self) -> anyhow::Result<PausedApiserver> {
        let pid = self.apiserver_pid()?;
        signal(pid, "STOP")?;
        Ok(PausedApiserver { pid: Some(pid) })
    }
}

/// A kube-apiserver stopped with SIGSTOP; continued (SIGCONT) on [`PausedApiserver::resume`]
/// or drop.
#[derive(Debug)]
#[must_use = "dropping the guard resumes kube-apiserver at once"]
pub struct PausedApiserver {
    pid: Option<u32>,
}

impl PausedApiserver {
    /// Continues kube-apiserver (SIGCONT).
    pub fn resume(mut self) -> anyhow::Result<()> {
        match self.pid.take() {
            Some(pid) => signal(pid, "CONT"),
            None => Ok(()),
        }
    }
}

impl Drop for PausedApiserver {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take()
            && let Err(err) = signal(pid, "CONT")
        {
            eprintln!("could not resume kube-apiserver (pid {pid}): {err:#}");
        }
    }
}

fn signal(pid: u32, name: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .with_context(|| format!("running kill -{name} {pid}"))?;
    ensure!(status.success(), "kill -{name} {pid} failed ({status})");
    Ok(())
}
