//! Bad input is refused with a clear error and nothing is written.

use xiuhua_core::{Error, Relation, Store, Tag, TaskAction};

use crate::common::*;

/// Asserts `r` is `Error::Invalid` naming `field`, and that the store wrote nothing.
fn assert_invalid<T: std::fmt::Debug>(
    s: &Store,
    before: &(i64, String),
    r: xiuhua_core::Result<T>,
    field: &str,
) {
    match r {
        Err(Error::Invalid { field: f, reason }) => {
            assert!(
                f.contains(field),
                "expected the error to name {field}, got {f}: {reason}"
            );
            assert!(!reason.is_empty());
        }
        other => panic!("expected Invalid({field}), got {other:?}"),
    }
    assert_eq!(s.outbox_len().unwrap(), before.0, "nothing queued to send");
    assert_eq!(dump(s), before.1, "nothing written");
}

#[test]
fn bad_input_is_refused_and_nothing_is_written() {
    let clock = FakeClock::new(MAR_2026);
    let mut s = store(wang(), &clock);
    let hh = s.create_household(zhang_household()).unwrap();
    let member_id = s.household(&hh).unwrap().members[0].id.clone();
    let task = s
        .create_task(new_task(
            "代办医保",
            Some("u-wang"),
            Some(MAR_2026 + 3 * DAY),
            Some(&hh),
        ))
        .unwrap();
    let before = (s.outbox_len().unwrap(), dump(&s));
    let household_before = s.household(&hh).unwrap();

    // Empty name, as a new household's member and as an added member.
    let r = s.create_household(new_household(
        "3号楼",
        "1单元",
        "102",
        vec![member("  ", None, None, Relation::Head)],
    ));
    assert_invalid(&s, &before, r, "name");
    let r = s.add_member(&hh, member("", None, None, Relation::Child));
    assert_invalid(&s, &before, r, "name");

    // A 10-digit phone number.
    let r = s.set_member_phone(&hh, &member_id, Some("1380013800"));
    assert_invalid(&s, &before, r, "phone");
    let r = s.add_member(
        &hh,
        member("张小花", Some("1380013800"), None, Relation::Child),
    );
    assert_invalid(&s, &before, r, "phone");

    // An ID number with a wrong check digit.
    let good = id_number("11010119900307123");
    let last = good.chars().last().unwrap();
    let wrong = format!("{}{}", &good[..17], if last == '0' { '1' } else { '0' });
    let r = s.add_member(
        &hh,
        member("张小花", None, Some(wrong.clone()), Relation::Child),
    );
    assert_invalid(&s, &before, r, "id_number");
    let r = s.create_household(new_household(
        "3号楼",
        "1单元",
        "102",
        vec![member("李四", None, Some(wrong), Relation::Head)],
    ));
    assert_invalid(&s, &before, r, "id_number");

    // An unknown tag string (from an old app or a typo in an import).
    match Tag::parse("低保户") {
        Err(Error::Invalid { reason, .. }) => {
            assert!(reason.contains("低保"), "lists the valid tags: {reason}")
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert_eq!(Tag::parse("低保").unwrap(), Tag::Dibao);

    // A task whose deadline is before its creation.
    let r = s.create_task(new_task("代办社保", None, Some(MAR_2026 - DAY), None));
    assert_invalid(&s, &before, r, "deadline");
    let r = s.task_action(
        &task,
        TaskAction::ChangeDeadline {
            deadline: MAR_2026 - HOUR,
        },
    );
    assert_invalid(&s, &before, r, "deadline");

    // A rating of 6 (or 0).
    for score in [6, 0] {
        let r = s.task_action(
            &task,
            TaskAction::Rate {
                score,
                comment: "很好".into(),
            },
        );
        assert_invalid(&s, &before, r, "score");
    }

    // Empty or overlong texts.
    let r = s.add_visit(&hh, visit("  "));
    assert_invalid(&s, &before, r, "purpose");
    let r = s.set_household_note(&hh, &"很".repeat(2001));
    assert_invalid(&s, &before, r, "note");
    let r = s.task_action(&task, TaskAction::Cancel { reason: " ".into() });
    assert_invalid(&s, &before, r, "reason");

    assert_eq!(s.household(&hh).unwrap(), household_before);
    assert_eq!(
        s.task(&task).unwrap().task.events.len(),
        2,
        "order and assign only"
    );

    // The same store still accepts good input.
    s.set_member_phone(&hh, &member_id, Some("+86 139-1111-2222"))
        .unwrap();
    assert_eq!(
        s.household(&hh).unwrap().members[0].phone.as_deref(),
        Some("13911112222")
    );
    assert_eq!(s.outbox_len().unwrap(), before.0 + 1);
}

#[test]
fn an_actor_without_a_name_or_device_is_refused() {
    assert!(matches!(
        xiuhua_core::Actor::new("u-1", " ", xiuhua_core::Role::GridMember, "dev"),
        Err(Error::Invalid { .. })
    ));
    assert!(matches!(
        xiuhua_core::Actor::new("u-1", "王伟", xiuhua_core::Role::GridMember, ""),
        Err(Error::Invalid { .. })
    ));
}

#[test]
fn a_record_or_task_naming_a_household_of_another_grid_is_refused_on_the_phone() {
    let clock = FakeClock::new(MAR_2026);
    let mut s = store(wang(), &clock);
    let mut other = zhang_household();
    other.address = xiuhua_core::Address::new("西城-02", "1号楼", "1单元", "101").unwrap();
    let hh = s.create_household(other).unwrap();
    let before = (s.outbox_len().unwrap(), dump(&s));
    let r = s.create_record(new_record(xiuhua_core::Category::Repair, Some(&hh)));
    assert_invalid(&s, &before, r, "household");
    let r = s.create_task(new_task("代办", None, None, Some(&hh)));
    assert_invalid(&s, &before, r, "household");
    // Its own grid's household is fine.
    let mut mine = new_record(xiuhua_core::Category::Repair, Some(&hh));
    mine.grid = "西城-02".into();
    s.create_record(mine).unwrap();
}
