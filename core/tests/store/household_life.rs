//! A household's life on two phones: tags edited concurrently, members who move out or die,
//! a household that leaves the grid, and a visit corrected by the one who made it.

use xiuhua_core::{Error, MemberStatus, NewVisit, Relation, Tag};

use crate::common::*;

fn tags_of(s: &mut xiuhua_core::Store, hh: &str) -> Vec<Tag> {
    s.household(hh).unwrap().tags
}

#[test]
fn the_same_tag_added_on_two_phones_is_there_once() {
    let clock = FakeClock::new(MAR_2026);
    let mut a = store(wang(), &clock);
    let mut b = store(li(), &clock);
    let hh = a.create_household(zhang_household()).unwrap();
    share_all(&mut a, &mut b);

    clock.advance(60_000);
    a.set_household_tags(&hh, &[Tag::Relocated, Tag::Dibao])
        .unwrap();
    b.set_household_tags(&hh, &[Tag::Relocated, Tag::Dibao])
        .unwrap();
    share_all(&mut a, &mut b);
    share_all(&mut b, &mut a);

    // Tags are listed in the vocabulary's order.
    assert_eq!(tags_of(&mut a, &hh), vec![Tag::Relocated, Tag::Dibao]);
    assert_eq!(tags_of(&mut b, &hh), vec![Tag::Relocated, Tag::Dibao]);
    assert_eq!(dump(&a), dump(&b));
    assert!(
        !dump(&a).contains("低保,低保"),
        "the projection lists a tag once: {}",
        dump(&a)
    );

    // The next edit on either phone leaves one copy in the document itself.
    a.set_household_tags(&hh, &[Tag::Dibao, Tag::Relocated, Tag::Veteran])
        .unwrap();
    share_all(&mut a, &mut b);
    assert_eq!(
        tags_of(&mut b, &hh),
        vec![Tag::Relocated, Tag::Dibao, Tag::Veteran]
    );
}

#[test]
fn two_phones_removing_different_tags_both_remove_theirs() {
    let clock = FakeClock::new(MAR_2026);
    let mut a = store(wang(), &clock);
    let mut b = store(li(), &clock);
    let hh = a.create_household(zhang_household()).unwrap();
    a.set_household_tags(&hh, &[Tag::Relocated, Tag::Dibao, Tag::EmptyNest])
        .unwrap();
    share_all(&mut a, &mut b);

    clock.advance(60_000);
    // A removes 回迁, B removes 低保 and adds 独居老人: each edit survives the merge.
    a.set_household_tags(&hh, &[Tag::Dibao, Tag::EmptyNest])
        .unwrap();
    b.set_household_tags(&hh, &[Tag::Relocated, Tag::EmptyNest, Tag::LivingAlone])
        .unwrap();
    share_all(&mut a, &mut b);
    share_all(&mut b, &mut a);

    let want = vec![Tag::LivingAlone, Tag::EmptyNest];
    let mut got = tags_of(&mut a, &hh);
    got.sort();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(got, want_sorted, "A");
    let mut got_b = tags_of(&mut b, &hh);
    got_b.sort();
    assert_eq!(got_b, want_sorted, "B");
    assert_eq!(dump(&a), dump(&b));
}

#[test]
fn a_members_tags_merge_as_a_set_too() {
    let clock = FakeClock::new(MAR_2026);
    let mut a = store(wang(), &clock);
    let mut b = store(li(), &clock);
    let hh = a.create_household(zhang_household()).unwrap();
    let m = a.household(&hh).unwrap().members[0].id.clone();
    share_all(&mut a, &mut b);

    let with = |tags: Vec<Tag>| {
        let mut x = member("张三", Some("13800001234"), None, Relation::Head);
        x.tags = tags;
        x
    };
    a.update_member(&hh, &m, with(vec![Tag::PartyMember, Tag::Veteran]))
        .unwrap();
    b.update_member(&hh, &m, with(vec![Tag::Veteran])).unwrap();
    share_all(&mut a, &mut b);
    share_all(&mut b, &mut a);
    let tags = |s: &mut xiuhua_core::Store| s.household(&hh).unwrap().members[0].tags.clone();
    assert_eq!(tags(&mut a), vec![Tag::PartyMember, Tag::Veteran]);
    assert_eq!(tags(&mut b), vec![Tag::PartyMember, Tag::Veteran]);
}

#[test]
fn a_member_who_moved_out_or_died_stays_on_record_with_that_status() {
    let clock = FakeClock::new(MAR_2026);
    let mut a = store(wang(), &clock);
    let mut b = store(li(), &clock);
    let hh = a
        .create_household(new_household(
            "3号楼",
            "1单元",
            "101",
            vec![
                member("张三", Some("13800001234"), None, Relation::Head),
                member("张小明", None, None, Relation::Child),
            ],
        ))
        .unwrap();
    let ids: Vec<String> = a
        .household(&hh)
        .unwrap()
        .members
        .iter()
        .map(|m| m.id.clone())
        .collect();

    clock.advance(DAY);
    a.set_member_status(&hh, &ids[1], MemberStatus::MovedOut)
        .unwrap();
    clock.advance(DAY);
    a.set_member_status(&hh, &ids[0], MemberStatus::Deceased)
        .unwrap();
    share_all(&mut a, &mut b);

    let h = b.household(&hh).unwrap();
    assert_eq!(h.members.len(), 2, "nobody is deleted");
    assert_eq!(h.members[0].status, Some(MemberStatus::Deceased));
    assert_eq!(h.members[1].status, Some(MemberStatus::MovedOut));
    // Search still finds them, saying so; the household counts only who lives there.
    let hits = b.search_residents("张小明", 10).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].status.as_deref(), Some("迁出"));
    let row = &b.households_in(GRID, "3号楼", None).unwrap()[0];
    assert_eq!(row.member_count, 0, "{row:?}");

    // Back again: the status is cleared.
    a.set_member_status(&hh, &ids[1], MemberStatus::Living)
        .unwrap();
    share_all(&mut a, &mut b);
    assert_eq!(b.household(&hh).unwrap().members[1].status, None);
    assert_eq!(
        b.households_in(GRID, "3号楼", None).unwrap()[0].member_count,
        1
    );

    let r = a.set_member_status(&hh, "m-nobody", MemberStatus::MovedOut);
    assert!(matches!(r, Err(Error::NotFound(_))), "{r:?}");
    assert_eq!(dump(&a), dump(&b));
}

#[test]
fn a_household_that_moved_out_leaves_the_building_list_but_not_the_store() {
    let clock = FakeClock::new(MAR_2026);
    let mut a = store(wang(), &clock);
    let mut b = store(li(), &clock);
    let hh = a.create_household(zhang_household()).unwrap();
    clock.advance(DAY);
    a.set_household_moved_out(&hh, true).unwrap();
    share_all(&mut a, &mut b);

    assert!(b.households_in(GRID, "3号楼", None).unwrap().is_empty());
    // Nor is it counted by the visit coverage or listed as not visited.
    let now = MAR_2026 + 2 * DAY;
    assert_eq!(b.visit_coverage(GRID, now).unwrap().registered, 0);
    assert!(b.not_visited(GRID, None, now, 10).unwrap().is_empty());
    assert!(b.buildings(GRID).unwrap().is_empty());
    let h = b.household(&hh).unwrap();
    assert_eq!(h.moved_out_at, Some(MAR_2026 + DAY));
    // Its records can still be read, and it can come back.
    a.set_household_moved_out(&hh, false).unwrap();
    share_all(&mut a, &mut b);
    assert_eq!(b.households_in(GRID, "3号楼", None).unwrap().len(), 1);
    assert_eq!(b.household(&hh).unwrap().moved_out_at, None);
    assert_eq!(b.visit_coverage(GRID, now).unwrap().registered, 1);
}

#[test]
fn a_visit_is_corrected_by_its_author_only() {
    let clock = FakeClock::new(MAR_2026);
    let mut a = store(wang(), &clock);
    let mut b = store(li(), &clock);
    let hh = a.create_household(zhang_household()).unwrap();
    let v = a.add_visit(&hh, visit("入户走访")).unwrap();
    share_all(&mut a, &mut b);

    clock.advance(HOUR);
    a.update_visit(
        &hh,
        &v,
        NewVisit {
            purpose: "入户走访".into(),
            note: "血压偏高，已提醒复查".into(),
            follow_up: Some("下周回访".into()),
        },
    )
    .unwrap();
    share_all(&mut a, &mut b);
    let got = b.household(&hh).unwrap().visits[0].clone();
    assert_eq!(got.note, "血压偏高，已提醒复查");
    assert_eq!(got.follow_up.as_deref(), Some("下周回访"));
    assert_eq!(got.at, MAR_2026, "when the visit happened does not change");

    let before = dump(&b);
    let r = b.update_visit(&hh, &v, visit("改别人的"));
    assert!(matches!(r, Err(Error::Refused(_))), "{r:?}");
    assert_eq!(dump(&b), before, "nothing written");
    assert!(b.outbox(10).unwrap().is_empty());

    let r = a.update_visit(&hh, "v-nobody", visit("x"));
    assert!(matches!(r, Err(Error::NotFound(_))), "{r:?}");
    let r = a.update_visit(&hh, &v, visit(" "));
    assert!(matches!(r, Err(Error::Invalid { .. })), "{r:?}");
}
