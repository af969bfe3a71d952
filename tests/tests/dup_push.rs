//! The same push sent twice: the second is all duplicates and the feed does not move.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use xiuhua_core::sync::proto::{self, PullRequest, PullResponse, PushResponse};
use xiuhua_e2e::*;

#[test]
fn the_same_push_twice_stores_once() {
    let server = Server::with_directory();
    let mut wang = server.enroll("u-wang");
    let hh = wang
        .store
        .create_household(household("g1", "1号楼", "101", "张三"))
        .unwrap();
    wang.store
        .add_visit(
            &hh,
            xiuhua_core::model::NewVisit {
                purpose: "走访".into(),
                note: String::new(),
                follow_up: None,
            },
        )
        .unwrap();
    wang.store
        .create_record(record("g1", Some("1号楼"), "楼道灯坏"))
        .unwrap();
    let req = wang.outbox_push();
    let n: u64 = req.docs.iter().map(|d| d.changes.len() as u64).sum();
    assert_eq!(n, 3);
    let body = proto::encode(&req);
    let token = wang.token();

    let first: Reply<PushResponse> = decode_reply(post_raw(
        &server.url,
        "/v1/push",
        Some(&token),
        body.clone(),
    ));
    let first = first.ok();
    assert_eq!((first.stored, first.duplicates), (n, 0));
    assert_eq!(first.grid_seqs.len(), 1);
    assert_eq!(first.grid_seqs[0].seq, n);

    let feed = |since| -> PullResponse {
        wang.call(
            "/v1/pull",
            &PullRequest {
                grid: "g1".into(),
                since,
                limit: 100,
                wait_ms: 0,
            },
        )
        .ok()
    };
    let before = feed(0);

    let second: Reply<PushResponse> =
        decode_reply(post_raw(&server.url, "/v1/push", Some(&token), body));
    let second = second.ok();
    assert_eq!((second.stored, second.duplicates), (0, n));
    assert_eq!(second.grid_seqs[0].seq, n, "the feed position is unchanged");
    assert_eq!(server.grid_seq("g1"), n);
    let after = feed(0);
    assert_eq!(after.changes, before.changes);
    assert_eq!(after.next, n);
    // The pusher is not sent its own changes back; its cursor still moves past them.
    assert!(
        after.changes.is_empty(),
        "no echoes: {:?}",
        after.changes.len()
    );

    // The client sees the same: the outbox is acknowledged once it syncs; nothing new.
    let r = wang.sync().unwrap();
    assert_eq!(r.pushed, 0);
    assert_eq!(
        r.duplicates, n,
        "pushed again as duplicates, no echoes pulled back"
    );
    assert_eq!(server.grid_seq("g1"), n);
}
