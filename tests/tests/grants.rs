//! Credentials and grants that survive (issue 9): against the real server binary, a lost
//! refresh reply does not lock a phone out, reusing a spent refresh token resets the
//! device, and grants changed at the station reach the phone at its next sync (new grid,
//! building added to a 楼门长, building taken away: its work set aside, not lost).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use xiuhua_core::Error;
use xiuhua_core::model::NewVisit;
use xiuhua_core::sync::proto::{RefreshRequest, TokenResponse};
use xiuhua_e2e::*;

fn visit(purpose: &str) -> NewVisit {
    NewVisit {
        purpose: purpose.into(),
        note: String::new(),
        follow_up: None,
    }
}

fn refresh_token(d: &Device) -> String {
    d.store.credentials().unwrap().unwrap().refresh_token
}

#[test]
fn a_lost_refresh_reply_does_not_lock_the_phone_out_and_reuse_resets_the_device() {
    // Access tokens of 30 s: every sync refreshes first (the margin is a minute).
    let server = Server::start_with(&[("XIUHUA_ACCESS_TTL_SECS", "30")]);
    server.seed_directory();
    let mut wang = server.enroll("u-wang");
    wang.store
        .create_household(household("g1", "1号楼", "101", "张三"))
        .unwrap();
    let first = refresh_token(&wang);
    // The phone's refresh reaches the server, which rotates; the reply is lost.
    let lost: Reply<TokenResponse> = call(
        &wang.url,
        "/v1/refresh",
        None,
        &RefreshRequest {
            refresh_token: first.clone(),
        },
    );
    lost.ok();
    // The phone still holds the first token: its next syncs work.
    let r = wang.sync().unwrap();
    assert_eq!(r.pushed, 1, "{r:?}");
    assert_eq!(r.refresh_refused, None);
    assert_ne!(refresh_token(&wang), first);
    wang.sync().unwrap();

    // The first token again, after its child was used: theft. Every token of the device is
    // revoked; the phone is told to enroll again, and keeps its data.
    let stolen: Reply<TokenResponse> = call(
        &wang.url,
        "/v1/refresh",
        None,
        &RefreshRequest {
            refresh_token: first,
        },
    );
    assert_eq!(stolen.refused(401).code, "reenroll");
    let e = wang.sync().unwrap_err();
    assert!(matches!(e, Error::Unauthorized(_)), "{e:?}");
    assert_eq!(wang.store.grid_doc_count("g1").unwrap(), 1);
}

#[test]
fn a_grid_granted_after_enrollment_arrives_at_the_next_sync() {
    let server = Server::with_directory();
    let mut seed = server.enroll("u-seed");
    let h2 = seed
        .store
        .create_household(household("g2", "1号楼", "101", "李四"))
        .unwrap();
    seed.sync().unwrap();

    let mut wang = server.enroll("u-wang");
    wang.sync().unwrap();
    assert_eq!(wang.store.grid_doc_count("g2").unwrap(), 0);

    server.admin(&["grant", "u-wang", "--grid", "g2", "--role", "网格员"]);
    let r = wang.sync().unwrap();
    assert_eq!(r.bootstrapped_docs, 1, "{r:?}");
    assert_eq!(doc_ids(&wang.store, "g2"), vec![h2]);
    assert!(wang.store.grants().unwrap().iter().any(|g| g.grid == "g2"));
}

#[test]
fn a_building_leaders_buildings_follow_the_directory() {
    let server = Server::with_directory();
    let mut seed = server.enroll("u-seed");
    let h3 = seed
        .store
        .create_household(household("g1", "3号楼", "301", "张三"))
        .unwrap();
    let h2 = seed
        .store
        .create_household(household("g1", "2号楼", "201", "李四"))
        .unwrap();
    seed.sync().unwrap();

    // 李强 is 楼门长 of 3号楼.
    let mut li = server.enroll("u-li");
    li.sync().unwrap();
    assert_eq!(doc_ids(&li.store, "g1"), vec![h3.clone()]);

    // 2号楼 is added: its household (edited before) arrives by a scope bootstrap.
    seed.store.add_visit(&h2, visit("走访")).unwrap();
    seed.sync().unwrap();
    server.admin(&[
        "grant",
        "u-li",
        "--grid",
        "g1",
        "--role",
        "楼门长",
        "--building",
        "3号楼",
        "--building",
        "2号楼",
    ]);
    let r = li.sync().unwrap();
    assert_eq!(r.bootstrapped_docs, 1, "{r:?}");
    let mut both = vec![h2.clone(), h3.clone()];
    both.sort();
    assert_eq!(doc_ids(&li.store, "g1"), both);
    // Later edits of it arrive by pull.
    seed.store.add_visit(&h2, visit("再访")).unwrap();
    seed.sync().unwrap();
    let r = li.sync().unwrap();
    assert_eq!(r.pulled, 1, "{r:?}");

    // 3号楼 is taken away while 李强 recorded a visit there offline: the household leaves
    // the phone, the visit is set aside (listed, never pushed, discarded on request).
    li.store.add_visit(&h3, visit("离线走访")).unwrap();
    let seq = server.grid_seq("g1");
    server.admin(&[
        "grant",
        "u-li",
        "--grid",
        "g1",
        "--role",
        "楼门长",
        "--building",
        "2号楼",
    ]);
    let r = li.sync().unwrap();
    assert_eq!((r.dropped_docs, r.set_aside), (1, 1), "{r:?}");
    assert_eq!(doc_ids(&li.store, "g1"), vec![h2]);
    assert_eq!(li.store.outbox_len().unwrap(), 0);
    let aside = li.store.set_aside().unwrap();
    assert_eq!(aside.len(), 1);
    assert_eq!(aside[0].doc, h3);
    assert_eq!(server.grid_seq("g1"), seq);
    // The next sync brings nothing of 3号楼 back.
    let r = li.sync().unwrap();
    assert_eq!((r.bootstrapped_docs, r.dropped_docs), (0, 0), "{r:?}");
    assert_eq!(li.store.discard_set_aside(&h3).unwrap(), 1);
}

#[test]
fn a_household_moved_to_another_building_leaves_the_old_leaders_phone_and_reaches_the_new() {
    let server = Server::with_directory();
    // 刘洋 is 楼门长 of 2号楼 (李强 is of 3号楼).
    server.admin(&["user", "add", "u-liu", "刘洋"]);
    server.admin(&[
        "grant",
        "u-liu",
        "--grid",
        "g1",
        "--role",
        "楼门长",
        "--building",
        "2号楼",
    ]);
    let mut wang = server.enroll("u-wang");
    let hh = wang
        .store
        .create_household(household("g1", "3号楼", "301", "张三"))
        .unwrap();
    let stay = wang
        .store
        .create_household(household("g1", "3号楼", "302", "李四"))
        .unwrap();
    // A record about the household (no building of its own: it follows the household), a
    // record filed in 3号楼 that names it (it stays in 3号楼), and a task for it.
    let mut follows = record("g1", None, "家中水管漏水");
    follows.household = Some(hh.clone());
    let follows = wang.store.create_record(follows).unwrap();
    let mut own = record("g1", Some("3号楼"), "3号楼门口堆物");
    own.household = Some(hh.clone());
    let own = wang.store.create_record(own).unwrap();
    let t = wang
        .store
        .create_task(task("g1", Some(&hh), "代办高龄补贴"))
        .unwrap();
    wang.sync().unwrap();

    let mut li = server.enroll("u-li");
    li.sync().unwrap();
    let mut all3 = vec![
        hh.clone(),
        stay.clone(),
        follows.clone(),
        own.clone(),
        t.clone(),
    ];
    all3.sort();
    assert_eq!(doc_ids(&li.store, "g1"), all3);
    let mut liu = server.enroll("u-liu");
    liu.sync().unwrap();
    assert!(doc_ids(&liu.store, "g1").is_empty());

    // 李强 records a visit offline; meanwhile 王伟 moves the household to 2号楼.
    li.store.add_visit(&hh, visit("离线走访")).unwrap();
    wang.store
        .move_household(&hh, "2号楼", "1单元", "201")
        .unwrap();
    wang.sync().unwrap();

    // 李强's next sync: the household, its record and its task leave the phone; the visit
    // (refused: the household is not 3号楼's any more) is set aside, not lost.
    let r = li.sync().unwrap();
    assert_eq!((r.dropped_docs, r.set_aside), (3, 1), "{r:?}");
    let mut left3 = vec![stay.clone(), own.clone()];
    left3.sort();
    assert_eq!(doc_ids(&li.store, "g1"), left3);
    assert_eq!(li.store.outbox_len().unwrap(), 0);
    let aside = li.store.set_aside().unwrap();
    assert_eq!(aside.len(), 1);
    assert_eq!((aside[0].doc.as_str(), aside[0].changes), (hh.as_str(), 1));
    assert!(li.store.sync_status().unwrap().refused_docs.is_empty());
    // Nothing of it comes back; later edits of it are not 李强's to see.
    wang.store.add_visit(&hh, visit("搬家后回访")).unwrap();
    wang.sync().unwrap();
    let r = li.sync().unwrap();
    assert_eq!(
        (r.pulled, r.bootstrapped_docs, r.dropped_docs),
        (0, 0, 0),
        "{r:?}"
    );
    assert_eq!(doc_ids(&li.store, "g1"), left3);

    // 刘洋's next sync: the household arrives whole (its history before the move was never
    // in 2号楼's feed), with the record and the task that follow it.
    let r = liu.sync().unwrap();
    assert_eq!(r.waiting_changes, 0, "{r:?}");
    let mut moved = vec![hh.clone(), follows.clone(), t.clone()];
    moved.sort();
    assert_eq!(doc_ids(&liu.store, "g1"), moved);
    let h = liu.store.household(&hh).unwrap();
    assert_eq!(h.address.building, "2号楼");
    assert_eq!(h.members[0].name, "张三");
    assert_eq!(h.visits.len(), 1, "the visit made after the move");
    assert_eq!(
        liu.store.task(&t).unwrap().task.household.as_deref(),
        Some(hh.as_str())
    );
    // And later edits arrive by pull.
    wang.store.add_visit(&hh, visit("三访")).unwrap();
    wang.sync().unwrap();
    let r = liu.sync().unwrap();
    assert_eq!(r.pulled, 1, "{r:?}");
    assert_eq!(liu.store.household(&hh).unwrap().visits.len(), 2);
}
