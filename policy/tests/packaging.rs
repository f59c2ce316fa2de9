//! Packaging checks: `metadata.yml`, `README.md`, `questions-ui.yml`, the ClusterAdmissionPolicy
//! in `manifests/` and the Artifact Hub files under `../artifacthub/` agree with each other, with
//! the crate version and with what the policy code accepts. kwctl is not available here, so
//! these files are written by hand; this test is what keeps them honest.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use gastown_crds::contract::{
    CLAIM_REQUEST_ANNOTATION, CLAIM_REQUEST_VALUE, CLAIM_REQUESTED_BY_ANNOTATION, CLAIMED_AT_ANNOTATION,
    CLAIMED_BY_LABEL, DEFAULT_CLAIMER, DEFAULT_CONTROLLER_USER,
};
use gastown_policy::ledger::{API_VERSION, KIND};
use serde_json::{Value, json};

/// The policy's name (`io.kubewarden.policy.title`, Artifact Hub package name).
const TITLE: &str = "gastown-claim";
/// Where the annotated module is pushed, without the tag.
const OCI_URL: &str = "ghcr.io/gastown-operator/policies/gastown-claim";
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn policy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn repo_root() -> PathBuf {
    policy_dir()
        .parent()
        .expect("the policy crate lives inside the workspace")
        .to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn parse_yaml(what: &str, text: &str) -> Value {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{what} is not valid YAML: {e}"))
}

fn yaml_file(path: &Path) -> Value {
    parse_yaml(&path.display().to_string(), &read(path))
}

fn metadata() -> Value {
    yaml_file(&policy_dir().join("metadata.yml"))
}

fn manifest() -> Value {
    yaml_file(&policy_dir().join("manifests/cluster-admission-policy.yaml"))
}

fn questions() -> Value {
    yaml_file(&policy_dir().join("questions-ui.yml"))
}

fn artifacthub_pkg() -> Value {
    yaml_file(&repo_root().join("artifacthub/artifacthub-pkg.yml"))
}

/// `$(POLICY_OCI)` as the Makefile defines it (`POLICY_OCI ?= ...:v$(POLICY_VERSION)`), with the
/// version the Makefile reads from metadata.yml: the reference `make push` pushes to.
fn makefile_policy_oci() -> String {
    let makefile = read(&repo_root().join("Makefile"));
    let definitions: Vec<&str> = makefile
        .lines()
        .filter_map(|line| line.strip_prefix("POLICY_OCI ?="))
        .map(str::trim)
        .collect();
    assert_eq!(definitions.len(), 1, "Makefile: one `POLICY_OCI ?=` line");
    let version = annotation(&metadata(), "io.kubewarden.policy.version");
    definitions[0].replace("$(POLICY_VERSION)", &version)
}

/// Every host capability policy-server knows, as `<namespace>/<operation>` (kubewarden-controller
/// crates/policy-evaluator/src/host_capabilities.rs, CAPABILITY_TREE): what metadata.yml
/// `hostCapabilities` may name, and what `kwctl annotate` looks for in a module.
const KNOWN_HOST_CAPABILITIES: &[&str] = &[
    "crypto/v1/is_certificate_trusted",
    "kubernetes/can_i",
    "kubernetes/get_resource",
    "kubernetes/list_resources_all",
    "kubernetes/list_resources_by_namespace",
    "net/v1/dns_lookup_host",
    "oci/v1/manifest_digest",
    "oci/v1/oci_manifest",
    "oci/v1/oci_manifest_config",
    "oci/v1/verify",
    "oci/v2/verify",
];

/// The host capabilities a module calls, found the way `kwctl annotate` finds them
/// (kubewarden-controller crates/kwctl/src/wasm_scanner.rs): a capability counts when both its
/// namespace and its operation string occur in the module, the operation not only as the start
/// of a longer operation (`v1/oci_manifest` inside `v1/oci_manifest_config`). kwctl scans the
/// data segments; this scans the whole module, which contains them.
fn host_capabilities_in_module(module: &[u8]) -> BTreeSet<String> {
    let find_all = |needle: &[u8]| -> Vec<usize> {
        module
            .windows(needle.len())
            .enumerate()
            .filter(|(_, window)| *window == needle)
            .map(|(at, _)| at)
            .collect()
    };
    let operations: Vec<(&str, &str)> = KNOWN_HOST_CAPABILITIES
        .iter()
        .map(|path| path.split_once('/').expect("namespace/operation"))
        .collect();
    operations
        .iter()
        .filter(|(namespace, operation)| {
            let longer: Vec<&str> = operations
                .iter()
                .map(|(_, other)| *other)
                .filter(|other| other != operation && other.starts_with(operation))
                .collect();
            !find_all(namespace.as_bytes()).is_empty()
                && find_all(operation.as_bytes())
                    .into_iter()
                    .any(|at| !longer.iter().any(|l| module[at..].starts_with(l.as_bytes())))
        })
        .map(|(namespace, operation)| format!("{namespace}/{operation}"))
        .collect()
}

/// The `wapc_guest::host_call("kubewarden", "<namespace>", "<operation>", ...)` calls in the
/// policy's source, as `<namespace>/<operation>`.
fn host_calls_in_source() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut dirs = vec![policy_dir().join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let source: String = read(&path).split_whitespace().collect();
            let calls = source.matches("host_call(").count();
            let literal: Vec<&str> = source.split("host_call(\"kubewarden\",\"").skip(1).collect();
            assert_eq!(
                literal.len(),
                calls,
                "{}: a host_call whose binding, namespace and operation are not string literals \
                 cannot be checked against metadata.yml",
                path.display()
            );
            for call in literal {
                // `kubernetes","list_resources_by_namespace",&msg)...`
                let parts: Vec<&str> = call.splitn(4, '"').collect();
                assert!(
                    parts.len() == 4 && parts[1] == ",",
                    "{}: cannot read host_call({call:.60}",
                    path.display()
                );
                found.insert(format!("{}/{}", parts[0], parts[2]));
            }
        }
    }
    found
}

fn declared_host_capabilities() -> BTreeSet<String> {
    let meta = metadata();
    let list = meta["hostCapabilities"]
        .as_array()
        .expect("metadata.yml: hostCapabilities must be a list");
    let declared: BTreeSet<String> = list
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("metadata.yml: hostCapabilities entry {v} is not a string"))
                .to_string()
        })
        .collect();
    assert_eq!(
        declared.len(),
        list.len(),
        "metadata.yml: hostCapabilities has duplicates"
    );
    declared
}

/// A metadata.yml annotation; kwctl requires every annotation to be a string.
fn annotation(meta: &Value, key: &str) -> String {
    meta["annotations"][key]
        .as_str()
        .unwrap_or_else(|| panic!("metadata.yml: annotation {key} is missing or not a string"))
        .to_string()
}

fn str_at<'v>(value: &'v Value, pointer: &str, file: &str) -> &'v str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{file}: {pointer} is missing or not a string"))
}

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

fn validate_settings(settings: &Value) -> Value {
    let out = gastown_policy::validate_settings_payload(settings.to_string().as_bytes());
    serde_json::from_slice(&out).expect("validate_settings answers JSON")
}

/// The settings fields the policy accepts, read from the policy itself: settings reject unknown
/// fields, and the rejection lists the accepted ones ("expected one of `a`, `b`, ...").
fn accepted_settings_fields() -> Vec<String> {
    let answer = validate_settings(&json!({"__not_a_setting__": 1}));
    assert_eq!(
        answer["valid"],
        json!(false),
        "unknown settings fields must be rejected: {answer}"
    );
    let message = answer["message"].as_str().unwrap_or_default();
    let (_, expected) = message
        .split_once("expected one of ")
        .unwrap_or_else(|| panic!("cannot read the accepted settings fields from {message:?}"));
    let fields: Vec<String> = expected.split('`').skip(1).step_by(2).map(str::to_string).collect();
    assert!(!fields.is_empty(), "no settings fields in {message:?}");
    fields
}

/// A valid value for every settings field; a new field needs an entry here (and in the README,
/// questions-ui.yml and, where useful, the manifest).
fn sample_settings() -> Value {
    json!({
        "claimer": DEFAULT_CLAIMER,
        "allowedUsers": ["alice"],
        "allowedGroups": ["gastown-claimers"],
        "controllerUsers": [DEFAULT_CONTROLLER_USER],
        "forgeRigs": {"web-forge": "webrig"},
        "defaultRig": "gastown",
        "maxActiveClaimsPerNamespace": 5
    })
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
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

fn fixture_cases() -> Vec<(String, Value)> {
    let dir = policy_dir().join("test_data/cases");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no fixtures in {}", dir.display());
    paths
        .into_iter()
        .map(|p| {
            let case = serde_json::from_str(&read(&p)).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_name().unwrap_or_default().to_string_lossy().to_string(), case)
        })
        .collect()
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
        json!([{"apiVersion": API_VERSION, "kind": KIND}]),
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
    assert_eq!(annotation(&meta, "io.artifacthub.resources"), KIND);
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
    assert_eq!(
        API_VERSION, "olympus.io/v1alpha1",
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

#[test]
fn manifest_matches_metadata() {
    let meta = metadata();
    let cap = manifest();
    let file = "manifests/cluster-admission-policy.yaml";
    assert_eq!(str_at(&cap, "/apiVersion", file), "policies.kubewarden.io/v1");
    assert_eq!(str_at(&cap, "/kind", file), "ClusterAdmissionPolicy");
    let spec = &cap["spec"];
    assert_eq!(
        spec["rules"], meta["rules"],
        "{file}: spec.rules must equal metadata.yml rules"
    );
    assert_eq!(
        spec["contextAwareResources"], meta["contextAwareResources"],
        "{file}: spec.contextAwareResources must equal metadata.yml contextAwareResources"
    );
    assert_eq!(spec["mutating"], json!(true), "{file}: spec.mutating");
    let module = str_at(&cap, "/spec/module", file);
    assert!(
        module.ends_with(&format!(":v{VERSION}")),
        "{file}: module {module} must be tagged v{VERSION}"
    );
    assert_eq!(
        module,
        format!(
            "registry://{}:v{VERSION}",
            annotation(&meta, "io.kubewarden.policy.ociUrl")
        ),
        "{file}: spec.module"
    );
    assert_eq!(spec["mode"], json!("protect"));
    assert_eq!(spec["failurePolicy"], json!("Fail"));
    assert_eq!(spec["backgroundAudit"], meta["backgroundAudit"]);
    let timeout = spec["timeoutSeconds"].as_u64().expect("spec.timeoutSeconds");
    assert!((2..=30).contains(&timeout), "timeoutSeconds {timeout} must be 2-30");
}

#[test]
fn manifest_settings_are_accepted_by_the_policy() {
    let settings = manifest()["spec"]["settings"].clone();
    let fields: BTreeSet<String> = accepted_settings_fields().into_iter().collect();
    let unknown: Vec<String> = keys(&settings).difference(&fields).cloned().collect();
    assert!(
        unknown.is_empty(),
        "manifest settings the policy does not know: {unknown:?}"
    );
    let answer = validate_settings(&settings);
    assert_eq!(
        answer["valid"],
        json!(true),
        "the manifest's settings are refused: {answer}"
    );
    assert!(
        strings(&settings["controllerUsers"]).contains(&DEFAULT_CONTROLLER_USER),
        "the manifest must let the chart's controller ServiceAccount release claims"
    );
}

#[test]
fn settings_fields_are_the_ones_the_policy_accepts() {
    let fields = accepted_settings_fields();
    let sample = sample_settings();
    assert_eq!(
        fields.iter().cloned().collect::<BTreeSet<_>>(),
        keys(&sample),
        "sample_settings() must set every field the policy accepts (and only those)"
    );
    let answer = validate_settings(&sample);
    assert_eq!(answer["valid"], json!(true), "all settings set: {answer}");
    // And each name really is a field: the same value under a misspelt name is refused.
    for field in &fields {
        let mut misspelt = sample.clone();
        let object = misspelt.as_object_mut().expect("object");
        let value = object.remove(field).expect("field in the sample");
        object.insert(format!("{field}X"), value);
        let answer = validate_settings(&misspelt);
        assert_eq!(answer["valid"], json!(false), "{field}X must be refused: {answer}");
    }
}

#[test]
fn readme_documents_every_setting_behaviour_row_and_contract_key() {
    let readme = read(&policy_dir().join("README.md"));
    for field in accepted_settings_fields() {
        assert!(
            readme.contains(&format!("`{field}`")),
            "README.md does not document the setting `{field}`"
        );
    }
    for key in [
        CLAIM_REQUEST_ANNOTATION,
        CLAIMED_BY_LABEL,
        CLAIMED_AT_ANNOTATION,
        CLAIM_REQUESTED_BY_ANNOTATION,
    ] {
        assert!(
            readme.contains(&format!("`{key}`")),
            "README.md does not document the claim key `{key}`"
        );
    }
    for default in [DEFAULT_CLAIMER, DEFAULT_CONTROLLER_USER] {
        assert!(
            readme.contains(default),
            "README.md does not give the default {default:?}"
        );
    }
    assert!(
        readme.contains(&format!("`{CLAIM_REQUEST_ANNOTATION}: {CLAIM_REQUEST_VALUE}`")),
        "README.md must show how to request a claim"
    );
    assert!(readme.contains("Module size:"), "README.md: module size line");
    assert!(
        readme.contains(&format!("{OCI_URL}:v{VERSION}")),
        "README.md names the module of this version"
    );

    let mut rows = BTreeSet::new();
    for (name, case) in fixture_cases() {
        let description = case["description"].as_str().unwrap_or_default();
        let row = description
            .strip_prefix("row ")
            .and_then(|rest| rest.split_once(':'))
            .and_then(|(n, _)| n.parse::<u32>().ok())
            .unwrap_or_else(|| panic!("{name}: description {description:?} does not start with \"row N:\""));
        rows.insert(row);
    }
    for row in rows {
        assert!(
            readme.contains(&format!("### Row {row}:")),
            "README.md has no section \"### Row {row}:\""
        );
    }
}

#[test]
fn questions_ui_asks_for_every_setting() {
    let questions = questions();
    let list = questions["questions"]
        .as_array()
        .expect("questions-ui.yml: questions list");
    let variables: BTreeSet<String> = list
        .iter()
        .map(|q| str_at(q, "/variable", "questions-ui.yml").to_string())
        .collect();
    assert_eq!(
        variables.len(),
        list.len(),
        "questions-ui.yml: a variable is asked twice"
    );
    let fields: BTreeSet<String> = accepted_settings_fields().into_iter().collect();
    assert_eq!(
        variables, fields,
        "questions-ui.yml variables must be exactly the policy's settings"
    );
    let defaults: serde_json::Map<String, Value> = list
        .iter()
        .map(|q| {
            (
                str_at(q, "/variable", "questions-ui.yml").to_string(),
                q["default"].clone(),
            )
        })
        .collect();
    let answer = validate_settings(&Value::Object(defaults));
    assert_eq!(
        answer["valid"],
        json!(true),
        "questions-ui.yml defaults must be valid settings: {answer}"
    );
}

#[test]
fn artifacthub_pkg_matches_metadata() {
    let meta = metadata();
    let pkg = artifacthub_pkg();
    let file = "artifacthub/artifacthub-pkg.yml";
    let version = annotation(&meta, "io.kubewarden.policy.version");
    let source = annotation(&meta, "io.kubewarden.policy.source");
    let oci = annotation(&meta, "io.kubewarden.policy.ociUrl");

    assert_eq!(
        str_at(&pkg, "/name", file),
        annotation(&meta, "io.kubewarden.policy.title")
    );
    assert_eq!(str_at(&pkg, "/version", file), version);
    assert_eq!(
        str_at(&pkg, "/displayName", file),
        annotation(&meta, "io.artifacthub.displayName")
    );
    assert_eq!(
        str_at(&pkg, "/description", file),
        annotation(&meta, "io.kubewarden.policy.description")
    );
    assert_eq!(
        str_at(&pkg, "/license", file),
        annotation(&meta, "io.kubewarden.policy.license")
    );
    assert_eq!(
        str_at(&pkg, "/homeURL", file),
        annotation(&meta, "io.kubewarden.policy.url")
    );
    let created = str_at(&pkg, "/createdAt", file);
    assert!(
        created.parse::<jiff::Timestamp>().is_ok(),
        "{file}: createdAt {created:?} is not RFC 3339"
    );

    let keywords: BTreeSet<&str> = strings(&pkg["keywords"]).into_iter().collect();
    let meta_keywords_csv = annotation(&meta, "io.artifacthub.keywords");
    let meta_keywords: BTreeSet<&str> = meta_keywords_csv.split(',').map(str::trim).collect();
    assert_eq!(
        keywords, meta_keywords,
        "{file}: keywords must be io.artifacthub.keywords"
    );

    assert_eq!(
        pkg["containersImages"],
        json!([{"name": "policy", "image": format!("{oci}:v{version}")}]),
        "{file}: containersImages"
    );
    // Links only to what the release publishes: the module `make push` pushes
    // (registry://$(POLICY_OCI)) and the repository ([workspace.package].repository). kwctl
    // would link a GitHub release asset `policy.wasm` that no release uploads (see the
    // Makefile's artifacthub target).
    let module = format!("registry://{}", makefile_policy_oci());
    assert_eq!(module, format!("registry://{oci}:v{version}"), "Makefile POLICY_OCI");
    assert_eq!(source, env!("CARGO_PKG_REPOSITORY"), "io.kubewarden.policy.source");
    assert_eq!(
        pkg["links"],
        json!([
            {"name": "policy", "url": module},
            {"name": "source", "url": env!("CARGO_PKG_REPOSITORY")}
        ]),
        "{file}: links"
    );
    let install = str_at(&pkg, "/install", file);
    for command in [
        format!("kwctl pull {oci}:v{version}"),
        format!("kwctl scaffold manifest --allow-context-aware -t ClusterAdmissionPolicy registry://{oci}:v{version}"),
    ] {
        assert!(install.contains(&command), "{file}: install must say `{command}`");
    }
    assert_eq!(pkg["provider"], json!({"name": "kubewarden"}));
    let recommendations = pkg["recommendations"].as_array().map(Vec::as_slice).unwrap_or_default();
    assert!(
        !recommendations.is_empty() && recommendations.iter().all(|r| r["url"].is_string()),
        "{file}: recommendations"
    );

    let author = annotation(&meta, "io.kubewarden.policy.author");
    if let Some((name, email)) = author.strip_suffix('>').and_then(|a| a.split_once(" <")) {
        assert_eq!(
            pkg["maintainers"],
            json!([{"name": name, "email": email}]),
            "{file}: maintainers from the author"
        );
    }

    let annotations = &pkg["annotations"];
    assert_eq!(
        annotations["kubewarden/mutation"],
        json!("true"),
        "{file}: kubewarden/mutation"
    );
    assert_eq!(
        str_at(annotations, "/kubewarden~1resources", file),
        annotation(&meta, "io.artifacthub.resources"),
        "{file}: kubewarden/resources"
    );
    let embedded = |key: &str| {
        parse_yaml(
            &format!("{file}: annotation {key}"),
            str_at(annotations, &format!("/{}", key.replace('/', "~1")), file),
        )
    };
    assert_eq!(embedded("kubewarden/rules"), meta["rules"], "{file}: kubewarden/rules");
    assert_eq!(
        embedded("kubewarden/contextAwareResources"),
        meta["contextAwareResources"],
        "{file}: kubewarden/contextAwareResources"
    );
    assert_eq!(
        embedded("kubewarden/questions-ui"),
        questions(),
        "{file}: kubewarden/questions-ui must be questions-ui.yml"
    );
}

#[test]
fn artifacthub_repo_has_id_and_owners() {
    let repo = yaml_file(&repo_root().join("artifacthub/artifacthub-repo.yml"));
    let file = "artifacthub/artifacthub-repo.yml";
    let id = str_at(&repo, "/repositoryID", file);
    let groups: Vec<usize> = id.split('-').map(str::len).collect();
    assert!(
        groups == [8, 4, 4, 4, 12] && id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()),
        "{file}: repositoryID {id:?} is not a UUID"
    );
    let owners = repo["owners"].as_array().expect("artifacthub-repo.yml: owners list");
    assert!(!owners.is_empty(), "{file}: at least one owner");
    for owner in owners {
        assert!(!str_at(owner, "/name", file).trim().is_empty(), "{file}: owner name");
        assert!(str_at(owner, "/email", file).contains('@'), "{file}: owner email");
    }
}

#[test]
fn metadata_declares_the_host_capabilities_the_policy_calls() {
    let declared = declared_host_capabilities();
    for capability in &declared {
        assert!(
            KNOWN_HOST_CAPABILITIES.contains(&capability.as_str()),
            "metadata.yml: hostCapabilities {capability:?} is not a host capability policy-server knows"
        );
    }
    let called = host_calls_in_source();
    assert_eq!(
        called,
        BTreeSet::from(["kubernetes/list_resources_by_namespace".to_string()]),
        "the host calls in policy/src (update this test and metadata.yml together)"
    );
    // kwctl annotate warns both ways: used but not declared, declared but not used.
    assert_eq!(
        declared, called,
        "metadata.yml hostCapabilities must be exactly the host calls the policy makes"
    );
    // The resource the call lists is the one contextAwareResources grants.
    assert_eq!(
        metadata()["contextAwareResources"],
        json!([{"apiVersion": API_VERSION, "kind": KIND}])
    );
}

#[test]
fn metadata_host_capabilities_match_the_compiled_module() {
    // The module `make annotate` embeds metadata.yml into; `make policy` builds it.
    let path = policy_dir().join("policy.wasm");
    let module = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; run `make policy` first", path.display()));
    assert!(module.starts_with(b"\0asm"), "{} is not a wasm module", path.display());
    assert_eq!(
        host_capabilities_in_module(&module),
        declared_host_capabilities(),
        "what `kwctl annotate` would find in {} against metadata.yml hostCapabilities",
        path.display()
    );
}

#[test]
fn host_capability_scan_works_like_kwctl() {
    let module = |strings: &[&str]| strings.join("\u{0}").into_bytes();
    assert!(host_capabilities_in_module(&module(&["hello", "world"])).is_empty());
    assert_eq!(
        host_capabilities_in_module(&module(&["kubewarden", "kubernetes", "list_resources_by_namespace"])),
        BTreeSet::from(["kubernetes/list_resources_by_namespace".to_string()])
    );
    // The operation without its namespace string is not a call.
    assert!(host_capabilities_in_module(&module(&["list_resources_by_namespace"])).is_empty());
    // v1/oci_manifest only inside v1/oci_manifest_config is not v1/oci_manifest.
    assert_eq!(
        host_capabilities_in_module(&module(&["oci", "v1/oci_manifest_config"])),
        BTreeSet::from(["oci/v1/oci_manifest_config".to_string()])
    );
    assert_eq!(
        host_capabilities_in_module(&module(&["oci", "v1/oci_manifest_config", "v1/oci_manifest"])).len(),
        2
    );
}

#[test]
fn deployment_docs_name_what_the_context_aware_policy_needs() {
    let scaffold = "kwctl scaffold manifest --allow-context-aware -t ClusterAdmissionPolicy";
    let manifest_text = read(&policy_dir().join("manifests/cluster-admission-policy.yaml"));
    let readme = read(&policy_dir().join("README.md"));
    for (file, text) in [
        ("manifests/cluster-admission-policy.yaml", &manifest_text),
        ("README.md", &readme),
    ] {
        let flat: String = text
            .lines()
            .map(|l| l.trim_start_matches('#').trim())
            .collect::<Vec<_>>()
            .join(" ")
            .replace("\\ ", "");
        assert!(flat.contains(scaffold), "{file} must say `{scaffold}`");
        assert!(
            !flat.contains("kwctl scaffold manifest -t"),
            "{file}: `kwctl scaffold manifest` without --allow-context-aware drops contextAwareResources"
        );
        assert!(
            flat.contains("policyServerRbac"),
            "{file} must name the chart's PolicyServer RBAC"
        );
    }
    for needle in [
        "hostCapabilities",
        "kubernetes/list_resources_by_namespace",
        "namespacedPoliciesCapabilities",
        "AdmissionPolicy",
        "`list` and `watch`",
    ] {
        assert!(readme.contains(needle), "README.md must explain {needle}");
    }
}

#[test]
fn artifacthub_shows_the_policy_readme() {
    // Artifact Hub takes the package README from artifacthub-pkg.yml `readme` or, when that is
    // empty, from a regular file README.md next to it (a symlink is refused): artifacthub/hub
    // internal/tracker/source/generic/generic.go PreparePackage, internal/util/file.go.
    let pkg = artifacthub_pkg();
    assert!(
        pkg.get("readme").is_none(),
        "artifacthub-pkg.yml: no `readme`, so that Artifact Hub shows artifacthub/README.md"
    );
    let copy = repo_root().join("artifacthub/README.md");
    let kind = std::fs::symlink_metadata(&copy)
        .unwrap_or_else(|e| panic!("{}: {e}; run `make artifacthub-readme`", copy.display()))
        .file_type();
    assert!(
        kind.is_file(),
        "{} must be a regular file, not a symlink",
        copy.display()
    );
    assert!(
        read(&copy) == read(&policy_dir().join("README.md")),
        "artifacthub/README.md must be policy/README.md (the README `kwctl annotate -u` embeds): \
         run `make artifacthub-readme`"
    );
}

#[test]
fn artifacthub_pkg_uses_only_fields_artifact_hub_reads() {
    // Artifact Hub parses artifacthub-pkg.yml strictly (yaml.UnmarshalStrict in artifacthub/hub
    // internal/pkg/metadata.go): an unknown field fails the whole package. The fields of
    // artifacthub/hub docs/metadata/artifacthub-pkg.yml:
    let known: BTreeSet<&str> = [
        "version",
        "name",
        "alternativeName",
        "category",
        "displayName",
        "createdAt",
        "description",
        "logoPath",
        "logoURL",
        "digest",
        "license",
        "homeURL",
        "appVersion",
        "containersImages",
        "containsSecurityUpdates",
        "operator",
        "deprecated",
        "prerelease",
        "keywords",
        "links",
        "readme",
        "install",
        "changes",
        "maintainers",
        "provider",
        "ignore",
        "recommendations",
        "screenshots",
        "annotations",
    ]
    .into_iter()
    .collect();
    let pkg = artifacthub_pkg();
    let unknown: Vec<String> = keys(&pkg).into_iter().filter(|k| !known.contains(k.as_str())).collect();
    assert!(
        unknown.is_empty(),
        "artifacthub-pkg.yml: fields Artifact Hub rejects: {unknown:?}"
    );
    for link in pkg["links"].as_array().expect("links") {
        assert_eq!(keys(link), BTreeSet::from(["name".to_string(), "url".to_string()]));
    }
}
