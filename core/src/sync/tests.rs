//! The sync client against a tiny in-memory fake server (a per-grid change feed with seqs,
//! dedup by hash, paging, bundles with shipped rows, tokens, escalations, purges and
//! scripted failures).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use automerge::{AutoCommit, Change};

use super::proto::{self, ErrorBody};
use super::*;
use crate::model::*;
use crate::store::{PROJECTION_VERSION, RemoteChange, Store, rows_of};

const G1: &str = "东城-01";
const G2: &str = "东城-02";
/// 2026-03-01T00:00:00Z.
const NOW: i64 = 1_772_323_200_000;

/// A scripted answer instead of the real one.
#[derive(Debug, Clone)]
enum Fault {
    /// The connection breaks before the server sees the request.
    Drop,
    /// The server handles the request, then the connection breaks before the reply.
    DropReply,
    /// The server answers this status with an error body.
    Status(u16, &'static str),
}

#[derive(Default)]
struct FakeServer {
    now_ms: i64,
    /// Who `/v1/session` says the device is.
    device: String,
    user: String,
    /// grid → (seq, doc, change)
    feed: BTreeMap<String, Vec<(u64, String, Vec<u8>)>>,
    hashes: HashSet<[u8; 32]>,
    docs: BTreeMap<String, (String, AutoCommit)>,
    access: String,
    access_expires_ms: i64,
    refresh: String,
    refreshes: usize,
    /// Pushes touching these documents are refused (403).
    refuse_docs: HashSet<String>,
    /// Grids no longer granted: pulls get 403 + purge.
    revoked: HashSet<String>,
    /// The whole device is revoked: 401 + purge of every grid.
    device_revoked: bool,
    /// Escalations that are refused.
    refuse_escalations: bool,
    escalations: Vec<proto::EscalateRequest>,
    projection_version: i64,
    /// (path, nth call of that path from 1) → fault.
    faults: HashMap<(String, usize), Fault>,
    calls: HashMap<String, usize>,
    /// Every request: (path, short description).
    log: Vec<(String, String)>,
    /// Pushes stored right after the first page of a paged bootstrap is answered (another
    /// device syncing meanwhile).
    between_pages: Vec<proto::PushRequest>,
    /// The grants `/v1/session` answers; `None`: a server without `/v1/session` (404).
    grants: Option<Vec<proto::Grant>>,
}

/// The building a document is filed under (households and records; tasks: none here).
fn building_of(id: &str, doc: &AutoCommit) -> Option<String> {
    match rows_of(id, doc).ok()?? {
        crate::store::Rows::Household { household, .. } => Some(household.building),
        crate::store::Rows::Record(r) => r.building,
        crate::store::Rows::Task(_) => None,
    }
}

fn reply<T: serde::Serialize>(v: &T) -> (u16, Vec<u8>) {
    (200, proto::encode(v))
}

fn error(status: u16, code: &str, purge: Vec<String>) -> (u16, Vec<u8>) {
    (
        status,
        proto::encode(&ErrorBody {
            code: code.into(),
            message: format!("fake {code}"),
            purge_grids: purge,
        }),
    )
}

impl FakeServer {
    fn new() -> FakeServer {
        FakeServer {
            now_ms: NOW,
            device: "dev-a".into(),
            user: "u-wang".into(),
            access: "acc-1".into(),
            access_expires_ms: NOW + 15 * 60_000,
            refresh: "ref-1".into(),
            projection_version: PROJECTION_VERSION,
            ..FakeServer::default()
        }
    }

    /// The buildings the session's grant limits a grid to (a 楼门长), if any.
    fn scope(&self, grid: &str) -> Option<Vec<String>> {
        self.grants
            .as_ref()?
            .iter()
            .find(|g| g.grid == grid && g.role == "楼门长")
            .map(|g| g.buildings.clone())
    }

    fn seq(&self, grid: &str) -> u64 {
        self.feed
            .get(grid)
            .and_then(|f| f.last())
            .map_or(0, |(s, _, _)| *s)
    }

    fn total_changes(&self) -> usize {
        self.feed.values().map(Vec::len).sum()
    }

    fn handle(&mut self, path: &str, body: &[u8], bearer: Option<&str>) -> (u16, Vec<u8>) {
        if path == "/v1/refresh" {
            let r: proto::RefreshRequest = proto::decode(body).unwrap();
            if self.device_revoked {
                return error(401, "unauthorized", self.feed.keys().cloned().collect());
            }
            if r.refresh_token != self.refresh {
                return error(401, "unauthorized", vec![]);
            }
            self.refreshes += 1;
            self.access = format!("acc-{}", self.refreshes + 1);
            self.refresh = format!("ref-{}", self.refreshes + 1);
            self.access_expires_ms = self.now_ms + 15 * 60_000;
            return reply(&proto::TokenResponse {
                access_token: self.access.clone(),
                access_expires_ms: self.access_expires_ms,
                refresh_token: self.refresh.clone(),
            });
        }
        if self.device_revoked {
            return error(401, "unauthorized", self.feed.keys().cloned().collect());
        }
        if bearer != Some(self.access.as_str()) || self.now_ms >= self.access_expires_ms {
            return error(401, "unauthorized", vec![]);
        }
        match path {
            "/v1/session" => match &self.grants {
                None => error(404, "not_found", vec![]),
                Some(grants) => {
                    let _: proto::SessionRequest = proto::decode(body).unwrap();
                    #[derive(serde::Serialize)]
                    struct WithPurge {
                        #[serde(flatten)]
                        body: proto::SessionResponse,
                        purge_grids: Vec<String>,
                    }
                    reply(&WithPurge {
                        body: proto::SessionResponse {
                            server_time_ms: self.now_ms,
                            device: self.device.clone(),
                            user: self.user.clone(),
                            user_name: "王伟".into(),
                            grants: grants.clone(),
                            people: None,
                            number_blocks: vec![],
                        },
                        purge_grids: self.revoked.iter().cloned().collect(),
                    })
                }
            },
            "/v1/push" => self.push(proto::decode(body).unwrap()),
            "/v1/pull" => {
                let p: proto::PullRequest = proto::decode(body).unwrap();
                self.log.last_mut().unwrap().1 = format!("{} since {}", p.grid, p.since);
                if self.revoked.contains(&p.grid) {
                    return error(403, "purge", vec![p.grid]);
                }
                let feed = self.feed.get(&p.grid).cloned().unwrap_or_default();
                let after: Vec<_> = feed.iter().filter(|(s, _, _)| *s > p.since).collect();
                let page: Vec<_> = after.iter().take(p.limit as usize).collect();
                let next = page
                    .last()
                    .map_or(p.since.max(self.seq(&p.grid)), |(s, _, _)| *s);
                let scope = self.scope(&p.grid);
                let page: Vec<_> = page
                    .into_iter()
                    .filter(|(_, d, _)| {
                        scope.as_ref().is_none_or(|bs| {
                            self.docs
                                .get(d)
                                .and_then(|(_, doc)| building_of(d, doc))
                                .is_some_and(|b| bs.contains(&b))
                        })
                    })
                    .collect();
                reply(&proto::PullResponse {
                    server_time_ms: self.now_ms,
                    grid: p.grid.clone(),
                    changes: page
                        .iter()
                        .map(|(s, d, c)| proto::PulledChange {
                            seq: *s,
                            doc: d.clone(),
                            change: serde_bytes::ByteBuf::from(c.clone()),
                        })
                        .collect(),
                    next,
                    more: after.len() > page.len(),
                    moved_out: vec![],
                    moved_in: vec![],
                })
            }
            "/v1/bootstrap" => {
                let b: proto::BootstrapRequest = proto::decode(body).unwrap();
                self.log.last_mut().unwrap().1 = format!(
                    "{} after {}{}",
                    b.grid,
                    b.after.as_deref().unwrap_or("-"),
                    if b.buildings.is_empty() {
                        String::new()
                    } else {
                        format!(" in {}", b.buildings.join(","))
                    }
                );
                if self.revoked.contains(&b.grid) {
                    return error(403, "purge", vec![b.grid]);
                }
                let limit = match b.limit {
                    0 => proto::BOOTSTRAP_MAX_PAGE,
                    n => n.min(proto::BOOTSTRAP_MAX_PAGE),
                } as usize;
                let after = b.after.clone().unwrap_or_default();
                let scope = self.scope(&b.grid);
                let wanted = |id: &str, g: &str, doc: &AutoCommit| {
                    let building = building_of(id, doc);
                    g == b.grid
                        && id > after.as_str()
                        && (b.buildings.is_empty()
                            || building.as_ref().is_some_and(|x| b.buildings.contains(x)))
                        && scope
                            .as_ref()
                            .is_none_or(|bs| building.as_ref().is_some_and(|x| bs.contains(x)))
                };
                let matching = self
                    .docs
                    .iter()
                    .filter(|(id, (g, doc))| wanted(id, g, doc))
                    .count();
                let docs: Vec<proto::BundleDoc> = self
                    .docs
                    .iter_mut()
                    .filter(|(id, (g, doc))| wanted(id, g, doc))
                    .take(limit)
                    .map(|(id, (_, doc))| proto::BundleDoc {
                        id: id.clone(),
                        kind: crate::doc::kind_and_grid(doc).unwrap().0.as_str().into(),
                        heads: doc
                            .get_heads()
                            .iter()
                            .map(|h| serde_bytes::ByteBuf::from(h.0.to_vec()))
                            .collect(),
                        bytes: serde_bytes::ByteBuf::from(doc.save_nocompress()),
                        rows: rows_of(id, doc).unwrap().unwrap(),
                    })
                    .collect();
                let more = matching > docs.len();
                let answer = reply(&proto::Bundle {
                    server_time_ms: self.now_ms,
                    grid: b.grid.clone(),
                    cursor: self.seq(&b.grid),
                    projection_version: self.projection_version,
                    docs,
                    more,
                    total_docs: b.after.is_none().then_some(matching as u64),
                });
                if b.after.is_none() && more {
                    for push in std::mem::take(&mut self.between_pages) {
                        self.log.push(("(between pages)".into(), String::new()));
                        self.push(push);
                    }
                }
                answer
            }
            "/v1/repair" => {
                // As the real server: read-only, a fresh state every request.
                let r: proto::RepairRequest = proto::decode(body).unwrap();
                self.log.last_mut().unwrap().1 = r.doc.clone();
                let Some((_, doc)) = self.docs.get_mut(&r.doc) else {
                    return error(404, "not_found", vec![]);
                };
                use automerge::sync::SyncDoc;
                let mut msg = automerge::sync::Message::decode(&r.message).unwrap();
                msg.changes = automerge::sync::ChunkList::empty();
                msg.need.retain(|h| doc.get_change_by_hash(h).is_some());
                if msg.heads == doc.get_heads() && msg.need.is_empty() {
                    return reply(&proto::RepairResponse { message: None });
                }
                let mut state = automerge::sync::State::new_read_only();
                doc.sync().receive_sync_message(&mut state, msg).unwrap();
                reply(&proto::RepairResponse {
                    message: doc
                        .sync()
                        .generate_sync_message(&mut state)
                        .map(|m| serde_bytes::ByteBuf::from(m.encode())),
                })
            }
            "/v1/escalate" => {
                let e: proto::EscalateRequest = proto::decode(body).unwrap();
                self.log.last_mut().unwrap().1 = e.task.clone();
                if self.refuse_escalations {
                    return error(403, "forbidden", vec![]);
                }
                assert!(
                    self.docs.contains_key(&e.task),
                    "escalation of a task the server does not know"
                );
                if self
                    .escalations
                    .iter()
                    .any(|x| x.task == e.task && x.tier == e.tier)
                {
                    return error(409, "conflict", vec![]);
                }
                self.escalations.push(e);
                reply(&proto::EscalateResponse {
                    server_time_ms: self.now_ms,
                })
            }
            _ => error(404, "not_found", vec![]),
        }
    }

    fn push(&mut self, req: proto::PushRequest) -> (u16, Vec<u8>) {
        let docs: Vec<String> = req.docs.iter().map(|d| d.doc.clone()).collect();
        self.log.last_mut().unwrap().1 = docs.join(",");
        if docs.iter().any(|d| self.refuse_docs.contains(d)) {
            return error(403, "forbidden", vec![]);
        }
        for d in &docs {
            if let Some((grid, _)) = self.docs.get(d)
                && self.revoked.contains(grid)
            {
                return error(403, "purge", vec![grid.clone()]);
            }
        }
        let (mut stored, mut duplicates) = (0, 0);
        let mut grids = HashSet::new();
        for d in req.docs {
            let (_, doc) = self
                .docs
                .entry(d.doc.clone())
                .or_insert_with(|| (String::new(), AutoCommit::new()));
            let mut fresh = Vec::new();
            for c in &d.changes {
                let change = Change::try_from(c.as_slice()).unwrap();
                if self.hashes.insert(change.hash().0) {
                    fresh.push((change, c.to_vec()));
                } else {
                    duplicates += 1;
                }
            }
            doc.apply_changes(fresh.iter().map(|(c, _)| c.clone()))
                .unwrap();
            let (_, grid) = crate::doc::kind_and_grid(doc).unwrap();
            self.docs.get_mut(&d.doc).unwrap().0 = grid.clone();
            for (_, bytes) in fresh {
                let seq = self.seq(&grid) + 1;
                self.feed
                    .entry(grid.clone())
                    .or_default()
                    .push((seq, d.doc.clone(), bytes));
                stored += 1;
            }
            grids.insert(grid);
        }
        reply(&proto::PushResponse {
            server_time_ms: self.now_ms,
            stored,
            duplicates,
            grid_seqs: grids
                .into_iter()
                .map(|g| proto::GridSeq {
                    seq: self.seq(&g),
                    grid: g,
                })
                .collect(),
        })
    }

    fn paths(&self) -> Vec<String> {
        self.log.iter().map(|(p, d)| format!("{p} {d}")).collect()
    }
}

/// A transport to the shared fake server.
#[derive(Clone)]
struct Net(Arc<Mutex<FakeServer>>);

impl Net {
    fn new() -> Net {
        Net(Arc::new(Mutex::new(FakeServer::new())))
    }
    fn server(&self) -> std::sync::MutexGuard<'_, FakeServer> {
        self.0.lock().unwrap()
    }
    fn fault(&self, path: &str, nth: usize, f: Fault) {
        let mut s = self.server();
        let already = s.calls.get(path).copied().unwrap_or(0);
        s.faults.insert((path.to_string(), already + nth), f);
    }
}

impl Transport for Net {
    fn post(
        &mut self,
        path: &str,
        body: Vec<u8>,
        bearer: Option<&str>,
    ) -> Result<(u16, Vec<u8>), TransportError> {
        let mut s = self.server();
        let n = {
            let c = s.calls.entry(path.to_string()).or_insert(0);
            *c += 1;
            *c
        };
        s.log.push((path.to_string(), String::new()));
        match s.faults.remove(&(path.to_string(), n)) {
            Some(Fault::Drop) => Err(TransportError::Other("connection reset".into())),
            Some(Fault::DropReply) => {
                let _ = s.handle(path, &body, bearer);
                Err(TransportError::Timeout("reply lost".into()))
            }
            Some(Fault::Status(status, code)) => Ok(error(status, code, vec![])),
            None => Ok(s.handle(path, &body, bearer)),
        }
    }
}

fn device(net: &Net, user: &str, device: &str) -> Store {
    let actor = Actor::new(user, "王伟", Role::GridMember, device).unwrap();
    let mut s = Store::open_in_memory(actor).unwrap();
    s.set_time_source(|| NOW);
    let srv = net.server();
    s.save_enrollment(
        "http://fake",
        &proto::EnrollResponse {
            device: device.into(),
            user: user.into(),
            user_name: "王伟".into(),
            grants: vec![
                proto::Grant {
                    grid: G1.into(),
                    role: "网格员".into(),
                    buildings: vec![],
                    ..Default::default()
                },
                proto::Grant {
                    grid: G2.into(),
                    role: "网格员".into(),
                    buildings: vec![],
                    ..Default::default()
                },
            ],
            tokens: proto::TokenResponse {
                access_token: srv.access.clone(),
                access_expires_ms: srv.access_expires_ms,
                refresh_token: srv.refresh.clone(),
            },
            server_time_ms: NOW,
            number_blocks: vec![],
        },
    )
    .unwrap();
    s
}

fn household(s: &mut Store, grid: &str, room: &str) -> String {
    s.create_household(NewHousehold {
        address: Address::new(grid, "1号楼", "1单元", room).unwrap(),
        members: vec![NewMember {
            name: "张三".into(),
            gender: Gender::Male,
            birth_year: 1960,
            phone: Some("13800001234".into()),
            id_number: None,
            relation: Relation::Head,
            tags: vec![Tag::Relocated],
        }],
        tags: vec![Tag::PartyHub],
        note: "".into(),
    })
    .unwrap()
}

fn record(s: &mut Store, grid: &str, text: &str) -> String {
    s.create_record(NewRecord {
        grid: grid.into(),
        category: Category::Safety,
        description: text.into(),
        reporter: "李四".into(),
        household: None,
        building: Some("1号楼".into()),
        place: "楼道".into(),
    })
    .unwrap()
}

fn visit(s: &mut Store, hh: &str, purpose: &str) {
    s.add_visit(
        hh,
        NewVisit {
            purpose: purpose.into(),
            note: String::new(),
            follow_up: None,
        },
    )
    .unwrap();
}

fn run(s: &mut Store, net: &Net) -> crate::Result<SyncReport> {
    let mut t = net.clone();
    sync(s, &mut t, None)
}

fn run_with(s: &mut Store, net: &Net, options: SyncOptions) -> crate::Result<SyncReport> {
    let mut t = net.clone();
    let creds = s.credentials().unwrap().unwrap();
    sync_with(s, &mut t, None, &creds, options)
}

fn small_pages() -> SyncOptions {
    SyncOptions {
        pull_limit: 2,
        ..SyncOptions::default()
    }
}

#[test]
fn push_then_ack_then_pull_elsewhere() {
    let net = Net::new();
    let mut a = device(&net, "u-wang", "dev-a");
    let h1 = household(&mut a, G1, "101");
    household(&mut a, G1, "102");
    record(&mut a, G2, "楼道堆物");
    visit(&mut a, &h1, "走访");
    assert_eq!(a.sync_status().unwrap().pending_outbox, 4);

    let r = run(&mut a, &net).unwrap();
    assert_eq!(r.pushed, 4);
    assert_eq!(r.pulled, 0, "our own changes come back as duplicates");
    assert_eq!(r.duplicates, 4);
    assert!(r.rejected.is_empty());
    assert!(r.bytes_sent > 0 && r.bytes_received > 0);
    assert_eq!(a.outbox_len().unwrap(), 0);
    assert_eq!(net.server().total_changes(), 4);
    let st = a.sync_status().unwrap();
    assert_eq!(st.pending_outbox, 0);
    assert!(st.last_success_ms.is_some() && st.last_error.is_none());

    // A second device gets everything (by bootstrap), and a retried push is harmless.
    let mut b = device(&net, "u-li", "dev-b");
    let rb = run(&mut b, &net).unwrap();
    assert_eq!(rb.bootstrapped_docs, 3);
    assert_eq!(b.projection_dump().unwrap(), a.projection_dump().unwrap());
    visit(&mut b, &h1, "回访");
    net.fault("/v1/push", 1, Fault::Drop);
    assert!(run(&mut b, &net).is_err());
    assert_eq!(
        b.outbox_len().unwrap(),
        1,
        "nothing acknowledged, nothing deleted"
    );
    run(&mut b, &net).unwrap();
    run(&mut a, &net).unwrap();
    assert_eq!(a.household(&h1).unwrap().visits.len(), 2);
    assert_eq!(b.projection_dump().unwrap(), a.projection_dump().unwrap());
}

#[test]
fn batches_respect_the_limits_and_group_per_document() {
    let net = Net::new();
    let mut a = device(&net, "u-wang", "dev-a");
    let h = household(&mut a, G1, "101");
    for i in 0..6 {
        visit(&mut a, &h, &format!("走访{i}"));
    }
    record(&mut a, G1, "噪音");
    let r = run_with(
        &mut a,
        &net,
        SyncOptions {
            push_max_changes: 3,
            ..SyncOptions::default()
        },
    )
    .unwrap();
    assert_eq!(r.pushed, 8);
    let pushes: Vec<String> = net
        .server()
        .paths()
        .into_iter()
        .filter(|p| p.starts_with("/v1/push"))
        .collect();
    assert_eq!(pushes.len(), 3, "{pushes:?}");
    assert_eq!(a.outbox_len().unwrap(), 0);
}

#[test]
fn a_refused_push_keeps_the_refused_documents_outbox_and_pushes_the_rest() {
    let net = Net::new();
    let mut a = device(&net, "u-wang", "dev-a");
    let h1 = household(&mut a, G1, "101");
    let h2 = household(&mut a, G1, "102");
    let h3 = household(&mut a, G1, "103");
    visit(&mut a, &h2, "走访");
    let rec = record(&mut a, G1, "漏水");
    net.server().refuse_docs.insert(h2.clone());

    let r = run(&mut a, &net).unwrap();
    assert_eq!(r.pushed, 3, "h1, h3 and the record went through");
    assert_eq!(r.rejected.len(), 1);
    assert_eq!(r.rejected[0].0, h2);
    let left = a.outbox(100).unwrap();
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|e| e.doc == h2));
    let st = a.sync_status().unwrap();
    assert_eq!(st.pending_outbox, 2);
    assert_eq!(st.refused_docs.len(), 1);
    assert!(st.last_success_ms.is_some());
    let server = net.server();
    assert!(
        server.docs.contains_key(&h1)
            && server.docs.contains_key(&h3)
            && server.docs.contains_key(&rec)
    );
    assert!(!server.docs.contains_key(&h2));
    drop(server);

    // Once the server accepts it, the next sync pushes it, and the refusal is forgotten.
    net.server().refuse_docs.clear();
    let r = run(&mut a, &net).unwrap();
    assert_eq!(r.pushed, 2);
    assert_eq!(a.outbox_len().unwrap(), 0);
    assert!(a.sync_status().unwrap().refused_docs.is_empty());
}

#[test]
fn a_server_error_on_push_fails_the_sync_and_keeps_everything() {
    let net = Net::new();
    let mut a = device(&net, "u-wang", "dev-a");
    household(&mut a, G1, "101");
    net.fault("/v1/push", 1, Fault::Status(500, "internal"));
    let e = run(&mut a, &net).unwrap_err();
    assert!(matches!(e, crate::Error::Sync { status: 500, .. }), "{e}");
    assert_eq!(a.outbox_len().unwrap(), 1);
    let st = a.sync_status().unwrap();
    assert_eq!(st.last_success_ms, None);
    assert!(st.last_error.unwrap().contains("500"));
}

#[test]
fn an_interrupted_pull_resumes_at_the_page_it_stopped_at() {
    let net = Net::new();
    let mut a = device(&net, "u-wang", "dev-a");
    for room in ["101", "102", "103", "104", "105"] {
        household(&mut a, G1, room);
    }
    run(&mut a, &net).unwrap();

    // B holds a document of the grid already, so it pulls the feed instead of bootstrapping.
    let mut b = device(&net, "u-li", "dev-b");
    household(&mut b, G1, "201");
    net.fault("/v1/pull", 2, Fault::Drop);
    let e = run_with(&mut b, &net, small_pages()).unwrap_err();
    assert!(matches!(e, crate::Error::Network(_)), "{e}");
    assert_eq!(
        b.sync_cursor(G1).unwrap(),
        2,
        "page 1 applied with its cursor"
    );
    assert_eq!(b.sync_status().unwrap().last_success_ms, None);

    net.server().log.clear();
    let r = run_with(&mut b, &net, small_pages()).unwrap();
    let pulls: Vec<String> = net
        .server()
        .paths()
        .into_iter()
        .filter(|p| p.contains(G1))
        .collect();
    assert_eq!(
        pulls.first().map(String::as_str),
        Some(format!("/v1/pull {G1} since 2").as_str()),
        "{pulls:?}"
    );
    assert_eq!(r.pulled, 3, "the 3 households after page 1, none twice");
    assert_eq!(r.duplicates, 1, "only B's own household, echoed");
    assert_eq!(b.sync_cursor(G1).unwrap(), 6);
    run(&mut a, &net).unwrap();
    assert_eq!(a.projection_dump().unwrap(), b.projection_dump().unwrap());
}

fn populated(net: &Net) -> Store {
    let mut a = device(net, "u-wang", "dev-a");
    for i in 0..12 {
        let h = household(&mut a, G1, &format!("{}", 101 + i));
        if i % 3 == 0 {
            visit(&mut a, &h, "走访");
        }
        if i % 4 == 0 {
            record(&mut a, G1, &format!("民情{i}"));
        }
    }
    record(&mut a, G2, "另一网格");
    run(&mut a, &net.clone()).unwrap();
    a
}

#[test]
fn bootstrap_with_shipped_rows_equals_applying_every_change() {
    let net = Net::new();
    let mut a = populated(&net);

    let mut b = device(&net, "u-li", "dev-b");
    let r = run(&mut b, &net).unwrap();
    assert_eq!(r.bootstrapped_docs, 16);
    assert_eq!(r.pulled, 0);
    assert_eq!(b.sync_cursor(G1).unwrap(), net.server().seq(G1));

    // A third store that applied every change the ordinary way.
    let mut c = Store::open_in_memory(Actor::new("u-c", "赵敏", Role::Secretary, "dev-c").unwrap())
        .unwrap();
    let all: Vec<RemoteChange> = net
        .server()
        .feed
        .values()
        .flatten()
        .map(|(_, d, ch)| RemoteChange {
            doc: d.clone(),
            change: ch.clone(),
        })
        .collect();
    c.apply_remote(&all).unwrap();
    assert_eq!(b.projection_dump().unwrap(), c.projection_dump().unwrap());
    assert_eq!(b.projection_dump().unwrap(), a.projection_dump().unwrap());
    // And the stored projection is what the documents give.
    let before = b.projection_dump().unwrap();
    b.rebuild_projection().unwrap();
    assert_eq!(b.projection_dump().unwrap(), before);

    // Documents load and edit normally afterwards; later changes come by pull.
    let h = b.households_page_ids();
    visit(&mut b, &h, "复访");
    run(&mut b, &net).unwrap();
    let r = run(&mut a, &net).unwrap();
    assert_eq!(r.pulled, 1);
    assert_eq!(r.bootstrapped_docs, 0);
    assert_eq!(a.projection_dump().unwrap(), b.projection_dump().unwrap());
}

impl Store {
    /// Any household id (tests).
    fn households_page_ids(&self) -> String {
        self.conn()
            .query_row("SELECT id FROM households ORDER BY id LIMIT 1", [], |r| {
                r.get(0)
            })
            .unwrap()
    }
}

#[test]
fn bootstrap_of_another_projection_version_computes_the_rows() {
    let net = Net::new();
    let a = populated(&net);
    net.server().projection_version = PROJECTION_VERSION + 1;
    let mut b = device(&net, "u-li", "dev-b");
    assert_eq!(run(&mut b, &net).unwrap().bootstrapped_docs, 16);
    assert_eq!(b.projection_dump().unwrap(), a.projection_dump().unwrap());
}

#[test]
fn a_bundle_with_rows_of_another_grid_or_kind_is_refused_whole() {
    let net = Net::new();
    let _a = populated(&net);
    let mut bundle = {
        let mut s = net.server();
        let (_, body) = s.handle(
            "/v1/bootstrap",
            &proto::encode(&proto::BootstrapRequest {
                grid: G1.into(),
                after: None,
                limit: 0,
                buildings: Vec::new(),
            }),
            Some("acc-1"),
        );
        proto::decode::<proto::Bundle>(&body).unwrap()
    };
    let mut b = device(&net, "u-li", "dev-b");
    let mut wrong_grid = bundle.clone();
    if let crate::store::Rows::Household { household, .. } = &mut wrong_grid.docs[3].rows {
        household.grid = G2.into();
    }
    assert!(b.import_bundle(&wrong_grid).is_err());
    let mut wrong_kind = bundle.clone();
    wrong_kind.docs[0].kind = "spaceship".into();
    assert!(b.import_bundle(&wrong_kind).is_err());
    let mut other_grid = bundle.clone();
    other_grid.grid = G2.into();
    assert!(b.import_bundle(&other_grid).is_err());
    // Slow path: the document itself says another grid.
    other_grid.projection_version = PROJECTION_VERSION + 1;
    assert!(b.import_bundle(&other_grid).is_err());
    assert_eq!(b.projection_dump().unwrap(), "");
    assert_eq!(b.sync_cursor(G1).unwrap(), 0);

    bundle.docs.truncate(2);
    assert_eq!(b.import_bundle(&bundle).unwrap(), 2);
}

#[test]
fn a_bundle_merges_into_documents_held_here() {
    let net = Net::new();
    let mut a = populated(&net);
    let h = a.households_page_ids();
    // A edits offline; the server's bundle does not have it.
    visit(&mut a, &h, "离线走访");
    let bundle = {
        let mut s = net.server();
        let (_, body) = s.handle(
            "/v1/bootstrap",
            &proto::encode(&proto::BootstrapRequest {
                grid: G1.into(),
                after: None,
                limit: 0,
                buildings: Vec::new(),
            }),
            Some("acc-1"),
        );
        proto::decode::<proto::Bundle>(&body).unwrap()
    };
    let visits_before = a.household(&h).unwrap().visits.len();
    a.import_bundle(&bundle).unwrap();
    assert_eq!(
        a.household(&h).unwrap().visits.len(),
        visits_before,
        "the offline visit survives"
    );
    let before = a.projection_dump().unwrap();
    a.rebuild_projection().unwrap();
    assert_eq!(a.projection_dump().unwrap(), before);
}

#[test]
fn a_revoked_grid_is_purged_entirely() {
    let net = Net::new();
    let _a = populated(&net);
    let mut b = device(&net, "u-li", "dev-b");
    run(&mut b, &net).unwrap();
    let h = b.households_page_ids();
    visit(&mut b, &h, "未同步的走访");
    let g2_dump_before: String = b
        .projection_dump()
        .unwrap()
        .lines()
        .filter(|l| l.contains(G2))
        .collect();
    assert!(!g2_dump_before.is_empty());

    net.server().revoked.insert(G1.into());
    net.server().refuse_docs.insert(h.clone());
    let r = run(&mut b, &net).unwrap();
    assert_eq!(r.purged_grids, vec![G1.to_string()]);
    assert_eq!(b.grid_doc_count(G1).unwrap(), 0);
    assert_eq!(b.sync_cursor(G1).unwrap(), 0);
    assert_eq!(b.outbox_len().unwrap(), 0);
    assert!(!b.sync_grids().unwrap().contains(&G1.to_string()));
    assert!(b.sync_status().unwrap().refused_docs.is_empty());
    assert!(b.household(&h).is_err(), "not even in the cache");
    let dump = b.projection_dump().unwrap();
    assert!(!dump.contains(G1));
    assert_eq!(
        dump.lines().filter(|l| l.contains(G2)).collect::<String>(),
        g2_dump_before,
        "other grids untouched"
    );
    let counts: i64 = b
        .conn()
        .query_row(
            "SELECT (SELECT count(*) FROM doc_chunks) + (SELECT count(*) FROM pending_changes) + (SELECT count(*) FROM residents WHERE grid = ?1)",
            [G1],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(counts, 0);
}

#[test]
fn a_revoked_device_is_purged_and_the_sync_fails() {
    let net = Net::new();
    let _a = populated(&net);
    let mut b = device(&net, "u-li", "dev-b");
    run(&mut b, &net).unwrap();
    net.server().device_revoked = true;
    let e = run(&mut b, &net).unwrap_err();
    assert!(matches!(e, crate::Error::Revoked(_)), "{e}");
    assert_eq!(b.projection_dump().unwrap(), "");
    assert!(b.sync_status().unwrap().last_error.is_some());
}

#[test]
fn status_never_says_success_after_a_failure() {
    let net = Net::new();
    let mut a = device(&net, "u-wang", "dev-a");
    household(&mut a, G1, "101");
    net.fault("/v1/pull", 1, Fault::Drop);
    assert!(run(&mut a, &net).is_err());
    let st = a.sync_status().unwrap();
    assert_eq!(
        st.last_success_ms, None,
        "pushed, but the sync did not finish"
    );
    assert!(st.last_error.is_some() && st.last_error_ms.is_some());
    assert_eq!(st.pending_outbox, 0, "the push itself was acknowledged");

    run(&mut a, &net).unwrap();
    let ok = a.sync_status().unwrap();
    assert!(ok.last_success_ms.is_some() && ok.last_error.is_none());

    net.fault("/v1/pull", 1, Fault::Status(503, "unavailable"));
    assert!(run(&mut a, &net).is_err());
    let st = a.sync_status().unwrap();
    assert_eq!(
        st.last_success_ms, ok.last_success_ms,
        "the old success stays, no new one"
    );
    assert!(st.last_error.unwrap().contains("503"));

    // Driving the engine by hand: finish() before the end is refused and records nothing.
    let creds = a.credentials().unwrap().unwrap();
    let mut engine = SyncEngine::new(&creds, SyncOptions::default());
    let _ = engine.next_request(&mut a).unwrap().unwrap();
    assert!(engine.finish(&mut a).is_err());
    assert_eq!(a.sync_status().unwrap().last_success_ms, ok.last_success_ms);
}

#[test]
fn the_clock_is_anchored_by_the_servers_time() {
    let net = Net::new();
    let mut a = device(&net, "u-wang", "dev-a");
    a.set_time_source(|| 0); // a phone back in 1970 after a battery swap
    assert!(a.now_ms() < NOW);
    net.server().access_expires_ms = i64::MAX; // no refresh needed whatever the clock says
    run(&mut a, &net).unwrap();
    assert!(
        (a.now_ms() - NOW).abs() < 1_000,
        "now {} vs server {NOW}",
        a.now_ms()
    );
}

#[test]
fn an_expiring_token_is_refreshed_first_and_a_401_refreshes_once() {
    let net = Net::new();
    let mut a = device(&net, "u-wang", "dev-a");
    household(&mut a, G1, "101");
    let later = NOW + 14 * 60_000 + 30_000; // the token expires in 30 s
    net.server().now_ms = later;
    a.set_time_source(move || later);
    let r = run(&mut a, &net).unwrap();
    assert_eq!(r.pushed, 1);
    assert_eq!(net.server().log[0].0, "/v1/refresh");
    let creds = a.credentials().unwrap().unwrap();
    assert_eq!(
        (creds.access_token.as_str(), creds.refresh_token.as_str()),
        ("acc-2", "ref-2")
    );

    // The server revoked the access token early: one refresh, the request again, done.
    net.server().access = "acc-revoked".into();
    household(&mut a, G1, "102");
    net.server().log.clear();
    let r = run(&mut a, &net).unwrap();
    assert_eq!(r.pushed, 1);
    let paths: Vec<String> = net.server().log.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(
        &paths[..4],
        &["/v1/session", "/v1/refresh", "/v1/session", "/v1/push"]
    );

    // A refresh token that no longer works: Unauthorized, recorded.
    net.server().refresh = "other".into();
    net.server().access = "other".into();
    let e = run(&mut a, &net).unwrap_err();
    assert!(matches!(e, crate::Error::Unauthorized(_)), "{e}");
}

/// Issue 9 item 1: a proactive refresh refused while the access token still works does
/// not end the sync; a refusal after a 401 does.
#[test]
fn a_refused_refresh_while_the_access_token_works_does_not_end_the_sync() {
    let net = Net::new();
    let mut a = device(&net, "u-wang", "dev-a");
    household(&mut a, G1, "101");
    let later = NOW + 14 * 60_000 + 30_000; // the token expires in 30 s: refresh first
    net.server().now_ms = later;
    a.set_time_source(move || later);
    net.server().refresh = "spent-elsewhere".into();
    let r = run(&mut a, &net).unwrap();
    assert_eq!(r.pushed, 1);
    assert!(
        r.refresh_refused
            .as_deref()
            .is_some_and(|why| why.starts_with("unauthorized")),
        "{r:?}"
    );
    assert_eq!(net.server().log[0].0, "/v1/refresh");
    assert_eq!(a.sync_status().unwrap().last_error, None);
    // The saved tokens are untouched.
    assert_eq!(a.credentials().unwrap().unwrap().refresh_token, "ref-1");

    // Once the access token is refused too, the sync ends with Unauthorized, no loop.
    net.server().access = "acc-revoked".into();
    household(&mut a, G1, "102");
    net.server().log.clear();
    let e = run(&mut a, &net).unwrap_err();
    assert!(matches!(e, crate::Error::Unauthorized(_)), "{e}");
    let paths: Vec<String> = net.server().log.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(paths, ["/v1/refresh", "/v1/session"]);
}

#[test]
fn escalations_go_first_and_hold_back_the_tasks_later_changes() {
    // The engine's ordering, with an escalation request recorded by hand on a document
    // (the store's `escalate_task` writes the same row with the event).
    let net = Net::new();
    let mut a = device(&net, "u-wang", "dev-a");
    let t = household(&mut a, G1, "101"); // stands in for a task
    visit(&mut a, &t, "the change that adds the escalate event");
    let event_entry = a.outbox(10).unwrap()[1].id;
    a.conn_mut()
        .execute(
            "INSERT INTO pending_escalations (task, grid, tier, unit, outbox_id) VALUES (?1, ?2, 'community', NULL, ?3)",
            rusqlite::params![t, G1, event_entry],
        )
        .unwrap();
    household(&mut a, G1, "102");

    net.server().refuse_escalations = true;
    let r = run(&mut a, &net).unwrap();
    assert_eq!(r.pushed, 2, "creation of both, not the held change");
    assert!(
        r.rejected
            .iter()
            .any(|(d, why)| *d == t && why.contains("escalation"))
    );
    assert_eq!(
        a.outbox(10)
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        vec![event_entry]
    );
    assert_eq!(
        a.pending_escalations().unwrap().len(),
        1,
        "kept for the next sync"
    );

    net.server().refuse_escalations = false;
    net.server().log.clear();
    let r = run(&mut a, &net).unwrap();
    assert_eq!(r.pushed, 1);
    let paths: Vec<String> = net
        .server()
        .paths()
        .into_iter()
        .filter(|p| p.starts_with("/v1/push") || p.starts_with("/v1/escalate"))
        .collect();
    assert_eq!(
        paths,
        vec![format!("/v1/escalate {t}"), format!("/v1/push {t}")]
    );
    assert!(a.pending_escalations().unwrap().is_empty());
    assert_eq!(a.outbox_len().unwrap(), 0);
    assert_eq!(net.server().escalations.len(), 1);
}

#[test]
fn progress_is_reported() {
    struct Rec(Mutex<Vec<(SyncPhase, u64, Option<u64>)>>);
    impl SyncProgress for Rec {
        fn on_progress(&self, phase: SyncPhase, done: u64, total: Option<u64>) {
            self.0.lock().unwrap().push((phase, done, total));
        }
    }
    let net = Net::new();
    let _a = populated(&net);
    let mut b = device(&net, "u-li", "dev-b");
    let rec = Rec(Mutex::new(Vec::new()));
    let mut t = net.clone();
    sync(&mut b, &mut t, Some(&rec)).unwrap();
    let seen = rec.0.lock().unwrap();
    assert!(seen.iter().any(|(p, _, _)| *p == SyncPhase::Bootstrap));
    assert_eq!(seen.last().map(|s| s.0), Some(SyncPhase::Done));
}

#[test]
fn a_paged_bootstrap_knows_its_total_from_the_first_page() {
    struct Rec(Mutex<Vec<(SyncPhase, u64, Option<u64>)>>);
    impl SyncProgress for Rec {
        fn on_progress(&self, phase: SyncPhase, done: u64, total: Option<u64>) {
            self.0.lock().unwrap().push((phase, done, total));
        }
    }
    let net = Net::new();
    let _a = populated(&net);
    let mut b = device(&net, "u-li", "dev-b");
    let rec = Rec(Mutex::new(Vec::new()));
    let mut t = net.clone();
    let creds = b.credentials().unwrap().unwrap();
    let opts = SyncOptions {
        bootstrap_page: 4,
        ..SyncOptions::default()
    };
    sync_with(&mut b, &mut t, Some(&rec), &creds, opts).unwrap();
    let seen = rec.0.lock().unwrap();
    let pages: Vec<(u64, Option<u64>)> = seen
        .iter()
        .filter(|(p, done, _)| *p == SyncPhase::Bootstrap && *done > 0)
        .map(|(_, d, t)| (*d, *t))
        .collect();
    let all = b.grid_doc_count(G1).unwrap() as u64;
    assert!(pages.len() >= 3, "{pages:?}");
    // Every page after the first knows the total: the bar is never indeterminate.
    assert!(
        pages.iter().all(|(d, t)| *t == Some(all) && *d <= all),
        "{pages:?} of {all}"
    );
}

#[test]
fn enroll_saves_credentials_for_the_right_device_only() {
    struct Enroller;
    impl Transport for Enroller {
        fn post(
            &mut self,
            path: &str,
            body: Vec<u8>,
            bearer: Option<&str>,
        ) -> Result<(u16, Vec<u8>), TransportError> {
            assert_eq!((path, bearer), ("/v1/enroll", None));
            let r: proto::EnrollRequest = proto::decode(&body).unwrap();
            if r.code != "483-921" {
                return Ok(error(403, "forbidden", vec![]));
            }
            Ok(reply(&proto::EnrollResponse {
                device: "dev-9".into(),
                user: "u-wang".into(),
                user_name: "王伟".into(),
                grants: vec![proto::Grant {
                    grid: G1.into(),
                    role: "网格员".into(),
                    buildings: vec![],
                    ..Default::default()
                }],
                tokens: proto::TokenResponse {
                    access_token: "a".into(),
                    access_expires_ms: NOW,
                    refresh_token: "r".into(),
                },
                server_time_ms: NOW,
                number_blocks: vec![],
            }))
        }
    }
    assert!(matches!(
        enroll(&mut Enroller, "000", "我的手机"),
        Err(crate::Error::Sync { status: 403, .. })
    ));
    assert!(enroll(&mut Enroller, " ", "我的手机").is_err());
    let e = enroll(&mut Enroller, "483-921", "我的手机").unwrap();
    // A store holding another user's data is not enrolled for this one (a handover goes
    // through `enroll_store`, which erases first).
    let mut wrong =
        Store::open_in_memory(Actor::new("u-li", "李强", Role::GridMember, "dev-1").unwrap())
            .unwrap();
    wrong
        .create_household(NewHousehold {
            address: Address::new(G1, "1号楼", "1单元", "101").unwrap(),
            members: vec![],
            tags: vec![],
            note: String::new(),
        })
        .unwrap();
    assert!(wrong.save_enrollment("https://s", &e).is_err());
    assert_eq!(wrong.actor().user, "u-li", "nothing changed");
    let mut s =
        Store::open_in_memory(Actor::new("u-wang", "王伟", Role::GridMember, &e.device).unwrap())
            .unwrap();
    s.save_enrollment("https://s/", &e).unwrap();
    let c = s.credentials().unwrap().unwrap();
    assert_eq!(c.server_url, "https://s");
    assert!(
        !format!("{c:?}").contains("\"a\""),
        "tokens are not printed"
    );
    assert_eq!(s.sync_grids().unwrap(), vec![G1.to_string()]);

    let mut bare =
        Store::open_in_memory(Actor::new("u-x", "王伟", Role::GridMember, "dev-x").unwrap())
            .unwrap();
    assert!(matches!(
        sync(&mut bare, &mut Enroller, None),
        Err(crate::Error::NotEnrolled)
    ));
    assert!(bare.sync_status().unwrap().last_error.is_some());
}

fn task(s: &mut Store, grid: &str) -> String {
    s.create_task(NewTask {
        grid: grid.into(),
        level: Level::Doorstep,
        category: Category::Livelihood,
        title: "楼道灯坏了".into(),
        description: String::new(),
        household: None,
        source_record: None,
        assignee: None,
        deadline: None,
    })
    .unwrap()
}

#[test]
fn a_task_created_and_escalated_offline_reaches_the_server_in_order() {
    let net = Net::new();
    let mut a = device(&net, "u-wang", "dev-a");
    let t = task(&mut a, G1);
    let detail = a.escalate_task(&t, Tier::Community, None).unwrap();
    assert_eq!(detail.view.tier, Tier::Community);
    let pending = a.pending_escalations().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].task.as_str(), pending[0].tier.as_str()),
        (t.as_str(), "community")
    );
    let outbox = a.outbox(10).unwrap();
    assert_eq!(
        pending[0].outbox_id,
        outbox.last().unwrap().id,
        "held from the event's change"
    );

    let r = run(&mut a, &net).unwrap();
    assert_eq!(r.pushed as usize, outbox.len());
    let order: Vec<String> = net
        .server()
        .paths()
        .into_iter()
        .filter(|p| p.starts_with("/v1/push") || p.starts_with("/v1/escalate"))
        .collect();
    assert_eq!(
        order,
        vec![
            format!("/v1/push {t}"),
            format!("/v1/escalate {t}"),
            format!("/v1/push {t}")
        ]
    );
    assert_eq!(net.server().escalations[0].tier, "community");
    assert!(a.pending_escalations().unwrap().is_empty());
    assert_eq!(a.outbox_len().unwrap(), 0);

    // Another device sees the escalated task.
    let mut b = device(&net, "u-li", "dev-b");
    run(&mut b, &net).unwrap();
    assert_eq!(b.task(&t).unwrap().view.tier, Tier::Community);
    assert_eq!(a.projection_dump().unwrap(), b.projection_dump().unwrap());
}

#[test]
fn an_escalation_the_workflow_refuses_writes_nothing() {
    let net = Net::new();
    let mut a = device(&net, "u-wang", "dev-a");
    let t = task(&mut a, G1);
    let before = a.outbox_len().unwrap();
    // 网格员 may only escalate to the community.
    assert!(a.escalate_task(&t, Tier::LinkedUnit, Some("物业")).is_err());
    assert!(a.escalate_task(&t, Tier::Grid, None).is_err());
    let h = household(&mut a, G1, "101");
    assert!(
        a.escalate_task(&h, Tier::Community, None).is_err(),
        "not a task"
    );
    assert_eq!(a.outbox_len().unwrap(), before + 1);
    assert!(a.pending_escalations().unwrap().is_empty());
    assert_eq!(a.task(&t).unwrap().view.tier, Tier::Grid);
}

#[test]
fn an_escalation_whose_reply_was_lost_is_not_stuck() {
    let net = Net::new();
    let mut a = device(&net, "u-wang", "dev-a");
    let t = task(&mut a, G1);
    a.escalate_task(&t, Tier::Community, None).unwrap();
    net.fault("/v1/escalate", 1, Fault::DropReply);
    assert!(run(&mut a, &net).is_err());
    assert_eq!(net.server().escalations.len(), 1, "the server recorded it");
    assert_eq!(a.pending_escalations().unwrap().len(), 1);
    assert_eq!(a.outbox_len().unwrap(), 1, "the event is still held");

    // The retry gets 409 (already at that tier): the event is pushed and accepted.
    let r = run(&mut a, &net).unwrap();
    assert!(r.rejected.is_empty(), "{:?}", r.rejected);
    assert_eq!(r.pushed, 1);
    assert_eq!(a.outbox_len().unwrap(), 0);
    assert!(a.pending_escalations().unwrap().is_empty());
    assert_eq!(a.sync_status().unwrap().refused_docs, vec![]);
}

/// The push a store's outbox makes (not acknowledged: its own sync pushes it again).
fn outbox_push(s: &Store) -> proto::PushRequest {
    let mut docs: Vec<proto::DocChanges> = Vec::new();
    for e in s.outbox(100_000).unwrap() {
        match docs.iter_mut().find(|d| d.doc == e.doc) {
            Some(d) => d.changes.push(serde_bytes::ByteBuf::from(e.change)),
            None => docs.push(proto::DocChanges {
                doc: e.doc,
                changes: vec![serde_bytes::ByteBuf::from(e.change)],
            }),
        }
    }
    proto::PushRequest { docs }
}

#[test]
fn a_large_grid_bootstraps_in_pages_from_the_first_pages_cursor() {
    let net = Net::new();
    let mut a = device(&net, "u-wang", "dev-a");
    let ids: Vec<String> = (0..7)
        .map(|i| record(&mut a, G1, &format!("民情{i}")))
        .collect();
    run(&mut a, &net).unwrap();
    let first_cursor = net.server().seq(G1);
    // Another device pushes while the bootstrap runs: a new record and an edit.
    let late = record(&mut a, G1, "晚到的民情");
    a.set_record_description(&ids[0], "已处理").unwrap();
    net.server().between_pages.push(outbox_push(&a));

    let mut b = device(&net, "u-li", "dev-b");
    let opts = SyncOptions {
        bootstrap_page: 3,
        ..SyncOptions::default()
    };
    let r = run_with(&mut b, &net, opts.clone()).unwrap();
    let log = net.server().paths();
    let pages: Vec<&String> = log
        .iter()
        .filter(|p| p.starts_with("/v1/bootstrap") && p.contains(G1))
        .collect();
    assert_eq!(pages.len(), 3, "{log:?}");
    assert!(pages[0].ends_with("after -"));
    // 7 documents, plus the late one when its id falls after the first page.
    assert!((7..=8).contains(&r.bootstrapped_docs), "{r:?}");
    // The cursor stored is the first page's: the pull starts there and brings the edit
    // (and the late record, whether or not a page held it).
    assert!(
        log.contains(&format!("/v1/pull {G1} since {first_cursor}")),
        "{log:?}"
    );
    assert_eq!(b.sync_cursor(G1).unwrap(), net.server().seq(G1));
    assert_eq!(b.record(&late).unwrap().description.as_str(), "晚到的民情");
    assert_eq!(b.record(&ids[0]).unwrap().description.as_str(), "已处理");
    run(&mut a, &net).unwrap();
    assert_eq!(b.projection_dump().unwrap(), a.projection_dump().unwrap());
}

#[test]
fn an_interrupted_paged_bootstrap_stores_no_cursor_and_resumes_by_pulling() {
    let net = Net::new();
    let a = populated(&net);
    let mut b = device(&net, "u-li", "dev-b");
    let opts = SyncOptions {
        bootstrap_page: 5,
        ..SyncOptions::default()
    };
    net.fault("/v1/bootstrap", 2, Fault::Drop);
    assert!(run_with(&mut b, &net, opts.clone()).is_err());
    assert_eq!(b.grid_doc_count(G1).unwrap(), 5, "the first page is kept");
    assert_eq!(
        b.sync_cursor(G1).unwrap(),
        0,
        "no cursor before the last page"
    );
    let r = run_with(&mut b, &net, opts).unwrap();
    assert_eq!(r.bootstrapped_docs, 1, "only G2 bootstraps now: {r:?}");
    assert_eq!(b.sync_cursor(G1).unwrap(), net.server().seq(G1));
    assert_eq!(b.projection_dump().unwrap(), a.projection_dump().unwrap());
}

#[test]
fn repair_brings_the_changes_a_local_copy_misses() {
    let net = Net::new();
    let mut a = device(&net, "u-wang", "dev-a");
    let h = household(&mut a, G1, "101");
    run(&mut a, &net).unwrap();
    let mut b = device(&net, "u-li", "dev-b");
    run(&mut b, &net).unwrap();
    // A adds two visits the server gets; B has not pulled them and visits offline itself.
    visit(&mut a, &h, "走访一");
    visit(&mut a, &h, "走访二");
    run(&mut a, &net).unwrap();
    visit(&mut b, &h, "离线走访");
    let outbox = b.outbox_len().unwrap();

    let mut t = net.clone();
    assert_eq!(repair_document(&mut b, &mut t, &h).unwrap(), 2);
    let visits: Vec<String> = b
        .household(&h)
        .unwrap()
        .visits
        .iter()
        .map(|v| v.purpose.to_string())
        .collect();
    for p in ["走访一", "走访二", "离线走访"] {
        assert!(visits.iter().any(|v| v == p), "{visits:?}");
    }
    assert_eq!(
        b.outbox_len().unwrap(),
        outbox,
        "the server's changes are not pushed back"
    );
    let before = b.projection_dump().unwrap();
    b.rebuild_projection().unwrap();
    assert_eq!(
        b.projection_dump().unwrap(),
        before,
        "rows follow the document"
    );
    // Nothing more to get: one round, nothing applied. The local visit goes by push.
    let rounds = net.server().calls.get("/v1/repair").copied().unwrap_or(0);
    assert_eq!(repair_document(&mut b, &mut t, &h).unwrap(), 0);
    assert_eq!(net.server().calls["/v1/repair"], rounds + 1);
    run(&mut b, &net).unwrap();
    run(&mut a, &net).unwrap();
    assert_eq!(a.projection_dump().unwrap(), b.projection_dump().unwrap());
    assert_eq!(repair_document(&mut a, &mut t, &h).unwrap(), 0);

    // A document this device does not hold yet comes whole; an unknown one is an error.
    let mut c = device(&net, "u-zhao", "dev-c");
    assert!(repair_document(&mut c, &mut t, &h).unwrap() >= 4);
    assert_eq!(c.household(&h).unwrap().visits.len(), 3);
    assert!(repair_document(&mut c, &mut t, "no-such-doc").is_err());
}

// ----- grants follow the directory (issue 9 item 3) -----

fn household_in(s: &mut Store, grid: &str, building: &str, room: &str) -> String {
    s.create_household(NewHousehold {
        address: Address::new(grid, building, "1单元", room).unwrap(),
        members: vec![NewMember {
            name: "李秀英".into(),
            gender: Gender::Female,
            birth_year: 1958,
            phone: None,
            id_number: None,
            relation: Relation::Head,
            tags: vec![],
        }],
        tags: vec![],
        note: "".into(),
    })
    .unwrap()
}

fn member_grant(grid: &str) -> proto::Grant {
    proto::Grant {
        grid: grid.into(),
        role: "网格员".into(),
        buildings: vec![],
        ..Default::default()
    }
}

/// Syncs the seeding phone while the fake's `/v1/session` answers nothing (it answers as
/// the phone under test only).
fn seed_sync(seed: &mut Store, net: &Net) {
    let grants = net.server().grants.take();
    run(seed, net).unwrap();
    net.server().grants = grants;
}

fn lead_grant(buildings: &[&str]) -> Vec<proto::Grant> {
    vec![proto::Grant {
        grid: G1.into(),
        role: "楼门长".into(),
        buildings: buildings.iter().map(|b| b.to_string()).collect(),
        ..Default::default()
    }]
}

#[test]
fn a_grid_granted_after_enrollment_is_bootstrapped_at_the_next_sync() {
    let net = Net::new();
    let mut seed = device(&net, "u-seed", "dev-s");
    household(&mut seed, G2, "201");
    seed_sync(&mut seed, &net);

    let mut a = device(&net, "u-wang", "dev-a");
    a.save_grants(&[member_grant(G1)]).unwrap();
    net.server().grants = Some(vec![member_grant(G1)]);
    run(&mut a, &net).unwrap();
    assert_eq!(a.grid_doc_count(G2).unwrap(), 0);

    // `grant u-wang --grid G2` at the station: the next sync learns it and bootstraps G2.
    net.server().grants = Some(vec![member_grant(G1), member_grant(G2)]);
    let r = run(&mut a, &net).unwrap();
    assert_eq!(r.bootstrapped_docs, 1);
    assert_eq!(a.grid_doc_count(G2).unwrap(), 1);
    assert_eq!(a.grants().unwrap().len(), 2);
}

#[test]
fn a_building_added_to_a_building_leader_comes_by_a_scope_bootstrap() {
    let net = Net::new();
    let mut seed = device(&net, "u-seed", "dev-s");
    household_in(&mut seed, G1, "1号楼", "101");
    let h2 = household_in(&mut seed, G1, "2号楼", "201");
    seed_sync(&mut seed, &net);

    net.server().grants = Some(lead_grant(&["1号楼"]));
    let mut a = device(&net, "u-wang", "dev-a");
    a.save_grants(&lead_grant(&["1号楼"])).unwrap();
    assert_eq!(run(&mut a, &net).unwrap().bootstrapped_docs, 1);
    let cursor = a.sync_cursor(G1).unwrap();
    assert!(cursor > 0);

    // 2号楼 is added to the grant; its household was edited since (before our cursor).
    visit(&mut seed, &h2, "走访");
    seed_sync(&mut seed, &net);
    net.server().grants = Some(lead_grant(&["1号楼", "2号楼"]));
    // The first try is cut off at the bootstrap: the scope bootstrap stays queued.
    net.fault("/v1/bootstrap", 1, Fault::Drop);
    assert!(run(&mut a, &net).is_err());
    assert_eq!(
        a.scope_bootstrap(G1).unwrap(),
        Some(vec!["2号楼".to_string()])
    );

    net.server().log.clear();
    let r = run(&mut a, &net).unwrap();
    assert_eq!(r.bootstrapped_docs, 1, "{r:?}");
    let boots: Vec<String> = net
        .server()
        .paths()
        .into_iter()
        .filter(|p| p.starts_with("/v1/bootstrap"))
        .collect();
    assert_eq!(boots, [format!("/v1/bootstrap {G1} after - in 2号楼")]);
    assert_eq!(a.households_in(G1, "2号楼", None).unwrap().len(), 1);
    assert_eq!(a.scope_bootstrap(G1).unwrap(), None);
    // The household's later edits arrive by pull, not waiting for anything.
    visit(&mut seed, &h2, "再访");
    seed_sync(&mut seed, &net);
    run(&mut a, &net).unwrap();
    seed_sync(&mut seed, &net);
    assert_eq!(
        a.projection_dump().unwrap(),
        seed.projection_dump().unwrap()
    );
}

#[test]
fn a_narrowed_grant_removes_what_it_no_longer_covers_and_sets_the_work_aside() {
    let net = Net::new();
    let mut seed = device(&net, "u-seed", "dev-s");
    let h1 = household_in(&mut seed, G1, "1号楼", "101");
    household_in(&mut seed, G1, "2号楼", "201");
    seed_sync(&mut seed, &net);
    net.server().grants = Some(lead_grant(&["1号楼", "2号楼"]));
    let mut a = device(&net, "u-wang", "dev-a");
    a.save_grants(&lead_grant(&["1号楼", "2号楼"])).unwrap();
    run(&mut a, &net).unwrap();
    assert_eq!(a.grid_doc_count(G1).unwrap(), 2);

    // A visit recorded offline in 1号楼, then the station takes 1号楼 off the grant.
    visit(&mut a, &h1, "离线走访");
    assert_eq!(a.outbox_len().unwrap(), 1);
    net.server().grants = Some(lead_grant(&["2号楼"]));
    let r = run(&mut a, &net).unwrap();
    assert_eq!((r.dropped_docs, r.set_aside, r.pushed), (1, 1, 0), "{r:?}");
    assert!(a.households_in(G1, "1号楼", None).unwrap().is_empty());
    assert_eq!(a.households_in(G1, "2号楼", None).unwrap().len(), 1);
    assert_eq!(a.outbox_len().unwrap(), 0);
    // The work is kept, listed, and goes only when the user says so.
    let aside = a.set_aside().unwrap();
    assert_eq!(aside.len(), 1);
    assert_eq!((aside[0].doc.as_str(), aside[0].changes), (h1.as_str(), 1));
    assert_eq!(a.set_aside_changes(&h1).unwrap().len(), 1);
    assert_eq!(a.sync_status().unwrap().set_aside_changes, 1);
    assert_eq!(a.discard_set_aside(&h1).unwrap(), 1);
    assert_eq!(a.sync_status().unwrap().set_aside_changes, 0);
}

#[test]
fn a_withdrawn_grid_sets_its_work_aside_and_only_a_revoked_device_wipes() {
    let net = Net::new();
    let mut a = device(&net, "u-wang", "dev-a");
    let h = household(&mut a, G2, "301");
    let h1 = household(&mut a, G1, "101");
    run(&mut a, &net).unwrap();
    visit(&mut a, &h, "离线走访");
    net.server().revoked.insert(G2.into());
    let r = run(&mut a, &net).unwrap();
    assert_eq!(r.purged_grids, [G2.to_string()]);
    assert_eq!(a.grid_doc_count(G2).unwrap(), 0);
    assert_eq!(a.set_aside().unwrap().len(), 1);

    // The device itself is revoked: everything goes, nothing is set aside.
    visit(&mut a, &h1, "离线走访");
    net.server().device_revoked = true;
    assert!(run(&mut a, &net).is_err());
    assert_eq!(a.grid_doc_count(G1).unwrap(), 0);
    assert_eq!(a.outbox_len().unwrap(), 0);
    assert!(a.set_aside().unwrap().iter().all(|x| x.doc != h1));
}

// ----- the one sync loop: cancellation (issue 9 item 7) -----

/// Cancels `flag` once `left` requests went through.
struct CancelAfter {
    net: Net,
    left: usize,
    flag: CancelFlag,
}

impl Transport for CancelAfter {
    fn post(
        &mut self,
        path: &str,
        body: Vec<u8>,
        bearer: Option<&str>,
    ) -> Result<(u16, Vec<u8>), TransportError> {
        let r = self.net.post(path, body, bearer);
        self.left = self.left.saturating_sub(1);
        if self.left == 0 {
            self.flag.cancel();
        }
        r
    }
}

#[test]
fn a_cancelled_sync_stops_at_the_next_request_and_leaves_a_consistent_store() {
    let net = Net::new();
    let mut a = device(&net, "u-wang", "dev-a");
    for i in 0..6 {
        household(&mut a, G1, &format!("{}", 101 + i));
    }
    let total = a.outbox_len().unwrap();
    let cancel = CancelFlag::new();
    // The session and the first push batch go through; then the app cancels.
    let mut t = CancelAfter {
        net: net.clone(),
        left: 2,
        flag: cancel.clone(),
    };
    let creds = a.credentials().unwrap().unwrap();
    let opts = SyncOptions {
        push_max_changes: 2,
        ..SyncOptions::default()
    };
    let e = drive(
        &mut |step| step(&mut a),
        &mut t,
        None,
        &creds,
        opts,
        Some(&cancel),
    )
    .unwrap_err();
    assert!(
        matches!(&e, crate::Error::Sync { code, .. } if code == "cancelled"),
        "{e:?}"
    );
    assert_eq!(net.server().log.len(), 2, "{:?}", net.server().paths());
    // The acknowledged batch left the outbox; the rest waits; the status says it failed.
    assert_eq!(a.outbox_len().unwrap(), total - 2);
    assert_eq!(net.server().total_changes() as i64, 2);
    let st = a.sync_status().unwrap();
    assert!(st.last_error.is_some_and(|m| m.contains("cancelled")));
    assert_eq!(st.last_success_ms, None);
    // The last sync, unfinished, still says what it pushed before it was cancelled.
    let last = st.last_sync.expect("the cancelled sync is recorded");
    assert!(!last.finished);
    assert_eq!(last.pushed, 2, "{last:?}");
    // The next sync finishes the work.
    let r = run(&mut a, &net).unwrap();
    assert_eq!(r.pushed as i64, total - 2);
    assert_eq!(a.outbox_len().unwrap(), 0);
}

// ----- errors an app acts on, honest status, refusals, waiting changes, clocks -----

fn body(code: &str, message: &str, purge: &[&str]) -> ErrorBody {
    ErrorBody {
        code: code.into(),
        message: message.into(),
        purge_grids: purge.iter().map(|g| g.to_string()).collect(),
    }
}

#[test]
fn refusals_are_classified_by_what_an_app_does_about_them() {
    use super::engine::{Asked, classify_refusal};
    use crate::Error;
    let c = Asked::Credentials;
    let e = classify_refusal(426, Some(&body("unsupported_protocol", "v9", &[])), c);
    assert!(matches!(e, Error::UpgradeRequired(_)), "{e}");
    let e = classify_refusal(401, Some(&body("unauthorized", "expired", &["g1"])), c);
    assert!(
        matches!(e, Error::Revoked(_)),
        "401 with grids to purge: {e}"
    );
    let e = classify_refusal(
        401,
        Some(&body(
            "reenroll",
            "this device's tokens were revoked after a refresh token was reused",
            &[],
        )),
        c,
    );
    assert!(
        matches!(e, Error::Unauthorized(_)),
        "re-enroll, keep the data: {e}"
    );
    let e = classify_refusal(401, Some(&body("device_revoked", "gone", &[])), c);
    assert!(matches!(e, Error::Revoked(_)), "{e}");
    let e = classify_refusal(
        401,
        Some(&body("unauthorized", "refresh token expired", &[])),
        c,
    );
    assert!(
        matches!(e, Error::Unauthorized(_)) && e.needs_enrollment(),
        "{e}"
    );
    let e = classify_refusal(401, None, c);
    assert!(matches!(e, Error::Unauthorized(_)), "{e}");
    let e = classify_refusal(
        401,
        Some(&body("unauthorized", "used code", &[])),
        Asked::Enroll,
    );
    assert!(
        matches!(&e, Error::Invalid { field, .. } if field == "code"),
        "{e}"
    );
    let e = classify_refusal(403, Some(&body("forbidden", "other building", &[])), c);
    assert!(
        matches!(&e, Error::Sync { status: 403, code, .. } if code == "forbidden"),
        "{e}"
    );
    assert!(Error::NotEnrolled.needs_enrollment());
    assert!(!Error::Revoked(String::new()).needs_enrollment());

    // Through the engine: a 426 on the first request ends the sync with UpgradeRequired.
    let net = Net::new();
    let mut a = device(&net, "u-wang", "dev-a");
    household(&mut a, G1, "101");
    net.fault("/v1/push", 1, Fault::Status(426, "unsupported_protocol"));
    let e = run(&mut a, &net).unwrap_err();
    assert!(matches!(e, crate::Error::UpgradeRequired(_)), "{e}");
    assert_eq!(a.outbox_len().unwrap(), 1, "nothing lost");
}

#[test]
fn a_failed_sync_still_says_what_it_pushed_and_purged() {
    let net = Net::new();
    let mut seed = device(&net, "u-seed", "dev-s");
    household(&mut seed, G1, "101");
    household(&mut seed, G2, "201");
    run(&mut seed, &net).unwrap();
    let mut a = device(&net, "u-wang", "dev-a");
    run(&mut a, &net).unwrap();
    assert_eq!(a.grid_doc_count(G1).unwrap(), 1);
    let first = a.sync_status().unwrap().last_sync.unwrap();
    assert!(first.finished && first.error.is_none() && first.bootstrapped_docs == 2);

    // The push goes through, G1 (pulled first) is revoked and purged, then G2's pull breaks.
    household(&mut a, G2, "202");
    net.server().revoked.insert(G1.into());
    net.fault("/v1/pull", 2, Fault::Drop);
    let e = run(&mut a, &net).unwrap_err();
    assert!(matches!(e, crate::Error::Network(_)), "{e}");
    let st = a.sync_status().unwrap();
    let last = st.last_sync.unwrap();
    assert!(!last.finished);
    assert!(last.error.unwrap().contains("connection reset"));
    assert_eq!(last.pushed, 1);
    assert_eq!(last.purged_grids, vec![G1.to_string()]);
    assert_eq!(a.grid_doc_count(G1).unwrap(), 0, "the purge happened");
    assert!(st.unfinished_since_ms.is_none(), "it ended, badly");
    assert_eq!(
        st.last_success_ms,
        Some(first.ended_ms),
        "the old success stays"
    );
}

#[test]
fn a_sync_that_never_ended_shows_as_unfinished() {
    let net = Net::new();
    let mut a = device(&net, "u-wang", "dev-a");
    household(&mut a, G1, "101");
    assert_eq!(a.sync_status().unwrap().unfinished_since_ms, None);
    // The app is killed after the push was answered: no finish, no failure recorded.
    {
        let creds = a.credentials().unwrap().unwrap();
        let mut engine = SyncEngine::new(&creds, SyncOptions::default());
        let mut t = net.clone();
        // The session, then the push.
        loop {
            let req = engine.next_request(&mut a).unwrap().unwrap();
            let path = req.path;
            let (status, reply) = t.post(req.path, req.body, req.bearer.as_deref()).unwrap();
            engine.handle_response(&mut a, status, &reply).unwrap();
            if path == "/v1/push" {
                break;
            }
        }
    }
    let st = a.sync_status().unwrap();
    assert_eq!(st.unfinished_since_ms, Some(NOW));
    assert_eq!(st.last_success_ms, None);
    assert_eq!(st.pending_outbox, 0, "the acknowledged push is kept");
    run(&mut a, &net).unwrap();
    assert_eq!(a.sync_status().unwrap().unfinished_since_ms, None);
}

#[test]
fn a_refused_document_is_held_after_a_few_syncs_and_can_be_discarded() {
    let net = Net::new();
    let mut a = device(&net, "u-wang", "dev-a");
    let known = household(&mut a, G1, "101");
    run(&mut a, &net).unwrap();
    // A document the server never had, and a visit to one it has: both refused for good.
    let fresh = household(&mut a, G1, "102");
    visit(&mut a, &known, "越界走访");
    net.server()
        .refuse_docs
        .extend([fresh.clone(), known.clone()]);
    for n in 1..=crate::store::REFUSED_RETRY_SYNCS {
        let r = run(&mut a, &net).unwrap();
        assert_eq!(r.rejected.len(), 2, "sync {n} sends them again");
        assert!(r.held_docs.is_empty());
    }
    let refused = a.refused_changes().unwrap();
    assert_eq!(refused.len(), 2);
    assert!(
        refused.iter().all(|r| r.held && r.changes == 1),
        "{refused:?}"
    );
    assert!(refused.iter().all(|r| r.grid.as_deref() == Some(G1)));

    // Held: no longer sent, still listed.
    net.server().log.clear();
    let r = run(&mut a, &net).unwrap();
    let mut held = r.held_docs.clone();
    held.sort();
    let mut want = vec![fresh.clone(), known.clone()];
    want.sort();
    assert_eq!(held, want);
    assert!(
        !net.server()
            .paths()
            .iter()
            .any(|p| p.starts_with("/v1/push")),
        "{:?}",
        net.server().paths()
    );
    assert_eq!(a.sync_status().unwrap().refused_docs.len(), 2);
    assert_eq!(a.outbox_len().unwrap(), 2);

    // Discarded: the changes leave the outbox and the copies go; the next sync fetches the
    // server's copy of the known household (without the refused visit), nothing of the
    // other.
    assert!(a.discard_refused("hh-none").is_err());
    assert_eq!(a.discard_refused(&fresh).unwrap(), 1);
    assert_eq!(a.discard_refused(&known).unwrap(), 1);
    assert_eq!(a.outbox_len().unwrap(), 0);
    assert!(a.household(&known).is_err());
    let r = run(&mut a, &net).unwrap();
    assert_eq!(r.repaired_docs, 2);
    assert!(r.repaired_changes >= 1);
    assert!(a.household(&fresh).is_err());
    assert!(a.household(&known).unwrap().visits.is_empty());
    assert!(a.refused_changes().unwrap().is_empty());
    assert!(a.sync_status().unwrap().refused_docs.is_empty());
    let before = a.projection_dump().unwrap();
    a.rebuild_projection().unwrap();
    assert_eq!(a.projection_dump().unwrap(), before);

    // A held document can be retried (the station fixed the grant).
    let other = household(&mut a, G1, "103");
    net.server().refuse_docs.insert(other.clone());
    for _ in 0..crate::store::REFUSED_RETRY_SYNCS {
        run(&mut a, &net).unwrap();
    }
    assert!(a.refused_changes().unwrap()[0].held);
    net.server().refuse_docs.clear();
    a.retry_refused(&other).unwrap();
    let r = run(&mut a, &net).unwrap();
    assert_eq!(r.pushed, 1);
    assert!(a.refused_changes().unwrap().is_empty());
}

#[test]
fn changes_waiting_for_their_dependencies_are_counted_then_repaired() {
    let net = Net::new();
    let mut a = device(&net, "u-wang", "dev-a");
    let h = household(&mut a, G1, "101");
    visit(&mut a, &h, "走访一");
    visit(&mut a, &h, "走访二");
    run(&mut a, &net).unwrap();
    let feed = net.server().feed[G1].clone();
    assert_eq!(feed.len(), 3);
    let seq = feed[2].0;
    // B got the household and the second visit, not the first (a feed it could not see).
    let mut b = device(&net, "u-zhao", "dev-b");
    let partial: Vec<RemoteChange> = [&feed[0], &feed[2]]
        .iter()
        .map(|(_, doc, change)| RemoteChange {
            doc: doc.clone(),
            change: change.clone(),
        })
        .collect();
    b.apply_pulled(G1, seq, &partial).unwrap();
    assert_eq!(b.waiting_changes().unwrap(), (1, 1));
    for n in 1..=crate::store::REPAIR_AFTER_SYNCS {
        let r = run(&mut b, &net).unwrap();
        assert_eq!((r.waiting_changes, r.waiting_docs), (1, 1), "sync {n}");
        assert_eq!(r.repaired_docs, 0, "sync {n} does not repair yet");
        let st = b.sync_status().unwrap();
        assert_eq!((st.waiting_changes, st.waiting_docs), (1, 1));
    }
    let r = run(&mut b, &net).unwrap();
    assert_eq!(r.repaired_docs, 1);
    assert_eq!(r.waiting_changes, 0);
    assert_eq!(b.sync_status().unwrap().waiting_changes, 0);
    assert_eq!(b.household(&h).unwrap().visits.len(), 2);
    assert_eq!(b.projection_dump().unwrap(), a.projection_dump().unwrap());
    // Nothing more to repair.
    let r = run(&mut b, &net).unwrap();
    assert_eq!(r.repaired_docs, 0);
}

#[test]
fn a_phone_enrolled_at_1970_stamps_after_the_servers_time() {
    let net = Net::new();
    // The phone's clock reads 1970 from the start, before enrollment.
    let actor = Actor::new("u-wang", "王伟", Role::GridMember, "dev-70").unwrap();
    let mut s = Store::open_in_memory(actor).unwrap();
    s.set_time_source(|| 5_000);
    assert!(!s.clock_anchored());
    let srv = net.server();
    let enrolled = proto::EnrollResponse {
        device: "dev-70".into(),
        user: "u-wang".into(),
        user_name: "王伟".into(),
        grants: vec![proto::Grant {
            grid: G1.into(),
            role: "网格员".into(),
            buildings: vec![],
            ..Default::default()
        }],
        tokens: proto::TokenResponse {
            access_token: srv.access.clone(),
            access_expires_ms: i64::MAX,
            refresh_token: srv.refresh.clone(),
        },
        server_time_ms: NOW,
        number_blocks: vec![],
    };
    drop(srv);
    s.save_enrollment("http://fake", &enrolled).unwrap();
    assert!(s.clock_anchored());
    let h = household(&mut s, G1, "101");
    let created = s.history(&h).unwrap()[0].at_ms;
    assert!(created >= NOW, "stamped {created}, the server said {NOW}");
    assert!(s.household(&h).unwrap().created_at >= NOW);
}

#[test]
fn a_clock_that_jumps_back_after_a_sync_never_stamps_before_it() {
    let net = Net::new();
    let mut a = device(&net, "u-wang", "dev-a");
    net.server().access_expires_ms = i64::MAX;
    let later = NOW + 3_600_000;
    net.server().now_ms = later;
    run(&mut a, &net).unwrap();
    // A battery swap: the phone reads 1970 now (its stale offset is 0).
    a.set_time_source(|| 0);
    let h = household(&mut a, G1, "101");
    let stamped = a.history(&h).unwrap()[0].at_ms;
    assert!(
        stamped >= later,
        "stamped {stamped} before the anchor {later}"
    );
    assert!(a.clock().last.wall_ms() >= later as u64);
}

#[test]
fn bootstrapped_documents_feed_the_clock() {
    let net = Net::new();
    // A phone whose clock runs an hour ahead (within the drift allowed) writes a record.
    let ahead = NOW + 3_600_000;
    let mut a = device(&net, "u-wang", "dev-a");
    a.set_time_source(move || ahead);
    record(&mut a, G1, "楼道灯坏");
    run(&mut a, &net).unwrap();
    // Another phone bootstraps it: its clock must not issue a stamp before the record's.
    let mut b = device(&net, "u-zhao", "dev-b");
    let r = run(&mut b, &net).unwrap();
    assert_eq!(r.bootstrapped_docs, 1);
    assert!(
        b.clock().last.wall_ms() >= ahead as u64,
        "last {} after bootstrapping a record of {ahead}",
        b.clock().last.wall_ms()
    );
}

// ----- enrollment identity, handover and sign-out (issue 9, item 2) -----

/// A station that answers `/v1/enroll` like the real one: codes per user, a device of that
/// user may be succeeded, another user's (or an unknown) device is a 409 and leaves the
/// code unspent.
struct Station {
    codes: HashMap<String, String>,
    devices: HashMap<String, String>,
    seen: Vec<proto::EnrollRequest>,
    next: u32,
}

impl Station {
    fn new(codes: &[(&str, &str)], devices: &[(&str, &str)]) -> Station {
        Station {
            codes: codes
                .iter()
                .map(|(c, u)| (c.to_string(), u.to_string()))
                .collect(),
            devices: devices
                .iter()
                .map(|(d, u)| (d.to_string(), u.to_string()))
                .collect(),
            seen: Vec::new(),
            next: 1,
        }
    }
}

impl Transport for Station {
    fn post(
        &mut self,
        path: &str,
        body: Vec<u8>,
        _bearer: Option<&str>,
    ) -> Result<(u16, Vec<u8>), TransportError> {
        assert_eq!(path, "/v1/enroll");
        let r: proto::EnrollRequest = proto::decode(&body).unwrap();
        self.seen.push(r.clone());
        let Some(user) = self.codes.get(&r.code).cloned() else {
            return Ok(error(401, "unauthorized", vec![]));
        };
        if let Some(p) = &r.previous_device {
            match self.devices.get(p) {
                None => return Ok(error(409, "unknown_device", vec![])),
                Some(owner) if owner != &user => return Ok(error(409, "other_user", vec![])),
                Some(_) => {}
            }
        }
        self.codes.remove(&r.code);
        let device = format!("dev-new-{}", self.next);
        self.next += 1;
        self.devices.insert(device.clone(), user.clone());
        Ok(reply(&proto::EnrollResponse {
            device,
            user: user.clone(),
            user_name: if user == "u-wang" { "王伟" } else { "赵敏" }.into(),
            grants: vec![proto::Grant {
                grid: G1.into(),
                role: "网格员".into(),
                buildings: vec![],
                ..Default::default()
            }],
            tokens: proto::TokenResponse {
                access_token: "a".into(),
                access_expires_ms: NOW + 900_000,
                refresh_token: "r".into(),
            },
            server_time_ms: NOW,
            number_blocks: vec![],
        }))
    }
}

fn enroll_with(s: &mut Store, station: &mut Station, code: &str) -> Result<Enrolled> {
    enroll_store(
        &mut |step| step(s),
        station,
        "http://station",
        code,
        "王伟的手机",
    )
}

fn a_household(s: &mut Store, room: &str) -> String {
    s.create_household(NewHousehold {
        address: Address::new(G1, "1号楼", "1单元", room).unwrap(),
        members: vec![],
        tags: vec![],
        note: String::new(),
    })
    .unwrap()
}

/// A store enrolled as `dev-old` of u-wang, with one household written (unsynced).
fn enrolled_store_with_work(station: &mut Station) -> Store {
    let mut s = Store::open_in_memory(
        Actor::new("u-anyone", "某人", Role::GridMember, "placeholder").unwrap(),
    )
    .unwrap();
    s.set_time_source(|| NOW);
    station.codes.insert("first".into(), "u-wang".into());
    let first = enroll_with(&mut s, station, "first").unwrap();
    assert_eq!(first.kind, EnrollKind::Fresh);
    assert_eq!(station.seen.last().unwrap().previous_device, None);
    a_household(&mut s, "101");
    s
}

#[test]
fn enrolling_again_for_the_same_user_keeps_the_store_and_its_outbox() {
    let mut station = Station::new(&[("again", "u-wang")], &[]);
    let mut s = enrolled_store_with_work(&mut station);
    let old = s.actor().device.clone();
    assert_eq!(s.outbox_len().unwrap(), 1);
    let done = enroll_with(&mut s, &mut station, "again").unwrap();
    assert_eq!(
        station.seen.last().unwrap().previous_device.as_deref(),
        Some(old.as_str()),
        "the request names the device the data was written as"
    );
    assert_eq!(
        done.kind,
        EnrollKind::Continued {
            previous: old.clone()
        }
    );
    assert_eq!(s.outbox_len().unwrap(), 1, "the outbox is kept");
    assert_eq!(s.households_in(G1, "1号楼", None).unwrap().len(), 1);
    assert_eq!(s.actor().device, done.answer.device);
    assert_eq!(s.credentials().unwrap().unwrap().device, done.answer.device);
    // New writes sign as the new device; the old entry keeps its actor (the server accepts
    // it from the successor).
    a_household(&mut s, "102");
    let actors: HashSet<Vec<u8>> = s
        .outbox(10)
        .unwrap()
        .iter()
        .map(|e| {
            Change::from_bytes(e.change.clone())
                .unwrap()
                .actor_id()
                .to_bytes()
                .to_vec()
        })
        .collect();
    assert!(actors.contains(old.as_bytes()) && actors.contains(done.answer.device.as_bytes()));
}

#[test]
fn a_code_for_another_user_with_unsynced_work_is_refused_and_changes_nothing() {
    let mut station = Station::new(&[("zhao", "u-zhao")], &[]);
    let mut s = enrolled_store_with_work(&mut station);
    let before = s.credentials().unwrap();
    let actor = s.actor().clone();
    match enroll_with(&mut s, &mut station, "zhao") {
        Err(Error::UnsyncedWork {
            changes,
            documents,
            message,
        }) => {
            assert_eq!((changes, documents), (1, 1));
            assert!(
                message.contains("1 change to 1 document (1 household)"),
                "{message}"
            );
        }
        other => panic!("expected UnsyncedWork, got {other:?}"),
    }
    assert_eq!(s.credentials().unwrap(), before);
    assert_eq!(s.actor(), &actor);
    assert_eq!(s.outbox_len().unwrap(), 1);
    assert!(station.codes.contains_key("zhao"), "the code was not spent");
    assert_eq!(station.seen.len(), 2, "no second request");
}

#[test]
fn a_code_for_another_user_hands_a_synced_phone_over_and_erases_it() {
    let mut station = Station::new(&[("zhao", "u-zhao")], &[]);
    let mut s = enrolled_store_with_work(&mut station);
    let ids: Vec<i64> = s.outbox(10).unwrap().iter().map(|e| e.id).collect();
    s.ack_outbox(&ids).unwrap();
    let done = enroll_with(&mut s, &mut station, "zhao").unwrap();
    assert_eq!(done.kind, EnrollKind::HandedOver { documents: 1 });
    assert_eq!(s.actor().user, "u-zhao");
    assert!(
        s.households_in(G1, "1号楼", None).unwrap().is_empty(),
        "the old user's data is gone"
    );
    assert!(s.sync_grids().unwrap() == vec![G1.to_string()]);
    assert_eq!(s.data_owner().unwrap().unwrap().user, "u-zhao");
    // The second request named no previous device.
    assert_eq!(station.seen.last().unwrap().previous_device, None);
}

#[test]
fn a_store_of_a_device_the_server_does_not_know_is_enrolled_afresh_only_when_synced() {
    let mut station = Station::new(&[("again", "u-wang")], &[]);
    let mut s = enrolled_store_with_work(&mut station);
    // Another station's server: it never issued this store's device.
    let mut other = Station::new(&[("again", "u-wang")], &[]);
    assert!(matches!(
        enroll_with(&mut s, &mut other, "again"),
        Err(Error::UnsyncedWork { .. })
    ));
    let ids: Vec<i64> = s.outbox(10).unwrap().iter().map(|e| e.id).collect();
    s.ack_outbox(&ids).unwrap();
    let done = enroll_with(&mut s, &mut other, "again").unwrap();
    assert!(matches!(done.kind, EnrollKind::HandedOver { .. }));
}

#[test]
fn sign_out_says_what_it_would_delete_and_needs_force_for_unsynced_work() {
    let mut station = Station::new(&[], &[]);
    let mut s = enrolled_store_with_work(&mut station);
    match s.sign_out(false) {
        Err(Error::UnsyncedWork {
            changes, message, ..
        }) => {
            assert_eq!(changes, 1);
            assert!(message.contains("sign out with force"), "{message}");
        }
        other => panic!("expected UnsyncedWork, got {other:?}"),
    }
    assert!(s.credentials().unwrap().is_some(), "nothing changed");
    assert_eq!(s.households_in(G1, "1号楼", None).unwrap().len(), 1);
    let out = s.sign_out(true).unwrap();
    assert_eq!((out.documents, out.unsynced.changes), (1, 1));
    assert!(s.credentials().unwrap().is_none());
    assert!(s.households_in(G1, "1号楼", None).unwrap().is_empty());
    assert_eq!(s.outbox_len().unwrap(), 0);
    assert!(s.grants().unwrap().is_empty());
    assert_eq!(s.data_owner().unwrap(), None);
    // A synced phone signs out without force.
    let mut t = enrolled_store_with_work(&mut station);
    let ids: Vec<i64> = t.outbox(10).unwrap().iter().map(|e| e.id).collect();
    t.ack_outbox(&ids).unwrap();
    let out = t.sign_out(false).unwrap();
    assert_eq!((out.documents, out.unsynced.changes), (1, 0));
}
