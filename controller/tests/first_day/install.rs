//! Steps 3 to 5: the team namespace, the README's install, and the policy as the admission
//! webhook.

use std::time::{Duration, Instant};

use gastown_tests::fixtures;
use gastown_tests::webhook::{PolicyWebhook, serve_in_namespace};
use serde_json::Value;

use crate::host::Host;
use crate::{Day, RELEASE, RELEASE_NS, SECRET};

/// A team namespace where alice may create Automatons, then the README's install: namespace,
/// the client-certificate Secret, `helm install`. Returns how long the install took.
pub(crate) async fn the_readme_install(day: &Day, host: &Host) -> Duration {
    let k = &day.k;
    let user_ns = day.user_ns.as_str();
    k.kubectl(&["create", "namespace", user_ns]);
    day.step("helm install");
    if k.kubectl(&["get", "namespace", RELEASE_NS, "--ignore-not-found", "-o", "name"])
        .trim()
        .is_empty()
    {
        k.kubectl(&["create", "namespace", RELEASE_NS]);
    }
    let from = |key: &str, file: &str| format!("--from-file={key}={}", day.work.join(file).display());
    k.kubectl(&[
        "-n",
        RELEASE_NS,
        "create",
        "secret",
        "generic",
        SECRET,
        &from("tls.crt", "client.crt"),
        &from("tls.key", "client.key"),
        &from("ca.crt", "ca.crt"),
    ]);
    let values = format!(
        "gastown:\n  proxy: {{url: \"{}\", existingSecret: {SECRET}}}\n  syncInterval: 2s\n\
         watchNamespaces: [{user_ns}]\n",
        host.url
    );
    std::fs::write(&day.values, values).unwrap();
    let install_started = Instant::now();
    k.helm_release("install", &day.values, &[], "180s");
    let install_time = install_started.elapsed();
    // (The CRD exists now: the chart installed it from crds/ unless it was there already.)
    k.kubectl(&[
        "-n",
        user_ns,
        "create",
        "role",
        "automaton-editor",
        "--verb=*",
        "--resource=automatons.olympus.io,automatons.olympus.io/status",
    ]);
    k.kubectl(&[
        "-n",
        user_ns,
        "create",
        "rolebinding",
        "automaton-editors",
        "--role=automaton-editor",
        "--user=alice",
    ]);
    install_time
}

/// The policy as the admission webhook, built from the chart's ClusterAdmissionPolicy (as
/// Kubewarden's policy-server would serve it), for the team namespace only.
pub(crate) async fn the_policy_as_webhook(day: &Day, host: &Host) -> PolicyWebhook {
    let policy = render_policy(
        &format!(
            "gastown:\n  proxy: {{url: \"{}\", existingSecret: {SECRET}}}\n\
             policy:\n  enabled: true\n  settings:\n    allowedUsers: [alice]\n    defaultRig: gastown\n",
            host.url
        ),
        &day.work.join("policy"),
    );
    let (webhook, _) = serve_in_namespace(&day.admin, &policy, &day.user_ns, "gastown-first-day")
        .await
        .unwrap();
    webhook
}

/// The chart's ClusterAdmissionPolicy as real Helm renders it.
fn render_policy(values: &str, out: &std::path::Path) -> Value {
    fixtures::render_chart(values, out, RELEASE, RELEASE_NS, &[])
        .unwrap()
        .into_iter()
        .find(|d| d["kind"] == "ClusterAdmissionPolicy")
        .expect("ClusterAdmissionPolicy rendered")
}
