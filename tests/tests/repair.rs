//! Repair of one document against the real server (`/v1/repair`, Automerge's sync
//! protocol, read-only on the server), and a bootstrap in small pages.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use xiuhua_core::model::NewVisit;
use xiuhua_core::sync::{SyncOptions, repair_document};
use xiuhua_e2e::*;

fn visit(d: &mut Device, hh: &str, purpose: &str) {
    d.store
        .add_visit(
            hh,
            NewVisit {
                purpose: purpose.into(),
                note: String::new(),
                follow_up: None,
            },
        )
        .unwrap();
}

#[test]
fn repair_brings_a_documents_missing_changes_and_respects_buildings() {
    let server = Server::with_directory();
    let mut a = server.enroll("u-wang");
    let hh = a
        .store
        .create_household(household("g1", "1号楼", "101", "张三"))
        .unwrap();
    a.sync().unwrap();
    let mut b = server.enroll("u-wang");
    b.sync().unwrap();
    visit(&mut a, &hh, "走访一");
    visit(&mut a, &hh, "走访二");
    a.sync().unwrap();
    visit(&mut b, &hh, "离线走访");

    let mut t = server.transport();
    assert_eq!(repair_document(&mut b.store, &mut t, &hh).unwrap(), 2);
    assert_eq!(b.store.household(&hh).unwrap().visits.len(), 3);
    assert_eq!(b.store.outbox_len().unwrap(), 1, "only its own visit waits");
    assert_eq!(repair_document(&mut b.store, &mut t, &hh).unwrap(), 0);
    b.sync().unwrap();
    a.sync().unwrap();
    assert_eq!(
        a.store.projection_dump().unwrap(),
        b.store.projection_dump().unwrap()
    );
    assert_eq!(repair_document(&mut a.store, &mut t, &hh).unwrap(), 0);

    // A 楼门长 of another building may not repair it: the same 404 as an unknown document
    // (no existence oracle).
    let mut li = server.enroll("u-li");
    let e = repair_document(&mut li.store, &mut t, &hh).unwrap_err();
    assert!(
        e.to_string().contains("not_found") || format!("{e:?}").contains("404"),
        "{e:?}"
    );
    assert!(repair_document(&mut a.store, &mut t, "no-such-doc").is_err());
}

#[test]
fn a_grid_bootstraps_in_small_pages() {
    let server = Server::with_directory();
    let mut a = server.enroll("u-wang");
    for i in 0..7 {
        a.store
            .create_record(record("g1", Some("1号楼"), &format!("民情{i}")))
            .unwrap();
    }
    a.sync().unwrap();
    let mut b = server.enroll("u-wang");
    let mut t = server.transport();
    let r = b
        .sync_via(
            &mut t,
            SyncOptions {
                bootstrap_page: 3,
                ..SyncOptions::default()
            },
        )
        .unwrap();
    assert_eq!(r.bootstrapped_docs, 7, "{r:?}");
    assert_eq!(b.store.sync_cursor("g1").unwrap(), server.grid_seq("g1"));
    assert_eq!(
        a.store.projection_dump().unwrap(),
        b.store.projection_dump().unwrap()
    );
}
