//! History says what changed: each change's fields with their old and new values (a
//! member named by name, text as text, tag lists as lists), ID numbers masked.

use xiuhua_core::{Category, FieldChange, Relation, Tag};

use super::common::*;

fn field<'a>(fields: &'a [FieldChange], name: &str) -> &'a FieldChange {
    fields
        .iter()
        .find(|f| f.field == name)
        .unwrap_or_else(|| panic!("no field {name} in {fields:?}"))
}

#[test]
fn history_lists_each_changes_fields_old_and_new_with_id_numbers_masked() {
    let clock = FakeClock::new(MAR_2026);
    let mut s = store(wang(), &clock);
    let old_id = id_number("11010519491231002");
    let hh = s
        .create_household(new_household(
            "3号楼",
            "1单元",
            "101",
            vec![member(
                "张三",
                Some("13800001234"),
                Some(old_id.clone()),
                Relation::Head,
            )],
        ))
        .unwrap();
    let m = s.household(&hh).unwrap().members[0].id.clone();
    s.set_member_phone(&hh, &m, Some("13912345678")).unwrap();
    let new_id = id_number("11010519500101003");
    s.update_member(
        &hh,
        &m,
        member(
            "张三",
            Some("13912345678"),
            Some(new_id.clone()),
            Relation::Head,
        ),
    )
    .unwrap();
    s.set_household_note(&hh, "老住户，独居").unwrap();
    s.set_household_tags(&hh, &[Tag::Relocated, Tag::LivingAlone])
        .unwrap();

    let h = s.history(&hh).unwrap();
    assert_eq!(h.len(), 5);
    assert!(
        h[0].fields.is_empty(),
        "the registration: everything was new"
    );
    let phone = field(&h[1].fields, "members[张三].phone");
    assert_eq!(phone.old.as_deref(), Some("13800001234"));
    assert_eq!(phone.new.as_deref(), Some("13912345678"));
    assert_eq!(h[1].fields.len(), 1, "{:?}", h[1].fields);
    let id = field(&h[2].fields, "members[张三].id_number");
    assert_eq!(
        id.old.as_deref(),
        Some(xiuhua_core::validate::mask_id(&old_id).as_str())
    );
    assert_eq!(
        id.new.as_deref(),
        Some(xiuhua_core::validate::mask_id(&new_id).as_str())
    );
    for e in &h {
        for f in &e.fields {
            for v in [&f.old, &f.new].into_iter().flatten() {
                assert!(
                    !v.contains(&old_id[6..14]) && !v.contains(&new_id[6..14]),
                    "{f:?}"
                );
            }
        }
    }
    let note = field(&h[3].fields, "note");
    assert_eq!(note.old.as_deref(), Some("老住户"));
    assert_eq!(note.new.as_deref(), Some("老住户，独居"));
    let tags = field(&h[4].fields, "tags");
    assert_eq!(tags.old.as_deref(), Some("回迁"), "{tags:?}");
    assert_eq!(tags.new.as_deref(), Some("回迁、独居老人"));
    assert!(
        tags.new.as_deref().is_some_and(|t| t.contains("独居老人")),
        "{tags:?}"
    );

    // A record's category and text.
    let r = s.create_record(new_record(Category::Safety, None)).unwrap();
    s.set_record_category(&r, Category::Environment).unwrap();
    s.set_record_description(&r, "楼道灯坏了，已报修").unwrap();
    let h = s.history(&r).unwrap();
    let cat = field(&h[1].fields, "category");
    assert_eq!(
        (cat.old.as_deref(), cat.new.as_deref()),
        (Some("安全隐患"), Some("环境卫生"))
    );
    let text = field(&h[2].fields, "description");
    assert_eq!(text.old.as_deref(), Some("楼道灯坏了，晚上看不见"));
    assert_eq!(text.new.as_deref(), Some("楼道灯坏了，已报修"));
}
