//! Reading beads: found, missing, broken town; the lookup by external reference.

use super::*;

#[tokio::test]
async fn show_bead_found_not_found_and_broken() {
    let bd = r#"#!/bin/sh
case "$4" in
go-7xq) echo '[{"id":"go-7xq","status":"in_progress","assignee":"gastown/polecats/Toast","new_field":1}]' ;;
go-gone) echo "Error fetching go-gone: no issue found matching \"go-gone\"" >&2
         echo '{"error": "no issues found matching the provided IDs"}'; exit 1 ;;
*) echo "Error: failed to open database: .beads directory not found" >&2; exit 1 ;;
esac
"#;
    let (_town, client, recorder) = Town::started(OK_BD, bd);
    let bead = client.show_bead(&id("go-7xq")).await.unwrap().unwrap();
    assert_eq!(bead.status, BeadStatus::InProgress);
    assert_eq!(bead.assignee_rig(), Some("gastown"));
    assert_eq!(client.show_bead(&id("go-gone")).await.unwrap(), None);
    let err = client.show_bead(&id("go-other")).await.unwrap_err();
    assert_eq!(err.metric_label(), "exit");
    assert_eq!(recorder.seen(), vec!["bd show ok", "bd show ok", "bd show exit"]);
}

#[tokio::test]
async fn find_by_external_ref_skips_tombstones() {
    let bd = r#"#!/bin/sh
[ "$1 $2 $3" = "list --json --all" ] || exit 2
cat <<'EOF'
[{"id":"go-1","status":"tombstone","external_ref":"automaton:ns/a/u1","created_at":"2026-01-01T00:00:00Z"},
 {"id":"go-2","status":"closed","external_ref":"automaton:ns/a/u1","created_at":"2026-01-02T00:00:00Z"},
 {"id":"go-3","status":"open","external_ref":"automaton:ns/a/u2"}]
EOF
"#;
    let (_town, client, _) = Town::started(OK_BD, bd);
    let found = client.find_bead_by_external_ref(&reference()).await.unwrap().unwrap();
    assert_eq!(found.id, "go-2");
    let none = client
        .find_bead_by_external_ref(&ExternalRef::parse("automaton:ns/b/u9").unwrap())
        .await
        .unwrap();
    assert!(none.is_none());
}
