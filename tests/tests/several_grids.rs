//! A worker who covers two grids (issue 10, item 6): the phone holds both, and each action
//! is signed with the role held on that grid, which the server checks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use xiuhua_core::Error;
use xiuhua_core::model::TaskAction;
use xiuhua_e2e::*;

#[test]
fn each_action_carries_the_role_held_on_its_grid() {
    let server = Server::with_directory();
    server.admin(&["user", "add", "u-two", "孙丽"]);
    server.admin(&["grant", "u-two", "--grid", "g1", "--role", "网格员"]);
    server.admin(&["grant", "u-two", "--grid", "g2", "--role", "社区工作者"]);
    let mut p = server.enroll("u-two");
    p.sync().unwrap();
    let mut grids = p.store.sync_grids().unwrap();
    grids.sort();
    assert_eq!(grids, ["g1", "g2"], "both grids on the phone");

    let mut mine = task("g1", None, "网格一的代办");
    mine.assignee = Some("u-two".into());
    let t1 = p.store.create_task(mine).unwrap();
    let t2 = p
        .store
        .create_task(task("g2", None, "网格二的代办"))
        .unwrap();
    let role_of_order =
        |s: &mut xiuhua_core::Store, t: &str| s.task(t).unwrap().view.events[0].event.role.clone();
    assert_eq!(role_of_order(&mut p.store, &t1), "网格员");
    assert_eq!(role_of_order(&mut p.store, &t2), "社区工作者");
    // 督单 is a community role's: allowed on g2, refused on g1 — on the phone already.
    let nudge = TaskAction::Supervise {
        text: "请尽快".into(),
        new_deadline: None,
    };
    p.store
        .task_action(
            &t2,
            TaskAction::Assign {
                assignee: "u-wang".into(),
            },
        )
        .unwrap();
    p.store.task_action(&t2, nudge.clone()).unwrap();
    assert!(matches!(
        p.store.task_action(&t1, nudge),
        Err(Error::Refused(_))
    ));
    // The server accepts every event as signed: each role is the one held there.
    let r = p.sync().unwrap();
    assert_eq!(r.pushed, 4, "{r:?}");
    assert!(p.store.refused_changes().unwrap().is_empty());
    let mut other = server.enroll("u-zhao");
    other.sync().unwrap();
    let seen = other.store.task(&t2).unwrap();
    let kinds: Vec<(&str, &str)> = seen
        .view
        .events
        .iter()
        .map(|f| (f.event.kind.as_str(), f.event.role.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("order", "社区工作者"),
            ("assign", "社区工作者"),
            ("supervise", "社区工作者")
        ]
    );
}
