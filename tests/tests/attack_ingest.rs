//! Hostile pushes (issue 8: what a push may contain), against the real binary: each is
//! refused with a 4xx, the server still answers `/healthz`, and nothing of it was stored.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use automerge::AutoCommit;
use automerge::transaction::Transactable;
use serde_bytes::ByteBuf;
use xiuhua_core::Store;
use xiuhua_core::doc::{actor_id, new_doc};
use xiuhua_core::model::*;
use xiuhua_core::sync::proto::{DocChanges, ErrorBody, PushRequest, PushResponse};
use xiuhua_e2e::*;

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

fn push_raw(d: &Device, doc: &str, changes: Vec<ByteBuf>) -> Reply<PushResponse> {
    d.call(
        "/v1/push",
        &PushRequest {
            docs: vec![DocChanges {
                doc: doc.into(),
                changes,
            }],
        },
    )
}

/// The refusal has a 4xx status; the server still answers; the grid's feed is unchanged
/// and the document is not in it.
fn refused_and_nothing_stored(
    server: &Server,
    watcher: &Device,
    before: &std::collections::BTreeMap<String, u64>,
    doc: &str,
    r: Reply<PushResponse>,
) -> ErrorBody {
    assert!(
        (400..500).contains(&r.status),
        "expected a 4xx, got {} ({:?})",
        r.status,
        r.err
    );
    assert_eq!(healthz(&server.url), 200, "the server still answers");
    assert_eq!(&server.grid_seqs(), before, "nothing was stored");
    assert!(!pull_docs(watcher, "g1").unwrap().contains(doc));
    r.err.expect("an error body")
}

fn plain_household(id: &str, building: &str, created_by: &str) -> Household {
    Household {
        kind: "household".into(),
        id: id.into(),
        address: Address::new("g1", building, "1单元", "101").unwrap(),
        members: vec![],
        tags: vec![],
        note: autosurgeon::Text::with_value(""),
        visits: vec![],
        created_at: now_ms() - 1000,
        created_by: created_by.into(),
        moved_out_at: None,
    }
}

#[test]
fn a_compressed_change_is_refused_before_it_is_inflated() {
    let server = Server::with_directory();
    let wang = server.enroll("u-wang");
    let chen = server.enroll("u-chen");
    let before = server.grid_seqs();
    // A household whose one change is big enough for Automerge to compress it (type 2).
    let mut h = plain_household("hh-zip", "1号楼", "u-wang");
    h.note = autosurgeon::Text::with_value("备注".repeat(500));
    let actor = wang.store.actor().clone();
    let hlc = xiuhua_core::hlc::Hlc::new(u64::try_from(now_ms()).unwrap(), 0);
    let mut doc = xiuhua_core::doc::build_document(&h, &actor, hlc, "register").unwrap();
    let mut c = doc.get_last_local_change().unwrap().clone();
    let zipped = c.bytes().to_vec();
    assert_eq!(zipped[8], 2, "a compressed chunk");
    let e = refused_and_nothing_stored(
        &server,
        &chen,
        &before,
        "hh-zip",
        push_raw(&wang, "hh-zip", vec![ByteBuf::from(zipped)]),
    );
    assert!(e.message.contains("compressed"), "{}", e.message);
    // A "bomb": a compressed chunk header claiming far more than it holds.
    let bomb = automerge_chunk(2, &[0x78, 0x9c, 0xff, 0xff, 0xff, 0xff]);
    let e = refused_and_nothing_stored(
        &server,
        &chen,
        &before,
        "hh-bomb",
        push_raw(&wang, "hh-bomb", vec![ByteBuf::from(bomb)]),
    );
    assert!(e.message.contains("compressed"), "{}", e.message);
}

#[test]
fn a_non_canonical_change_is_refused_and_the_household_keeps_syncing() {
    let server = Server::with_directory();
    let mut wang = server.enroll("u-wang");
    let mut chen = server.enroll("u-chen");
    let id = wang
        .store
        .create_household(household("g1", "1号楼", "101", "张三"))
        .unwrap();
    wang.sync().unwrap();
    let before = server.grid_seqs();
    // The next change of the household, all its ops on the root, re-encoded with an
    // explicit all-null column: same operations, other bytes, a document that would no
    // longer load once saved.
    let mut doc = AutoCommit::new();
    let history: Vec<automerge::Change> = wang
        .store
        .export_all()
        .unwrap()
        .into_iter()
        .filter(|c| c.doc == id)
        .map(|c| automerge::Change::try_from(c.change.as_slice()).unwrap())
        .collect();
    doc.apply_changes(history).unwrap();
    let mut doc = doc.with_actor(actor_id(&wang.id));
    doc.put(automerge::ROOT, "created_at", now_ms()).unwrap();
    doc.put(automerge::ROOT, "created_by", "u-wang").unwrap();
    let note = serde_json::json!({"u": "u-wang", "n": "王伟", "d": wang.id, "h": 0, "w": "x"});
    doc.commit_with(
        automerge::transaction::CommitOptions::default().with_message(note.to_string()),
    );
    let change = doc.get_last_local_change().unwrap().raw_bytes().to_vec();
    let bad = with_null_column(&change, 2);
    assert!(automerge::Change::try_from(bad.as_slice()).is_ok());
    let e = refused_and_nothing_stored(
        &server,
        &chen,
        &before,
        "hh-none",
        push_raw(&wang, &id, vec![ByteBuf::from(bad)]),
    );
    assert!(e.message.contains("canonical"), "{}", e.message);
    // The household still syncs for everyone.
    wang.store.set_household_note(&id, "一切正常").unwrap();
    wang.sync().unwrap();
    chen.sync().unwrap();
    assert_eq!(chen.store.household(&id).unwrap().note.as_str(), "一切正常");
}

#[test]
fn a_device_cannot_sign_as_another_user_or_in_a_role_it_does_not_hold() {
    let server = Server::with_directory();
    let li = server.enroll("u-li"); // 楼门长 of 3号楼 in g1
    let chen = server.enroll("u-chen");
    let before = server.grid_seqs();
    // A modified app on 李强's phone: the same user and device, but events signed
    // "as 社区工作者" (a 督单 and a cancel that every device would apply).
    let forged = |role: Role, user: &str| {
        let mut s = Store::open_in_memory(Actor::new(user, "李强", role, &li.id).unwrap()).unwrap();
        let h = s
            .create_household(household("g1", "3号楼", "301", "王五"))
            .unwrap();
        let t = s.create_task(task("g1", Some(&h), "代办医保")).unwrap();
        if role == Role::CommunityStaff {
            s.task_action(
                &t,
                TaskAction::Supervise {
                    text: "抓紧".into(),
                    new_deadline: None,
                },
            )
            .unwrap();
        }
        (s, h, t)
    };
    let (s, _, t) = forged(Role::CommunityStaff, "u-li");
    let r = li.call("/v1/push", &outbox_push(&s));
    let e = refused_and_nothing_stored(&server, &chen, &before, &t, r);
    assert_eq!(e.code, "forbidden");
    assert!(e.message.contains("role"), "{}", e.message);

    // Signed as another user (the secretary) from 李强's device.
    let (s, h, _) = forged(Role::BuildingLeader, "u-chen");
    let r = li.call("/v1/push", &outbox_push(&s));
    let e = refused_and_nothing_stored(&server, &chen, &before, &h, r);
    assert!(e.message.contains("another user"), "{}", e.message);

    // The honest phone of the same user, signing as 楼门长, is accepted.
    let mut li = li;
    let h = li
        .store
        .create_household(household("g1", "3号楼", "302", "王六"))
        .unwrap();
    li.sync().unwrap();
    assert!(pull_docs(&chen, "g1").unwrap().contains(&h));
}

#[test]
fn a_building_leader_cannot_file_about_a_household_of_another_building() {
    let server = Server::with_directory();
    let mut wang = server.enroll("u-wang");
    let li = server.enroll("u-li"); // 楼门长 of 3号楼
    let chen = server.enroll("u-chen");
    let other = wang
        .store
        .create_household(household("g1", "1号楼", "101", "张三"))
        .unwrap();
    wang.sync().unwrap();
    let before = server.grid_seqs();
    // 李强's store learns of the 1号楼 household (as a modified app could), then files a
    // record "in 3号楼" about it.
    let mut s = Store::open_in_memory(li.store.actor().clone()).unwrap();
    let known: Vec<_> = wang
        .store
        .export_all()
        .unwrap()
        .into_iter()
        .filter(|c| c.doc == other)
        .collect();
    s.apply_remote(&known).unwrap();
    s.ack_outbox(
        &s.outbox(1000)
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let mut rec = record("g1", Some("3号楼"), "3号楼楼道有人吵闹");
    rec.household = Some(other.clone());
    let id = s.create_record(rec).unwrap();
    let r = li.call("/v1/push", &push_of(&s, &id));
    let e = refused_and_nothing_stored(&server, &chen, &before, &id, r);
    assert_eq!(e.code, "forbidden");
    assert!(e.message.contains("1号楼"), "{}", e.message);
}

#[test]
fn a_record_or_task_cannot_name_a_household_of_another_grid() {
    let server = Server::with_directory();
    // 赵敏 is 社区工作者 of the community: she may write in g1 and in g2.
    let mut zhao = server.enroll("u-zhao");
    let chen = server.enroll("u-chen");
    let hh = zhao
        .store
        .create_household(household("g2", "1号楼", "101", "张三"))
        .unwrap();
    zhao.sync().unwrap();
    let before = server.grid_seqs();
    // The app itself refuses a task or record of g1 about the g2 household ...
    let mut rec = record("g1", None, "楼道灯坏了");
    rec.household = Some(hh.clone());
    assert!(matches!(
        zhao.store
            .create_task(task("g1", Some(&hh), "代办高龄补贴")),
        Err(xiuhua_core::Error::Invalid { .. })
    ));
    assert!(matches!(
        zhao.store.create_record(rec),
        Err(xiuhua_core::Error::Invalid { .. })
    ));
    // ... so a modified app makes them, signed as 赵敏.
    let me = zhao.store.actor().clone();
    let at = now_ms() - 1000;
    let order = xiuhua_core::workflow::order_event(
        Level::Doorstep,
        None,
        String::new(),
        "ev-1".into(),
        &me,
        xiuhua_core::hlc::Hlc::new(u64::try_from(at).unwrap(), 0).as_i64(),
    );
    let t = "task-hostile-1".to_string();
    let hostile_task = Task {
        kind: "task".into(),
        id: t.clone(),
        grid: "g1".into(),
        category: Category::Service,
        title: "代办高龄补贴".into(),
        description: autosurgeon::Text::with_value(""),
        household: Some(hh.clone()),
        source_record: None,
        created_at: at,
        created_by: me.user.clone(),
        number: None,
        provisional_number: None,
        events: [("ev-1".to_string(), order)].into_iter().collect(),
    };
    let r_id = "rec-hostile-1".to_string();
    let hostile_record = Record {
        kind: "record".into(),
        id: r_id.clone(),
        grid: "g1".into(),
        category: Category::Environment,
        description: autosurgeon::Text::with_value("楼道灯坏了"),
        reporter: "张阿姨".into(),
        household: Some(hh.clone()),
        building: None,
        place: "楼道".into(),
        status: RecordStatus::Pending,
        reported_at: at,
        created_by: me.user.clone(),
        number: None,
        provisional_number: None,
    };
    let pushes = [
        (&t, signed(&hostile_task, &me, at)),
        (&r_id, signed(&hostile_record, &me, at)),
    ];
    for (id, changes) in pushes {
        let req = PushRequest {
            docs: vec![DocChanges {
                doc: id.clone(),
                changes,
            }],
        };
        let r = zhao.call("/v1/push", &req);
        assert_eq!(r.status, 400, "{:?}", r.err);
        let e = refused_and_nothing_stored(&server, &chen, &before, id, r);
        assert_eq!(e.code, "bad_request");
        assert!(
            e.message.contains("household field") && e.message.contains("another grid"),
            "{}",
            e.message
        );
        assert!(!e.message.contains(hh.as_str()), "{}", e.message);
    }
    // The household itself syncs on: its grid's phones still get it.
    assert!(pull_docs(&chen, "g2").unwrap().contains(&hh));
}

#[test]
fn changes_stamped_days_ahead_are_refused() {
    let server = Server::with_directory();
    let wang = server.enroll("u-wang");
    let chen = server.enroll("u-chen");
    let before = server.grid_seqs();
    let mut s = Store::open_in_memory(wang.store.actor().clone()).unwrap();
    let ahead = now_ms() + 3 * 24 * 3600 * 1000;
    s.set_time_source(move || ahead);
    let id = s
        .create_household(household("g1", "1号楼", "101", "张三"))
        .unwrap();
    let r = wang.call("/v1/push", &outbox_push(&s));
    let e = refused_and_nothing_stored(&server, &chen, &before, &id, r);
    assert!(e.message.contains("24 hours"), "{}", e.message);
}

#[test]
fn oversized_fields_unknown_keys_and_huge_texts_are_refused() {
    let server = Server::with_directory();
    let wang = server.enroll("u-wang");
    let chen = server.enroll("u-chen");
    let before = server.grid_seqs();
    let me = wang.store.actor().clone();

    // A visit note far beyond the model's 2,000 characters (200 KB: under the change cap,
    // so the model's bound is what refuses it).
    let mut h = plain_household("hh-note", "1号楼", "u-wang");
    h.visits.push(Visit {
        id: "v-1".into(),
        at: now_ms() - 10,
        by: "u-wang".into(),
        by_name: "王伟".into(),
        purpose: "走访".into(),
        note: "很长的记录".repeat(40_000),
        follow_up: None,
    });
    let e = refused_and_nothing_stored(
        &server,
        &chen,
        &before,
        "hh-note",
        push_raw(&wang, "hh-note", signed(&h, &me, now_ms() - 10)),
    );
    assert!(e.message.contains("visit note"), "{}", e.message);
    // 15 MB of it: refused too (by the change's byte cap or the body's).
    h.visits[0].note = "x".repeat(15 << 20);
    let r = push_raw(&wang, "hh-note", signed(&h, &me, now_ms() - 10));
    refused_and_nothing_stored(&server, &chen, &before, "hh-note", r);

    // 200 KB under a key the model does not know.
    let mut doc = new_doc(&wang.id);
    autosurgeon::reconcile(&mut doc, plain_household("hh-junk", "1号楼", "u-wang")).unwrap();
    doc.put(automerge::ROOT, "junk", "x".repeat(200_000))
        .unwrap();
    let note = serde_json::json!({"u": "u-wang", "n": "王伟", "d": wang.id, "h": 0, "w": "x"});
    doc.commit_with(
        automerge::transaction::CommitOptions::default().with_message(note.to_string()),
    );
    let changes = doc
        .get_changes(&[])
        .iter()
        .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
        .collect();
    let e = refused_and_nothing_stored(
        &server,
        &chen,
        &before,
        "hh-junk",
        push_raw(&wang, "hh-junk", changes),
    );
    assert!(e.message.contains("no field"), "{}", e.message);

    // A Text of 2 million operations.
    let mut doc = new_doc(&wang.id);
    autosurgeon::reconcile(&mut doc, plain_household("hh-ops", "1号楼", "u-wang")).unwrap();
    let text = match automerge::ReadDoc::get(&doc, automerge::ROOT, "note").unwrap() {
        Some((_, id)) => id,
        None => panic!("a note"),
    };
    doc.commit_with(
        automerge::transaction::CommitOptions::default().with_message(note.to_string()),
    );
    // In changes under the per-change caps (80,000 operations, ~80 KB each).
    for _ in 0..25 {
        doc.splice_text(&text, 0, 0, &"a".repeat(80_000)).unwrap();
        doc.commit_with(
            automerge::transaction::CommitOptions::default().with_message(note.to_string()),
        );
    }
    let changes = doc
        .get_changes(&[])
        .iter()
        .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
        .collect();
    let e = refused_and_nothing_stored(
        &server,
        &chen,
        &before,
        "hh-ops",
        push_raw(&wang, "hh-ops", changes),
    );
    assert!(e.message.contains("operations"), "{}", e.message);
}

#[test]
fn a_refused_id_number_is_not_echoed() {
    let server = Server::with_directory();
    let wang = server.enroll("u-wang");
    let chen = server.enroll("u-chen");
    let before = server.grid_seqs();
    let me = wang.store.actor().clone();
    for bad in ["11010519491231002x", "110105194912310021"] {
        let mut h = plain_household("hh-id", "1号楼", "u-wang");
        h.members.push(Member {
            id: "m-1".into(),
            name: "王秀英".into(),
            gender: Gender::Female,
            birth_year: 1949,
            phone: None,
            id_number: Some(bad.into()),
            relation: Relation::Head,
            tags: vec![],
            status: None,
        });
        let e = refused_and_nothing_stored(
            &server,
            &chen,
            &before,
            "hh-id",
            push_raw(&wang, "hh-id", signed(&h, &me, now_ms() - 10)),
        );
        assert!(e.message.contains("id_number"), "{}", e.message);
        assert!(!e.message.contains(bad), "{}", e.message);
        assert!(!e.message.contains("1101051949"), "{}", e.message);
    }
}
