//! The bodies of the fuzz targets (`fuzz_targets/*.rs` are one line each), their fixtures
//! and their seed inputs. Every use of the server's and the core's API is here, so that a
//! changed signature is fixed in one file.
//!
//! Input conventions (structure-aware, so that the fuzzer reaches past the checksums and
//! the compression):
//! - a *body* is one mode byte then bytes: mode 0 = the bytes as on the wire (a zstd frame);
//!   any other mode = MessagePack, compressed here into one zstd frame;
//! - a *change* in `ingest_change` is framed here when asked: the fuzzer writes the chunk
//!   type and body, this code adds the magic bytes, the checksum and the length.
//!
//! Oracles beyond "no panic, no abort, no timeout":
//! - [`GuardedAlloc`]: no single allocation above [`MAX_ALLOCATION`] and no more than
//!   [`MAX_LIVE`] bytes live at once (issue 8: every decoder within a memory bound that does
//!   not depend on what the bytes claim). A breach aborts with a message;
//! - a document the ingest would store loads back from its bytes with the same heads;
//! - a sync that did not finish is never recorded as a success.

use std::alloc::{GlobalAlloc, Layout, System};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use automerge::sync::{State, SyncDoc};
use automerge::{AutoCommit, ChangeHash};
use serde::Serialize;
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use xiuhua_core::doc::DocKind;
use xiuhua_core::model::*;
use xiuhua_core::store::{RemoteChange, Store, rows_of};
use xiuhua_core::sync::engine::{SyncEngine, SyncOptions};
use xiuhua_core::sync::proto::{self, *};
use xiuhua_server::access::{Caller, GrantRow};
use xiuhua_server::ingest::{self, StoredDoc};

// ----- the server's panic guard -----

/// Installs, once, a panic hook that is quiet inside the server's panic guard
/// ([`ingest::guarded`], where the server answers a panic 400 with nothing stored) and defers
/// to libFuzzer's hook (which aborts) everywhere else: a panic the server would not catch,
/// or one in the harness's own oracles, is still a crash.
fn quiet_inside_server_guard() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let outer = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !ingest::inside_guard() {
                outer(info)
            }
        }));
    });
}

// ----- memory oracle -----

/// Largest single allocation allowed while handling one input.
pub const MAX_ALLOCATION: usize = 512 << 20;
/// Most bytes live at once.
pub const MAX_LIVE: usize = 1 << 30;

/// The system allocator, refusing (by aborting with a message) what [`MAX_ALLOCATION`] and
/// [`MAX_LIVE`] forbid, so that an unbounded allocation is a finding even where the machine
/// would have satisfied it lazily.
pub struct GuardedAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);

fn breach(msg: &'static str) -> ! {
    // No allocation here: we are inside the allocator.
    let _ = std::io::stderr().write_all(msg.as_bytes());
    std::process::abort()
}

// SAFETY: forwards to `System` unchanged; only counts and refuses.
unsafe impl GlobalAlloc for GuardedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.check(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.check(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            self.check(new_size - layout.size());
            if new_size > MAX_ALLOCATION {
                breach("\n==xiuhua-fuzz== a single allocation above MAX_ALLOCATION (512 MiB)\n");
            }
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

impl GuardedAlloc {
    fn check(&self, size: usize) {
        if size > MAX_ALLOCATION {
            breach("\n==xiuhua-fuzz== a single allocation above MAX_ALLOCATION (512 MiB)\n");
        }
        if LIVE.fetch_add(size, Ordering::Relaxed) + size > MAX_LIVE {
            breach("\n==xiuhua-fuzz== more than MAX_LIVE (1 GiB) allocated at once\n");
        }
    }
}

#[global_allocator]
static ALLOC: GuardedAlloc = GuardedAlloc;

// ----- input helpers -----

/// A body from fuzz input (see the module).
pub fn body(data: &[u8]) -> Cow<'_, [u8]> {
    match data.split_first() {
        None => Cow::Borrowed(&[]),
        Some((0, rest)) => Cow::Borrowed(rest),
        Some((_, rest)) => Cow::Owned(zstd::bulk::compress(rest, 1).unwrap_or_default()),
    }
}

/// Seeds for a body target: the value on the wire (mode 0) and as MessagePack (mode 1).
fn body_seeds<T: Serialize>(prefix: &[u8], v: &T) -> Vec<Vec<u8>> {
    let mut wire = prefix.to_vec();
    wire.push(0);
    wire.extend(proto::encode(v));
    let mut raw = prefix.to_vec();
    raw.push(1);
    raw.extend(rmp_serde::to_vec_named(v).unwrap_or_default());
    vec![wire, raw]
}

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

fn leb128(mut n: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// An Automerge chunk (magic, checksum, type, length, body) around `typ` and `data`.
pub fn frame(typ: u8, data: &[u8]) -> Vec<u8> {
    let mut hashed = vec![typ];
    leb128(data.len() as u64, &mut hashed);
    hashed.extend_from_slice(data);
    let sum = Sha256::digest(&hashed);
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&sum[..4]);
    out.extend(hashed);
    out
}

/// The chunk type and body of a framed chunk, if it is one.
pub fn unframe(chunk: &[u8]) -> Option<(u8, &[u8])> {
    if chunk.len() < 10 || chunk[..4] != MAGIC {
        return None;
    }
    let typ = chunk[8];
    let mut len: u64 = 0;
    let mut shift = 0;
    let mut i = 9;
    loop {
        let b = *chunk.get(i)?;
        len |= u64::from(b & 0x7f) << shift;
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    let body = chunk.get(i..)?;
    (body.len() as u64 == len).then_some((typ, body))
}

// ----- the fixed world the targets work against -----

pub const DEVICE: &str = "fuzz-dev";
pub const OTHER_DEVICE: &str = "other-dev";
pub const USER: &str = "u-fuzz";
pub const GRID: &str = "东城-01";
pub const BUILDING: &str = "3号楼";
const NOW: i64 = 1_772_323_200_000;

pub struct World {
    /// The household made on this device: its id, its creation changes, a later change.
    pub household: String,
    pub creation: Vec<Vec<u8>>,
    pub followup: Vec<u8>,
    /// Every change made on this device (household, record, task), in order.
    pub changes: Vec<RemoteChange>,
    /// The household as the server would store it after its creation changes.
    pub stored: HashMap<String, StoredDoc>,
    /// The whole household (creation and follow-up), saved.
    pub household_bytes: Vec<u8>,
    /// A household made on another device (what a pull brings).
    pub other_changes: Vec<RemoteChange>,
    pub other_household: String,
    pub other_bytes: Vec<u8>,
}

fn actor(device: &str) -> Actor {
    match Actor::new(USER, "模糊测试", Role::GridMember, device) {
        Ok(a) => a,
        Err(e) => panic!("fixture actor: {e}"),
    }
}

fn ok<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("fuzz fixture: {what}: {e}"),
    }
}

fn new_household(room: &str, name: &str) -> NewHousehold {
    NewHousehold {
        address: ok(Address::new(GRID, BUILDING, "2单元", room), "address"),
        members: vec![NewMember {
            name: name.into(),
            gender: Gender::Female,
            birth_year: 1942,
            phone: Some("13912345678".into()),
            id_number: Some("11010519491231002X".into()),
            relation: Relation::Head,
            tags: vec![Tag::LivingAlone],
        }],
        tags: vec![Tag::Relocated],
        note: "独居，上午在家".into(),
    }
}

fn store(device: &str) -> Store {
    let mut s = ok(Store::open_in_memory(actor(device)), "store");
    s.set_time_source(|| NOW);
    s
}

fn doc_of(changes: &[Vec<u8>]) -> AutoCommit {
    let mut doc = AutoCommit::new();
    let parsed: Vec<automerge::Change> = changes
        .iter()
        .map(|c| ok(automerge::Change::try_from(c.as_slice()), "change"))
        .collect();
    ok(doc.apply_changes(parsed), "apply");
    doc
}

pub fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let mut s = store(DEVICE);
        let hh = ok(
            s.create_household(new_household("502", "曾秀英")),
            "household",
        );
        let creation: Vec<Vec<u8>> = ok(s.outbox(1_000), "outbox")
            .into_iter()
            .filter(|e| e.doc == hh)
            .map(|e| e.change)
            .collect();
        let n = creation.len();
        ok(s.set_household_note(&hh, "身体尚好"), "note");
        let record = ok(
            s.create_record(NewRecord {
                grid: GRID.into(),
                category: Category::Environment,
                description: "楼道堆物".into(),
                reporter: "模糊测试".into(),
                household: Some(hh.clone()),
                building: Some(BUILDING.into()),
                place: "3号楼楼道".into(),
            }),
            "record",
        );
        let _ = record;
        ok(
            s.create_task(NewTask {
                grid: GRID.into(),
                level: Level::Doorstep,
                category: Category::Service,
                title: "代办高龄补贴".into(),
                description: String::new(),
                household: Some(hh.clone()),
                source_record: None,
                assignee: Some(USER.into()),
                deadline: None,
            }),
            "task",
        );
        let changes: Vec<RemoteChange> = ok(s.outbox(1_000), "outbox")
            .into_iter()
            .map(|e| RemoteChange {
                doc: e.doc,
                change: e.change,
            })
            .collect();
        let hh_changes: Vec<Vec<u8>> = changes
            .iter()
            .filter(|c| c.doc == hh)
            .map(|c| c.change.clone())
            .collect();
        let followup = hh_changes.get(n).cloned().unwrap_or_default();
        let mut created = doc_of(&creation);
        let stored = HashMap::from([(
            hh.clone(),
            StoredDoc {
                id: hh.clone(),
                grid: GRID.into(),
                kind: DocKind::Household,
                building: Some(BUILDING.into()),
                tier: Tier::Grid,
                unit: None,
                bytes: created.save_nocompress(),
            },
        )]);
        let mut whole = doc_of(&hh_changes);

        let mut o = store(OTHER_DEVICE);
        let other = ok(o.create_household(new_household("601", "张三")), "other");
        let other_changes: Vec<RemoteChange> = ok(o.outbox(1_000), "outbox")
            .into_iter()
            .map(|e| RemoteChange {
                doc: e.doc,
                change: e.change,
            })
            .collect();
        let mut other_doc = doc_of(
            &other_changes
                .iter()
                .map(|c| c.change.clone())
                .collect::<Vec<_>>(),
        );
        World {
            household: hh,
            creation,
            followup,
            changes,
            stored,
            household_bytes: whole.save_nocompress(),
            other_changes,
            other_household: other,
            other_bytes: other_doc.save_nocompress(),
        }
    })
}

fn caller() -> Caller {
    Caller {
        device: DEVICE.into(),
        user: USER.into(),
        user_name: "模糊测试".into(),
        grants: vec![GrantRow {
            user: USER.into(),
            grid: GRID.into(),
            role: Role::GridMember,
            buildings: vec![],
        }],
        held_grids: vec![GRID.into()],
        predecessors: Vec::new(),
    }
}

// ----- the server's side -----

/// What the server does with a push after decoding it, short of storage: parse (actor
/// pinned to the device), apply to the registered documents, authorize. A document it would
/// store must load back from its bytes with its heads.
fn ingest_push(req: PushRequest, seeded: bool) {
    let w = world();
    let empty = HashMap::new();
    let stored = if seeded { &w.stored } else { &empty };
    // As the push handler runs it: the parse inside `AppState::work` (the panic guard),
    // then `apply` (which guards its own Automerge steps) and `authorize` unguarded.
    let Some(Ok(parsed)) = ingest::guarded(|| ingest::parse(&[DEVICE.to_string()], req, 10_000))
    else {
        return;
    };
    let known: HashSet<ChangeHash> = HashSet::new();
    let Ok(applied) = ingest::apply(parsed, stored, &known) else {
        return;
    };
    for d in &applied.docs {
        match AutoCommit::load(&d.bytes) {
            Ok(mut back) => assert_eq!(
                back.get_heads(),
                d.heads,
                "document {}: the bytes to store load with other heads",
                d.id
            ),
            Err(e) => panic!("document {}: the bytes to store do not load: {e}", d.id),
        }
    }
    let households = HashMap::from([(
        w.household.clone(),
        ingest::HouseholdAt {
            grid: GRID.to_string(),
            building: Some(BUILDING.to_string()),
        },
    )]);
    let _ = ingest::authorize(applied, &caller(), &households);
}

/// The server's `/v1/repair` answer ([`xiuhua_server::http::repair_reply`]), run as the
/// server runs it: inside its panic guard. `None` when refused or in sync.
pub fn repair_answer(doc_bytes: &[u8], message: &[u8]) -> Option<Vec<u8>> {
    // As `AppState::work` runs it.
    ingest::guarded(|| xiuhua_server::http::repair_reply(doc_bytes, message))
        .and_then(|r| r.ok())
        .flatten()
}

pub fn req_enroll(data: &[u8]) {
    let _ = proto::decode::<EnrollRequest>(&body(data));
}

pub fn req_refresh(data: &[u8]) {
    let _ = proto::decode::<RefreshRequest>(&body(data));
}

pub fn req_pull(data: &[u8]) {
    let _ = proto::decode::<PullRequest>(&body(data));
}

pub fn req_bootstrap(data: &[u8]) {
    let _ = proto::decode::<BootstrapRequest>(&body(data));
}

pub fn req_escalate(data: &[u8]) {
    let _ = proto::decode::<EscalateRequest>(&body(data));
}

/// `/v1/push`: the body, then the ingest on an empty server.
pub fn req_push(data: &[u8]) {
    if let Ok(req) = proto::decode::<PushRequest>(&body(data)) {
        ingest_push(req, false);
    }
}

/// `/v1/repair`: the body, then the repair answer against the stored household.
pub fn req_repair(data: &[u8]) {
    if let Ok(req) = proto::decode::<RepairRequest>(&body(data)) {
        let _ = repair_answer(&world().household_bytes, &req.message);
    }
}

/// One change through the ingest. Mode byte: bit 0 = frame the rest here (chunk type
/// byte, then the chunk body); bit 1 = the household is already stored (the change goes
/// to it), else the server is empty.
pub fn ingest_change(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let change = if mode & 1 == 1 {
        let Some((&typ, chunk)) = rest.split_first() else {
            return;
        };
        frame(typ, chunk)
    } else {
        rest.to_vec()
    };
    let seeded = mode & 2 == 2;
    let doc = if seeded || mode & 4 == 0 {
        world().household.clone()
    } else {
        "fuzz-new-doc".to_string()
    };
    ingest_push(
        PushRequest {
            docs: vec![DocChanges {
                doc,
                changes: vec![ByteBuf::from(change)],
            }],
        },
        seeded,
    );
}

/// An Automerge sync message through the repair answer. Mode byte: bit 0 = against the
/// household, else against the other device's household.
pub fn repair_message(data: &[u8]) {
    let Some((&mode, msg)) = data.split_first() else {
        return;
    };
    let w = world();
    let doc = if mode & 1 == 1 {
        &w.household_bytes
    } else {
        &w.other_bytes
    };
    let _ = repair_answer(doc, msg);
}

// ----- the client's side -----

/// The selector byte of `reply_decode`, then a body.
pub fn reply_decode(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let b = body(rest);
    match sel % 9 {
        0 => drop(proto::decode::<EnrollResponse>(&b)),
        1 => drop(proto::decode::<TokenResponse>(&b)),
        2 => drop(proto::decode::<PushResponse>(&b)),
        3 => drop(proto::decode::<PullResponse>(&b)),
        4 => drop(proto::decode::<Bundle>(&b)),
        5 => drop(proto::decode::<RepairResponse>(&b)),
        6 => drop(proto::decode::<EscalateResponse>(&b)),
        7 => drop(proto::decode::<EstimateResponse>(&b)),
        _ => drop(proto::decode::<ErrorBody>(&b)),
    }
}

const STATUSES: [u16; 12] = [200, 200, 200, 200, 400, 401, 403, 404, 409, 413, 429, 500];

/// Reads the replies of `engine_reply`: status selector, 2-byte length (LE), body (a mode
/// byte then bytes, see [`body`]).
struct Replies<'a>(&'a [u8]);

impl Iterator for Replies<'_> {
    type Item = (u16, Vec<u8>);
    fn next(&mut self) -> Option<(u16, Vec<u8>)> {
        let (&s, rest) = self.0.split_first()?;
        let (len, rest) = rest.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_le_bytes(*len)).min(rest.len());
        let (b, rest) = rest.split_at(len);
        self.0 = rest;
        Some((
            STATUSES[usize::from(s) % STATUSES.len()],
            body(b).into_owned(),
        ))
    }
}

fn encode_reply(status: u8, b: &[u8]) -> Vec<u8> {
    let mut out = vec![status];
    out.extend_from_slice(&(b.len() as u16).to_le_bytes());
    out.extend_from_slice(b);
    out
}

/// A store enrolled on [`GRID`] for scenario `sc`: 0 push (a household in the outbox),
/// 1 bootstrap (nothing here), 2 pull (a household here, pushed), 3 refresh (expired
/// token), 4 repair (a household here).
fn client(sc: u8) -> Store {
    let mut s = store(DEVICE);
    let expires = if sc == 3 { 0 } else { NOW + 900_000 };
    ok(
        s.save_enrollment(
            "http://127.0.0.1:1",
            &EnrollResponse {
                device: DEVICE.into(),
                user: USER.into(),
                user_name: "模糊测试".into(),
                server_time_ms: NOW,
                grants: vec![Grant {
                    grid: GRID.into(),
                    role: "网格员".into(),
                    buildings: vec![],
                    ..Default::default()
                }],
                tokens: TokenResponse {
                    access_token: "access".into(),
                    access_expires_ms: expires,
                    refresh_token: "refresh".into(),
                },
                number_blocks: vec![],
            },
        ),
        "enroll",
    );
    if sc == 0 || sc == 2 || sc == 4 {
        let w = world();
        ok(s.apply_remote(&w.changes), "apply world");
        if sc == 0 {
            ok(s.set_household_note(&w.household, "又去了一次"), "note");
        }
    }
    s
}

/// The client's handling of replies: the sync engine fed a sequence of replies in one of
/// five situations (scenario byte), or the repair reply applied to a store.
pub fn engine_reply(data: &[u8]) {
    let Some((&sc, rest)) = data.split_first() else {
        return;
    };
    let sc = sc % 5;
    let mut store = client(sc);
    if sc == 4 {
        let mut state = State::new();
        let hh = world().household.clone();
        let _ = store.repair_message(&hh, &mut state);
        for (_, b) in Replies(rest).take(4) {
            let Ok(r) = proto::decode::<RepairResponse>(&b) else {
                return;
            };
            let Some(m) = r.message else { return };
            if store.apply_repair_message(&hh, &mut state, &m).is_err() {
                return;
            }
        }
        return;
    }
    let Ok(Some(creds)) = store.credentials() else {
        return;
    };
    let mut engine = SyncEngine::new(&creds, SyncOptions::default());
    let mut replies = Replies(rest);
    let mut finished = false;
    for _ in 0..16 {
        match engine.next_request(&mut store) {
            Ok(Some(_)) => {}
            Ok(None) => {
                finished = engine.finish(&mut store).is_ok();
                break;
            }
            Err(_) => break,
        }
        let Some((status, b)) = replies.next() else {
            break;
        };
        if engine.handle_response(&mut store, status, &b).is_err() {
            break;
        }
    }
    if !finished && let Ok(st) = store.sync_status() {
        assert!(
            st.last_success_ms.is_none(),
            "a sync that did not finish was recorded as a success"
        );
    }
}

// ----- seeds -----

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let w = world();
    let grid = || GRID.to_string();
    match target {
        "req_enroll" => body_seeds(
            &[],
            &EnrollRequest {
                code: "1044-9428".into(),
                device_name: "王伟的手机".into(),
                previous_device: None,
            },
        ),
        "req_refresh" => body_seeds(
            &[],
            &RefreshRequest {
                refresh_token: "r-2c26b46b68ffc68ff99b453c1d304134".into(),
            },
        ),
        "req_pull" => body_seeds(
            &[],
            &PullRequest {
                grid: grid(),
                since: 42,
                limit: 2_000,
                wait_ms: 25_000,
            },
        ),
        "req_bootstrap" => body_seeds(
            &[],
            &BootstrapRequest {
                grid: grid(),
                after: Some("hh-1".into()),
                limit: 500,
                buildings: vec![BUILDING.into()],
            },
        ),
        "req_escalate" => body_seeds(
            &[],
            &EscalateRequest {
                task: "task-1".into(),
                tier: "unit".into(),
                unit: Some("区民政局".into()),
            },
        ),
        "req_push" => {
            let mut docs: Vec<DocChanges> = Vec::new();
            for c in &w.changes {
                match docs.iter_mut().find(|d| d.doc == c.doc) {
                    Some(d) => d.changes.push(ByteBuf::from(c.change.clone())),
                    None => docs.push(DocChanges {
                        doc: c.doc.clone(),
                        changes: vec![ByteBuf::from(c.change.clone())],
                    }),
                }
            }
            let mut v = body_seeds(&[], &PushRequest { docs: docs.clone() });
            v.extend(body_seeds(
                &[],
                &PushRequest {
                    docs: docs[..1].to_vec(),
                },
            ));
            v
        }
        "req_repair" => client_messages()
            .into_iter()
            .flat_map(|m| {
                body_seeds(
                    &[],
                    &RepairRequest {
                        doc: w.household.clone(),
                        message: ByteBuf::from(m),
                    },
                )
            })
            .collect(),
        "ingest_change" => {
            let mut v = Vec::new();
            for (mode, c) in w
                .creation
                .iter()
                .map(|c| (0u8, c))
                .chain(std::iter::once((2u8, &w.followup)))
            {
                let mut raw = vec![mode];
                raw.extend_from_slice(c);
                v.push(raw);
                if let Some((typ, chunk)) = unframe(c) {
                    // The framing here must give the same bytes as Automerge's.
                    assert_eq!(
                        &frame(typ, chunk),
                        c,
                        "frame() differs from Automerge's chunks"
                    );
                    let mut framed = vec![mode | 1, typ];
                    framed.extend_from_slice(chunk);
                    v.push(framed);
                }
            }
            v
        }
        "repair_message" => client_messages()
            .into_iter()
            .flat_map(|m| {
                let mut a = vec![1];
                a.extend_from_slice(&m);
                let mut b = vec![0];
                b.extend(m);
                [a, b]
            })
            .collect(),
        "reply_decode" => {
            let mut v = Vec::new();
            v.extend(body_seeds(&[0], &enroll_response()));
            v.extend(body_seeds(&[1], &enroll_response().tokens));
            v.extend(body_seeds(&[2], &push_response()));
            v.extend(body_seeds(&[3], &pull_response(false)));
            v.extend(body_seeds(&[4], &bundle()));
            v.extend(body_seeds(&[5], &repair_response()));
            v.extend(body_seeds(
                &[6],
                &EscalateResponse {
                    server_time_ms: NOW,
                },
            ));
            v.extend(body_seeds(
                &[7],
                &EstimateResponse {
                    server_time_ms: NOW,
                    grids: vec![GridEstimate {
                        grid: grid(),
                        docs: 3,
                        bytes: 4_096,
                    }],
                },
            ));
            v.extend(body_seeds(&[8], &error_body()));
            v
        }
        "engine_reply" => {
            let msg = |v: &dyn erased::Encode| {
                let mut b = vec![1];
                b.extend(v.msgpack());
                b
            };
            let empty_pull = PullResponse {
                server_time_ms: NOW,
                grid: grid(),
                changes: vec![],
                next: 9,
                more: false,
                moved_out: vec![],
                moved_in: vec![],
            };
            let mut push = vec![0];
            push.extend(encode_reply(0, &msg(&push_response())));
            push.extend(encode_reply(0, &msg(&empty_pull)));
            let mut refused = vec![0];
            refused.extend(encode_reply(6, &msg(&error_body())));
            let mut boot = vec![1];
            boot.extend(encode_reply(0, &msg(&bundle())));
            boot.extend(encode_reply(0, &msg(&empty_pull)));
            let mut pull = vec![2];
            pull.extend(encode_reply(0, &msg(&pull_response(true))));
            pull.extend(encode_reply(0, &msg(&empty_pull)));
            let mut refresh = vec![3];
            refresh.extend(encode_reply(0, &msg(&enroll_response().tokens)));
            refresh.extend(encode_reply(0, &msg(&empty_pull)));
            let mut repair = vec![4];
            repair.extend(encode_reply(0, &msg(&repair_response())));
            vec![push, refused, boot, pull, refresh, repair]
        }
        _ => Vec::new(),
    }
}

mod erased {
    pub trait Encode {
        fn msgpack(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Encode for T {
        fn msgpack(&self) -> Vec<u8> {
            rmp_serde::to_vec_named(self).unwrap_or_default()
        }
    }
}

/// Sync messages a client would send about the household: knowing nothing, knowing its
/// creation, knowing all of it.
fn client_messages() -> Vec<Vec<u8>> {
    let w = world();
    let mut out = Vec::new();
    let mut docs = vec![AutoCommit::new(), doc_of(&w.creation)];
    if let Ok(d) = AutoCommit::load(&w.household_bytes) {
        docs.push(d);
    }
    for mut d in docs {
        let mut st = State::new();
        if let Some(m) = d.sync().generate_sync_message(&mut st) {
            out.push(m.encode());
        }
    }
    out
}

fn enroll_response() -> EnrollResponse {
    EnrollResponse {
        device: DEVICE.into(),
        user: USER.into(),
        user_name: "模糊测试".into(),
        server_time_ms: NOW,
        grants: vec![Grant {
            grid: GRID.into(),
            role: "楼门长".into(),
            buildings: vec![BUILDING.into()],
            ..Default::default()
        }],
        tokens: TokenResponse {
            access_token: "access-2".into(),
            access_expires_ms: NOW + 900_000,
            refresh_token: "refresh-2".into(),
        },
        number_blocks: vec![],
    }
}

fn push_response() -> PushResponse {
    PushResponse {
        server_time_ms: NOW,
        stored: 1,
        duplicates: 0,
        grid_seqs: vec![GridSeq {
            grid: GRID.into(),
            seq: 9,
        }],
    }
}

fn pull_response(more: bool) -> PullResponse {
    let w = world();
    PullResponse {
        server_time_ms: NOW,
        grid: GRID.into(),
        changes: w
            .other_changes
            .iter()
            .enumerate()
            .map(|(i, c)| PulledChange {
                seq: i as u64 + 1,
                doc: c.doc.clone(),
                change: ByteBuf::from(c.change.clone()),
            })
            .collect(),
        next: w.other_changes.len() as u64,
        more,
        moved_out: vec![],
        moved_in: vec![],
    }
}

fn bundle() -> Bundle {
    let w = world();
    let docs = AutoCommit::load(&w.other_bytes)
        .ok()
        .and_then(|d| rows_of(&w.other_household, &d).ok().flatten())
        .map(|rows| BundleDoc {
            id: w.other_household.clone(),
            kind: "household".into(),
            heads: vec![],
            bytes: ByteBuf::from(w.other_bytes.clone()),
            rows,
        })
        .into_iter()
        .collect::<Vec<_>>();
    Bundle {
        server_time_ms: NOW,
        grid: GRID.into(),
        cursor: 9,
        projection_version: xiuhua_core::store::PROJECTION_VERSION,
        total_docs: Some(docs.len() as u64),
        docs,
        more: false,
    }
}

fn repair_response() -> RepairResponse {
    let w = world();
    RepairResponse {
        message: client_messages()
            .first()
            .and_then(|m| repair_answer(&w.household_bytes, m))
            .map(ByteBuf::from),
    }
}

fn error_body() -> ErrorBody {
    ErrorBody {
        code: "forbidden".into(),
        message: "no grant".into(),
        purge_grids: vec![GRID.into()],
    }
}

/// Run once per fuzz process, before the corpus is read: builds the fixtures and, when
/// `XIUHUA_FUZZ_SEEDS` names a folder, writes the target's seed inputs there.
pub fn init(target: &str) {
    quiet_inside_server_guard();
    let _ = world();
    if let Ok(dir) = std::env::var("XIUHUA_FUZZ_SEEDS") {
        let dir = std::path::Path::new(&dir);
        let _ = std::fs::create_dir_all(dir);
        for (i, s) in seeds(target).into_iter().enumerate() {
            let _ = std::fs::write(dir.join(format!("seed-{i:02}")), s);
        }
    }
}
