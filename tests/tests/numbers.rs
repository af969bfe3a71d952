//! Numbers for people through the real server: blocks per device, never a collision across
//! phones offline at once, provisional numbers replaced at the next sync and findable by
//! either, a lost reply answered again, and a phone that asks too often held back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use xiuhua_core::numbers::{self, BLOCK_SIZE, MAX_BLOCKS_PER_DAY, NumberHeld};
use xiuhua_core::sync::proto::{SessionRequest, SessionResponse};
use xiuhua_e2e::*;

/// Every record and task of the store's grid `g1` with its number.
fn numbers_of(d: &mut Device) -> BTreeMap<String, String> {
    let ids = doc_ids(&d.store, "g1");
    let mut out = BTreeMap::new();
    for id in ids {
        let number = if id.starts_with("rec") {
            d.store.record(&id).unwrap().number
        } else if id.starts_with("task") {
            d.store.task(&id).unwrap().task.number
        } else {
            continue;
        };
        out.insert(id, number.expect("every record and task has a number"));
    }
    out
}

fn this_year() -> i32 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    numbers::year_of(ms)
}

#[test]
fn phones_offline_at_once_never_give_the_same_number_and_provisional_ones_are_replaced() {
    let server = Server::with_directory();
    let mut phones = vec![
        server.enroll("u-wang"),
        server.enroll("u-zhao"),
        server.enroll("u-wang"),
    ];
    let year = this_year();
    // A record logged right after enrollment, before any sync: the enrollment brought the
    // phone its first block, so the number is a real one.
    let early = phones[0]
        .store
        .create_record(record("g1", Some("1号楼"), "楼道灯不亮"))
        .unwrap();
    let early_number = phones[0].store.record(&early).unwrap().number.unwrap();
    assert!(
        early_number.starts_with(&format!("金湖-{year}-"))
            && !numbers::is_provisional(&early_number),
        "{early_number}"
    );
    for p in &mut phones {
        let r = p.sync().unwrap();
        assert_eq!(r.renumbered, 0, "nothing was provisional: {r:?}");
    }

    // The day, offline on all three: the first phone logs more than its block holds.
    let counts = [BLOCK_SIZE as usize + 20, 30, 30];
    for (p, n) in phones.iter_mut().zip(counts) {
        for i in 0..n {
            if i % 3 == 0 {
                p.store
                    .create_task(task("g1", None, &format!("代办 {i}")))
                    .unwrap();
            } else {
                p.store
                    .create_record(record("g1", Some("2号楼"), &format!("民情 {i}")))
                    .unwrap();
            }
        }
    }
    // Each phone holds its own work and the early record (pulled at the morning's sync).
    let mut all: BTreeMap<String, String> = BTreeMap::new();
    for p in &mut phones {
        for (id, n) in numbers_of(p) {
            if let Some(seen) = all.insert(id.clone(), n.clone()) {
                assert_eq!(seen, n, "{id} shows one number on every phone");
            }
        }
    }
    let provisional_before = all.values().filter(|n| numbers::is_provisional(n)).count();
    let (late, provisional) = all
        .iter()
        .find(|(id, n)| id.starts_with("rec") && numbers::is_provisional(n))
        .map(|(id, n)| (id.clone(), n.clone()))
        .expect("a provisional number");
    assert!(
        provisional.starts_with(&format!("金湖-{year}-临")),
        "{provisional}"
    );
    let distinct: BTreeSet<&String> = all.values().collect();
    assert_eq!(
        distinct.len(),
        all.len(),
        "a number was given twice offline"
    );
    assert_eq!(all.len(), 1 + counts.iter().sum::<usize>());
    assert!(
        provisional_before > 0,
        "the first phone ran out of its block and gave provisional numbers"
    );

    // At the station: everyone syncs, twice (the second round brings the others' changes).
    for _ in 0..2 {
        for p in &mut phones {
            let r = p.sync().unwrap();
            assert!(r.rejected.is_empty(), "{r:?}");
        }
    }
    let everywhere: Vec<BTreeMap<String, String>> = phones.iter_mut().map(numbers_of).collect();
    assert_eq!(
        everywhere[0], everywhere[1],
        "every phone shows the same numbers"
    );
    assert_eq!(everywhere[0], everywhere[2]);
    let numbers: Vec<&String> = everywhere[0].values().collect();
    let distinct: BTreeSet<&&String> = numbers.iter().collect();
    assert_eq!(distinct.len(), numbers.len(), "numbers collide after sync");
    assert!(
        numbers.iter().all(|n| !numbers::is_provisional(n)),
        "every provisional number was replaced: {numbers:?}"
    );
    assert_eq!(numbers.len(), 1 + counts.iter().sum::<usize>());

    // Another phone finds the late record by its number and by its provisional number.
    let real = everywhere[1][&late].clone();
    for asked in [&real, &provisional] {
        let hit = phones[1]
            .store
            .find_by_number(asked)
            .unwrap()
            .expect("found");
        assert_eq!(hit.id, late);
        assert_eq!(hit.number, real);
    }
    assert_eq!(
        phones[1]
            .store
            .record(&late)
            .unwrap()
            .provisional_number
            .as_deref(),
        Some(provisional.as_str())
    );
    let hits = phones[1].store.search(&real[real.len() - 6..], 10).unwrap();
    assert!(hits.iter().any(|h| h.id == late), "{hits:?}");
    assert_eq!(
        phones[2]
            .store
            .find_by_number(&early_number)
            .unwrap()
            .map(|h| h.id),
        Some(early)
    );
}

#[test]
fn a_block_whose_reply_was_lost_is_sent_again_and_a_greedy_phone_is_held_back() {
    let server = Server::with_directory();
    let mut d = server.enroll("u-wang");
    let year = this_year();
    // The enrollment brought the first block.
    let first = d.store.numbers_held().unwrap();
    let first = first
        .iter()
        .find(|h| h.community == "c1" && h.year == year)
        .unwrap()
        .clone();
    assert_eq!(first.left, BLOCK_SIZE);
    // A session reserves a second block, but its reply is lost.
    let lost: SessionResponse = d
        .call(
            "/v1/session",
            &SessionRequest {
                numbers: vec![NumberHeld {
                    left: 0,
                    ..first.clone()
                }],
            },
        )
        .ok();
    let block = lost
        .number_blocks
        .iter()
        .find(|b| b.community == "c1" && b.year == year)
        .cloned()
        .expect("a new block of 金湖 for this year");
    assert_eq!(block.prefix, "金湖");
    assert_eq!(block.end - block.start, BLOCK_SIZE);
    assert!(block.start > first.last_start);
    // The next sync gets that same block again, and nothing more.
    d.sync().unwrap();
    let held = d.store.numbers_held().unwrap();
    let held = held
        .iter()
        .find(|h| h.community == "c1" && h.year == year)
        .unwrap();
    assert_eq!((held.left, held.last_start), (2 * BLOCK_SIZE, block.start));
    // The first block is used first.
    let rec = d
        .store
        .create_record(record("g1", Some("1号楼"), "垃圾桶满了"))
        .unwrap();
    assert_eq!(
        d.store.record(&rec).unwrap().number.unwrap(),
        numbers::format("金湖", year, first.last_start)
    );

    // A phone that claims to hold nothing at every session gets a bounded number of blocks.
    let mut last = block.start;
    let mut got = 2;
    for _ in 0..MAX_BLOCKS_PER_DAY + 5 {
        let r: SessionResponse = d
            .call(
                "/v1/session",
                &SessionRequest {
                    numbers: vec![NumberHeld {
                        community: "c1".into(),
                        year,
                        left: 0,
                        last_start: last,
                    }],
                },
            )
            .ok();
        for b in r.number_blocks.iter().filter(|b| b.year == year) {
            last = last.max(b.start);
            got += 1;
        }
    }
    assert_eq!(got, MAX_BLOCKS_PER_DAY, "at most the day's blocks");
    // The other community's grids are not this phone's: no block of 银湖.
    let r: SessionResponse = d.call("/v1/session", &SessionRequest::default()).ok();
    assert!(r.number_blocks.iter().all(|b| b.community == "c1"), "{r:?}");
}

/// A record as a hostile phone would write it, bypassing its store: numbered `number`.
fn record_numbered(id: &str, user: &str, at: i64, number: &str) -> xiuhua_core::model::Record {
    use xiuhua_core::model::*;
    Record {
        kind: "record".into(),
        id: id.into(),
        grid: "g1".into(),
        category: Category::Environment,
        description: autosurgeon::Text::with_value("楼道灯坏了"),
        reporter: "张阿姨".into(),
        household: None,
        building: Some("1号楼".into()),
        place: "楼道".into(),
        status: RecordStatus::Pending,
        reported_at: at,
        created_by: user.into(),
        number: Some(number.into()),
        provisional_number: None,
    }
}

#[test]
fn a_phone_cannot_give_another_phones_numbers() {
    use xiuhua_core::sync::proto::{DocChanges, PushRequest, PushResponse};
    let server = Server::with_directory();
    let mut wang = server.enroll("u-wang");
    let hostile = server.enroll("u-zhao");
    let year = this_year();
    let at = wang.store.now_ms();
    // Wang's next number, and a provisional number in wang's device's name.
    let held = wang.store.numbers_held().unwrap();
    let wangs = held
        .iter()
        .find(|h| h.community == "c1" && h.year == year)
        .unwrap();
    let stolen = numbers::format("金湖", year, wangs.last_start);
    let forged = numbers::provisional("金湖", year, &wang.id, 1);
    let actor = hostile.store.actor().clone();
    // A new record numbered `number`, pushed raw (as a modified app would): the status.
    let push = |id: &str, number: &str| -> Reply<PushResponse> {
        hostile.call(
            "/v1/push",
            &PushRequest {
                docs: vec![DocChanges {
                    doc: id.to_string(),
                    changes: signed(&record_numbered(id, &hostile.user, at, number), &actor, at),
                }],
            },
        )
    };
    for (n, number) in [
        stolen.as_str(),
        forged.as_str(),
        "金湖-2026-abc",
        "别的-2026-000001",
    ]
    .iter()
    .enumerate()
    {
        let r = push(&format!("rec-{}-hostile{n}", hostile.id), number);
        assert_eq!(r.status, 403, "{number}: {:?}", r.err);
        let why = r.err.unwrap().message;
        assert!(why.contains("nothing was stored"), "{why}");
    }
    // Its own numbers pass: the next of its block, and a provisional one of its own.
    let own = hostile.store.numbers_held().unwrap();
    let own = own
        .iter()
        .find(|h| h.community == "c1" && h.year == year)
        .unwrap();
    for (n, number) in [
        numbers::format("金湖", year, own.last_start),
        numbers::provisional("金湖", year, &hostile.id, 9),
    ]
    .iter()
    .enumerate()
    {
        let r = push(&format!("rec-{}-own{n}", hostile.id), number);
        assert_eq!(r.status, 200, "{number}: {:?}", r.err);
    }
    // Wang's phone still numbers and syncs as before.
    wang.store
        .create_record(record("g1", Some("1号楼"), "垃圾桶满了"))
        .unwrap();
    let r = wang.sync().unwrap();
    assert!(r.rejected.is_empty(), "{r:?}");
}
