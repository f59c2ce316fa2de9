//! Pods on the real node of `cluster.sh up --node`: a Deployment of the FROM-scratch busybox
//! test image is scheduled, started by the kubelet (dockershim, Debian's docker) and becomes
//! Ready through its readiness probe; its ServiceAccount token is mounted and valid; a ClusterIP
//! Service routes to it through kube-proxy, from a second pod and from the host; that pod also
//! reaches the API server through the `kubernetes` Service.
//!
//! Uses the node cluster named by `GASTOWN_TEST_NODE_CLUSTER_DIR` (`make test` starts one), or
//! brings one up for this process (root needed).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use gastown_tests::cluster::{NodeInfo, TestCluster, unique_name};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{ListParams, LogParams, PostParams};
use kube::{Api, Client, ResourceExt as _};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Upper bound for a pod to be scheduled, started and Ready (images are local).
const POD_WAIT: Duration = Duration::from_secs(120);
/// Upper bound for one HTTP exchange with a pod.
const HTTP_WAIT: Duration = Duration::from_secs(10);
/// Upper bound for kube-proxy to route a Service to a pod that became Ready (the endpoints
/// controller, then kube-proxy's next iptables sync; until then it rejects connections).
const ROUTE_WAIT: Duration = Duration::from_secs(30);
const WEB_PORT: i32 = 8080;
const SERVICE_PORT: u16 = 80;
const TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

#[tokio::test]
async fn deployment_runs_ready_with_token_behind_a_service() -> anyhow::Result<()> {
    let Some(cluster) = TestCluster::start_node().await? else {
        return Ok(());
    };
    let node = cluster.node()?;
    let namespace = cluster.namespace("node-web").await?;
    let ns = namespace.name();
    let client = cluster.client();
    let (web, cluster_ip) = a_ready_web_pod_behind_a_service(&client, ns, &node).await?;
    let web_name = web.name_any();
    the_host_reaches_it_and_its_token_is_valid(&client, ns, &cluster_ip, &web_name).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    a_second_pod_reaches_it_and_the_api_server(&pods, &node, &cluster_ip, &web_name).await
}

/// The web pod serves its own name, and copies of its mounted ServiceAccount files; it is Ready
/// only once httpd answers on /index.html. It runs on the node with the token volume mounted.
/// Returns the pod and its Service's ClusterIP.
async fn a_ready_web_pod_behind_a_service(client: &Client, ns: &str, node: &NodeInfo) -> anyhow::Result<(Pod, String)> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    deployments
        .create(&PostParams::default(), &web_deployment(node))
        .await
        .context("creating the web Deployment")?;
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"app": "web"},
            "ports": [{"port": SERVICE_PORT, "targetPort": WEB_PORT}],
        },
    }))?;
    let service = services.create(&PostParams::default(), &service).await?;
    let cluster_ip = service
        .spec
        .as_ref()
        .and_then(|spec| spec.cluster_ip.clone())
        .context("the Service got no ClusterIP")?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let web = wait_for_available(&deployments, &pods, "web").await?;
    let spec = web.spec.as_ref().context("pod without spec")?;
    assert_eq!(
        spec.node_name.as_deref(),
        Some(node.name.as_str()),
        "scheduled onto the node"
    );
    let status = web.status.as_ref().context("pod without status")?;
    assert_eq!(status.host_ip.as_deref(), Some(node.ip.as_str()));
    assert!(pod_ready(&web), "the Deployment's pod is Ready: {status:?}");
    let mounts = &spec.containers[0].volume_mounts;
    assert!(
        mounts.iter().flatten().any(|m| m.mount_path == TOKEN_PATH),
        "the ServiceAccount admission plugin mounted the token volume: {mounts:?}"
    );
    Ok((web, cluster_ip))
}

/// From the host, through the ClusterIP (kube-proxy's iptables rules): the pod's name, then its
/// mounted token, which the API server accepts as the namespace's default account.
async fn the_host_reaches_it_and_its_token_is_valid(
    client: &Client,
    ns: &str,
    cluster_ip: &str,
    web_name: &str,
) -> anyhow::Result<()> {
    let served = http_get_once_routed(cluster_ip, SERVICE_PORT, "/index.html").await?;
    assert_eq!(served.trim(), web_name, "the Service routes to the web pod");
    let token = http_get(cluster_ip, SERVICE_PORT, "/token").await?;
    let mounted_namespace = http_get(cluster_ip, SERVICE_PORT, "/namespace").await?;
    assert_eq!(mounted_namespace.trim(), ns);
    let review = Api::<TokenReview>::all(client.clone())
        .create(
            &PostParams::default(),
            &TokenReview {
                spec: TokenReviewSpec {
                    token: Some(token.trim().to_string()),
                    ..TokenReviewSpec::default()
                },
                ..TokenReview::default()
            },
        )
        .await?;
    let review = review.status.context("TokenReview without status")?;
    assert_eq!(
        review.authenticated,
        Some(true),
        "the mounted token is valid: {review:?}"
    );
    assert_eq!(
        review.user.and_then(|user| user.username).as_deref(),
        Some(format!("system:serviceaccount:{ns}:default").as_str())
    );
    Ok(())
}

/// From a second pod: the Service by its ClusterIP, and the API server through the
/// `kubernetes` Service with the second pod's own token (/api needs an authenticated user).
async fn a_second_pod_reaches_it_and_the_api_server(
    pods: &Api<Pod>,
    node: &NodeInfo,
    cluster_ip: &str,
    web_name: &str,
) -> anyhow::Result<()> {
    let script = format!(
        "timeout 10 wget -qO- http://{cluster_ip}:{SERVICE_PORT}/index.html && echo ---- && \
         timeout 10 wget -qO- --no-check-certificate \
         --header \"Authorization: Bearer $(cat {TOKEN_PATH}/token)\" \
         https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api"
    );
    let output = run_to_completion(pods, &client_pod(node, &script)).await?;
    let (from_service, from_api) = output
        .split_once("----")
        .with_context(|| format!("unexpected client output: {output:?}"))?;
    assert_eq!(
        from_service.trim(),
        web_name,
        "the Service routes pod traffic to the web pod"
    );
    let api: serde_json::Value =
        serde_json::from_str(from_api.trim()).with_context(|| format!("not JSON from /api: {from_api:?}"))?;
    assert_eq!(api["kind"], "APIVersions", "the API server answered the pod: {api}");
    assert_eq!(api["versions"][0], "v1");
    Ok(())
}

fn web_deployment(node: &NodeInfo) -> Deployment {
    let script = format!(
        "mkdir -p /www && echo \"$POD_NAME\" > /www/index.html && \
         cp {TOKEN_PATH}/token {TOKEN_PATH}/namespace /www/ && \
         exec httpd -f -p {WEB_PORT} -h /www"
    );
    serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{
                        "name": "web",
                        "image": node.test_image,
                        "imagePullPolicy": "Never",
                        "command": ["/bin/sh", "-c", script],
                        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                        "ports": [{"containerPort": WEB_PORT}],
                        "readinessProbe": {
                            "httpGet": {"path": "/index.html", "port": WEB_PORT},
                            "periodSeconds": 1,
                        },
                    }],
                },
            },
        },
    }))
    .expect("a valid Deployment")
}

fn client_pod(node: &NodeInfo, script: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": unique_name("client")},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "client",
                "image": node.test_image,
                "imagePullPolicy": "Never",
                "command": ["/bin/sh", "-c", script],
            }],
        },
    }))
    .expect("a valid Pod")
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .is_some_and(|conditions| conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits until the Deployment reports an available replica; returns its (Ready) pod.
async fn wait_for_available(deployments: &Api<Deployment>, pods: &Api<Pod>, name: &str) -> anyhow::Result<Pod> {
    let deadline = tokio::time::Instant::now() + POD_WAIT;
    loop {
        let deployment = deployments.get(name).await?;
        let available = deployment
            .status
            .as_ref()
            .and_then(|status| status.available_replicas)
            .unwrap_or(0);
        let selector = labels_selector(&deployment)?;
        let found = pods.list(&ListParams::default().labels(&selector)).await?.items;
        if available >= 1 {
            if let Some(pod) = found.into_iter().find(pod_ready) {
                return Ok(pod);
            }
        } else if tokio::time::Instant::now() >= deadline {
            bail!(
                "Deployment {name} has no available replica after {POD_WAIT:?}; status: {:?}; pods: {:?}",
                deployment.status,
                found
                    .iter()
                    .map(|pod| (pod.name_any(), pod.status.clone()))
                    .collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn labels_selector(deployment: &Deployment) -> anyhow::Result<String> {
    let labels: BTreeMap<String, String> = deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.selector.match_labels.clone())
        .context("Deployment without matchLabels")?;
    Ok(labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(","))
}

/// Creates the pod, waits until it has run to completion, and returns its log; fails when it
/// did not succeed.
async fn run_to_completion(pods: &Api<Pod>, pod: &Pod) -> anyhow::Result<String> {
    let name = pod.name_any();
    pods.create(&PostParams::default(), pod).await?;
    let deadline = tokio::time::Instant::now() + POD_WAIT;
    let phase = loop {
        let current = pods.get(&name).await?;
        let phase = current.status.as_ref().and_then(|status| status.phase.clone());
        match phase.as_deref() {
            Some("Succeeded" | "Failed") => break phase,
            _ if tokio::time::Instant::now() >= deadline => {
                bail!("pod {name} did not finish in {POD_WAIT:?}: {:?}", current.status)
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    };
    let log = pods.logs(&name, &LogParams::default()).await?;
    ensure!(
        phase.as_deref() == Some("Succeeded"),
        "pod {name} failed; its log:\n{log}"
    );
    Ok(log)
}

/// [`http_get`], retried while kube-proxy has not yet routed the Service to its new endpoint.
async fn http_get_once_routed(host: &str, port: u16, path: &str) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + ROUTE_WAIT;
    loop {
        match http_get(host, port, path).await {
            Ok(body) => return Ok(body),
            Err(err) if tokio::time::Instant::now() >= deadline => {
                return Err(err.context(format!("the Service was not routed within {ROUTE_WAIT:?}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// A plain HTTP/1.0 GET from the host; the body on status 200.
async fn http_get(host: &str, port: u16, path: &str) -> anyhow::Result<String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect((host, port))
            .await
            .with_context(|| format!("connecting to {host}:{port}"))?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        anyhow::Ok(String::from_utf8_lossy(&response).into_owned())
    };
    let response = tokio::time::timeout(HTTP_WAIT, exchange)
        .await
        .with_context(|| format!("GET http://{host}:{port}{path} timed out after {HTTP_WAIT:?}"))??;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("no HTTP response from http://{host}:{port}{path}: {response:?}"))?;
    ensure!(
        head.lines().next().is_some_and(|status| status.contains(" 200 ")),
        "GET http://{host}:{port}{path}: {head}"
    );
    Ok(body.to_string())
}
