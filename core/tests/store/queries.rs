//! The screens' queries: buildings, resident search, ledgers, task lists, timelines.

use xiuhua_core::{Category, Level, RecordStatus, Relation, Store, TaskAction};

use crate::common::*;

struct Grid {
    s: Store,
    clock: FakeClock,
    zhang_hh: String,
    zhang_id: String,
}

fn grid() -> Grid {
    let clock = FakeClock::new(MAR_2026);
    let mut s = store(wang(), &clock);
    let zhang_id = id_number("11010119620307123");
    let mut add = |building: &str, unit: &str, room: &str, members| {
        clock.advance(60_000);
        s.create_household(new_household(building, unit, room, members))
            .unwrap()
    };
    let zhang_hh = add(
        "3号楼",
        "1单元",
        "101",
        vec![
            member(
                "张三",
                Some("13800001234"),
                Some(zhang_id.clone()),
                Relation::Head,
            ),
            member("李梅", Some("13900005678"), None, Relation::Spouse),
        ],
    );
    add(
        "3号楼",
        "1单元",
        "1101",
        vec![member("曾小明", Some("13700000001"), None, Relation::Head)],
    );
    add(
        "3号楼",
        "2单元",
        "201",
        vec![member("单丽", None, None, Relation::Head)],
    );
    add(
        "3号楼",
        "1单元",
        "102",
        vec![member("赵六", None, None, Relation::Head)],
    );
    add(
        "5号楼",
        "1单元",
        "101",
        vec![member("王五", Some("15000009999"), None, Relation::Head)],
    );
    Grid {
        s,
        clock,
        zhang_hh,
        zhang_id,
    }
}

fn names(hits: &[xiuhua_core::store::ResidentHit]) -> Vec<&str> {
    hits.iter().map(|h| h.name.as_str()).collect()
}

#[test]
fn households_by_building_and_unit_in_natural_order() {
    let g = grid();
    let rooms = |unit: Option<&str>, building: &str| -> Vec<(String, String)> {
        g.s.households_in(GRID, building, unit)
            .unwrap()
            .into_iter()
            .map(|h| (h.unit, h.room))
            .collect()
    };
    let pair = |u: &str, r: &str| (u.to_string(), r.to_string());
    assert_eq!(
        rooms(None, "3号楼"),
        vec![
            pair("1单元", "101"),
            pair("1单元", "102"),
            pair("1单元", "1101"),
            pair("2单元", "201")
        ]
    );
    assert_eq!(rooms(Some("2单元"), "3号楼"), vec![pair("2单元", "201")]);
    assert_eq!(rooms(Some("1单元"), "5号楼"), vec![pair("1单元", "101")]);
    assert!(rooms(None, "9号楼").is_empty());
    assert!(
        g.s.households_in("西城-09", "3号楼", None)
            .unwrap()
            .is_empty(),
        "other grids are not mixed in"
    );
    assert_eq!(
        g.s.buildings(GRID).unwrap(),
        vec![("3号楼".to_string(), 4), ("5号楼".to_string(), 1)]
    );
    let first = &g.s.households_in(GRID, "3号楼", Some("1单元")).unwrap()[0];
    assert_eq!(
        (
            first.id.as_str(),
            first.head_name.as_str(),
            first.member_count
        ),
        (g.zhang_hh.as_str(), "张三", 2)
    );
}

#[test]
fn residents_are_found_by_name_pinyin_initials_and_phone_suffix() {
    let mut g = grid();
    let s = &g.s;
    assert_eq!(names(&s.search_residents("张", 20).unwrap()), vec!["张三"]);
    assert_eq!(names(&s.search_residents("zs", 20).unwrap())[0], "张三");
    assert_eq!(
        names(&s.search_residents("zhangsan", 20).unwrap()),
        vec!["张三"]
    );
    assert_eq!(
        names(&s.search_residents("Zhang San", 20).unwrap()),
        vec!["张三"]
    );
    for q in ["zeng", "ceng", "zengxiaoming", "cengxiaoming", "zxm", "cxm"] {
        assert!(
            names(&s.search_residents(q, 20).unwrap()).contains(&"曾小明"),
            "曾小明 under {q}"
        );
    }
    for q in ["shan", "dan", "shanli", "danli"] {
        assert!(
            names(&s.search_residents(q, 20).unwrap()).contains(&"单丽"),
            "单丽 under {q}"
        );
    }
    assert_eq!(
        names(&s.search_residents("1234", 20).unwrap()),
        vec!["张三"]
    );
    assert_eq!(
        names(&s.search_residents("5678", 20).unwrap()),
        vec!["李梅"]
    );
    assert!(
        s.search_residents("9999", 20)
            .unwrap()
            .iter()
            .all(|h| h.name == "王五")
    );
    assert!(s.search_residents("刘", 20).unwrap().is_empty());
    assert!(s.search_residents("", 20).unwrap().is_empty());
    assert!(
        s.search_residents("%", 20).unwrap().is_empty(),
        "LIKE wildcards are literal"
    );
    assert_eq!(
        s.search_residents("z", 1).unwrap().len(),
        1,
        "the limit holds"
    );

    // Lists mask the ID number; the household screen shows it whole.
    let hit = s.search_residents("张三", 5).unwrap().remove(0);
    let masked = format!(
        "{}{}{}",
        &g.zhang_id[..3],
        "*".repeat(11),
        &g.zhang_id[14..]
    );
    assert_eq!(hit.id_masked.as_deref(), Some(masked.as_str()));
    assert!(
        !hit.id_masked.unwrap().contains("19620307"),
        "the birth date is hidden"
    );
    assert_eq!(hit.household, g.zhang_hh);
    let full = g.s.household(&g.zhang_hh).unwrap();
    assert_eq!(
        full.members[0].id_number.as_deref(),
        Some(g.zhang_id.as_str())
    );
    assert!(
        !g.s.projection_dump().unwrap().contains(&g.zhang_id),
        "the whole ID number is not in the projection"
    );
}

#[test]
fn records_tasks_ledger_and_household_history() {
    let mut g = grid();
    let hh = g.zhang_hh.clone();
    let (s, clock) = (&mut g.s, &g.clock);

    // 民情 records.
    clock.advance(60_000);
    let r1 = s
        .create_record(new_record(Category::Repair, Some(&hh)))
        .unwrap();
    clock.advance(60_000);
    let r2 = s
        .create_record(new_record(Category::Environment, None))
        .unwrap();
    clock.advance(60_000);
    let r3 = s
        .create_record(new_record(Category::Dispute, None))
        .unwrap();
    s.set_record_status(&r1, RecordStatus::InProgress).unwrap();
    s.set_record_status(&r2, RecordStatus::Resolved).unwrap();
    let ids =
        |v: Vec<xiuhua_core::store::RecordSummary>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.records(GRID, None, None, 10).unwrap()),
        vec![r3.clone(), r2.clone(), r1.clone()],
        "newest first"
    );
    assert_eq!(
        ids(s.records(GRID, Some("处理中"), None, 10).unwrap()),
        vec![r1.clone()]
    );
    assert_eq!(
        ids(s.records(GRID, None, Some("环境卫生"), 10).unwrap()),
        vec![r2.clone()]
    );
    assert_eq!(
        ids(s
            .records(GRID, Some("待处理"), Some("矛盾纠纷"), 10)
            .unwrap()),
        vec![r3.clone()]
    );
    assert!(
        s.records(GRID, Some("已回访"), None, 10)
            .unwrap()
            .is_empty()
    );

    // 代办 tasks.
    let mut task = |title: &str,
                    assignee: &str,
                    deadline: Option<i64>,
                    level: Level,
                    household: Option<&str>| {
        clock.advance(60_000);
        let mut t = new_task(title, Some(assignee), deadline, household);
        t.level = level;
        s.create_task(t).unwrap()
    };
    let t1 = task(
        "代缴水费",
        "u-wang",
        Some(MAR_2026 + 3 * DAY),
        Level::Doorstep,
        Some(&hh),
    );
    let t2 = task(
        "老年卡办理",
        "u-wang",
        Some(MAR_2026 + DAY),
        Level::PartyMass,
        None,
    );
    let t3 = task("送米面油", "u-wang", None, Level::Doorstep, None);
    let t4 = task(
        "修理门禁",
        "u-li",
        Some(MAR_2026 + 2 * DAY),
        Level::Compound,
        None,
    );
    let ids =
        |v: Vec<xiuhua_core::store::TaskSummary>| v.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.my_tasks("u-wang").unwrap()),
        vec![t2.clone(), t1.clone(), t3.clone()],
        "soonest deadline first"
    );
    assert_eq!(ids(s.my_tasks("u-li").unwrap()), vec![t4.clone()]);
    assert_eq!(
        ids(s.tasks(GRID, Some("上门办"), None, 10).unwrap()),
        vec![t1.clone(), t3.clone()]
    );
    assert_eq!(
        ids(s.tasks(GRID, Some("党群办"), Some("assigned"), 10).unwrap()),
        vec![t2.clone()]
    );

    s.task_action(&t1, TaskAction::Accept).unwrap();
    assert_eq!(
        ids(s.tasks(GRID, None, Some("in_progress"), 10).unwrap()),
        vec![t1.clone()]
    );
    s.task_action(
        &t1,
        TaskAction::Complete {
            result: "已缴清".into(),
        },
    )
    .unwrap();
    s.task_action(&t3, TaskAction::Accept).unwrap();
    s.task_action(
        &t3,
        TaskAction::Complete {
            result: "已送到".into(),
        },
    )
    .unwrap();
    assert_eq!(
        ids(s.my_tasks("u-wang").unwrap()),
        vec![t2.clone()],
        "done tasks leave my list"
    );
    s.task_action(
        &t1,
        TaskAction::Rate {
            score: 5,
            comment: "很满意".into(),
        },
    )
    .unwrap();
    s.task_action(
        &t3,
        TaskAction::Rate {
            score: 3,
            comment: "还行".into(),
        },
    )
    .unwrap();
    assert_eq!(
        ids(s.tasks(GRID, None, Some("closed"), 10).unwrap()),
        vec![t1.clone(), t3.clone()]
    );

    let ledger = s.ledger(GRID).unwrap();
    assert_eq!(ledger.rated_tasks, 2);
    assert_eq!(ledger.average_satisfaction, Some(4.0));
    assert_eq!(ledger.households, 5);
    assert_eq!(ledger.residents, 6);
    assert_eq!(ledger.overdue_tasks, 0);
    let count = |v: &[(String, String, i64)], a: &str, b: &str| {
        v.iter().find(|(x, y, _)| x == a && y == b).map(|t| t.2)
    };
    assert_eq!(count(&ledger.records, "设施报修", "处理中"), Some(1));
    assert_eq!(count(&ledger.records, "环境卫生", "已办结"), Some(1));
    assert_eq!(count(&ledger.records, "矛盾纠纷", "待处理"), Some(1));
    assert_eq!(ledger.records.iter().map(|r| r.2).sum::<i64>(), 3);
    assert_eq!(count(&ledger.tasks, "上门办", "closed"), Some(2));
    assert_eq!(count(&ledger.tasks, "党群办", "assigned"), Some(1));
    assert_eq!(count(&ledger.tasks, "小区办", "assigned"), Some(1));
    assert_eq!(ledger.tasks.iter().map(|r| r.2).sum::<i64>(), 4);

    // The household's timeline: its visit, its record, its task and its changes, newest first.
    clock.advance(60_000);
    let v = s.add_visit(&hh, visit("入户走访")).unwrap();
    let timeline = s.household_history(&hh).unwrap();
    let has = |kind: &str, id: &str| timeline.iter().any(|e| e.kind == kind && e.id == id);
    assert!(has("visit", &v), "{timeline:?}");
    assert!(has("record", &r1), "{timeline:?}");
    assert!(has("task", &t1), "{timeline:?}");
    assert!(
        !has("record", &r2) && !has("task", &t2),
        "other households' items stay out"
    );
    assert_eq!(
        timeline.iter().filter(|e| e.kind == "change").count(),
        2,
        "register + visit"
    );
    assert!(
        timeline.windows(2).all(|w| w[0].at >= w[1].at),
        "newest first: {timeline:?}"
    );
    assert!(timeline.iter().any(|e| e.who == "王伟"));
}
