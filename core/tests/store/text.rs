//! Free text that people edit together (household notes, record descriptions) is Automerge
//! text. Workers write Chinese: every edit must land exactly where it was made.

use xiuhua_core::{Category, Store};

use crate::common::*;

fn household_with_note(s: &mut Store, note: &str) -> String {
    let mut new = zhang_household();
    new.note = note.into();
    s.create_household(new).unwrap()
}

// FIXME(core): documents are created and loaded with Automerge's default text encoding
// (Unicode code points), but autosurgeon 0.14's `Text::update`/`splice` produce UTF-8 *byte*
// offsets. `Store::set_household_note` and `Store::set_record_description` therefore fail
// with `BadDocument { reason: "index N is out of bounds" }` for Chinese text, or, when the
// byte offset happens to be in range, splice at the wrong place and silently garble the text.
// Fix: give every AutoCommit the UTF-8 encoding (`AutoCommit::new_with_encoding(
// TextEncoding::Utf8CodeUnit)` and the matching load options wherever documents are created
// or loaded: store/mod.rs `create`, `load_doc_from_db`, `apply_remote_inner`,
// `import_documents`, doc.rs `build_document`), or diff by chars and call `splice_text`.
#[test]
fn chinese_notes_and_descriptions_are_edited_in_place() {
    let clock = FakeClock::new(MAR_2026);
    let mut s = store(wang(), &clock);

    for (old, new) in [
        ("老住户", "老住户，独居"),   // append
        ("老住户", "儿子在外地工作"), // replace all
        (
            "老两口，儿子在外地工作，女儿每周来一次",
            "老两口，孙子在外地工作，女儿每周来一次",
        ), // change early
        ("女儿每周来一次", "女儿每月来一次，需要关注用药"), // change in the middle and append
        ("需要关注", ""),             // clear
        ("", "新来的租户 tenant"),    // from empty
    ] {
        let hh = household_with_note(&mut s, old);
        let r = s.set_household_note(&hh, new);
        assert!(r.is_ok(), "note {old:?} → {new:?}: {r:?}");
        assert_eq!(
            s.household(&hh).unwrap().note.as_str(),
            new,
            "note {old:?} → {new:?}"
        );
        // What the document holds (not only the in-memory value) is right.
        let mut peer = store(li(), &clock);
        share_all(&mut s, &mut peer);
        assert_eq!(
            peer.household(&hh).unwrap().note.as_str(),
            new,
            "peer's copy of {old:?} → {new:?}"
        );
    }

    let rec = s.create_record(new_record(Category::Repair, None)).unwrap();
    let r = s.set_record_description(&rec, "楼道灯坏了，物业已经来修，晚上看得见了");
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(
        s.record(&rec).unwrap().description.as_str(),
        "楼道灯坏了，物业已经来修，晚上看得见了"
    );
}

#[test]
fn concurrent_chinese_note_edits_interleave_without_losing_either() {
    let clock = FakeClock::new(MAR_2026);
    let mut a = store(wang(), &clock);
    let mut b = store(li(), &clock);
    let hh = household_with_note(&mut a, "独居老人");
    share_all(&mut a, &mut b);
    a.set_household_note(&hh, "独居老人，腿脚不便").unwrap();
    b.set_household_note(&hh, "低保户，独居老人").unwrap();
    share_all(&mut a, &mut b);
    share_all(&mut b, &mut a);
    let note = a.household(&hh).unwrap().note.as_str().to_string();
    assert_eq!(note, b.household(&hh).unwrap().note.as_str());
    assert!(
        note.contains("腿脚不便") && note.contains("低保户，") && note.contains("独居老人"),
        "{note}"
    );
    assert_eq!(dump(&a), dump(&b));
}
