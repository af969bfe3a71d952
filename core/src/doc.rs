//! The document layer: one Automerge document per household, record and task.
//!
//! Every change carries a small JSON message saying who made it, on which device, at which
//! hybrid-logical-clock time and what it was for; [`history`] reads them back. Field-level
//! concurrent values (two phones for one member) are found by [`field_conflicts`].

use automerge::{
    AutoCommit, ChangeHash, ObjType, ReadDoc, ScalarValue, Value, transaction::CommitOptions,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::hlc::Hlc;
use crate::model::Actor;

/// The three document kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DocKind {
    Household,
    Record,
    Task,
}

impl DocKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Household => "household",
            DocKind::Record => "record",
            DocKind::Task => "task",
        }
    }
    pub fn parse(s: &str) -> Option<DocKind> {
        match s {
            "household" => Some(DocKind::Household),
            "record" => Some(DocKind::Record),
            "task" => Some(DocKind::Task),
            _ => None,
        }
    }
    /// Id prefix of new documents of this kind.
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            DocKind::Household => "hh",
            DocKind::Record => "rec",
            DocKind::Task => "task",
        }
    }
}

/// The message stored with every Automerge change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeNote {
    /// User id.
    #[serde(rename = "u")]
    pub user: String,
    /// User's display name.
    #[serde(rename = "n")]
    pub name: String,
    #[serde(rename = "d")]
    pub device: String,
    /// Hybrid-logical-clock time of the change.
    #[serde(rename = "h")]
    pub hlc: i64,
    /// What the change was for, e.g. "add visit".
    #[serde(rename = "w")]
    pub what: String,
}

/// One entry of a document's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Hex change hash.
    pub change: String,
    pub user: String,
    pub name: String,
    pub device: String,
    /// ms since the epoch (from the change's HLC).
    pub at_ms: i64,
    pub what: String,
    /// What the change changed, field by field (empty for the change that created the
    /// document: everything was new).
    pub fields: Vec<FieldChange>,
}

/// One field a change changed: its path (`members[张三].phone`, `description`, `tags`) and
/// its value before and after (`None`: absent). ID numbers are masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    pub field: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// Text indices in our documents count UTF-8 bytes: autosurgeon's `Text::update` and
/// `splice` compute byte offsets, so every document instance must use this encoding or an
/// edit of Chinese text lands in the wrong place.
pub const TEXT_ENCODING: automerge::TextEncoding = automerge::TextEncoding::Utf8CodeUnit;

/// A new, empty document whose changes are made by `device`.
pub fn new_doc(device: &str) -> AutoCommit {
    AutoCommit::new_with_encoding(TEXT_ENCODING).with_actor(actor_id(device))
}

/// Loads a document's saved bytes (a full save, optionally followed by incremental chunks).
pub fn load_doc(bytes: &[u8]) -> std::result::Result<AutoCommit, automerge::AutomergeError> {
    AutoCommit::load_with_options(
        bytes,
        automerge::LoadOptions::new().text_encoding(TEXT_ENCODING),
    )
}

/// The Automerge actor id used for a device: its id's bytes. The server pins actor ids to
/// devices, so a change can be traced to the device that made it.
pub fn actor_id(device: &str) -> automerge::ActorId {
    automerge::ActorId::from(device.as_bytes())
}

fn device_of(actor: &automerge::ActorId) -> String {
    match std::str::from_utf8(actor.to_bytes()) {
        Ok(s) => s.to_string(),
        Err(_) => actor.to_hex_string(),
    }
}

/// Commits the open transaction of `doc` with the change note. Returns the new change's hash,
/// or `None` when the edit changed nothing.
pub(crate) fn commit(
    doc: &mut AutoCommit,
    actor: &Actor,
    hlc: Hlc,
    what: &str,
) -> Option<ChangeHash> {
    let note = ChangeNote {
        user: actor.user.clone(),
        name: actor.name.clone(),
        device: actor.device.clone(),
        hlc: hlc.as_i64(),
        what: what.to_string(),
    };
    let message = serde_json::to_string(&note).unwrap_or_default();
    let seconds = i64::try_from(hlc.wall_ms() / 1000).unwrap_or(i64::MAX);
    doc.commit_with(
        CommitOptions::default()
            .with_message(message)
            .with_time(seconds),
    )
}

/// The kind, and the grid the document belongs to, read from its root.
pub fn kind_and_grid(doc: &AutoCommit) -> Option<(DocKind, String)> {
    let kind = match doc.get(automerge::ROOT, "kind").ok().flatten()? {
        (Value::Scalar(s), _) => match s.as_ref() {
            ScalarValue::Str(s) => DocKind::parse(s)?,
            _ => return None,
        },
        _ => return None,
    };
    let grid = match kind {
        DocKind::Household => {
            let (_, addr) = doc.get(automerge::ROOT, "address").ok().flatten()?;
            scalar_str(doc, &addr, "grid")?
        }
        DocKind::Record | DocKind::Task => scalar_str(doc, &automerge::ROOT, "grid")?,
    };
    Some((kind, grid))
}

/// A string field of the root (`None` when absent, null or not a string).
pub fn root_str(doc: &AutoCommit, key: &str) -> Option<String> {
    scalar_str(doc, &automerge::ROOT, key)
}

fn scalar_str(doc: &AutoCommit, obj: &automerge::ObjId, key: &str) -> Option<String> {
    match doc.get(obj, key).ok().flatten()? {
        (Value::Scalar(s), _) => match s.as_ref() {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        },
        _ => None,
    }
}

/// Who, when, what and which fields, for every change of the document, oldest first (in
/// causal order). Each change's fields are the difference between the document at its
/// dependencies and at the change (Automerge's `diff`).
pub fn history(doc: &mut AutoCommit) -> Vec<HistoryEntry> {
    let changes: Vec<automerge::Change> = doc.get_changes(&[]);
    changes
        .into_iter()
        .map(|c| {
            let (hash, deps) = (c.hash(), c.deps().to_vec());
            let (message, device) = (c.message().map(str::to_string), device_of(c.actor_id()));
            let timestamp = c.timestamp();
            let fields = if deps.is_empty() {
                Vec::new()
            } else {
                field_changes(doc, &deps, &[hash])
            };
            let note = message
                .as_deref()
                .and_then(|m| serde_json::from_str::<ChangeNote>(m).ok());
            let change = hash.to_string();
            match note {
                Some(n) => HistoryEntry {
                    change,
                    at_ms: Hlc::from_i64(n.hlc).map_or(0, |h| h.wall_ms() as i64),
                    user: n.user,
                    name: n.name,
                    device: n.device,
                    what: n.what,
                    fields,
                },
                None => HistoryEntry {
                    change,
                    user: String::new(),
                    name: String::new(),
                    device,
                    at_ms: timestamp.saturating_mul(1000),
                    what: message.unwrap_or_default(),
                    fields,
                },
            }
        })
        .collect()
}

/// The fields that differ between the document at `before` and at `after`, each once, in
/// the order Automerge reports them.
pub fn field_changes(
    doc: &mut AutoCommit,
    before: &[ChangeHash],
    after: &[ChangeHash],
) -> Vec<FieldChange> {
    use automerge::PatchAction as A;
    let patches = doc.diff(before, after);
    let mut out: Vec<FieldChange> = Vec::new();
    for p in patches {
        let mut path: Vec<String> = p
            .path
            .iter()
            .map(|(parent, prop)| label(doc, parent, prop, after))
            .collect();
        // Where the old and new values are read: a key of the patched object, or the
        // patched object itself (text, lists).
        let at: Option<automerge::Prop> = match &p.action {
            A::PutMap { key, .. } | A::DeleteMap { key } => Some(automerge::Prop::Map(key.clone())),
            A::Increment { prop, .. } => Some(prop.clone()),
            A::SpliceText { .. } | A::Insert { .. } | A::PutSeq { .. } | A::DeleteSeq { .. } => {
                None
            }
            A::Conflict { .. } | A::Mark { .. } => continue,
        };
        let (old, new) = match &at {
            Some(prop) => {
                path.push(match prop {
                    automerge::Prop::Map(k) => k.clone(),
                    automerge::Prop::Seq(i) => format!("[{}]", i + 1),
                });
                (
                    render_at(doc, &p.obj, prop, before),
                    render_at(doc, &p.obj, prop, after),
                )
            }
            None => (
                render_obj(doc, &p.obj, before),
                render_obj(doc, &p.obj, after),
            ),
        };
        let field = path.join(".").replace(".[", "[");
        if out.iter().any(|f| f.field == field) {
            continue;
        }
        if old == new {
            continue;
        }
        let masked = field.ends_with("id_number");
        let mask = |v: Option<String>| {
            if masked {
                v.map(|s| crate::validate::mask_id(&s))
            } else {
                v
            }
        };
        out.push(FieldChange {
            field,
            old: mask(old),
            new: mask(new),
        });
    }
    out
}

/// A path segment people read: a map key as is; a list element by its `name` (a member),
/// else its position from 1.
fn label(
    doc: &AutoCommit,
    parent: &automerge::ObjId,
    prop: &automerge::Prop,
    heads: &[ChangeHash],
) -> String {
    match prop {
        automerge::Prop::Map(k) => k.clone(),
        automerge::Prop::Seq(i) => {
            let name = doc
                .get_at(parent, *i, heads)
                .ok()
                .flatten()
                .and_then(|(_, obj)| scalar_str_at(doc, &obj, "name", heads));
            match name {
                Some(n) => format!("[{n}]"),
                None => format!("[{}]", i + 1),
            }
        }
    }
}

fn scalar_str_at(
    doc: &AutoCommit,
    obj: &automerge::ObjId,
    key: &str,
    heads: &[ChangeHash],
) -> Option<String> {
    match doc.get_at(obj, key, heads).ok().flatten()? {
        (Value::Scalar(s), _) => match s.as_ref() {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        },
        _ => None,
    }
}

/// A value for people: a scalar as text, text as its content, a list of scalars joined
/// with 、, anything else by its size.
fn render_at(
    doc: &AutoCommit,
    obj: &automerge::ObjId,
    prop: &automerge::Prop,
    heads: &[ChangeHash],
) -> Option<String> {
    match doc.get_at(obj, prop.clone(), heads).ok().flatten()? {
        (Value::Scalar(s), _) => scalar_text(&s),
        (Value::Object(_), id) => render_obj(doc, &id, heads),
    }
}

fn scalar_text(s: &ScalarValue) -> Option<String> {
    match s {
        ScalarValue::Str(s) => Some(s.to_string()),
        ScalarValue::Int(n) | ScalarValue::Timestamp(n) => Some(n.to_string()),
        ScalarValue::Uint(n) => Some(n.to_string()),
        ScalarValue::F64(n) => Some(n.to_string()),
        ScalarValue::Boolean(b) => Some(b.to_string()),
        ScalarValue::Null => None,
        other => Some(other.to_string()),
    }
}

fn render_obj(doc: &AutoCommit, obj: &automerge::ObjId, heads: &[ChangeHash]) -> Option<String> {
    use automerge::ObjType;
    match doc.object_type(obj).ok()? {
        ObjType::Text => doc.text_at(obj, heads).ok(),
        ObjType::List => {
            let n = doc.length_at(obj, heads);
            let items: Vec<Option<String>> = (0..n)
                .map(|i| match doc.get_at(obj, i, heads).ok().flatten() {
                    Some((Value::Scalar(s), _)) => scalar_text(&s),
                    _ => None,
                })
                .collect();
            if items.iter().all(Option::is_some) {
                Some(items.into_iter().flatten().collect::<Vec<_>>().join("、"))
            } else {
                Some(format!("{n} 项"))
            }
        }
        ObjType::Map | ObjType::Table => Some(format!("{} 项", doc.length_at(obj, heads))),
    }
}

/// A field that holds several concurrent values after a merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldConflict {
    /// Path from the root, list elements named by their `id` field, e.g. `members/m-1/phone`.
    pub path: String,
    /// The competing values, the one currently shown (the winner by Automerge's rule) first.
    pub values: Vec<ConflictValue>,
}

/// One competing value of a [`FieldConflict`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictValue {
    /// The value as display text (`null` for an absent optional value).
    pub value: String,
    /// The device that wrote it.
    pub device: String,
}

/// Every map field with more than one concurrent value, walking maps and lists.
pub fn field_conflicts(doc: &AutoCommit) -> Vec<FieldConflict> {
    let mut out = Vec::new();
    walk(doc, &automerge::ROOT, String::new(), &mut out);
    out
}

fn walk(doc: &AutoCommit, obj: &automerge::ObjId, path: String, out: &mut Vec<FieldConflict>) {
    match doc.object_type(obj) {
        Ok(ObjType::Map) | Ok(ObjType::Table) => {
            for key in doc.keys(obj).collect::<Vec<_>>() {
                let p = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}/{key}")
                };
                let all = doc.get_all(obj, key.as_str()).unwrap_or_default();
                if all.len() > 1 {
                    let values = all
                        .iter()
                        .map(|(v, id)| ConflictValue {
                            value: display_value(v),
                            device: match id {
                                automerge::ObjId::Id(_, actor, _) => device_of(actor),
                                automerge::ObjId::Root => String::new(),
                            },
                        })
                        .collect();
                    out.push(FieldConflict {
                        path: p.clone(),
                        values,
                    });
                }
                if let Ok(Some((Value::Object(_), child))) = doc.get(obj, key.as_str()) {
                    walk(doc, &child, p, out);
                }
            }
        }
        Ok(ObjType::List) => {
            for (i, item) in doc.list_range(obj, ..).enumerate() {
                if let automerge::ValueRef::Object(_) = item.value {
                    let child = item.id();
                    let name = scalar_str(doc, &child, "id").unwrap_or_else(|| i.to_string());
                    let p = if path.is_empty() {
                        name
                    } else {
                        format!("{path}/{name}")
                    };
                    walk(doc, &child, p, out);
                }
            }
        }
        _ => {}
    }
}

fn display_value(v: &Value<'_>) -> String {
    match v {
        Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Str(s) => s.to_string(),
            ScalarValue::Null => "null".to_string(),
            other => other.to_string(),
        },
        Value::Object(t) => format!("<{t}>"),
    }
}

/// Resolves the object id of `path` (as produced by [`field_conflicts`]) and the last key.
pub(crate) fn resolve_path(doc: &AutoCommit, path: &str) -> Result<(automerge::ObjId, String)> {
    let segs: Vec<&str> = path.split('/').collect();
    let (last, parents) = segs
        .split_last()
        .ok_or_else(|| Error::invalid("path", "empty path"))?;
    let mut obj = automerge::ROOT;
    for seg in parents {
        obj = match doc.object_type(&obj) {
            Ok(ObjType::List) => doc
                .list_range(&obj, ..)
                .find(|item| scalar_str(doc, &item.id(), "id").as_deref() == Some(*seg))
                .map(|item| item.id())
                .ok_or_else(|| Error::NotFound(format!("{path}: no element {seg}")))?,
            _ => match doc.get(&obj, *seg) {
                Ok(Some((Value::Object(_), id))) => id,
                _ => return Err(Error::NotFound(format!("{path}: no field {seg}"))),
            },
        };
    }
    Ok((obj, (*last).to_string()))
}

/// Writes `value` (one of the competing values, already chosen) to the conflicting field,
/// which supersedes every concurrent value.
pub(crate) fn put_resolved(doc: &mut AutoCommit, path: &str, choice: usize) -> Result<()> {
    use automerge::transaction::Transactable;
    let (obj, key) = resolve_path(doc, path)?;
    let all = doc.get_all(&obj, key.as_str())?;
    if all.len() < 2 {
        return Err(Error::NotFound(format!("no conflict at {path}")));
    }
    let (value, _) = all.get(choice).ok_or_else(|| {
        Error::invalid(
            "choice",
            format!("{choice} is not one of the {} values", all.len()),
        )
    })?;
    match value {
        Value::Scalar(s) => doc.put(&obj, key.as_str(), s.as_ref().clone())?,
        Value::Object(_) => {
            return Err(Error::invalid(
                "path",
                format!("{path} holds an object; resolve its fields instead"),
            ));
        }
    }
    Ok(())
}

/// Builds a new document holding `value`, as one change by `actor` at `hlc`: what a store
/// does when a user creates a household, record or task, without a store. Used to make
/// documents elsewhere (a server seeding a grid, benchmarks).
pub fn build_document<T: autosurgeon::Reconcile>(
    value: &T,
    actor: &Actor,
    hlc: Hlc,
    what: &str,
) -> Result<AutoCommit> {
    let mut doc = new_doc(&actor.device);
    autosurgeon::reconcile(&mut doc, value).map_err(|e| Error::bad_doc("new", e))?;
    commit(&mut doc, actor, hlc, what);
    Ok(doc)
}
