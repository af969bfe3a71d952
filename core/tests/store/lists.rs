//! The lists of real screens: the home list in priority order (with a clock passed in),
//! records and tasks pages with their filters and keyset paging, the text search (pinyin
//! initials, an address, a word of a record, 1–2 character queries), visit coverage, and
//! the grid's people.

use std::collections::BTreeSet;

use xiuhua_core::store::{HomeReason, RecordFilter, SearchKind, TaskFilter, month_start_ms};
use xiuhua_core::sync::proto::{Grant, GridPerson};
use xiuhua_core::{
    Category, Error, Level, RecordStatus, Relation, Store, Tag, TaskAction, TaskStatus,
};

use crate::common::*;

/// 2026-02-20T00:00:00Z and 2026-03-10T00:00:00Z.
const FEB_20: i64 = MAR_2026 - 9 * DAY;
const MAR_10: i64 = MAR_2026 + 9 * DAY;

fn assign_and_start(s: &mut Store, task: &str) {
    s.task_action(task, TaskAction::Accept).unwrap();
}

#[test]
fn home_list_is_overdue_then_due_soon_then_reminded_then_reopened_then_unvisited() {
    let clock = FakeClock::new(FEB_20);
    let mut s = store(wang(), &clock);
    let visited_feb = s
        .create_household(new_household(
            "3号楼",
            "1单元",
            "101",
            vec![member("张三", None, None, Relation::Head)],
        ))
        .unwrap();
    s.add_visit(&visited_feb, visit("走访")).unwrap();
    clock.set(MAR_10);
    let visited_mar = s
        .create_household(new_household(
            "3号楼",
            "1单元",
            "102",
            vec![member("李四", None, None, Relation::Head)],
        ))
        .unwrap();
    s.add_visit(&visited_mar, visit("走访")).unwrap();
    let never = s
        .create_household(new_household(
            "5号楼",
            "1单元",
            "101",
            vec![member("王五", None, None, Relation::Head)],
        ))
        .unwrap();

    let now = MAR_10 + 10 * HOUR;
    let over = s
        .create_task(new_task(
            "逾期",
            Some("u-wang"),
            Some(now - HOUR),
            Some(&never),
        ))
        .unwrap();
    let soon = s
        .create_task(new_task(
            "快到期",
            Some("u-wang"),
            Some(now + 2 * DAY),
            None,
        ))
        .unwrap();
    let far_reminded = s
        .create_task(new_task(
            "被督办",
            Some("u-wang"),
            Some(now + 10 * DAY),
            None,
        ))
        .unwrap();
    let answered = s
        .create_task(new_task("督办已回应", Some("u-wang"), None, None))
        .unwrap();
    let over_and_reminded = s
        .create_task(new_task(
            "逾期又督办",
            Some("u-wang"),
            Some(now - 2 * HOUR),
            None,
        ))
        .unwrap();
    let reopened = s
        .create_task(new_task("差评重办", Some("u-wang"), None, None))
        .unwrap();
    let good = s
        .create_task(new_task("好评", Some("u-wang"), None, None))
        .unwrap();
    let others = s
        .create_task(new_task("别人的", Some("u-li"), Some(now - HOUR), None))
        .unwrap();
    let _quiet = s
        .create_task(new_task("没事", Some("u-wang"), Some(now + 10 * DAY), None))
        .unwrap();
    for t in [&reopened, &good] {
        assign_and_start(&mut s, t);
        s.task_action(
            t,
            TaskAction::Complete {
                result: "已办".into(),
            },
        )
        .unwrap();
    }
    s.task_action(
        &reopened,
        TaskAction::Rate {
            score: 2,
            comment: "没解决".into(),
        },
    )
    .unwrap();
    s.task_action(
        &good,
        TaskAction::Rate {
            score: 5,
            comment: String::new(),
        },
    )
    .unwrap();

    // 李娜 (社区工作者) sends 督单 reminders from her phone.
    let lclock = FakeClock::new(MAR_10 + 60_000);
    let mut l = store(li(), &lclock);
    share_all(&mut s, &mut l);
    for t in [&far_reminded, &answered, &over_and_reminded] {
        l.task_action(
            t,
            TaskAction::Supervise {
                text: "请尽快".into(),
                new_deadline: None,
            },
        )
        .unwrap();
    }
    share_all(&mut l, &mut s);
    // 王伟 answers one of them.
    clock.set(MAR_10 + 120_000);
    assign_and_start(&mut s, &answered);
    let _ = others;

    let list = s.home_list(GRID, "u-wang", now, 50).unwrap();
    let got: Vec<(HomeReason, String)> = list
        .iter()
        .map(|i| {
            (
                i.reason,
                i.task
                    .as_ref()
                    .map(|t| t.id.clone())
                    .or(i.household.as_ref().map(|h| h.id.clone()))
                    .unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (HomeReason::Overdue, over_and_reminded.clone()),
            (HomeReason::Overdue, over.clone()),
            (HomeReason::DueSoon, soon.clone()),
            (HomeReason::Reminded, far_reminded.clone()),
            (HomeReason::Reopened, reopened.clone()),
            (HomeReason::NotVisited, never.clone()),
            (HomeReason::NotVisited, visited_feb.clone()),
        ]
    );
    // Each item says why, with the time it is about and the address.
    assert_eq!(list[1].at, Some(now - HOUR));
    assert_eq!(
        list[1]
            .task
            .as_ref()
            .unwrap()
            .address
            .as_ref()
            .unwrap()
            .building,
        "5号楼"
    );
    assert!(list[3].at.unwrap() >= MAR_10 + 60_000);
    assert_eq!(list[5].at, None);
    assert_eq!(list[6].at.map(|t| t < MAR_2026), Some(true));

    // The clock is passed in: three days later the due-soon task is overdue, and in April
    // every household is unvisited again.
    let later = s.home_list(GRID, "u-wang", now + 3 * DAY, 50).unwrap();
    assert_eq!(later[2].reason, HomeReason::Overdue);
    assert_eq!(later[2].task.as_ref().unwrap().id, soon);
    let april = s
        .home_list(GRID, "u-wang", MAR_2026 + 40 * DAY, 50)
        .unwrap();
    assert_eq!(
        april
            .iter()
            .filter(|i| i.reason == HomeReason::NotVisited)
            .count(),
        3
    );
    // The limit cuts from the end.
    let two = s.home_list(GRID, "u-wang", now, 2).unwrap();
    assert_eq!(two.len(), 2);
    assert_eq!(two[1].task.as_ref().unwrap().id, over);

    // The projection rebuilt from the documents gives the same list.
    s.rebuild_projection().unwrap();
    assert_eq!(s.home_list(GRID, "u-wang", now, 50).unwrap(), list);
}

struct Lists {
    s: Store,
    alone_hh: String,
    records: Vec<String>,
}

/// 3号楼 101 (独居老人 member) and 5号楼 201; seven records an hour apart, alternating.
fn lists() -> Lists {
    let clock = FakeClock::new(MAR_10);
    let mut s = store(wang(), &clock);
    let mut alone = member("曾秀英", Some("13912345678"), None, Relation::Head);
    alone.tags = vec![Tag::LivingAlone];
    let alone_hh = s
        .create_household(new_household("3号楼", "2单元", "101", vec![alone]))
        .unwrap();
    let other_hh = s
        .create_household(new_household(
            "5号楼",
            "1单元",
            "201",
            vec![member("王五", None, None, Relation::Head)],
        ))
        .unwrap();
    let mut records = Vec::new();
    for i in 0..7 {
        clock.advance(HOUR);
        let (hh, cat) = if i % 2 == 0 {
            (&alone_hh, Category::Environment)
        } else {
            (&other_hh, Category::Repair)
        };
        let mut r = new_record(cat, Some(hh));
        r.building = None;
        r.description = format!("第{i}件：楼道灯坏了，晚上看不见");
        records.push(s.create_record(r).unwrap());
    }
    s.set_record_status(&records[0], RecordStatus::Resolved)
        .unwrap();
    Lists {
        s,
        alone_hh,
        records,
    }
}

#[test]
fn records_pages_are_newest_first_without_gaps_or_repeats() {
    let l = lists();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let p =
            l.s.record_page(GRID, &RecordFilter::default(), after.as_deref(), 3)
                .unwrap();
        pages += 1;
        assert!(p.items.len() <= 3);
        seen.extend(p.items.iter().map(|r| r.id.clone()));
        match p.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let newest_first: Vec<String> = l.records.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    // A record added while paging does not shift the pages after the cursor.
    let first =
        l.s.record_page(GRID, &RecordFilter::default(), None, 3)
            .unwrap();
    let mut s = l.s;
    s.create_record(new_record(Category::Safety, None)).unwrap();
    let second = s
        .record_page(GRID, &RecordFilter::default(), first.next.as_deref(), 3)
        .unwrap();
    assert_eq!(second.items[0].id, newest_first[3]);

    // A cursor that is not one is refused, naming the field.
    match s.record_page(GRID, &RecordFilter::default(), Some("garbage"), 3) {
        Err(Error::Invalid { field, .. }) => assert_eq!(field, "cursor"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn records_carry_the_address_and_filter_by_building_tag_status_and_category() {
    let l = lists();
    let all = |f: RecordFilter| -> Vec<String> {
        l.s.record_page(GRID, &f, None, 200)
            .unwrap()
            .items
            .into_iter()
            .map(|r| r.id)
            .collect()
    };
    let page =
        l.s.record_page(GRID, &RecordFilter::default(), None, 1)
            .unwrap();
    let newest = &page.items[0];
    let addr = newest.address.as_ref().unwrap();
    assert_eq!(
        (
            addr.household.as_str(),
            addr.building.as_str(),
            addr.unit.as_str(),
            addr.room.as_str(),
            addr.head_name.as_str()
        ),
        (l.alone_hh.as_str(), "3号楼", "2单元", "101", "曾秀英")
    );
    // The record has no building of its own: its household's counts.
    assert_eq!(newest.building.as_deref(), Some("3号楼"));

    let evens: BTreeSet<String> = l.records.iter().step_by(2).cloned().collect();
    let by_building = all(RecordFilter {
        building: Some("3号楼".into()),
        ..Default::default()
    });
    assert_eq!(by_building.iter().cloned().collect::<BTreeSet<_>>(), evens);
    let by_tag = all(RecordFilter {
        tag: Some(Tag::LivingAlone),
        ..Default::default()
    });
    assert_eq!(by_tag.iter().cloned().collect::<BTreeSet<_>>(), evens);
    // Every household here is 回迁 (a household tag).
    assert_eq!(
        all(RecordFilter {
            tag: Some(Tag::Relocated),
            ..Default::default()
        })
        .len(),
        7
    );
    assert!(
        all(RecordFilter {
            tag: Some(Tag::Dibao),
            ..Default::default()
        })
        .is_empty()
    );
    assert_eq!(
        all(RecordFilter {
            status: Some(RecordStatus::Resolved),
            ..Default::default()
        }),
        vec![l.records[0].clone()]
    );
    assert_eq!(
        all(RecordFilter {
            category: Some(Category::Repair),
            building: Some("5号楼".into()),
            ..Default::default()
        })
        .len(),
        3
    );
    assert!(
        all(RecordFilter {
            category: Some(Category::Repair),
            building: Some("3号楼".into()),
            ..Default::default()
        })
        .is_empty()
    );
}

#[test]
fn tasks_pages_filter_and_show_the_assignees_name() {
    let clock = FakeClock::new(MAR_10);
    let mut s = store(wang(), &clock);
    let hh = s.create_household(zhang_household()).unwrap();
    let mut ids = Vec::new();
    for i in 0..5i64 {
        let deadline = (i < 4).then(|| MAR_10 + (4 - i) * DAY);
        let mut t = new_task(&format!("任务{i}"), Some("u-wang"), deadline, Some(&hh));
        if i % 2 == 1 {
            t.level = Level::PartyMass;
            t.household = None;
        }
        ids.push(s.create_task(t).unwrap());
    }
    s.task_action(&ids[0], TaskAction::Accept).unwrap();
    // Soonest deadline first, no deadline last, paged 2 by 2.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let p = s
            .task_page(GRID, &TaskFilter::default(), after.as_deref(), 2)
            .unwrap();
        seen.extend(p.items.iter().map(|t| t.id.clone()));
        match p.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(
        seen,
        vec![
            ids[3].clone(),
            ids[2].clone(),
            ids[1].clone(),
            ids[0].clone(),
            ids[4].clone()
        ]
    );
    let ids_of = |f: TaskFilter| -> Vec<String> {
        s.task_page(GRID, &f, None, 50)
            .unwrap()
            .items
            .into_iter()
            .map(|t| t.id)
            .collect()
    };
    assert_eq!(
        ids_of(TaskFilter {
            level: Some(Level::PartyMass),
            ..Default::default()
        }),
        vec![ids[3].clone(), ids[1].clone()]
    );
    assert_eq!(
        ids_of(TaskFilter {
            status: Some(TaskStatus::InProgress),
            ..Default::default()
        }),
        vec![ids[0].clone()]
    );
    assert_eq!(
        ids_of(TaskFilter {
            building: Some("3号楼".into()),
            tag: Some(Tag::Relocated),
            ..Default::default()
        }),
        vec![ids[2].clone(), ids[0].clone(), ids[4].clone()]
    );

    // Names come from the grid's people (what /v1/session sent); unknown ids stay ids.
    let page = s.task_page(GRID, &TaskFilter::default(), None, 1).unwrap();
    assert_eq!(page.items[0].assignee.as_deref(), Some("u-wang"));
    assert_eq!(page.items[0].assignee_name, None);
    let grants = vec![Grant {
        grid: GRID.into(),
        role: "网格员".into(),
        buildings: vec![],
        ..Default::default()
    }];
    let person = |grid: &str, user: &str, name: &str, role: &str| GridPerson {
        grid: grid.into(),
        user: user.into(),
        name: name.into(),
        role: role.into(),
    };
    s.apply_people(
        &grants,
        &[
            person(GRID, "u-wang", "王伟", "网格员"),
            person(GRID, "u-li", "李强", "楼门长"),
            person("别的网格", "u-x", "外人", "网格员"),
        ],
    )
    .unwrap();
    let page = s.task_page(GRID, &TaskFilter::default(), None, 1).unwrap();
    assert_eq!(page.items[0].assignee_name.as_deref(), Some("王伟"));
    let people = s.grid_people(GRID).unwrap();
    let names: Vec<(&str, &str)> = people
        .iter()
        .map(|p| (p.name.as_str(), p.role.as_str()))
        .collect();
    assert_eq!(names, vec![("李强", "楼门长"), ("王伟", "网格员")]);
    assert!(s.grid_people("别的网格").unwrap().is_empty());

    // An oversized entry refuses the whole reply and keeps what was there.
    let long = "名".repeat(65);
    assert!(
        s.apply_people(&grants, &[person(GRID, "u-z", &long, "网格员")])
            .is_err()
    );
    assert_eq!(s.grid_people(GRID).unwrap(), people);
}

fn search_store() -> (Store, String, String, String) {
    let clock = FakeClock::new(MAR_10);
    let mut s = store(wang(), &clock);
    let zhang = s
        .create_household(new_household(
            "3号楼",
            "1单元",
            "101",
            vec![member(
                "张三",
                Some("13800001234"),
                Some(id_number("11010119620307123")),
                Relation::Head,
            )],
        ))
        .unwrap();
    s.create_household(new_household(
        "5号楼",
        "2单元",
        "502",
        vec![member("王五", None, None, Relation::Head)],
    ))
    .unwrap();
    let rec = s
        .create_record(new_record(Category::Repair, Some(&zhang)))
        .unwrap();
    let task = s
        .create_task(new_task("代缴水费", Some("u-wang"), None, Some(&zhang)))
        .unwrap();
    (s, zhang, rec, task)
}

#[test]
fn search_finds_residents_by_pinyin_initials_without_id_or_phone_numbers() {
    let (s, zhang, _, _) = search_store();
    let hits = s.search("zs", 20).unwrap();
    assert_eq!(hits[0].kind, SearchKind::Resident);
    assert_eq!(hits[0].id, zhang);
    assert_eq!(hits[0].title, "张三");
    assert_eq!(hits[0].matched, "pinyin");
    assert_eq!(hits[0].address.as_ref().unwrap().room, "101");
    // Three letters or more go through the text index, which holds the pinyin keys too.
    for q in ["zhangsan", "Zhang San", "zhang'san"] {
        let hits = s.search(q, 20).unwrap();
        assert_eq!(
            (hits[0].kind, hits[0].id.as_str(), hits[0].member.is_some()),
            (SearchKind::Resident, zhang.as_str(), true),
            "{q}"
        );
        assert_eq!(
            (hits[0].title.as_str(), hits[0].matched.as_str()),
            ("张三", "pinyin")
        );
        assert!(hits[0].snippet.is_empty());
    }
    // By phone suffix: found, but the number is nowhere in the hit.
    let by_phone = s.search("1234", 20).unwrap();
    assert_eq!(by_phone[0].kind, SearchKind::Resident);
    assert_eq!(by_phone[0].matched, "phone");
    let shown = format!("{by_phone:?}");
    assert!(!shown.contains("13800001234") && !shown.contains("110101"));
}

#[test]
fn search_finds_an_address_a_word_of_a_record_and_a_task_title() {
    let (mut s, zhang, rec, task) = search_store();
    let by_addr = s.search("3号楼101", 20).unwrap();
    assert_eq!(
        (
            by_addr[0].kind,
            by_addr[0].id.as_str(),
            by_addr[0].matched.as_str()
        ),
        (SearchKind::Household, zhang.as_str(), "address")
    );
    let by_full_addr = s.search("5号楼2单元502", 20).unwrap();
    assert_eq!(by_full_addr.len(), 1);
    assert_eq!(by_full_addr[0].title, "5号楼2单元502 王五");

    let by_word = s.search("看不见", 20).unwrap();
    assert_eq!(by_word.len(), 1);
    assert_eq!(
        (
            by_word[0].kind,
            by_word[0].id.as_str(),
            by_word[0].matched.as_str()
        ),
        (SearchKind::Record, rec.as_str(), "text")
    );
    assert!(by_word[0].snippet.contains("看不见"));
    assert_eq!(by_word[0].address.as_ref().unwrap().household, zhang);

    let by_title = s.search("代缴水费", 20).unwrap();
    assert_eq!(
        (by_title[0].kind, by_title[0].id.as_str()),
        (SearchKind::Task, task.as_str())
    );

    // The index follows an edit in the same transaction, and a rebuild.
    s.set_record_description(&rec, "垃圾桶满了没人清运")
        .unwrap();
    assert!(s.search("看不见", 20).unwrap().is_empty());
    assert_eq!(s.search("没人清运", 20).unwrap()[0].id, rec);
    s.rebuild_projection().unwrap();
    assert_eq!(s.search("没人清运", 20).unwrap()[0].id, rec);
    assert!(s.search("看不见", 20).unwrap().is_empty());
}

#[test]
fn one_and_two_character_queries_still_find() {
    let (s, zhang, rec, task) = search_store();
    // Two characters (trigram cannot match them): a record's word, a task's.
    let hits = s.search("楼道", 20).unwrap();
    assert!(
        hits.iter()
            .any(|h| h.kind == SearchKind::Record && h.id == rec),
        "{hits:?}"
    );
    let hits = s.search("水费", 20).unwrap();
    assert_eq!(
        (hits[0].kind, hits[0].id.as_str()),
        (SearchKind::Task, task.as_str())
    );
    // One character: a resident's name and the households' addresses.
    let hits = s.search("张", 20).unwrap();
    assert_eq!(
        (hits[0].kind, hits[0].id.as_str()),
        (SearchKind::Resident, zhang.as_str())
    );
    let hits = s.search("楼", 50).unwrap();
    let households = hits
        .iter()
        .filter(|h| h.kind == SearchKind::Household)
        .count();
    assert_eq!(households, 2);
    // A LIKE wildcard is a character like any other.
    assert!(s.search("%", 20).unwrap().is_empty());
    assert!(s.search("  ", 20).unwrap().is_empty());
}

#[test]
fn coverage_counts_households_visited_this_month_per_building() {
    let clock = FakeClock::new(FEB_20);
    let mut s = store(wang(), &clock);
    let mut hh = Vec::new();
    for (b, r) in [
        ("3号楼", "101"),
        ("3号楼", "102"),
        ("3号楼", "103"),
        ("5号楼", "101"),
    ] {
        hh.push(
            s.create_household(new_household(
                b,
                "1单元",
                r,
                vec![member("住户", None, None, Relation::Head)],
            ))
            .unwrap(),
        );
    }
    s.add_visit(&hh[3], visit("走访")).unwrap(); // February only
    // 2026-02-28 17:00 UTC is 1 March 01:00 in China: it counts for March.
    clock.set(MAR_2026 - 7 * HOUR);
    s.add_visit(&hh[0], visit("走访")).unwrap();
    clock.set(MAR_10);
    s.add_visit(&hh[1], visit("走访")).unwrap();
    s.add_visit(&hh[1], visit("复访")).unwrap();

    let c = s.visit_coverage(GRID, MAR_10).unwrap();
    assert_eq!(c.month_start, month_start_ms(MAR_10));
    assert_eq!(c.month_start, MAR_2026 - 8 * HOUR);
    assert_eq!((c.registered, c.visited), (4, 2));
    assert!((c.ratio - 0.5).abs() < 1e-9);
    let per: Vec<(&str, i64, i64)> = c
        .buildings
        .iter()
        .map(|b| (b.building.as_str(), b.registered, b.visited))
        .collect();
    assert_eq!(per, vec![("3号楼", 3, 2), ("5号楼", 1, 0)]);

    let not: Vec<String> = s
        .not_visited(GRID, None, MAR_10, 50)
        .unwrap()
        .into_iter()
        .map(|h| h.id)
        .collect();
    // Never visited first, then the longest unvisited.
    assert_eq!(not, vec![hh[2].clone(), hh[3].clone()]);
    let in_5: Vec<String> = s
        .not_visited(GRID, Some("5号楼"), MAR_10, 50)
        .unwrap()
        .into_iter()
        .map(|h| h.id)
        .collect();
    assert_eq!(in_5, vec![hh[3].clone()]);

    // In April nobody is visited yet.
    let april = s.visit_coverage(GRID, MAR_2026 + 40 * DAY).unwrap();
    assert_eq!((april.registered, april.visited), (4, 0));
    // An empty grid is 0, not a division by zero.
    let none = s.visit_coverage("无人网格", MAR_10).unwrap();
    assert_eq!((none.registered, none.ratio), (0, 0.0));
}
