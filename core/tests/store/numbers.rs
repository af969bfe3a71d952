//! Numbers for people on one phone: a provisional number before any block, numbers of a
//! block in order, a provisional one again when the block runs out, each replaced at the
//! next sync's blocks, in the same action as the edit, and every record findable by either.

use xiuhua_core::numbers::{self, NumberBlock};
use xiuhua_core::sync::proto::Grant;
use xiuhua_core::{Category, Store};

use super::common::*;

fn enrolled(clock: &FakeClock) -> Store {
    let mut s = store(wang(), clock);
    s.save_grants(&[Grant {
        grid: GRID.into(),
        role: "网格员".into(),
        buildings: vec![],
        community: "c-jinhu".into(),
        number_prefix: "金湖".into(),
    }])
    .unwrap();
    s
}

fn block(start: u64, end: u64) -> NumberBlock {
    NumberBlock {
        community: "c-jinhu".into(),
        prefix: "金湖".into(),
        year: 2026,
        start,
        end,
    }
}

fn record_number(s: &mut Store, id: &str) -> (Option<String>, Option<String>) {
    let r = s.record(id).unwrap();
    (r.number, r.provisional_number)
}

#[test]
fn numbers_come_from_blocks_and_provisional_ones_are_replaced_and_still_found() {
    let clock = FakeClock::new(MAR_2026);
    let mut s = enrolled(&clock);
    // No block yet: a provisional number, with the device in it.
    let early = s.create_record(new_record(Category::Safety, None)).unwrap();
    let (n, _) = record_number(&mut s, &early);
    let provisional = n.unwrap();
    assert_eq!(
        provisional, "金湖-2026-临EVA-1",
        "the device dev-a, its first"
    );
    assert!(numbers::is_provisional(&provisional));
    let held = s.numbers_held().unwrap();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!((held[0].left, held[0].last_start), (0, 0));

    // The sync's blocks: a block of 3 and one of 2 (to run out soon).
    s.accept_number_blocks(&[block(101, 104), block(7, 9)])
        .unwrap();
    s.accept_number_blocks(&[block(7, 9)]).unwrap(); // sent again: kept once
    let held = s.numbers_held().unwrap();
    assert_eq!((held[0].left, held[0].last_start), (5, 101));
    let before = s.outbox_len().unwrap();
    assert_eq!(
        s.replace_provisional_numbers().unwrap(),
        vec![(early.clone(), xiuhua_core::DocKind::Record)]
    );
    assert_eq!(
        s.outbox_len().unwrap(),
        before + 1,
        "the edit is one change to push"
    );
    assert_eq!(
        record_number(&mut s, &early),
        (Some("金湖-2026-000007".into()), Some(provisional.clone()))
    );
    assert!(
        s.replace_provisional_numbers().unwrap().is_empty(),
        "nothing left to replace"
    );

    // The lowest block first, in order; tasks take numbers too.
    let r2 = s
        .create_record(new_record(Category::Environment, None))
        .unwrap();
    assert_eq!(
        record_number(&mut s, &r2).0.as_deref(),
        Some("金湖-2026-000008")
    );
    let t = s
        .create_task(new_task("帮办低保", None, None, None))
        .unwrap();
    assert_eq!(
        s.task(&t).unwrap().task.number.as_deref(),
        Some("金湖-2026-000101")
    );
    s.create_record(new_record(Category::Environment, None))
        .unwrap();
    s.create_record(new_record(Category::Environment, None))
        .unwrap();
    // Both blocks are used up: provisional again, counting on.
    let late = s
        .create_record(new_record(Category::Environment, None))
        .unwrap();
    let late_number = record_number(&mut s, &late).0.unwrap();
    assert!(late_number.ends_with("-2"), "{late_number}");

    // Found by the number, by the provisional one, and by the search box.
    for asked in [
        "金湖-2026-000007",
        provisional.as_str(),
        " 金湖-2026-000007 ",
    ] {
        let hit = s.find_by_number(asked).unwrap().expect("found");
        assert_eq!(hit.id, early);
        assert_eq!(hit.number, "金湖-2026-000007");
    }
    assert_eq!(s.find_by_number(&late_number).unwrap().unwrap().id, late);
    assert_eq!(s.find_by_number("金湖-2026-000999").unwrap(), None);
    assert_eq!(s.find_by_number("").unwrap(), None);
    let hits = s.search("000101", 5).unwrap();
    assert!(
        hits.iter().any(|h| h.id == t && h.matched == "number"),
        "{hits:?}"
    );
    let page = s.record_page(GRID, &Default::default(), None, 50).unwrap();
    assert!(
        page.items
            .iter()
            .any(|i| i.number.as_deref() == Some("金湖-2026-000008")),
        "lists carry the number"
    );
}

#[test]
fn a_record_keeps_its_number_through_edits_and_another_phone_sees_it() {
    let clock = FakeClock::new(MAR_2026);
    let mut a = enrolled(&clock);
    a.accept_number_blocks(&[block(1, 101)]).unwrap();
    let id = a.create_record(new_record(Category::Safety, None)).unwrap();
    a.set_record_place(&id, "3号楼东侧").unwrap();
    a.set_record_category(&id, Category::Environment).unwrap();
    let mut b = store(li(), &clock);
    share_all(&mut a, &mut b);
    assert_eq!(
        b.record(&id).unwrap().number.as_deref(),
        Some("金湖-2026-000001")
    );
    assert_eq!(
        b.find_by_number("金湖-2026-000001").unwrap().unwrap().id,
        id
    );
    // B has no provisional number of A's to replace.
    assert!(b.replace_provisional_numbers().unwrap().is_empty());
}
