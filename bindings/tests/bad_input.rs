//! Bad input through every family of exported functions gives an error, never a panic
//! (a panic would abort the app on the other side of the FFI).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use xiuhua_ffi::*;

fn actor(device: &str) -> Actor {
    Actor {
        user: "u-wang".into(),
        name: "王伟".into(),
        role: "网格员".into(),
        device: device.into(),
    }
}

fn member(name: &str) -> NewMember {
    NewMember {
        name: name.into(),
        gender: "男".into(),
        birth_year: 1960,
        phone: Some("13800001234".into()),
        id_number: None,
        relation: "户主".into(),
        tags: vec!["党员".into()],
    }
}

fn household() -> NewHousehold {
    NewHousehold {
        address: Address {
            grid: "grid-1".into(),
            building: "1号楼".into(),
            unit: "1单元".into(),
            room: "101".into(),
        },
        members: vec![member("张三")],
        tags: vec![],
        note: String::new(),
    }
}

fn new_task() -> NewTask {
    NewTask {
        grid: "grid-1".into(),
        level: "上门办".into(),
        category: "代办服务".into(),
        title: "代缴水费".into(),
        description: String::new(),
        household: None,
        source_record: None,
        assignee: Some("u-wang".into()),
        deadline: None,
    }
}

/// Runs `f`, fails the test if it panicked or succeeded, returns the error.
#[track_caller]
fn err<T: std::fmt::Debug>(what: &str, f: impl FnOnce() -> Result<T, XiuhuaError>) -> XiuhuaError {
    match catch_unwind(AssertUnwindSafe(f)) {
        Err(_) => panic!("{what}: panicked"),
        Ok(Ok(v)) => panic!("{what}: expected an error, got {v:?}"),
        Ok(Err(e)) => {
            assert!(!e.to_string().is_empty(), "{what}: empty message");
            e
        }
    }
}

#[test]
fn opening_with_bad_input_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |n: &str| dir.path().join(n).to_string_lossy().into_owned();

    let e = err("empty path", || {
        XiuhuaStore::open(String::new(), None, actor("d1"))
    });
    assert!(matches!(e, XiuhuaError::InvalidInput { ref field, .. } if field == "path"));
    err("garbage path", || {
        XiuhuaStore::open("/no/such/dir/\0x/s.db".into(), None, actor("d1"))
    });
    err("directory as path", || {
        XiuhuaStore::open(dir.path().to_string_lossy().into_owned(), None, actor("d1"))
    });
    let e = err("bad role", || {
        XiuhuaStore::open(
            path("a.db"),
            None,
            Actor {
                role: "国王".into(),
                ..actor("d1")
            },
        )
    });
    assert!(
        e.to_string().contains("网格员"),
        "lists the allowed roles: {e}"
    );
    err("empty user", || {
        XiuhuaStore::open_in_memory(Actor {
            user: " ".into(),
            ..actor("d1")
        })
    });
    err("empty device", || XiuhuaStore::open_in_memory(actor("")));

    // Not a Xiuhua database.
    std::fs::write(path("junk.db"), b"this is not sqlite at all, just text").expect("write");
    let e = err("junk file", || {
        XiuhuaStore::open(path("junk.db"), None, actor("d1"))
    });
    assert!(matches!(e, XiuhuaError::NotXiuhuaDatabase { .. }), "{e:?}");

    // Encryption: wrong key, no key, empty key.
    drop(XiuhuaStore::open(path("enc.db"), Some("right key".into()), actor("d1")).expect("create"));
    let e = err("wrong key", || {
        XiuhuaStore::open(path("enc.db"), Some("wrong key".into()), actor("d1"))
    });
    assert!(matches!(e, XiuhuaError::WrongKey { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "the encryption key does not open this database"
    );
    err("no key for an encrypted store", || {
        XiuhuaStore::open(path("enc.db"), None, actor("d1"))
    });
    err("empty key", || {
        XiuhuaStore::open(path("new.db"), Some(String::new()), actor("d1"))
    });
    XiuhuaStore::open(path("enc.db"), Some("right key".into()), actor("d1")).expect("right key");
}

#[test]
fn household_writes_and_reads_with_bad_input_are_errors() {
    let s = XiuhuaStore::open_in_memory(actor("d1")).expect("open");
    let hh = s.create_household(household()).expect("create");
    let m = s.household(hh.clone()).expect("read").members[0].id.clone();

    let e = err("bad phone", || {
        s.create_household(NewHousehold {
            members: vec![NewMember {
                phone: Some("12345".into()),
                ..member("李四")
            }],
            ..household()
        })
    });
    match &e {
        XiuhuaError::InvalidInput { field, detail, .. } => {
            assert_eq!(field, "phone");
            assert!(detail.starts_with("invalid phone"), "{detail}");
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    let e = err("bad ID number", || {
        s.add_member(
            hh.clone(),
            NewMember {
                id_number: Some("110101199001011234".into()),
                ..member("李四")
            },
        )
    });
    assert!(
        matches!(e, XiuhuaError::InvalidInput { ref field, .. } if field == "id_number"),
        "{e:?}"
    );
    err("empty name", || s.add_member(hh.clone(), member("")));
    err("bad gender", || {
        s.add_member(
            hh.clone(),
            NewMember {
                gender: "M".into(),
                ..member("李四")
            },
        )
    });
    err("bad relation", || {
        s.add_member(
            hh.clone(),
            NewMember {
                relation: "boss".into(),
                ..member("李四")
            },
        )
    });
    err("bad tag", || {
        s.add_member(
            hh.clone(),
            NewMember {
                tags: vec!["VIP".into()],
                ..member("李四")
            },
        )
    });
    err("bad birth year", || {
        s.add_member(
            hh.clone(),
            NewMember {
                birth_year: -5,
                ..member("李四")
            },
        )
    });
    err("empty address", || {
        s.create_household(NewHousehold {
            address: Address {
                grid: String::new(),
                building: String::new(),
                unit: String::new(),
                room: String::new(),
            },
            ..household()
        })
    });
    err("unknown household", || {
        s.add_member("hh-nope".into(), member("李四"))
    });
    err("empty household id", || {
        s.add_visit(
            String::new(),
            NewVisit {
                purpose: "走访".into(),
                note: String::new(),
                follow_up: None,
            },
        )
    });
    err("empty visit purpose", || {
        s.add_visit(
            hh.clone(),
            NewVisit {
                purpose: " ".into(),
                note: String::new(),
                follow_up: None,
            },
        )
    });
    err("unknown member", || {
        s.set_member_phone(hh.clone(), "m-nope".into(), Some("13800001234".into()))
    });
    err("bad phone on a member", || {
        s.set_member_phone(hh.clone(), m.clone(), Some("phone".into()))
    });
    err("unknown member update", || {
        s.update_member(hh.clone(), "m-nope".into(), member("李四"))
    });
    err("unknown member removal", || {
        s.remove_member(hh.clone(), "m-nope".into())
    });
    err("bad household tags", || {
        s.set_household_tags(hh.clone(), vec!["x".into()])
    });
    err("huge note", || {
        s.set_household_note(hh.clone(), "字".repeat(3000))
    });
    err("read unknown household", || s.household("hh-nope".into()));
    err("history of unknown household", || {
        s.household_history("nope".into())
    });
    // A task id where a household is expected.
    let t = s.create_task(new_task()).expect("task");
    err("task read as household", || s.household(t.clone()));
    err("visit on a task", || {
        s.add_visit(
            t.clone(),
            NewVisit {
                purpose: "走访".into(),
                note: String::new(),
                follow_up: None,
            },
        )
    });

    // Nothing was written by the refused calls: one member, no visits.
    let h = s.household(hh).expect("read");
    assert_eq!(h.members.len(), 1);
    assert!(h.visits.is_empty());
}

#[test]
fn records_tasks_and_queries_with_bad_input_are_errors() {
    let s = XiuhuaStore::open_in_memory(actor("d1")).expect("open");
    let rec = NewRecord {
        grid: "grid-1".into(),
        category: "环境卫生".into(),
        description: "楼道堆物".into(),
        reporter: "李阿姨".into(),
        household: None,
        building: None,
        place: "3号楼".into(),
    };
    err("bad category", || {
        s.create_record(NewRecord {
            category: "other".into(),
            ..rec.clone()
        })
    });
    err("empty description", || {
        s.create_record(NewRecord {
            description: String::new(),
            ..rec.clone()
        })
    });
    err("empty grid", || {
        s.create_record(NewRecord {
            grid: String::new(),
            ..rec.clone()
        })
    });
    err("unknown household", || {
        s.create_record(NewRecord {
            household: Some("hh-nope".into()),
            ..rec.clone()
        })
    });
    let r = s.create_record(rec).expect("record");
    err("bad record status", || {
        s.set_record_status(r.clone(), "done".into())
    });
    err("unknown record", || {
        s.set_record_status("rec-nope".into(), "处理中".into())
    });
    err("empty record description", || {
        s.set_record_description(r.clone(), String::new())
    });
    err("read unknown record", || s.record("rec-nope".into()));

    err("bad level", || {
        s.create_task(NewTask {
            level: "L1".into(),
            ..new_task()
        })
    });
    err("bad task category", || {
        s.create_task(NewTask {
            category: String::new(),
            ..new_task()
        })
    });
    err("empty title", || {
        s.create_task(NewTask {
            title: String::new(),
            ..new_task()
        })
    });
    err("past deadline", || {
        s.create_task(NewTask {
            deadline: Some(1),
            ..new_task()
        })
    });
    err("record as household", || {
        s.create_task(NewTask {
            household: Some(r.clone()),
            ..new_task()
        })
    });
    let t = s.create_task(new_task()).expect("task");
    err("unknown task", || {
        s.task_action("task-nope".into(), TaskAction::Accept)
    });
    err("score 0", || {
        s.task_action(
            t.clone(),
            TaskAction::Rate {
                score: 0,
                comment: String::new(),
            },
        )
    });
    err("score 300", || {
        s.task_action(
            t.clone(),
            TaskAction::Rate {
                score: 300,
                comment: String::new(),
            },
        )
    });
    err("negative score", || {
        s.task_action(
            t.clone(),
            TaskAction::Rate {
                score: -1,
                comment: String::new(),
            },
        )
    });
    let e = err("rate before done", || {
        s.task_action(
            t.clone(),
            TaskAction::Rate {
                score: 5,
                comment: String::new(),
            },
        )
    });
    assert!(matches!(e, XiuhuaError::Refused { .. }), "{e:?}");
    err("complete with no result", || {
        s.task_action(
            t.clone(),
            TaskAction::Complete {
                result: String::new(),
            },
        )
    });
    err("bad tier", || {
        s.task_action(
            t.clone(),
            TaskAction::Escalate {
                tier: "moon".into(),
                unit: None,
            },
        )
    });
    err("linked unit without unit", || {
        s.task_action(
            t.clone(),
            TaskAction::Escalate {
                tier: "linked_unit".into(),
                unit: None,
            },
        )
    });
    err("bad new level", || {
        s.task_action(t.clone(), TaskAction::ChangeLevel { level: "x".into() })
    });
    err("past deadline change", || {
        s.task_action(t.clone(), TaskAction::ChangeDeadline { deadline: 0 })
    });
    err("empty assignee", || {
        s.task_action(
            t.clone(),
            TaskAction::Assign {
                assignee: " ".into(),
            },
        )
    });
    err("empty cancel reason", || {
        s.task_action(
            t.clone(),
            TaskAction::Cancel {
                reason: String::new(),
            },
        )
    });
    err("read unknown task", || s.task("task-nope".into()));
    err("record read as task", || s.task(r.clone()));

    err("bad record status filter", || {
        s.records("grid-1".into(), Some("x".into()), None, 10)
    });
    err("bad record category filter", || {
        s.records("grid-1".into(), None, Some("x".into()), 10)
    });
    err("bad task level filter", || {
        s.tasks("grid-1".into(), Some("x".into()), None, 10)
    });
    err("bad task status filter", || {
        s.tasks("grid-1".into(), None, Some("已点单".into()), 10)
    });
    // Queries that find nothing are empty, not errors.
    assert!(
        s.search_residents(String::new(), 10)
            .expect("empty query")
            .is_empty()
    );
    assert!(
        s.search_residents("%_\\'\"".into(), u32::MAX)
            .expect("odd query")
            .is_empty()
    );
    assert!(s.buildings("no-grid".into()).expect("buildings").is_empty());
    assert!(
        s.households_in("g".into(), "b".into(), Some(String::new()))
            .expect("hh")
            .is_empty()
    );
    assert!(s.my_tasks(String::new()).expect("mine").is_empty());
    s.ledger(String::new()).expect("ledger");
}

#[test]
fn conflicts_history_merge_and_sync_with_bad_input_are_errors() {
    let s = XiuhuaStore::open_in_memory(actor("d1")).expect("open");
    let hh = s.create_household(household()).expect("create");
    err("conflicts of unknown doc", || s.conflicts("hh-nope".into()));
    err("history of unknown doc", || s.history(String::new()));
    err("resolve with no conflict", || {
        s.resolve_conflict(hh.clone(), "tags".into(), 0)
    });
    err("resolve empty path", || {
        s.resolve_conflict(hh.clone(), String::new(), 0)
    });
    err("resolve huge choice", || {
        s.resolve_conflict(hh.clone(), "members/x/phone".into(), u32::MAX)
    });
    err("garbage change", || {
        s.apply_changes(vec![RemoteChange {
            doc: hh.clone(),
            change: vec![0xff; 40],
        }])
    });
    err("empty change", || {
        s.apply_changes(vec![RemoteChange {
            doc: "x".into(),
            change: vec![],
        }])
    });

    // Sync before enrollment, and enrollment against nothing.
    let e = err("sync not enrolled", || s.sync(None));
    assert!(matches!(e, XiuhuaError::NotEnrolled { .. }), "{e:?}");
    err("bad server url", || {
        s.enroll("ftp://x".into(), "CODE".into(), "phone".into())
    });
    err("empty code", || {
        s.enroll("http://127.0.0.1:9".into(), " ".into(), "phone".into())
    });
    let e = err("unreachable server", || {
        s.enroll("http://127.0.0.1:9".into(), "CODE".into(), "phone".into())
    });
    assert!(matches!(e, XiuhuaError::Network { .. }), "{e:?}");
    err("set url when not enrolled", || {
        s.set_server_url("http://127.0.0.1:9".into())
    });
    err("set garbage url", || s.set_server_url("not a url".into()));
    let status = s.sync_status().expect("status");
    assert!(!status.enrolled);
    assert!(!status.running);
    assert!(
        status.last_success_ms.is_none(),
        "a failed sync is never a success"
    );
}

struct Recorder(Mutex<Vec<ChangeEvent>>);

impl StoreObserver for Recorder {
    fn on_change(&self, event: ChangeEvent) -> Result<(), XiuhuaError> {
        self.0
            .lock()
            .map_err(|_| XiuhuaError::Internal {
                detail: "poisoned".into(),
            })?
            .push(event);
        Ok(())
    }
}

struct Failing;

impl StoreObserver for Failing {
    fn on_change(&self, _: ChangeEvent) -> Result<(), XiuhuaError> {
        Err(XiuhuaError::Internal {
            detail: "observer broke".into(),
        })
    }
}

#[test]
fn observers_hear_local_writes_and_merges_and_a_failing_one_changes_nothing() {
    let a = XiuhuaStore::open_in_memory(actor("dev-a")).expect("open");
    let b = XiuhuaStore::open_in_memory(actor("dev-b")).expect("open");
    let seen = Arc::new(Recorder(Mutex::new(Vec::new())));
    let handle = b.add_observer(seen.clone()).expect("observe");
    b.add_observer(Arc::new(Failing)).expect("observe");
    a.add_observer(Arc::new(Failing)).expect("observe");

    let hh = a
        .create_household(household())
        .expect("a writes despite a failing observer");
    let merged = b
        .apply_changes(a.export_all_changes().expect("export"))
        .expect("merge");
    assert_eq!(merged.changed.len(), 1);
    b.add_visit(
        hh.clone(),
        NewVisit {
            purpose: "走访".into(),
            note: String::new(),
            follow_up: None,
        },
    )
    .expect("visit");
    err("refused write", || {
        b.add_visit(
            "hh-nope".into(),
            NewVisit {
                purpose: "走访".into(),
                note: String::new(),
                follow_up: None,
            },
        )
    });

    {
        let events = seen.0.lock().expect("lock");
        assert_eq!(
            events.len(),
            2,
            "a merge and a local write; nothing for the refused one: {events:?}"
        );
        assert_eq!(events[0].origin, ChangeOrigin::Remote);
        assert_eq!(
            events[0].docs,
            vec![ChangedDoc {
                id: hh.clone(),
                kind: "household".into()
            }]
        );
        assert_eq!(events[1].origin, ChangeOrigin::Local);
        assert_eq!(events[1].docs[0].kind, "household");
    }
    b.remove_observer(handle).expect("remove");
    b.remove_observer(9999).expect("unknown handle is fine");
    b.set_household_note(hh, "ok".into()).expect("note");
    assert_eq!(
        seen.0.lock().expect("lock").len(),
        2,
        "removed observer hears nothing"
    );
}

#[test]
fn the_error_text_is_the_cores_message() {
    let s = XiuhuaStore::open_in_memory(actor("d1")).expect("open");
    let e = err("bad phone", || {
        s.set_member_phone("hh-x".into(), "m".into(), Some("123".into()))
    });
    let text = e.to_string();
    assert!(text.starts_with("invalid phone:"), "{text}");
    let e = err("not found", || s.household("hh-x".into()));
    assert_eq!(e.to_string(), "not found: hh-x");
    assert!(!vocabulary().categories.is_empty());
    assert!(
        vocabulary()
            .task_statuses
            .iter()
            .any(|c| c.value == "done" && c.label == "已办结")
    );
}
