//! Before a first sync (issue 10, item 7): a freshly enrolled phone asks how big its grids
//! are, and the answer is what the bootstrap then brings, in the caller's scope.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use xiuhua_core::sync::http::HttpTransport;
use xiuhua_e2e::*;

#[test]
fn a_new_phone_learns_the_size_of_its_first_sync_and_the_bootstrap_matches_it() {
    let server = Server::with_directory();
    let mut wang = server.enroll("u-wang");
    for (b, room) in [("1号楼", "101"), ("3号楼", "301"), ("3号楼", "302")] {
        wang.store
            .create_household(household("g1", b, room, "住户"))
            .unwrap();
    }
    wang.store
        .create_record(record("g1", Some("3号楼"), "楼道灯坏了"))
        .unwrap();
    wang.sync().unwrap();

    // The whole grid for a 网格员, only 3号楼 for its 楼门长.
    let fresh = server.enroll("u-wang");
    let mut t = HttpTransport::new(&fresh.url).unwrap();
    let e =
        xiuhua_core::sync::estimate(&fresh.store.credentials().unwrap().unwrap(), &mut t).unwrap();
    let g1 = e
        .grids
        .iter()
        .find(|g| g.grid == "g1")
        .expect("g1 estimated");
    assert_eq!(g1.docs, 4);
    assert!(g1.bytes > 1_000, "{g1:?}");
    let mut li = server.enroll("u-li");
    let e = xiuhua_core::sync::estimate(&li.store.credentials().unwrap().unwrap(), &mut t).unwrap();
    assert_eq!(e.grids.len(), 1);
    assert_eq!((e.grids[0].grid.as_str(), e.grids[0].docs), ("g1", 3));
    assert!(e.grids[0].bytes < g1.bytes);
    let r = li.sync().unwrap();
    assert_eq!(r.bootstrapped_docs, 3, "{r:?}");

    // Without credentials: refused, nothing said about the grid.
    let (status, _) = post_raw(&fresh.url, "/v1/estimate", None, vec![]);
    assert_eq!(status, 401);
}
