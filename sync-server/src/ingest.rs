//! The checks of a push, independent of the storage backend.
//!
//! A backend runs a push in one transaction:
//! 1. [`parse`] (outside any lock): decode every change, pin its actor to the pushing device,
//!    group per document, bound the batch;
//! 2. load the registered state of the touched documents ([`StoredDoc`]) and which change
//!    hashes are already stored, then [`apply`]: dependencies present, a valid Xiuhua
//!    document of a known kind, grid and kind unchanged, the model's validation, no
//!    escalate event above the recorded tier;
//! 3. load the buildings of the households that records and tasks refer to
//!    ([`Applied::households_needed`]), then [`authorize`]: grants by grid and building, of
//!    the document and of the household it names; every [`Claim`] of the push (change notes,
//!    new task events, new visits, a new document's creator) names the caller, the caller's
//!    device and the role the caller holds on the grid, and no stamp lies more than
//!    [`MAX_FUTURE_MS`] ahead of the server's clock;
//! 4. write the [`Plan`]: the new changes with the next per-grid sequence numbers and each
//!    document's new bytes, heads and projection rows; or nothing if any step refused.
//!
//! What a change may be: a plain change chunk (type 1; compressed chunks, which would be
//! inflated without a bound, are refused before Automerge sees them) of at most
//! [`Caps::change_bytes`] and [`Caps::change_ops`] operations, in Automerge's canonical
//! encoding (its re-encoding gives the same bytes, so that the saved document loads back
//! with the same heads), keeping its document under [`Caps::doc_ops`] operations and
//! [`Caps::doc_bytes`] saved bytes. The caps are the operator's (`Limits::ingest`, from
//! the configuration); by default [`MAX_CHANGE_BYTES`], [`MAX_CHANGE_OPS`],
//! [`MAX_DOC_OPS`] and [`MAX_DOC_BYTES`]. Every Automerge call on client bytes runs under
//! `catch_unwind`: a panic is a refusal of that push, never a 500.
//!
//! Refusals name fields, never their values: a resident's ID or phone number never appears
//! in an error or a log.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};

use automerge::{ActorId, AutoCommit, Change, ChangeHash, ReadDoc, ScalarValue, Value};
use xiuhua_core::doc::{ChangeNote, DocKind, actor_id, kind_and_grid};
use xiuhua_core::hlc::Hlc;
use xiuhua_core::model::{Household, Record, Task, TaskEvent, Tier, Visit};
use xiuhua_core::numbers::DocNumbers;
use xiuhua_core::store::Rows;

use crate::projection::{self, DocRows};
use xiuhua_core::sync::proto::PushRequest;
use xiuhua_core::validate;

use crate::access::Caller;
use crate::error::{Refusal, StoreError};

/// Longest document id accepted.
pub const MAX_DOC_ID: usize = xiuhua_core::model::limits::ID;
/// Largest change accepted by default, in bytes ([`Caps::change_bytes`]).
pub const MAX_CHANGE_BYTES: usize = 1 << 20;
/// Most operations in one change by default ([`Caps::change_ops`]).
pub const MAX_CHANGE_OPS: usize = 100_000;
/// Highest operation counter a change may reach by default ([`Caps::doc_ops`]).
pub const MAX_DOC_OPS: u64 = 500_000;
/// Largest document accepted by default, as saved ([`Caps::doc_bytes`]).
pub const MAX_DOC_BYTES: usize = 4 << 20;

/// The size caps of what a push may store, set by the operator (`Limits::ingest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Largest change, in bytes.
    pub change_bytes: usize,
    /// Most operations in one change.
    pub change_ops: usize,
    /// Highest operation counter a change may reach. A device's changes form one causal
    /// chain, so this bounds every document's history (a Text of 2 million operations is
    /// refused at the default).
    pub doc_ops: u64,
    /// Largest document, as saved (`save_nocompress`), in bytes.
    pub doc_bytes: usize,
}

impl Caps {
    /// The defaults: 1 MiB and 100,000 operations per change, 500,000 operations and 4 MiB
    /// per document.
    pub const DEFAULT: Caps = Caps {
        change_bytes: MAX_CHANGE_BYTES,
        change_ops: MAX_CHANGE_OPS,
        doc_ops: MAX_DOC_OPS,
        doc_bytes: MAX_DOC_BYTES,
    };

    /// Checks that the caps can be used: each positive, and a change no larger than its
    /// document may be. Names the setting, for the configuration's error.
    pub fn validate(&self) -> Result<(), String> {
        if self.change_bytes == 0
            || self.change_ops == 0
            || self.doc_ops == 0
            || self.doc_bytes == 0
        {
            return Err("the change and document caps must be positive".into());
        }
        if self.change_bytes > self.doc_bytes {
            return Err(
                "max_change_bytes must not exceed max_doc_bytes (a change is part of its document)"
                    .into(),
            );
        }
        if self.doc_bytes as u64 > crate::storage::PAGE_MAX_BYTES {
            return Err(format!(
                "max_doc_bytes may be at most {} (a document must fit in a page a phone accepts)",
                crate::storage::PAGE_MAX_BYTES
            ));
        }
        if self.change_ops as u64 > self.doc_ops {
            return Err(
                "max_change_ops must not exceed max_doc_ops (a change is part of its document)"
                    .into(),
            );
        }
        Ok(())
    }
}

impl Default for Caps {
    fn default() -> Self {
        Caps::DEFAULT
    }
}
/// How far ahead of the server's clock a change note, event or visit may be stamped: the
/// fold's "later clock wins" would otherwise trust a stamp from next year. A phone's clock
/// is anchored to the server's at every sync, so a day leaves room for any honest drift.
pub const MAX_FUTURE_MS: i64 = 24 * 3600 * 1000;

/// Automerge's chunk header: magic bytes, then a 4-byte checksum, then the chunk type.
const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
/// The chunk type of a plain (uncompressed) change.
const CHUNK_CHANGE: u8 = 1;

/// Refuses bytes that are not one plain change chunk of at most `max_bytes`, from its
/// header alone: the chunk type must be 1 (a compressed change, type 2, would be inflated
/// without a bound before any check) and the declared length must be exactly what follows
/// the header. Returns where the chunk's body starts.
pub fn check_chunk(bytes: &[u8], max_bytes: usize) -> Result<usize, String> {
    if bytes.len() > max_bytes {
        return Err(format!(
            "is {} bytes; at most {max_bytes} per change",
            bytes.len()
        ));
    }
    if bytes.len() < 10 || bytes[..4] != MAGIC {
        return Err("is not an Automerge change: no chunk header".into());
    }
    match bytes[8] {
        CHUNK_CHANGE => {}
        2 => {
            return Err(
                "is a compressed change chunk; only plain (uncompressed) change chunks are accepted"
                    .into(),
            );
        }
        _ => return Err("is not an Automerge change chunk (wrong chunk type)".into()),
    }
    // The data length, LEB128, after the 4 magic, 4 checksum and 1 type bytes.
    let mut header = crate::chunk::Reader::new(bytes, 9);
    let len = header
        .uleb()
        .ok_or("is not an Automerge change: truncated header or bad length")?;
    if u64::try_from(header.left()).ok() != Some(len) {
        return Err("is not an Automerge change: its length does not match its header".into());
    }
    Ok(header.position())
}

thread_local! {
    /// How many [`guarded`] calls this thread is inside.
    static GUARD_DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Runs work on client bytes (Automerge, decoders); a panic becomes `None`, which the
/// caller answers as a refusal (400) with nothing stored. The server's only panic guard:
/// `AppState::work` and the ingest's Automerge steps both go through it.
pub fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    GUARD_DEPTH.with(|d| d.set(d.get() + 1));
    let r = catch_unwind(AssertUnwindSafe(f));
    GUARD_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    r.ok()
}

/// Whether this thread is inside [`guarded`], where a panic is a refusal. For panic hooks
/// (the fuzz harness's defers to libFuzzer's, which aborts, only outside a guard).
pub fn inside_guard() -> bool {
    GUARD_DEPTH.with(|d| d.get() > 0)
}

/// Decodes one change and checks it is canonical: re-encoded, it gives the same bytes (the
/// same hash). A non-canonical change (an explicit run of nulls for an all-null column, say)
/// is accepted by Automerge's decoder, but the document saved with it no longer loads: its
/// recomputed heads do not match. `caps` bound its bytes, its operations and the
/// operation counter it reaches.
pub fn decode_change(bytes: &[u8], caps: &Caps) -> Result<Change, String> {
    let body = check_chunk(bytes, caps.change_bytes)?;
    // Automerge allocates a string's declared length before reading it.
    crate::chunk::check_declared_strings(&bytes[body..])?;
    let change = guarded(|| Change::try_from(bytes))
        .ok_or_else(|| "made Automerge fail while decoding it".to_string())?
        .map_err(|e| format!("is not an Automerge change: {e}"))?;
    if change.len() > caps.change_ops {
        return Err(format!(
            "holds {} operations; at most {} per change",
            change.len(),
            caps.change_ops
        ));
    }
    if change.max_op() > caps.doc_ops {
        return Err(format!(
            "takes its document past {} operations, the most a document may hold",
            caps.doc_ops
        ));
    }
    let canonical = guarded(|| Change::from(change.decode()).hash() == change.hash())
        .ok_or_else(|| "made Automerge fail while re-encoding it".to_string())?;
    if !canonical {
        return Err(
            "is not in Automerge's canonical encoding (re-encoded, it gives other bytes)".into(),
        );
    }
    Ok(change)
}

/// The decoded changes of one document in a push.
#[derive(Debug, Clone)]
pub struct ParsedDoc {
    pub id: String,
    pub changes: Vec<Change>,
}

/// A decoded push.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub docs: Vec<ParsedDoc>,
    /// Changes repeated inside the request itself.
    pub duplicates: u64,
    /// The caps the push was decoded under; [`apply`] holds its documents to them.
    pub caps: Caps,
    /// What the pushing device may number documents with; [`authorize`] checks every
    /// number the push sets against it.
    pub numbers: NumberRights,
}

/// The devices whose provisional numbers the caller gives (it and the devices it
/// succeeds) and the blocks of numbers reserved for them
/// ([`xiuhua_core::numbers::check_change`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NumberRights {
    pub own_devices: Vec<String>,
    pub blocks: Vec<xiuhua_core::numbers::OwnBlock>,
}

impl Parsed {
    /// Every change hash of the push.
    pub fn hashes(&self) -> Vec<ChangeHash> {
        self.docs
            .iter()
            .flat_map(|d| d.changes.iter().map(Change::hash))
            .collect()
    }
    /// The touched document ids.
    pub fn doc_ids(&self) -> Vec<String> {
        self.docs.iter().map(|d| d.id.clone()).collect()
    }
}

/// Decodes a push and pins every change's actor to the pushing device, under the default
/// [`Caps`]: `devices` is that device, then the devices it succeeds
/// ([`Caller::own_devices`]), whose changes are its own.
pub fn parse(devices: &[String], req: PushRequest, max_changes: usize) -> Result<Parsed, Refusal> {
    parse_within(devices, req, max_changes, &Caps::DEFAULT)
}

/// [`parse`] under `caps`.
pub fn parse_within(
    devices: &[String],
    req: PushRequest,
    max_changes: usize,
    caps: &Caps,
) -> Result<Parsed, Refusal> {
    let total: usize = req.docs.iter().map(|d| d.changes.len()).sum();
    if total > max_changes {
        return Err(Refusal::too_large(format!(
            "the push holds {total} changes; at most {max_changes} per request: send the outbox in smaller batches"
        )));
    }
    let device = devices.first().map_or("?", String::as_str);
    let actors: Vec<ActorId> = devices.iter().map(|d| actor_id(d)).collect();
    let mut docs: Vec<ParsedDoc> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut seen: HashSet<ChangeHash> = HashSet::new();
    let mut duplicates = 0;
    for d in req.docs {
        if d.doc.is_empty() || d.doc.len() > MAX_DOC_ID || d.doc.chars().any(char::is_control) {
            return Err(Refusal::bad(format!(
                "a document id is empty, longer than {MAX_DOC_ID} bytes or holds control characters"
            )));
        }
        let pos = *index.entry(d.doc.clone()).or_insert_with(|| {
            docs.push(ParsedDoc {
                id: d.doc.clone(),
                changes: Vec::new(),
            });
            docs.len() - 1
        });
        for (i, bytes) in d.changes.iter().enumerate() {
            let change = decode_change(bytes.as_slice(), caps)
                .map_err(|e| Refusal::bad(format!("document {}: change #{i} {e}", d.doc)))?;
            if !actors.contains(change.actor_id()) {
                return Err(Refusal::forbidden(format!(
                    "document {}: change {} was made by actor {} but this device is {device}: a device may push only its own changes",
                    d.doc,
                    change.hash(),
                    printable_actor(change.actor_id())
                )));
            }
            if seen.insert(change.hash()) {
                docs[pos].changes.push(change);
            } else {
                duplicates += 1;
            }
        }
    }
    Ok(Parsed {
        docs,
        duplicates,
        caps: *caps,
        numbers: NumberRights {
            own_devices: devices.to_vec(),
            blocks: Vec::new(),
        },
    })
}

fn printable_actor(a: &automerge::ActorId) -> String {
    match std::str::from_utf8(a.to_bytes()) {
        Ok(s) if !s.chars().any(char::is_control) => format!("{s:?}"),
        _ => a.to_hex_string(),
    }
}

/// A registered document as the storage holds it.
#[derive(Debug, Clone)]
pub struct StoredDoc {
    pub id: String,
    pub grid: String,
    pub kind: DocKind,
    pub building: Option<String>,
    pub tier: Tier,
    pub unit: Option<String>,
    /// `save_nocompress()` bytes.
    pub bytes: Vec<u8>,
}

/// A document after the push's changes were applied, not yet authorized.
#[derive(Debug)]
pub struct AppliedDoc {
    pub id: String,
    pub grid: String,
    pub kind: DocKind,
    /// The registered state before this push (`None` for a new document).
    pub before: Option<StoredDoc>,
    /// The building as written in the document (household address, record field).
    pub own_building: Option<String>,
    /// The household the document refers to (records and tasks).
    pub household: Option<String>,
    /// The household the registered document named before this push: the household rules
    /// of [`authorize`] apply to a household a push names anew, not to one that has since
    /// moved (a 楼门长 keeps editing their record about a household that moved away).
    pub household_before: Option<String>,
    pub rows: Rows,
    /// The server's projection rows ([`crate::projection::project`]).
    pub server_rows: DocRows,
    pub bytes: Vec<u8>,
    pub heads: Vec<ChangeHash>,
    /// New changes (hash, bytes) in causal order.
    pub changes: Vec<(ChangeHash, Vec<u8>)>,
    /// Who the push says did it: checked against the caller by [`authorize`].
    pub claims: Vec<Claim>,
    /// A record's or task's numbers before and after the push, when the push changed them.
    pub numbers: Option<(DocNumbers, DocNumbers)>,
}

/// A statement of a push about who acted: a change's note, a new task event, a new visit,
/// the creator of a new document. [`authorize`] requires each to name the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// What makes the claim, for the refusal (`change <hash>`, `event <id>`, …).
    pub what: String,
    /// The user it names.
    pub user: String,
    /// The role it names (task events).
    pub role: Option<String>,
    /// The device it names (change notes, task events).
    pub device: Option<String>,
    /// When it says it happened, ms since the epoch.
    pub at_ms: Option<i64>,
}

/// The result of [`apply`].
#[derive(Debug)]
pub struct Applied {
    pub docs: Vec<AppliedDoc>,
    /// Documents touched only by duplicates: (id, grid).
    pub unchanged: Vec<(String, String)>,
    pub duplicates: u64,
    /// What the caller may number documents with ([`Parsed::numbers`]).
    pub numbers: NumberRights,
}

impl Applied {
    /// Households referred to by records or tasks of this push that the push does not hold.
    pub fn households_needed(&self) -> Vec<String> {
        let here: HashSet<&str> = self
            .docs
            .iter()
            .filter(|d| d.kind == DocKind::Household)
            .map(|d| d.id.as_str())
            .collect();
        let mut v: Vec<String> = self
            .docs
            .iter()
            .filter(|d| d.kind != DocKind::Household)
            .filter_map(|d| d.household.clone())
            .filter(|h| !here.contains(h.as_str()))
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Applies the parsed changes to the stored documents and checks the results.
/// `stored` holds the registered documents among the touched ones; `known` the hashes of
/// the push that the server already stores.
pub fn apply(
    parsed: Parsed,
    stored: &HashMap<String, StoredDoc>,
    known: &HashSet<ChangeHash>,
) -> Result<Applied, StoreError> {
    let mut out = Applied {
        docs: Vec::new(),
        unchanged: Vec::new(),
        duplicates: parsed.duplicates,
        numbers: parsed.numbers,
    };
    // Documents are checked independently: a large push (a device uploading a whole grid)
    // is spread over the cores, results kept in request order.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let docs = parsed.docs;
    let caps = parsed.caps;
    let outcomes: Vec<Result<(u64, Outcome), StoreError>> = if threads == 1 || docs.len() < 64 {
        docs.into_iter()
            .map(|pd| apply_one(pd, stored, known, &caps))
            .collect()
    } else {
        let chunk = docs.len().div_ceil(threads);
        let mut parts: Vec<Vec<ParsedDoc>> = Vec::new();
        let mut rest = docs;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(chunk));
            parts.push(std::mem::replace(&mut rest, tail));
        }
        std::thread::scope(|s| {
            let handles: Vec<_> = parts
                .into_iter()
                .map(|part| {
                    s.spawn(move || {
                        part.into_iter()
                            .map(|pd| apply_one(pd, stored, known, &caps))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| {
                    h.join().unwrap_or_else(|_| {
                        vec![Err(StoreError::Backend(
                            "a document check panicked".to_string(),
                        ))]
                    })
                })
                .collect()
        })
    };
    for o in outcomes {
        let (dups, outcome) = o?;
        out.duplicates += dups;
        match outcome {
            Outcome::Applied(d) => out.docs.push(*d),
            Outcome::Unchanged(id, grid) => out.unchanged.push((id, grid)),
            Outcome::Nothing => {}
        }
    }
    Ok(out)
}

/// What checking one document of a push gave.
enum Outcome {
    Applied(Box<AppliedDoc>),
    /// Only duplicates, for a registered document.
    Unchanged(String, String),
    /// Only duplicates, for a document the server does not know.
    Nothing,
}

/// Checks one document's changes; returns how many were duplicates and the outcome. A
/// panic inside Automerge on the client's changes refuses the push (400).
fn apply_one(
    pd: ParsedDoc,
    stored: &HashMap<String, StoredDoc>,
    known: &HashSet<ChangeHash>,
    caps: &Caps,
) -> Result<(u64, Outcome), StoreError> {
    let id = pd.id.clone();
    guarded(|| apply_one_inner(pd, stored, known, caps)).unwrap_or_else(|| {
        Err(Refusal::bad(format!(
            "document {id}: the changes made Automerge fail; nothing was stored"
        ))
        .into())
    })
}

fn apply_one_inner(
    pd: ParsedDoc,
    stored: &HashMap<String, StoredDoc>,
    known: &HashSet<ChangeHash>,
    caps: &Caps,
) -> Result<(u64, Outcome), StoreError> {
    let mut duplicates = 0;
    {
        let before = stored.get(&pd.id).cloned();
        let mut doc = match &before {
            Some(s) => AutoCommit::load(&s.bytes).map_err(|e| {
                StoreError::Backend(format!("stored document {} does not load: {e}", s.id))
            })?,
            None => AutoCommit::new(),
        };
        let mut fresh = Vec::new();
        for c in pd.changes {
            if known.contains(&c.hash()) || doc.get_change_by_hash(&c.hash()).is_some() {
                duplicates += 1;
            } else {
                fresh.push(c);
            }
        }
        if fresh.is_empty() {
            return Ok((
                duplicates,
                match &before {
                    Some(s) => Outcome::Unchanged(s.id.clone(), s.grid.clone()),
                    None => Outcome::Nothing,
                },
            ));
        }
        let id = pd.id;
        let heads_before = doc.get_heads();
        let household_before = before
            .as_ref()
            .and_then(|_| xiuhua_core::doc::root_str(&doc, "household"));
        let numbers_before: DocNumbers = (
            xiuhua_core::doc::root_str(&doc, "number"),
            xiuhua_core::doc::root_str(&doc, "provisional_number"),
        );
        // What the document held before: task events are append-only.
        let events_before: Option<BTreeMap<String, TaskEvent>> = match &before {
            Some(b) if b.kind == DocKind::Task => Some(
                autosurgeon::hydrate::<_, Task>(&doc)
                    .map_err(|e| {
                        StoreError::Backend(format!("stored task {} does not hydrate: {e}", b.id))
                    })?
                    .events,
            ),
            _ => None,
        };
        let visits_before: HashMap<String, Visit> = match &before {
            Some(b) if b.kind == DocKind::Household => autosurgeon::hydrate::<_, Household>(&doc)
                .map_err(|e| {
                    StoreError::Backend(format!("stored household {} does not hydrate: {e}", b.id))
                })?
                .visits
                .into_iter()
                .map(|v| (v.id.clone(), v))
                .collect(),
            _ => HashMap::new(),
        };
        let hashes: Vec<ChangeHash> = fresh.iter().map(Change::hash).collect();
        doc.apply_changes(fresh)
            .map_err(|e| Refusal::bad(format!("document {id}: the changes do not apply: {e}")))?;
        let missing: Vec<String> = hashes
            .iter()
            .filter(|h| doc.get_change_by_hash(h).is_none())
            .map(|h| h.to_string())
            .collect();
        if !missing.is_empty() {
            let deps: Vec<String> = doc
                .get_missing_deps(&[])
                .iter()
                .map(ToString::to_string)
                .collect();
            return Err(Refusal::conflict(format!(
                "document {id}: {} change(s) depend on changes the server does not have (missing: {}); push them first, in the same request or earlier",
                missing.len(),
                deps.join(", ")
            ))
            .into());
        }
        let (kind, grid) = match kind_and_grid(&doc) {
            Some(kg) => kg,
            None => return Err(Refusal::bad(describe_bad_root(&id, &doc)).into()),
        };
        if let Some(b) = &before
            && (b.kind != kind || b.grid != grid)
        {
            return Err(Refusal::forbidden(format!(
                "document {id} is registered as a {} of grid {}; a change may not make it a {} of grid {grid}",
                b.kind.as_str(),
                b.grid,
                kind.as_str()
            ))
            .into());
        }
        let allowed: &[&str] = match kind {
            DocKind::Household => Household::FIELDS,
            DocKind::Record => Record::FIELDS,
            DocKind::Task => Task::FIELDS,
        };
        if let Some(k) = doc
            .keys(automerge::ROOT)
            .find(|k| !allowed.contains(&k.as_str()))
        {
            return Err(Refusal::bad(format!(
                "document {id}: a {} holds no field {}; known fields: {}",
                kind.as_str(),
                printable_key(&k),
                allowed.join(", ")
            ))
            .into());
        }
        let Model {
            own_building,
            household,
            mut claims,
            numbers: numbers_after,
        } = validate_model(
            &id,
            kind,
            &doc,
            before.as_ref(),
            events_before.as_ref(),
            &visits_before,
        )?;
        let (rows, server_rows) = match projection::project(&id, &doc) {
            Ok(Some(p)) => (p.rows, p.server),
            Ok(None) => return Err(Refusal::bad(format!("document {id} is empty")).into()),
            Err(e) => {
                return Err(Refusal::bad(format!(
                    "document {id} is not a valid {}: {e}",
                    kind.as_str()
                ))
                .into());
            }
        };
        let new_changes = doc.get_changes(&heads_before);
        for c in &new_changes {
            let what = format!("change {}", c.hash());
            let note = c
                .message()
                .and_then(|m| serde_json::from_str::<ChangeNote>(m).ok())
                .ok_or_else(|| {
                    Refusal::bad(format!(
                        "document {id}: {what} carries no note saying who made it"
                    ))
                })?;
            claims.push(Claim {
                what,
                user: note.user,
                role: None,
                device: Some(note.device),
                at_ms: Some(hlc_ms(note.hlc)),
            });
        }
        let changes = new_changes
            .iter()
            .map(|c| (c.hash(), c.raw_bytes().to_vec()))
            .collect();
        let heads = doc.get_heads();
        let bytes = doc.save_nocompress();
        if bytes.len() > caps.doc_bytes {
            return Err(Refusal::too_large(format!(
                "document {id} would hold {} bytes; at most {}",
                bytes.len(),
                caps.doc_bytes
            ))
            .into());
        }
        // What is stored must load back with the same heads. Every change was checked to be
        // canonical (`decode_change`), which is what makes a save load; a document with a
        // history is also loaded back, as a second line (a full load costs about as much as
        // applying the changes: for a new document, most of a push's work, so not there).
        let loads_back = before.is_none()
            || AutoCommit::load(&bytes).is_ok_and(|mut back| back.get_heads() == heads);
        if !loads_back {
            {
                return Err(Refusal::bad(format!(
                    "document {id}: with these changes the document does not load back; nothing was stored"
                ))
                .into());
            }
        }
        Ok((
            duplicates,
            Outcome::Applied(Box::new(AppliedDoc {
                id,
                grid,
                kind,
                before,
                own_building,
                household,
                household_before,
                rows,
                server_rows,
                bytes,
                heads,
                changes,
                claims,
                numbers: numbers_after
                    .filter(|after| *after != numbers_before)
                    .map(|after| (numbers_before, after)),
            })),
        ))
    }
}

/// An HLC (as i64) in ms since the epoch; an undecodable one counts as far future.
fn hlc_ms(hlc: i64) -> i64 {
    Hlc::from_i64(hlc).map_or(i64::MAX, |h| i64::try_from(h.wall_ms()).unwrap_or(i64::MAX))
}

/// A client-chosen key, shown only when it is a short plain identifier.
fn printable_key(k: &str) -> String {
    if !k.is_empty() && k.len() <= 32 && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        format!("{k:?}")
    } else {
        "(not shown)".to_string()
    }
}

fn root_str(doc: &AutoCommit, key: &str) -> Option<String> {
    match doc.get(automerge::ROOT, key).ok().flatten()? {
        (Value::Scalar(s), _) => match s.as_ref() {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        },
        _ => None,
    }
}

fn describe_bad_root(id: &str, doc: &AutoCommit) -> String {
    match root_str(doc, "kind") {
        None => format!("document {id} is not a Xiuhua document: no kind at its root"),
        Some(k) if DocKind::parse(&k).is_none() => format!(
            "document {id} has unknown kind {}; expected household, record or task",
            printable_key(&k)
        ),
        Some(k) => format!("document {id}: a {k} without a grid"),
    }
}

/// What [`validate_model`] found in a valid document.
struct Model {
    /// The building as written in the document (household address, record field).
    own_building: Option<String>,
    /// The household the document refers to (records and tasks).
    household: Option<String>,
    /// Who the document's new content says acted.
    claims: Vec<Claim>,
    /// A record's or task's numbers.
    numbers: Option<DocNumbers>,
}

/// The model's validation of a hydrated document: the core's bounds and normal forms, task
/// events append-only; returns its own building, the household it refers to and the
/// claims of its new content. `events_before` holds a registered task's events before the
/// push, `visits_before` a registered household's visits.
fn validate_model(
    id: &str,
    kind: DocKind,
    doc: &AutoCommit,
    before: Option<&StoredDoc>,
    events_before: Option<&BTreeMap<String, TaskEvent>>,
    visits_before: &HashMap<String, Visit>,
) -> Result<Model, StoreError> {
    let bad = |what: String| -> StoreError {
        Refusal::bad(format!(
            "document {id} is not a valid {}: {what}",
            kind.as_str()
        ))
        .into()
    };
    // Never the value in the message: it may be a resident's ID or phone number.
    let same = |field: &str,
                v: &str,
                checked: xiuhua_core::Result<String>|
     -> Result<(), StoreError> {
        match checked {
            Ok(n) if n == v => Ok(()),
            Ok(_) => Err(bad(format!(
                "{field} is not in its normal form (trimmed, without separators or country code, an upper-case X)"
            ))),
            Err(e) => Err(bad(e.to_string())),
        }
    };
    let check_id = |doc_field: &str| -> Result<(), StoreError> {
        if doc_field == id {
            Ok(())
        } else {
            Err(bad("its id field is not the document's id".into()))
        }
    };
    let is_new = before.is_none();
    let created = |user: &str, at: i64| Claim {
        what: "the creator (created_by)".into(),
        user: user.to_string(),
        role: None,
        device: None,
        at_ms: Some(at),
    };
    let mut claims = Vec::new();
    match kind {
        DocKind::Household => {
            let h: Household = autosurgeon::hydrate(doc).map_err(|e| bad(e.to_string()))?;
            check_id(&h.id)?;
            h.check_bounds().map_err(|e| bad(e.to_string()))?;
            let a = &h.address;
            same(
                "address.grid",
                &a.grid,
                validate::non_empty("address.grid", &a.grid, 64),
            )?;
            same(
                "address.building",
                &a.building,
                validate::non_empty("address.building", &a.building, 32),
            )?;
            same(
                "address.unit",
                &a.unit,
                validate::non_empty("address.unit", &a.unit, 32),
            )?;
            same(
                "address.room",
                &a.room,
                validate::non_empty("address.room", &a.room, 32),
            )?;
            for m in &h.members {
                let field = |f: &str| format!("member {} {f}", m.id);
                same(
                    &field("name"),
                    &m.name,
                    validate::name(&field("name"), &m.name),
                )?;
                if !(1900..=2100).contains(&m.birth_year) {
                    return Err(bad(format!(
                        "member {}: the birth year is not plausible (1900 to 2100)",
                        m.id
                    )));
                }
                if let Some(p) = &m.phone {
                    same(&field("phone"), p, validate::mobile(&field("phone"), p))?;
                }
                if let Some(n) = &m.id_number {
                    same(
                        &field("id_number"),
                        n,
                        validate::id_number(&field("id_number"), n),
                    )?;
                }
            }
            if is_new {
                claims.push(created(&h.created_by, h.created_at));
            }
            // A new visit is its author's claim; so is a corrected one: only the user who
            // made a visit may change it, and never when or by whom it was made.
            for v in &h.visits {
                let what = match visits_before.get(&v.id) {
                    None => format!("visit {}", v.id),
                    Some(old) if old == v => continue,
                    Some(old) => {
                        if (&old.by, &old.by_name, old.at) != (&v.by, &v.by_name, v.at) {
                            return Err(bad(format!(
                                "visit {}: who made it and when do not change",
                                v.id
                            )));
                        }
                        format!("correction of visit {}", v.id)
                    }
                };
                claims.push(Claim {
                    what,
                    user: v.by.clone(),
                    role: None,
                    device: None,
                    at_ms: Some(v.at),
                });
            }
            Ok(Model {
                own_building: Some(a.building.clone()),
                household: None,
                claims,
                numbers: None,
            })
        }
        DocKind::Record => {
            let r: Record = autosurgeon::hydrate(doc).map_err(|e| bad(e.to_string()))?;
            check_id(&r.id)?;
            r.check_bounds().map_err(|e| bad(e.to_string()))?;
            same(
                "reporter",
                &r.reporter,
                validate::name("reporter", &r.reporter),
            )?;
            if is_new {
                claims.push(created(&r.created_by, r.reported_at));
            }
            let building = r.building.clone().filter(|b| !b.trim().is_empty());
            Ok(Model {
                own_building: building,
                household: r.household.clone(),
                claims,
                numbers: Some((r.number, r.provisional_number)),
            })
        }
        DocKind::Task => {
            let t: Task = autosurgeon::hydrate(doc).map_err(|e| bad(e.to_string()))?;
            check_id(&t.id)?;
            t.check_bounds().map_err(|e| bad(e.to_string()))?;
            same(
                "title",
                &t.title,
                validate::non_empty("title", &t.title, 100),
            )?;
            let empty = BTreeMap::new();
            let old = events_before.unwrap_or(&empty);
            for (key, ev) in old {
                if t.events.get(key) != Some(ev) {
                    return Err(Refusal::forbidden(format!(
                        "task {id}: event {key} was changed or removed; events are append-only"
                    ))
                    .into());
                }
            }
            for (key, ev) in t.events.iter().filter(|(k, _)| !old.contains_key(*k)) {
                if &ev.id != key {
                    return Err(bad(format!("event {key}: its id field is not its key")));
                }
                claims.push(Claim {
                    what: format!("event {key}"),
                    user: ev.author.clone(),
                    role: Some(ev.role.clone()),
                    device: Some(ev.device.clone()),
                    at_ms: Some(hlc_ms(ev.hlc)),
                });
            }
            if is_new {
                claims.push(created(&t.created_by, t.created_at));
            }
            let recorded = before.map_or(Tier::Grid, |b| b.tier);
            for ev in t.events.values().filter(|e| e.kind == "escalate") {
                if let Some(tier) = ev.tier.as_deref().and_then(|s| Tier::parse(s).ok())
                    && tier > recorded
                {
                    return Err(Refusal::forbidden(format!(
                        "task {id}: event {} escalates to {tier}, above the tier the server records ({recorded}); call /v1/escalate first, then push the event",
                        ev.id
                    ))
                    .into());
                }
            }
            Ok(Model {
                own_building: None,
                household: t.household.clone(),
                claims,
                numbers: Some((t.number, t.provisional_number)),
            })
        }
    }
}

/// A document ready to be written.
#[derive(Debug)]
pub struct PlannedDoc {
    pub id: String,
    pub grid: String,
    pub kind: DocKind,
    pub building: Option<String>,
    /// For a registered document whose building this push changes: the building it had
    /// (the backend records the move, `storage::push_moves`).
    pub moved_from: Option<Option<String>>,
    /// Whether this push registers the document.
    pub is_new: bool,
    /// `save_nocompress()` bytes.
    pub bytes: Vec<u8>,
    /// The heads, 32 bytes each, concatenated.
    pub heads: Vec<u8>,
    /// The projection rows (MessagePack of [`Rows`]).
    pub rows: Vec<u8>,
    /// The server's projection rows, written in the push's transaction.
    pub server_rows: DocRows,
    /// New changes (hash, bytes) in causal order.
    pub changes: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What a push writes.
#[derive(Debug, Default)]
pub struct Plan {
    pub docs: Vec<PlannedDoc>,
    pub duplicates: u64,
    /// Grids whose feed position the response reports.
    pub grids: BTreeSet<String>,
}

impl Plan {
    /// Number of new changes.
    pub fn change_count(&self) -> u64 {
        self.docs.iter().map(|d| d.changes.len() as u64).sum()
    }
}

/// Encodes projection rows for storage.
pub fn encode_rows(rows: &Rows) -> Result<Vec<u8>, StoreError> {
    rmp_serde::to_vec_named(rows).map_err(|e| StoreError::Backend(format!("encoding rows: {e}")))
}

/// Concatenates heads.
pub fn encode_heads(heads: &[ChangeHash]) -> Vec<u8> {
    heads.iter().flat_map(|h| h.0).collect()
}

/// Splits concatenated heads.
pub fn decode_heads(b: &[u8]) -> Vec<Vec<u8>> {
    b.chunks(32).map(<[u8]>::to_vec).collect()
}

/// Where a registered household is: its grid and building.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HouseholdAt {
    pub grid: String,
    pub building: Option<String>,
}

/// Resolves each document's building and checks the caller's write grants and claims, at
/// the server's current time. `households` gives where the registered households the push
/// names but does not hold are (a household missing from it is not registered).
pub fn authorize(
    applied: Applied,
    caller: &Caller,
    households: &HashMap<String, HouseholdAt>,
) -> Result<Plan, StoreError> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    authorize_at(applied, caller, households, now_ms)
}

/// Checks that a claim names the caller, the caller's device and the role the caller holds
/// on the document's grid, and is not stamped more than [`MAX_FUTURE_MS`] after `now_ms`.
fn check_claim(
    doc: &str,
    grid: &str,
    claim: &Claim,
    caller: &Caller,
    now_ms: i64,
) -> Result<(), Refusal> {
    let what = &claim.what;
    if claim.user != caller.user {
        return Err(Refusal::forbidden(format!(
            "document {doc}: {what} names another user than the caller ({}); a device acts only as its own user; nothing was stored",
            caller.user
        )));
    }
    if let Some(d) = &claim.device
        && !caller.is_own_device(d)
    {
        return Err(Refusal::forbidden(format!(
            "document {doc}: {what} names another device than the caller's; nothing was stored"
        )));
    }
    if let Some(role) = &claim.role {
        let held = caller.grant(grid).map(|g| g.role.as_str());
        if held != Some(role.as_str()) {
            return Err(Refusal::forbidden(format!(
                "document {doc}: {what} is signed with a role user {} does not hold on grid {grid} (holds: {}); nothing was stored",
                caller.user,
                held.unwrap_or("none")
            )));
        }
    }
    if let Some(at) = claim.at_ms
        && at > now_ms.saturating_add(MAX_FUTURE_MS)
    {
        return Err(Refusal::bad(format!(
            "document {doc}: {what} is stamped more than 24 hours after the server's clock; check the phone's clock; nothing was stored"
        )));
    }
    Ok(())
}

/// [`authorize`] at a given server time (ms since the epoch).
pub fn authorize_at(
    applied: Applied,
    caller: &Caller,
    households: &HashMap<String, HouseholdAt>,
    now_ms: i64,
) -> Result<Plan, StoreError> {
    let in_push: HashMap<String, HouseholdAt> = applied
        .docs
        .iter()
        .filter(|d| d.kind == DocKind::Household)
        .map(|d| {
            (
                d.id.clone(),
                HouseholdAt {
                    grid: d.grid.clone(),
                    building: d.own_building.clone(),
                },
            )
        })
        .collect();
    let household_at = |h: &str| in_push.get(h).or_else(|| households.get(h));
    let building_of_household =
        |h: &str| -> Option<String> { household_at(h).and_then(|at| at.building.clone()) };
    let mut plan = Plan {
        duplicates: applied.duplicates,
        ..Plan::default()
    };
    for (_, grid) in &applied.unchanged {
        if caller.grant(grid).is_some() {
            plan.grids.insert(grid.clone());
        }
    }
    for d in applied.docs {
        let names_household_anew = d.before.is_none() || d.household != d.household_before;
        // A record or task names a household of its own grid: grants are per grid, and a
        // household of another grid is not this document's to point at.
        if d.kind != DocKind::Household
            && names_household_anew
            && let Some(at) = d.household.as_deref().and_then(household_at)
            && at.grid != d.grid
        {
            return Err(Refusal::bad(format!(
                "document {}: its household field names a household of another grid; a {} of grid {} may name only a household of that grid; nothing was stored",
                d.id,
                d.kind.as_str(),
                d.grid
            ))
            .into());
        }
        let building = match d.kind {
            DocKind::Household => d.own_building.clone(),
            DocKind::Record => d
                .own_building
                .clone()
                .or_else(|| d.household.as_deref().and_then(building_of_household)),
            DocKind::Task => d.household.as_deref().and_then(building_of_household),
        };
        let old = d.before.as_ref().map(|b| b.building.as_deref());
        caller.check_write(&d.id, &d.grid, building.as_deref(), old)?;
        // A record naming its own building may name a household only where the caller
        // may write too (a 楼门长 may not file about a household of another building).
        if d.kind == DocKind::Record
            && d.own_building.is_some()
            && names_household_anew
            && let Some(h) = d.household.as_deref()
        {
            caller.check_write(&d.id, &d.grid, building_of_household(h).as_deref(), None)?;
        }
        for c in &d.claims {
            check_claim(&d.id, &d.grid, c, caller, now_ms)?;
        }
        if let Some((before, after)) = &d.numbers {
            xiuhua_core::numbers::check_change(
                before,
                after,
                &applied.numbers.own_devices,
                &applied.numbers.blocks,
            )
            .map_err(|why| {
                Refusal::forbidden(format!("document {}: {why}; nothing was stored", d.id))
            })?;
        }
        plan.grids.insert(d.grid.clone());
        let moved_from = d
            .before
            .as_ref()
            .filter(|b| b.building != building)
            .map(|b| b.building.clone());
        plan.docs.push(PlannedDoc {
            moved_from,
            rows: encode_rows(&d.rows)?,
            server_rows: d.server_rows,
            heads: encode_heads(&d.heads),
            is_new: d.before.is_none(),
            changes: d
                .changes
                .into_iter()
                .map(|(h, b)| (h.0.to_vec(), b))
                .collect(),
            id: d.id,
            grid: d.grid,
            kind: d.kind,
            building,
            bytes: d.bytes,
        });
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use automerge::transaction::Transactable;
    use autosurgeon::Text;
    use sha2::{Digest, Sha256};
    use xiuhua_core::doc::build_document;
    use xiuhua_core::model::*;
    use xiuhua_core::sync::proto::DocChanges;

    use super::*;
    use crate::access::GrantRow;

    const NOW: i64 = 1_780_000_000_000;

    fn caller(user: &str, device: &str, role: Role, buildings: &[&str]) -> Caller {
        Caller {
            device: device.into(),
            user: user.into(),
            user_name: "王伟".into(),
            grants: vec![GrantRow {
                user: user.into(),
                grid: "g1".into(),
                role,
                buildings: buildings.iter().map(|b| b.to_string()).collect(),
            }],
            held_grids: vec![],
            predecessors: Vec::new(),
        }
    }

    fn actor(user: &str, role: Role) -> Actor {
        Actor::new(user, "王伟", role, "d1").unwrap()
    }

    fn hlc(ms: i64) -> Hlc {
        Hlc::new(u64::try_from(ms).unwrap(), 0)
    }

    fn household(id: &str, building: &str) -> Household {
        Household {
            kind: "household".into(),
            id: id.into(),
            address: Address::new("g1", building, "1单元", "101").unwrap(),
            members: vec![],
            tags: vec![],
            note: Text::with_value(""),
            visits: vec![],
            created_at: NOW - 1000,
            created_by: "u1".into(),
            moved_out_at: None,
        }
    }

    fn household_at(grid: &str, building: &str) -> HouseholdAt {
        HouseholdAt {
            grid: grid.into(),
            building: Some(building.into()),
        }
    }

    fn record(id: &str, building: Option<&str>, household: Option<&str>) -> Record {
        Record {
            kind: "record".into(),
            id: id.into(),
            grid: "g1".into(),
            category: Category::Environment,
            description: Text::with_value("楼道堆物"),
            reporter: "张阿姨".into(),
            household: household.map(str::to_string),
            building: building.map(str::to_string),
            place: "楼道".into(),
            status: RecordStatus::Pending,
            reported_at: NOW - 1000,
            created_by: "u1".into(),
            number: None,
            provisional_number: None,
        }
    }

    fn event(id: &str, kind: &str, author: &str, role: Role, at: i64) -> TaskEvent {
        TaskEvent {
            id: id.into(),
            kind: kind.into(),
            author: author.into(),
            author_name: "王伟".into(),
            role: role.as_str().into(),
            device: "d1".into(),
            hlc: hlc(at).as_i64(),
            level: Some("上门办".into()),
            ..TaskEvent::default()
        }
    }

    fn task(id: &str, events: Vec<TaskEvent>) -> Task {
        Task {
            kind: "task".into(),
            id: id.into(),
            grid: "g1".into(),
            category: Category::Service,
            title: "代办".into(),
            description: Text::with_value(""),
            household: None,
            source_record: None,
            created_at: NOW - 1000,
            created_by: "u1".into(),
            number: None,
            provisional_number: None,
            events: events.into_iter().map(|e| (e.id.clone(), e)).collect(),
        }
    }

    fn changes_of(doc: &mut AutoCommit) -> Vec<Vec<u8>> {
        doc.get_changes(&[])
            .iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect()
    }

    fn req(id: &str, changes: Vec<Vec<u8>>) -> PushRequest {
        PushRequest {
            docs: vec![DocChanges {
                doc: id.into(),
                changes: changes
                    .into_iter()
                    .map(serde_bytes::ByteBuf::from)
                    .collect(),
            }],
        }
    }

    /// parse + apply + authorize of one push on an empty server.
    fn push(
        caller: &Caller,
        req: PushRequest,
        stored: &HashMap<String, StoredDoc>,
        households: &HashMap<String, HouseholdAt>,
    ) -> Result<Plan, StoreError> {
        let parsed = parse(&caller.own_devices(), req, 1000)?;
        let applied = apply(parsed, stored, &HashSet::new())?;
        authorize_at(applied, caller, households, NOW)
    }

    /// Commits what `doc` holds uncommitted as 王伟 (u1, device d1) at `at_ms`, and returns
    /// the changes after `heads`.
    fn commit_as_u1(
        doc: &mut AutoCommit,
        heads: &[ChangeHash],
        at_ms: i64,
        what: &str,
    ) -> Vec<Vec<u8>> {
        let note = serde_json::to_string(&ChangeNote {
            user: "u1".into(),
            name: "王伟".into(),
            device: "d1".into(),
            hlc: hlc(at_ms).as_i64(),
            what: what.into(),
        })
        .unwrap();
        doc.commit_with(automerge::transaction::CommitOptions::default().with_message(note));
        doc.get_changes(heads)
            .iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect()
    }

    fn message(r: Result<Plan, StoreError>) -> String {
        match r {
            Err(StoreError::Refused(r)) => r.message,
            Err(e) => panic!("expected a refusal, got {e:?}"),
            Ok(_) => panic!("expected a refusal, the push was accepted"),
        }
    }

    fn refusal(r: Result<Plan, StoreError>) -> Refusal {
        match r {
            Err(StoreError::Refused(r)) => r,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn stored_of(
        id: &str,
        kind: DocKind,
        building: Option<&str>,
        doc: &mut AutoCommit,
    ) -> StoredDoc {
        StoredDoc {
            id: id.into(),
            grid: "g1".into(),
            kind,
            building: building.map(str::to_string),
            tier: Tier::Grid,
            unit: None,
            bytes: doc.save_nocompress(),
        }
    }

    // ----- LEB128 and change chunks, to craft hostile bytes -----

    use crate::chunk::write_uleb as uleb;

    fn read_uleb(b: &[u8], at: &mut usize) -> u64 {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let x = b[*at];
            *at += 1;
            v |= u64::from(x & 0x7f) << shift;
            if x & 0x80 == 0 {
                return v;
            }
            shift += 7;
        }
    }

    /// A change chunk around `body`, with its checksum.
    fn chunk(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut hashed = vec![kind];
        uleb(body.len() as u64, &mut hashed);
        hashed.extend_from_slice(body);
        let sum = Sha256::digest(&hashed);
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&sum[..4]);
        out.extend(hashed);
        out
    }

    /// The change re-written with an explicit run of `n_ops` nulls in its object-actor
    /// column (spec 0x01), which the canonical encoding leaves out when every operation is
    /// on the root: the same operations, other bytes.
    fn with_null_column(change: &[u8], n_ops: u64) -> Vec<u8> {
        let mut at = 9;
        let len = read_uleb(change, &mut at) as usize;
        let body = &change[at..at + len];
        let mut i = 0;
        let deps = read_uleb(body, &mut i) as usize;
        i += 32 * deps;
        let actor = read_uleb(body, &mut i) as usize;
        i += actor;
        read_uleb(body, &mut i); // seq
        read_uleb(body, &mut i); // start op
        read_uleb(body, &mut i); // time (the bytes are skipped the same way)
        let msg = read_uleb(body, &mut i) as usize;
        i += msg;
        let others = read_uleb(body, &mut i);
        for _ in 0..others {
            let l = read_uleb(body, &mut i) as usize;
            i += l;
        }
        let cols_at = i;
        let ncols = read_uleb(body, &mut i);
        let mut cols = Vec::new();
        for _ in 0..ncols {
            let spec = read_uleb(body, &mut i);
            let l = read_uleb(body, &mut i);
            cols.push((spec, l));
        }
        assert!(
            cols.iter().all(|(s, _)| *s > 1),
            "the object column is already there"
        );
        let mut new_body = body[..cols_at].to_vec();
        uleb(ncols + 1, &mut new_body);
        let mut nulls = vec![0u8];
        uleb(n_ops, &mut nulls);
        new_body.push(0x01);
        uleb(nulls.len() as u64, &mut new_body);
        for (s, l) in &cols {
            uleb(*s, &mut new_body);
            uleb(*l, &mut new_body);
        }
        new_body.extend(nulls);
        new_body.extend_from_slice(&body[i..]);
        chunk(CHUNK_CHANGE, &new_body)
    }

    // ----- item 1: only plain change chunks; Automerge panics are refusals -----

    /// Found by the `req_push` fuzz target: a task change of 914 bytes whose key column
    /// declares a string of hundreds of MB, which Automerge allocated before reading it.
    #[test]
    fn a_change_declaring_a_string_longer_than_its_column_is_refused_before_decoding() {
        let bytes = include_bytes!("../tests/fixtures/change-declaring-a-huge-string.bin");
        assert_eq!(bytes.len(), 914);
        let e = decode_change(bytes, &Caps::DEFAULT).unwrap_err();
        assert!(e.contains("longer than the column"), "{e}");
        // Honest changes of every kind pass the walk.
        let me = actor("u1", Role::GridMember);
        let order = event("ev-1", "order", "u1", Role::GridMember, NOW - 1000);
        let mut docs = [
            build_document(&household("hh-1", "3号楼"), &me, hlc(NOW - 1000), "reg").unwrap(),
            build_document(
                &record("rec-1", Some("3号楼"), None),
                &me,
                hlc(NOW - 1000),
                "log",
            )
            .unwrap(),
            build_document(&task("task-1", vec![order]), &me, hlc(NOW - 1000), "order").unwrap(),
        ];
        for doc in &mut docs {
            for c in changes_of(doc) {
                assert!(decode_change(&c, &Caps::DEFAULT).is_ok());
            }
        }
    }

    #[test]
    fn a_compressed_change_is_refused_before_it_is_inflated() {
        let mut doc = xiuhua_core::doc::new_doc("d1");
        doc.put(automerge::ROOT, "kind", "x".repeat(4096)).unwrap();
        doc.commit();
        let mut c = doc.get_last_local_change().unwrap().clone();
        let compressed = c.bytes().to_vec();
        assert_eq!(compressed[8], 2, "Automerge compressed the change");
        // Automerge itself would inflate and accept it.
        assert!(Change::try_from(compressed.as_slice()).is_ok());
        let e = check_chunk(&compressed, MAX_CHANGE_BYTES).unwrap_err();
        assert!(e.contains("compressed"), "{e}");
        // A claimed inflated size of 2 GiB in a tiny body: refused from the header alone.
        let mut bomb = chunk(2, &[0u8; 16]);
        bomb[8] = 2;
        assert!(
            check_chunk(&bomb, MAX_CHANGE_BYTES)
                .unwrap_err()
                .contains("compressed")
        );
        let r = parse(&["d1".to_string()], req("hh-1", vec![compressed]), 10).unwrap_err();
        assert_eq!(r.kind, crate::error::RefusalKind::BadRequest);
        assert!(r.message.contains("compressed"), "{}", r.message);
    }

    #[test]
    fn bytes_that_are_no_change_chunk_are_refused() {
        assert!(check_chunk(b"garbage", MAX_CHANGE_BYTES).is_err());
        let mut doc = xiuhua_core::doc::new_doc("d1");
        doc.put(automerge::ROOT, "kind", "household").unwrap();
        doc.commit();
        let ok = changes_of(&mut doc).remove(0);
        assert!(check_chunk(&ok, MAX_CHANGE_BYTES).is_ok());
        let mut longer = ok.clone();
        longer.push(0);
        assert!(
            check_chunk(&longer, MAX_CHANGE_BYTES)
                .unwrap_err()
                .contains("length")
        );
        let mut doc_chunk = ok.clone();
        doc_chunk[8] = 0;
        assert!(
            check_chunk(&doc_chunk, MAX_CHANGE_BYTES)
                .unwrap_err()
                .contains("chunk type")
        );
        let huge = vec![0u8; MAX_CHANGE_BYTES + 1];
        assert!(
            check_chunk(&huge, MAX_CHANGE_BYTES)
                .unwrap_err()
                .contains("at most")
        );
    }

    #[test]
    fn a_panic_in_automerge_work_is_caught() {
        assert_eq!(guarded(|| 7), Some(7));
        assert_eq!(guarded(|| -> i32 { panic!("hostile") }), None);
    }

    // ----- item 2: never commit bytes that do not load back -----

    #[test]
    fn a_non_canonical_change_is_refused() {
        let c = caller("u1", "d1", Role::GridMember, &[]);
        let mut doc = build_document(
            &household("hh-1", "1号楼"),
            &actor("u1", Role::GridMember),
            hlc(NOW - 1000),
            "register household",
        )
        .unwrap();
        let good = changes_of(&mut doc).remove(0);
        // The premise: the altered change decodes and applies, but the saved document no
        // longer loads (the finding's "mismatching heads"). A change whose ops are all on
        // the root has no object-actor column to begin with.
        let mut flat = xiuhua_core::doc::new_doc("d1");
        flat.put(automerge::ROOT, "kind", "household").unwrap();
        flat.put(automerge::ROOT, "id", "hh-2").unwrap();
        flat.commit();
        let flat_change = changes_of(&mut flat).remove(0);
        let bad = with_null_column(&flat_change, 2);
        let decoded = Change::try_from(bad.as_slice()).expect("Automerge decodes it");
        let mut broken = AutoCommit::new();
        broken.apply_changes([decoded]).unwrap();
        assert!(
            AutoCommit::load(&broken.save_nocompress()).is_err(),
            "the saved document no longer loads"
        );
        let e = decode_change(&bad, &Caps::DEFAULT).unwrap_err();
        assert!(e.contains("canonical"), "{e}");
        let r = refusal(push(
            &c,
            req("hh-2", vec![bad]),
            &HashMap::new(),
            &HashMap::new(),
        ));
        assert_eq!(r.kind, crate::error::RefusalKind::BadRequest);
        assert!(r.message.contains("canonical"), "{}", r.message);
        // The honest change passes.
        assert!(
            push(
                &c,
                req("hh-1", vec![good]),
                &HashMap::new(),
                &HashMap::new()
            )
            .is_ok()
        );
    }

    // ----- item 3: who did it -----

    fn task_push(c: &Caller, t: &Task, by: &Actor) -> (Result<Plan, StoreError>, AutoCommit) {
        let mut doc = build_document(t, by, hlc(NOW - 1000), "order task").unwrap();
        let r = push(
            c,
            req(&t.id, changes_of(&mut doc)),
            &HashMap::new(),
            &HashMap::new(),
        );
        (r, doc)
    }

    #[test]
    fn a_task_event_must_be_signed_by_the_caller_in_the_role_held_on_the_grid() {
        let staff = caller("u1", "d1", Role::CommunityStaff, &[]);
        let grid = caller("u1", "d1", Role::GridMember, &[]);
        let me = actor("u1", Role::GridMember);
        let order = event("ev-1", "order", "u1", Role::GridMember, NOW - 1000);
        assert!(
            task_push(&grid, &task("task-1", vec![order.clone()]), &me)
                .0
                .is_ok()
        );
        // The same event from a caller who may be 网格员 elsewhere but is 社区工作者 here.
        let m = message(task_push(&staff, &task("task-1", vec![order.clone()]), &me).0);
        assert!(m.contains("event ev-1") && m.contains("role"), "{m}");
        // "As 社区书记": a role the caller does not hold.
        let forged = event("ev-2", "inquire", "u1", Role::Secretary, NOW - 900);
        let m = message(task_push(&grid, &task("task-2", vec![order.clone(), forged]), &me).0);
        assert!(m.contains("ev-2") && m.contains("does not hold"), "{m}");
        // Another user as author.
        let other = event("ev-3", "note", "u-chen", Role::GridMember, NOW - 900);
        let m = message(task_push(&grid, &task("task-3", vec![order.clone(), other]), &me).0);
        assert!(m.contains("ev-3") && m.contains("another user"), "{m}");
        // Another device.
        let mut dev = event("ev-4", "note", "u1", Role::GridMember, NOW - 900);
        dev.device = "d9".into();
        let m = message(task_push(&grid, &task("task-4", vec![order, dev]), &me).0);
        assert!(m.contains("ev-4") && m.contains("device"), "{m}");
    }

    #[test]
    fn events_stamped_far_in_the_future_are_refused() {
        let c = caller("u1", "d1", Role::GridMember, &[]);
        let me = actor("u1", Role::GridMember);
        let soon = event("ev-1", "order", "u1", Role::GridMember, NOW + 3_600_000);
        assert!(task_push(&c, &task("task-1", vec![soon]), &me).0.is_ok());
        let later = event(
            "ev-1",
            "order",
            "u1",
            Role::GridMember,
            NOW + MAX_FUTURE_MS + 1,
        );
        let m = message(task_push(&c, &task("task-2", vec![later]), &me).0);
        assert!(m.contains("24 hours"), "{m}");
    }

    #[test]
    fn the_note_and_the_creator_must_name_the_caller() {
        let c = caller("u1", "d1", Role::GridMember, &[]);
        // The change's note names u-chen (the device is the caller's).
        let mut doc = build_document(
            &household("hh-1", "1号楼"),
            &Actor::new("u-chen", "陈红", Role::Secretary, "d1").unwrap(),
            hlc(NOW - 1000),
            "register household",
        )
        .unwrap();
        let m = message(push(
            &c,
            req("hh-1", changes_of(&mut doc)),
            &HashMap::new(),
            &HashMap::new(),
        ));
        assert!(m.contains("change") && m.contains("another user"), "{m}");
        // A record whose creator is someone else.
        let mut r = record("rec-1", Some("1号楼"), None);
        r.created_by = "u-chen".into();
        let mut doc =
            build_document(&r, &actor("u1", Role::GridMember), hlc(NOW - 1000), "log").unwrap();
        let m = message(push(
            &c,
            req("rec-1", changes_of(&mut doc)),
            &HashMap::new(),
            &HashMap::new(),
        ));
        assert!(
            m.contains("created_by") && m.contains("another user"),
            "{m}"
        );
        // A change without a note.
        let mut bare = xiuhua_core::doc::new_doc("d1");
        autosurgeon::reconcile(&mut bare, household("hh-2", "1号楼")).unwrap();
        bare.commit();
        let m = message(push(
            &c,
            req("hh-2", changes_of(&mut bare)),
            &HashMap::new(),
            &HashMap::new(),
        ));
        assert!(m.contains("no note"), "{m}");
    }

    #[test]
    fn a_visit_is_corrected_only_by_its_author_and_keeps_when_and_who() {
        let c = caller("u1", "d1", Role::GridMember, &[]);
        let me = actor("u1", Role::GridMember);
        let visit = |by: &str, by_name: &str| Visit {
            id: format!("v-{by}"),
            at: NOW - 500,
            by: by.into(),
            by_name: by_name.into(),
            purpose: "走访".into(),
            note: "初次".into(),
            follow_up: None,
        };
        let mut h = household("hh-1", "1号楼");
        h.visits = vec![visit("u1", "王伟"), visit("u-chen", "陈红")];
        let registered = build_document(&h, &me, hlc(NOW - 1000), "reg").unwrap();
        // Each case edits the registered document once and pushes that one change.
        let try_edit = |edit: &dyn Fn(&mut Household)| {
            let mut doc = registered.clone();
            let stored = HashMap::from([(
                "hh-1".to_string(),
                stored_of("hh-1", DocKind::Household, Some("1号楼"), &mut doc),
            )]);
            let heads = doc.get_heads();
            let mut h: Household = autosurgeon::hydrate(&doc).unwrap();
            edit(&mut h);
            autosurgeon::reconcile(&mut doc, &h).unwrap();
            let new = commit_as_u1(&mut doc, &heads, NOW - 10, "correct visit");
            push(&c, req("hh-1", new), &stored, &HashMap::new())
        };

        assert!(try_edit(&|h| h.visits[0].note = "血压偏高".into()).is_ok());
        let m = message(try_edit(&|h| h.visits[1].note = "改别人的".into()));
        assert!(
            m.contains("correction of visit v-u-chen") && m.contains("another user"),
            "{m}"
        );
        let m = message(try_edit(&|h| h.visits[0].at = NOW - 100));
        assert!(m.contains("do not change"), "{m}");
        let m = message(try_edit(&|h| h.visits[0].by_name = "别人".into()));
        assert!(m.contains("do not change"), "{m}");
    }

    #[test]
    fn a_new_visit_must_be_the_callers_and_old_events_stay_as_they_were() {
        let c = caller("u1", "d1", Role::GridMember, &[]);
        let me = actor("u1", Role::GridMember);
        let mut doc =
            build_document(&household("hh-1", "1号楼"), &me, hlc(NOW - 1000), "reg").unwrap();
        let stored = HashMap::from([(
            "hh-1".to_string(),
            stored_of("hh-1", DocKind::Household, Some("1号楼"), &mut doc),
        )]);
        let heads = doc.get_heads();
        let mut h: Household = autosurgeon::hydrate(&doc).unwrap();
        h.visits.push(Visit {
            id: "v-1".into(),
            at: NOW - 10,
            by: "u-chen".into(),
            by_name: "陈红".into(),
            purpose: "走访".into(),
            note: String::new(),
            follow_up: None,
        });
        autosurgeon::reconcile(&mut doc, &h).unwrap();
        let new = commit_as_u1(&mut doc, &heads, NOW - 10, "add visit");
        let m = message(push(&c, req("hh-1", new), &stored, &HashMap::new()));
        assert!(m.contains("visit v-1") && m.contains("another user"), "{m}");

        // A task whose existing event is rewritten (its role made 社区书记).
        let order = event("ev-1", "order", "u1", Role::GridMember, NOW - 1000);
        let (ok, mut tdoc) = task_push(&c, &task("task-1", vec![order]), &me);
        assert!(ok.is_ok());
        let stored = HashMap::from([(
            "task-1".to_string(),
            stored_of("task-1", DocKind::Task, None, &mut tdoc),
        )]);
        let heads = tdoc.get_heads();
        let mut t: Task = autosurgeon::hydrate(&tdoc).unwrap();
        if let Some(e) = t.events.get_mut("ev-1") {
            e.role = Role::Secretary.as_str().into();
        }
        autosurgeon::reconcile(&mut tdoc, &t).unwrap();
        let new = commit_as_u1(&mut tdoc, &heads, NOW - 5, "edit");
        let m = message(push(&c, req("task-1", new), &stored, &HashMap::new()));
        assert!(m.contains("append-only"), "{m}");
    }

    #[test]
    fn a_record_may_name_only_a_household_the_caller_may_write() {
        let lou = caller("u1", "d1", Role::BuildingLeader, &["3号楼"]);
        let me = actor("u1", Role::BuildingLeader);
        let households = HashMap::from([
            ("hh-4".to_string(), household_at("g1", "4号楼")),
            ("hh-3".to_string(), household_at("g1", "3号楼")),
        ]);
        let mut doc = build_document(
            &record("rec-1", Some("3号楼"), Some("hh-4")),
            &me,
            hlc(NOW - 1000),
            "log",
        )
        .unwrap();
        let parsed = parse(&["d1".to_string()], req("rec-1", changes_of(&mut doc)), 10).unwrap();
        let applied = apply(parsed, &HashMap::new(), &HashSet::new()).unwrap();
        assert_eq!(applied.households_needed(), vec!["hh-4".to_string()]);
        let r = refusal(authorize_at(applied, &lou, &households, NOW));
        assert_eq!(r.kind, crate::error::RefusalKind::Forbidden);
        assert!(r.message.contains("4号楼"), "{}", r.message);
        let mut doc = build_document(
            &record("rec-2", Some("3号楼"), Some("hh-3")),
            &me,
            hlc(NOW - 1000),
            "log",
        )
        .unwrap();
        assert!(
            push(
                &lou,
                req("rec-2", changes_of(&mut doc)),
                &HashMap::new(),
                &households
            )
            .is_ok()
        );
    }

    #[test]
    fn a_record_about_a_household_that_moved_away_stays_editable_by_its_building_leader() {
        let lou = caller("u1", "d1", Role::BuildingLeader, &["3号楼"]);
        let me = actor("u1", Role::BuildingLeader);
        let mut doc = build_document(
            &record("rec-1", Some("3号楼"), Some("hh-1")),
            &me,
            hlc(NOW - 1000),
            "log",
        )
        .unwrap();
        let stored = HashMap::from([(
            "rec-1".to_string(),
            stored_of("rec-1", DocKind::Record, Some("3号楼"), &mut doc),
        )]);
        // Since the record was filed, hh-1 moved to 4号楼, and hh-4 is of 4号楼 too.
        let households = HashMap::from([
            ("hh-1".to_string(), household_at("g1", "4号楼")),
            ("hh-4".to_string(), household_at("g1", "4号楼")),
        ]);
        let filed = doc.get_heads();
        doc.put(automerge::ROOT, "place", "二楼楼道").unwrap();
        let edit = commit_as_u1(&mut doc, &filed, NOW - 500, "edit place");
        let plan = push(&lou, req("rec-1", edit), &stored, &households)
            .expect("editing one's own record is allowed after its household moved");
        assert_eq!(plan.docs[0].building.as_deref(), Some("3号楼"));
        // Naming another household of 4号楼 anew is still refused (the push carries the
        // edit above too: the server stored only the filing).
        doc.put(automerge::ROOT, "household", "hh-4").unwrap();
        let renamed = commit_as_u1(&mut doc, &filed, NOW - 400, "edit household");
        let r = refusal(push(&lou, req("rec-1", renamed), &stored, &households));
        assert_eq!(r.kind, crate::error::RefusalKind::Forbidden);
        assert!(r.message.contains("4号楼"), "{}", r.message);
    }

    #[test]
    fn a_record_or_task_may_name_only_a_household_of_its_own_grid() {
        let me = actor("u1", Role::GridMember);
        // The caller is 网格员 on both grids: only the grid of the household decides.
        let mut both = caller("u1", "d1", Role::GridMember, &[]);
        both.grants.push(GrantRow {
            user: "u1".into(),
            grid: "g2".into(),
            role: Role::GridMember,
            buildings: vec![],
        });
        let households = HashMap::from([
            ("hh-g2".to_string(), household_at("g2", "1号楼")),
            ("hh-g1".to_string(), household_at("g1", "1号楼")),
        ]);
        // A record of g1 naming a household of g2, with and without its own building.
        for building in [None, Some("1号楼")] {
            let mut doc = build_document(
                &record("rec-1", building, Some("hh-g2")),
                &me,
                hlc(NOW - 1000),
                "log",
            )
            .unwrap();
            let r = refusal(push(
                &both,
                req("rec-1", changes_of(&mut doc)),
                &HashMap::new(),
                &households,
            ));
            assert_eq!(r.kind, crate::error::RefusalKind::BadRequest);
            assert!(
                r.message.contains("household field") && r.message.contains("another grid"),
                "{}",
                r.message
            );
            assert!(!r.message.contains("hh-g2"), "{}", r.message);
        }
        // A task of g1 naming it.
        let order = event("ev-1", "order", "u1", Role::GridMember, NOW - 1000);
        let mut t = task("task-1", vec![order]);
        t.household = Some("hh-g2".into());
        let mut doc = build_document(&t, &me, hlc(NOW - 1000), "order task").unwrap();
        let r = refusal(push(
            &both,
            req("task-1", changes_of(&mut doc)),
            &HashMap::new(),
            &households,
        ));
        assert_eq!(r.kind, crate::error::RefusalKind::BadRequest);
        assert!(r.message.contains("household field"), "{}", r.message);
        // A household of g2 in the same push counts the same.
        let mut h = household("hh-new", "1号楼");
        h.address = Address::new("g2", "1号楼", "1单元", "101").unwrap();
        let mut hdoc = build_document(&h, &me, hlc(NOW - 1000), "reg").unwrap();
        let mut rdoc = build_document(
            &record("rec-2", None, Some("hh-new")),
            &me,
            hlc(NOW - 1000),
            "log",
        )
        .unwrap();
        let mut two = req("hh-new", changes_of(&mut hdoc));
        two.docs.extend(req("rec-2", changes_of(&mut rdoc)).docs);
        let r = refusal(push(&both, two, &HashMap::new(), &HashMap::new()));
        assert_eq!(r.kind, crate::error::RefusalKind::BadRequest);
        // The same grid's household passes.
        let mut doc = build_document(
            &record("rec-3", None, Some("hh-g1")),
            &me,
            hlc(NOW - 1000),
            "log",
        )
        .unwrap();
        assert!(
            push(
                &both,
                req("rec-3", changes_of(&mut doc)),
                &HashMap::new(),
                &households
            )
            .is_ok()
        );
    }

    // ----- item 4: sizes -----

    #[test]
    fn oversized_fields_unknown_root_keys_and_long_histories_are_refused() {
        let c = caller("u1", "d1", Role::GridMember, &[]);
        let me = actor("u1", Role::GridMember);
        let mut h = household("hh-1", "1号楼");
        h.visits.push(Visit {
            id: "v-1".into(),
            at: NOW - 10,
            by: "u1".into(),
            by_name: "王伟".into(),
            purpose: "走访".into(),
            note: "很".repeat(limits::TEXT + 1),
            follow_up: None,
        });
        let mut doc = build_document(&h, &me, hlc(NOW - 1000), "reg").unwrap();
        let m = message(push(
            &c,
            req("hh-1", changes_of(&mut doc)),
            &HashMap::new(),
            &HashMap::new(),
        ));
        assert!(
            m.contains("visit note") && m.contains("at most 2000"),
            "{m}"
        );

        let mut doc =
            build_document(&household("hh-2", "1号楼"), &me, hlc(NOW - 1000), "reg").unwrap();
        doc.put(automerge::ROOT, "junk", "x".repeat(1000)).unwrap();
        let m = message(push(
            &c,
            req("hh-2", commit_as_u1(&mut doc, &[], NOW - 5, "junk")),
            &HashMap::new(),
            &HashMap::new(),
        ));
        assert!(m.contains("no field \"junk\""), "{m}");

        // A Text of many operations in one change.
        let mut doc =
            build_document(&household("hh-3", "1号楼"), &me, hlc(NOW - 1000), "reg").unwrap();
        let note_obj = match doc.get(automerge::ROOT, "note").unwrap() {
            Some((_, id)) => id,
            None => panic!("a note"),
        };
        doc.splice_text(&note_obj, 0, 0, &"a".repeat(MAX_CHANGE_OPS + 1))
            .unwrap();
        doc.commit();
        let m = message(push(
            &c,
            req("hh-3", changes_of(&mut doc)),
            &HashMap::new(),
            &HashMap::new(),
        ));
        assert!(m.contains("operations"), "{m}");
    }

    #[test]
    fn lowered_caps_refuse_what_the_defaults_accept() {
        let c = caller("u1", "d1", Role::GridMember, &[]);
        let me = actor("u1", Role::GridMember);
        let mut h = household("hh-1", "1号楼");
        h.note = Text::with_value("很".repeat(600));
        let mut doc = build_document(&h, &me, hlc(NOW - 1000), "reg").unwrap();
        let changes = changes_of(&mut doc);
        let size = changes[0].len();
        let ops = Change::try_from(changes[0].as_slice()).unwrap().len();
        let saved = doc.save_nocompress().len();
        assert!(size > 1024 && ops > 600, "{size} bytes, {ops} ops");
        let run = |caps: Caps| -> Result<Plan, StoreError> {
            let parsed =
                parse_within(&["d1".to_string()], req("hh-1", changes.clone()), 10, &caps)?;
            assert_eq!(parsed.caps, caps);
            let applied = apply(parsed, &HashMap::new(), &HashSet::new())?;
            authorize_at(applied, &c, &HashMap::new(), NOW)
        };
        assert!(run(Caps::DEFAULT).is_ok());
        assert!(
            push(
                &c,
                req("hh-1", changes.clone()),
                &HashMap::new(),
                &HashMap::new()
            )
            .is_ok()
        );
        let r = refusal(run(Caps {
            change_bytes: size - 1,
            ..Caps::DEFAULT
        }));
        assert_eq!(r.kind, crate::error::RefusalKind::BadRequest);
        assert!(
            r.message.contains(&format!("at most {}", size - 1)),
            "{}",
            r.message
        );
        let r = refusal(run(Caps {
            change_ops: ops - 1,
            ..Caps::DEFAULT
        }));
        assert!(r.message.contains("operations"), "{}", r.message);
        let r = refusal(run(Caps {
            doc_ops: 100,
            ..Caps::DEFAULT
        }));
        assert!(r.message.contains("past 100 operations"), "{}", r.message);
        let r = refusal(run(Caps {
            doc_bytes: saved - 1,
            ..Caps::DEFAULT
        }));
        assert_eq!(r.kind, crate::error::RefusalKind::TooLarge);
        assert!(r.message.contains("bytes"), "{}", r.message);
        // What an operator may not set.
        assert!(Caps::DEFAULT.validate().is_ok());
        for bad in [
            Caps {
                change_bytes: 0,
                ..Caps::DEFAULT
            },
            Caps {
                doc_bytes: MAX_CHANGE_BYTES - 1,
                ..Caps::DEFAULT
            },
            Caps {
                change_ops: 600_000,
                ..Caps::DEFAULT
            },
            Caps {
                doc_bytes: (crate::storage::PAGE_MAX_BYTES + 1) as usize,
                ..Caps::DEFAULT
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    // ----- item 5: errors name the field, never the value -----

    #[test]
    fn a_refused_id_number_or_phone_is_not_echoed() {
        let c = caller("u1", "d1", Role::GridMember, &[]);
        let me = actor("u1", Role::GridMember);
        for (id_number, phone) in [
            (Some("11010519491231002x"), None), // not the normal form (lower-case x)
            (Some("110105194912310021"), None), // wrong check digit
            (None, Some("+86 138-0013-8000")),  // not the normal form
            (None, Some("23800138000")),        // not a mobile number
        ] {
            let mut h = household("hh-1", "1号楼");
            h.members.push(Member {
                id: "m-1".into(),
                name: "王秀英".into(),
                gender: Gender::Female,
                birth_year: 1949,
                phone: phone.map(str::to_string),
                id_number: id_number.map(str::to_string),
                relation: Relation::Head,
                tags: vec![],
                status: None,
            });
            let mut doc = build_document(&h, &me, hlc(NOW - 1000), "reg").unwrap();
            let m = message(push(
                &c,
                req("hh-1", changes_of(&mut doc)),
                &HashMap::new(),
                &HashMap::new(),
            ));
            let value = id_number.or(phone).unwrap();
            assert!(!m.contains(value), "{m}");
            assert!(!m.contains("1101051949") && !m.contains("0013"), "{m}");
            assert!(
                m.contains(if id_number.is_some() {
                    "id_number"
                } else {
                    "phone"
                }),
                "{m}"
            );
        }
    }
}
