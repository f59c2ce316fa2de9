//! `README.md` documents every setting, behaviour row and contract key.

use std::collections::BTreeSet;

use gastown_crds::contract::{
    CLAIM_REQUEST_ANNOTATION, CLAIM_REQUEST_VALUE, CLAIM_REQUESTED_BY_ANNOTATION, CLAIMED_AT_ANNOTATION,
    CLAIMED_BY_LABEL, DEFAULT_CLAIMER, DEFAULT_CONTROLLER_USER,
};

use crate::settings::accepted_settings_fields;
use crate::{OCI_URL, VERSION, fixture_cases, policy_dir, read};

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
