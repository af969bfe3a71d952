//! Three devices edit offline, sync through the real server, and converge.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use xiuhua_core::model::*;
use xiuhua_e2e::*;

fn visit(purpose: &str) -> NewVisit {
    NewVisit {
        purpose: purpose.into(),
        note: "老人身体尚可".into(),
        follow_up: None,
    }
}

/// The dump lines whose first column (document or household id) is one of `ids`.
fn dump_of(dump: &str, ids: &BTreeSet<String>) -> String {
    let keys: BTreeSet<String> = ids.iter().map(|i| format!("Text({i:?})")).collect();
    dump.lines()
        .filter(|l| l.split('|').nth(1).is_some_and(|k| keys.contains(k)))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn offline_edits_on_three_devices_converge() {
    let server = Server::with_directory();
    let mut wang = server.enroll("u-wang");
    let mut zhao = server.enroll("u-zhao");
    let mut li = server.enroll("u-li");

    // Morning at the station: the register as it stood.
    let hh1 = wang
        .store
        .create_household(household("g1", "3号楼", "101", "张秀英"))
        .unwrap();
    let hh2 = wang
        .store
        .create_household(household("g1", "2号楼", "201", "刘芳"))
        .unwrap();
    let r = wang.sync().unwrap();
    assert!(r.pushed > 0 && r.rejected.is_empty(), "{r:?}");
    let r = zhao.sync().unwrap();
    assert_eq!(r.bootstrapped_docs, 2, "{r:?}");
    let r = li.sync().unwrap();
    assert_eq!(r.bootstrapped_docs, 1, "the 楼门长 gets only 3号楼: {r:?}");
    assert_eq!(doc_ids(&li.store, "g1"), vec![hh1.clone()]);

    // The day, offline.
    let member = wang.store.household(&hh1).unwrap().members[0].id.clone();
    wang.store.add_visit(&hh1, visit("走访独居老人")).unwrap();
    wang.store.add_visit(&hh2, visit("入户走访")).unwrap();
    let rec_w = wang
        .store
        .create_record(record("g1", Some("2号楼"), "2号楼电梯异响"))
        .unwrap();
    let t1 = wang
        .store
        .create_task(task("g1", Some(&hh2), "代办老年证"))
        .unwrap();
    wang.store
        .task_action(
            &t1,
            TaskAction::Assign {
                assignee: "u-wang".into(),
            },
        )
        .unwrap();
    wang.store.task_action(&t1, TaskAction::Accept).unwrap();
    wang.store
        .set_member_phone(&hh1, &member, Some("13911112222"))
        .unwrap();

    let rec_l1 = li
        .store
        .create_record(record("g1", Some("3号楼"), "3号楼楼道堆放杂物"))
        .unwrap();
    let rec_l2 = li
        .store
        .create_record(record("g1", Some("3号楼"), "3号楼单元门禁损坏"))
        .unwrap();
    let t2 = li
        .store
        .create_task(task("g1", Some(&hh1), "代办医保报销"))
        .unwrap();
    li.store
        .set_member_phone(&hh1, &member, Some("13700001111"))
        .unwrap();

    let rec_z = zhao
        .store
        .create_record(record("g1", None, "社区广场路灯不亮"))
        .unwrap();
    let hh3 = zhao
        .store
        .create_household(household("g1", "3号楼", "102", "赵桂兰"))
        .unwrap();

    // Evening: everyone syncs, twice round.
    for _ in 0..2 {
        for d in [&mut wang, &mut zhao, &mut li] {
            let r = d.sync().unwrap();
            assert!(r.rejected.is_empty(), "{}: {r:?}", d.user);
        }
    }
    for d in [&wang, &zhao, &li] {
        let s = d.store.sync_status().unwrap();
        assert_eq!(s.pending_outbox, 0, "{}", d.user);
        assert_eq!(s.last_error, None, "{}", d.user);
        assert!(s.last_success_ms.is_some());
    }

    // Whole-grid devices hold the same projection.
    let all: BTreeSet<String> = [&hh1, &hh2, &hh3, &rec_w, &rec_l1, &rec_l2, &rec_z, &t1, &t2]
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(
        doc_ids(&wang.store, "g1")
            .into_iter()
            .collect::<BTreeSet<_>>(),
        all
    );
    let dump = wang.store.projection_dump().unwrap();
    assert_eq!(dump, zhao.store.projection_dump().unwrap());

    // The 楼门长 holds exactly his building's documents, with the same rows.
    let his: BTreeSet<String> = [&hh1, &hh3, &rec_l1, &rec_l2, &t2]
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(
        doc_ids(&li.store, "g1")
            .into_iter()
            .collect::<BTreeSet<_>>(),
        his
    );
    assert_eq!(li.store.projection_dump().unwrap(), dump_of(&dump, &his));

    // The concurrent phone edit is a visible conflict on every device, with both values.
    for d in [&mut wang, &mut zhao, &mut li] {
        let c = d.store.households_with_conflicts("g1").unwrap();
        assert_eq!(c.iter().map(|h| &h.id).collect::<Vec<_>>(), vec![&hh1]);
        let fields = d.store.conflicts(&hh1).unwrap();
        let phone = fields
            .iter()
            .find(|f| f.path.ends_with("phone"))
            .expect("a phone conflict");
        let values: BTreeSet<&str> = phone.values.iter().map(|v| v.value.as_str()).collect();
        assert!(
            values.iter().any(|v| v.contains("13911112222"))
                && values.iter().any(|v| v.contains("13700001111")),
            "{values:?}"
        );
    }
    // The visits and the task states arrived.
    let t = zhao.store.task(&t1).unwrap();
    assert_eq!(t.view.status, TaskStatus::InProgress);
    assert_eq!(zhao.store.household(&hh2).unwrap().visits.len(), 1);
    let t = wang.store.task(&t2).unwrap();
    assert_eq!(t.view.status, TaskStatus::Ordered);
    assert_eq!(t.view.ordered_by.as_deref(), Some("u-li"));
}
