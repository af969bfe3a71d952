//! Bad input gets a 4xx with a reason, and nothing of it is stored.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use automerge::AutoCommit;
use automerge::transaction::Transactable;
use serde_bytes::ByteBuf;
use xiuhua_core::doc::actor_id;
use xiuhua_core::model::*;
use xiuhua_core::sync::proto::{self, DocChanges, ErrorBody, PushRequest, PushResponse};
use xiuhua_e2e::*;

fn changes_of(doc: &mut AutoCommit) -> Vec<ByteBuf> {
    doc.get_changes(&[])
        .iter()
        .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
        .collect()
}

/// A household document built directly with autosurgeon, bypassing the store's checks.
fn raw_household(device: &str, id: &str, phone: &str) -> DocChanges {
    let h = Household {
        kind: "household".into(),
        id: id.into(),
        address: Address {
            grid: "g1".into(),
            building: "1号楼".into(),
            unit: "1单元".into(),
            room: "101".into(),
        },
        members: vec![Member {
            id: "m-1".into(),
            name: "张三".into(),
            gender: Gender::Male,
            birth_year: 1980,
            phone: Some(phone.into()),
            id_number: None,
            relation: Relation::Head,
            tags: vec![],
            status: None,
        }],
        tags: vec![],
        note: autosurgeon::Text::with_value(""),
        visits: vec![],
        created_at: 0,
        created_by: "u-wang".into(),
        moved_out_at: None,
    };
    let mut doc = AutoCommit::new().with_actor(actor_id(device));
    autosurgeon::reconcile(&mut doc, &h).unwrap();
    doc.commit();
    DocChanges {
        doc: id.into(),
        changes: changes_of(&mut doc),
    }
}

fn push(server: &Server, d: &Device, req: &PushRequest) -> Reply<PushResponse> {
    call(&server.url, "/v1/push", Some(&d.token()), req)
}

#[test]
fn bad_input_is_refused_with_a_reason_and_nothing_is_stored() {
    let server = Server::with_directory_and(&[("XIUHUA_MAX_PUSH_CHANGES", "10")]);
    let mut wang = server.enroll("u-wang");
    let token = wang.token();
    let nothing = server.grid_seqs();

    // Malformed bytes: not zstd, and zstd of something that is not a message.
    let (status, body) = post_raw(&server.url, "/v1/push", Some(&token), b"garbage".to_vec());
    let e: ErrorBody = proto::decode(&body).unwrap();
    assert_eq!((status, e.code.as_str()), (400, "bad_request"));
    assert!(e.message.contains("malformed"), "{}", e.message);
    let not_msgpack = proto::encode(&"just a string");
    let (status, body) = post_raw(&server.url, "/v1/push", Some(&token), not_msgpack);
    assert_eq!(status, 400);
    assert!(
        proto::decode::<ErrorBody>(&body)
            .unwrap()
            .message
            .contains("malformed")
    );

    // Garbage where a change should be.
    let e = push(
        &server,
        &wang,
        &PushRequest {
            docs: vec![DocChanges {
                doc: "hh-x".into(),
                changes: vec![ByteBuf::from(vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3])],
            }],
        },
    )
    .refused(400);
    assert!(
        e.message.contains("not an Automerge change"),
        "{}",
        e.message
    );

    // An unknown document kind.
    let mut doc = AutoCommit::new().with_actor(actor_id(&wang.id));
    doc.put(automerge::ROOT, "kind", "spaceship").unwrap();
    doc.put(automerge::ROOT, "grid", "g1").unwrap();
    doc.commit();
    let e = push(
        &server,
        &wang,
        &PushRequest {
            docs: vec![DocChanges {
                doc: "ship-1".into(),
                changes: changes_of(&mut doc),
            }],
        },
    )
    .refused(400);
    assert!(
        e.message.contains("unknown kind \"spaceship\""),
        "{}",
        e.message
    );

    // A household failing the model's validation: a 10-digit phone number.
    let e = push(
        &server,
        &wang,
        &PushRequest {
            docs: vec![raw_household(&wang.id, "hh-bad", "1380013800")],
        },
    )
    .refused(400);
    assert!(
        e.message.contains("hh-bad") && e.message.contains("phone"),
        "{}",
        e.message
    );

    // The same invalid household after a valid one: the batch is one transaction.
    wang.store
        .create_household(household("g1", "1号楼", "102", "李四"))
        .unwrap();
    let mut req = wang.outbox_push();
    req.docs.push(raw_household(&wang.id, "hh-bad2", "12345"));
    let e = push(&server, &wang, &req).refused(400);
    assert!(e.message.contains("hh-bad2"), "{}", e.message);

    // A change made by another device's actor.
    let e = push(
        &server,
        &wang,
        &PushRequest {
            docs: vec![raw_household("d-someone-else", "hh-other", "13800138000")],
        },
    )
    .refused(403);
    assert!(e.message.contains("only its own changes"), "{}", e.message);

    // An oversized batch: more changes than the server takes in one push (10 here).
    let mut big = Store::open_in_memory(wang.store.actor().clone()).unwrap();
    for i in 0..11 {
        big.create_household(household("g1", "2号楼", &format!("3{i:02}"), "王五"))
            .unwrap();
    }
    let e = push(&server, &wang, &outbox_push(&big)).refused(413);
    assert_eq!(e.code, "too_large");
    assert!(e.message.contains("at most 10"), "{}", e.message);

    // Nothing of any of it was stored or is visible.
    assert_eq!(server.grid_seqs(), nothing);
    assert!(pull_docs(&wang, "g1").unwrap().is_empty());
    assert!(bootstrap_docs(&wang, "g1").unwrap().is_empty());

    // The client splits an oversized outbox by itself and stores everything.
    wang.drop_outbox();
    let mut wang2 = server.enroll("u-wang");
    for i in 0..11 {
        wang2
            .store
            .create_household(household("g1", "2号楼", &format!("4{i:02}"), "赵六"))
            .unwrap();
    }
    let r = wang2
        .sync_via(
            &mut server.transport(),
            xiuhua_core::sync::SyncOptions {
                push_max_changes: 10,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(r.pushed, 11);
}

use xiuhua_core::Store;
