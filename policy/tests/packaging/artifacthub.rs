//! The Artifact Hub files under `../artifacthub/`.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::{
    annotation, keys, metadata, parse_yaml, policy_dir, questions, read, repo_root, str_at, strings, yaml_file,
};

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

#[test]
fn artifacthub_pkg_matches_metadata() {
    let meta = metadata();
    let pkg = artifacthub_pkg();
    pkg_describes_the_policy(&meta, &pkg);
    pkg_links_what_the_release_publishes(&meta, &pkg);
    pkg_annotations_are_metadata(&meta, &pkg);
}

const PKG_FILE: &str = "artifacthub/artifacthub-pkg.yml";

/// Name, version, descriptions, license, keywords: the metadata.yml annotations.
fn pkg_describes_the_policy(meta: &Value, pkg: &Value) {
    let file = PKG_FILE;
    for (field, key) in [
        ("/name", "io.kubewarden.policy.title"),
        ("/version", "io.kubewarden.policy.version"),
        ("/displayName", "io.artifacthub.displayName"),
        ("/description", "io.kubewarden.policy.description"),
        ("/license", "io.kubewarden.policy.license"),
        ("/homeURL", "io.kubewarden.policy.url"),
    ] {
        assert_eq!(
            str_at(pkg, field, file),
            annotation(meta, key),
            "{file}: {field} is {key}"
        );
    }
    let created = str_at(pkg, "/createdAt", file);
    assert!(
        created.parse::<jiff::Timestamp>().is_ok(),
        "{file}: createdAt {created:?} is not RFC 3339"
    );

    let keywords: BTreeSet<&str> = strings(&pkg["keywords"]).into_iter().collect();
    let meta_keywords_csv = annotation(meta, "io.artifacthub.keywords");
    let meta_keywords: BTreeSet<&str> = meta_keywords_csv.split(',').map(str::trim).collect();
    assert_eq!(
        keywords, meta_keywords,
        "{file}: keywords must be io.artifacthub.keywords"
    );
}

/// The module `make push` pushes, the repository, install commands and maintainers.
fn pkg_links_what_the_release_publishes(meta: &Value, pkg: &Value) {
    let file = PKG_FILE;
    let version = annotation(meta, "io.kubewarden.policy.version");
    let source = annotation(meta, "io.kubewarden.policy.source");
    let oci = annotation(meta, "io.kubewarden.policy.ociUrl");
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
    let install = str_at(pkg, "/install", file);
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

    let author = annotation(meta, "io.kubewarden.policy.author");
    if let Some((name, email)) = author.strip_suffix('>').and_then(|a| a.split_once(" <")) {
        assert_eq!(
            pkg["maintainers"],
            json!([{"name": name, "email": email}]),
            "{file}: maintainers from the author"
        );
    }
}

/// The `kubewarden/*` annotations embed metadata.yml's rules, resources and questions.
fn pkg_annotations_are_metadata(meta: &Value, pkg: &Value) {
    let file = PKG_FILE;
    let annotations = &pkg["annotations"];
    assert_eq!(
        annotations["kubewarden/mutation"],
        json!("true"),
        "{file}: kubewarden/mutation"
    );
    assert_eq!(
        str_at(annotations, "/kubewarden~1resources", file),
        annotation(meta, "io.artifacthub.resources"),
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
