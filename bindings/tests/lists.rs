//! The lists through the bindings: the home list with its reasons, pages with filters given
//! as strings (an unknown one is an `InvalidInput` naming its field), search without ID or
//! phone numbers, coverage.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use xiuhua_ffi::*;

fn actor() -> Actor {
    Actor {
        user: "u-wang".into(),
        name: "王伟".into(),
        role: "网格员".into(),
        device: "dev-1".into(),
    }
}

fn household(room: &str, name: &str) -> NewHousehold {
    NewHousehold {
        address: Address {
            grid: "grid-1".into(),
            building: "1号楼".into(),
            unit: "1单元".into(),
            room: room.into(),
        },
        members: vec![NewMember {
            name: name.into(),
            gender: "男".into(),
            birth_year: 1950,
            phone: Some("13800001234".into()),
            id_number: Some("11010519491231002X".into()),
            relation: "户主".into(),
            tags: vec!["独居老人".into()],
        }],
        tags: vec![],
        note: String::new(),
    }
}

#[test]
fn lists_search_and_coverage_through_the_bindings() {
    let s = XiuhuaStore::open_in_memory(actor()).unwrap();
    let hh = s.create_household(household("101", "张三")).unwrap();
    let visited = s.create_household(household("102", "李四")).unwrap();
    s.add_visit(
        visited.clone(),
        NewVisit {
            purpose: "走访".into(),
            note: String::new(),
            follow_up: None,
        },
    )
    .unwrap();
    let task = s
        .create_task(NewTask {
            grid: "grid-1".into(),
            level: "上门办".into(),
            category: "代办服务".into(),
            title: "代缴水费".into(),
            description: String::new(),
            household: Some(hh.clone()),
            source_record: None,
            assignee: Some("u-wang".into()),
            deadline: Some(s.now_ms().unwrap() + 3_600_000),
        })
        .unwrap();
    let rec = s
        .create_record(NewRecord {
            grid: "grid-1".into(),
            category: "环境卫生".into(),
            description: "楼道堆满杂物".into(),
            reporter: "张三".into(),
            household: Some(hh.clone()),
            building: None,
            place: "楼道".into(),
        })
        .unwrap();

    let home = s.home_list("grid-1".into(), 10).unwrap();
    let reasons: Vec<HomeReason> = home.iter().map(|i| i.reason).collect();
    assert_eq!(reasons, vec![HomeReason::DueSoon, HomeReason::NotVisited]);
    assert_eq!(home[0].task.as_ref().unwrap().id, task);
    assert_eq!(home[0].task.as_ref().unwrap().status_label, "已派单");
    assert_eq!(home[1].household.as_ref().unwrap().id, hh);

    let page = s
        .record_page(
            "grid-1".into(),
            RecordFilter {
                tag: Some("独居老人".into()),
                ..Default::default()
            },
            None,
            10,
        )
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].id, rec);
    assert_eq!(page.items[0].address.as_ref().unwrap().head_name, "张三");
    let tasks = s
        .task_page(
            "grid-1".into(),
            TaskFilter {
                level: Some("上门办".into()),
                ..Default::default()
            },
            None,
            10,
        )
        .unwrap();
    assert_eq!(tasks.items.len(), 1);

    for (filter, field) in [
        (
            RecordFilter {
                tag: Some("不存在".into()),
                ..Default::default()
            },
            "Tag",
        ),
        (
            RecordFilter {
                status: Some("done".into()),
                ..Default::default()
            },
            "RecordStatus",
        ),
    ] {
        match s.record_page("grid-1".into(), filter, None, 10) {
            Err(XiuhuaError::InvalidInput { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{other:?}"),
        }
    }
    match s.task_page("grid-1".into(), TaskFilter::default(), Some("x".into()), 10) {
        Err(XiuhuaError::InvalidInput { field, .. }) => assert_eq!(field, "cursor"),
        other => panic!("{other:?}"),
    }

    let hits = s.search("zs".into(), 10).unwrap();
    assert_eq!(hits[0].kind, SearchKind::Resident);
    assert_eq!(hits[0].title, "张三");
    let shown = format!("{:?}", s.search("1234".into(), 10).unwrap());
    assert!(!shown.contains("13800001234") && !shown.contains("11010519491231002X"));
    let hits = s.search("杂物".into(), 10).unwrap();
    assert!(
        hits.iter()
            .any(|h| h.kind == SearchKind::Record && h.id == rec)
    );

    let c = s.visit_coverage("grid-1".into()).unwrap();
    assert_eq!((c.registered, c.visited), (2, 1));
    assert_eq!(c.buildings.len(), 1);
    let not = s.not_visited("grid-1".into(), None, 10).unwrap();
    assert_eq!(
        not.iter().map(|h| h.id.clone()).collect::<Vec<_>>(),
        vec![hh]
    );
    assert!(s.grid_people("grid-1".into()).unwrap().is_empty());
}
