//! A 楼门长's write outside their buildings is refused on the phone, before anything is
//! saved, with the message the server would give; inside them, and for whole-grid roles,
//! everything works as before.

use xiuhua_core::sync::proto::Grant;
use xiuhua_core::{Category, Error, Role};

use super::common::*;

fn leader_of(buildings: &[&str], clock: &FakeClock) -> xiuhua_core::Store {
    let mut s = store(actor("u-li", "李强", Role::BuildingLeader, "dev-l"), clock);
    s.save_grants(&[Grant {
        grid: GRID.into(),
        role: "楼门长".into(),
        buildings: buildings.iter().map(|b| b.to_string()).collect(),
        ..Default::default()
    }])
    .unwrap();
    s
}

fn refused(r: xiuhua_core::Result<impl std::fmt::Debug>) -> String {
    match r {
        Err(Error::Refused(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_building_leader_writes_only_their_buildings_with_the_servers_message() {
    let clock = FakeClock::new(MAR_2026);
    let mut li = leader_of(&["3号楼"], &clock);
    let mine = li.create_household(zhang_household()).unwrap();
    let outbox = li.outbox_len().unwrap();

    // A household in another building: refused, nothing saved.
    let why = refused(li.create_household(new_household("5号楼", "1单元", "101", vec![])));
    assert!(
        why.ends_with(
            "as 楼门长 in grid 东城-01, user u-li may write only buildings [3号楼], not building 5号楼; nothing was stored"
        ),
        "{why}"
    );
    assert!(why.starts_with("document hh-"), "{why}");
    // Moving one of theirs out of their buildings: refused, and it stays where it was.
    let why = refused(li.move_household(&mine, "5号楼", "1单元", "101"));
    assert!(why.contains("not building 5号楼"), "{why}");
    assert_eq!(li.household(&mine).unwrap().address.building, "3号楼");
    // A record about another building, or about no building at all.
    let mut rec = new_record(Category::Environment, None);
    rec.building = Some("9号楼".into());
    assert!(refused(li.create_record(rec.clone())).contains("not building 9号楼"));
    rec.building = None;
    assert!(refused(li.create_record(rec.clone())).contains("not building (none)"));
    assert_eq!(
        li.outbox_len().unwrap(),
        outbox,
        "nothing refused reached the outbox"
    );

    // Inside their building everything works: a record about their household, a visit,
    // a task about it.
    rec.household = Some(mine.clone());
    let r = li.create_record(rec).unwrap();
    li.add_visit(&mine, visit("入户走访")).unwrap();
    li.create_task(new_task("代办", None, None, Some(&mine)))
        .unwrap();
    li.set_record_place(&r, "3号楼门口").unwrap();
    assert_eq!(li.outbox_len().unwrap(), outbox + 4);
}

#[test]
fn whole_grid_roles_and_stores_without_grants_are_not_limited() {
    let clock = FakeClock::new(MAR_2026);
    let mut w = store(wang(), &clock);
    w.create_household(new_household("5号楼", "1单元", "101", vec![]))
        .unwrap();
    w.save_grants(&[Grant {
        grid: GRID.into(),
        role: "网格员".into(),
        ..Default::default()
    }])
    .unwrap();
    w.create_household(new_household("9号楼", "1单元", "101", vec![]))
        .unwrap();
}
