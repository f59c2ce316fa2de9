#[test]
fn dump() {
    for s in [r#"{"allowedUsers":"alice"}"#, r#"{"allowedUsers":[" "]}"#, r#"{"controllerUsers":[]}"#, r#"{"forgeRigs":{"Web Forge":"webrig"}}"#, r#"{"forgeRigs":{"web-forge":"web.rig"}}"#, r#"{"defaultRig":"hq"}"#, r#"{"defaultRig":""}"#, r#"{"claimer":"Gas_Town"}"#, r#"{"maxActiveClaimsPerNamespace":0}"#, r#"{}"#, "null"] {
        println!("{s} => {}", String::from_utf8_lossy(&gastown_policy::validate_settings_payload(s.as_bytes())));
    }
}
