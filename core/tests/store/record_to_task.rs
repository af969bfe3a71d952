//! 点单 from a 民情 record: one action makes the linked task, and the record shows the task's
//! progress on every phone.

use xiuhua_core::store::OrderFromRecord;
use xiuhua_core::{Category, Level, RecordStatus, TaskAction, TaskStatus};

use crate::common::*;

fn shown_in_list(s: &xiuhua_core::Store, record: &str) -> String {
    s.records(GRID, None, None, 100)
        .unwrap()
        .into_iter()
        .find(|r| r.id == record)
        .expect("the record is listed")
        .status
}

#[test]
fn a_record_turned_into_a_task_follows_it_to_resolved_on_both_phones() {
    let clock = FakeClock::new(MAR_2026);
    let mut a = store(wang(), &clock);
    let mut b = store(li(), &clock);
    let hh = a.create_household(zhang_household()).unwrap();
    let record = a
        .create_record(new_record(Category::Repair, Some(&hh)))
        .unwrap();
    assert_eq!(shown_in_list(&a, &record), "待处理");

    let task = a
        .order_from_record(
            &record,
            OrderFromRecord {
                level: Level::Doorstep,
                title: None,
                assignee: Some("u-wang".into()),
                deadline: Some(MAR_2026 + 3 * DAY),
            },
        )
        .unwrap();
    let t = a.task(&task).unwrap();
    assert_eq!(t.task.source_record.as_deref(), Some(record.as_str()));
    assert_eq!(t.task.household.as_deref(), Some(hh.as_str()));
    assert_eq!(t.task.category, Category::Repair);
    assert_eq!(
        t.task.title, "楼道灯坏了，晚上看不见",
        "the record's words by default"
    );
    assert_eq!(t.view.status, TaskStatus::Assigned);

    let detail = a.record_detail(&record).unwrap();
    assert_eq!(detail.shown, RecordStatus::InProgress);
    assert_eq!(
        detail.record.status,
        RecordStatus::Pending,
        "its own status is untouched"
    );
    assert_eq!(detail.tasks, vec![task.clone()]);
    assert_eq!(shown_in_list(&a, &record), "处理中");
    assert_eq!(
        a.records(GRID, Some("处理中"), None, 10).unwrap().len(),
        1,
        "the status filter uses what the record shows"
    );

    // The task is done and rated: the record shows 已办结, here and on the other phone.
    a.task_action(&task, TaskAction::Accept).unwrap();
    a.task_action(
        &task,
        TaskAction::Complete {
            result: "换了灯泡".into(),
        },
    )
    .unwrap();
    assert_eq!(
        shown_in_list(&a, &record),
        "处理中",
        "done but not yet rated"
    );
    a.task_action(
        &task,
        TaskAction::Rate {
            score: 5,
            comment: "满意".into(),
        },
    )
    .unwrap();
    assert_eq!(
        a.record_detail(&record).unwrap().shown,
        RecordStatus::Resolved
    );
    let ledger = a.ledger(GRID).unwrap();
    assert!(
        ledger
            .records
            .iter()
            .any(|(c, s, n)| c == "设施报修" && s == "已办结" && *n == 1),
        "{:?}",
        ledger.records
    );

    share_all(&mut a, &mut b);
    assert_eq!(
        b.record_detail(&record).unwrap().shown,
        RecordStatus::Resolved
    );
    assert_eq!(shown_in_list(&b, &record), "已办结");
    assert_eq!(dump(&a), dump(&b));

    // A rebuilt projection shows the same.
    b.rebuild_projection().unwrap();
    assert_eq!(shown_in_list(&b, &record), "已办结");

    // The secretary's 问单 sends the task back: the record goes back to 处理中 with it, on
    // the secretary's phone and, after they meet, on the worker's.
    let mut c = store(zhao(), &clock);
    share_all(&mut a, &mut c);
    c.task_action(
        &task,
        TaskAction::Inquire {
            text: "居民反映又坏了".into(),
            send_back: true,
        },
    )
    .unwrap();
    assert_eq!(shown_in_list(&c, &record), "处理中");
    share_all(&mut c, &mut a);
    assert_eq!(shown_in_list(&a, &record), "处理中");
}

#[test]
fn ordering_from_a_missing_record_is_not_found_and_writes_nothing() {
    let clock = FakeClock::new(MAR_2026);
    let mut a = store(wang(), &clock);
    let before = a.outbox_len().unwrap();
    let r = a.order_from_record(
        "rec-nope",
        OrderFromRecord {
            level: Level::PartyMass,
            title: Some("代办".into()),
            assignee: None,
            deadline: None,
        },
    );
    assert!(matches!(r, Err(xiuhua_core::Error::NotFound(_))), "{r:?}");
    assert_eq!(a.outbox_len().unwrap(), before);
}

#[test]
fn a_records_category_and_place_are_corrected_before_the_task_is_made() {
    let clock = FakeClock::new(MAR_2026);
    let mut a = store(wang(), &clock);
    let record = a
        .create_record(new_record(Category::Environment, None))
        .unwrap();
    a.set_record_category(&record, Category::Repair).unwrap();
    a.set_record_place(&record, "  3号楼1单元楼道 ").unwrap();
    let r = a.record(&record).unwrap();
    assert_eq!(
        (r.category, r.place.as_str()),
        (Category::Repair, "3号楼1单元楼道")
    );
    assert_eq!(
        a.records(GRID, None, Some("设施报修"), 10).unwrap().len(),
        1,
        "the list follows the corrected category"
    );
    let before = (a.outbox_len().unwrap(), dump(&a));
    let long = "楼".repeat(101);
    assert!(matches!(
        a.set_record_place(&record, &long),
        Err(xiuhua_core::Error::Invalid { .. })
    ));
    assert_eq!(
        (a.outbox_len().unwrap(), dump(&a)),
        before,
        "nothing written"
    );
    let task = a
        .order_from_record(
            &record,
            OrderFromRecord {
                level: Level::Compound,
                title: Some("修楼道灯".into()),
                assignee: None,
                deadline: None,
            },
        )
        .unwrap();
    let t = a.task(&task).unwrap();
    assert_eq!(
        (t.task.category, t.task.title.as_str()),
        (Category::Repair, "修楼道灯")
    );
}
