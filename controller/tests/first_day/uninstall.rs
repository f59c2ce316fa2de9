//! Step 11: `helm uninstall`: what the chart rendered is gone; the CRD and the users'
//! Automatons stay (Helm never deletes what it installed from crds/), and the Automatons keep
//! the controller's release finalizer.

use gastown_crds::Automaton;
use gastown_tests::status::has_release_finalizer;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::ListParams;

use crate::{Day, RELEASE, RELEASE_NS, controller_pods, eventually};

/// Uninstalls the release and checks what is left: none of the chart's objects, the CRD, and
/// all `automatons` of alice's with their finalizer.
pub(crate) async fn helm_uninstall_keeps_the_crd_and_the_automatons(
    day: &Day,
    alice: &Api<Automaton>,
    automatons: usize,
) {
    day.k
        .helm(&["uninstall", RELEASE, "-n", RELEASE_NS, "--wait", "--timeout", "120s"]);
    let selector = format!("app.kubernetes.io/instance={RELEASE}");
    for (kind, namespaced) in [
        ("deployments", true),
        ("services", true),
        ("serviceaccounts", true),
        ("roles", true),
        ("rolebindings", true),
        ("clusterroles", false),
        ("clusterrolebindings", false),
    ] {
        let mut args = vec!["get", kind, "-l", &selector, "-o", "name"];
        if namespaced {
            args.push("--all-namespaces");
        }
        assert_eq!(day.k.kubectl(&args).trim(), "", "{kind} left after helm uninstall");
    }
    eventually("the controller pods to go", || async {
        let left = controller_pods(&day.pods).await.len();
        if left == 0 { Ok(()) } else { Err(format!("{left} pods")) }
    })
    .await;
    let crds: Api<CustomResourceDefinition> = Api::all(day.admin.clone());
    assert!(
        crds.get_opt("automatons.olympus.io").await.unwrap().is_some(),
        "the CRD stays"
    );
    let left = alice.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(left.len(), automatons, "every Automaton stays");
    assert!(
        left.iter().all(has_release_finalizer),
        "the release finalizer stays on Automatons once the controller is gone"
    );
}
