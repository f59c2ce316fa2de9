//! CPU and memory of the processes at work in a run, read from `/proc`.

use std::process::Command;

use anyhow::{Context, Result};
use gastown_tests::cluster::TestCluster;
use gastown_tests::stats::round3;
use serde_json::{Value, json};

pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

#[derive(Clone, Copy, Debug, Default)]
pub struct ProcSample {
    pub rss_kib: u64,
    pub hwm_kib: u64,
    /// utime + stime, ticks.
    pub cpu_ticks: u64,
    /// cutime + cstime (reaped children), ticks.
    pub child_ticks: u64,
}

pub fn read_proc(pid: u32) -> Result<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<u64> = after.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
    let get = |i: usize| fields.get(i).copied().unwrap_or(0);
    Ok(ProcSample {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        cpu_ticks: get(11) + get(12),
        child_ticks: get(13) + get(14),
    })
}

/// CPU seconds of everything that works during a burst.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuSnapshot {
    pub controller: u64,
    pub fake: u64,
    pub apiserver: u64,
    pub etcd: u64,
    pub bench: u64,
}

/// The API server's and etcd's process ids, from the test cluster's pid files.
pub struct Pids {
    apiserver: Option<u32>,
    etcd: Option<u32>,
}

impl Pids {
    pub fn of(cluster: &TestCluster) -> Pids {
        let read = |name: &str| {
            std::fs::read_to_string(cluster.dir().join("pids").join(format!("{name}.pid")))
                .ok()
                .and_then(|s| s.trim().parse().ok())
        };
        Pids {
            apiserver: read("kube-apiserver"),
            etcd: read("etcd"),
        }
    }
}

pub fn cpu_snapshot(controller: u32, pids: &Pids) -> CpuSnapshot {
    let ticks = |pid: Option<u32>| pid.and_then(|p| read_proc(p).ok()).map_or(0, |s| s.cpu_ticks);
    let c = read_proc(controller).unwrap_or_default();
    CpuSnapshot {
        controller: c.cpu_ticks,
        fake: c.child_ticks,
        apiserver: ticks(pids.apiserver),
        etcd: ticks(pids.etcd),
        bench: ticks(Some(std::process::id())),
    }
}

pub fn cpu_delta(a: &CpuSnapshot, b: &CpuSnapshot, tck: f64) -> Value {
    let d = |x: u64, y: u64| round3(y.saturating_sub(x) as f64 / tck);
    json!({
        "controller": d(a.controller, b.controller),
        "fake_gastown": d(a.fake, b.fake),
        "kube_apiserver": d(a.apiserver, b.apiserver),
        "etcd": d(a.etcd, b.etcd),
        "bench_client": d(a.bench, b.bench),
    })
}
