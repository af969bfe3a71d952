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
//!    ([`Applied::households_needed`]), then [`authorize`]: grants by grid and building;
//! 4. write the [`Plan`]: the new changes with the next per-grid sequence numbers and each
//!    document's new bytes, heads and projection rows; or nothing if any step refused.

use std::collections::{BTreeSet, HashMap, HashSet};

use automerge::{AutoCommit, Change, ChangeHash, ReadDoc, ScalarValue, Value};
use xiuhua_core::doc::{DocKind, actor_id, kind_and_grid};
use xiuhua_core::model::{Household, Record, Task, Tier};
use xiuhua_core::store::{Rows, rows_of};
use xiuhua_core::sync::proto::PushRequest;
use xiuhua_core::validate;

use crate::access::Caller;
use crate::error::{Refusal, StoreError};

/// Longest document id accepted.
pub const MAX_DOC_ID: usize = 200;

/// The decoded changes of one document in a push.
#[derive(Debug)]
pub struct ParsedDoc {
    pub id: String,
    pub changes: Vec<Change>,
}

/// A decoded push.
#[derive(Debug)]
pub struct Parsed {
    pub docs: Vec<ParsedDoc>,
    /// Changes repeated inside the request itself.
    pub duplicates: u64,
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

/// Decodes a push and pins every change's actor to `device`.
pub fn parse(device: &str, req: PushRequest, max_changes: usize) -> Result<Parsed, Refusal> {
    let total: usize = req.docs.iter().map(|d| d.changes.len()).sum();
    if total > max_changes {
        return Err(Refusal::too_large(format!(
            "the push holds {total} changes; at most {max_changes} per request: send the outbox in smaller batches"
        )));
    }
    let actor = actor_id(device);
    let mut docs: Vec<ParsedDoc> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut seen: HashSet<ChangeHash> = HashSet::new();
    let mut duplicates = 0;
    for d in req.docs {
        if d.doc.is_empty() || d.doc.len() > MAX_DOC_ID || d.doc.chars().any(char::is_control) {
            return Err(Refusal::bad(format!(
                "document id {:?} is empty, longer than {MAX_DOC_ID} bytes or holds control characters",
                d.doc.chars().take(40).collect::<String>()
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
            let change = Change::try_from(bytes.as_slice()).map_err(|e| {
                Refusal::bad(format!(
                    "document {}: change #{i} is not an Automerge change: {e}",
                    d.doc
                ))
            })?;
            if change.actor_id() != &actor {
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
    Ok(Parsed { docs, duplicates })
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
    pub rows: Rows,
    pub bytes: Vec<u8>,
    pub heads: Vec<ChangeHash>,
    /// New changes (hash, bytes) in causal order.
    pub changes: Vec<(ChangeHash, Vec<u8>)>,
}

/// The result of [`apply`].
#[derive(Debug)]
pub struct Applied {
    pub docs: Vec<AppliedDoc>,
    /// Documents touched only by duplicates: (id, grid).
    pub unchanged: Vec<(String, String)>,
    pub duplicates: u64,
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
            .filter(|d| d.own_building.is_none() || d.kind == DocKind::Task)
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
    };
    // Documents are checked independently: a large push (a device uploading a whole grid)
    // is spread over the cores, results kept in request order.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let docs = parsed.docs;
    let outcomes: Vec<Result<(u64, Outcome), StoreError>> = if threads == 1 || docs.len() < 64 {
        docs.into_iter()
            .map(|pd| apply_one(pd, stored, known))
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
                            .map(|pd| apply_one(pd, stored, known))
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

/// Checks one document's changes; returns how many were duplicates and the outcome.
fn apply_one(
    pd: ParsedDoc,
    stored: &HashMap<String, StoredDoc>,
    known: &HashSet<ChangeHash>,
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
        let (own_building, household) = validate_model(&id, kind, &doc, before.as_ref())?;
        let rows = match rows_of(&id, &doc) {
            Ok(Some(r)) => r,
            Ok(None) => return Err(Refusal::bad(format!("document {id} is empty")).into()),
            Err(e) => {
                return Err(Refusal::bad(format!(
                    "document {id} is not a valid {}: {e}",
                    kind.as_str()
                ))
                .into());
            }
        };
        let changes = doc
            .get_changes(&heads_before)
            .iter()
            .map(|c| (c.hash(), c.raw_bytes().to_vec()))
            .collect();
        let heads = doc.get_heads();
        let bytes = doc.save_nocompress();
        Ok((
            duplicates,
            Outcome::Applied(Box::new(AppliedDoc {
                id,
                grid,
                kind,
                before,
                own_building,
                household,
                rows,
                bytes,
                heads,
                changes,
            })),
        ))
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
        Some(k) if DocKind::parse(&k).is_none() => {
            format!("document {id} has unknown kind {k:?}; expected household, record or task")
        }
        Some(k) => format!("document {id}: a {k} without a grid"),
    }
}

/// The model's validation of a hydrated document; returns its own building and the
/// household it refers to.
fn validate_model(
    id: &str,
    kind: DocKind,
    doc: &AutoCommit,
    before: Option<&StoredDoc>,
) -> Result<(Option<String>, Option<String>), StoreError> {
    let bad = |what: String| -> StoreError {
        Refusal::bad(format!(
            "document {id} is not a valid {}: {what}",
            kind.as_str()
        ))
        .into()
    };
    let same =
        |field: &str, v: &str, checked: xiuhua_core::Result<String>| -> Result<(), StoreError> {
            match checked {
                Ok(n) if n == v => Ok(()),
                Ok(n) => Err(bad(format!(
                    "{field} {v:?} is not in its normal form {n:?}"
                ))),
                Err(e) => Err(bad(e.to_string())),
            }
        };
    let check_id = |doc_field: &str| -> Result<(), StoreError> {
        if doc_field == id {
            Ok(())
        } else {
            Err(bad(format!("its id field says {doc_field:?}")))
        }
    };
    match kind {
        DocKind::Household => {
            let h: Household = autosurgeon::hydrate(doc).map_err(|e| bad(e.to_string()))?;
            check_id(&h.id)?;
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
                        "member {}: birth year {} is not plausible",
                        m.id, m.birth_year
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
            Ok((Some(a.building.clone()), None))
        }
        DocKind::Record => {
            let r: Record = autosurgeon::hydrate(doc).map_err(|e| bad(e.to_string()))?;
            check_id(&r.id)?;
            same(
                "reporter",
                &r.reporter,
                validate::name("reporter", &r.reporter),
            )?;
            if r.description.as_str().chars().count() > 2000 {
                return Err(bad("description longer than 2000 characters".into()));
            }
            let building = r.building.clone().filter(|b| !b.trim().is_empty());
            Ok((building, r.household.clone()))
        }
        DocKind::Task => {
            let t: Task = autosurgeon::hydrate(doc).map_err(|e| bad(e.to_string()))?;
            check_id(&t.id)?;
            same(
                "title",
                &t.title,
                validate::non_empty("title", &t.title, 100),
            )?;
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
            Ok((None, t.household.clone()))
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
    /// Whether this push registers the document.
    pub is_new: bool,
    /// `save_nocompress()` bytes.
    pub bytes: Vec<u8>,
    /// The heads, 32 bytes each, concatenated.
    pub heads: Vec<u8>,
    /// The projection rows (MessagePack of [`Rows`]).
    pub rows: Vec<u8>,
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

/// Resolves each document's building and checks the caller's write grants.
/// `households` gives the registered building of households the push does not hold.
pub fn authorize(
    applied: Applied,
    caller: &Caller,
    households: &HashMap<String, Option<String>>,
) -> Result<Plan, StoreError> {
    let in_push: HashMap<String, Option<String>> = applied
        .docs
        .iter()
        .filter(|d| d.kind == DocKind::Household)
        .map(|d| (d.id.clone(), d.own_building.clone()))
        .collect();
    let building_of_household = |h: &str| -> Option<String> {
        in_push
            .get(h)
            .cloned()
            .flatten()
            .or_else(|| households.get(h).cloned().flatten())
    };
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
        plan.grids.insert(d.grid.clone());
        plan.docs.push(PlannedDoc {
            rows: encode_rows(&d.rows)?,
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
