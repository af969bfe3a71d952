//! The storage conformance suite: what every [`Storage`] backend must do, written once.
//!
//! Each case is an async fn taking a [`Factory`]; `storage_conformance.rs` runs every case
//! against SQLite (a temporary folder) and PostgreSQL (a fresh database) through one macro.
//! A factory's `open` gives a new handle on the same database, as another server process
//! would have (SQLite: another `SqliteStorage` on the same file; PostgreSQL: another pool).

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_bytes::ByteBuf;
use xiuhua_core::Store;
use xiuhua_core::model::*;
use xiuhua_core::sync::proto::{DocChanges, PushRequest};
use xiuhua_server::access::{Caller, Scope};
use xiuhua_server::credentials::CredentialRefusal;
use xiuhua_server::error::{RefusalKind, StoreError};
use xiuhua_server::ingest;
use xiuhua_server::storage::{
    DeviceStanding, EnrollOutcome, NewDevice, Quota, RefreshOutcome, Storage,
};

/// Opens handles on one database.
#[async_trait]
pub trait Factory: Send + Sync {
    async fn open(&self) -> Arc<dyn Storage>;
    /// Overwrites a stored document's bytes behind the storage's back, as a bug or a disk
    /// fault would (for the check and quarantine cases).
    async fn overwrite_doc_bytes(&self, doc: &str, bytes: &[u8]);
}

const FAR: i64 = i64::MAX / 2;

/// The directory of every case: district rd, community c1 with grids g1 (buildings 1号楼,
/// 2号楼) and g2; users u-grid (网格员 on g1, g2), u-lead (楼门长 of 1号楼 in g1), u-staff
/// (社区工作者 on the community).
pub async fn directory(s: &dyn Storage) {
    s.add_district("rd", "容东片区").await.unwrap();
    s.add_community("c1", "金湖社区", "rd").await.unwrap();
    s.add_grid("g1", "第一网格", "c1").await.unwrap();
    s.add_grid("g2", "第二网格", "c1").await.unwrap();
    s.add_building("g1", "1号楼").await.unwrap();
    s.add_building("g1", "2号楼").await.unwrap();
    for (u, n) in [("u-grid", "王伟"), ("u-lead", "李强"), ("u-staff", "赵敏")] {
        s.add_user(u, n).await.unwrap();
    }
    s.grant("u-grid", &["g1".into(), "g2".into()], Role::GridMember, &[])
        .await
        .unwrap();
    s.grant(
        "u-lead",
        &["g1".into()],
        Role::BuildingLeader,
        &["1号楼".into()],
    )
    .await
    .unwrap();
    let grids = s.community_grids("c1").await.unwrap();
    s.grant("u-staff", &grids, Role::CommunityStaff, &[])
        .await
        .unwrap();
}

/// Enrolls `device` for `user` and returns its caller.
pub async fn device(s: &dyn Storage, user: &str, device: &str) -> Caller {
    let code = format!("code-{device}");
    let now = xiuhua_server::now_ms();
    s.add_enroll_code(user, &code, now + 60_000, now)
        .await
        .unwrap();
    s.enroll(&code, device, "phone", &format!("rt-{device}"), FAR, now)
        .await
        .unwrap()
        .expect("enrolled");
    match s.device_standing(device, user, now).await.unwrap() {
        DeviceStanding::Active(c) => c,
        other => panic!("{other:?}"),
    }
}

/// A device's local store.
pub fn store(user: &str, name: &str, role: Role, device: &str) -> Store {
    Store::open_in_memory(Actor::new(user, name, role, device).unwrap()).unwrap()
}

pub fn household(grid: &str, building: &str, room: &str) -> NewHousehold {
    NewHousehold {
        address: Address::new(grid, building, "1单元", room).unwrap(),
        members: vec![NewMember {
            name: "刘芳".into(),
            gender: Gender::Female,
            birth_year: 1950,
            phone: None,
            id_number: None,
            relation: Relation::Head,
            tags: vec![],
        }],
        tags: vec![],
        note: String::new(),
    }
}

pub fn record(grid: &str, building: Option<&str>, n: usize) -> NewRecord {
    NewRecord {
        grid: grid.into(),
        category: Category::Environment,
        description: format!("楼道堆放杂物 #{n}"),
        reporter: "张阿姨".into(),
        household: None,
        building: building.map(str::to_string),
        place: "楼道".into(),
    }
}

pub fn task(grid: &str) -> NewTask {
    NewTask {
        grid: grid.into(),
        level: Level::Doorstep,
        category: Category::Service,
        title: "代办低保复审".into(),
        description: String::new(),
        household: None,
        source_record: None,
        assignee: None,
        deadline: None,
    }
}

/// The store's outbox as one push request, and acknowledges it.
pub fn drain(store: &mut Store) -> PushRequest {
    let entries = store.outbox(1_000_000).unwrap();
    let mut by_doc: BTreeMap<String, Vec<ByteBuf>> = BTreeMap::new();
    let mut order = Vec::new();
    for e in &entries {
        if !by_doc.contains_key(&e.doc) {
            order.push(e.doc.clone());
        }
        by_doc
            .entry(e.doc.clone())
            .or_default()
            .push(ByteBuf::from(e.change.clone()));
    }
    store
        .ack_outbox(&entries.iter().map(|e| e.id).collect::<Vec<_>>())
        .unwrap();
    PushRequest {
        docs: order
            .into_iter()
            .map(|d| DocChanges {
                changes: by_doc.remove(&d).unwrap(),
                doc: d,
            })
            .collect(),
    }
}

fn count(req: &PushRequest) -> u64 {
    req.docs.iter().map(|d| d.changes.len() as u64).sum()
}

pub async fn push(
    s: &dyn Storage,
    caller: &Caller,
    req: PushRequest,
) -> Result<xiuhua_server::storage::PushOutcome, StoreError> {
    let parsed = ingest::parse(&caller.own_devices(), req, 100_000).map_err(StoreError::from)?;
    s.push(caller, parsed).await
}

pub async fn push_quota(
    s: &dyn Storage,
    caller: &Caller,
    req: PushRequest,
    quota: &Quota,
) -> Result<xiuhua_server::storage::PushOutcome, StoreError> {
    let parsed = ingest::parse(&caller.own_devices(), req, 100_000).map_err(StoreError::from)?;
    s.push_within(caller, parsed, quota).await
}

async fn seq_of(s: &dyn Storage, grid: &str) -> u64 {
    s.list_grids()
        .await
        .unwrap()
        .into_iter()
        .find(|g| g.id == grid)
        .unwrap()
        .seq
}

fn refusal(e: StoreError) -> RefusalKind {
    match e {
        StoreError::Refused(r) => r.kind,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

// ----- cases -----

/// Directory, users and grants: creation, duplicates, unknown references, replacement.
pub async fn directory_and_grants(f: &dyn Factory) {
    let s = f.open().await;
    let s = &*s;
    s.health().await.unwrap();
    directory(s).await;
    assert!(matches!(
        s.add_district("rd", "x").await,
        Err(StoreError::Duplicate(_))
    ));
    assert!(matches!(
        s.add_community("c9", "x", "nope").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.add_grid("g1", "x", "c1").await,
        Err(StoreError::Duplicate(_))
    ));
    assert!(matches!(
        s.add_grid("g9", "x", "nope").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.add_building("g1", "1号楼").await,
        Err(StoreError::Duplicate(_))
    ));
    assert!(matches!(
        s.add_building("nope", "1号楼").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.add_user("u-grid", "x").await,
        Err(StoreError::Duplicate(_))
    ));
    assert!(matches!(
        s.grant(
            "u-lead",
            &["g1".into()],
            Role::BuildingLeader,
            &["9号楼".into()]
        )
        .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.grant("nobody", &["g1".into()], Role::GridMember, &[])
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        s.community_grids("c1").await.unwrap(),
        vec!["g1".to_string(), "g2".to_string()]
    );
    let grids = s.list_grids().await.unwrap();
    assert_eq!(grids.len(), 2);
    assert_eq!(grids[0].id, "g1");
    assert_eq!(grids[0].community, "c1");
    assert_eq!(grids[0].district, "rd");
    assert_eq!(
        grids[0].buildings,
        vec!["1号楼".to_string(), "2号楼".into()]
    );
    assert_eq!(grids[0].seq, 0);
    let users = s.list_users().await.unwrap();
    assert_eq!(
        users.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
        ["u-grid", "u-lead", "u-staff"]
    );
    let grants = s.list_grants().await.unwrap();
    let shape: Vec<(String, String, Role)> = grants
        .iter()
        .map(|g| (g.user.clone(), g.grid.clone(), g.role))
        .collect();
    assert_eq!(
        shape,
        vec![
            ("u-grid".into(), "g1".into(), Role::GridMember),
            ("u-grid".into(), "g2".into(), Role::GridMember),
            ("u-lead".into(), "g1".into(), Role::BuildingLeader),
            ("u-staff".into(), "g1".into(), Role::CommunityStaff),
            ("u-staff".into(), "g2".into(), Role::CommunityStaff),
        ]
    );
    assert_eq!(grants[2].buildings, vec!["1号楼".to_string()]);
    // A grant replaces the earlier one on the same grid.
    s.grant(
        "u-lead",
        &["g1".into()],
        Role::BuildingLeader,
        &["1号楼".into(), "2号楼".into()],
    )
    .await
    .unwrap();
    let g = s
        .list_grants()
        .await
        .unwrap()
        .into_iter()
        .find(|g| g.user == "u-lead")
        .unwrap();
    assert_eq!(g.buildings, vec!["1号楼".to_string(), "2号楼".into()]);
    s.revoke_grant("u-grid", "g2").await.unwrap();
    assert!(matches!(
        s.revoke_grant("u-grid", "g2").await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(s.list_grants().await.unwrap().len(), 4);
    // Another handle (another process) sees the same directory.
    let other = f.open().await;
    assert_eq!(other.list_grids().await.unwrap(), grids);
}

/// Enrollment codes, refresh rotation, device standing, revocation.
pub async fn devices_and_tokens(f: &dyn Factory) {
    let s = f.open().await;
    let s = &*s;
    directory(s).await;
    let now = xiuhua_server::now_ms();
    s.add_enroll_code("u-grid", "code-a", now + 60_000, now)
        .await
        .unwrap();
    s.add_enroll_code("u-grid", "code-old", now - 1, now - 10)
        .await
        .unwrap();
    assert!(matches!(
        s.add_enroll_code("nobody", "code-x", now + 1, now).await,
        Err(StoreError::NotFound(_))
    ));
    let e = s
        .enroll("code-a", "dev-a", "王伟的手机", "rt-1", now + 60_000, now)
        .await
        .unwrap()
        .expect("enrolled");
    assert_eq!(e.user, "u-grid");
    assert_eq!(e.user_name, "王伟");
    assert_eq!(
        e.grants.iter().map(|g| g.grid.as_str()).collect::<Vec<_>>(),
        ["g1", "g2"]
    );
    // A code works once; an expired or unknown one never.
    assert!(
        s.enroll("code-a", "dev-b", "x", "rt-2", FAR, now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.enroll("code-old", "dev-b", "x", "rt-2", FAR, now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.enroll("code-zzz", "dev-b", "x", "rt-2", FAR, now)
            .await
            .unwrap()
            .is_none()
    );
    // Refresh rotates; the old token is spent.
    assert_eq!(
        s.refresh("rt-1", "rt-1b", FAR, now).await.unwrap(),
        RefreshOutcome::Rotated {
            device: "dev-a".into(),
            user: "u-grid".into()
        }
    );
    assert_eq!(
        s.refresh("rt-none", "rt-x", FAR, now).await.unwrap(),
        RefreshOutcome::Refused(CredentialRefusal::UnknownToken)
    );
    // Standing: active with grants; unknown for another user or device.
    let caller = match s.device_standing("dev-a", "u-grid", now).await.unwrap() {
        DeviceStanding::Active(c) => c,
        other => panic!("{other:?}"),
    };
    assert_eq!(caller.user_name, "王伟");
    assert_eq!(caller.grants.len(), 2);
    assert!(caller.held_grids.is_empty());
    assert_eq!(
        s.device_standing("dev-a", "u-lead", now).await.unwrap(),
        DeviceStanding::Unknown
    );
    assert_eq!(
        s.device_standing("dev-zzz", "u-grid", now).await.unwrap(),
        DeviceStanding::Unknown
    );
    s.mark_held("dev-a", "g1").await.unwrap();
    s.mark_held("dev-a", "g1").await.unwrap();
    s.mark_held("dev-a", "g2").await.unwrap();
    let devices = s.list_devices(Some("u-grid")).await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].id, "dev-a");
    assert_eq!(devices[0].name, "王伟的手机");
    assert!(!devices[0].revoked);
    assert!(matches!(
        s.list_devices(Some("nobody")).await,
        Err(StoreError::NotFound(_))
    ));
    // Revoking the device: standing and refresh say which grids to purge.
    s.revoke_device("dev-a", now).await.unwrap();
    let purge = vec!["g1".to_string(), "g2".into()];
    assert_eq!(
        s.device_standing("dev-a", "u-grid", now).await.unwrap(),
        DeviceStanding::Revoked {
            held_grids: purge.clone()
        }
    );
    assert_eq!(
        s.refresh("rt-1b", "rt-1d", FAR, now).await.unwrap(),
        RefreshOutcome::Revoked { held_grids: purge }
    );
    assert!(s.list_devices(None).await.unwrap()[0].revoked);
    assert!(matches!(
        s.revoke_device("dev-zzz", now).await,
        Err(StoreError::NotFound(_))
    ));
    // Revoking a user revokes their devices and spends their codes.
    s.add_enroll_code("u-lead", "code-l", now + 60_000, now)
        .await
        .unwrap();
    device(s, "u-lead", "dev-l").await;
    s.add_enroll_code("u-lead", "code-l2", now + 60_000, now)
        .await
        .unwrap();
    s.revoke_user("u-lead", now).await.unwrap();
    assert!(matches!(
        s.device_standing("dev-l", "u-lead", now).await.unwrap(),
        DeviceStanding::Revoked { .. }
    ));
    assert!(
        s.enroll("code-l2", "dev-l2", "x", "rt-l2", FAR, now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        s.add_enroll_code("u-lead", "code-l3", now + 60_000, now)
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(
        s.list_users()
            .await
            .unwrap()
            .iter()
            .any(|u| u.id == "u-lead" && u.revoked)
    );
}

/// The refresh rule of `xiuhua_server::credentials` on this backend: a spent token is
/// reissued while none of its children was presented (lost replies, duplicated requests);
/// the first child presented wins and its siblings die; presenting a token whose child was
/// used is theft and resets the device (every token refused, standing `Reset`); an expired
/// token is refused; a revoked device is told to purge.
pub async fn refresh_rotation_rules(f: &dyn Factory) {
    let s = f.open().await;
    let s = &*s;
    directory(s).await;
    let now = xiuhua_server::now_ms();
    device(s, "u-grid", "dev-a").await; // refresh token rt-dev-a
    let rotated = RefreshOutcome::Rotated {
        device: "dev-a".into(),
        user: "u-grid".into(),
    };
    // rt-dev-a → c1 (reply lost), → c2 (reply lost), → c3 (arrives).
    for child in ["c1", "c2", "c3"] {
        assert_eq!(
            s.refresh("rt-dev-a", child, FAR, now).await.unwrap(),
            rotated
        );
    }
    // c3 is presented first: it wins, its siblings c1 and c2 die.
    assert_eq!(s.refresh("c3", "d1", FAR, now).await.unwrap(), rotated);
    assert_eq!(
        s.refresh("c1", "x1", FAR, now).await.unwrap(),
        RefreshOutcome::Refused(CredentialRefusal::TokenExpired)
    );
    // d1's reply lost too: retrying c3 still works, and the newest child then wins.
    assert_eq!(s.refresh("c3", "d2", FAR, now).await.unwrap(), rotated);
    assert_eq!(s.refresh("d2", "e1", FAR, now).await.unwrap(), rotated);
    assert!(matches!(
        s.device_standing("dev-a", "u-grid", now).await.unwrap(),
        DeviceStanding::Active(_)
    ));
    // c3's child d2 was used: presenting c3 again is theft.
    assert_eq!(
        s.refresh("c3", "x2", FAR, now).await.unwrap(),
        RefreshOutcome::Refused(CredentialRefusal::TokenReused)
    );
    assert_eq!(
        s.refresh("e1", "x3", FAR, now).await.unwrap(),
        RefreshOutcome::Refused(CredentialRefusal::DeviceReset)
    );
    assert_eq!(
        s.device_standing("dev-a", "u-grid", now).await.unwrap(),
        DeviceStanding::Reset
    );
    // The device is not revoked (its data stays); the user enrolls a new one.
    assert!(!s.list_devices(Some("u-grid")).await.unwrap()[0].revoked);
    device(s, "u-grid", "dev-b").await;
    // Expiry: a token presented at or after its expiry is refused.
    let code = "code-short";
    s.add_enroll_code("u-grid", code, now + 60_000, now)
        .await
        .unwrap();
    s.enroll(code, "dev-c", "phone", "rt-short", now + 10, now)
        .await
        .unwrap()
        .expect("enrolled");
    assert_eq!(
        s.refresh("rt-short", "x4", FAR, now + 10).await.unwrap(),
        RefreshOutcome::Refused(CredentialRefusal::TokenExpired)
    );
    // A revoked device is told to purge, whatever its token.
    s.mark_held("dev-b", "g1").await.unwrap();
    s.revoke_device("dev-b", now).await.unwrap();
    assert_eq!(
        s.refresh("rt-dev-b", "x5", FAR, now).await.unwrap(),
        RefreshOutcome::Revoked {
            held_grids: vec!["g1".into()]
        }
    );
}

/// Two phones presenting the same spent token's two children at once: exactly one wins.
pub async fn concurrent_refreshes_of_siblings(f: &dyn Factory) {
    let s = f.open().await;
    directory(&*s).await;
    let now = xiuhua_server::now_ms();
    device(&*s, "u-grid", "dev-a").await;
    for child in ["c1", "c2"] {
        s.refresh("rt-dev-a", child, FAR, now).await.unwrap();
    }
    let (a, b) = (f.open().await, f.open().await);
    let (ra, rb) = tokio::join!(
        async move { a.refresh("c1", "d1", FAR, now).await.unwrap() },
        async move { b.refresh("c2", "d2", FAR, now).await.unwrap() },
    );
    let wins = [&ra, &rb]
        .iter()
        .filter(|r| matches!(r, RefreshOutcome::Rotated { .. }))
        .count();
    assert_eq!(wins, 1, "{ra:?} {rb:?}");
}

/// Seqs 1..N in push order, dedup by hash, cursors and paging.
pub async fn ordering_dedup_paging(f: &dyn Factory) {
    let s = f.open().await;
    let s = &*s;
    directory(s).await;
    let caller = device(s, "u-grid", "dev-a").await;
    let mut st = store("u-grid", "王伟", Role::GridMember, "dev-a");
    for i in 0..5 {
        st.create_household(household("g1", "1号楼", &format!("{}01", i + 1)))
            .unwrap();
    }
    let first = drain(&mut st);
    let n1 = count(&first);
    let again = first.clone();
    let o = push(s, &caller, first).await.unwrap();
    assert_eq!(o.stored, n1);
    assert_eq!(o.duplicates, 0);
    assert_eq!(o.grid_seqs, vec![("g1".to_string(), n1)]);
    // The same push again: nothing stored, everything counted as a duplicate.
    let o = push(s, &caller, again).await.unwrap();
    assert_eq!(o.stored, 0);
    assert_eq!(o.duplicates, n1);
    assert_eq!(o.grid_seqs, vec![("g1".to_string(), n1)]);
    for i in 0..7 {
        st.create_record(record("g1", Some("2号楼"), i)).unwrap();
    }
    let second = drain(&mut st);
    let n2 = count(&second);
    let o = push(s, &caller, second).await.unwrap();
    assert_eq!(o.grid_seqs, vec![("g1".to_string(), n1 + n2)]);
    let total = n1 + n2;
    assert_eq!(seq_of(s, "g1").await, total);
    assert_eq!(seq_of(s, "g2").await, 0);
    // Paging: every seq once, in order, contiguous; `more` until the end.
    let mut since = 0;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let p = s.pull("g1", since, 3, &Scope::Grid).await.unwrap();
        pages += 1;
        assert!(p.changes.len() <= 3);
        seen.extend(p.changes.iter().map(|c| c.0));
        if !p.more {
            assert_eq!(p.next, total);
            break;
        }
        assert_eq!(p.next, p.changes.last().unwrap().0);
        since = p.next;
    }
    assert_eq!(seen, (1..=total).collect::<Vec<_>>());
    assert_eq!(pages as u64, total.div_ceil(3));
    // A page that ends exactly at the head says `more` = false.
    let p = s.pull("g1", total - 2, 2, &Scope::Grid).await.unwrap();
    assert_eq!(p.changes.len(), 2);
    assert!(!p.more);
    assert_eq!(p.next, total);
    // The bytes round-trip and name their documents.
    let all = s.pull("g1", 0, 1000, &Scope::Grid).await.unwrap();
    let docs: BTreeSet<&str> = all.changes.iter().map(|c| c.1.as_str()).collect();
    assert_eq!(docs.len(), 12);
    for (_, _, bytes) in &all.changes {
        automerge::Change::try_from(bytes.as_slice()).unwrap();
    }
    // At the head: empty, cursor unchanged; an unknown grid: empty.
    let p = s.pull("g1", total, 10, &Scope::Grid).await.unwrap();
    assert!(p.changes.is_empty() && !p.more);
    assert_eq!(p.next, total);
    let p = s.pull("nope", 0, 10, &Scope::Grid).await.unwrap();
    assert!(p.changes.is_empty() && !p.more);
    assert_eq!(p.next, 0);
    // Another handle applies the store's pulled pages and converges.
    let other = f.open().await;
    let mut st2 = store("u-grid", "王伟", Role::GridMember, "dev-b");
    let p = other.pull("g1", 0, 1000, &Scope::Grid).await.unwrap();
    let remote: Vec<xiuhua_core::RemoteChange> = p
        .changes
        .into_iter()
        .map(|(_, doc, change)| xiuhua_core::RemoteChange { doc, change })
        .collect();
    st2.apply_remote(&remote).unwrap();
    assert_eq!(
        st2.ledger("g1").unwrap(),
        st.ledger("g1").unwrap(),
        "converged"
    );
}

/// Bootstrap bundles and building-scoped reads; cursors skip filtered-out changes.
pub async fn bootstrap_and_scope(f: &dyn Factory) {
    let s = f.open().await;
    let s = &*s;
    directory(s).await;
    let caller = device(s, "u-grid", "dev-a").await;
    let mut st = store("u-grid", "王伟", Role::GridMember, "dev-a");
    let h1 = st
        .create_household(household("g1", "1号楼", "101"))
        .unwrap();
    let h2 = st
        .create_household(household("g1", "2号楼", "201"))
        .unwrap();
    let r0 = st.create_record(record("g1", None, 0)).unwrap();
    push(s, &caller, drain(&mut st)).await.unwrap();
    let head = seq_of(s, "g1").await;
    let snap = s.bootstrap("g1", &Scope::Grid, None, 0).await.unwrap();
    assert_eq!(snap.cursor, head);
    assert!(!snap.more);
    let mut ids: Vec<&str> = snap.docs.iter().map(|d| d.id.as_str()).collect();
    ids.sort_unstable();
    let mut want = vec![h1.as_str(), h2.as_str(), r0.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want);
    for d in &snap.docs {
        assert!(!d.bytes.is_empty() && !d.rows.is_empty());
        assert_eq!(d.heads.len() % 32, 0);
        automerge::AutoCommit::load(&d.bytes).unwrap();
    }
    let one = Scope::Buildings(vec!["1号楼".into()]);
    let snap = s.bootstrap("g1", &one, None, 0).await.unwrap();
    assert_eq!(snap.cursor, head);
    assert_eq!(
        snap.docs.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        [h1.as_str()]
    );
    assert_eq!(snap.docs[0].kind, "household");
    // A scoped pull returns only that building's changes; a short page moves the cursor to
    // the head, so filtered-out changes never stall it.
    let p = s.pull("g1", 0, 100, &one).await.unwrap();
    assert!(!p.changes.is_empty());
    assert!(p.changes.iter().all(|c| c.1 == h1));
    assert_eq!(p.next, head);
    assert!(!p.more);
    // A full scoped page stops at its last change.
    let p = s.pull("g1", 0, 1, &one).await.unwrap();
    assert_eq!(p.changes.len(), 1);
    assert_eq!(p.next, p.changes[0].0);
    let empty = s.bootstrap("g2", &Scope::Grid, None, 0).await.unwrap();
    assert_eq!(empty.cursor, 0);
    assert!(empty.docs.is_empty());
    // A first sync's estimate is the bootstrap's own count and size, per scope.
    let full = s.bootstrap("g1", &Scope::Grid, None, 0).await.unwrap();
    let size = |snap: &xiuhua_server::storage::Snapshot| {
        let bytes = snap
            .docs
            .iter()
            .map(|d| d.bytes.len() + d.rows.len())
            .sum::<usize>();
        (snap.docs.len() as u64, bytes as u64)
    };
    assert_eq!(s.grid_size("g1", &Scope::Grid).await.unwrap(), size(&full));
    let scoped = s.bootstrap("g1", &one, None, 0).await.unwrap();
    assert_eq!(s.grid_size("g1", &one).await.unwrap(), size(&scoped));
    assert_eq!(s.grid_size("g2", &Scope::Grid).await.unwrap(), (0, 0));
    assert_eq!(
        s.grid_size("g1", &Scope::Buildings(vec![])).await.unwrap(),
        (0, 0),
        "no building, nothing"
    );
    // Document metadata and bytes.
    let (meta, bytes) = s.doc(&h2).await.unwrap().unwrap();
    assert_eq!(meta.grid, "g1");
    assert_eq!(meta.building.as_deref(), Some("2号楼"));
    assert_eq!(meta.tier, Tier::Grid);
    automerge::AutoCommit::load(&bytes).unwrap();
    assert!(s.doc("nope").await.unwrap().is_none());
}

/// A household moved to another building takes the records (without a building of their
/// own) and tasks that name it along: the server files them under the new building, and a
/// pull of a building scope lists what left or entered it in the page's window (the moves),
/// on every backend; bootstrap and document reads follow the new building.
pub async fn moves_follow_the_household(f: &dyn Factory) {
    use xiuhua_server::storage::{MoveRow, scope_moves};
    let s = f.open().await;
    let s = &*s;
    directory(s).await;
    let caller = device(s, "u-grid", "dev-a").await;
    let mut st = store("u-grid", "王伟", Role::GridMember, "dev-a");
    let hh = st
        .create_household(household("g1", "1号楼", "101"))
        .unwrap();
    let other = st
        .create_household(household("g1", "1号楼", "102"))
        .unwrap();
    let mut follows = record("g1", None, 1);
    follows.household = Some(hh.clone());
    let follows = st.create_record(follows).unwrap();
    let mut own = record("g1", Some("1号楼"), 2);
    own.household = Some(hh.clone());
    let own = st.create_record(own).unwrap();
    let mut t = task("g1");
    t.household = Some(hh.clone());
    let t = st.create_task(t).unwrap();
    let mut t_other = task("g1");
    t_other.household = Some(other.clone());
    let t_other = st.create_task(t_other).unwrap();
    push(s, &caller, drain(&mut st)).await.unwrap();
    let before = seq_of(s, "g1").await;
    let b1 = Scope::Buildings(vec!["1号楼".into()]);
    let b2 = Scope::Buildings(vec!["2号楼".into()]);
    assert!(s.pull("g1", 0, 100, &b1).await.unwrap().moves.is_empty());

    st.move_household(&hh, "2号楼", "3单元", "301").unwrap();
    push(s, &caller, drain(&mut st)).await.unwrap();
    let at = seq_of(s, "g1").await;
    assert_eq!(at, before + 1);
    let mut want: Vec<String> = vec![hh.clone(), follows.clone(), t.clone()];
    want.sort();

    // A phone of 1号楼 learns what left; one of 2号楼 what arrived; the moves are the ones
    // of the window only.
    let p = s.pull("g1", before, 100, &b1).await.unwrap();
    assert!(
        p.changes.is_empty(),
        "the moving change is not 1号楼's any more"
    );
    assert_eq!(p.next, at);
    let mut moved: Vec<&MoveRow> = p.moves.iter().collect();
    moved.sort_by(|a, b| a.doc.cmp(&b.doc));
    assert_eq!(
        moved.iter().map(|m| m.doc.clone()).collect::<Vec<_>>(),
        want
    );
    for m in &moved {
        assert_eq!(
            (m.seq, m.from.as_deref(), m.to.as_deref()),
            (at, Some("1号楼"), Some("2号楼"))
        );
    }
    assert_eq!(scope_moves(&b1, &p.moves), (want.clone(), vec![]));
    let p2 = s.pull("g1", before, 100, &b2).await.unwrap();
    assert_eq!(
        p2.changes.iter().map(|c| c.1.as_str()).collect::<Vec<_>>(),
        [hh.as_str()]
    );
    assert_eq!(scope_moves(&b2, &p2.moves), (vec![], want.clone()));
    assert!(s.pull("g1", at, 100, &b1).await.unwrap().moves.is_empty());
    assert!(
        s.pull("g1", before, 100, &Scope::Grid)
            .await
            .unwrap()
            .moves
            .is_empty()
    );

    // The followers are filed under 2号楼; the record with its own building and the other
    // household's task stay.
    for (id, b) in [
        (&hh, "2号楼"),
        (&follows, "2号楼"),
        (&t, "2号楼"),
        (&own, "1号楼"),
        (&other, "1号楼"),
        (&t_other, "1号楼"),
    ] {
        let (meta, _) = s.doc(id).await.unwrap().unwrap();
        assert_eq!(meta.building.as_deref(), Some(b), "{id}");
    }
    let snap = s.bootstrap("g1", &b2, None, 0).await.unwrap();
    let mut ids: Vec<String> = snap.docs.iter().map(|d| d.id.clone()).collect();
    ids.sort();
    assert_eq!(ids, want);

    // The task, edited now by the grid member, stays in 2号楼 and is no move.
    st.task_action(
        &t,
        TaskAction::Note {
            text: "已电话联系".into(),
        },
    )
    .unwrap();
    push(s, &caller, drain(&mut st)).await.unwrap();
    let p = s.pull("g1", at, 100, &b2).await.unwrap();
    assert!(p.moves.is_empty());
    assert_eq!(
        p.changes.iter().map(|c| c.1.as_str()).collect::<Vec<_>>(),
        [t.as_str()]
    );

    // Back to 1号楼: the round trip nets out over the whole window.
    st.move_household(&hh, "1号楼", "1单元", "101").unwrap();
    push(s, &caller, drain(&mut st)).await.unwrap();
    assert_eq!(
        scope_moves(&b1, &s.pull("g1", before, 100, &b1).await.unwrap().moves),
        (vec![], vec![])
    );
    assert_eq!(
        scope_moves(&b2, &s.pull("g1", at, 100, &b2).await.unwrap().moves),
        (want, vec![])
    );
    let (meta, _) = s.doc(&t).await.unwrap().unwrap();
    assert_eq!(meta.building.as_deref(), Some("1号楼"));
}

/// Bootstrap in pages: documents ordered by id, each exactly once across the pages, `more`
/// on every page but the last, and every page carrying the grid's seq read with it (the
/// client keeps the first page's: a document pushed between pages is pulled from there).
pub async fn bootstrap_pages(f: &dyn Factory) {
    let s = f.open().await;
    let s = &*s;
    directory(s).await;
    let caller = device(s, "u-grid", "dev-a").await;
    let mut st = store("u-grid", "王伟", Role::GridMember, "dev-a");
    let mut want = BTreeSet::new();
    for n in 0..7 {
        want.insert(st.create_record(record("g1", None, n)).unwrap());
    }
    st.create_record(record("g2", None, 99)).unwrap();
    push(s, &caller, drain(&mut st)).await.unwrap();
    let head = seq_of(s, "g1").await;

    let p1 = s.bootstrap("g1", &Scope::Grid, None, 3).await.unwrap();
    assert_eq!((p1.docs.len(), p1.more, p1.cursor), (3, true, head));
    // A push between pages: a new document and a change to one already sent.
    let late = st.create_record(record("g1", None, 100)).unwrap();
    let first = p1.docs[0].id.clone();
    st.set_record_description(&first, "已清理").unwrap();
    push(s, &caller, drain(&mut st)).await.unwrap();
    let head2 = seq_of(s, "g1").await;
    assert!(head2 > head);
    let mut after = p1.docs.last().map(|d| d.id.clone());
    let mut pages = vec![p1];
    while pages.last().unwrap().more {
        let p = s
            .bootstrap("g1", &Scope::Grid, after.as_deref(), 3)
            .await
            .unwrap();
        assert_eq!(p.cursor, head2, "each page carries the seq read with it");
        assert!(!p.docs.is_empty());
        after = p.docs.last().map(|d| d.id.clone());
        pages.push(p);
        assert!(pages.len() <= 4, "paging does not end");
    }
    assert_eq!(pages.len(), 3);
    let ids: Vec<String> = pages
        .iter()
        .flat_map(|p| p.docs.iter().map(|d| d.id.clone()))
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ordered by id, none twice"
    );
    let got: BTreeSet<String> = ids.iter().cloned().collect();
    assert!(want.is_subset(&got), "every document exactly once");
    assert!(got.iter().all(|id| want.contains(id) || *id == late));
    // The late document, wherever it fell, is pulled from the first page's cursor.
    let p = s
        .pull("g1", pages[0].cursor, 1_000, &Scope::Grid)
        .await
        .unwrap();
    assert!(p.changes.iter().any(|c| c.1 == late));
    assert!(p.changes.iter().any(|c| c.1 == first));
    // Past the last document: an empty last page.
    let p = s
        .bootstrap("g1", &Scope::Grid, Some("\u{10FFFF}"), 3)
        .await
        .unwrap();
    assert!(p.docs.is_empty() && !p.more);
    // A scoped page holds only the caller's buildings (these records have none).
    let one = Scope::Buildings(vec!["1号楼".into()]);
    let p = s.bootstrap("g1", &one, None, 3).await.unwrap();
    assert!(p.docs.is_empty() && !p.more);
}

/// Refused pushes store nothing: outside grants, another building, a document moving grid.
pub async fn refusals_store_nothing(f: &dyn Factory) {
    let s = f.open().await;
    let s = &*s;
    directory(s).await;
    let lead = device(s, "u-lead", "dev-l").await;
    let grid = device(s, "u-grid", "dev-g").await;
    // 楼门长 writing outside their building: refused, nothing stored.
    let mut st = store("u-lead", "李强", Role::BuildingLeader, "dev-l");
    st.create_household(household("g1", "1号楼", "101"))
        .unwrap();
    st.create_household(household("g1", "2号楼", "201"))
        .unwrap();
    let e = push(s, &lead, drain(&mut st)).await.unwrap_err();
    assert_eq!(refusal(e), RefusalKind::Forbidden);
    assert_eq!(seq_of(s, "g1").await, 0);
    assert!(
        s.bootstrap("g1", &Scope::Grid, None, 0)
            .await
            .unwrap()
            .docs
            .is_empty()
    );
    // A grid the user has no grant on.
    s.add_grid("g3", "第三网格", "c1").await.unwrap();
    let mut st = store("u-grid", "王伟", Role::GridMember, "dev-g");
    st.create_record(record("g3", None, 1)).unwrap();
    let e = push(s, &grid, drain(&mut st)).await.unwrap_err();
    assert_eq!(refusal(e), RefusalKind::Forbidden);
    assert_eq!(seq_of(s, "g3").await, 0);
    // Changes of another device (actor pinning) are refused by parse.
    let mut st = store("u-grid", "王伟", Role::GridMember, "dev-other");
    st.create_record(record("g1", None, 2)).unwrap();
    assert!(push(s, &grid, drain(&mut st)).await.is_err());
    // A change whose dependencies the server lacks: conflict, nothing stored.
    let mut st = store("u-grid", "王伟", Role::GridMember, "dev-g");
    let r = st.create_record(record("g1", None, 3)).unwrap();
    let _ = drain(&mut st);
    st.set_record_description(&r, "已清理").unwrap();
    let e = push(s, &grid, drain(&mut st)).await.unwrap_err();
    assert_eq!(refusal(e), RefusalKind::Conflict);
    assert_eq!(seq_of(s, "g1").await, 0);
    assert!(s.doc(&r).await.unwrap().is_none());
}

/// Escalation tier: compare-and-set, and the pushed event checked against it.
pub async fn escalation_tier(f: &dyn Factory) {
    let s = f.open().await;
    let s = &*s;
    directory(s).await;
    let caller = device(s, "u-grid", "dev-a").await;
    let mut st = store("u-grid", "王伟", Role::GridMember, "dev-a");
    let t = st.create_task(task("g1")).unwrap();
    push(s, &caller, drain(&mut st)).await.unwrap();
    let (meta, _) = s.doc(&t).await.unwrap().unwrap();
    assert_eq!(meta.tier, Tier::Grid);
    assert_eq!(meta.unit, None);
    assert!(
        s.set_tier(&t, Tier::Grid, Tier::Community, None)
            .await
            .unwrap()
    );
    assert!(
        !s.set_tier(&t, Tier::Grid, Tier::Community, None)
            .await
            .unwrap(),
        "compare-and-set: the tier moved already"
    );
    assert!(
        s.set_tier(&t, Tier::Community, Tier::LinkedUnit, Some("物业"))
            .await
            .unwrap()
    );
    let (meta, _) = s.doc(&t).await.unwrap().unwrap();
    assert_eq!(meta.tier, Tier::LinkedUnit);
    assert_eq!(meta.unit.as_deref(), Some("物业"));
    // Not a task: nothing moves.
    let r = st.create_record(record("g1", None, 0)).unwrap();
    push(s, &caller, drain(&mut st)).await.unwrap();
    assert!(
        !s.set_tier(&r, Tier::Grid, Tier::Community, None)
            .await
            .unwrap()
    );
}

/// Purge information: a revoked grant shows in the caller's purge list for held grids.
pub async fn purge_info(f: &dyn Factory) {
    let s = f.open().await;
    let s = &*s;
    directory(s).await;
    let c = device(s, "u-grid", "dev-a").await;
    assert!(c.purge_grids().is_empty());
    s.mark_held("dev-a", "g1").await.unwrap();
    s.mark_held("dev-a", "g2").await.unwrap();
    s.revoke_grant("u-grid", "g2").await.unwrap();
    let now = xiuhua_server::now_ms();
    let c = match s.device_standing("dev-a", "u-grid", now).await.unwrap() {
        DeviceStanding::Active(c) => c,
        other => panic!("{other:?}"),
    };
    assert_eq!(c.held_grids, vec!["g1".to_string(), "g2".into()]);
    assert_eq!(c.purge_grids(), vec!["g2".to_string()]);
    assert_eq!(c.read_scope("g1").unwrap(), Scope::Grid);
    assert!(c.read_scope("g2").is_err());
}

/// Several handles (processes) × devices pushing to one grid at once, while another handle
/// pages through the feed: seqs are exactly 1..N, and the puller sees each change once.
pub async fn concurrent_pushes(f: &dyn Factory) {
    const HANDLES: usize = 3;
    const DEVICES: usize = 6;
    const BATCHES: usize = 5;
    const PER_BATCH: usize = 4;
    let admin = f.open().await;
    directory(&*admin).await;
    let mut work = Vec::new();
    for d in 0..DEVICES {
        let dev = format!("dev-{d}");
        let caller = device(&*admin, "u-grid", &dev).await;
        let mut st = store("u-grid", "王伟", Role::GridMember, &dev);
        let mut batches = Vec::new();
        for b in 0..BATCHES {
            for i in 0..PER_BATCH {
                st.create_record(record("g1", None, b * 100 + i)).unwrap();
            }
            batches.push(drain(&mut st));
        }
        work.push((caller, batches));
    }
    let total: u64 = work.iter().flat_map(|(_, b)| b.iter().map(count)).sum();
    let mut handles = Vec::new();
    for _ in 0..HANDLES {
        handles.push(f.open().await);
    }
    let reader = f.open().await;
    let puller = tokio::spawn(async move {
        let mut since = 0u64;
        let mut seen: Vec<u64> = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while (seen.len() as u64) < total {
            assert!(
                tokio::time::Instant::now() < deadline,
                "puller saw {} of {total}",
                seen.len()
            );
            let p = reader.pull("g1", since, 7, &Scope::Grid).await.unwrap();
            for (seq, _, _) in &p.changes {
                assert_eq!(
                    *seq,
                    since + 1,
                    "a gap or a repeat in the feed after {since}"
                );
                since = *seq;
                seen.push(*seq);
            }
            assert!(p.next >= since);
            since = p.next;
            if p.changes.is_empty() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        seen
    });
    let mut tasks = Vec::new();
    for (i, (caller, batches)) in work.into_iter().enumerate() {
        let s = handles[i % HANDLES].clone();
        tasks.push(tokio::spawn(async move {
            for b in batches {
                let n = count(&b);
                let o = push(&*s, &caller, b).await.unwrap();
                assert_eq!(o.stored, n);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let seen = tokio::time::timeout(Duration::from_secs(90), puller)
        .await
        .expect("puller finished")
        .unwrap();
    assert_eq!(seen, (1..=total).collect::<Vec<_>>());
    assert_eq!(seq_of(&*admin, "g1").await, total);
    let all = admin.pull("g1", 0, 100_000, &Scope::Grid).await.unwrap();
    assert_eq!(all.changes.len() as u64, total);
    let hashes: BTreeSet<Vec<u8>> = all
        .changes
        .iter()
        .map(|c| {
            automerge::Change::try_from(c.2.as_slice())
                .unwrap()
                .hash()
                .0
                .to_vec()
        })
        .collect();
    assert_eq!(hashes.len() as u64, total, "no change stored twice");
}

/// The same push racing itself from several handles: stored once, the rest duplicates.
pub async fn concurrent_same_push(f: &dyn Factory) {
    let admin = f.open().await;
    directory(&*admin).await;
    let caller = device(&*admin, "u-grid", "dev-a").await;
    let mut st = store("u-grid", "王伟", Role::GridMember, "dev-a");
    for i in 0..5 {
        st.create_record(record("g1", None, i)).unwrap();
    }
    let req = drain(&mut st);
    let n = count(&req);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let s = f.open().await;
        let (c, r) = (caller.clone(), req.clone());
        tasks.push(tokio::spawn(async move { push(&*s, &c, r).await }));
    }
    let mut stored = 0;
    let mut dups = 0;
    for t in tasks {
        let o = t.await.unwrap().unwrap();
        stored += o.stored;
        dups += o.duplicates;
    }
    assert_eq!(stored, n);
    assert_eq!(dups, 3 * n);
    assert_eq!(seq_of(&*admin, "g1").await, n);
}

/// A slow push does not hold up the others: while four large pushes (as many as a
/// PostgreSQL handle's pool has connections) do their Automerge work, a small push to another
/// document completes first (SQLite: the work runs outside the writer lock; PostgreSQL:
/// outside row locks and pooled connections).
pub async fn slow_push_does_not_stall(f: &dyn Factory) {
    const LARGE: usize = 4;
    const DOCS: usize = 250;
    let s = f.open().await;
    directory(&*s).await;
    let mut large = Vec::new();
    for d in 0..LARGE {
        let dev = format!("dev-big-{d}");
        let caller = device(&*s, "u-grid", &dev).await;
        let mut st = store("u-grid", "王伟", Role::GridMember, &dev);
        for i in 0..DOCS {
            st.create_household(household("g1", "1号楼", &format!("{d}{i:03}")))
                .unwrap();
        }
        large.push((caller, drain(&mut st)));
    }
    let small_caller = device(&*s, "u-grid", "dev-small").await;
    let mut st = store("u-grid", "王伟", Role::GridMember, "dev-small");
    st.create_record(record("g2", None, 1)).unwrap();
    let small = drain(&mut st);
    let order = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for (i, (caller, req)) in large.into_iter().enumerate() {
        let (s, order) = (s.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let n = count(&req);
            let o = push(&*s, &caller, req).await.unwrap();
            assert_eq!(o.stored, n);
            order.lock().unwrap().push(format!("large-{i}"));
        }));
    }
    // Let the large pushes read their (new) documents and start their Automerge work.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = tokio::time::Instant::now();
    let n = count(&small);
    let o = push(&*s, &small_caller, small).await.unwrap();
    let small_took = started.elapsed();
    assert_eq!(o.stored, n);
    order.lock().unwrap().push("small".into());
    for t in tasks {
        t.await.unwrap();
    }
    let order = order.lock().unwrap().clone();
    assert_eq!(
        order.first().map(String::as_str),
        Some("small"),
        "the small push waited for a large one (took {small_took:?}; completion order {order:?})"
    );
    assert_eq!(seq_of(&*s, "g2").await, n);
}

/// Pushes to the SAME document racing from several handles and devices: each is applied on
/// what it read and redone when another committed first, so every change is stored once and
/// the stored document holds all of them (its heads are every device's last change).
pub async fn concurrent_same_document(f: &dyn Factory) {
    const DEVICES: usize = 6;
    let admin = f.open().await;
    directory(&*admin).await;
    let first = device(&*admin, "u-grid", "dev-0").await;
    let mut st0 = store("u-grid", "王伟", Role::GridMember, "dev-0");
    let hh = st0
        .create_household(household("g1", "1号楼", "101"))
        .unwrap();
    push(&*admin, &first, drain(&mut st0)).await.unwrap();
    let base = admin.pull("g1", 0, 1000, &Scope::Grid).await.unwrap();
    let remote: Vec<xiuhua_core::RemoteChange> = base
        .changes
        .iter()
        .map(|(_, doc, change)| xiuhua_core::RemoteChange {
            doc: doc.clone(),
            change: change.clone(),
        })
        .collect();
    let mut work = Vec::new();
    let mut want_heads = BTreeSet::new();
    let mut want_changes = base.changes.len() as u64;
    for d in 1..=DEVICES {
        let dev = format!("dev-{d}");
        let caller = device(&*admin, "u-grid", &dev).await;
        let mut st = store("u-grid", "王伟", Role::GridMember, &dev);
        st.apply_remote(&remote).unwrap();
        st.add_visit(
            &hh,
            NewVisit {
                purpose: "走访".into(),
                note: format!("第{d}次"),
                follow_up: None,
            },
        )
        .unwrap();
        let req = drain(&mut st);
        let last = req.docs[0].changes.last().unwrap();
        want_heads.insert(
            automerge::Change::try_from(last.as_slice())
                .unwrap()
                .hash()
                .0
                .to_vec(),
        );
        want_changes += count(&req);
        work.push((caller, req));
    }
    let mut tasks = Vec::new();
    for (caller, req) in work {
        let s = f.open().await;
        tasks.push(tokio::spawn(async move {
            let n = count(&req);
            let o = push(&*s, &caller, req).await.unwrap();
            assert_eq!(o.stored, n, "every change of {} stored", caller.device);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(seq_of(&*admin, "g1").await, want_changes);
    let (_, bytes) = admin.doc(&hh).await.unwrap().unwrap();
    let mut doc = automerge::AutoCommit::load(&bytes).unwrap();
    let heads: BTreeSet<Vec<u8>> = doc.get_heads().iter().map(|h| h.0.to_vec()).collect();
    assert_eq!(
        heads, want_heads,
        "the stored document holds every device's change"
    );
    let snap = admin.bootstrap("g1", &Scope::Grid, None, 0).await.unwrap();
    let row = snap.docs.iter().find(|d| d.id == hh).unwrap();
    let stored_heads: BTreeSet<Vec<u8>> = row.heads.chunks(32).map(<[u8]>::to_vec).collect();
    assert_eq!(stored_heads, want_heads, "the stored heads match the bytes");
    let all = admin.pull("g1", 0, 1000, &Scope::Grid).await.unwrap();
    assert_eq!(all.changes.len() as u64, want_changes);
}

/// Pull and bootstrap pages are bounded by bytes as well as by count, always hold at least
/// one item, and still hand out every change and document exactly once, in order.
pub async fn pages_bounded_by_bytes(f: &dyn Factory) {
    let s = f.open().await;
    let s = &*s;
    directory(s).await;
    let caller = device(s, "u-grid", "dev-a").await;
    let mut st = store("u-grid", "王伟", Role::GridMember, "dev-a");
    let long = "楼道堆放杂物，".repeat(280); // 1,960 characters, about 5.9 KB
    let mut want = BTreeSet::new();
    for n in 0..9 {
        let mut r = record("g1", None, n);
        r.description = format!("{long}{n}");
        want.insert(st.create_record(r).unwrap());
    }
    push(s, &caller, drain(&mut st)).await.unwrap();
    let head = seq_of(s, "g1").await;
    let all = s.pull("g1", 0, 1000, &Scope::Grid).await.unwrap();
    let biggest = all.changes.iter().map(|c| c.2.len() as u64).max().unwrap();
    assert!(biggest > 5_000, "large changes ({biggest} bytes)");
    // Pull: at most ~3 large changes' bytes per page.
    let budget = 3 * biggest;
    let mut since = 0;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let p = s
            .pull_within("g1", since, 1000, budget, &Scope::Grid)
            .await
            .unwrap();
        pages += 1;
        assert!(
            !p.changes.is_empty() || !p.more,
            "a page that says more holds something"
        );
        let bytes: u64 = p.changes.iter().map(|c| c.2.len() as u64).sum();
        assert!(
            bytes <= budget || p.changes.len() == 1,
            "page of {bytes} bytes"
        );
        seen.extend(p.changes.iter().map(|c| c.0));
        if !p.more {
            assert_eq!(p.next, head);
            break;
        }
        assert_eq!(p.next, p.changes.last().unwrap().0);
        since = p.next;
        assert!(pages < 100, "paging does not end");
    }
    assert_eq!(seen, (1..=head).collect::<Vec<_>>());
    assert!(pages >= 3, "the byte bound cut the pages ({pages})");
    // A bound smaller than any change: one change per page, never none.
    let p = s.pull_within("g1", 0, 1000, 1, &Scope::Grid).await.unwrap();
    assert_eq!(p.changes.len(), 1);
    assert!(p.more);
    assert_eq!(p.next, 1);
    // Bootstrap: pages of documents whose bytes and rows fit the bound.
    let snap = s.bootstrap("g1", &Scope::Grid, None, 0).await.unwrap();
    assert_eq!(snap.docs.len(), 9);
    let doc_size = |d: &xiuhua_server::storage::BundleRow| (d.bytes.len() + d.rows.len()) as u64;
    let largest = snap.docs.iter().map(doc_size).max().unwrap();
    let budget = 2 * largest;
    let mut after: Option<String> = None;
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let p = s
            .bootstrap_within("g1", &Scope::Grid, after.as_deref(), 0, budget)
            .await
            .unwrap();
        pages += 1;
        assert_eq!(p.cursor, head);
        let bytes: u64 = p.docs.iter().map(doc_size).sum();
        assert!(
            bytes <= budget || p.docs.len() == 1,
            "page of {bytes} bytes"
        );
        assert!(p.docs.len() <= 2);
        ids.extend(p.docs.iter().map(|d| d.id.clone()));
        after = p.docs.last().map(|d| d.id.clone());
        if !p.more {
            break;
        }
        assert!(!p.docs.is_empty());
        assert!(pages < 100, "paging does not end");
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ordered, none twice");
    assert_eq!(ids.into_iter().collect::<BTreeSet<_>>(), want);
    assert!(pages >= 5, "the byte bound cut the pages ({pages})");
    let p = s
        .bootstrap_within("g1", &Scope::Grid, None, 0, 1)
        .await
        .unwrap();
    assert_eq!(p.docs.len(), 1);
    assert!(p.more);
    // The count bound still applies with a generous byte bound.
    let p = s
        .bootstrap_within("g1", &Scope::Grid, None, 4, u64::MAX)
        .await
        .unwrap();
    assert_eq!((p.docs.len(), p.more), (4, true));
}

/// A device's daily quota of new changes and bytes: a push beyond it is refused with
/// `QuotaExceeded` and stores nothing; duplicates cost nothing; other devices are not held.
pub async fn device_quota(f: &dyn Factory) {
    let s = f.open().await;
    let s = &*s;
    directory(s).await;
    let a = device(s, "u-grid", "dev-a").await;
    let b = device(s, "u-grid", "dev-b").await;
    let mut sa = store("u-grid", "王伟", Role::GridMember, "dev-a");
    for n in 0..3 {
        sa.create_record(record("g1", None, n)).unwrap();
    }
    let first = drain(&mut sa);
    let n1 = count(&first);
    let quota = Quota {
        daily_bytes: 0,
        daily_changes: n1 + 1,
    };
    let again = first.clone();
    assert_eq!(push_quota(s, &a, first, &quota).await.unwrap().stored, n1);
    // The same push again: duplicates only, not counted.
    let o = push_quota(s, &a, again, &quota).await.unwrap();
    assert_eq!((o.stored, o.duplicates), (0, n1));
    // Two more changes exceed the quota: refused, nothing stored.
    sa.create_record(record("g1", None, 10)).unwrap();
    sa.create_record(record("g1", None, 11)).unwrap();
    let over = drain(&mut sa);
    let e = push_quota(s, &a, over.clone(), &quota).await.unwrap_err();
    assert_eq!(refusal(e), RefusalKind::QuotaExceeded);
    assert_eq!(seq_of(s, "g1").await, n1);
    // Another device has its own quota.
    let mut sb = store("u-grid", "王伟", Role::GridMember, "dev-b");
    sb.create_record(record("g1", None, 20)).unwrap();
    let rb = drain(&mut sb);
    let nb = count(&rb);
    assert_eq!(push_quota(s, &b, rb, &quota).await.unwrap().stored, nb);
    // Without a quota the refused push goes through (nothing of it was counted).
    assert_eq!(
        push_quota(s, &a, over.clone(), &Quota::UNLIMITED)
            .await
            .unwrap()
            .stored,
        count(&over)
    );
    // A byte quota.
    let mut sc = store("u-grid", "王伟", Role::GridMember, "dev-c");
    let c = device(s, "u-grid", "dev-c").await;
    let mut r = record("g1", None, 30);
    r.description = "很长的描述".repeat(300);
    sc.create_record(r).unwrap();
    let big = drain(&mut sc);
    let bytes: u64 = big
        .docs
        .iter()
        .flat_map(|d| d.changes.iter().map(|c| c.len() as u64))
        .sum();
    let byte_quota = Quota {
        daily_bytes: bytes - 1,
        daily_changes: 0,
    };
    let before = seq_of(s, "g1").await;
    let e = push_quota(s, &c, big.clone(), &byte_quota)
        .await
        .unwrap_err();
    assert_eq!(refusal(e), RefusalKind::QuotaExceeded);
    assert_eq!(seq_of(s, "g1").await, before);
    let byte_quota = Quota {
        daily_bytes: bytes,
        daily_changes: 0,
    };
    assert!(push_quota(s, &c, big, &byte_quota).await.is_ok());
}

/// A stored document broken behind the storage's back: `check` quarantines it; it leaves
/// bootstrap, pushes to it and reads of it are refused with `Quarantined` (not a failure),
/// and the rest of the grid syncs. A push touching a broken document that no check has seen
/// yet quarantines it too. Sound bytes again: the next check lifts the quarantine.
pub async fn quarantine_broken_documents(f: &dyn Factory) {
    let s = f.open().await;
    let s = &*s;
    directory(s).await;
    let caller = device(s, "u-grid", "dev-a").await;
    let mut st = store("u-grid", "王伟", Role::GridMember, "dev-a");
    let broken = st
        .create_household(household("g1", "1号楼", "101"))
        .unwrap();
    let sound = st
        .create_household(household("g1", "1号楼", "102"))
        .unwrap();
    let later = st
        .create_household(household("g1", "1号楼", "103"))
        .unwrap();
    push(s, &caller, drain(&mut st)).await.unwrap();
    let (_, good_bytes) = s.doc(&broken).await.unwrap().unwrap();
    let mut cut = good_bytes.clone();
    cut.truncate(good_bytes.len() - 10);
    f.overwrite_doc_bytes(&broken, &cut).await;

    let report = xiuhua_server::check::run(s, xiuhua_server::now_ms())
        .await
        .unwrap();
    assert_eq!(report.checked, 3);
    assert_eq!(
        report
            .broken
            .iter()
            .map(|b| b.0.as_str())
            .collect::<Vec<_>>(),
        [broken.as_str()]
    );
    let q = s.quarantined().await.unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(
        (q[0].id.as_str(), q[0].grid.as_str()),
        (broken.as_str(), "g1")
    );
    // Left out of bootstrap; the others are there.
    let snap = s.bootstrap("g1", &Scope::Grid, None, 0).await.unwrap();
    let ids: BTreeSet<&str> = snap.docs.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, [sound.as_str(), later.as_str()].into_iter().collect());
    // Reads and pushes of it are refused as quarantined, not failed.
    assert_eq!(
        refusal(s.doc(&broken).await.unwrap_err()),
        RefusalKind::Quarantined
    );
    let seq = seq_of(s, "g1").await;
    st.set_household_note(&broken, "电话已更新").unwrap();
    let e = push(s, &caller, drain(&mut st)).await.unwrap_err();
    assert_eq!(refusal(e), RefusalKind::Quarantined);
    assert_eq!(seq_of(s, "g1").await, seq);
    // The rest of the grid syncs.
    st.set_household_note(&sound, "独居").unwrap();
    assert!(push(s, &caller, drain(&mut st)).await.unwrap().stored > 0);

    // Broken again behind the storage's back, before any check: the push quarantines it.
    let (_, later_bytes) = s.doc(&later).await.unwrap().unwrap();
    f.overwrite_doc_bytes(&later, b"not an automerge document")
        .await;
    st.set_household_note(&later, "搬走").unwrap();
    let e = push(s, &caller, drain(&mut st)).await.unwrap_err();
    assert_eq!(refusal(e), RefusalKind::Quarantined);
    let q: Vec<String> = s
        .quarantined()
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.id)
        .collect();
    assert_eq!(q, {
        let mut v = vec![broken.clone(), later.clone()];
        v.sort();
        v
    });

    // Repaired: the next check lifts both quarantines.
    f.overwrite_doc_bytes(&broken, &good_bytes).await;
    f.overwrite_doc_bytes(&later, &later_bytes).await;
    let report = xiuhua_server::check::run(s, xiuhua_server::now_ms())
        .await
        .unwrap();
    assert!(report.broken.is_empty());
    assert_eq!(report.released.len(), 2);
    assert!(s.quarantined().await.unwrap().is_empty());
    assert!(s.doc(&broken).await.unwrap().is_some());
    assert_eq!(
        s.bootstrap("g1", &Scope::Grid, None, 0)
            .await
            .unwrap()
            .docs
            .len(),
        3
    );
}

/// Re-enrollment on a phone holding an earlier device's data (credentials::decide_enroll):
/// the same user's code makes the new device its successor (it may push the earlier
/// device's changes, holds its grids; the earlier one is reset); another user's code or an
/// unknown device is refused without spending the code.
pub async fn device_succession(f: &dyn Factory) {
    let s = f.open().await;
    directory(&*s).await;
    let now = xiuhua_server::now_ms();
    let old = device(&*s, "u-grid", "dev-old").await;
    let lead = device(&*s, "u-lead", "dev-lead").await;
    // The old device held g1 (the server remembers the grids a device pulled).
    s.mark_held("dev-old", "g1").await.unwrap();
    // Its phone wrote a household as dev-old, not yet pushed.
    let mut phone =
        Store::open_in_memory(Actor::new("u-grid", "王伟", Role::GridMember, "dev-old").unwrap())
            .unwrap();
    phone
        .create_household(NewHousehold {
            address: Address::new("g1", "1号楼", "1单元", "101").unwrap(),
            members: vec![],
            tags: vec![],
            note: String::new(),
        })
        .unwrap();
    let req = drain(&mut phone);
    let new = |id: &'static str, rt: &'static str| NewDevice {
        id,
        name: "phone",
        refresh_hash: rt,
        refresh_expires_ms: FAR,
    };

    for code in ["code-other", "code-unknown", "code-same"] {
        s.add_enroll_code(
            if code == "code-other" {
                "u-lead"
            } else {
                "u-grid"
            },
            code,
            now + 60_000,
            now,
        )
        .await
        .unwrap();
    }
    // Another user's code naming dev-old: refused, the code unspent.
    assert_eq!(
        s.enroll_device("code-other", &new("dev-x", "rt-x"), Some("dev-old"), now)
            .await
            .unwrap(),
        EnrollOutcome::OtherUser
    );
    // A device this server never issued: refused, the code unspent.
    assert_eq!(
        s.enroll_device(
            "code-unknown",
            &new("dev-y", "rt-y"),
            Some("dev-nowhere"),
            now
        )
        .await
        .unwrap(),
        EnrollOutcome::UnknownPrevious
    );
    // An unknown code: refused alike whatever it names.
    assert_eq!(
        s.enroll_device("code-zzz", &new("dev-z", "rt-z"), Some("dev-old"), now)
            .await
            .unwrap(),
        EnrollOutcome::Refused
    );
    // Both refused codes still enroll.
    assert!(matches!(
        s.enroll_device("code-other", &new("dev-x", "rt-x"), None, now)
            .await
            .unwrap(),
        EnrollOutcome::Enrolled(_)
    ));
    assert!(matches!(
        s.enroll_device("code-unknown", &new("dev-y", "rt-y"), None, now)
            .await
            .unwrap(),
        EnrollOutcome::Enrolled(_)
    ));

    // The same user's code: the new device succeeds dev-old.
    match s
        .enroll_device("code-same", &new("dev-new", "rt-new"), Some("dev-old"), now)
        .await
        .unwrap()
    {
        EnrollOutcome::Enrolled(e) => assert_eq!(e.succeeds.as_deref(), Some("dev-old")),
        other => panic!("{other:?}"),
    }
    let caller = match s.device_standing("dev-new", "u-grid", now).await.unwrap() {
        DeviceStanding::Active(c) => c,
        other => panic!("{other:?}"),
    };
    assert_eq!(caller.predecessors, ["dev-old"]);
    assert_eq!(
        caller.held_grids,
        ["g1"],
        "the successor holds what dev-old held"
    );
    // dev-old is reset: its access is refused (enroll again, keep the data), its refresh too.
    assert_eq!(
        s.device_standing("dev-old", "u-grid", now).await.unwrap(),
        DeviceStanding::Reset
    );
    assert!(matches!(
        s.refresh(&format!("rt-{}", old.device), "rt-old-2", FAR, now)
            .await
            .unwrap(),
        RefreshOutcome::Refused(_)
    ));
    // The successor pushes dev-old's change; another device of the same user may not.
    let other = device(&*s, "u-grid", "dev-other").await;
    let refused = push(&*s, &other, req.clone()).await.unwrap_err();
    assert!(
        matches!(refused, StoreError::Refused(ref r) if r.kind == RefusalKind::Forbidden),
        "{refused:?}"
    );
    let stored = push(&*s, &caller, req).await.unwrap();
    assert_eq!(stored.stored, 1);
    // A chain: dev-new succeeded in turn; the newest device holds both predecessors.
    s.add_enroll_code("u-grid", "code-again", now + 60_000, now)
        .await
        .unwrap();
    s.enroll_device(
        "code-again",
        &new("dev-newer", "rt-newer"),
        Some("dev-new"),
        now,
    )
    .await
    .unwrap();
    match s.device_standing("dev-newer", "u-grid", now).await.unwrap() {
        DeviceStanding::Active(c) => assert_eq!(c.predecessors, ["dev-new", "dev-old"]),
        other => panic!("{other:?}"),
    }
    // The lead's device is untouched by all of this.
    assert!(matches!(
        s.device_standing(&lead.device, "u-lead", now)
            .await
            .unwrap(),
        DeviceStanding::Active(_)
    ));
    let listed = s.list_devices(Some("u-grid")).await.unwrap();
    let old_row = listed.iter().find(|d| d.id == "dev-old").unwrap();
    assert!(old_row.reset && !old_row.revoked);
    let new_row = listed.iter().find(|d| d.id == "dev-new").unwrap();
    assert_eq!(new_row.succeeds.as_deref(), Some("dev-old"));
}

// ----- the server's projection and the console's queries -----

/// Pulls all of `grid` from the server into a phone's store (its own changes come back as
/// duplicates).
async fn pull_into(s: &dyn Storage, st: &mut Store, grid: &str) {
    let mut since = 0;
    loop {
        let page = s.pull(grid, since, 1000, &Scope::Grid).await.unwrap();
        let changes: Vec<xiuhua_core::RemoteChange> = page
            .changes
            .iter()
            .map(|(_, doc, bytes)| xiuhua_core::RemoteChange {
                doc: doc.clone(),
                change: bytes.clone(),
            })
            .collect();
        st.apply_remote(&changes).unwrap();
        since = page.next;
        if !page.more {
            break;
        }
    }
}

const FULL_ID: &str = "11010519491231002X";
const FULL_PHONE: &str = "13812345678";

fn act(st: &mut Store, task: &str, a: TaskAction) {
    st.task_action(task, a).unwrap();
}

/// Pushes of households, records and tasks through the five orders (点单, 派单, 督单, 问单,
/// 评单) keep the server's projection: masked residents, visits, a record showing
/// 处理中 then 已办结 as its task moves, every task event with the fold's outcome (a
/// rejected one with its reason), and a rebuild gives the same rows; the console's queries
/// read them.
pub async fn projection_follows_pushes(f: &dyn Factory) {
    use xiuhua_server::storage::{
        BoardColumn, BoardQuery, LedgerFilter, TaskFilter, TaskSort, TimeRange,
    };
    let s = f.open().await;
    let s = &*s;
    directory(s).await;
    s.add_user("u-sec", "孙书记").await.unwrap();
    let grids = s.community_grids("c1").await.unwrap();
    s.grant("u-sec", &grids, Role::Secretary, &[])
        .await
        .unwrap();
    let c_wang = device(s, "u-grid", "dev-w").await;
    let c_zhao = device(s, "u-staff", "dev-z").await;
    let c_sun = device(s, "u-sec", "dev-s").await;
    let mut wang = store("u-grid", "王伟", Role::GridMember, "dev-w");
    let mut zhao = store("u-staff", "赵敏", Role::CommunityStaff, "dev-z");
    let mut sun = store("u-sec", "孙书记", Role::Secretary, "dev-s");

    // 点单 from a record about a household, with a visit.
    let mut hh = household("g1", "1号楼", "101");
    hh.members[0].phone = Some(FULL_PHONE.into());
    hh.members[0].id_number = Some(FULL_ID.into());
    let h = wang.create_household(hh).unwrap();
    wang.add_visit(
        &h,
        NewVisit {
            purpose: "入户走访".into(),
            note: "老人独居".into(),
            follow_up: None,
        },
    )
    .unwrap();
    let mut rec = record("g1", None, 1);
    rec.household = Some(h.clone());
    let r = wang.create_record(rec).unwrap();
    let t = wang
        .order_from_record(
            &r,
            xiuhua_core::store::OrderFromRecord {
                level: Level::Doorstep,
                title: None,
                assignee: None,
                deadline: Some(xiuhua_server::now_ms() + 3 * 86_400_000),
            },
        )
        .unwrap();
    push(s, &c_wang, drain(&mut wang)).await.unwrap();

    let p = s.projection_dump().await.unwrap();
    assert_eq!(p.households.len(), 1);
    assert_eq!(p.households[0].visit_count, 1);
    assert_eq!(p.residents.len(), 1);
    assert_eq!(
        p.residents[0].id_masked.as_deref(),
        Some("110***********002X")
    );
    assert_eq!(p.residents[0].phone_masked.as_deref(), Some("138****5678"));
    assert_eq!(p.visits.len(), 1);
    assert_eq!(p.visits[0].by, "u-grid");
    assert_eq!(p.records.len(), 1);
    assert_eq!(p.records[0].status, "待处理");
    assert_eq!(
        p.records[0].shown, "处理中",
        "a live task raises the record"
    );
    assert_eq!(p.tasks.len(), 1);
    assert_eq!(p.tasks[0].status, "ordered");
    assert!(p.tasks[0].ordered);
    assert_eq!(p.tasks[0].source_record.as_deref(), Some(r.as_str()));
    assert_eq!(p.events.len(), 1);
    assert_eq!(
        (p.events[0].kind.as_str(), p.events[0].outcome.as_str()),
        ("order", "applied")
    );
    let full = format!("{p:?}");
    assert!(
        !full.contains(FULL_ID) && !full.contains(FULL_PHONE),
        "only masked values are stored"
    );

    // 派单, accept; then 督单 by the community with a new deadline.
    act(
        &mut wang,
        &t,
        TaskAction::Assign {
            assignee: "u-grid".into(),
        },
    );
    act(&mut wang, &t, TaskAction::Accept);
    push(s, &c_wang, drain(&mut wang)).await.unwrap();
    pull_into(s, &mut zhao, "g1").await;
    let later = xiuhua_server::now_ms() + 5 * 86_400_000;
    act(
        &mut zhao,
        &t,
        TaskAction::Supervise {
            text: "请尽快上门".into(),
            new_deadline: Some(later),
        },
    );
    push(s, &c_zhao, drain(&mut zhao)).await.unwrap();
    let d = s.task_detail(&t).await.unwrap().unwrap();
    assert_eq!(
        d.task.status, "in_progress",
        "a second push updates the rows"
    );
    assert_eq!(d.task.assignee.as_deref(), Some("u-grid"));
    assert_eq!(d.task.deadline, Some(later));
    let kinds: Vec<&str> = d.events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, vec!["order", "assign", "accept", "supervise"]);

    // Done: awaiting 评单; 问单 with send-back reopens it; a bad rating reopens it again.
    pull_into(s, &mut wang, "g1").await;
    act(
        &mut wang,
        &t,
        TaskAction::Complete {
            result: "已上门".into(),
        },
    );
    push(s, &c_wang, drain(&mut wang)).await.unwrap();
    let now = xiuhua_server::now_ms();
    let filter = TaskFilter {
        grids: grids.clone(),
        ..TaskFilter::default()
    };
    let board = |column| BoardQuery {
        filter: filter.clone(),
        column,
        sort: TaskSort::Deadline,
        offset: 0,
        limit: 50,
        now_ms: now,
    };
    let b = s.board(&board(BoardColumn::AwaitingRating)).await.unwrap();
    assert_eq!(b.total, 1);
    assert_eq!(b.tasks[0].task.id, t);
    assert_eq!(
        s.projection_dump().await.unwrap().records[0].shown,
        "处理中",
        "done is not closed"
    );
    pull_into(s, &mut sun, "g1").await;
    act(
        &mut sun,
        &t,
        TaskAction::Inquire {
            text: "居民说没修好".into(),
            send_back: true,
        },
    );
    push(s, &c_sun, drain(&mut sun)).await.unwrap();
    assert_eq!(
        s.task_detail(&t).await.unwrap().unwrap().task.status,
        "in_progress"
    );
    pull_into(s, &mut wang, "g1").await;
    act(
        &mut wang,
        &t,
        TaskAction::Complete {
            result: "再次上门".into(),
        },
    );
    act(
        &mut wang,
        &t,
        TaskAction::Rate {
            score: 2,
            comment: "不满意".into(),
        },
    );
    push(s, &c_wang, drain(&mut wang)).await.unwrap();
    let b = s.board(&board(BoardColumn::Reopened)).await.unwrap();
    assert_eq!(b.total, 1, "{b:?}");
    assert!(b.tasks[0].task.reopened);
    act(
        &mut wang,
        &t,
        TaskAction::Complete {
            result: "第三次上门".into(),
        },
    );
    act(
        &mut wang,
        &t,
        TaskAction::Rate {
            score: 5,
            comment: "满意".into(),
        },
    );
    push(s, &c_wang, drain(&mut wang)).await.unwrap();
    let d = s.task_detail(&t).await.unwrap().unwrap();
    assert_eq!(d.task.status, "closed");
    assert_eq!(d.task.rating, Some(5));
    assert!(!d.task.reopened);
    assert!(d.task.closed_at.is_some() && d.task.done_at.is_some());
    assert_eq!(
        s.projection_dump().await.unwrap().records[0].shown,
        "已办结",
        "its task closed"
    );

    // A cancel concurrent with an accept loses: listed rejected, with the fold's reason.
    let t2 = wang.create_task(task("g1")).unwrap();
    act(
        &mut wang,
        &t2,
        TaskAction::Assign {
            assignee: "u-grid".into(),
        },
    );
    push(s, &c_wang, drain(&mut wang)).await.unwrap();
    pull_into(s, &mut zhao, "g1").await;
    act(
        &mut zhao,
        &t2,
        TaskAction::Cancel {
            reason: "重复".into(),
        },
    );
    act(&mut wang, &t2, TaskAction::Accept);
    push(s, &c_zhao, drain(&mut zhao)).await.unwrap();
    push(s, &c_wang, drain(&mut wang)).await.unwrap();
    let d = s.task_detail(&t2).await.unwrap().unwrap();
    assert_eq!(d.task.status, "in_progress");
    assert_eq!(d.task.rejected, 1);
    let cancel = d.events.iter().find(|e| e.kind == "cancel").unwrap();
    assert_eq!(cancel.outcome, "rejected");
    assert!(
        cancel
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("already accepted"),
        "{cancel:?}"
    );

    // The ledgers, statistics, search and a household's page.
    let lf = LedgerFilter {
        grids: grids.clone(),
        range: None,
    };
    let rl = s.records_ledger(&lf).await.unwrap();
    assert_eq!(rl.len(), 1);
    assert_eq!(
        (rl[0].record.id.as_str(), rl[0].tasks, rl[0].open_tasks),
        (r.as_str(), 1, 0)
    );
    assert!(rl[0].closed_at.is_some());
    let tl = s.tasks_ledger(&lf, now).await.unwrap();
    assert_eq!(tl.len(), 2);
    let tl1 = tl.iter().find(|l| l.task.id == t).unwrap();
    assert_eq!(tl1.on_time, Some(true));
    assert!(tl1.days_to_close.is_some_and(|d| (0.0..1.0).contains(&d)));
    let none = LedgerFilter {
        grids: grids.clone(),
        range: Some(TimeRange {
            from_ms: 0,
            to_ms: 1,
        }),
    };
    assert!(s.records_ledger(&none).await.unwrap().is_empty());
    assert!(s.tasks_ledger(&none, now).await.unwrap().is_empty());
    assert!(
        s.records_ledger(&LedgerFilter {
            grids: vec!["g2".into()],
            range: None
        })
        .await
        .unwrap()
        .is_empty(),
        "another grid's ledger is empty"
    );
    let stats = s.grid_stats(&lf).await.unwrap();
    assert_eq!(stats.len(), 1, "{stats:?}");
    let g = &stats[0];
    assert_eq!(g.grid, "g1");
    assert_eq!(
        (g.households_registered, g.households_visited, g.visits),
        (1, 1, 1)
    );
    assert_eq!((g.records_opened, g.records_closed), (1, 1));
    assert_eq!(g.tasks_by_level.get("上门办"), Some(&2));
    assert_eq!(g.tasks_by_state.get("closed"), Some(&1));
    assert_eq!(g.tasks_by_state.get("in_progress"), Some(&1));
    assert_eq!(g.tasks_closed, 1);
    assert_eq!(g.on_time_rate, Some(1.0));
    assert_eq!(g.average_satisfaction, Some(5.0));
    for q in ["lf", "liufang", "刘"] {
        let hits = s.search_households(&grids, q, 10).await.unwrap();
        assert_eq!(hits.len(), 1, "{q}");
        assert_eq!(hits[0].household.id, h);
        assert_eq!(hits[0].residents[0].name, "刘芳");
    }
    assert!(
        s.search_households(&grids, "zs", 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.search_households(&["g2".to_string()], "lf", 10)
            .await
            .unwrap()
            .is_empty()
    );
    let hd = s.household_detail(&h).await.unwrap().unwrap();
    assert_eq!(
        (hd.residents.len(), hd.visits.len(), hd.records.len()),
        (1, 1, 1)
    );
    assert_eq!(hd.tasks.len(), 1, "the task made from its record names it");
    assert_eq!(
        hd.residents[0].id_masked.as_deref(),
        Some("110***********002X")
    );
    assert!(s.household_detail("no-such").await.unwrap().is_none());
    assert!(s.task_detail("no-such").await.unwrap().is_none());

    // Rebuilding from the documents gives the rows the pushes kept, also on another handle.
    let before = s.projection_dump().await.unwrap();
    assert_eq!(s.rebuild_projection().await.unwrap(), 4);
    assert_eq!(s.projection_dump().await.unwrap(), before);
    let other = f.open().await;
    assert_eq!(other.projection_dump().await.unwrap(), before);

    // Quarantine removes a document's rows (its record shows its own status again);
    // release brings them back.
    assert!(s.quarantine(&t, "test", now).await.unwrap());
    let q = s.projection_dump().await.unwrap();
    assert!(q.tasks.iter().all(|x| x.id != t) && q.events.iter().all(|e| e.task != t));
    assert_eq!(q.records[0].shown, "待处理");
    assert!(s.release(&t).await.unwrap());
    assert_eq!(s.projection_dump().await.unwrap(), before);
}

/// The station console's rows: passwords, failed logins and their lock (the shared rule),
/// sessions with idle and absolute expiry, logout, and the audit log, seen alike by every
/// handle on the database.
pub async fn console_accounts_sessions_audit(f: &dyn Factory) {
    use xiuhua_server::console::rules::{self, SessionPolicy};
    use xiuhua_server::storage::{AuditEntry, ConsoleSession};
    let s = f.open().await;
    let other = f.open().await;
    directory(&*s).await;
    let audit = |user: &str, action: &str, ok: bool| AuditEntry {
        id: 0,
        at_ms: 1_000,
        user: user.into(),
        ip: "192.0.2.7".into(),
        action: action.into(),
        detail: format!("{action} of {user}"),
        ok,
    };
    // Passwords: only for known users; the account shows the hash and standing.
    assert!(matches!(
        s.set_password("nobody", "$argon2id$x", 1).await,
        Err(StoreError::NotFound(_))
    ));
    let a = s.console_account("u-grid").await.unwrap().unwrap();
    assert_eq!(
        (a.name.as_str(), a.password_hash, a.revoked),
        ("王伟", None, false)
    );
    assert_eq!(s.console_account("nobody").await.unwrap(), None);
    s.set_password("u-grid", "$argon2id$first", 1)
        .await
        .unwrap();
    s.set_password("u-grid", "$argon2id$second", 2)
        .await
        .unwrap();
    assert_eq!(
        other
            .console_account("u-grid")
            .await
            .unwrap()
            .unwrap()
            .password_hash
            .as_deref(),
        Some("$argon2id$second")
    );
    // Failed logins count by the shared rule; the fifth locks.
    let mut last = None;
    for i in 1..=5 {
        let n = s
            .record_login_failure("u-grid", 10_000 + i, &audit("u-grid", "login", false))
            .await
            .unwrap();
        assert_eq!(n, rules::after_failure(last.as_ref(), 10_000 + i));
        last = Some(n);
    }
    let seen = other.login_failures("u-grid").await.unwrap();
    assert_eq!(seen, last);
    assert_eq!(
        rules::locked_for(seen.as_ref(), 10_005),
        Some(rules::FIRST_LOCK_MS)
    );
    assert!(matches!(
        s.record_login_failure("nobody", 1, &audit("nobody", "login", false))
            .await,
        Err(StoreError::NotFound(_))
    ));
    // Concurrent failures of one account from two handles all count.
    let lead_failed = audit("u-lead", "login", false);
    let (x, y) = tokio::join!(
        s.record_login_failure("u-lead", 1, &lead_failed),
        other.record_login_failure("u-lead", 1, &lead_failed),
    );
    x.unwrap();
    y.unwrap();
    assert_eq!(s.login_failures("u-lead").await.unwrap().unwrap().count, 2);
    // A session: live while used, ends when idle, when old, at logout.
    let policy = SessionPolicy {
        idle_ms: 1_000,
        absolute_ms: 5_000,
    };
    let session = |hash: &str, at: i64| ConsoleSession {
        hash: hash.into(),
        user: "u-grid".into(),
        created_ms: at,
        last_seen_ms: at,
        ip: "192.0.2.7".into(),
    };
    s.begin_session(&session("h1", 100_000), &audit("u-grid", "login", true))
        .await
        .unwrap();
    assert_eq!(s.login_failures("u-grid").await.unwrap(), None, "cleared");
    let t = other
        .touch_session("h1", 100_900, &policy)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((t.user.as_str(), t.last_seen_ms), ("u-grid", 100_900));
    for at in [101_800, 102_700, 103_600, 104_500] {
        assert!(s.touch_session("h1", at, &policy).await.unwrap().is_some());
    }
    assert_eq!(
        s.touch_session("h1", 105_000, &policy).await.unwrap(),
        None,
        "absolute"
    );
    assert_eq!(s.touch_session("h1", 105_001, &policy).await.unwrap(), None);
    s.begin_session(&session("h2", 200_000), &audit("u-grid", "login", true))
        .await
        .unwrap();
    assert_eq!(
        s.touch_session("h2", 201_000, &policy).await.unwrap(),
        None,
        "idle"
    );
    s.begin_session(&session("h3", 300_000), &audit("u-grid", "login", true))
        .await
        .unwrap();
    assert!(other.end_session("h3").await.unwrap());
    assert!(!s.end_session("h3").await.unwrap());
    assert_eq!(s.touch_session("h3", 300_001, &policy).await.unwrap(), None);
    // A new password ends the user's sessions; so does revoking the user.
    s.begin_session(&session("h4", 400_000), &audit("u-grid", "login", true))
        .await
        .unwrap();
    s.set_password("u-grid", "$argon2id$third", 400_001)
        .await
        .unwrap();
    assert_eq!(s.touch_session("h4", 400_002, &policy).await.unwrap(), None);
    s.begin_session(&session("h5", 500_000), &audit("u-grid", "login", true))
        .await
        .unwrap();
    s.revoke_user("u-grid", 500_001).await.unwrap();
    assert_eq!(s.touch_session("h5", 500_002, &policy).await.unwrap(), None);
    assert!(s.console_account("u-grid").await.unwrap().unwrap().revoked);
    // The audit log: every row above, newest first, paged by id.
    other
        .audit(&audit("u-staff", "add_building", true))
        .await
        .unwrap();
    let log = s.audit_log(None, 1_000).await.unwrap();
    assert_eq!(log.len(), 5 + 2 + 5 + 1);
    assert_eq!(log[0].action, "add_building");
    assert_eq!(log[0].user, "u-staff");
    assert_eq!(log[0].ip, "192.0.2.7");
    assert!(log.windows(2).all(|w| w[0].id > w[1].id));
    assert_eq!(log.iter().filter(|e| e.ok).count(), 5 + 1);
    let page = s.audit_log(Some(log[2].id), 3).await.unwrap();
    assert_eq!(page, log[3..6].to_vec());
}

/// The board and the 民情台账 page, counted and paged in SQL over the stored board flags
/// and record groups, give exactly what the pure functions give over every row: for every
/// column, sort, filter, page and time, on tasks in every state (reopened, escalated,
/// handed to a unit, cancelled, closed, with and without deadlines and assignees).
pub async fn board_and_ledger_pages_match_the_rules(f: &dyn Factory) {
    use xiuhua_server::storage::console::{self, record_groups, record_totals};
    use xiuhua_server::storage::{
        BoardColumn, BoardQuery, LedgerFilter, TaskFilter, TaskSort, TimeRange,
    };
    let s = f.open().await;
    let s = &*s;
    directory(s).await;
    let c_wang = device(s, "u-grid", "dev-w").await;
    let mut wang = store("u-grid", "王伟", Role::GridMember, "dev-w");
    const DAY: i64 = 86_400_000;
    let now = xiuhua_server::now_ms();

    // 民情 records in both grids, some turned into tasks (点单), the rest tasks of their own.
    let mut from_records = Vec::new();
    for n in 0..12 {
        let grid = if n % 3 == 0 { "g2" } else { "g1" };
        let mut rec = record(grid, None, n);
        rec.category = Category::ALL[n % Category::ALL.len()];
        let r = wang.create_record(rec).unwrap();
        if n % 2 == 0 {
            from_records.push(
                wang.order_from_record(
                    &r,
                    xiuhua_core::store::OrderFromRecord {
                        level: Level::ALL[n % Level::ALL.len()],
                        title: None,
                        assignee: None,
                        deadline: Some(now + (n as i64 + 1) * DAY),
                    },
                )
                .unwrap(),
            );
        }
    }
    let mut tasks = from_records.clone();
    for n in 0..30 {
        let mut nt = task(if n % 3 == 0 { "g2" } else { "g1" });
        nt.level = Level::ALL[n % Level::ALL.len()];
        nt.category = Category::ALL[(n / 2) % Category::ALL.len()];
        nt.deadline = match n % 4 {
            0 => None,
            1 => Some(now + DAY),
            2 => Some(now + 5 * DAY),
            _ => Some(now + 20 * DAY + n as i64),
        };
        tasks.push(wang.create_task(nt).unwrap());
    }
    let mut escalate = Vec::new();
    for (n, t) in tasks.iter().enumerate() {
        let t = t.as_str();
        let assign = |who: &str| TaskAction::Assign {
            assignee: who.into(),
        };
        let complete = TaskAction::Complete {
            result: "已办".into(),
        };
        let rate = |score| TaskAction::Rate {
            score,
            comment: String::new(),
        };
        match n % 9 {
            0 => {}
            1 => act(&mut wang, t, assign("u-staff")),
            2 => {
                act(&mut wang, t, assign("u-grid"));
                act(&mut wang, t, TaskAction::Accept);
            }
            3 => {
                act(&mut wang, t, assign("u-grid"));
                act(&mut wang, t, TaskAction::Accept);
                act(&mut wang, t, complete);
            }
            4 | 5 => {
                act(&mut wang, t, assign("u-grid"));
                act(&mut wang, t, TaskAction::Accept);
                act(&mut wang, t, complete);
                act(&mut wang, t, rate(if n % 9 == 4 { 2 } else { 5 }));
            }
            6 => act(
                &mut wang,
                t,
                TaskAction::Cancel {
                    reason: "重复".into(),
                },
            ),
            7 => escalate.push((t.to_string(), false)),
            _ => {
                act(&mut wang, t, assign("u-grid"));
                escalate.push((t.to_string(), true));
            }
        }
    }
    push(s, &c_wang, drain(&mut wang)).await.unwrap();
    // Escalations as a phone makes them: the server's tier first (`/v1/escalate`), then
    // the event; every other one is handed on to a linked unit by the community.
    for (t, _) in &escalate {
        assert!(
            s.set_tier(t, Tier::Grid, Tier::Community, None)
                .await
                .unwrap()
        );
        act(
            &mut wang,
            t,
            TaskAction::Escalate {
                tier: Tier::Community,
                unit: None,
            },
        );
    }
    push(s, &c_wang, drain(&mut wang)).await.unwrap();
    let c_zhao = device(s, "u-staff", "dev-z").await;
    let mut zhao = store("u-staff", "赵敏", Role::CommunityStaff, "dev-z");
    pull_into(s, &mut zhao, "g1").await;
    pull_into(s, &mut zhao, "g2").await;
    for (t, _) in escalate.iter().skip(1).step_by(2) {
        assert!(
            s.set_tier(t, Tier::Community, Tier::LinkedUnit, Some("物业"))
                .await
                .unwrap()
        );
        act(
            &mut zhao,
            t,
            TaskAction::Escalate {
                tier: Tier::LinkedUnit,
                unit: Some("物业".into()),
            },
        );
    }
    push(s, &c_zhao, drain(&mut zhao)).await.unwrap();

    let dump = s.projection_dump().await.unwrap();
    assert_eq!(dump.tasks.len(), 36);
    let all_grids = s.community_grids("c1").await.unwrap();
    let created = {
        let mut c: Vec<i64> = dump.tasks.iter().map(|t| t.created_at).collect();
        c.sort();
        c
    };
    let filters = [
        TaskFilter {
            grids: all_grids.clone(),
            ..TaskFilter::default()
        },
        TaskFilter {
            grids: vec!["g1".into()],
            ..TaskFilter::default()
        },
        TaskFilter {
            grids: all_grids.clone(),
            level: Some(Level::ALL[1].as_str().into()),
            ..TaskFilter::default()
        },
        TaskFilter {
            grids: all_grids.clone(),
            category: Some(Category::ALL[0].as_str().into()),
            assignee: Some("u-grid".into()),
            ..TaskFilter::default()
        },
        TaskFilter {
            grids: all_grids.clone(),
            created: Some(TimeRange {
                from_ms: created[5],
                to_ms: created[25],
            }),
            ..TaskFilter::default()
        },
        TaskFilter::default(),
    ];
    let sorts = [
        TaskSort::Deadline,
        TaskSort::CreatedDesc,
        TaskSort::CreatedAsc,
        TaskSort::MostOverdue,
    ];
    let mut seen = BTreeSet::new();
    for filter in &filters {
        for at in [now, now + 2 * DAY, now + 10 * DAY, now + 40 * DAY] {
            for column in BoardColumn::ALL {
                for sort in sorts {
                    for (offset, limit) in [(0, 50), (0, 3), (2, 4), (40, 10), (usize::MAX, 10)] {
                        let q = BoardQuery {
                            filter: filter.clone(),
                            column,
                            sort,
                            offset,
                            limit,
                            now_ms: at,
                        };
                        let want = console::board(dump.tasks.clone(), &q);
                        let got = s.board(&q).await.unwrap();
                        assert_eq!(got, want, "{q:?}");
                        if filter.grids.len() == 2 && offset == 0 && limit == 50 {
                            seen.insert((column.as_str(), want.total > 0));
                        }
                    }
                }
            }
        }
    }
    for column in BoardColumn::ALL {
        assert!(
            seen.contains(&(column.as_str(), true)),
            "the seeded tasks fill column {column:?}"
        );
    }

    // The 民情台账's pages: slices of the whole ledger, with the whole range's totals.
    let reported = {
        let mut r: Vec<i64> = dump.records.iter().map(|r| r.reported_at).collect();
        r.sort();
        r
    };
    let ledger_filters = [
        LedgerFilter {
            grids: all_grids.clone(),
            range: None,
        },
        LedgerFilter {
            grids: vec!["g1".into()],
            range: None,
        },
        LedgerFilter {
            grids: all_grids.clone(),
            range: Some(TimeRange {
                from_ms: reported[2],
                to_ms: reported[9],
            }),
        },
        LedgerFilter {
            grids: Vec::new(),
            range: None,
        },
    ];
    for lf in &ledger_filters {
        let whole = s.records_ledger(lf).await.unwrap();
        let totals = record_totals(&record_groups(&whole));
        for (offset, limit) in [(0, 100), (0, 5), (5, 5), (10, 5), (30, 5), (usize::MAX, 5)] {
            let (rows, t) = s.records_ledger_page(lf, offset, limit).await.unwrap();
            let want: Vec<_> = whole.iter().skip(offset).take(limit).cloned().collect();
            assert_eq!(rows, want, "{lf:?} {offset} {limit}");
            assert_eq!(t, totals, "{lf:?}");
        }
    }
    let whole = s.records_ledger(&ledger_filters[0]).await.unwrap();
    assert_eq!(whole.len(), 12);
    assert_eq!(whole.iter().filter(|r| r.tasks > 0).count(), 6);
}

/// Numbers for people: blocks of a community and year, reserved for devices from several
/// handles at once (as several server processes would), never overlap and leave no gap;
/// each device lists exactly its own; years and communities count apart.
pub async fn number_blocks_never_overlap(f: &dyn Factory) {
    const HANDLES: usize = 3;
    const PER_DEVICE: usize = 4;
    let admin = f.open().await;
    directory(&*admin).await;
    admin.add_community("c2", "银湖社区", "rd").await.unwrap();
    let devices: Vec<String> = (0..6).map(|d| format!("dev-n{d}")).collect();
    for d in &devices {
        device(&*admin, "u-grid", d).await;
    }
    let mut handles = Vec::new();
    for _ in 0..HANDLES {
        handles.push(f.open().await);
    }
    let mut tasks = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        let s = handles[i % HANDLES].clone();
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for k in 0..PER_DEVICE {
                let b = s
                    .reserve_number_block(&d, "c1", 2026, 100, 1_000 + k as i64)
                    .await
                    .unwrap();
                got.push(b);
            }
            (d, got)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let (d, got) = t.await.unwrap();
        let listed = admin.number_blocks(&d, "c1", 2026).await.unwrap();
        let mut got_sorted = got.clone();
        got_sorted.sort_by_key(|b| b.start);
        assert_eq!(listed, got_sorted, "{d} lists exactly its blocks");
        all.extend(got);
    }
    all.sort_by_key(|b| b.start);
    assert_eq!(all.len(), devices.len() * PER_DEVICE);
    let mut expect = 1;
    for b in &all {
        assert_eq!(
            b.start, expect,
            "blocks follow each other without overlap or gap"
        );
        assert_eq!(b.end - b.start, 100);
        expect = b.end;
    }
    // Another year and another community start at 1 again.
    let other_year = admin
        .reserve_number_block("dev-n0", "c1", 2027, 100, 5)
        .await
        .unwrap();
    assert_eq!((other_year.start, other_year.end), (1, 101));
    let other_community = admin
        .reserve_number_block("dev-n0", "c2", 2026, 50, 5)
        .await
        .unwrap();
    assert_eq!((other_community.start, other_community.end), (1, 51));
    assert!(
        admin
            .number_blocks("dev-n0", "c2", 2027)
            .await
            .unwrap()
            .is_empty()
    );
    // An unknown device or community is refused, and reserves nothing.
    assert!(
        admin
            .reserve_number_block("dev-none", "c1", 2026, 100, 5)
            .await
            .is_err()
    );
    assert!(
        admin
            .reserve_number_block("dev-n0", "c-none", 2026, 100, 5)
            .await
            .is_err()
    );
    let next = admin
        .reserve_number_block("dev-n1", "c1", 2026, 100, 5)
        .await
        .unwrap();
    assert_eq!(next.start, expect, "a refused reservation moved no counter");
}
