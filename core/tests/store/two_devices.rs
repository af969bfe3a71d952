//! Two phones that start from the same data, then work offline and meet again.

use xiuhua_core::workflow::Outcome;
use xiuhua_core::{EventKind, Store, Tag, TaskAction, TaskStatus};

use crate::common::*;

/// The phone field of `member` that holds concurrent values, if any.
fn phone_conflict(
    s: &mut Store,
    household: &str,
    member: &str,
) -> Option<xiuhua_core::FieldConflict> {
    s.conflicts(household)
        .expect("conflicts")
        .into_iter()
        .find(|c| c.path.contains(member) && c.path.ends_with("phone"))
}

#[test]
fn two_phones_offline_merge_to_the_same_state_with_conflicts_shown() {
    let clock_a = FakeClock::new(MAR_2026);
    let clock_b = FakeClock::new(MAR_2026 + 5 * 60_000);
    let mut a = store(wang(), &clock_a);
    let mut b = store(li(), &clock_b);

    // A (网格员) registers 张三's household and a 上门办 task assigned to herself.
    let hh = a.create_household(zhang_household()).unwrap();
    let member_id = a.household(&hh).unwrap().members[0].id.clone();
    let task = a
        .create_task(new_task(
            "代缴水电费",
            Some("u-wang"),
            Some(MAR_2026 + 7 * DAY),
            Some(&hh),
        ))
        .unwrap();

    // B receives everything; the server acknowledges A's outbox.
    let first = share_all(&mut a, &mut b);
    assert_eq!(first.waiting, 0);
    assert!(
        first.new_conflicts.is_empty() && first.newly_rejected.is_empty(),
        "{first:?}"
    );
    let ids: Vec<i64> = a.outbox(100).unwrap().iter().map(|e| e.id).collect();
    a.ack_outbox(&ids).unwrap();
    assert_eq!(a.outbox_len().unwrap(), 0);
    assert_eq!(dump(&a), dump(&b), "B starts from A's data");
    assert_eq!(
        b.household(&hh).unwrap().members[0].phone.as_deref(),
        Some("13800001234")
    );

    // Both offline.
    clock_a.advance(HOUR);
    clock_b.advance(HOUR);
    a.set_member_phone(&hh, &member_id, Some("13911112222"))
        .unwrap();
    b.set_member_phone(&hh, &member_id, Some("13733334444"))
        .unwrap();
    let visit_id = a.add_visit(&hh, visit("入户走访")).unwrap();
    b.set_household_tags(&hh, &[Tag::LivingAlone, Tag::Dibao])
        .unwrap();
    clock_a.advance(60_000);
    clock_b.advance(60_000);
    let after_accept = a.task_action(&task, TaskAction::Accept).unwrap();
    assert_eq!(after_accept.view.status, TaskStatus::InProgress);
    let after_cancel = b
        .task_action(
            &task,
            TaskAction::Cancel {
                reason: "居民说不用了".into(),
            },
        )
        .unwrap();
    assert_eq!(after_cancel.view.status, TaskStatus::Cancelled);
    assert_ne!(dump(&a), dump(&b));

    // They meet: outbox entries both ways.
    let to_b = outbox_changes(&a);
    let to_a = outbox_changes(&b);
    assert!(!to_b.is_empty() && !to_a.is_empty());
    let report_b = b.apply_remote(&to_b).unwrap();
    let report_a = a.apply_remote(&to_a).unwrap();

    for (who, report) in [("A", &report_a), ("B", &report_b)] {
        assert_eq!(report.waiting, 0, "{who}: {report:?}");
        assert_eq!(report.duplicates, 0, "{who}: {report:?}");
        assert!(report.applied > 0, "{who}: {report:?}");
        assert!(
            report.changed.iter().any(|(d, _)| d == &hh),
            "{who}: household changed: {report:?}"
        );
        assert!(
            report.changed.iter().any(|(d, _)| d == &task),
            "{who}: task changed: {report:?}"
        );
        let phone = report
            .new_conflicts
            .iter()
            .find(|(d, c)| d == &hh && c.path.contains(&member_id) && c.path.ends_with("phone"));
        assert!(
            phone.is_some(),
            "{who}: the merge reports the phone conflict: {report:?}"
        );
        let rejected: Vec<_> = report
            .newly_rejected
            .iter()
            .filter(|(t, _, _)| t == &task)
            .collect();
        assert_eq!(
            rejected.len(),
            1,
            "{who}: exactly the cancel is newly rejected: {report:?}"
        );
        assert!(
            rejected[0].1.contains("dev-b"),
            "{who}: the rejected event is B's cancel: {rejected:?}"
        );
        assert!(!rejected[0].2.is_empty(), "{who}: with a reason");
    }

    // Same screens on both phones.
    assert_eq!(dump(&a), dump(&b));
    let ha = a.household(&hh).unwrap();
    assert_eq!(ha, b.household(&hh).unwrap());
    assert!(
        ha.visits.iter().any(|v| v.id == visit_id),
        "A's visit survives"
    );
    assert_eq!(
        ha.tags,
        vec![Tag::LivingAlone, Tag::Dibao],
        "B's tags survive"
    );

    // The phone conflict is listed with both numbers on both phones.
    for s in [&mut a, &mut b] {
        let c = phone_conflict(s, &hh, &member_id).expect("phone conflict listed");
        let values: Vec<&str> = c.values.iter().map(|v| v.value.as_str()).collect();
        assert_eq!(values.len(), 2, "{c:?}");
        assert!(
            values.contains(&"13911112222") && values.contains(&"13733334444"),
            "{c:?}"
        );
        let devices: Vec<&str> = c.values.iter().map(|v| v.device.as_str()).collect();
        assert!(
            devices.contains(&"dev-a") && devices.contains(&"dev-b"),
            "{c:?}"
        );
    }
    assert_eq!(a.households_with_conflicts(GRID).unwrap().len(), 1);

    // The task: accept beats cancel (WORKFLOW rule 1) on both phones; the cancel is kept.
    for (who, s) in [("A", &mut a), ("B", &mut b)] {
        let t = s.task(&task).unwrap();
        assert_eq!(t.view.status, TaskStatus::InProgress, "{who}");
        let cancel = t
            .view
            .events
            .iter()
            .find(|e| e.event.kind == EventKind::Cancel.as_str())
            .expect("the cancel is kept in the event list");
        match &cancel.outcome {
            Outcome::Rejected { reason } => {
                assert!(!reason.is_empty(), "{who}: a rejected event says why");
                assert!(
                    reason.contains("王伟") || reason.contains("u-wang"),
                    "{who}: the reason names who accepted (WORKFLOW rule 1): {reason}"
                );
            }
            other => panic!("{who}: the cancel must be rejected, got {other:?}"),
        }
        let accept = t
            .view
            .events
            .iter()
            .find(|e| e.event.kind == EventKind::Accept.as_str())
            .expect("accept");
        assert_eq!(accept.outcome, Outcome::Applied, "{who}");
        assert_eq!(t.view.rejected().count(), 1, "{who}");
        assert_eq!(s.tasks_with_conflicts(GRID).unwrap().len(), 1, "{who}");
    }

    // History names both users and both devices, on both phones.
    for (who, s) in [("A", &mut a), ("B", &mut b)] {
        for doc in [&hh, &task] {
            let h = s.history(doc).unwrap();
            assert!(
                h.iter()
                    .any(|e| e.user == "u-wang" && e.device == "dev-a" && e.name == "王伟"),
                "{who} {doc}: {h:?}"
            );
            assert!(
                h.iter()
                    .any(|e| e.user == "u-li" && e.device == "dev-b" && e.name == "李娜"),
                "{who} {doc}: {h:?}"
            );
        }
    }

    // B settles the phone conflict by choosing A's number; the choice syncs to A.
    let ids: Vec<i64> = b.outbox(100).unwrap().iter().map(|e| e.id).collect();
    b.ack_outbox(&ids).unwrap();
    let ids: Vec<i64> = a.outbox(100).unwrap().iter().map(|e| e.id).collect();
    a.ack_outbox(&ids).unwrap();
    let c = phone_conflict(&mut b, &hh, &member_id).unwrap();
    let choice = c
        .values
        .iter()
        .position(|v| v.value == "13911112222")
        .unwrap();
    b.resolve_conflict(&hh, &c.path, choice).unwrap();
    assert!(phone_conflict(&mut b, &hh, &member_id).is_none());
    assert_eq!(
        b.outbox_len().unwrap(),
        1,
        "the choice is one change to sync"
    );
    let report = ship_outbox(&mut b, &mut a);
    assert!(report.new_conflicts.is_empty(), "{report:?}");
    for s in [&mut a, &mut b] {
        assert!(s.conflicts(&hh).unwrap().is_empty());
        assert_eq!(
            s.household(&hh).unwrap().members[0].phone.as_deref(),
            Some("13911112222")
        );
        assert!(s.households_with_conflicts(GRID).unwrap().is_empty());
    }
    assert_eq!(dump(&a), dump(&b));
}

#[test]
fn a_record_edited_on_two_phones_offline_is_listed_with_its_conflict_and_settled_once() {
    let clock_a = FakeClock::new(MAR_2026);
    let clock_b = FakeClock::new(MAR_2026 + 5 * 60_000);
    let mut a = store(wang(), &clock_a);
    let mut b = store(li(), &clock_b);
    let rec = a
        .create_record(new_record(xiuhua_core::Category::Environment, None))
        .unwrap();
    ship_outbox(&mut a, &mut b);
    assert!(a.records_with_conflicts(GRID).unwrap().is_empty());

    // Offline, both correct where it happened.
    clock_a.advance(HOUR);
    clock_b.advance(HOUR);
    a.set_record_place(&rec, "3号楼东侧").unwrap();
    b.set_record_place(&rec, "3号楼西侧").unwrap();
    ship_outbox(&mut a, &mut b);
    ship_outbox(&mut b, &mut a);
    for (who, s) in [("A", &mut a), ("B", &mut b)] {
        let listed: Vec<String> = s
            .records_with_conflicts(GRID)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(listed, vec![rec.clone()], "{who}");
        let c = s.conflicts(&rec).unwrap();
        assert_eq!(c.len(), 1, "{who}: {c:?}");
        assert_eq!(c[0].values.len(), 2);
    }
    // Another field's edit keeps the conflict listed.
    a.set_record_category(&rec, xiuhua_core::Category::Safety)
        .unwrap();
    assert_eq!(a.records_with_conflicts(GRID).unwrap().len(), 1);

    // A settles it; the choice syncs to B and both lists empty.
    let c = a.conflicts(&rec).unwrap().remove(0);
    let east = c
        .values
        .iter()
        .position(|v| v.value == "3号楼东侧")
        .unwrap();
    a.resolve_conflict(&rec, &c.path, east).unwrap();
    ship_outbox(&mut a, &mut b);
    for s in [&mut a, &mut b] {
        assert!(s.records_with_conflicts(GRID).unwrap().is_empty());
        assert_eq!(s.record(&rec).unwrap().place, "3号楼东侧");
    }
}
