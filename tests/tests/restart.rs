//! The server killed and restarted on the same data folder between a push and a pull.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use xiuhua_e2e::*;

#[test]
fn nothing_is_lost_across_a_restart() {
    let mut server = Server::with_directory();
    let mut wang = server.enroll("u-wang");
    let mut zhao = server.enroll("u-zhao");
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            wang.store
                .create_household(household("g1", "2号楼", &format!("10{i}"), "张三"))
                .unwrap(),
        );
    }
    ids.push(
        wang.store
            .create_record(record("g1", Some("2号楼"), "楼道堆物"))
            .unwrap(),
    );
    let r = wang.sync().unwrap();
    assert_eq!(r.pushed, 6);
    let seq = server.grid_seq("g1");

    // SIGKILL: no graceful shutdown, whatever was acknowledged must be on disk.
    server.kill();
    server.restart();
    assert_eq!(server.grid_seq("g1"), seq);
    zhao.url = server.url.clone();
    wang.url = server.url.clone();

    let r = zhao.sync().unwrap();
    assert_eq!(r.bootstrapped_docs, 6, "{r:?}");
    ids.sort();
    assert_eq!(doc_ids(&zhao.store, "g1"), ids);
    assert_eq!(
        zhao.store.projection_dump().unwrap(),
        wang.store.projection_dump().unwrap()
    );

    // Tokens issued before the restart still work (the secret is in the data folder), and
    // the feed continues where it stood.
    wang.store
        .create_household(household("g1", "2号楼", "201", "李四"))
        .unwrap();
    let r = wang.sync().unwrap();
    assert_eq!(r.pushed, 1);
    assert_eq!(server.grid_seq("g1"), seq + 1);
    let r = zhao.sync().unwrap();
    assert_eq!(r.pulled, 1);
    assert_eq!(
        zhao.store.projection_dump().unwrap(),
        wang.store.projection_dump().unwrap()
    );
}
