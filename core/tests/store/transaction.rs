//! One user action is one SQLite transaction: a failure half-way leaves nothing behind.

use xiuhua_core::Store;

use crate::common::*;

#[test]
fn a_failed_write_leaves_document_projection_and_outbox_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phone.db");
    let clock = FakeClock::new(MAR_2026);
    let mut s = Store::open(&path, wang()).unwrap();
    clock.install(&mut s);
    let hh = s.create_household(zhang_household()).unwrap();
    s.add_visit(&hh, visit("入户走访")).unwrap();

    let before_household = s.household(&hh).unwrap();
    let before_dump = dump(&s);
    let before_outbox = s.outbox(100).unwrap();
    let before_history = s.history(&hh).unwrap();

    // The disk "fails" when the outbox entry is written: after the document bytes and the
    // projection rows of the same action.
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute_batch(
            "CREATE TRIGGER fail_outbox BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'simulated disk failure'); END;",
        )
        .unwrap();

    clock.advance(60_000);
    let r = s.add_visit(&hh, visit("回访"));
    assert!(r.is_err(), "the action must report the failure: {r:?}");
    assert!(format!("{}", r.unwrap_err()).contains("simulated disk failure"));

    assert_eq!(
        s.household(&hh).unwrap(),
        before_household,
        "memory does not run ahead of disk"
    );
    assert_eq!(dump(&s), before_dump);
    assert_eq!(s.outbox(100).unwrap(), before_outbox);
    assert_eq!(s.history(&hh).unwrap(), before_history);
    let chunks: i64 = other
        .query_row("SELECT count(*) FROM doc_chunks", [], |r| r.get(0))
        .unwrap();
    // What the phone would send does not contain the failed change either.
    let exported_visits = {
        let mut peer = Store::open_in_memory(li()).unwrap();
        peer.apply_remote(&s.export_all().unwrap()).unwrap();
        peer.household(&hh).unwrap().visits.len()
    };
    assert_eq!(exported_visits, 1);

    // Other failing actions on the same document also leave it alone.
    assert!(s.set_household_note(&hh, "新备注").is_err());
    assert_eq!(s.household(&hh).unwrap(), before_household);

    // The disk recovers: the same action succeeds, exactly once.
    other.execute_batch("DROP TRIGGER fail_outbox;").unwrap();
    let visit_id = s.add_visit(&hh, visit("回访")).unwrap();
    let h = s.household(&hh).unwrap();
    assert_eq!(h.visits.len(), 2);
    assert_eq!(h.visits[1].id, visit_id);
    assert_eq!(s.outbox_len().unwrap(), before_outbox.len() as i64 + 1);
    let chunks_after: i64 = other
        .query_row("SELECT count(*) FROM doc_chunks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(chunks_after, chunks + 1, "one new chunk for the one action");
    drop(other);

    // And it is on disk.
    let expected = dump(&s);
    drop(s);
    let mut s = Store::open(&path, wang()).unwrap();
    assert_eq!(s.household(&hh).unwrap().visits.len(), 2);
    assert_eq!(dump(&s), expected);
    assert_eq!(s.outbox_len().unwrap(), before_outbox.len() as i64 + 1);
}
