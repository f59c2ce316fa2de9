//! `metadata.yml`: version, annotations, admission rules.

use gastown_crds::Automaton;
use kube::Resource;
use serde_json::{Value, json};

use crate::{OCI_URL, TITLE, VERSION, annotation, fixture_cases, metadata, policy_dir, read, strings};

/// Semantic Versioning 2.0.0: MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD].
fn is_semver(version: &str) -> bool {
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    let identifier = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let (rest, build) = match version.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (version, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };
    let core: Vec<&str> = core.split('.').collect();
    core.len() == 3
        && core.iter().all(|part| numeric(part))
        && pre.is_none_or(|pre| {
            pre.split('.')
                .all(|id| identifier(id) && (!id.bytes().all(|b| b.is_ascii_digit()) || numeric(id)))
        })
        && build.is_none_or(|build| build.split('.').all(identifier))
}

/// Whether admission `rules` send (group, version, resource[/subresource], operation) to the policy.
fn rules_route(rules: &Value, group: &str, version: &str, resource: &str, operation: &str) -> bool {
    rules.as_array().into_iter().flatten().any(|rule| {
        let has = |field: &str, value: &str| strings(&rule[field]).iter().any(|v| *v == value || *v == "*");
        has("apiGroups", group)
            && has("apiVersions", version)
            && has("resources", resource)
            && has("operations", operation)
    })
}

#[test]
fn semver_check_works() {
    for good in [
        "0.1.0",
        "1.2.3",
        "10.20.30",
        "1.0.0-rc.1",
        "1.0.0-alpha-1.0",
        "1.0.0+build.5",
        "1.0.0-0.3.7+x",
    ] {
        assert!(is_semver(good), "{good} is semver");
    }
    for bad in [
        "0.1",
        "v0.1.0",
        "01.1.0",
        "1.2.3.4",
        "1.0.0-",
        "1.0.0-01",
        "1.0.0+",
        "1.0.0-a..b",
        "0.1.0-unreleased!",
    ] {
        assert!(!is_semver(bad), "{bad} is not semver");
    }
}

#[test]
fn metadata_version_is_semver_and_the_crate_version() {
    let meta = metadata();
    let version = annotation(&meta, "io.kubewarden.policy.version");
    assert!(
        is_semver(&version),
        "io.kubewarden.policy.version {version:?} is not semver"
    );
    assert_eq!(
        version, VERSION,
        "io.kubewarden.policy.version must equal the crate version ([workspace.package].version in Cargo.toml)"
    );
    // The Makefile reads the version with `sed -n 's/^ *io.kubewarden.policy.version: *//p' | tr -d '"'`
    // to tag the pushed module; the line must survive that.
    let text = read(&policy_dir().join("metadata.yml"));
    let extracted: Vec<String> = text
        .lines()
        .filter_map(|line| {
            line.trim_start_matches(' ')
                .strip_prefix("io.kubewarden.policy.version:")
        })
        .map(|rest| rest.trim_start_matches(' ').replace('"', ""))
        .collect();
    assert_eq!(
        extracted,
        vec![VERSION.to_string()],
        "the version line as the Makefile reads it"
    );
}

#[test]
fn metadata_declares_a_mutating_context_aware_wapc_policy() {
    let meta = metadata();
    assert_eq!(meta["mutating"], json!(true), "the policy returns mutated objects");
    assert_eq!(meta["executionMode"], json!("kubewarden-wapc"));
    assert_eq!(
        meta["backgroundAudit"],
        json!(false),
        "audit replays cannot evaluate a claim policy"
    );
    assert_eq!(
        meta["contextAwareResources"],
        json!([{"apiVersion": Automaton::api_version(&()), "kind": Automaton::kind(&())}]),
        "metadata.yml must declare exactly what the ledger lists"
    );

    let annotations = meta["annotations"].as_object().expect("metadata.yml: annotations map");
    for (key, value) in annotations {
        assert!(
            value.is_string(),
            "metadata.yml: annotation {key} must be a string, got {value}"
        );
    }
    for key in [
        "io.kubewarden.policy.title",
        "io.kubewarden.policy.version",
        "io.kubewarden.policy.description",
        "io.kubewarden.policy.author",
        "io.kubewarden.policy.url",
        "io.kubewarden.policy.source",
        "io.kubewarden.policy.license",
        "io.kubewarden.policy.severity",
        "io.kubewarden.policy.category",
        "io.kubewarden.policy.ociUrl",
        "io.kubewarden.policy.usage",
        "io.artifacthub.displayName",
        "io.artifacthub.resources",
        "io.artifacthub.keywords",
    ] {
        assert!(
            !annotation(&meta, key).trim().is_empty(),
            "metadata.yml: annotation {key} is empty"
        );
    }
    assert_eq!(annotation(&meta, "io.kubewarden.policy.title"), TITLE);
    assert_eq!(annotation(&meta, "io.kubewarden.policy.ociUrl"), OCI_URL);
    assert_eq!(
        annotation(&meta, "io.kubewarden.policy.license"),
        env!("CARGO_PKG_LICENSE")
    );
    assert_eq!(
        annotation(&meta, "io.kubewarden.policy.url"),
        env!("CARGO_PKG_REPOSITORY")
    );
    assert_eq!(
        annotation(&meta, "io.kubewarden.policy.source"),
        env!("CARGO_PKG_REPOSITORY")
    );
    assert_eq!(annotation(&meta, "io.artifacthub.resources"), Automaton::kind(&()));
    let severity = annotation(&meta, "io.kubewarden.policy.severity");
    assert!(
        ["info", "low", "medium", "high", "critical"].contains(&severity.as_str()),
        "severity {severity:?}"
    );
    assert!(
        annotation(&meta, "io.kubewarden.policy.usage").trim().lines().count() > 1,
        "usage is multi-line"
    );
    // kwctl scaffold artifacthub reads the author as "name <email>".
    let author = annotation(&meta, "io.kubewarden.policy.author");
    assert!(
        author.contains(" <") && author.ends_with('>') && author.contains('@'),
        "author {author:?} must be \"name <email>\""
    );
    for keyword in annotation(&meta, "io.artifacthub.keywords").split(',') {
        assert!(!keyword.trim().is_empty(), "io.artifacthub.keywords has an empty entry");
    }
}

#[test]
fn metadata_rules_route_every_request_the_policy_acts_on() {
    let rules = metadata()["rules"].clone();
    let expected = json!([
        {"apiGroups": ["olympus.io"], "apiVersions": ["v1alpha1"], "resources": ["automatons"], "operations": ["CREATE", "UPDATE"]},
        {"apiGroups": ["olympus.io"], "apiVersions": ["v1alpha1"], "resources": ["automatons/status"], "operations": ["UPDATE"]}
    ]);
    assert_eq!(rules, expected, "metadata.yml rules");
    assert!(
        rules_route(&rules, "olympus.io", "v1alpha1", "automatons/status", "UPDATE"),
        "the rules must cover automatons/status UPDATE (only the controller writes a claimed status)"
    );
    // The wire names spelled above on purpose: they must be the CRD's, which the ledger lists.
    assert_eq!(
        Automaton::api_version(&()),
        "olympus.io/v1alpha1",
        "the rules' group and version follow the ledger's"
    );

    // Every fixture in which the policy rejects or mutates must reach it through these rules.
    let mut unrouted = Vec::new();
    for (name, case) in fixture_cases() {
        let request = &case["request"];
        let acts = case["expect"]["accepted"] == json!(false) || !case["expect"]["mutatedObject"].is_null();
        let (Some(group), Some(version), Some(resource), Some(operation)) = (
            request.pointer("/resource/group").and_then(Value::as_str),
            request.pointer("/resource/version").and_then(Value::as_str),
            request.pointer("/resource/resource").and_then(Value::as_str),
            request["operation"].as_str(),
        ) else {
            continue;
        };
        if !acts || group != "olympus.io" || resource != "automatons" {
            continue;
        }
        let path = match request["subResource"].as_str() {
            Some(sub) if !sub.is_empty() => format!("{resource}/{sub}"),
            _ => resource.to_string(),
        };
        if !rules_route(&rules, group, version, &path, operation) {
            unrouted.push(format!("{name}: {operation} {group}/{version} {path}"));
        }
    }
    assert!(
        unrouted.is_empty(),
        "requests the policy acts on that the rules do not route:\n{}",
        unrouted.join("\n")
    );
}
