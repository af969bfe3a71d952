//! The authorization matrix: role × grid or building × read (pull, bootstrap), write (push)
//! and escalate. Every case outside the grants is refused and leaves nothing behind; every
//! case inside is allowed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use xiuhua_core::sync::proto::{EscalateRequest, EscalateResponse, PushResponse};
use xiuhua_e2e::*;

struct Seed {
    g1_b1: String,
    g1_b3: String,
    g1: BTreeSet<String>,
    g1_b3_docs: BTreeSet<String>,
    g2: BTreeSet<String>,
    g3: BTreeSet<String>,
    task_g1_b1: String,
    task_g1_b3: String,
    task_g2: String,
    task_g3: String,
}

/// The seed device (社区工作者 on every grid) puts documents in every grid and building.
fn seed(server: &Server) -> Seed {
    let mut s = server.enroll("u-seed");
    let st = &mut s.store;
    let g1_b1 = st
        .create_household(household("g1", "1号楼", "101", "张三"))
        .unwrap();
    let g1_b2 = st
        .create_household(household("g1", "2号楼", "201", "李四"))
        .unwrap();
    let g1_b3 = st
        .create_household(household("g1", "3号楼", "301", "王五"))
        .unwrap();
    let rec_b3 = st
        .create_record(record("g1", Some("3号楼"), "3号楼楼道灯坏"))
        .unwrap();
    let rec_b2 = st
        .create_record(record("g1", Some("2号楼"), "2号楼漏水"))
        .unwrap();
    let rec_none = st
        .create_record(record("g1", None, "广场路灯不亮"))
        .unwrap();
    let task_g1_b1 = st
        .create_task(task("g1", Some(&g1_b1), "代办老年证"))
        .unwrap();
    let task_g1_b3 = st
        .create_task(task("g1", Some(&g1_b3), "代办医保"))
        .unwrap();
    let g2_hh = st
        .create_household(household("g2", "1号楼", "101", "赵六"))
        .unwrap();
    let task_g2 = st
        .create_task(task("g2", Some(&g2_hh), "代办低保"))
        .unwrap();
    let g3_hh = st
        .create_household(household("g3", "1号楼", "101", "钱七"))
        .unwrap();
    let task_g3 = st
        .create_task(task("g3", Some(&g3_hh), "代办残疾证"))
        .unwrap();
    let r = s.sync().unwrap();
    assert!(r.rejected.is_empty(), "{r:?}");
    let set = |v: &[&String]| v.iter().map(|s| (*s).clone()).collect::<BTreeSet<_>>();
    Seed {
        g1: set(&[
            &g1_b1,
            &g1_b2,
            &g1_b3,
            &rec_b3,
            &rec_b2,
            &rec_none,
            &task_g1_b1,
            &task_g1_b3,
        ]),
        g1_b3_docs: set(&[&g1_b3, &rec_b3, &task_g1_b3]),
        g2: set(&[&g2_hh, &task_g2]),
        g3: set(&[&g3_hh, &task_g3]),
        g1_b1,
        g1_b3,
        task_g1_b1,
        task_g1_b3,
        task_g2,
        task_g3,
    }
}

#[test]
fn reads_follow_the_grants() {
    let server = Server::with_directory();
    let seed = seed(&server);
    let wang = server.enroll("u-wang");
    let li = server.enroll("u-li");
    let zhao = server.enroll("u-zhao");
    let chen = server.enroll("u-chen");
    // (device, grid, what it may read there: None = refused)
    let cases: Vec<(&Device, &str, Option<&BTreeSet<String>>)> = vec![
        (&wang, "g1", Some(&seed.g1)),
        (&wang, "g2", None),
        (&wang, "g3", None),
        (&li, "g1", Some(&seed.g1_b3_docs)),
        (&li, "g2", None),
        (&li, "g3", None),
        (&zhao, "g1", Some(&seed.g1)),
        (&zhao, "g2", Some(&seed.g2)),
        (&zhao, "g3", None),
        (&chen, "g1", Some(&seed.g1)),
        (&chen, "g2", Some(&seed.g2)),
        (&chen, "g3", None),
    ];
    for (d, grid, expected) in cases {
        let pulled = pull_docs(d, grid);
        let bundled = bootstrap_docs(d, grid);
        match expected {
            Some(docs) => {
                assert_eq!(pulled.as_ref().ok(), Some(docs), "{} pull {grid}", d.user);
                assert_eq!(
                    bundled.as_ref().ok(),
                    Some(docs),
                    "{} bootstrap {grid}",
                    d.user
                );
            }
            None => {
                for (what, r) in [("pull", pulled), ("bootstrap", bundled)] {
                    let (status, e) =
                        r.expect_err(&format!("{} {what} {grid} must be refused", d.user));
                    assert_eq!(
                        (status, e.code.as_str()),
                        (403, "forbidden"),
                        "{} {what} {grid}: {e:?}",
                        d.user
                    );
                    assert!(e.message.contains(grid), "{}", e.message);
                }
            }
        }
    }
    // Through the client: the 楼门长's device holds exactly his building.
    let mut li = li;
    li.sync().unwrap();
    assert_eq!(
        doc_ids(&li.store, "g1")
            .into_iter()
            .collect::<BTreeSet<_>>(),
        seed.g1_b3_docs
    );
    assert_eq!(bootstrap_docs(&zhao, "g3").unwrap_err().0, 403);
    assert_eq!(seed.g3.len(), 2);
}

#[test]
fn writes_follow_the_grants_and_refusals_store_nothing() {
    let server = Server::with_directory();
    let seed = seed(&server);
    let mut devices = [
        server.enroll("u-wang"),
        server.enroll("u-li"),
        server.enroll("u-zhao"),
        server.enroll("u-chen"),
    ];
    let watcher = server.enroll("u-seed");
    let (wang, li, zhao, chen) = (0, 1, 2, 3);

    // (device, grid, building (None: a record without one), allowed)
    let cases: Vec<(usize, &str, Option<&str>, bool)> = vec![
        (wang, "g1", Some("2号楼"), true),
        (wang, "g1", None, true),
        (wang, "g2", Some("1号楼"), false),
        (wang, "g3", Some("1号楼"), false),
        (li, "g1", Some("3号楼"), true),
        (li, "g1", Some("1号楼"), false),
        (li, "g1", None, false),
        (li, "g2", Some("1号楼"), false),
        (zhao, "g1", Some("1号楼"), true),
        (zhao, "g2", Some("1号楼"), true),
        (zhao, "g3", Some("1号楼"), false),
        (chen, "g1", None, true),
        (chen, "g2", Some("1号楼"), true),
        (chen, "g3", Some("1号楼"), false),
    ];
    let mut n = 0;
    for (i, grid, building, allowed) in cases {
        n += 1;
        let d = &mut devices[i];
        // A write the phone refuses itself (a 楼门长 outside their buildings, on a grid it
        // knows) is made by a modified app here: a store that skips the phone's check.
        let mut modified = xiuhua_core::Store::open_in_memory(d.store.actor().clone()).unwrap();
        let s = if allowed { &mut d.store } else { &mut modified };
        let id = match building {
            Some(b) => s
                .create_household(household(grid, b, &format!("9{n:02}"), "孙九"))
                .unwrap(),
            None => s
                .create_record(record(grid, None, "没有楼栋的民情"))
                .unwrap(),
        };
        let before = server.grid_seqs();
        let push = push_of(s, &id);
        let r: Reply<PushResponse> = d.call("/v1/push", &push);
        let case = format!("{} writes {grid}/{building:?}", d.user);
        if allowed {
            let ok = r.ok();
            assert!(ok.stored > 0, "{case}: {ok:?}");
            assert!(pull_docs(&watcher, grid).unwrap().contains(&id), "{case}");
            assert!(server.grid_seq(grid) > before[grid], "{case}");
        } else {
            let e = r.refused(403);
            assert_eq!(e.code, "forbidden", "{case}");
            assert!(
                e.message.contains("nothing was stored"),
                "{case}: {}",
                e.message
            );
            // The real app refuses the same write itself, with the server's words.
            if i == li && grid == "g1" {
                let phone = match building {
                    Some(b) => {
                        d.store
                            .create_household(household(grid, b, &format!("9{n:02}"), "孙九"))
                    }
                    None => d.store.create_record(record(grid, None, "没有楼栋的民情")),
                };
                match phone {
                    Err(xiuhua_core::Error::Refused(why)) => {
                        let tail = |m: &str| m.split_once(": ").map(|(_, t)| t.to_string());
                        assert_eq!(tail(&why), tail(&e.message), "{case}");
                    }
                    other => panic!("{case}: the phone did not refuse: {other:?}"),
                }
            }
            assert_eq!(server.grid_seqs(), before, "{case}: the feed moved");
            assert!(!pull_docs(&watcher, grid).unwrap().contains(&id), "{case}");
        }
        d.drop_outbox();
    }

    // Editing an existing document outside one's building is refused as well: the 楼门长
    // cannot touch a 1号楼 household even with its changes in hand.
    let mut watcher = watcher;
    watcher.sync().unwrap();
    let theirs: Vec<xiuhua_core::RemoteChange> = watcher
        .store
        .export_all()
        .unwrap()
        .into_iter()
        .filter(|c| c.doc == seed.g1_b1)
        .collect();
    let li_dev = &mut devices[li];
    li_dev.store.apply_remote(&theirs).unwrap();
    li_dev.drop_outbox();
    // The app refuses it on the phone; a modified app sends it anyway.
    assert!(matches!(
        li_dev
            .store
            .set_household_note(&seed.g1_b1, "楼门长改的备注"),
        Err(xiuhua_core::Error::Refused(_))
    ));
    let mut modified = xiuhua_core::Store::open_in_memory(li_dev.store.actor().clone()).unwrap();
    modified.apply_remote(&theirs).unwrap();
    modified
        .ack_outbox(
            &modified
                .outbox(1000)
                .unwrap()
                .iter()
                .map(|e| e.id)
                .collect::<Vec<_>>(),
        )
        .unwrap();
    modified
        .set_household_note(&seed.g1_b1, "楼门长改的备注")
        .unwrap();
    let before = server.grid_seqs();
    let r: Reply<PushResponse> = li_dev.call("/v1/push", &push_of(&modified, &seed.g1_b1));
    let e = r.refused(403);
    assert!(e.message.contains("1号楼"), "{}", e.message);
    assert_eq!(server.grid_seqs(), before);
    // …while his own building's household takes his edit.
    let theirs: Vec<xiuhua_core::RemoteChange> = watcher
        .store
        .export_all()
        .unwrap()
        .into_iter()
        .filter(|c| c.doc == seed.g1_b3)
        .collect();
    li_dev.store.apply_remote(&theirs).unwrap();
    li_dev
        .store
        .set_household_note(&seed.g1_b3, "楼门长改的备注")
        .unwrap();
    let r: Reply<PushResponse> = li_dev.call("/v1/push", &push_of(&li_dev.store, &seed.g1_b3));
    assert_eq!(r.ok().stored, 1);
}

fn escalate(d: &Device, task: &str, tier: &str, unit: Option<&str>) -> Reply<EscalateResponse> {
    d.call(
        "/v1/escalate",
        &EscalateRequest {
            task: task.into(),
            tier: tier.into(),
            unit: unit.map(str::to_string),
        },
    )
}

#[test]
fn escalation_follows_role_and_grid() {
    let server = Server::with_directory();
    let seed = seed(&server);
    let wang = server.enroll("u-wang");
    let li = server.enroll("u-li");
    let zhao = server.enroll("u-zhao");
    let chen = server.enroll("u-chen");

    // Refused first, so that the allowed ones below prove the tier did not move.
    // A task the caller may see but not move is 403; one outside the caller's grants is
    // the same 404 as an unknown task.
    let refused: Vec<(&Device, &str, &str, Option<&str>, u16)> = vec![
        (&li, &seed.task_g1_b3, "community", None, 403),
        (&li, &seed.task_g2, "community", None, 404),
        (&wang, &seed.task_g1_b1, "linked_unit", Some("物业"), 403),
        (&wang, &seed.task_g2, "community", None, 404),
        (&wang, &seed.task_g3, "community", None, 404),
        (&zhao, &seed.task_g3, "community", None, 404),
        (&chen, &seed.task_g3, "linked_unit", Some("执法"), 404),
    ];
    for (d, task, tier, unit, status) in refused {
        let e = escalate(d, task, tier, unit).refused(status);
        let code = if status == 403 {
            "forbidden"
        } else {
            "not_found"
        };
        assert_eq!(e.code, code, "{} → {tier}: {e:?}", d.user);
    }
    // Allowed.
    escalate(&wang, &seed.task_g1_b1, "community", None).ok();
    escalate(&zhao, &seed.task_g2, "community", None).ok();
    escalate(&zhao, &seed.task_g2, "linked_unit", Some("物业")).ok();
    escalate(&chen, &seed.task_g1_b3, "linked_unit", Some("建设")).ok();
    // Not up: a conflict.
    let e = escalate(&wang, &seed.task_g1_b1, "community", None).refused(409);
    assert_eq!(e.code, "conflict");
    // The grid member cannot go past the community.
    let e = escalate(&wang, &seed.task_g1_b1, "linked_unit", Some("物业")).refused(403);
    assert_eq!(e.code, "forbidden");
    // The seed grid 3 task stayed at grid tier: its own staff can still take it up.
    let seeder = server.enroll("u-seed");
    escalate(&seeder, &seed.task_g3, "community", None).ok();
}
