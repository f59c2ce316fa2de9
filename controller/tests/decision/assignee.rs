//! `assignee_in_rig()`.

use gastown_controller::decision::assignee_in_rig;

#[test]
fn assignee_in_rig_table() {
    let cases: [(Option<&str>, &str, bool); 10] = [
        (Some("gastown/polecats/Toast"), "gastown", true),
        (Some("gastown/Toast"), "gastown", true),
        (Some("gastown"), "gastown", true),
        (Some("other/polecats/X"), "gastown", false),
        (None, "gastown", false),
        (Some(""), "gastown", false),
        (Some("gastown2/polecats/X"), "gastown", false),
        (Some("gas/polecats/X"), "gastown", false),
        (Some("Gastown/polecats/X"), "gastown", false),
        (Some("/gastown/polecats/X"), "gastown", false),
    ];
    for (assignee, rig, want) in cases {
        assert_eq!(assignee_in_rig(assignee, rig), want, "{assignee:?} in {rig:?}");
    }
}
