//! Wrong phone clocks must not reorder history or fake deadlines.

use xiuhua_core::{EventKind, TaskAction};

use crate::common::*;

#[test]
fn a_phone_reset_to_1970_keeps_history_in_order_until_anchored() {
    let clock = FakeClock::new(MAR_2026);
    let mut s = store(wang(), &clock);
    let hh = s.create_household(zhang_household()).unwrap();
    let task = s
        .create_task(new_task(
            "代缴燃气费",
            Some("u-wang"),
            Some(MAR_2026 + 7 * DAY),
            Some(&hh),
        ))
        .unwrap();
    clock.advance(HOUR);
    let v1 = s.add_visit(&hh, visit("入户走访")).unwrap();
    let last_before = s
        .task(&task)
        .unwrap()
        .task
        .events
        .values()
        .map(|e| e.hlc)
        .max()
        .unwrap();

    // Battery swap: the phone says 1970-01-01.
    clock.set(0);
    assert!(
        s.now_ms() >= MAR_2026 + HOUR,
        "never-anchored now is not earlier than what it already saw: {}",
        s.now_ms()
    );
    let v2 = s.add_visit(&hh, visit("回访")).unwrap();
    let h = s.household(&hh).unwrap();
    let (a1, a2) = (
        h.visits.iter().find(|v| v.id == v1).unwrap().at,
        h.visits.iter().find(|v| v.id == v2).unwrap().at,
    );
    assert!(
        a2 >= a1,
        "the 1970 visit is not dated before the 2026 one: {a2} < {a1}"
    );
    assert!(a2 >= MAR_2026);
    let t = s
        .task_action(
            &task,
            TaskAction::Note {
                text: "电池换过了".into(),
            },
        )
        .unwrap();
    let note = t
        .task
        .events
        .values()
        .find(|e| e.kind == EventKind::Note.as_str())
        .unwrap();
    assert!(
        note.hlc > last_before,
        "the new event sorts after the old ones"
    );
    assert_eq!(
        t.view.events.last().unwrap().event.id,
        note.id,
        "and is folded last"
    );
    assert!(!t.overdue, "next week's deadline is not past");
    let history = s.history(&hh).unwrap();
    assert!(
        history.windows(2).all(|w| w[0].at_ms <= w[1].at_ms),
        "{history:?}"
    );

    // A peer that receives everything sees the same order.
    let peer_clock = FakeClock::new(MAR_2026 + 2 * HOUR);
    let mut peer = store(li(), &peer_clock);
    share_all(&mut s, &mut peer);
    assert_eq!(peer.task(&task).unwrap().view, s.task(&task).unwrap().view);

    // Anchored at the next sync: now is the server's 2026 time.
    let server = MAR_2026 + DAY;
    s.anchor_clock(server).unwrap();
    assert_eq!(s.now_ms(), server);
    clock.advance(5_000);
    assert_eq!(
        s.now_ms(),
        server + 5_000,
        "then runs with the device clock"
    );
    let t = s.task_action(&task, TaskAction::Accept).unwrap();
    let accept = t
        .task
        .events
        .values()
        .find(|e| e.kind == EventKind::Accept.as_str())
        .unwrap();
    assert!(accept.hlc > note.hlc);
    assert_eq!(t.view.events.last().unwrap().event.id, accept.id);
}

#[test]
fn a_phone_a_year_ahead_gets_deadlines_right_once_anchored() {
    let year = 365 * DAY;
    let ahead = FakeClock::new(MAR_2026 + year);
    let mut s = store(li(), &ahead);
    // It has already worked with the wrong clock.
    let hh = s.create_household(zhang_household()).unwrap();
    // A task from a colleague whose clock is right, due next week.
    let right = FakeClock::new(MAR_2026);
    let mut colleague = store(wang(), &right);
    let peer_task = colleague
        .create_task(new_task(
            "上门办理养老认证",
            Some("u-wang"),
            Some(MAR_2026 + 7 * DAY),
            None,
        ))
        .unwrap();
    share_all(&mut colleague, &mut s);

    s.anchor_clock(MAR_2026).unwrap();
    assert_eq!(s.now_ms(), MAR_2026);
    let own_task = s
        .create_task(new_task(
            "送药上门",
            Some("u-li"),
            Some(MAR_2026 + 7 * DAY),
            Some(&hh),
        ))
        .unwrap();
    assert!(
        s.overdue_tasks(GRID).unwrap().is_empty(),
        "next week's deadlines are not past"
    );
    assert!(!s.task(&peer_task).unwrap().overdue);
    assert!(!s.task(&own_task).unwrap().overdue);
    assert_eq!(s.ledger(GRID).unwrap().overdue_tasks, 0);

    // A deadline that passes on the anchored clock is overdue.
    let soon = s
        .create_task(new_task(
            "更换楼道灯",
            Some("u-li"),
            Some(MAR_2026 + HOUR),
            None,
        ))
        .unwrap();
    assert!(s.overdue_tasks(GRID).unwrap().is_empty());
    ahead.advance(2 * HOUR);
    let overdue: Vec<String> = s
        .overdue_tasks(GRID)
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(overdue, vec![soon.clone()]);
    assert!(s.task(&soon).unwrap().overdue);
    assert_eq!(s.ledger(GRID).unwrap().overdue_tasks, 1);

    // Done work is never overdue.
    s.task_action(&soon, TaskAction::Accept).unwrap();
    s.task_action(
        &soon,
        TaskAction::Complete {
            result: "已更换".into(),
        },
    )
    .unwrap();
    assert!(s.overdue_tasks(GRID).unwrap().is_empty());
    assert!(!s.task(&soon).unwrap().overdue);
}
