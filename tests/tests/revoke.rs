//! Revocation: a revoked device and a revoked grant are purged at the next sync.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use xiuhua_core::Error;
use xiuhua_e2e::*;

#[test]
fn a_revoked_device_purges_everything_at_its_next_sync() {
    let server = Server::with_directory();
    let mut wang = server.enroll("u-wang");
    let mut other = server.enroll("u-wang");
    let hh = wang
        .store
        .create_household(household("g1", "1号楼", "101", "张三"))
        .unwrap();
    wang.sync().unwrap();
    other.sync().unwrap();
    assert_eq!(doc_ids(&wang.store, "g1"), vec![hh.clone()]);
    // An edit made offline before the revocation is discarded with the rest.
    wang.store
        .create_record(record("g1", Some("1号楼"), "楼道灯坏"))
        .unwrap();

    let listed = server.admin(&["devices", "--user", "u-wang"]);
    assert!(listed.contains(&wang.id), "{listed}");
    server.admin(&["revoke-device", &wang.id]);

    let e = wang.sync().unwrap_err();
    assert!(matches!(e, Error::Revoked(_)), "{e:?}");
    assert!(doc_ids(&wang.store, "g1").is_empty());
    assert_eq!(wang.store.grid_doc_count("g1").unwrap(), 0);
    assert_eq!(wang.store.outbox_len().unwrap(), 0);
    assert_eq!(wang.store.sync_cursor("g1").unwrap(), 0);
    let st = wang.store.sync_status().unwrap();
    assert!(st.last_error.is_some());
    // The record never reached the server; the user's other device is untouched.
    assert_eq!(server.grid_seq("g1"), 1);
    other.sync().unwrap();
    assert_eq!(doc_ids(&other.store, "g1"), vec![hh]);
    assert!(
        server
            .admin(&["devices", "--user", "u-wang"])
            .lines()
            .any(|l| l.starts_with(&wang.id) && l.ends_with("revoked"))
    );
}

#[test]
fn a_revoked_grant_purges_that_grid_only() {
    let server = Server::with_directory();
    let mut seed = server.enroll("u-seed");
    let h1 = seed
        .store
        .create_household(household("g1", "1号楼", "101", "张三"))
        .unwrap();
    let h2 = seed
        .store
        .create_household(household("g2", "1号楼", "101", "李四"))
        .unwrap();
    seed.sync().unwrap();

    let mut zhao = server.enroll("u-zhao");
    let r = zhao.sync().unwrap();
    assert_eq!(r.bootstrapped_docs, 2);
    assert_eq!(doc_ids(&zhao.store, "g2"), vec![h2.clone()]);
    // Work in g2 not yet pushed leaves the outbox with the grant, but is set aside on the
    // phone, not lost (only a revoked device wipes).
    zhao.store
        .create_record(record("g2", Some("1号楼"), "电梯停运"))
        .unwrap();

    server.admin(&["revoke-grant", "u-zhao", "--grid", "g2"]);
    let r = zhao.sync().unwrap();
    assert_eq!(r.purged_grids, vec!["g2".to_string()], "{r:?}");
    assert!(doc_ids(&zhao.store, "g2").is_empty());
    assert_eq!(zhao.store.grid_doc_count("g2").unwrap(), 0);
    assert_eq!(doc_ids(&zhao.store, "g1"), vec![h1]);
    assert!(zhao.store.grants().unwrap().iter().all(|g| g.grid != "g2"));
    assert!(!zhao.store.sync_grids().unwrap().contains(&"g2".to_string()));
    assert_eq!(zhao.store.outbox_len().unwrap(), 0);
    assert_eq!(zhao.store.set_aside().unwrap().len(), 1);
    assert_eq!(zhao.store.sync_status().unwrap().set_aside_changes, 1);
    // Nothing of g2 comes back at the following sync, and the feed of g2 is as it was.
    assert_eq!(server.grid_seq("g2"), 1);
    // The server names g2 in `purge_grids` again at later syncs (`device_grids` keeps it);
    // the device, holding nothing of g2 any more, does not report a purge again.
    let r = zhao.sync().unwrap();
    assert_eq!((r.pulled, r.bootstrapped_docs), (0, 0), "{r:?}");
    assert!(r.purged_grids.is_empty(), "{r:?}");
    assert!(doc_ids(&zhao.store, "g2").is_empty());
    // Reading it directly is refused with `purge`.
    let (status, e) = pull_docs(&zhao, "g2").unwrap_err();
    assert_eq!((status, e.code.as_str()), (403, "purge"));
}
