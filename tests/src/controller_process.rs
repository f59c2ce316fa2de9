//! Runs the real `gastown-controller` binary as a child process for end-to-end tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A running controller; killed (SIGKILL) on drop.
pub struct ControllerProcess {
    child: Option<Child>,
    log: PathBuf,
}

impl ControllerProcess {
    /// Starts `binary` with `args`, `KUBECONFIG=kubeconfig`, logs (JSON) to `log`.
    pub fn spawn(binary: &Path, kubeconfig: &Path, args: &[String], log: &Path) -> Result<ControllerProcess> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(binary)
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,kube=warn,gastown_controller=debug")
            .env_remove("GT_ROLE")
            .env_remove("GT_POLECAT")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(ControllerProcess {
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the process with SIGKILL (no clean-up at all) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for a clean exit.
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("the controller is not running")
        };
        let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status()?;
        if !status.success() {
            bail!("kill -TERM failed");
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the controller did not stop within {timeout:?} after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the process has exited (and how).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The address of `/metrics`, `/livez` and `/readyz`, once the JSON log has announced it
    /// (start it with `--metrics-addr 127.0.0.1:0 --log-format json`).
    pub fn admin_addr(&self) -> Option<String> {
        admin_addr_in_log(&self.log())
    }
}

/// The flags every test controller starts with: watch `namespace`, serve `/metrics` on a free
/// loopback port, log JSON (so [`ControllerProcess::admin_addr`] finds that port) and sync
/// every second.
pub fn base_args(namespace: &str) -> Vec<String> {
    [
        "--namespaces",
        namespace,
        "--metrics-addr",
        "127.0.0.1:0",
        "--sync-interval",
        "1s",
        "--log-format",
        "json",
    ]
    .map(String::from)
    .to_vec()
}

/// The flags of a replica that takes part in leader election with the Lease in
/// `lease_namespace`.
pub fn leader_election_args(lease_namespace: &str, lease_duration: &str, identity: &str) -> Vec<String> {
    [
        "--leader-election",
        "--lease-namespace",
        lease_namespace,
        "--lease-duration",
        lease_duration,
        "--identity",
        identity,
    ]
    .map(String::from)
    .to_vec()
}

/// The admin server's address from a JSON-format controller log ("serving /metrics, ...").
pub fn admin_addr_in_log(log: &str) -> Option<String> {
    log.lines().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let fields = v.get("fields")?;
        if !fields.get("message")?.as_str()?.starts_with("serving /metrics") {
            return None;
        }
        fields.get("addr")?.as_str().map(str::to_string)
    })
}

/// A minimal blocking HTTP/1.0 GET on loopback: (status code, body).
pub fn http_get(addr: &str, path: &str) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let sock: std::net::SocketAddr = addr.parse().with_context(|| format!("address {addr:?}"))?;
    let mut stream = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no HTTP status")?;
    Ok((code, body.to_string()))
}

impl ControllerProcess {
    /// The value of an unlabelled metric (e.g. `gastown_leader`) from `/metrics`; `None` if
    /// the admin address is not known yet, the scrape failed or the metric is absent.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let addr = self.admin_addr()?;
        let (code, body) = http_get(&addr, "/metrics").ok()?;
        if code != 200 {
            return None;
        }
        metric_in(&body, name)
    }
}

/// The value of the unlabelled sample `name` in an OpenMetrics text.
pub fn metric_in(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (metric, value) = line.split_once(' ')?;
        if metric == name {
            value.trim().parse().ok()
        } else {
            None
        }
    })
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
