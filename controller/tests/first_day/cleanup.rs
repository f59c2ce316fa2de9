//! Whatever the test leaves behind is removed, also when it fails half-way.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::{Kube, RELEASE, RELEASE_NS, kubectl_binary};

pub(crate) struct Cleanup {
    kubeconfig: PathBuf,
    helm: String,
    user_ns: String,
    webhook: String,
}

impl Cleanup {
    /// Cleans up after the release, the team namespace `user_ns` and the policy's
    /// MutatingWebhookConfiguration `webhook`.
    pub(crate) fn new(k: &Kube, user_ns: &str, webhook: &str) -> Cleanup {
        Cleanup {
            kubeconfig: k.kubeconfig.clone(),
            helm: k.helm.clone(),
            user_ns: user_ns.to_owned(),
            webhook: webhook.to_owned(),
        }
    }

    /// Runs a command, ignoring its output and outcome.
    fn quiet(&self, program: &str, args: &[&str]) {
        let _ = Command::new(program)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.quiet(
            &self.helm,
            &["uninstall", RELEASE, "-n", RELEASE_NS, "--wait", "--timeout", "60s"],
        );
        let kubectl = kubectl_binary();
        self.quiet(
            &kubectl,
            &[
                "delete",
                "mutatingwebhookconfiguration",
                &self.webhook,
                "--ignore-not-found",
            ],
        );
        // The release finalizer would keep the Automatons (and the namespace) forever once the
        // controller is gone: let them go, as an administrator would.
        let names = Command::new(&kubectl)
            .args(["get", "automatons", "-n", &self.user_ns, "-o", "name"])
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for name in names.lines() {
            self.quiet(
                &kubectl,
                &[
                    "patch",
                    name,
                    "-n",
                    &self.user_ns,
                    "--type=merge",
                    "-p",
                    r#"{"metadata":{"finalizers":null}}"#,
                ],
            );
        }
        self.quiet(
            &kubectl,
            &[
                "delete",
                "namespace",
                &self.user_ns,
                RELEASE_NS,
                "--ignore-not-found",
                "--wait=false",
            ],
        );
    }
}
