//! Opening files: a foreign or broken file is refused and left byte for byte as it was; a
//! store reopened keeps its data and its clock.

use std::path::Path;

use xiuhua_core::{Error, Store};

use crate::common::*;

/// Opens `path` expecting a refusal as "not a Xiuhua database", and checks the file is untouched.
fn assert_refused_untouched(path: &Path) {
    let before = std::fs::read(path).unwrap();
    match Store::open(path, wang()) {
        Err(Error::NotXiuhuaDatabase(msg)) => assert!(!msg.is_empty()),
        other => panic!(
            "{}: expected NotXiuhuaDatabase, got {other:?}",
            path.display()
        ),
    }
    assert_eq!(
        std::fs::read(path).unwrap(),
        before,
        "{} was modified",
        path.display()
    );
}

#[test]
fn a_file_of_random_bytes_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("random.db");
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let bytes: Vec<u8> = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(&path, &bytes).unwrap();
    assert_refused_untouched(&path);

    // Short files too (shorter than a SQLite header).
    let short = dir.path().join("short.db");
    std::fs::write(&short, b"SQLite").unwrap();
    assert_refused_untouched(&short);
}

#[test]
fn another_apps_sqlite_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wechat-cache.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE contacts (name TEXT, phone TEXT); INSERT INTO contacts VALUES ('张三', '13800001234');")
            .unwrap();
    }
    assert_refused_untouched(&path);
    let c = rusqlite::Connection::open(&path).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM contacts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1, "the other app's data is intact");
    let tables: i64 = c
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tables, 1, "no Xiuhua tables were added");
}

/// A Xiuhua store with some data, closed; returns its path.
fn filled_store(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("xiuhua.db");
    let clock = FakeClock::new(MAR_2026);
    let mut s = Store::open(&path, wang()).unwrap();
    clock.install(&mut s);
    for room in 101..131 {
        let hh = s
            .create_household(new_household(
                "3号楼",
                "1单元",
                &room.to_string(),
                vec![member(
                    "张三",
                    Some("13800001234"),
                    None,
                    xiuhua_core::Relation::Head,
                )],
            ))
            .unwrap();
        s.add_visit(&hh, visit("入户走访")).unwrap();
    }
    drop(s);
    path
}

#[test]
fn a_truncated_xiuhua_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = filled_store(dir.path());
    let full = std::fs::read(&path).unwrap();
    assert!(
        full.len() > 8192,
        "the store spans several pages: {}",
        full.len()
    );
    for (name, len) in [
        ("half.db", full.len() / 2),
        ("header-only.db", 100),
        ("odd.db", full.len() - 1000),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, &full[..len]).unwrap();
        assert_refused_untouched(&p);
    }
}

#[test]
fn a_reopened_store_keeps_its_data_and_its_clock_never_goes_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phone.db");
    let clock = FakeClock::new(MAR_2026);
    let mut s = Store::open(&path, wang()).unwrap();
    clock.install(&mut s);
    let hh = s.create_household(zhang_household()).unwrap();
    clock.advance(HOUR);
    s.add_visit(&hh, visit("入户走访")).unwrap();
    s.anchor_clock(MAR_2026 + HOUR + 1_000).unwrap();
    let expected_dump = dump(&s);
    let expected_household = s.household(&hh).unwrap();
    let expected_outbox = s.outbox(100).unwrap();
    let last = s.clock().last;
    drop(s);

    // The battery was swapped: the phone now says 1970.
    let mut s = Store::open(&path, wang()).unwrap();
    s.set_time_source(|| 0);
    assert_eq!(dump(&s), expected_dump);
    assert_eq!(s.household(&hh).unwrap(), expected_household);
    assert_eq!(s.outbox(100).unwrap(), expected_outbox);
    assert!(s.clock().last >= last, "the clock state is persisted");
    assert!(s.clock().anchored);
    let v = s.add_visit(&hh, visit("回访")).unwrap();
    let h = s.household(&hh).unwrap();
    let new_visit = h.visits.iter().find(|x| x.id == v).unwrap();
    assert!(
        new_visit.at >= expected_household.visits[0].at,
        "a visit after reopening is not dated before the earlier one: {} < {}",
        new_visit.at,
        expected_household.visits[0].at
    );
    assert!(s.clock().last > last);
    let history = s.history(&hh).unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(history.last().unwrap().what, "add visit");
    assert!(
        history.windows(2).all(|w| w[0].at_ms <= w[1].at_ms),
        "{history:?}"
    );

    // An empty file is ours to initialise.
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let mut e = Store::open(&empty, wang()).unwrap();
    e.create_household(zhang_household()).unwrap();
}

#[test]
fn a_second_store_over_an_open_file_is_refused_whatever_the_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phone.db");
    let first = Store::open(&path, wang()).unwrap();
    // The same file, spelt directly, through `..`, and through a symlink.
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let dotted = sub.join("..").join("phone.db");
    let link = dir.path().join("link.db");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    for p in [&path, &dotted, &link] {
        match Store::open(p, li()) {
            Err(Error::AlreadyOpen(_)) => {}
            other => panic!("{}: expected AlreadyOpen, got {other:?}", p.display()),
        }
        assert!(matches!(
            Store::open_encrypted(p, "k", li()),
            Err(Error::AlreadyOpen(_))
        ));
    }
    // Another file opens; the first one opens again once its store is gone.
    let other = Store::open(dir.path().join("other.db"), li()).unwrap();
    drop(first);
    let again = Store::open(&path, wang()).unwrap();
    drop((other, again));
    // A refused open (a foreign file) claims nothing.
    let foreign = dir.path().join("foreign.db");
    std::fs::write(&foreign, b"not sqlite at all, not at all, not at all").unwrap();
    assert!(Store::open(&foreign, wang()).is_err());
    assert!(matches!(
        Store::open(&foreign, wang()),
        Err(Error::NotXiuhuaDatabase(_))
    ));
}
