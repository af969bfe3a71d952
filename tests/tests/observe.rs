//! After a sync, the screens are told which documents changed: a pull lists them (a
//! screen refreshes only if it shows one); a bootstrap says "everything".

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use xiuhua_core::DocKind;
use xiuhua_core::model::NewVisit;
use xiuhua_e2e::*;

#[test]
fn a_pull_lists_the_documents_it_changed_and_a_bootstrap_says_everything() {
    let server = Server::with_directory();
    let mut wang = server.enroll("u-wang");
    let mut zhao = server.enroll("u-zhao");
    let hh = wang
        .store
        .create_household(household("g1", "2号楼", "201", "刘芳"))
        .unwrap();
    let rec = wang
        .store
        .create_record(record("g1", Some("2号楼"), "楼道堆物"))
        .unwrap();
    let untouched = wang
        .store
        .create_household(household("g1", "1号楼", "101", "张三"))
        .unwrap();
    let r = wang.sync().unwrap();
    assert!(
        r.changed_docs.is_empty() && !r.changed_everything,
        "a push changes nothing here: {r:?}"
    );

    let r = zhao.sync().unwrap();
    assert!(
        r.changed_everything,
        "a bootstrap: refresh everything: {r:?}"
    );
    assert!(r.changed_docs.is_empty());

    wang.store
        .add_visit(
            &hh,
            NewVisit {
                purpose: "回访".into(),
                note: String::new(),
                follow_up: None,
            },
        )
        .unwrap();
    wang.store.set_record_place(&rec, "2号楼门口").unwrap();
    wang.sync().unwrap();
    let r = zhao.sync().unwrap();
    assert!(!r.changed_everything, "{r:?}");
    let listed: BTreeSet<(String, DocKind)> = r.changed_docs.iter().cloned().collect();
    assert_eq!(
        listed,
        BTreeSet::from([(hh, DocKind::Household), (rec, DocKind::Record)])
    );
    assert!(!r.changed_docs.iter().any(|(d, _)| *d == untouched));
    let r = zhao.sync().unwrap();
    assert!(
        r.changed_docs.is_empty() && !r.changed_everything,
        "nothing new: {r:?}"
    );
}
