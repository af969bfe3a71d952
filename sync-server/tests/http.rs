//! The HTTP layer in-process (axum router + `tower::ServiceExt::oneshot`), against a real
//! SQLite database in a temporary folder.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ReadDoc};
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;
use tower::ServiceExt;
use xiuhua_core::doc::actor_id;
use xiuhua_core::model::*;
use xiuhua_core::sync::proto::{self, *};
use xiuhua_core::{RemoteChange, Store};
use xiuhua_server::SqliteStorage;
use xiuhua_server::admin::{self, GrantTarget};
use xiuhua_server::auth::Secret;
use xiuhua_server::http::{AppState, Limits, PURGE_HEADER, router};
use xiuhua_server::storage::Storage;

struct H {
    app: Router,
    storage: SqliteStorage,
    secret: Secret,
    _dir: tempfile::TempDir,
}

async fn setup_with(limits: Limits) -> H {
    let dir = tempfile::tempdir().unwrap();
    let storage = SqliteStorage::open(dir.path()).unwrap();
    let secret = Secret::from_bytes(&[42; 32]);
    let s: &dyn Storage = &storage;
    admin::add_district(s, "rd", "容东片区").await.unwrap();
    admin::add_community(s, "c1", "金湖社区", "rd")
        .await
        .unwrap();
    admin::add_grid(s, "g1", "第一网格", "c1").await.unwrap();
    admin::add_grid(s, "g2", "第二网格", "c1").await.unwrap();
    admin::add_building(s, "g1", "1号楼").await.unwrap();
    admin::add_building(s, "g1", "2号楼").await.unwrap();
    for (u, n) in [("u-grid", "王伟"), ("u-lead", "李强"), ("u-staff", "赵敏")] {
        admin::add_user(s, u, n).await.unwrap();
    }
    admin::grant(s, "u-grid", GrantTarget::Grid("g1".into()), "网格员", &[])
        .await
        .unwrap();
    admin::grant(s, "u-grid", GrantTarget::Grid("g2".into()), "网格员", &[])
        .await
        .unwrap();
    admin::grant(
        s,
        "u-lead",
        GrantTarget::Grid("g1".into()),
        "楼门长",
        &["1号楼".into()],
    )
    .await
    .unwrap();
    admin::grant(
        s,
        "u-staff",
        GrantTarget::Community("c1".into()),
        "社区工作者",
        &[],
    )
    .await
    .unwrap();
    let app = router(AppState::new(
        Arc::new(storage.clone()),
        secret.clone(),
        limits,
    ));
    H {
        app,
        storage,
        secret,
        _dir: dir,
    }
}

async fn setup() -> H {
    setup_with(Limits::default()).await
}

struct Reply<T> {
    status: StatusCode,
    headers: HeaderMap,
    ok: Option<T>,
    err: Option<ErrorBody>,
}

async fn raw(
    app: &Router,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
    protocol: Option<&str>,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut req = Request::post(path).header("content-type", proto::CONTENT_TYPE);
    if let Some(p) = protocol {
        req = req.header(proto::PROTOCOL_HEADER, p);
    }
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    (status, headers, bytes)
}

async fn call<Q: Serialize, R: DeserializeOwned>(
    app: &Router,
    path: &str,
    token: Option<&str>,
    q: &Q,
) -> Reply<R> {
    let (status, headers, bytes) = raw(app, path, token, proto::encode(q), Some("1")).await;
    if status.is_success() {
        Reply {
            status,
            headers,
            ok: Some(proto::decode(&bytes).unwrap()),
            err: None,
        }
    } else {
        Reply {
            status,
            headers,
            ok: None,
            err: Some(proto::decode(&bytes).unwrap()),
        }
    }
}

struct Device {
    id: String,
    access: String,
    refresh: String,
    store: Store,
}

async fn enroll(h: &H, user: &str, role: Role) -> Device {
    let code = admin::enroll_code(&h.storage, &h.secret, user)
        .await
        .unwrap();
    let r: Reply<EnrollResponse> = call(
        &h.app,
        "/v1/enroll",
        None,
        &EnrollRequest {
            code,
            device_name: format!("{user}'s phone"),
            previous_device: None,
        },
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.err);
    let e = r.ok.unwrap();
    assert_eq!(e.user, user);
    let actor = Actor::new(user, &e.user_name, role, &e.device).unwrap();
    Device {
        id: e.device,
        access: e.tokens.access_token,
        refresh: e.tokens.refresh_token,
        store: Store::open_in_memory(actor).unwrap(),
    }
}

fn household(grid: &str, building: &str, room: &str, name: &str) -> NewHousehold {
    NewHousehold {
        address: Address::new(grid, building, "1单元", room).unwrap(),
        members: vec![NewMember {
            name: name.into(),
            gender: Gender::Female,
            birth_year: 1950,
            phone: Some("13800138000".into()),
            id_number: None,
            relation: Relation::Head,
            tags: vec![],
        }],
        tags: vec![],
        note: String::new(),
    }
}

fn record(grid: &str, building: Option<&str>) -> NewRecord {
    NewRecord {
        grid: grid.into(),
        category: Category::Environment,
        description: "楼道堆放杂物".into(),
        reporter: "张阿姨".into(),
        household: None,
        building: building.map(str::to_string),
        place: "楼道".into(),
    }
}

fn outbox_push(store: &Store) -> PushRequest {
    let mut by_doc: BTreeMap<String, Vec<ByteBuf>> = BTreeMap::new();
    let mut order = Vec::new();
    for e in store.outbox(100_000).unwrap() {
        if !by_doc.contains_key(&e.doc) {
            order.push(e.doc.clone());
        }
        by_doc
            .entry(e.doc)
            .or_default()
            .push(ByteBuf::from(e.change));
    }
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

fn changes_of(doc: &mut AutoCommit) -> Vec<ByteBuf> {
    doc.get_changes(&[])
        .iter()
        .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
        .collect()
}

async fn push(h: &H, d: &Device, req: &PushRequest) -> Reply<PushResponse> {
    call(&h.app, "/v1/push", Some(&d.access), req).await
}

async fn pull(h: &H, d: &Device, grid: &str, since: u64, limit: u32) -> Reply<PullResponse> {
    call(
        &h.app,
        "/v1/pull",
        Some(&d.access),
        &PullRequest {
            grid: grid.into(),
            since,
            limit,
            wait_ms: 0,
        },
    )
    .await
}

async fn grid_seq(h: &H, grid: &str) -> u64 {
    h.storage
        .list_grids()
        .await
        .unwrap()
        .into_iter()
        .find(|g| g.id == grid)
        .unwrap()
        .seq
}

#[tokio::test]
async fn enroll_refresh_and_rotation() {
    let h = setup().await;
    let d = enroll(&h, "u-grid", Role::GridMember).await;
    let r: Reply<TokenResponse> = call(
        &h.app,
        "/v1/refresh",
        None,
        &RefreshRequest {
            refresh_token: d.refresh.clone(),
        },
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let t = r.ok.unwrap();
    assert_ne!(t.refresh_token, d.refresh);
    // The rotated token rotates again while its child is unused (a lost reply); the
    // child that is presented first works.
    let r: Reply<TokenResponse> = call(
        &h.app,
        "/v1/refresh",
        None,
        &RefreshRequest {
            refresh_token: d.refresh.clone(),
        },
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.err);
    let r: Reply<TokenResponse> = call(
        &h.app,
        "/v1/refresh",
        None,
        &RefreshRequest {
            refresh_token: t.refresh_token,
        },
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // The new access token authenticates.
    let r = pull(
        &h,
        &Device {
            access: t.access_token,
            ..d
        },
        "g1",
        0,
        10,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // A code works once; a wrong code is refused.
    let code = admin::enroll_code(&h.storage, &h.secret, "u-lead")
        .await
        .unwrap();
    let ok: Reply<EnrollResponse> = call(
        &h.app,
        "/v1/enroll",
        None,
        &EnrollRequest {
            code: code.clone(),
            device_name: "a".into(),
            previous_device: None,
        },
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(
        ok.ok.unwrap().grants,
        vec![Grant {
            grid: "g1".into(),
            role: "楼门长".into(),
            buildings: vec!["1号楼".into()],
            community: "c1".into(),
            number_prefix: "金湖".into(),
        }]
    );
    let again: Reply<EnrollResponse> = call(
        &h.app,
        "/v1/enroll",
        None,
        &EnrollRequest {
            code,
            device_name: "b".into(),
            previous_device: None,
        },
    )
    .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    let bad: Reply<EnrollResponse> = call(
        &h.app,
        "/v1/enroll",
        None,
        &EnrollRequest {
            code: "0000-0000".into(),
            device_name: "c".into(),
            previous_device: None,
        },
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    // Tokens: missing, forged.
    let r: Reply<PullResponse> = call(
        &h.app,
        "/v1/pull",
        None,
        &PullRequest {
            grid: "g1".into(),
            since: 0,
            limit: 1,
            wait_ms: 0,
        },
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let forged = Secret::from_bytes(&[1; 32]).access_token("dxx", "u-grid", i64::MAX);
    let r: Reply<PullResponse> = call(
        &h.app,
        "/v1/pull",
        Some(&forged),
        &PullRequest {
            grid: "g1".into(),
            since: 0,
            limit: 1,
            wait_ms: 0,
        },
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

async fn refresh_with(h: &H, token: &str) -> Reply<TokenResponse> {
    call(
        &h.app,
        "/v1/refresh",
        None,
        &RefreshRequest {
            refresh_token: token.to_string(),
        },
    )
    .await
}

/// Issue 9 item 1 / issue 8 item 8: a refresh whose reply was lost is retried with the
/// same token and gets a working pair; presenting a token whose child was used since is
/// theft: every token of the device dies (`reenroll`), the device keeps no way in.
#[tokio::test]
async fn refresh_survives_a_lost_reply_and_reuse_revokes_every_token() {
    let h = setup().await;
    let d = enroll(&h, "u-grid", Role::GridMember).await;
    // Two lost replies in a row, then the third arrives.
    for _ in 0..2 {
        let lost = refresh_with(&h, &d.refresh).await;
        assert_eq!(lost.status, StatusCode::OK, "{:?}", lost.err);
    }
    let kept = refresh_with(&h, &d.refresh).await.ok.unwrap();
    let next = refresh_with(&h, &kept.refresh_token).await;
    assert_eq!(next.status, StatusCode::OK, "{:?}", next.err);
    let next = next.ok.unwrap();
    let ok = pull(
        &h,
        &Device {
            id: d.id.clone(),
            access: next.access_token.clone(),
            refresh: next.refresh_token.clone(),
            store: Store::open_in_memory(d.store.actor().clone()).unwrap(),
        },
        "g1",
        0,
        10,
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    // The first token's child `kept` was used: presenting the first token again is theft.
    let stolen = refresh_with(&h, &d.refresh).await;
    assert_eq!(stolen.status, StatusCode::UNAUTHORIZED);
    let err = stolen.err.unwrap();
    assert_eq!(err.code, "reenroll");
    assert!(err.message.contains("already used"), "{}", err.message);
    // Every token of the device is dead now: the newest refresh token and the access token.
    let r = refresh_with(&h, &next.refresh_token).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.err.unwrap().code, "reenroll");
    let r = pull(
        &h,
        &Device {
            access: next.access_token,
            ..d
        },
        "g1",
        0,
        10,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.err.unwrap().code, "reenroll");
}

#[tokio::test]
async fn push_pull_round_trip_paging_and_duplicates() {
    let h = setup().await;
    let mut a = enroll(&h, "u-grid", Role::GridMember).await;
    let mut b = enroll(&h, "u-staff", Role::CommunityStaff).await;
    for i in 0..3 {
        a.store
            .create_household(household("g1", "1号楼", &format!("10{i}"), "张三"))
            .unwrap();
    }
    a.store.create_record(record("g1", Some("2号楼"))).unwrap();
    let req = outbox_push(&a.store);
    let n = req.docs.iter().map(|d| d.changes.len() as u64).sum::<u64>();
    let r = push(&h, &a, &req).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.err);
    let p = r.ok.unwrap();
    assert_eq!((p.stored, p.duplicates), (n, 0));
    assert_eq!(
        p.grid_seqs,
        vec![GridSeq {
            grid: "g1".into(),
            seq: n
        }]
    );
    assert!(p.server_time_ms > 0);

    // The same push again: all duplicates, nothing stored twice.
    let r = push(&h, &a, &req).await;
    let p = r.ok.unwrap();
    assert_eq!((p.stored, p.duplicates), (0, n));
    assert_eq!(grid_seq(&h, "g1").await, n);

    // Paged pull by another device, applied with the cursor.
    let mut since = 0;
    let mut pages = 0;
    loop {
        let r = pull(&h, &b, "g1", since, 2).await;
        assert_eq!(r.status, StatusCode::OK);
        let page = r.ok.unwrap();
        let changes: Vec<RemoteChange> = page
            .changes
            .iter()
            .map(|c| RemoteChange {
                doc: c.doc.clone(),
                change: c.change.to_vec(),
            })
            .collect();
        b.store.apply_pulled("g1", page.next, &changes).unwrap();
        since = page.next;
        pages += 1;
        if !page.more {
            break;
        }
    }
    assert_eq!(since, n);
    assert!(pages >= 2);
    assert_eq!(b.store.sync_cursor("g1").unwrap(), n);
    assert_eq!(
        a.store.projection_dump().unwrap(),
        b.store.projection_dump().unwrap()
    );

    let (status, _, body) = {
        let resp = h
            .app
            .clone()
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let s = resp.status();
        (
            s,
            (),
            axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap(),
        )
    };
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        text.contains(&format!("xiuhua_changes_duplicate_total {n}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("xiuhua_changes_stored_total {n}")),
        "{text}"
    );
    assert!(text.contains("route=\"/v1/push\",status=\"200\""), "{text}");
    let resp = h
        .app
        .clone()
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn writes_outside_grants_are_refused_and_nothing_is_stored() {
    let h = setup().await;
    let mut lead = enroll(&h, "u-lead", Role::BuildingLeader).await;
    // Another building of the grid.
    lead.store
        .create_household(household("g1", "2号楼", "201", "钱七"))
        .unwrap();
    let r = push(&h, &lead, &outbox_push(&lead.store)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let e = r.err.unwrap();
    assert_eq!(e.code, "forbidden");
    assert!(e.message.contains("2号楼"), "{}", e.message);
    assert_eq!(grid_seq(&h, "g1").await, 0);

    // A grid without a grant, in a batch with an allowed document first.
    let mut lead2 = enroll(&h, "u-lead", Role::BuildingLeader).await;
    lead2
        .store
        .create_household(household("g1", "1号楼", "101", "孙八"))
        .unwrap();
    lead2
        .store
        .create_household(household("g2", "1号楼", "101", "周九"))
        .unwrap();
    let r = push(&h, &lead2, &outbox_push(&lead2.store)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.err.unwrap().message.contains("no grant on grid g2"));
    assert_eq!(grid_seq(&h, "g1").await, 0);
    assert_eq!(grid_seq(&h, "g2").await, 0);

    // A record without a building is for whole-grid roles only.
    let mut lead3 = enroll(&h, "u-lead", Role::BuildingLeader).await;
    lead3.store.create_record(record("g1", None)).unwrap();
    let r = push(&h, &lead3, &outbox_push(&lead3.store)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // In their own building it is stored.
    let mut lead4 = enroll(&h, "u-lead", Role::BuildingLeader).await;
    lead4
        .store
        .create_record(record("g1", Some("1号楼")))
        .unwrap();
    let r = push(&h, &lead4, &outbox_push(&lead4.store)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.err);
}

#[tokio::test]
async fn a_change_of_another_devices_actor_is_refused() {
    let h = setup().await;
    let a = enroll(&h, "u-grid", Role::GridMember).await;
    let b = enroll(&h, "u-grid", Role::GridMember).await;
    let mut other =
        Store::open_in_memory(Actor::new("u-grid", "王伟", Role::GridMember, &b.id).unwrap())
            .unwrap();
    other
        .create_household(household("g1", "1号楼", "101", "张三"))
        .unwrap();
    let r = push(&h, &a, &outbox_push(&other)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let e = r.err.unwrap();
    assert!(
        e.message.contains(&b.id) && e.message.contains(&a.id),
        "{}",
        e.message
    );
    assert_eq!(grid_seq(&h, "g1").await, 0);
}

#[tokio::test]
async fn a_change_moving_a_document_to_another_grid_is_refused() {
    let h = setup().await;
    let mut a = enroll(&h, "u-grid", Role::GridMember).await;
    let id = a
        .store
        .create_household(household("g1", "1号楼", "101", "张三"))
        .unwrap();
    assert_eq!(
        push(&h, &a, &outbox_push(&a.store)).await.status,
        StatusCode::OK
    );
    let seq = grid_seq(&h, "g1").await;
    // Edit the document behind the store's back: the user has grants on both grids.
    let mut doc = AutoCommit::new().with_actor(actor_id(&a.id));
    let all = a.store.export_all().unwrap();
    for c in all.iter().filter(|c| c.doc == id) {
        doc.apply_changes([automerge::Change::try_from(c.change.as_slice()).unwrap()])
            .unwrap();
    }
    let heads = doc.get_heads();
    let (_, addr) = doc.get(automerge::ROOT, "address").unwrap().unwrap();
    doc.put(&addr, "grid", "g2").unwrap();
    doc.commit();
    let change = doc
        .get_changes(&heads)
        .iter()
        .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
        .collect();
    let r = push(
        &h,
        &a,
        &PushRequest {
            docs: vec![DocChanges {
                doc: id.clone(),
                changes: change,
            }],
        },
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let m = r.err.unwrap().message;
    assert!(m.contains("registered") && m.contains("g2"), "{m}");
    assert_eq!(grid_seq(&h, "g1").await, seq);
    assert_eq!(grid_seq(&h, "g2").await, 0);
}

#[tokio::test]
async fn building_leader_reads_only_their_building() {
    let h = setup().await;
    let mut a = enroll(&h, "u-grid", Role::GridMember).await;
    let mine = a
        .store
        .create_household(household("g1", "1号楼", "101", "张三"))
        .unwrap();
    let theirs = a
        .store
        .create_household(household("g1", "2号楼", "201", "李四"))
        .unwrap();
    let rec_mine = a.store.create_record(record("g1", Some("1号楼"))).unwrap();
    let rec_theirs = a.store.create_record(record("g1", Some("2号楼"))).unwrap();
    let rec_none = a.store.create_record(record("g1", None)).unwrap();
    assert_eq!(
        push(&h, &a, &outbox_push(&a.store)).await.status,
        StatusCode::OK
    );
    let total = grid_seq(&h, "g1").await;

    let lead = enroll(&h, "u-lead", Role::BuildingLeader).await;
    let page = pull(&h, &lead, "g1", 0, 1000).await.ok.unwrap();
    let docs: std::collections::BTreeSet<String> =
        page.changes.iter().map(|c| c.doc.clone()).collect();
    assert_eq!(docs, [mine.clone(), rec_mine.clone()].into_iter().collect());
    assert_eq!(
        page.next, total,
        "filtered-out changes must not stall the cursor"
    );
    assert!(!page.more);
    // A page smaller than the feed still advances.
    let page = pull(&h, &lead, "g1", 0, 1).await.ok.unwrap();
    assert_eq!(page.changes.len(), 1);
    assert!(page.more);

    let r: Reply<Bundle> = call(
        &h.app,
        "/v1/bootstrap",
        Some(&lead.access),
        &BootstrapRequest {
            grid: "g1".into(),
            after: None,
            limit: 0,
            buildings: Vec::new(),
        },
    )
    .await;
    let bundle = r.ok.unwrap();
    assert_eq!(bundle.cursor, total);
    let ids: Vec<String> = bundle.docs.iter().map(|d| d.id.clone()).collect();
    assert!(ids.contains(&mine) && ids.contains(&rec_mine));
    assert!(!ids.contains(&theirs) && !ids.contains(&rec_theirs) && !ids.contains(&rec_none));
    assert_eq!(bundle.docs.len(), 2);
    // The bundle's documents load and their rows are the store's.
    let hh = bundle.docs.iter().find(|d| d.id == mine).unwrap();
    assert!(AutoCommit::load(&hh.bytes).is_ok());
    assert!(
        matches!(&hh.rows, xiuhua_core::store::Rows::Household { household, .. } if household.building == "1号楼")
    );

    // The whole-grid member bootstraps everything.
    let r: Reply<Bundle> = call(
        &h.app,
        "/v1/bootstrap",
        Some(&a.access),
        &BootstrapRequest {
            grid: "g1".into(),
            after: None,
            limit: 0,
            buildings: Vec::new(),
        },
    )
    .await;
    assert_eq!(r.ok.unwrap().docs.len(), 5);
}

#[tokio::test]
async fn revoking_a_grant_purges_the_grid() {
    let h = setup().await;
    let staff = enroll(&h, "u-staff", Role::CommunityStaff).await;
    assert_eq!(pull(&h, &staff, "g2", 0, 10).await.status, StatusCode::OK);
    assert_eq!(
        pull(&h, &staff, "g1", 0, 10)
            .await
            .headers
            .get(PURGE_HEADER),
        None
    );
    admin::revoke_grant(&h.storage, "u-staff", "g2")
        .await
        .unwrap();
    let r = pull(&h, &staff, "g1", 0, 10).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers.get(PURGE_HEADER).unwrap(), "g2");
    // The success body names it too (an extra field typed clients ignore).
    let (_, _, body) = raw(
        &h.app,
        "/v1/pull",
        Some(&staff.access),
        proto::encode(&PullRequest {
            grid: "g1".into(),
            since: 0,
            limit: 10,
            wait_ms: 0,
        }),
        Some("1"),
    )
    .await;
    #[derive(serde::Deserialize)]
    struct PurgeOnly {
        purge_grids: Vec<String>,
    }
    assert_eq!(
        proto::decode::<PurgeOnly>(&body).unwrap().purge_grids,
        vec!["g2".to_string()]
    );
    assert_eq!(proto::decode::<PullResponse>(&body).unwrap().grid, "g1");
    let r = pull(&h, &staff, "g2", 0, 10).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let e = r.err.unwrap();
    assert_eq!(
        (e.code.as_str(), e.purge_grids),
        ("purge", vec!["g2".to_string()])
    );
    // A grid never held is plainly forbidden.
    let lead = enroll(&h, "u-lead", Role::BuildingLeader).await;
    let e = pull(&h, &lead, "g2", 0, 10).await.err.unwrap();
    assert_eq!(e.code, "forbidden");
    assert!(e.purge_grids.is_empty());
    // A revoked device is told to purge everything it held.
    admin::revoke_device(&h.storage, &staff.id).await.unwrap();
    let r = pull(&h, &staff, "g1", 0, 10).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.err.unwrap().purge_grids,
        vec!["g1".to_string(), "g2".to_string()]
    );
    let r: Reply<TokenResponse> = call(
        &h.app,
        "/v1/refresh",
        None,
        &RefreshRequest {
            refresh_token: staff.refresh.clone(),
        },
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.err.unwrap().purge_grids.len(), 2);
}

fn bad_household(device: &str, phone: &str) -> (String, Vec<ByteBuf>) {
    let h = Household {
        kind: "household".into(),
        id: "hh-bad".into(),
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
        created_by: "u-grid".into(),
        moved_out_at: None,
    };
    let mut doc = AutoCommit::new().with_actor(actor_id(device));
    autosurgeon::reconcile(&mut doc, &h).unwrap();
    doc.commit();
    ("hh-bad".into(), changes_of(&mut doc))
}

#[tokio::test]
async fn bad_input_gets_a_4xx_with_a_reason() {
    let h = setup_with(Limits {
        max_push_changes: 5,
        ..Limits::default()
    })
    .await;
    let a = enroll(&h, "u-grid", Role::GridMember).await;
    // Not zstd / not msgpack.
    let (s, _, body) = raw(
        &h.app,
        "/v1/push",
        Some(&a.access),
        b"garbage".to_vec(),
        Some("1"),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        proto::decode::<ErrorBody>(&body)
            .unwrap()
            .message
            .contains("malformed")
    );
    // Another protocol version, or none.
    let (s, _, body) = raw(&h.app, "/v1/push", Some(&a.access), vec![], Some("2")).await;
    assert_eq!(s, StatusCode::UPGRADE_REQUIRED);
    assert_eq!(
        proto::decode::<ErrorBody>(&body).unwrap().code,
        "unsupported_protocol"
    );
    let (s, _, _) = raw(&h.app, "/v1/pull", Some(&a.access), vec![], None).await;
    assert_eq!(s, StatusCode::UPGRADE_REQUIRED);
    // Garbage change bytes.
    let req = PushRequest {
        docs: vec![DocChanges {
            doc: "hh-x".into(),
            changes: vec![ByteBuf::from(vec![1, 2, 3])],
        }],
    };
    let e = push(&h, &a, &req).await;
    assert_eq!(e.status, StatusCode::BAD_REQUEST);
    assert!(
        e.err
            .unwrap()
            .message
            .contains("hh-x: change #0 is not an Automerge change")
    );
    // Unknown kind.
    let mut doc = AutoCommit::new().with_actor(actor_id(&a.id));
    doc.put(automerge::ROOT, "kind", "spaceship").unwrap();
    doc.put(automerge::ROOT, "grid", "g1").unwrap();
    doc.commit();
    let e = push(
        &h,
        &a,
        &PushRequest {
            docs: vec![DocChanges {
                doc: "x-1".into(),
                changes: changes_of(&mut doc),
            }],
        },
    )
    .await;
    assert_eq!(e.status, StatusCode::BAD_REQUEST);
    assert!(
        e.err
            .unwrap()
            .message
            .contains("unknown kind \"spaceship\"")
    );
    // A household whose member's phone has 10 digits.
    let (id, changes) = bad_household(&a.id, "1380013800");
    let e = push(
        &h,
        &a,
        &PushRequest {
            docs: vec![DocChanges { doc: id, changes }],
        },
    )
    .await;
    assert_eq!(e.status, StatusCode::BAD_REQUEST);
    let m = e.err.unwrap().message;
    assert!(
        m.contains("hh-bad") && m.contains("phone") && m.contains("11-digit"),
        "{m}"
    );
    // A change whose dependency is missing.
    let mut doc = AutoCommit::new().with_actor(actor_id(&a.id));
    doc.put(automerge::ROOT, "kind", "record").unwrap();
    doc.commit();
    doc.put(automerge::ROOT, "grid", "g1").unwrap();
    doc.commit();
    let second = changes_of(&mut doc).pop().unwrap();
    let e = push(
        &h,
        &a,
        &PushRequest {
            docs: vec![DocChanges {
                doc: "rec-x".into(),
                changes: vec![second],
            }],
        },
    )
    .await;
    assert_eq!(e.status, StatusCode::CONFLICT);
    assert!(e.err.unwrap().message.contains("depend"));
    // Too many changes in one push.
    let mut s =
        Store::open_in_memory(Actor::new("u-grid", "王伟", Role::GridMember, &a.id).unwrap())
            .unwrap();
    for i in 0..6 {
        s.create_household(household("g1", "1号楼", &format!("{i}"), "张三"))
            .unwrap();
    }
    let e = push(&h, &a, &outbox_push(&s)).await;
    assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(e.err.unwrap().code, "too_large");
    assert_eq!(grid_seq(&h, "g1").await, 0);
}

#[tokio::test]
async fn a_batch_whose_last_document_is_invalid_stores_nothing() {
    let h = setup().await;
    let mut a = enroll(&h, "u-grid", Role::GridMember).await;
    a.store
        .create_household(household("g1", "1号楼", "101", "张三"))
        .unwrap();
    a.store.create_record(record("g1", Some("1号楼"))).unwrap();
    let mut req = outbox_push(&a.store);
    let (id, changes) = bad_household(&a.id, "12345");
    req.docs.push(DocChanges { doc: id, changes });
    let r = push(&h, &a, &req).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(grid_seq(&h, "g1").await, 0);
    let page = pull(&h, &a, "g1", 0, 100).await.ok.unwrap();
    assert!(page.changes.is_empty());
    assert_eq!(page.next, 0);
    let r: Reply<Bundle> = call(
        &h.app,
        "/v1/bootstrap",
        Some(&a.access),
        &BootstrapRequest {
            grid: "g1".into(),
            after: None,
            limit: 0,
            buildings: Vec::new(),
        },
    )
    .await;
    assert!(r.ok.unwrap().docs.is_empty());
}

fn new_task(grid: &str) -> NewTask {
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

async fn escalate(
    h: &H,
    d: &Device,
    task: &str,
    tier: &str,
    unit: Option<&str>,
) -> Reply<EscalateResponse> {
    call(
        &h.app,
        "/v1/escalate",
        Some(&d.access),
        &EscalateRequest {
            task: task.into(),
            tier: tier.into(),
            unit: unit.map(str::to_string),
        },
    )
    .await
}

#[tokio::test]
async fn escalation_is_checked_by_the_server() {
    let h = setup().await;
    let mut a = enroll(&h, "u-grid", Role::GridMember).await;
    let lead = enroll(&h, "u-lead", Role::BuildingLeader).await;
    let staff = enroll(&h, "u-staff", Role::CommunityStaff).await;
    let task = a.store.create_task(new_task("g1")).unwrap();
    let r = push(&h, &a, &outbox_push(&a.store)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.err);
    let acked: Vec<i64> = a.store.outbox(1000).unwrap().iter().map(|e| e.id).collect();
    a.store.ack_outbox(&acked).unwrap();

    // An escalate event pushed before the server escalated the task is refused.
    a.store
        .task_action(
            &task,
            TaskAction::Escalate {
                tier: Tier::Community,
                unit: None,
            },
        )
        .unwrap();
    let event = outbox_push(&a.store);
    let r = push(&h, &a, &event).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.err.unwrap().message.contains("/v1/escalate"));

    // The 楼门长 cannot see a task outside their buildings: the same 404 as an unknown one.
    let outside = escalate(&h, &lead, &task, "community", None).await;
    assert_eq!(outside.status, StatusCode::NOT_FOUND);
    let unknown = escalate(&h, &lead, "task-nope", "community", None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(
        outside.err.unwrap().message.replace(&task, "X"),
        unknown.err.unwrap().message.replace("task-nope", "X")
    );
    assert_eq!(
        escalate(&h, &a, &task, "linked_unit", Some("物业"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        escalate(&h, &a, &task, "sky", None).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        escalate(&h, &a, &task, "community", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        escalate(&h, &a, &task, "community", None).await.status,
        StatusCode::CONFLICT
    );
    // Now the event is accepted.
    let r = push(&h, &a, &event).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.err);
    assert_eq!(
        escalate(&h, &staff, &task, "linked_unit", None)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        escalate(&h, &staff, &task, "linked_unit", Some("物业"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        escalate(&h, &staff, "task-nope", "linked_unit", Some("物业"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn repair_sends_what_the_client_lacks() {
    use automerge::sync::{State, SyncDoc};
    let h = setup().await;
    let mut a = enroll(&h, "u-grid", Role::GridMember).await;
    let id = a
        .store
        .create_household(household("g1", "1号楼", "101", "张三"))
        .unwrap();
    assert_eq!(
        push(&h, &a, &outbox_push(&a.store)).await.status,
        StatusCode::OK
    );
    let b = enroll(&h, "u-staff", Role::CommunityStaff).await;
    // b has an empty copy and repairs it from the server.
    let mut doc = AutoCommit::new().with_actor(actor_id(&b.id));
    let mut state = State::new();
    for _ in 0..5 {
        let Some(msg) = doc.sync().generate_sync_message(&mut state) else {
            break;
        };
        let r: Reply<RepairResponse> = call(
            &h.app,
            "/v1/repair",
            Some(&b.access),
            &RepairRequest {
                doc: id.clone(),
                message: ByteBuf::from(msg.encode()),
            },
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.err);
        match r.ok.unwrap().message {
            Some(m) => doc
                .sync()
                .receive_sync_message(&mut state, automerge::sync::Message::decode(&m).unwrap())
                .unwrap(),
            None => break,
        }
    }
    assert_eq!(
        xiuhua_core::doc::kind_and_grid(&doc),
        Some((xiuhua_core::DocKind::Household, "g1".to_string()))
    );
    // Outside the caller's buildings: refused.
    let lead = enroll(&h, "u-lead", Role::BuildingLeader).await;
    let r: Reply<RepairResponse> = call(
        &h.app,
        "/v1/repair",
        Some(&lead.access),
        &RepairRequest {
            doc: "hh-nope".into(),
            message: ByteBuf::from(vec![0x42]),
        },
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn events_signed_in_a_role_the_caller_does_not_hold_are_refused() {
    let h = setup().await;
    let lead = enroll(&h, "u-lead", Role::BuildingLeader).await;
    let watcher = enroll(&h, "u-staff", Role::CommunityStaff).await;
    // A modified app: 李强 (楼门长 of 1号楼) records a 督单 "as 社区工作者".
    let mut s = Store::open_in_memory(
        Actor::new("u-lead", "李强", Role::CommunityStaff, &lead.id).unwrap(),
    )
    .unwrap();
    let hh = s
        .create_household(household("g1", "1号楼", "101", "张三"))
        .unwrap();
    let t = s
        .create_task(NewTask {
            grid: "g1".into(),
            level: Level::Doorstep,
            category: Category::Service,
            title: "代办医保".into(),
            description: String::new(),
            household: Some(hh.clone()),
            source_record: None,
            assignee: None,
            deadline: None,
        })
        .unwrap();
    s.task_action(
        &t,
        TaskAction::Supervise {
            text: "抓紧".into(),
            new_deadline: None,
        },
    )
    .unwrap();
    let r = push(&h, &lead, &outbox_push(&s)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let m = r.err.unwrap().message;
    assert!(m.contains("role") && m.contains(&t), "{m}");
    // Nothing of the push was stored, the household included.
    let page = pull(&h, &watcher, "g1", 0, 100).await.ok.unwrap();
    assert!(page.changes.is_empty(), "{:?}", page.changes.len());
}

// ----- the server's edge (issue 8) -----

/// An Automerge sync message whose one Bloom filter claims 2^32-1 probes in 8 bytes: a
/// server that evaluates it allocates 16 GiB per change it checks.
fn hostile_bloom_message() -> Vec<u8> {
    let bloom = [0x01, 0x08, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
    let mut m = vec![0x42, 0x00, 0x00, 0x01, 0x00, bloom.len() as u8];
    m.extend_from_slice(&bloom);
    m.push(0x00);
    m
}

#[tokio::test]
async fn repair_never_evaluates_the_clients_bloom_filters() {
    let h = setup().await;
    let mut a = enroll(&h, "u-grid", Role::GridMember).await;
    a.store
        .create_household(household("g1", "1号楼", "101", "张三"))
        .unwrap();
    let id = outbox_push(&a.store).docs[0].doc.clone();
    assert_eq!(
        push(&h, &a, &outbox_push(&a.store)).await.status,
        StatusCode::OK
    );
    let b = enroll(&h, "u-staff", Role::CommunityStaff).await;
    assert!(automerge::sync::Message::decode(&hostile_bloom_message()).is_ok());
    let start = std::time::Instant::now();
    let r: Reply<RepairResponse> = call(
        &h.app,
        "/v1/repair",
        Some(&b.access),
        &RepairRequest {
            doc: id.clone(),
            message: ByteBuf::from(hostile_bloom_message()),
        },
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.err);
    assert!(start.elapsed() < std::time::Duration::from_secs(2));
    // The reply carries the document's changes (the client named no heads).
    let m = automerge::sync::Message::decode(&r.ok.unwrap().message.unwrap()).unwrap();
    assert!(!m.changes.is_empty());
    // Garbage is a 400, not a 500.
    let r: Reply<RepairResponse> = call(
        &h.app,
        "/v1/repair",
        Some(&b.access),
        &RepairRequest {
            doc: id,
            message: ByteBuf::from(vec![0x42, 0xff, 0xff, 0xff]),
        },
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn repair_and_escalate_answer_one_404_outside_the_callers_buildings() {
    let h = setup().await;
    let mut a = enroll(&h, "u-grid", Role::GridMember).await;
    a.store
        .create_household(household("g1", "2号楼", "201", "张三"))
        .unwrap();
    let id = outbox_push(&a.store).docs[0].doc.clone();
    assert_eq!(
        push(&h, &a, &outbox_push(&a.store)).await.status,
        StatusCode::OK
    );
    let lead = enroll(&h, "u-lead", Role::BuildingLeader).await;
    let ask = |doc: String| {
        let (app, token) = (h.app.clone(), lead.access.clone());
        async move {
            let r: Reply<RepairResponse> = call(
                &app,
                "/v1/repair",
                Some(&token),
                &RepairRequest {
                    doc,
                    message: ByteBuf::from(vec![0x42, 0, 0, 0, 0]),
                },
            )
            .await;
            (r.status, r.err.map(|e| (e.code, e.message)))
        }
    };
    let (s1, e1) = ask(id.clone()).await;
    let (s2, e2) = ask("hh-nope".into()).await;
    assert_eq!((s1, s2), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND));
    let (e1, e2) = (e1.unwrap(), e2.unwrap());
    assert_eq!(e1.0, e2.0);
    assert_eq!(e1.1.replace(&id, "X"), e2.1.replace("hh-nope", "X"));
}

#[tokio::test]
async fn enrollment_attempts_back_off_with_429() {
    let h = setup().await;
    let bad = || EnrollRequest {
        code: "7K3M-Q9XD-2HPA".into(),
        device_name: "x".into(),
        previous_device: None,
    };
    for i in 0..6 {
        let r: Reply<EnrollResponse> = call(&h.app, "/v1/enroll", None, &bad()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let r: Reply<EnrollResponse> = call(&h.app, "/v1/enroll", None, &bad()).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    // Even a good code waits out the back-off.
    let code = admin::enroll_code(&h.storage, &h.secret, "u-grid")
        .await
        .unwrap();
    let r: Reply<EnrollResponse> = call(
        &h.app,
        "/v1/enroll",
        None,
        &EnrollRequest {
            code,
            device_name: "x".into(),
            previous_device: None,
        },
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn enroll_and_refresh_bodies_are_small() {
    let h = setup().await;
    let big = EnrollRequest {
        code: "1".repeat(5000),
        device_name: "x".into(),
        previous_device: None,
    };
    let r: Reply<EnrollResponse> = call(&h.app, "/v1/enroll", None, &big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let r: Reply<TokenResponse> = call(
        &h.app,
        "/v1/refresh",
        None,
        &RefreshRequest {
            refresh_token: "a".repeat(10_000),
        },
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_push_of_millions_of_empty_items_is_refused_before_it_is_built() {
    let h = setup().await;
    let a = enroll(&h, "u-grid", Role::GridMember).await;
    let docs: Vec<DocChanges> = (0..3_000_000)
        .map(|_| DocChanges {
            doc: String::new(),
            changes: vec![],
        })
        .collect();
    let r = push(&h, &a, &PushRequest { docs }).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{:?}", r.err);
}

#[tokio::test]
async fn a_token_claiming_a_later_expiry_is_refused() {
    let h = setup().await;
    let a = enroll(&h, "u-grid", Role::GridMember).await;
    let user = "u-grid";
    let forever = h.secret.access_token(&a.id, user, i64::MAX);
    let r = pull(
        &h,
        &Device {
            access: forever,
            ..a
        },
        "g1",
        0,
        10,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_long_poll_rechecks_the_device_after_waking() {
    let h = setup().await;
    let a = enroll(&h, "u-grid", Role::GridMember).await;
    let mut b = enroll(&h, "u-staff", Role::CommunityStaff).await;
    let since = grid_seq(&h, "g1").await;
    let (app, token) = (h.app.clone(), a.access.clone());
    let poll = tokio::spawn(async move {
        let r: Reply<PullResponse> = call(
            &app,
            "/v1/pull",
            Some(&token),
            &PullRequest {
                grid: "g1".into(),
                since,
                limit: 100,
                wait_ms: 10_000,
            },
        )
        .await;
        r
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    admin::revoke_device(&h.storage, &a.id).await.unwrap();
    b.store
        .create_household(household("g1", "1号楼", "102", "李四"))
        .unwrap();
    assert_eq!(
        push(&h, &b, &outbox_push(&b.store)).await.status,
        StatusCode::OK
    );
    let r = tokio::time::timeout(std::time::Duration::from_secs(5), poll)
        .await
        .expect("the poll woke")
        .unwrap();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.ok);
}

#[tokio::test]
async fn long_polls_per_device_are_capped() {
    let h = setup_with(Limits {
        max_long_polls_per_device: 1,
        ..Limits::default()
    })
    .await;
    let a = enroll(&h, "u-grid", Role::GridMember).await;
    let since = grid_seq(&h, "g1").await;
    let req = PullRequest {
        grid: "g1".into(),
        since,
        limit: 100,
        wait_ms: 1_500,
    };
    let (app, token, q) = (h.app.clone(), a.access.clone(), req.clone());
    let first = tokio::spawn(async move {
        let r: Reply<PullResponse> = call(&app, "/v1/pull", Some(&token), &q).await;
        r.status
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let second: Reply<PullResponse> = call(&h.app, "/v1/pull", Some(&a.access), &req).await;
    assert_eq!(second.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(second.headers.contains_key("retry-after"));
    assert_eq!(first.await.unwrap(), StatusCode::OK);
    // The place is free again.
    let third: Reply<PullResponse> = call(
        &h.app,
        "/v1/pull",
        Some(&a.access),
        &PullRequest { wait_ms: 10, ..req },
    )
    .await;
    assert_eq!(third.status, StatusCode::OK);
}

#[tokio::test]
async fn a_malformed_body_is_refused_without_echoing_its_values() {
    assert_eq!(
        xiuhua_server::http::redact_values(r#"invalid type: string "13800138000", expected u64"#),
        r#"invalid type: string "…", expected u64"#
    );
    let h = setup().await;
    let a = enroll(&h, "u-grid", Role::GridMember).await;
    #[derive(Serialize)]
    struct BadPull {
        grid: String,
        since: String,
        limit: u32,
    }
    let r: Reply<PullResponse> = call(
        &h.app,
        "/v1/pull",
        Some(&a.access),
        &BadPull {
            grid: "g1".into(),
            since: "11010519491231002X".into(),
            limit: 1,
        },
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let e = r.err.unwrap();
    assert!(!e.message.contains("11010519491231002X"), "{}", e.message);
}

async fn metrics_text(h: &H) -> String {
    let resp = h
        .app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn a_device_over_its_daily_quota_gets_429_quota_exceeded() {
    let h = setup_with(Limits {
        quota: xiuhua_server::storage::Quota {
            daily_bytes: 0,
            daily_changes: 2,
        },
        ..Limits::default()
    })
    .await;
    let mut a = enroll(&h, "u-grid", Role::GridMember).await;
    a.store.create_record(record("g1", None)).unwrap();
    a.store.create_record(record("g1", None)).unwrap();
    let r = push(&h, &a, &outbox_push(&a.store)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.err);
    let ids: Vec<i64> = a.store.outbox(100).unwrap().iter().map(|e| e.id).collect();
    a.store.ack_outbox(&ids).unwrap();
    a.store.create_record(record("g1", None)).unwrap();
    let r = push(&h, &a, &outbox_push(&a.store)).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let e = r.err.unwrap();
    assert_eq!(e.code, "quota_exceeded");
    assert!(e.message.contains("daily quota"), "{}", e.message);
    assert_eq!(grid_seq(&h, "g1").await, 2);
    // Another device of the same user has its own quota.
    let mut b = enroll(&h, "u-grid", Role::GridMember).await;
    b.store.create_record(record("g1", None)).unwrap();
    let r = push(&h, &b, &outbox_push(&b.store)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.err);
}

#[tokio::test]
async fn a_quarantined_document_answers_409_and_shows_in_metrics() {
    let h = setup().await;
    let mut a = enroll(&h, "u-grid", Role::GridMember).await;
    let hh = a
        .store
        .create_household(household("g1", "1号楼", "101", "刘芳"))
        .unwrap();
    let r = push(&h, &a, &outbox_push(&a.store)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.err);
    let ids: Vec<i64> = a.store.outbox(100).unwrap().iter().map(|e| e.id).collect();
    a.store.ack_outbox(&ids).unwrap();
    assert!(
        metrics_text(&h)
            .await
            .contains("xiuhua_quarantined_documents 0")
    );
    // Broken bytes written behind the server's back; the check quarantines them.
    let c = rusqlite::Connection::open(h.storage.path()).unwrap();
    c.execute(
        "UPDATE docs SET bytes = x'00010203' WHERE id = ?1",
        rusqlite::params![hh],
    )
    .unwrap();
    let (report, clean) = admin::check(&h.storage).await.unwrap();
    assert!(!clean);
    assert!(report.contains(&hh), "{report}");
    a.store.set_household_note(&hh, "独居").unwrap();
    let r = push(&h, &a, &outbox_push(&a.store)).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.err.unwrap().code, "quarantined");
    assert!(
        metrics_text(&h)
            .await
            .contains("xiuhua_quarantined_documents 1")
    );
}
