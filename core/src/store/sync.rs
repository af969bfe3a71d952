//! The store's side of sync: bootstrap bundles, purging a grid, escalations recorded
//! offline, credentials, granted grids and the sync status. The engine that uses these is
//! `crate::sync::engine`.
//!
//! Sync state lives in the `meta` table under `sync.*` keys (text or JSON values), and
//! pending escalations in their own table (migration 3).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use automerge::AutoCommit;
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::status::K_REFUSED;
use super::{PROJECTION_VERSION, Rows, Store, TaskDetail, projection, rows_of};
use crate::doc::{self, DocKind};
use crate::error::{Error, Result};
use crate::model::{TaskAction, Tier};
use crate::sync::{Credentials, PendingEscalation, proto};

const K_CREDENTIALS: &str = "sync.credentials";
const K_GRANTS: &str = "sync.grants";
const K_SCOPE_BOOTSTRAPS: &str = "sync.scope_bootstraps";

/// The buildings a grant limits the device to: `None` for a whole-grid role.
fn grant_scope(g: &proto::Grant) -> Option<Vec<String>> {
    (g.role == crate::model::Role::BuildingLeader.as_str()).then(|| g.buildings.clone())
}

/// What applying a session's grants did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantChange {
    /// Documents removed because the narrowed grant no longer covers them.
    pub dropped_docs: u64,
    /// Local changes of those documents, kept aside.
    pub set_aside: u64,
}

/// Local changes of one document kept aside because the grant covering it was lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    pub doc: String,
    pub grid: String,
    pub reason: String,
    /// How many changes.
    pub changes: i64,
    /// When they were set aside.
    pub at_ms: i64,
}

/// Checks that shipped rows belong to document `id` of `kind` in `grid`.
fn check_rows(rows: &Rows, id: &str, kind: DocKind, grid: &str) -> Result<()> {
    let fail = |what: &str| {
        Err(Error::bad_doc(
            id,
            format!("bundle rows do not match the document: {what}"),
        ))
    };
    match (rows, kind) {
        (
            Rows::Household {
                household,
                residents,
            },
            DocKind::Household,
        ) => {
            if household.id != id || household.grid != grid {
                return fail("household id or grid");
            }
            if residents
                .iter()
                .any(|r| r.household != id || r.grid != grid)
            {
                return fail("resident household or grid");
            }
        }
        (Rows::Record(r), DocKind::Record) => {
            if r.id != id || r.grid != grid {
                return fail("record id or grid");
            }
        }
        (Rows::Task(t), DocKind::Task) => {
            if t.id != id || t.grid != grid {
                return fail("task id or grid");
            }
        }
        _ => return fail("rows of another kind"),
    }
    Ok(())
}

/// The newest time a document's rows carry (its last visit, its report, its creation), in
/// ms; 0 when none.
fn rows_time(rows: &Rows) -> i64 {
    match rows {
        Rows::Household { household, .. } => household.last_visit_at.unwrap_or(0),
        Rows::Record(r) => r.reported_at,
        Rows::Task(t) => t.created_at,
    }
}

/// Loads bundle bytes and computes the document's rows, checking its kind and grid.
fn rows_from_bytes(id: &str, kind: DocKind, grid: &str, bytes: &[u8]) -> Result<Rows> {
    let doc = crate::doc::load_doc(bytes).map_err(|e| Error::bad_doc(id, e))?;
    rows_checked(id, kind, grid, &doc)
}

fn rows_checked(id: &str, kind: DocKind, grid: &str, doc: &AutoCommit) -> Result<Rows> {
    match doc::kind_and_grid(doc) {
        Some((k, g)) if k == kind && g == grid => {}
        Some((k, g)) => {
            return Err(Error::bad_doc(
                id,
                format!(
                    "is a {} of grid {g}, the bundle says a {} of grid {grid}",
                    k.as_str(),
                    kind.as_str()
                ),
            ));
        }
        None => return Err(Error::bad_doc(id, "no kind or grid at the document root")),
    }
    rows_of(id, doc)?.ok_or_else(|| Error::bad_doc(id, "empty document"))
}

pub(super) fn meta_get<T: rusqlite::types::FromSql>(
    conn: &rusqlite::Connection,
    key: &str,
) -> Result<Option<T>> {
    Ok(conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get::<_, T>(0))
        .optional()?)
}

pub(super) fn meta_put(
    conn: &rusqlite::Connection,
    key: &str,
    value: &dyn rusqlite::ToSql,
) -> Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?
        .execute(params![key, value])?;
    Ok(())
}

pub(super) fn meta_json<T: serde::de::DeserializeOwned>(
    conn: &rusqlite::Connection,
    key: &str,
) -> Result<Option<T>> {
    match meta_get::<String>(conn, key)? {
        None => Ok(None),
        Some(s) => serde_json::from_str(&s)
            .map(Some)
            .map_err(|e| Error::NotXiuhuaDatabase(format!("meta {key} is malformed: {e}"))),
    }
}

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::invalid("json", e.to_string()))
}

impl Store {
    // ----- bootstrap -----

    /// Stores a grid's snapshot bundle in one transaction and sets the grid's pull cursor
    /// to the bundle's. When the bundle's projection version is this build's, the shipped
    /// rows are stored as they are and no document is loaded (the fast path); otherwise the
    /// rows are computed from the documents (parsed on all cores). A document this store
    /// already holds is merged with the bundle's bytes rather than replaced, so unpushed
    /// local changes are never lost. The whole bundle is refused (nothing written) when a
    /// document's kind is unknown, its rows or contents name another grid or document, or
    /// it is already stored under another grid. Returns how many documents were stored.
    pub fn import_bundle(&mut self, bundle: &proto::Bundle) -> Result<usize> {
        self.import_bundle_page(bundle, Some(bundle.cursor))
    }

    /// [`Store::import_bundle`] for one page of a paged bootstrap: stores the page's
    /// documents the same way, and sets the grid's pull cursor to `set_cursor` when given
    /// (the last page, with the first page's cursor), else leaves it as it is.
    pub fn import_bundle_page(
        &mut self,
        bundle: &proto::Bundle,
        set_cursor: Option<u64>,
    ) -> Result<usize> {
        let grid = bundle.grid.as_str();
        if grid.is_empty() || grid.chars().count() > 64 {
            return Err(Error::invalid(
                "grid",
                "the bundle's grid is empty or too long",
            ));
        }
        let mut kinds = Vec::with_capacity(bundle.docs.len());
        for d in &bundle.docs {
            if d.id.is_empty() || d.id.len() > 200 {
                return Err(Error::invalid("doc", "document id is empty or too long"));
            }
            let kind = DocKind::parse(&d.kind)
                .ok_or_else(|| Error::bad_doc(&d.id, format!("unknown kind {:?}", d.kind)))?;
            kinds.push(kind);
        }
        let ship_rows = bundle.projection_version == PROJECTION_VERSION;
        let computed: Option<Vec<Rows>> = if ship_rows {
            for (d, kind) in bundle.docs.iter().zip(&kinds) {
                check_rows(&d.rows, &d.id, *kind, grid)?;
            }
            None
        } else {
            Some(compute_rows_parallel(bundle, &kinds)?)
        };

        // The first large grid on this device trains the store's compression dictionary;
        // new documents are then stored compressed with it (parsed on all cores).
        if !self.codec.has_dict() {
            let samples: Vec<&[u8]> = bundle.docs.iter().map(|d| d.bytes.as_slice()).collect();
            self.codec.train(&self.conn, &samples)?;
        }
        let stored_bytes = compress_parallel(&self.codec, bundle)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Documents already here (none on a fresh device): one scan instead of a lookup each.
        let held: HashMap<String, String> = {
            let mut stmt = tx.prepare("SELECT id, grid FROM docs")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut n = 0;
        // The newest time the documents carry feeds the clock (as pulled changes do).
        let mut newest: i64 = 0;
        for (i, (d, kind)) in bundle.docs.iter().zip(&kinds).enumerate() {
            match held.get(&d.id) {
                Some(g) if g.as_str() != grid => {
                    return Err(Error::bad_doc(
                        &d.id,
                        format!("is stored here under grid {g}, the bundle is of grid {grid}"),
                    ));
                }
                Some(_) => {
                    // Merge: the local document may hold changes the server does not have yet.
                    let (mut local, _, _) = Self::load_doc_from_db(&tx, &self.codec, &d.id)?
                        .ok_or_else(|| Error::NotFound(d.id.clone()))?;
                    local
                        .load_incremental(&d.bytes)
                        .map_err(|e| Error::bad_doc(&d.id, e))?;
                    let rows = rows_checked(&d.id, *kind, grid, &local)?;
                    newest = newest.max(rows_time(&rows));
                    tx.prepare_cached("UPDATE docs SET snapshot = ?2, chunks = 0 WHERE id = ?1")?
                        .execute(params![d.id, self.codec.save(&mut local)?])?;
                    tx.prepare_cached("DELETE FROM doc_chunks WHERE doc = ?1")?
                        .execute([&d.id])?;
                    projection::write_rows(&tx, &rows, true)?;
                }
                None => {
                    tx.prepare_cached("INSERT INTO docs (id, kind, grid, snapshot, chunks) VALUES (?1, ?2, ?3, ?4, 0)")?
                        .execute(params![
                            d.id,
                            kind.as_str(),
                            grid,
                            stored_bytes.get(i).and_then(|b| b.as_deref()).unwrap_or(d.bytes.as_slice())
                        ])?;
                    let rows = match &computed {
                        Some(rows) => rows
                            .get(i)
                            .ok_or_else(|| Error::bad_doc(&d.id, "rows missing"))?,
                        None => &d.rows,
                    };
                    newest = newest.max(rows_time(rows));
                    // A new document has no rows yet (rows only exist beside their document).
                    projection::write_rows(&tx, rows, false)?;
                }
            }
            n += 1;
        }
        if let Some(cursor) = set_cursor {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO sync_cursors (grid, cursor) VALUES (?1, ?2)",
            )?
            .execute(params![grid, cursor.to_string()])?;
        }
        let mut clock = self.clock;
        if let Ok(ms) = u64::try_from(newest) {
            clock.observe(crate::hlc::Hlc::new(ms, 0), (self.time)());
        }
        Self::save_clock(&tx, &clock)?;
        tx.commit()?;
        self.clock = clock;
        for d in &bundle.docs {
            self.cache.remove(&d.id);
        }
        Ok(n)
    }

    /// How many documents of `grid` this store holds.
    pub fn grid_doc_count(&self, grid: &str) -> Result<i64> {
        Ok(self
            .conn
            .prepare_cached("SELECT count(*) FROM docs WHERE grid = ?1")?
            .query_row([grid], |r| r.get(0))?)
    }

    /// The grid of a stored document.
    pub(crate) fn doc_grid(&self, id: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached("SELECT grid FROM docs WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?)
    }

    // ----- repair -----

    /// A copy of document `id` as stored here (an empty document when it is not here yet).
    fn repair_copy(&mut self, id: &str) -> Result<AutoCommit> {
        match self.take_doc(id) {
            Ok((doc, _, _)) => {
                let copy = doc.clone();
                self.cache_put(id.to_string(), doc);
                Ok(copy)
            }
            Err(Error::NotFound(_)) => Ok(AutoCommit::new()),
            Err(e) => Err(e),
        }
    }

    /// The next Automerge sync message for document `id` as it is here, for `/v1/repair`;
    /// none when `state` says the peer is in sync. The document is not changed.
    pub fn repair_message(
        &mut self,
        id: &str,
        state: &mut automerge::sync::State,
    ) -> Result<Option<Vec<u8>>> {
        use automerge::sync::SyncDoc;
        let mut copy = self.repair_copy(id)?;
        Ok(copy
            .sync()
            .generate_sync_message(state)
            .map(automerge::sync::Message::encode))
    }

    /// Applies a sync message received for document `id` (a `/v1/repair` reply): the
    /// changes it carries that are new here are applied through [`Store::apply_remote`] in
    /// one transaction, so the projection rows, held changes and clock stay consistent (and
    /// nothing enters the outbox: they are the server's changes). `None` when the message
    /// carried no changes at all.
    pub fn apply_repair_message(
        &mut self,
        id: &str,
        state: &mut automerge::sync::State,
        message: &[u8],
    ) -> Result<Option<super::MergeReport>> {
        use automerge::sync::SyncDoc;
        let msg = automerge::sync::Message::decode(message)
            .map_err(|e| Error::bad_doc(id, format!("not an Automerge sync message: {e}")))?;
        let carried = !msg.changes.is_empty();
        let mut copy = self.repair_copy(id)?;
        let before = copy.get_heads();
        copy.sync()
            .receive_sync_message(state, msg)
            .map_err(|e| Error::bad_doc(id, format!("sync message refused: {e}")))?;
        if !carried {
            return Ok(None);
        }
        let changes: Vec<super::RemoteChange> = copy
            .get_changes(&before)
            .into_iter()
            .map(|c| super::RemoteChange {
                doc: id.to_string(),
                change: c.raw_bytes().to_vec(),
            })
            .collect();
        if changes.is_empty() {
            return Ok(Some(super::MergeReport::default()));
        }
        self.apply_remote(&changes).map(Some)
    }

    // ----- purge -----

    /// Deletes everything this device holds of `grid` (the device was revoked): documents,
    /// chunks, projection rows, outbox entries, held changes, pending escalations and the
    /// cursor, in one transaction; the grid leaves the granted list. Returns how many
    /// documents were deleted.
    pub fn purge_grid(&mut self, grid: &str) -> Result<usize> {
        self.purge_grid_with(grid, None).map(|(docs, _)| docs)
    }

    /// Like [`Store::purge_grid`] for a grid whose *grant* was lost (the device is still
    /// good): the outbox entries of the grid are moved aside ([`Store::set_aside`]) in the
    /// same transaction instead of deleted, so the work is not lost. Returns (documents
    /// deleted, changes set aside).
    pub fn drop_grid(&mut self, grid: &str) -> Result<(usize, usize)> {
        self.purge_grid_with(grid, Some("the grant of this grid was withdrawn"))
    }

    fn purge_grid_with(&mut self, grid: &str, keep_work: Option<&str>) -> Result<(usize, usize)> {
        let now = self.now_ms();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let ids: Vec<String> = tx
            .prepare("SELECT id FROM docs WHERE grid = ?1")?
            .query_map([grid], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        projection::delete_search_of_grid(&tx, grid)?;
        let set_aside = match keep_work {
            Some(reason) => tx.execute(
                "INSERT INTO set_aside (doc, grid, hash, change, reason, at_ms)
                 SELECT doc, grid, hash, change, ?2, ?3 FROM outbox WHERE grid = ?1 ORDER BY id",
                params![grid, reason, now],
            )?,
            None => 0,
        };
        tx.execute(
            "DELETE FROM doc_chunks WHERE doc IN (SELECT id FROM docs WHERE grid = ?1)",
            [grid],
        )?;
        tx.execute(
            "DELETE FROM pending_changes WHERE doc IN (SELECT id FROM docs WHERE grid = ?1)",
            [grid],
        )?;
        for table in [
            "households",
            "residents",
            "records",
            "tasks",
            "outbox",
            "pending_escalations",
            "sync_cursors",
            "people",
            "docs",
        ] {
            tx.execute(&format!("DELETE FROM {table} WHERE grid = ?1"), [grid])?;
        }
        let grants: Vec<proto::Grant> = meta_json(&tx, K_GRANTS)?.unwrap_or_default();
        if grants.iter().any(|g| g.grid == grid) {
            let kept: Vec<&proto::Grant> = grants.iter().filter(|g| g.grid != grid).collect();
            meta_put(&tx, K_GRANTS, &to_json(&kept)?)?;
        }
        let refused: Vec<(String, String)> = meta_json(&tx, K_REFUSED)?.unwrap_or_default();
        if refused.iter().any(|(d, _)| ids.contains(d)) {
            let kept: Vec<&(String, String)> =
                refused.iter().filter(|(d, _)| !ids.contains(d)).collect();
            meta_put(&tx, K_REFUSED, &to_json(&kept)?)?;
        }
        tx.commit()?;
        for id in &ids {
            self.cache.remove(id);
        }
        Ok((ids.len(), set_aside))
    }

    /// Removes from this phone the documents of `grid` a 楼门长's narrowed grant no longer
    /// covers (their building, or their household's, is not one of `keep`); their outbox
    /// entries are set aside, not lost. One transaction. Returns (documents removed,
    /// changes set aside).
    pub fn drop_out_of_scope(&mut self, grid: &str, keep: &[String]) -> Result<(usize, usize)> {
        let now = self.now_ms();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let docs: Vec<(String, Option<String>)> = tx
            .prepare(
                "SELECT d.id, COALESCE(h.building, r.building, rh.building, th.building)
                 FROM docs d
                 LEFT JOIN households h ON h.id = d.id
                 LEFT JOIN records r ON r.id = d.id
                 LEFT JOIN tasks t ON t.id = d.id
                 LEFT JOIN households rh ON rh.id = r.household
                 LEFT JOIN households th ON th.id = t.household
                 WHERE d.grid = ?1",
            )?
            .query_map([grid], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let gone: Vec<String> = docs
            .into_iter()
            .filter(|(_, b)| !b.as_ref().is_some_and(|b| keep.contains(b)))
            .map(|(id, _)| id)
            .collect();
        let set_aside = drop_docs(
            &tx,
            &gone,
            "the grant no longer covers this document's building",
            now,
        )?;
        tx.commit()?;
        for id in &gone {
            self.cache.remove(id);
        }
        Ok((gone.len(), set_aside))
    }

    /// Local changes kept aside because their grant was lost, oldest first: never pushed,
    /// kept until [`Store::discard_set_aside`]. The station can recover them from the phone.
    pub fn set_aside(&self) -> Result<Vec<SetAside>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT doc, grid, reason, count(*), min(at_ms) FROM set_aside
             GROUP BY doc ORDER BY min(id)",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(SetAside {
                doc: r.get(0)?,
                grid: r.get(1)?,
                reason: r.get(2)?,
                changes: r.get(3)?,
                at_ms: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The raw changes kept aside for `doc` (Automerge change bytes, oldest first).
    pub fn set_aside_changes(&self, doc: &str) -> Result<Vec<Vec<u8>>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT change FROM set_aside WHERE doc = ?1 ORDER BY id")?;
        let rows = stmt.query_map([doc], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Forgets the changes kept aside for `doc` (the user confirmed). Returns how many.
    pub fn discard_set_aside(&mut self, doc: &str) -> Result<usize> {
        Ok(self
            .conn
            .execute("DELETE FROM set_aside WHERE doc = ?1", [doc])?)
    }

    // ----- grants follow the directory -----

    /// Takes the grants a sync's `/v1/session` answered and acts on what changed, for grids
    /// this phone holds: buildings taken off a 楼门长 (or a whole-grid role narrowed to
    /// 楼门长) remove the documents no longer covered ([`Store::drop_out_of_scope`]);
    /// buildings added (or a 楼门长 widened to a whole-grid role) queue a scope bootstrap
    /// ([`Store::scope_bootstrap`]), kept until it completes. Grids not held yet need
    /// nothing (the pull bootstraps them); grids no longer granted are purged by the
    /// server's `purge_grids` ([`Store::drop_grid`]). Then the grants are saved.
    pub fn apply_grants(&mut self, grants: &[proto::Grant]) -> Result<GrantChange> {
        let old = self.grants()?;
        let mut pending: BTreeMap<String, Vec<String>> =
            meta_json(&self.conn, K_SCOPE_BOOTSTRAPS)?.unwrap_or_default();
        let mut change = GrantChange::default();
        for g in grants {
            let held = self.sync_cursor(&g.grid)? > 0 || self.grid_doc_count(&g.grid)? > 0;
            if !held {
                pending.remove(&g.grid);
                continue;
            }
            let now = grant_scope(g);
            let was = match old.iter().find(|o| o.grid == g.grid) {
                Some(o) => grant_scope(o),
                // Held but not granted before (documents left from an earlier grant): bring
                // what the grant covers.
                None => Some(Vec::new()),
            };
            match (was, now) {
                (None, None) => {}
                (None, Some(keep)) => {
                    let (d, a) = self.drop_out_of_scope(&g.grid, &keep)?;
                    change.dropped_docs += d as u64;
                    change.set_aside += a as u64;
                    pending.remove(&g.grid);
                }
                (Some(_), None) => {
                    pending.insert(g.grid.clone(), Vec::new());
                }
                (Some(before), Some(keep)) => {
                    if before.iter().any(|b| !keep.contains(b)) {
                        let (d, a) = self.drop_out_of_scope(&g.grid, &keep)?;
                        change.dropped_docs += d as u64;
                        change.set_aside += a as u64;
                    }
                    let added: Vec<String> = keep
                        .iter()
                        .filter(|b| !before.contains(b))
                        .cloned()
                        .collect();
                    let entry = pending.entry(g.grid.clone());
                    match entry {
                        std::collections::btree_map::Entry::Occupied(mut o) => {
                            if !o.get().is_empty() {
                                let v = o.get_mut();
                                v.extend(added);
                                v.retain(|b| keep.contains(b));
                                v.sort();
                                v.dedup();
                                if v.is_empty() {
                                    o.remove();
                                }
                            }
                        }
                        std::collections::btree_map::Entry::Vacant(v) => {
                            if !added.is_empty() {
                                v.insert(added);
                            }
                        }
                    }
                }
            }
        }
        pending.retain(|grid, _| grants.iter().any(|g| &g.grid == grid));
        let tx = self.conn.transaction()?;
        meta_put(&tx, K_GRANTS, &to_json(&grants)?)?;
        meta_put(&tx, K_SCOPE_BOOTSTRAPS, &to_json(&pending)?)?;
        tx.commit()?;
        Ok(change)
    }

    /// The scope bootstrap waiting for `grid`: the buildings whose documents a sync
    /// fetches (empty: everything the grant covers), when one is queued.
    pub fn scope_bootstrap(&self, grid: &str) -> Result<Option<Vec<String>>> {
        let pending: BTreeMap<String, Vec<String>> =
            meta_json(&self.conn, K_SCOPE_BOOTSTRAPS)?.unwrap_or_default();
        Ok(pending.get(grid).cloned())
    }

    /// A scope bootstrap of `grid` for `buildings` completed: forget it (unless another
    /// one was queued meanwhile).
    pub fn complete_scope_bootstrap(&mut self, grid: &str, buildings: &[String]) -> Result<()> {
        let mut pending: BTreeMap<String, Vec<String>> =
            meta_json(&self.conn, K_SCOPE_BOOTSTRAPS)?.unwrap_or_default();
        if pending.get(grid).is_some_and(|b| b == buildings) {
            pending.remove(grid);
            meta_put(&self.conn, K_SCOPE_BOOTSTRAPS, &to_json(&pending)?)?;
        }
        Ok(())
    }

    // ----- escalation -----

    /// Escalates a task (grid → community → linked unit): records the `escalate` event
    /// like [`Store::task_action`] does and, in the same transaction, the request the next
    /// sync sends to the server's `/v1/escalate` before it pushes the event (the server
    /// refuses an `escalate` event above the tier it recorded). Returns the new state.
    pub fn escalate_task(
        &mut self,
        task: &str,
        tier: Tier,
        unit: Option<&str>,
    ) -> Result<TaskDetail> {
        let unit = unit
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string);
        self.task_action(task, TaskAction::Escalate { tier, unit })
    }

    /// Escalations recorded here and not yet accepted by the server, oldest first.
    pub fn pending_escalations(&self) -> Result<Vec<PendingEscalation>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, task, grid, tier, unit, outbox_id FROM pending_escalations ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(PendingEscalation {
                id: r.get(0)?,
                task: r.get(1)?,
                grid: r.get(2)?,
                tier: r.get(3)?,
                unit: r.get(4)?,
                outbox_id: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Forgets an escalation the server accepted.
    pub(crate) fn complete_escalation(&mut self, id: i64) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM pending_escalations WHERE id = ?1")?
            .execute([id])?;
        Ok(())
    }

    // ----- outbox paging -----

    /// Outbox entries with an id above `after`, oldest first, at most `limit`.
    pub(crate) fn outbox_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<crate::store::OutboxEntry>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, doc, grid, change FROM outbox WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(
            params![after, i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| {
                Ok(crate::store::OutboxEntry {
                    id: r.get(0)?,
                    doc: r.get(1)?,
                    grid: r.get(2)?,
                    change: r.get(3)?,
                })
            },
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Whether the outbox still holds entry `id`.
    pub(crate) fn outbox_contains(&self, id: i64) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM outbox WHERE id = ?1)")?
            .query_row([id], |r| r.get(0))?)
    }

    /// Whether `doc` has outbox entries with an id below `before`.
    pub(crate) fn outbox_has_before(&self, doc: &str, before: i64) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM outbox WHERE doc = ?1 AND id < ?2)")?
            .query_row(params![doc, before], |r| r.get(0))?)
    }

    // ----- credentials and grants -----

    /// Saves what the device needs to talk to its server. The credentials' device must be
    /// this store's actor device (the server pins Automerge actors to devices).
    pub fn save_credentials(&mut self, creds: &Credentials) -> Result<()> {
        if creds.device != self.actor.device {
            return Err(Error::invalid(
                "device",
                format!(
                    "the credentials are for device {}, this store acts as device {}",
                    creds.device, self.actor.device
                ),
            ));
        }
        let url = creds.server_url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Error::invalid(
                "server_url",
                "must start with https:// (or http:// on a trusted network)",
            ));
        }
        meta_put(&self.conn, K_CREDENTIALS, &to_json(creds)?)
    }

    /// The saved credentials, if the device is enrolled.
    pub fn credentials(&self) -> Result<Option<Credentials>> {
        meta_json(&self.conn, K_CREDENTIALS)
    }

    /// Replaces the tokens after a refresh (the old refresh token is revoked by then: this
    /// is written at once).
    pub fn save_tokens(&mut self, tokens: &proto::TokenResponse) -> Result<()> {
        let mut creds = self.credentials()?.ok_or(Error::NotEnrolled)?;
        creds.access_token = tokens.access_token.clone();
        creds.access_expires_ms = tokens.access_expires_ms;
        creds.refresh_token = tokens.refresh_token.clone();
        meta_put(&self.conn, K_CREDENTIALS, &to_json(&creds)?)
    }

    /// Forgets the credentials and grants (sign out). Documents stay.
    pub fn clear_credentials(&mut self) -> Result<()> {
        self.conn.execute(
            "DELETE FROM meta WHERE key IN (?1, ?2)",
            [K_CREDENTIALS, K_GRANTS],
        )?;
        Ok(())
    }

    /// Saves an enrollment answer for the store's current actor: credentials for
    /// `server_url` and the granted grids (see [`Store::save_enrollment`]).
    pub(super) fn save_enrollment_for_actor(
        &mut self,
        server_url: &str,
        enrolled: &proto::EnrollResponse,
    ) -> Result<()> {
        let creds = Credentials {
            server_url: server_url.trim().trim_end_matches('/').to_string(),
            device: enrolled.device.clone(),
            user: enrolled.user.clone(),
            user_name: enrolled.user_name.clone(),
            access_token: enrolled.tokens.access_token.clone(),
            access_expires_ms: enrolled.tokens.access_expires_ms,
            refresh_token: enrolled.tokens.refresh_token.clone(),
        };
        self.save_credentials(&creds)?;
        self.save_grants(&enrolled.grants)?;
        // The first block of numbers: a record logged before the first sync gets a real one.
        self.accept_number_blocks(&enrolled.number_blocks)?;
        // The server's time anchors the clock before the first write (a phone enrolled with
        // its clock at 1970 stamps its first visit right).
        if enrolled.server_time_ms > 0 {
            self.anchor_clock(enrolled.server_time_ms)?;
        }
        Ok(())
    }

    /// Replaces the grants the device knows of.
    pub fn save_grants(&mut self, grants: &[proto::Grant]) -> Result<()> {
        meta_put(&self.conn, K_GRANTS, &to_json(&grants)?)
    }

    /// The grants the device knows of (from its enrollment).
    pub fn grants(&self) -> Result<Vec<proto::Grant>> {
        Ok(meta_json(&self.conn, K_GRANTS)?.unwrap_or_default())
    }

    /// The grids a sync pulls: every granted grid and every grid pulled before, sorted.
    pub fn sync_grids(&self) -> Result<Vec<String>> {
        let mut grids: BTreeSet<String> = self.grants()?.into_iter().map(|g| g.grid).collect();
        let mut stmt = self.conn.prepare_cached("SELECT grid FROM sync_cursors")?;
        for g in stmt.query_map([], |r| r.get::<_, String>(0))? {
            grids.insert(g?);
        }
        Ok(grids.into_iter().collect())
    }
}

/// Removes documents `ids` in `tx` (bytes, chunks, held changes, projection rows, outbox
/// entries, pending escalations), moving their outbox entries to `set_aside` with `reason`
/// first, and forgets their refusals. Returns how many changes were set aside.
fn drop_docs(
    tx: &rusqlite::Transaction<'_>,
    ids: &[String],
    reason: &str,
    now: i64,
) -> Result<usize> {
    let mut set_aside = 0;
    for id in ids {
        set_aside += tx.execute(
            "INSERT INTO set_aside (doc, grid, hash, change, reason, at_ms)
             SELECT doc, grid, hash, change, ?2, ?3 FROM outbox WHERE doc = ?1 ORDER BY id",
            params![id, reason, now],
        )?;
        // A task's row goes first, through the projection: the record it was made from
        // shows its status without it.
        projection::delete_rows(tx, DocKind::Task, id)?;
        for (table, col) in [
            ("doc_chunks", "doc"),
            ("pending_changes", "doc"),
            ("households", "id"),
            ("residents", "household"),
            ("records", "id"),
            ("outbox", "doc"),
            ("pending_escalations", "task"),
            ("docs", "id"),
        ] {
            tx.execute(&format!("DELETE FROM {table} WHERE {col} = ?1"), [id])?;
        }
    }
    let refused: Vec<(String, String)> = meta_json(tx, K_REFUSED)?.unwrap_or_default();
    if refused.iter().any(|(d, _)| ids.contains(d)) {
        let kept: Vec<&(String, String)> =
            refused.iter().filter(|(d, _)| !ids.contains(d)).collect();
        meta_put(tx, K_REFUSED, &to_json(&kept)?)?;
    }
    Ok(set_aside)
}

/// Acts on what a pull page of `grid` says moved (in the page's transaction `tx`): the
/// documents of `grid` held here that moved out leave, with the records (without a building
/// of their own) and tasks here that name a leaving household, their outbox entries set
/// aside; changes held for a leaving document that is not here yet are dropped; the
/// documents that moved in join the repair queue (fetched whole from the server). Returns
/// (documents removed, changes set aside).
pub(super) fn apply_moves(
    tx: &rusqlite::Transaction<'_>,
    grid: &str,
    moves: &super::PulledMoves,
    now: i64,
) -> Result<(Vec<String>, usize)> {
    let mut gone: BTreeSet<String> = BTreeSet::new();
    {
        let mut held = tx.prepare_cached("SELECT kind FROM docs WHERE id = ?1 AND grid = ?2")?;
        let mut elsewhere =
            tx.prepare_cached("SELECT EXISTS (SELECT 1 FROM docs WHERE id = ?1)")?;
        let mut followers = tx.prepare_cached(
            "SELECT id FROM records WHERE grid = ?1 AND household = ?2 AND building IS NULL
             UNION SELECT id FROM tasks WHERE grid = ?1 AND household = ?2",
        )?;
        for id in &moves.moved_out {
            match held
                .query_row(params![id, grid], |r| r.get::<_, String>(0))
                .optional()?
            {
                Some(kind) => {
                    if kind == DocKind::Household.as_str() {
                        for f in
                            followers.query_map(params![grid, id], |r| r.get::<_, String>(0))?
                        {
                            gone.insert(f?);
                        }
                    }
                    gone.insert(id.clone());
                }
                None => {
                    if !elsewhere.query_row([id], |r| r.get::<_, bool>(0))? {
                        tx.prepare_cached("DELETE FROM pending_changes WHERE doc = ?1")?
                            .execute([id])?;
                    }
                }
            }
        }
    }
    let gone: Vec<String> = gone.into_iter().collect();
    let aside = drop_docs(
        tx,
        &gone,
        "the document moved out of this grant's buildings",
        now,
    )?;
    let mut queue: BTreeSet<String> = meta_json(tx, super::status::K_REPAIR)?.unwrap_or_default();
    let before = queue.clone();
    queue.retain(|d| !moves.moved_out.contains(d) && !gone.contains(d));
    queue.extend(
        moves
            .moved_in
            .iter()
            .filter(|d| !d.is_empty() && d.len() <= 200)
            .cloned(),
    );
    if queue != before {
        meta_put(tx, super::status::K_REPAIR, &to_json(&queue)?)?;
    }
    Ok((gone, aside))
}

/// Computes every bundle document's rows from its bytes, on all cores.
fn compute_rows_parallel(bundle: &proto::Bundle, kinds: &[DocKind]) -> Result<Vec<Rows>> {
    let grid = bundle.grid.as_str();
    let items: Vec<(&proto::BundleDoc, DocKind)> =
        bundle.docs.iter().zip(kinds.iter().copied()).collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let chunk = items.len().div_ceil(threads).max(1);
    let parts: Vec<Result<Vec<Rows>>> = std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|(d, kind)| rows_from_bytes(&d.id, *kind, grid, &d.bytes))
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::bad_doc("?", "parser thread panicked")))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(items.len());
    for p in parts {
        out.extend(p?);
    }
    Ok(out)
}

/// Each bundle document's bytes as the store keeps them (`None`: keep them as shipped).
fn compress_parallel(
    codec: &super::codec::Codec,
    bundle: &proto::Bundle,
) -> Result<Vec<Option<Vec<u8>>>> {
    if !codec.has_dict() {
        return Ok(vec![None; bundle.docs.len()]);
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let chunk = bundle.docs.len().div_ceil(threads).max(1);
    let parts: Vec<Result<Vec<Option<Vec<u8>>>>> = std::thread::scope(|s| {
        let handles: Vec<_> = bundle
            .docs
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(|d| codec.compress(&d.bytes)).collect()))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::bad_doc("?", "compression thread panicked")))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(bundle.docs.len());
    for p in parts {
        out.extend(p?);
    }
    Ok(out)
}
