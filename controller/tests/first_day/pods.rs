//! Step 6: the Deployment is Available through the kubelet's readiness probe; the pod runs the
//! image `make image` built, as 65532 with a read-only root filesystem; `/metrics` answers
//! through the chart's Service.

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use serde_json::Value;

use gastown_tests::controller_process::http_get;

use crate::image::Image;
use crate::{Day, METRICS_SERVICE, RELEASE_NS, container_id, eventually, run, wait_rolled_out};

/// Checks the one pod of the release against the image and returns the pods.
pub(crate) async fn the_pod_runs_as_built(day: &Day, image: &Image) -> Vec<Pod> {
    let first = wait_rolled_out(day, 1).await;
    let pod = &first[0];
    let spec = pod.spec.as_ref().unwrap();
    let container = &spec.containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some(image.name.as_str()),
        "the chart's default image"
    );
    assert!(container.readiness_probe.is_some());
    let cid = container_id(pod);
    let state: Value = serde_json::from_str(&run("docker", &["inspect", &cid], &[])).unwrap();
    let state = &state[0];
    assert_eq!(state["HostConfig"]["ReadonlyRootfs"], true);
    assert_eq!(
        state["Image"].as_str(),
        image.inspect["Id"].as_str(),
        "runs the image make image built"
    );
    let pid = state["State"]["Pid"].as_i64().unwrap();
    runs_as_65532_on_a_read_only_root(pid);
    first
}

/// The process `pid` has every uid and gid 65532, and its root is mounted read-only.
fn runs_as_65532_on_a_read_only_root(pid: i64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    for field in ["Uid:", "Gid:"] {
        let ids: Vec<&str> = status
            .lines()
            .find(|l| l.starts_with(field))
            .unwrap()
            .split_whitespace()
            .skip(1)
            .collect();
        assert_eq!(ids, ["65532"; 4], "{field} of the controller process");
    }
    let root_mount = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap()
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .map(str::to_owned)
        .unwrap();
    let options = root_mount.split_whitespace().nth(5).unwrap();
    assert!(
        options.split(',').any(|o| o == "ro"),
        "root filesystem mounted {options}"
    );
}

/// `/metrics` through the chart's Service (ClusterIP, routed by kube-proxy from the host).
pub(crate) async fn metrics_through_the_service(day: &Day) {
    let services: Api<Service> = Api::namespaced(day.admin.clone(), RELEASE_NS);
    let svc = services.get(METRICS_SERVICE).await.unwrap();
    let svc_spec = svc.spec.unwrap();
    let cluster_ip = svc_spec.cluster_ip.unwrap();
    let port = svc_spec.ports.unwrap()[0].port;
    let metrics_addr = format!("{cluster_ip}:{port}");
    let metrics = eventually("/metrics through the Service", || {
        let addr = metrics_addr.clone();
        async move {
            let (code, body) = tokio::task::spawn_blocking(move || http_get(&addr, "/metrics"))
                .await
                .unwrap()
                .map_err(|e| e.to_string())?;
            if code == 200 && body.contains("gastown_") {
                Ok(body)
            } else {
                Err(format!("{code}: {body:.200}"))
            }
        }
    })
    .await;
    assert!(
        metrics.contains("# EOF") || metrics.contains("# TYPE"),
        "{metrics:.500}"
    );
}
