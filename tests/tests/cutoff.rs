//! A pull cut off halfway (the connection breaks after N replies, the last reply lost on
//! the way), then resumed: every change arrives exactly once and the projections agree.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use xiuhua_core::Error;
use xiuhua_core::sync::http::HttpTransport;
use xiuhua_core::sync::proto::{self, PullResponse};
use xiuhua_core::sync::{SyncOptions, Transport, TransportError};
use xiuhua_e2e::*;

/// Delivers `left` replies, then sends the next request but loses its reply.
struct CutAfter {
    inner: HttpTransport,
    left: Option<usize>,
    /// Seqs of the pulled changes actually delivered to the client.
    delivered: Vec<u64>,
}

impl Transport for CutAfter {
    fn post(
        &mut self,
        path: &str,
        body: Vec<u8>,
        bearer: Option<&str>,
    ) -> Result<(u16, Vec<u8>), TransportError> {
        let (status, reply) = self.inner.post(path, body, bearer)?;
        if let Some(left) = &mut self.left {
            if *left == 0 {
                return Err(TransportError::Other("connection reset by peer".into()));
            }
            *left -= 1;
        }
        if path == "/v1/pull" && status == 200 {
            let page: PullResponse = proto::decode(&reply).unwrap();
            self.delivered.extend(page.changes.iter().map(|c| c.seq));
        }
        Ok((status, reply))
    }
}

#[test]
fn an_interrupted_pull_resumes_without_loss_or_repeat() {
    let server = Server::with_directory();
    let mut wang = server.enroll("u-wang");
    let mut zhao = server.enroll("u-zhao");

    // zhao holds part of g1 already, so the next sync pulls pages instead of bootstrapping.
    zhao.store
        .create_household(household("g1", "1号楼", "101", "赵一"))
        .unwrap();
    zhao.sync().unwrap();
    let start = zhao.store.sync_cursor("g1").unwrap();
    assert_eq!(start, 1);

    for i in 0..12 {
        let h = wang
            .store
            .create_household(household("g1", "2号楼", &format!("2{i:02}"), "王二"))
            .unwrap();
        wang.store
            .create_record(xiuhua_core::model::NewRecord {
                household: Some(h),
                ..record("g1", None, "需要上门核实")
            })
            .unwrap();
    }
    wang.sync().unwrap();
    let total = server.grid_seq("g1");
    assert_eq!(total, 25);

    let opts = SyncOptions {
        pull_limit: 4,
        ..SyncOptions::default()
    };
    // Per grid: pull g1 pages (4 changes each); the 4th reply is lost.
    let mut cut = CutAfter {
        inner: server.transport(),
        left: Some(3),
        delivered: Vec::new(),
    };
    let e = zhao.sync_via(&mut cut, opts.clone()).unwrap_err();
    assert!(matches!(e, Error::Network(_)), "{e:?}");
    let st = zhao.store.sync_status().unwrap();
    assert!(st.last_error.is_some(), "a cut sync is never a success");
    let mid = zhao.store.sync_cursor("g1").unwrap();
    assert!(mid > start && mid < total, "cursor {mid} of {total}");
    assert_eq!(
        cut.delivered.iter().copied().max(),
        Some(mid),
        "the cursor is the last change applied"
    );

    let mut whole = CutAfter {
        inner: server.transport(),
        left: None,
        delivered: cut.delivered.clone(),
    };
    let r = zhao.sync_via(&mut whole, opts).unwrap();
    assert_eq!(zhao.store.sync_cursor("g1").unwrap(), total);
    let delivered = whole.delivered;
    let unique: BTreeSet<u64> = delivered.iter().copied().collect();
    assert_eq!(
        unique.len(),
        delivered.len(),
        "a change arrived twice: {delivered:?}"
    );
    assert_eq!(
        unique,
        (start + 1..=total).collect::<BTreeSet<u64>>(),
        "every change exactly once"
    );
    assert_eq!(r.pulled, total - mid);
    assert_eq!(
        zhao.store.projection_dump().unwrap(),
        wang.store.projection_dump().unwrap()
    );
    assert_eq!(zhao.store.sync_status().unwrap().last_error, None);
}
