//! The projection can always be rebuilt from the documents, identically.

use xiuhua_core::{Category, RecordStatus, Store, Tag, TaskAction};

use crate::common::*;

#[test]
fn rebuilding_the_projection_after_many_edits_gives_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phone.db");
    let clock = FakeClock::new(MAR_2026);
    let mut s = Store::open(&path, wang()).unwrap();
    clock.install(&mut s);
    let peer_clock = FakeClock::new(MAR_2026);
    let mut peer = store(li(), &peer_clock);

    let mut households = Vec::new();
    for room in ["101", "102", "201"] {
        let hh = s
            .create_household(new_household(
                "3号楼",
                "1单元",
                room,
                vec![member(
                    "张三",
                    Some("13800001234"),
                    Some(id_number("11010119620307123")),
                    xiuhua_core::Relation::Head,
                )],
            ))
            .unwrap();
        households.push(hh);
    }
    // More edits on one household than the incremental chunks allowed before compaction.
    for i in 0..40 {
        clock.advance(60_000);
        s.add_visit(&households[0], visit(&format!("第{i}次走访")))
            .unwrap();
    }
    s.set_household_tags(&households[1], &[Tag::Veteran, Tag::PartyMember])
        .unwrap();
    // FIXME(core): fails with BadDocument("index 3 is out of bounds") until Chinese text edits
    // are fixed (see text.rs); with ASCII note/description this test passes.
    s.set_household_note(&households[1], "儿子在外地工作")
        .unwrap();
    let m = s
        .add_member(
            &households[2],
            member("李梅", None, None, xiuhua_core::Relation::Spouse),
        )
        .unwrap();
    s.set_member_phone(&households[2], &m, Some("13900005678"))
        .unwrap();
    let rec = s
        .create_record(new_record(Category::Safety, Some(&households[0])))
        .unwrap();
    s.set_record_status(&rec, RecordStatus::InProgress).unwrap();
    s.set_record_description(&rec, "电动车楼道充电").unwrap();
    let t = s
        .create_task(new_task(
            "代缴水费",
            Some("u-wang"),
            Some(MAR_2026 + 7 * DAY),
            Some(&households[0]),
        ))
        .unwrap();
    s.task_action(&t, TaskAction::Accept).unwrap();
    s.task_action(
        &t,
        TaskAction::Note {
            text: "已联系".into(),
        },
    )
    .unwrap();
    s.task_action(
        &t,
        TaskAction::Complete {
            result: "办好了".into(),
        },
    )
    .unwrap();
    s.task_action(
        &t,
        TaskAction::Rate {
            score: 4,
            comment: "好".into(),
        },
    )
    .unwrap();
    let t2 = s
        .create_task(new_task(
            "门禁维修",
            Some("u-wang"),
            Some(MAR_2026 + 7 * DAY),
            None,
        ))
        .unwrap();

    // A colleague's concurrent edits: a phone conflict and a rejected cancel.
    share_all(&mut s, &mut peer);
    let member0 = s.household(&households[0]).unwrap().members[0].id.clone();
    s.set_member_phone(&households[0], &member0, Some("13911112222"))
        .unwrap();
    peer.set_member_phone(&households[0], &member0, Some("13733334444"))
        .unwrap();
    s.task_action(&t2, TaskAction::Accept).unwrap();
    peer.task_action(
        &t2,
        TaskAction::Cancel {
            reason: "重复".into(),
        },
    )
    .unwrap();
    share_all(&mut peer, &mut s);

    let before = dump(&s);
    assert!(
        before.contains("households|") && before.contains("tasks|") && before.contains("records|")
    );
    assert_eq!(s.households_with_conflicts(GRID).unwrap().len(), 1);
    assert_eq!(s.tasks_with_conflicts(GRID).unwrap().len(), 1);

    s.rebuild_projection().unwrap();
    assert_eq!(dump(&s), before);

    // Damage the projection behind the store's back: a rebuild restores it from the documents.
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "UPDATE households SET head_name = '?', visit_count = 0; DELETE FROM residents; \
             UPDATE tasks SET status = 'cancelled'; DELETE FROM records;",
        )
        .unwrap();
    }
    assert_ne!(dump(&s), before);
    s.rebuild_projection().unwrap();
    assert_eq!(dump(&s), before);

    // From disk, after a restart.
    drop(s);
    let mut s = Store::open(&path, wang()).unwrap();
    assert_eq!(dump(&s), before);
    s.rebuild_projection().unwrap();
    assert_eq!(dump(&s), before);
    assert_eq!(s.household(&households[0]).unwrap().visits.len(), 40);
}
