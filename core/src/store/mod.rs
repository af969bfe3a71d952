//! The local store: documents, projection, outbox and sync cursors in one SQLite file.
//!
//! **Invariant:** one user action is one SQLite transaction. The document change, its
//! projection rows, its outbox entry and the clock commit together or not at all; an
//! in-memory document touched by a failed action is dropped, so memory never runs ahead
//! of disk.

mod codec;
mod identity;
mod lists;
mod numbers;
mod open;
mod projection;
mod query;
pub(crate) mod schema;
mod status;
mod sync;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use automerge::{AutoCommit, Change, ChangeHash};
use autosurgeon::{Text, hydrate, reconcile};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

pub use identity::{DataOwner, SignedOut, UnsyncedWork};
pub use lists::*;
pub use numbers::NumberHit;
pub use projection::{
    HouseholdRow, Model, PROJECTION_VERSION, RecordRow, ResidentRow, Rows, TaskRow, rows_and_model,
    rows_of,
};
pub use query::*;
pub use schema::{APPLICATION_ID, SCHEMA_VERSION};
pub(crate) use status::FinishedSync;
pub use status::{LastSync, REFUSED_RETRY_SYNCS, REPAIR_AFTER_SYNCS, RefusedDoc};
pub use sync::{GrantChange, SetAside};

use crate::doc::{self, DocKind, FieldConflict, HistoryEntry};
use crate::error::{Error, Result};
use crate::hlc::{ClockState, Hlc};
use crate::model::*;
use crate::{task_act, validate, workflow};

/// After this many incremental chunks a document is compacted into one full save.
pub const MAX_CHUNKS: i64 = 16;
/// Documents kept loaded in memory for fast edits.
const CACHE_CAP: usize = 256;

/// A change received from elsewhere (the server, or another device in tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteChange {
    pub doc: String,
    /// One Automerge change, in its binary encoding.
    pub change: Vec<u8>,
}

/// What to append as a document's next incremental chunk.
pub(crate) enum Chunk<'a> {
    /// The one local change just made (its encoding is already at hand).
    Change(&'a [u8]),
    /// Everything after these heads (a merge may add several changes).
    After(&'a [ChangeHash]),
}

/// A local change waiting for a server's acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub id: i64,
    pub doc: String,
    pub grid: String,
    pub change: Vec<u8>,
}

/// What a merge did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeReport {
    /// Documents whose content changed, with their kind.
    pub changed: Vec<(String, DocKind)>,
    /// Changes applied now (including held ones whose dependencies arrived).
    pub applied: usize,
    /// Changes already present: ignored.
    pub duplicates: usize,
    /// Changes kept aside until the changes they depend on arrive.
    pub waiting: usize,
    /// Household fields that gained concurrent values with this merge.
    pub new_conflicts: Vec<(String, FieldConflict)>,
    /// Task events the fold now rejects that it did not before: (task, event id, reason).
    pub newly_rejected: Vec<(String, String, String)>,
    /// Documents removed because they moved out of this device's buildings
    /// ([`Store::apply_pulled_page`]), and their local changes set aside.
    pub dropped_docs: usize,
    pub set_aside: usize,
}

/// What a pull page says moved in or out of a building-scoped device's buildings
/// ([`crate::sync::proto::PullResponse::moved_out`], `moved_in`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PulledMoves {
    /// Documents to remove (with the records and tasks here that follow a removed
    /// household), their unpushed changes set aside.
    pub moved_out: Vec<String>,
    /// Documents to fetch whole from the server (queued for `/v1/repair`).
    pub moved_in: Vec<String>,
}

/// A household with everything the detail screen shows (ID numbers unmasked).
pub type HouseholdDetail = Household;

/// A task with its folded state.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskDetail {
    pub task: Task,
    pub view: workflow::TaskView,
    /// Past its deadline on the clock-anchored "now", while not done, closed or cancelled.
    pub overdue: bool,
}

/// What 点单 from a 民情 record asks for; the rest (grid, category, household, title and
/// description) comes from the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderFromRecord {
    pub level: Level,
    /// The task's title; the record's first words when `None` or blank.
    pub title: Option<String>,
    /// Named at creation: a 派单 event right after the order, as [`NewTask::assignee`].
    pub assignee: Option<String>,
    /// ms since the epoch.
    pub deadline: Option<i64>,
}

/// A 民情 record with the status it shows and the tasks made from it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordDetail {
    pub record: Record,
    /// Its own status raised by the tasks made from it ([`workflow::record_status_shown`]).
    pub shown: RecordStatus,
    /// The ids of the tasks held here that were made from it, oldest first.
    pub tasks: Vec<String>,
}

type TimeSource = Box<dyn Fn() -> i64 + Send>;

fn system_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One device's store. Not `Sync`: give each thread its own, or guard it with a mutex.
pub struct Store {
    conn: Connection,
    actor: Actor,
    clock: ClockState,
    time: TimeSource,
    cache: HashMap<String, AutoCommit>,
    codec: codec::Codec,
    /// This process's claim on the file; the last field, so released after `conn` closed.
    _open: open::OpenClaim,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("actor", &self.actor)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if absent) the store at `path`. A file that is not a Xiuhua store,
    /// or is corrupt, or comes from a newer app, is refused and left untouched.
    pub fn open(path: impl AsRef<Path>, actor: Actor) -> Result<Store> {
        let path = path.as_ref();
        let claim = open::OpenClaim::file(path)?;
        schema::check_existing(path, None)?;
        let mut conn = Connection::open(path)?;
        schema::init(&mut conn, SCHEMA_VERSION)?;
        Store::from_conn(conn, actor, claim)
    }

    /// Opens (creating if absent) a store encrypted at rest with SQLCipher. `key` comes from
    /// the platform keystore; a wrong key is [`Error::WrongKey`] and the file is untouched.
    pub fn open_encrypted(path: impl AsRef<Path>, key: &str, actor: Actor) -> Result<Store> {
        let path = path.as_ref();
        if key.is_empty() {
            return Err(Error::invalid("key", "the encryption key is empty"));
        }
        let claim = open::OpenClaim::file(path)?;
        schema::check_existing(path, Some(key))?;
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "key", key)?;
        schema::init(&mut conn, SCHEMA_VERSION)?;
        Store::from_conn(conn, actor, claim)
    }

    /// A store that lives in memory only (tests, previews).
    pub fn open_in_memory(actor: Actor) -> Result<Store> {
        let mut conn = Connection::open_in_memory()?;
        schema::init(&mut conn, SCHEMA_VERSION)?;
        Store::from_conn(conn, actor, open::OpenClaim::none())
    }

    #[cfg(test)]
    pub(crate) fn open_at_version(path: &Path, actor: Actor, version: i64) -> Result<Store> {
        let claim = open::OpenClaim::file(path)?;
        let mut conn = Connection::open(path)?;
        schema::init(&mut conn, version)?;
        Ok(Store {
            conn,
            actor,
            clock: ClockState::default(),
            time: Box::new(system_ms),
            cache: HashMap::new(),
            codec: codec::Codec::default(),
            _open: claim,
        })
    }

    fn from_conn(conn: Connection, actor: Actor, claim: open::OpenClaim) -> Result<Store> {
        let clock = conn
            .query_row("SELECT value FROM meta WHERE key = 'clock'", [], |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .optional()?
            .map(|b| {
                ClockState::from_bytes(&b)
                    .ok_or_else(|| Error::NotXiuhuaDatabase("clock state is malformed".into()))
            })
            .transpose()?
            .unwrap_or_default();
        let codec = codec::Codec::load(&conn)?;
        let mut store = Store {
            conn,
            actor,
            clock,
            time: Box::new(system_ms),
            cache: HashMap::new(),
            codec,
            _open: claim,
        };
        let version: Option<i64> = store
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'projection_version'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        if version != Some(PROJECTION_VERSION) {
            store.rebuild_projection()?;
        }
        Ok(store)
    }

    /// Who acts on this store.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// Replaces the device's wall clock (ms since the epoch); for tests and simulations.
    pub fn set_time_source(&mut self, f: impl Fn() -> i64 + Send + 'static) {
        self.time = Box::new(f);
    }

    /// The clock-anchored "now" in ms since the epoch (what overdue is measured against).
    pub fn now_ms(&self) -> i64 {
        i64::try_from(self.clock.now_ms((self.time)())).unwrap_or(i64::MAX)
    }

    /// The clock's persisted state.
    pub fn clock(&self) -> ClockState {
        self.clock
    }

    /// Whether the clock was ever anchored to a server's time (at enrollment or a sync).
    /// Until then stamps and "overdue" follow the device's own clock.
    pub fn clock_anchored(&self) -> bool {
        self.clock.is_anchored()
    }

    /// Anchors the clock to a server's time (done at every sync); also raises the last
    /// issued stamp to it, so no later stamp sorts before the anchor.
    pub fn anchor_clock(&mut self, server_ms: i64) -> Result<()> {
        let mut c = self.clock;
        c.anchor(server_ms, (self.time)());
        self.conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('clock', ?1)",
            [c.to_bytes()],
        )?;
        self.clock = c;
        Ok(())
    }

    // ----- documents on disk -----

    fn load_doc_from_db(
        conn: &Connection,
        codec: &codec::Codec,
        id: &str,
    ) -> Result<Option<(AutoCommit, DocKind, String)>> {
        let row: Option<(String, String, Vec<u8>)> = conn
            .prepare_cached("SELECT kind, grid, snapshot FROM docs WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        let Some((kind, grid, snapshot)) = row else {
            return Ok(None);
        };
        let kind = DocKind::parse(&kind)
            .ok_or_else(|| Error::bad_doc(id, format!("unknown kind {kind}")))?;
        let mut doc = if snapshot.is_empty() {
            AutoCommit::new_with_encoding(doc::TEXT_ENCODING)
        } else {
            doc::load_doc(&codec.decode(id, &snapshot)?).map_err(|e| Error::bad_doc(id, e))?
        };
        let mut stmt =
            conn.prepare_cached("SELECT bytes FROM doc_chunks WHERE doc = ?1 ORDER BY n")?;
        let chunks = stmt.query_map([id], |r| r.get::<_, Vec<u8>>(0))?;
        for chunk in chunks {
            doc.load_incremental(&chunk?)
                .map_err(|e| Error::bad_doc(id, e))?;
        }
        Ok(Some((doc, kind, grid)))
    }

    /// Takes a document out of the cache (or loads it). The caller puts it back with
    /// [`Store::cache_put`] only after its transaction committed.
    fn take_doc(&mut self, id: &str) -> Result<(AutoCommit, DocKind, String)> {
        if let Some(doc) = self.cache.remove(id) {
            let (kind, grid) =
                doc::kind_and_grid(&doc).ok_or_else(|| Error::bad_doc(id, "no kind or grid"))?;
            return Ok((doc, kind, grid));
        }
        let (doc, kind, grid) = Self::load_doc_from_db(&self.conn, &self.codec, id)?
            .ok_or_else(|| Error::NotFound(id.to_string()))?;
        Ok((
            doc.with_actor(doc::actor_id(&self.actor.device)),
            kind,
            grid,
        ))
    }

    fn cache_put(&mut self, id: String, doc: AutoCommit) {
        if self.cache.len() >= CACHE_CAP
            && let Some(k) = self.cache.keys().next().cloned()
        {
            self.cache.remove(&k);
        }
        self.cache.insert(id, doc);
    }

    /// Writes the document's new bytes: a chunk of what changed since `heads_before`, or a
    /// full save for a new document or when the chunks reach [`MAX_CHUNKS`].
    fn save_doc(
        tx: &Transaction<'_>,
        codec: &codec::Codec,
        id: &str,
        kind: DocKind,
        grid: &str,
        doc: &mut AutoCommit,
        chunk: Chunk<'_>,
    ) -> Result<()> {
        let chunks: Option<i64> = tx
            .prepare_cached("SELECT chunks FROM docs WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        match chunks {
            None => {
                tx.prepare_cached("INSERT INTO docs (id, kind, grid, snapshot, chunks) VALUES (?1, ?2, ?3, ?4, 0)")?
                    .execute(params![id, kind.as_str(), grid, codec.save(doc)?])?;
            }
            Some(n) if n + 1 >= MAX_CHUNKS => {
                tx.prepare_cached("UPDATE docs SET snapshot = ?2, chunks = 0 WHERE id = ?1")?
                    .execute(params![id, codec.save(doc)?])?;
                tx.prepare_cached("DELETE FROM doc_chunks WHERE doc = ?1")?
                    .execute([id])?;
            }
            Some(n) => {
                let chunk = match chunk {
                    Chunk::Change(bytes) => std::borrow::Cow::Borrowed(bytes),
                    Chunk::After(heads) => std::borrow::Cow::Owned(doc.save_after(heads)),
                };
                tx.prepare_cached("INSERT INTO doc_chunks (doc, n, bytes) VALUES (?1, ?2, ?3)")?
                    .execute(params![id, n + 1, chunk])?;
                tx.prepare_cached("UPDATE docs SET chunks = ?2 WHERE id = ?1")?
                    .execute(params![id, n + 1])?;
            }
        }
        Ok(())
    }

    fn save_clock(tx: &Transaction<'_>, clock: &ClockState) -> Result<()> {
        tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES ('clock', ?1)")?
            .execute([clock.to_bytes()])?;
        Ok(())
    }

    // ----- one user action -----

    fn tick(&mut self) -> Hlc {
        self.clock.tick((self.time)())
    }

    /// The actor as it acts on `grid`: with the role the user's grant gives on that grid when
    /// the device knows one (a user may be 网格员 on one grid and 社区工作者 on another; the
    /// server refuses an event signed with a role the author does not hold there), else the
    /// store's actor.
    fn actor_on(&self, grid: &str) -> Actor {
        self.actor_with(self.grant_on(grid).ok().flatten().as_ref())
    }

    /// The grant the device knows of on `grid`.
    fn grant_on(&self, grid: &str) -> Result<Option<crate::sync::proto::Grant>> {
        Ok(self.grants()?.into_iter().find(|g| g.grid == grid))
    }

    /// [`Store::actor_on`] with the grant already read.
    fn actor_with(&self, grant: Option<&crate::sync::proto::Grant>) -> Actor {
        let mut actor = self.actor.clone();
        if let Some(role) = grant.and_then(|g| Role::parse(&g.role).ok()) {
            actor.role = role;
        }
        actor
    }

    /// Refuses, before anything is saved, a write the server would refuse: a 楼门长's
    /// document outside their buildings ([`crate::access::write_refusal`], the server's
    /// message). A grid with no grant known here is left to the server.
    fn refuse_outside_scope(
        &self,
        id: &str,
        kind: DocKind,
        grid: &str,
        grant: Option<&crate::sync::proto::Grant>,
        rows: &Rows,
    ) -> Result<()> {
        let Some(g) = grant else {
            return Ok(());
        };
        let Ok(role) = Role::parse(&g.role) else {
            return Ok(());
        };
        if crate::access::write_scope(role, &g.buildings).is_none() {
            return Ok(());
        }
        let household_building = |h: &Option<String>| -> Result<Option<String>> {
            let Some(h) = h else { return Ok(None) };
            Ok(self
                .conn
                .prepare_cached("SELECT building FROM households WHERE id = ?1")?
                .query_row([h], |r| r.get(0))
                .optional()?)
        };
        let after = match rows {
            Rows::Household { household, .. } => Some(household.building.clone()),
            Rows::Record(r) => match &r.building {
                Some(b) => Some(b.clone()),
                None => household_building(&r.household)?,
            },
            Rows::Task(t) => household_building(&t.household)?,
        };
        let sql = match kind {
            DocKind::Household => "SELECT building FROM households WHERE id = ?1",
            DocKind::Record => {
                "SELECT coalesce(r.building, h.building) FROM records r
                 LEFT JOIN households h ON h.id = r.household WHERE r.id = ?1"
            }
            DocKind::Task => {
                "SELECT h.building FROM tasks t
                 LEFT JOIN households h ON h.id = t.household WHERE t.id = ?1"
            }
        };
        let before: Option<Option<String>> = self
            .conn
            .prepare_cached(sql)?
            .query_row([id], |r| r.get(0))
            .optional()?;
        let refusal = crate::access::write_refusal(
            id,
            grid,
            &self.actor.user,
            role,
            &g.buildings,
            after.as_deref(),
            before.as_ref().map(|b| b.as_deref()),
        );
        // A record placed in one of their buildings may name only a household of theirs.
        let household_refusal = || -> Result<Option<String>> {
            let Rows::Record(r) = rows else {
                return Ok(None);
            };
            if r.building.is_none() || r.household.is_none() {
                return Ok(None);
            }
            let b = household_building(&r.household)?;
            Ok(crate::access::write_refusal(
                id,
                grid,
                &self.actor.user,
                role,
                &g.buildings,
                b.as_deref(),
                None,
            ))
        };
        match refusal.map_or_else(household_refusal, |why| Ok(Some(why)))? {
            Some(why) => Err(Error::Refused(why)),
            None => Ok(()),
        }
    }

    fn new_id(&self, kind: DocKind, hlc: Hlc) -> String {
        format!("{}-{}-{:x}", kind.prefix(), self.actor.device, hlc.as_i64())
    }

    /// Runs one user action on document `id`: `edit` changes the document; then the change,
    /// the projection, the outbox entry and the clock commit in one transaction.
    fn act<R>(
        &mut self,
        id: &str,
        what: &str,
        edit: impl FnOnce(&mut AutoCommit, Hlc, &Actor) -> Result<(R, Option<Rows>)>,
    ) -> Result<R> {
        self.act_then(id, what, edit, |_, _, _| Ok(()))
    }

    /// [`Store::act`], running `after(tx, grid, outbox id)` inside the action's transaction.
    fn act_then<R>(
        &mut self,
        id: &str,
        what: &str,
        edit: impl FnOnce(&mut AutoCommit, Hlc, &Actor) -> Result<(R, Option<Rows>)>,
        after: impl FnOnce(&Transaction<'_>, &str, i64) -> Result<()>,
    ) -> Result<R> {
        let (mut doc, kind, grid) = self.take_doc(id)?;
        let saved_clock = self.clock;
        let hlc = self.tick();
        let result = self.act_on(&mut doc, id, kind, &grid, hlc, what, edit, after);
        match result {
            Ok(r) => {
                self.cache_put(id.to_string(), doc);
                Ok(r)
            }
            Err(e) => {
                self.clock = saved_clock;
                Err(e)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn act_on<R>(
        &mut self,
        doc: &mut AutoCommit,
        id: &str,
        kind: DocKind,
        grid: &str,
        hlc: Hlc,
        what: &str,
        edit: impl FnOnce(&mut AutoCommit, Hlc, &Actor) -> Result<(R, Option<Rows>)>,
        after: impl FnOnce(&Transaction<'_>, &str, i64) -> Result<()>,
    ) -> Result<R> {
        // The grant is read once per action: for the role it signs with and its scope.
        let grant = self.grant_on(grid)?;
        let actor = self.actor_with(grant.as_ref());
        let (r, rows) = edit(doc, hlc, &actor)?;
        if doc::commit(doc, &self.actor, hlc, what).is_none() {
            return Ok(r); // nothing changed: nothing to write
        }
        let (new_kind, new_grid) =
            doc::kind_and_grid(doc).ok_or_else(|| Error::bad_doc(id, "lost its kind or grid"))?;
        if new_kind != kind || new_grid != grid {
            return Err(Error::invalid(
                "grid",
                "a document cannot move to another grid or change kind",
            ));
        }
        // The rows come from the value the edit already hydrated, when it gives them.
        let rows = match rows {
            Some(rows) => rows,
            None => rows_of(id, doc)?.ok_or_else(|| Error::bad_doc(id, "empty after edit"))?,
        };
        self.refuse_outside_scope(id, kind, grid, grant.as_ref(), &rows)?;
        // The one new change is both the document's next chunk and the outbox entry.
        let change = doc
            .get_last_local_change()
            .ok_or_else(|| Error::bad_doc(id, "no local change after commit"))?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        Self::save_doc(
            &tx,
            &self.codec,
            id,
            kind,
            grid,
            doc,
            Chunk::Change(change.raw_bytes()),
        )?;
        projection::write_rows(&tx, &rows, true)?;
        tx.prepare_cached("INSERT INTO outbox (doc, grid, hash, change) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![
                id,
                grid,
                change.hash().0.to_vec(),
                change.raw_bytes()
            ])?;
        after(&tx, grid, tx.last_insert_rowid())?;
        Self::save_clock(&tx, &self.clock)?;
        tx.commit()?;
        Ok(r)
    }

    /// Creates a new document from a value: one transaction, like every action.
    #[allow(clippy::too_many_arguments)]
    fn create<T: autosurgeon::Reconcile>(
        &mut self,
        kind: DocKind,
        grid: &str,
        hlc: Hlc,
        what: &str,
        value: &T,
        rows: Rows,
        id: &str,
    ) -> Result<()> {
        self.create_then(kind, grid, hlc, what, value, rows, id, |_, _, _| Ok(()))
    }

    /// [`Store::create`], running `after(tx, grid, outbox id)` inside its transaction.
    #[allow(clippy::too_many_arguments)]
    fn create_then<T: autosurgeon::Reconcile>(
        &mut self,
        kind: DocKind,
        grid: &str,
        hlc: Hlc,
        what: &str,
        value: &T,
        rows: Rows,
        id: &str,
        after: impl FnOnce(&Transaction<'_>, &str, i64) -> Result<()>,
    ) -> Result<()> {
        let mut doc = doc::new_doc(&self.actor.device);
        let saved = self.clock;
        let fill = |doc: &mut AutoCommit, _: Hlc, _: &Actor| {
            reconcile(doc, value).map_err(|e| Error::bad_doc(id, e))?;
            Ok(((), Some(rows)))
        };
        match self.act_on(&mut doc, id, kind, grid, hlc, what, fill, after) {
            Ok(()) => {
                self.cache_put(id.to_string(), doc);
                Ok(())
            }
            Err(e) => {
                self.clock = saved;
                Err(e)
            }
        }
    }

    fn edit_household<R>(
        &mut self,
        id: &str,
        what: &str,
        f: impl FnOnce(&mut Household, Hlc, &Actor) -> Result<R>,
    ) -> Result<R> {
        // A local edit cannot create a conflict: only walk the document for conflicts when
        // it had some before (the edit may have settled one).
        let had_conflicts: i64 = self
            .conn
            .prepare_cached("SELECT conflicts FROM households WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?
            .unwrap_or(1);
        self.act(id, what, |doc, hlc, actor| {
            let mut h = Household::read_from(doc).map_err(|e| Error::bad_doc(id, e))?;
            let r = f(&mut h, hlc, actor)?;
            h.check_bounds()?;
            reconcile(doc, &h).map_err(|e| Error::bad_doc(id, e))?;
            let conflicts = if had_conflicts > 0 {
                doc::field_conflicts(doc).len() as i64
            } else {
                0
            };
            Ok((r, Some(projection::household_rows(&h, conflicts))))
        })
    }

    // ----- households -----

    /// Registers a household. Returns its id.
    pub fn create_household(&mut self, new: NewHousehold) -> Result<String> {
        let address = Address::new(
            &new.address.grid,
            &new.address.building,
            &new.address.unit,
            &new.address.room,
        )?;
        let hlc = self.tick();
        let id = self.new_id(DocKind::Household, hlc);
        let members = new
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| m.validate(format!("m-{}-{:x}-{i}", self.actor.device, hlc.as_i64())))
            .collect::<Result<Vec<_>>>()?;
        let h = Household {
            kind: DocKind::Household.as_str().into(),
            id: id.clone(),
            address,
            members,
            tags: dedup_tags(&new.tags),
            note: Text::with_value(new.note.trim()),
            visits: Vec::new(),
            created_at: hlc.wall_ms() as i64,
            created_by: self.actor.user.clone(),
            moved_out_at: None,
        };
        h.check_bounds()?;
        let grid = h.address.grid.clone();
        self.create(
            DocKind::Household,
            &grid,
            hlc,
            "register household",
            &h,
            projection::household_rows(&h, 0),
            &id,
        )?;
        Ok(id)
    }

    /// Adds a member; returns the member's id.
    pub fn add_member(&mut self, household: &str, member: NewMember) -> Result<String> {
        self.edit_household(household, "add member", |h, hlc, actor| {
            let m = member.validate(format!("m-{}-{:x}", actor.device, hlc.as_i64()))?;
            let id = m.id.clone();
            h.members.push(m);
            Ok(id)
        })
    }

    /// Replaces a member's fields (only the fields that differ are written, so concurrent
    /// edits of different fields merge cleanly).
    pub fn update_member(
        &mut self,
        household: &str,
        member_id: &str,
        member: NewMember,
    ) -> Result<()> {
        self.edit_household(household, "update member", |h, _, _| {
            let m = member_mut(h, household, member_id)?;
            let status = m.status;
            *m = member.validate(member_id.to_string())?;
            m.status = status;
            Ok(())
        })
    }

    /// Marks a member as moved out or deceased (or living here again). The member stays in
    /// the household's document, its history and the ledgers; the household's head count
    /// and the building lists count only those who live here.
    pub fn set_member_status(
        &mut self,
        household: &str,
        member_id: &str,
        status: MemberStatus,
    ) -> Result<()> {
        self.edit_household(household, "set member status", |h, _, _| {
            let m = member_mut(h, household, member_id)?;
            m.status = (status != MemberStatus::Living).then_some(status);
            Ok(())
        })
    }

    /// Marks the whole household as moved out of the grid (`true`, stamped with the
    /// device's clock) or back (`false`). It leaves the building lists and the visit
    /// coverage, and stays on record with its visits, records and tasks.
    pub fn set_household_moved_out(&mut self, household: &str, moved_out: bool) -> Result<()> {
        self.edit_household(household, "set moved out", |h, hlc, _| {
            h.moved_out_at = if moved_out {
                Some(h.moved_out_at.unwrap_or(hlc.wall_ms() as i64))
            } else {
                None
            };
            Ok(())
        })
    }

    /// Sets or clears one member's phone number.
    pub fn set_member_phone(
        &mut self,
        household: &str,
        member_id: &str,
        phone: Option<&str>,
    ) -> Result<()> {
        let phone = match phone.map(str::trim) {
            None | Some("") => None,
            Some(p) => Some(validate::mobile("phone", p)?),
        };
        self.edit_household(household, "set phone", |h, _, _| {
            let m = member_mut(h, household, member_id)?;
            m.phone = phone;
            Ok(())
        })
    }

    /// Removes a member (moved out, deceased).
    pub fn remove_member(&mut self, household: &str, member_id: &str) -> Result<()> {
        self.edit_household(household, "remove member", |h, _, _| {
            let before = h.members.len();
            h.members.retain(|m| m.id != member_id);
            if h.members.len() == before {
                return Err(Error::NotFound(format!(
                    "member {member_id} in {household}"
                )));
            }
            Ok(())
        })
    }

    /// Moves a household to another address of its grid (a family moved within the grid,
    /// or the address was recorded wrong): building, unit and room. The grid stays (a
    /// document never changes grid). A 楼门长's phone scoped to the old building loses the
    /// household, with the records and tasks that follow it, at its next sync; one scoped to
    /// the new building receives them.
    pub fn move_household(
        &mut self,
        household: &str,
        building: &str,
        unit: &str,
        room: &str,
    ) -> Result<()> {
        self.edit_household(household, "move household", |h, _, _| {
            h.address = Address::new(&h.address.grid, building, unit, room)?;
            Ok(())
        })
    }

    /// Replaces the household's tags.
    pub fn set_household_tags(&mut self, household: &str, tags: &[Tag]) -> Result<()> {
        let tags = dedup_tags(tags);
        self.edit_household(household, "set tags", |h, _, _| {
            h.tags = tags;
            Ok(())
        })
    }

    /// Edits the household's note (Automerge text: concurrent edits interleave).
    pub fn set_household_note(&mut self, household: &str, note: &str) -> Result<()> {
        if note.chars().count() > 2000 {
            return Err(Error::invalid("note", "longer than 2000 characters"));
        }
        self.edit_household(household, "edit note", |h, _, _| {
            h.note.update(note);
            Ok(())
        })
    }

    /// Logs a door-to-door visit by this device's user; returns the visit's id.
    pub fn add_visit(&mut self, household: &str, visit: NewVisit) -> Result<String> {
        let (purpose, note, follow_up) = checked_visit(visit)?;
        self.edit_household(household, "add visit", |h, hlc, actor| {
            let v = Visit {
                id: format!("v-{}-{:x}", actor.device, hlc.as_i64()),
                at: hlc.wall_ms() as i64,
                by: actor.user.clone(),
                by_name: actor.name.clone(),
                purpose,
                note,
                follow_up,
            };
            let id = v.id.clone();
            h.visits.push(v);
            Ok(id)
        })
    }

    /// Corrects a visit: purpose, note and follow-up. Only the user who made the visit may
    /// correct it (others add a visit of their own); when and by whom stay as they were.
    pub fn update_visit(&mut self, household: &str, visit_id: &str, visit: NewVisit) -> Result<()> {
        let (purpose, note, follow_up) = checked_visit(visit)?;
        self.edit_household(household, "correct visit", |h, _, actor| {
            let v = h
                .visits
                .iter_mut()
                .find(|v| v.id == visit_id)
                .ok_or_else(|| Error::NotFound(format!("visit {visit_id} in {household}")))?;
            if v.by != actor.user {
                return Err(Error::Refused(format!(
                    "visit {visit_id} was made by another user; only its author corrects it"
                )));
            }
            v.purpose = purpose;
            v.note = note;
            v.follow_up = follow_up;
            Ok(())
        })
    }

    // ----- 民情 records -----

    /// Logs a 民情 record; returns its id.
    pub fn create_record(&mut self, new: NewRecord) -> Result<String> {
        let grid = validate::non_empty("grid", &new.grid, 64)?;
        let description = validate::non_empty("description", &new.description, 2000)?;
        let reporter = validate::name("reporter", &new.reporter)?;
        let place = new.place.trim().to_string();
        if place.chars().count() > 100 {
            return Err(Error::invalid("place", "longer than 100 characters"));
        }
        if let Some(h) = &new.household {
            self.require_household_of(h, &grid)?;
        }
        let hlc = self.tick();
        let id = self.new_id(DocKind::Record, hlc);
        let taken = self.take_number(&grid, hlc.wall_ms() as i64)?;
        let r = Record {
            kind: DocKind::Record.as_str().into(),
            id: id.clone(),
            grid: grid.clone(),
            category: new.category,
            description: Text::with_value(description),
            reporter,
            household: new.household,
            building: new
                .building
                .map(|b| b.trim().to_string())
                .filter(|b| !b.is_empty()),
            place,
            status: RecordStatus::Pending,
            reported_at: hlc.wall_ms() as i64,
            created_by: self.actor.user.clone(),
            number: Some(taken.number.clone()),
            provisional_number: None,
        };
        r.check_bounds()?;
        let rows = Rows::Record(projection::record_row(&r, 0));
        self.create_then(
            DocKind::Record,
            &grid,
            hlc,
            "log record",
            &r,
            rows,
            &id,
            |tx, _, _| taken.commit(tx, &id),
        )?;
        Ok(id)
    }

    /// 点单 from a 民情 record, in one action: a 代办 task of the record's grid, category and
    /// household, linked to the record (`source_record`), so the record shows the task's
    /// progress ([`Store::record_detail`], the record lists). Returns the task's id.
    pub fn order_from_record(&mut self, record: &str, order: OrderFromRecord) -> Result<String> {
        let r = self.record(record)?;
        let title = match order.title.as_deref().map(str::trim) {
            Some(t) if !t.is_empty() => t.to_string(),
            _ => r.description.as_str().trim().chars().take(30).collect(),
        };
        self.create_task(NewTask {
            grid: r.grid,
            level: order.level,
            category: r.category,
            title,
            description: r.description.as_str().trim().to_string(),
            household: r.household,
            source_record: Some(r.id),
            assignee: order.assignee,
            deadline: order.deadline,
        })
    }

    /// A record with the status it shows and the tasks made from it.
    pub fn record_detail(&mut self, id: &str) -> Result<RecordDetail> {
        let record = self.record(id)?;
        let shown: Option<String> = self
            .conn
            .prepare_cached("SELECT shown FROM records WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        let shown = shown
            .and_then(|s| RecordStatus::parse(&s).ok())
            .unwrap_or(record.status);
        let tasks = self
            .conn
            .prepare_cached(
                "SELECT id FROM tasks WHERE source_record = ?1 ORDER BY created_at, id",
            )?
            .query_map([id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(RecordDetail {
            record,
            shown,
            tasks,
        })
    }

    /// Moves a record in the ledger (待处理 → 处理中 → 已办结 → 已回访).
    pub fn set_record_status(&mut self, record: &str, status: RecordStatus) -> Result<()> {
        self.edit_record(record, "set status", |r| {
            r.status = status;
            Ok(())
        })
    }

    /// Edits a record's description (Automerge text).
    pub fn set_record_description(&mut self, record: &str, description: &str) -> Result<()> {
        let d = validate::non_empty("description", description, 2000)?;
        self.edit_record(record, "edit description", |r| {
            r.description.update(d);
            Ok(())
        })
    }

    /// Corrects a record's category (the task made from it later keeps its own).
    pub fn set_record_category(&mut self, record: &str, category: Category) -> Result<()> {
        self.edit_record(record, "set category", |r| {
            r.category = category;
            Ok(())
        })
    }

    /// Corrects where a record's concern is (at most 100 characters; may be empty).
    pub fn set_record_place(&mut self, record: &str, place: &str) -> Result<()> {
        let place = place.trim().to_string();
        if place.chars().count() > 100 {
            return Err(Error::invalid("place", "longer than 100 characters"));
        }
        self.edit_record(record, "set place", |r| {
            r.place = place;
            Ok(())
        })
    }

    fn edit_record(
        &mut self,
        id: &str,
        what: &str,
        f: impl FnOnce(&mut Record) -> Result<()>,
    ) -> Result<()> {
        self.act(id, what, |doc, _, _| {
            let before: Record = hydrate(doc).map_err(|e| Error::bad_doc(id, e))?;
            let mut r = before.clone();
            f(&mut r)?;
            r.check_bounds()?;
            // Only the fields the edit changed are written: rewriting the others would
            // settle their conflicts silently, in favour of the value shown.
            macro_rules! put_changed {
                ($($field:ident),*) => {$(
                    if r.$field != before.$field {
                        autosurgeon::reconcile_prop(doc, automerge::ROOT, stringify!($field), &r.$field)
                            .map_err(|e| Error::bad_doc(id, e))?;
                    }
                )*};
            }
            put_changed!(category, description, reporter, household, building, place, status);
            // An edit settles no conflict of another field: count what remains.
            let conflicts = doc::field_conflicts(doc).len() as i64;
            Ok(((), Some(Rows::Record(projection::record_row(&r, conflicts)))))
        })
    }

    /// `household` is a household held here of `grid`: a record or task names only a
    /// household of its own grid (the server refuses the push otherwise, with this reason).
    fn require_household_of(&self, household: &str, grid: &str) -> Result<()> {
        if self.require_doc(household, DocKind::Household)? == grid {
            return Ok(());
        }
        Err(Error::invalid(
            "household",
            format!(
                "names a household of another grid; a document of grid {grid} may name only a household of that grid"
            ),
        ))
    }

    /// `id` is a document of `kind` held here; returns its grid.
    fn require_doc(&self, id: &str, kind: DocKind) -> Result<String> {
        let k: Option<(String, String)> = self
            .conn
            .prepare_cached("SELECT kind, grid FROM docs WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match k {
            Some((k, grid)) if k == kind.as_str() => Ok(grid),
            Some((k, _)) => Err(Error::invalid(
                kind.as_str(),
                format!("{id} is a {k}, not a {}", kind.as_str()),
            )),
            None => Err(Error::NotFound(id.to_string())),
        }
    }

    // ----- 代办 tasks -----

    /// Places a 代办 order (点单) and, when an assignee is named, assigns it (派单) in the
    /// same action. Returns the task's id.
    pub fn create_task(&mut self, new: NewTask) -> Result<String> {
        let grid = validate::non_empty("grid", &new.grid, 64)?;
        let title = validate::non_empty("title", &new.title, 100)?;
        if new.description.chars().count() > 2000 {
            return Err(Error::invalid("description", "longer than 2000 characters"));
        }
        if let Some(h) = &new.household {
            self.require_household_of(h, &grid)?;
        }
        if let Some(r) = &new.source_record {
            self.require_doc(r, DocKind::Record)?;
        }
        let saved = self.clock;
        let hlc = self.tick();
        let now = self.now_ms();
        if let Some(d) = new.deadline
            && d < now
        {
            self.clock = saved;
            return Err(Error::invalid(
                "deadline",
                "the deadline is before the task's creation",
            ));
        }
        let id = self.new_id(DocKind::Task, hlc);
        let taken = match self.take_number(&grid, hlc.wall_ms() as i64) {
            Ok(t) => t,
            Err(e) => {
                self.clock = saved;
                return Err(e);
            }
        };
        let actor = self.actor_on(&grid);
        let order_id = format!("ev-{}-{:x}", actor.device, hlc.as_i64());
        let order = workflow::order_event(
            new.level,
            new.deadline,
            String::new(),
            order_id.clone(),
            &actor,
            hlc.as_i64(),
        );
        let mut events = BTreeMap::from([(order_id, order)]);
        let view = workflow::fold(events.values());
        if let Some(rej) = view.rejected().next() {
            self.clock = saved;
            return Err(Error::Refused(match &rej.outcome {
                workflow::Outcome::Rejected { reason } | workflow::Outcome::Held { reason } => {
                    reason.clone()
                }
                workflow::Outcome::Applied => String::new(),
            }));
        }
        if let Some(assignee) = new
            .assignee
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            let action = TaskAction::Assign {
                assignee: assignee.to_string(),
            };
            let h2 = self.tick();
            if let Err(e) = task_act::append(&mut events, &view, &actor, h2, &action) {
                self.clock = saved;
                return Err(e);
            }
        }
        let t = Task {
            kind: DocKind::Task.as_str().into(),
            id: id.clone(),
            grid: grid.clone(),
            category: new.category,
            title,
            description: Text::with_value(new.description.trim()),
            household: new.household,
            source_record: new.source_record,
            created_at: hlc.wall_ms() as i64,
            created_by: self.actor.user.clone(),
            number: Some(taken.number.clone()),
            provisional_number: None,
            events,
        };
        if let Err(e) = t.check_bounds() {
            self.clock = saved;
            return Err(e);
        }
        let rows = Rows::Task(projection::task_row(&t));
        let made = self.create_then(
            DocKind::Task,
            &grid,
            hlc,
            "order task",
            &t,
            rows,
            &id,
            |tx, _, _| taken.commit(tx, &id),
        );
        if let Err(e) = made {
            self.clock = saved;
            return Err(e);
        }
        Ok(id)
    }

    /// Records one five-order action on a task. An action that cannot apply to the task as
    /// it stands is refused ([`Error::Refused`]) and nothing is written. Returns the new state.
    pub fn task_action(&mut self, task: &str, action: TaskAction) -> Result<TaskDetail> {
        let now = self.now_ms();
        task_act::validate(&action, now)?;
        let what = task_act::change_note(&action);
        // An escalation is also queued for the server's /v1/escalate, in the same
        // transaction: the server refuses the event until it has checked the escalation.
        let escalation = match &action {
            TaskAction::Escalate { tier, unit } => Some((*tier, unit.clone())),
            _ => None,
        };
        let queue = move |tx: &Transaction<'_>, grid: &str, outbox_id: i64| -> Result<()> {
            if let Some((tier, unit)) = escalation {
                tx.prepare_cached("INSERT INTO pending_escalations (task, grid, tier, unit, outbox_id) VALUES (?1, ?2, ?3, ?4, ?5)")?
                    .execute(params![task, grid, tier.as_str(), unit, outbox_id])?;
            }
            Ok(())
        };
        let detail = self.act_then(
            task,
            &what,
            |doc, hlc, actor| {
                let (t, view) = task_act::record(doc, task, actor, hlc, &action)?;
                let rows = Rows::Task(projection::task_row_with(&t, &view));
                let overdue = view.is_overdue(now);
                Ok((
                    TaskDetail {
                        task: t,
                        view,
                        overdue,
                    },
                    Some(rows),
                ))
            },
            queue,
        )?;
        Ok(detail)
    }

    // ----- reading documents -----

    fn read_doc<R>(
        &mut self,
        id: &str,
        f: impl FnOnce(&mut AutoCommit, DocKind) -> Result<R>,
    ) -> Result<R> {
        let (mut doc, kind, _) = self.take_doc(id)?;
        let r = f(&mut doc, kind);
        self.cache_put(id.to_string(), doc);
        r
    }

    /// A household with its members (ID numbers whole), tags, note and visits.
    pub fn household(&mut self, id: &str) -> Result<HouseholdDetail> {
        self.read_doc(id, |doc, kind| match kind {
            DocKind::Household => Household::read_from(doc).map_err(|e| Error::bad_doc(id, e)),
            _ => Err(Error::NotFound(format!("household {id}"))),
        })
    }

    /// A 民情 record.
    pub fn record(&mut self, id: &str) -> Result<Record> {
        self.read_doc(id, |doc, kind| match kind {
            DocKind::Record => hydrate(doc).map_err(|e| Error::bad_doc(id, e)),
            _ => Err(Error::NotFound(format!("record {id}"))),
        })
    }

    /// A task with its folded state and event list.
    pub fn task(&mut self, id: &str) -> Result<TaskDetail> {
        let now = self.now_ms();
        self.read_doc(id, |doc, kind| match kind {
            DocKind::Task => {
                let task: Task = hydrate(doc).map_err(|e| Error::bad_doc(id, e))?;
                let view = workflow::fold(task.events.values());
                let overdue = view.is_overdue(now);
                Ok(TaskDetail {
                    task,
                    view,
                    overdue,
                })
            }
            _ => Err(Error::NotFound(format!("task {id}"))),
        })
    }

    /// Who, when and what, for every change of a document.
    pub fn history(&mut self, id: &str) -> Result<Vec<HistoryEntry>> {
        self.read_doc(id, |doc, _| Ok(doc::history(doc)))
    }

    /// Fields of a document holding concurrent values, for the conflicts screen.
    pub fn conflicts(&mut self, id: &str) -> Result<Vec<FieldConflict>> {
        self.read_doc(id, |doc, _| Ok(doc::field_conflicts(doc)))
    }

    /// Settles a conflict by choosing one of its values (index into
    /// [`FieldConflict::values`]); the choice is a new change that syncs like any other.
    pub fn resolve_conflict(&mut self, id: &str, path: &str, choice: usize) -> Result<()> {
        self.act(id, &format!("resolve {path}"), |doc, _, _| {
            doc::put_resolved(doc, path, choice)?;
            Ok(((), None))
        })
    }

    // ----- merging -----

    /// Applies changes from elsewhere, in any order, duplicates included, in one
    /// transaction. Changes whose dependencies are missing are kept until those arrive.
    pub fn apply_remote(&mut self, changes: &[RemoteChange]) -> Result<MergeReport> {
        self.apply_remote_at(changes, None, &PulledMoves::default())
    }

    /// [`Store::apply_remote`], also storing a grid's pull cursor in the same transaction,
    /// so an interrupted pull resumes exactly where it stopped.
    pub fn apply_pulled(
        &mut self,
        grid: &str,
        cursor: u64,
        changes: &[RemoteChange],
    ) -> Result<MergeReport> {
        self.apply_remote_at(changes, Some((grid, cursor)), &PulledMoves::default())
    }

    /// [`Store::apply_pulled`] for a page that also says what moved: in the same
    /// transaction, the documents of `grid` that moved out of this device's buildings leave
    /// it (with the records and tasks here that follow a leaving household), their unpushed
    /// changes set aside ([`Store::set_aside`]), never lost; the documents that moved in are
    /// queued to be fetched whole (`/v1/repair`, in this sync and, if it is cut off, the
    /// next). So a cursor past a move is never stored without the move's effect.
    pub fn apply_pulled_page(
        &mut self,
        grid: &str,
        cursor: u64,
        changes: &[RemoteChange],
        moves: &PulledMoves,
    ) -> Result<MergeReport> {
        self.apply_remote_at(changes, Some((grid, cursor)), moves)
    }

    fn apply_remote_at(
        &mut self,
        changes: &[RemoteChange],
        cursor: Option<(&str, u64)>,
        moves: &PulledMoves,
    ) -> Result<MergeReport> {
        let mut by_doc: BTreeMap<&str, Vec<Change>> = BTreeMap::new();
        for c in changes {
            if c.doc.is_empty() || c.doc.len() > 200 {
                return Err(Error::invalid("doc", "document id is empty or too long"));
            }
            let change = Change::try_from(c.change.as_slice())
                .map_err(|e| Error::bad_doc(&c.doc, format!("not an Automerge change: {e}")))?;
            by_doc.entry(c.doc.as_str()).or_default().push(change);
        }
        let saved_clock = self.clock;
        let mut touched: Vec<(String, AutoCommit)> = Vec::new();
        let mut gone: Vec<String> = Vec::new();
        let result = self.apply_remote_inner(by_doc, &mut touched, cursor, moves, &mut gone);
        match result {
            Ok(report) => {
                for (id, doc) in touched {
                    // A document still waiting for its first change stays out of the cache:
                    // to readers it does not exist yet.
                    if doc::kind_and_grid(&doc).is_some() && !gone.contains(&id) {
                        self.cache_put(id, doc);
                    }
                }
                for id in &gone {
                    self.cache.remove(id);
                }
                Ok(report)
            }
            Err(e) => {
                self.clock = saved_clock;
                Err(e)
            }
        }
    }

    fn apply_remote_inner(
        &mut self,
        by_doc: BTreeMap<&str, Vec<Change>>,
        touched: &mut Vec<(String, AutoCommit)>,
        cursor: Option<(&str, u64)>,
        moves: &PulledMoves,
        gone: &mut Vec<String>,
    ) -> Result<MergeReport> {
        let mut report = MergeReport::default();
        let device_ms = (self.time)();
        for id in by_doc.keys() {
            // Take every touched document out of the cache before the transaction starts.
            let loaded = match self.cache.remove(*id) {
                Some(d) => Some(d),
                None => Self::load_doc_from_db(&self.conn, &self.codec, id)?.map(|(d, _, _)| d),
            };
            if let Some(d) = loaded {
                touched.push((
                    id.to_string(),
                    d.with_actor(doc::actor_id(&self.actor.device)),
                ));
            }
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (id, incoming) in by_doc {
            let pos = match touched.iter().position(|(t, _)| t == id) {
                Some(p) => p,
                None => {
                    touched.push((id.to_string(), doc::new_doc(&self.actor.device)));
                    touched.len() - 1
                }
            };
            let doc = &mut touched[pos].1;
            let before = doc::kind_and_grid(doc);
            let heads = doc.get_heads();
            let conflicts_before: HashSet<String> = doc::field_conflicts(doc)
                .into_iter()
                .map(|c| c.path)
                .collect();
            let rejected_before: HashSet<String> = match &before {
                Some((DocKind::Task, _)) => {
                    let t: Task = hydrate(&*doc).map_err(|e| Error::bad_doc(id, e))?;
                    workflow::fold(t.events.values())
                        .rejected()
                        .map(|e| e.event.id.clone())
                        .collect()
                }
                _ => HashSet::new(),
            };
            let mut held: Vec<Change> = Vec::new();
            {
                let mut stmt =
                    tx.prepare_cached("SELECT change FROM pending_changes WHERE doc = ?1")?;
                for bytes in stmt.query_map([id], |r| r.get::<_, Vec<u8>>(0))? {
                    let bytes = bytes?;
                    held.push(
                        Change::try_from(bytes.as_slice()).map_err(|e| Error::bad_doc(id, e))?,
                    );
                }
            }
            let held_hashes: HashSet<ChangeHash> = held.iter().map(|c| c.hash()).collect();
            let mut fresh = Vec::new();
            for c in incoming {
                if doc.get_change_by_hash(&c.hash()).is_some()
                    || held_hashes.contains(&c.hash())
                    || fresh.iter().any(|f: &Change| f.hash() == c.hash())
                {
                    report.duplicates += 1;
                } else {
                    fresh.push(c);
                }
            }
            if fresh.is_empty() {
                continue;
            }
            let all: Vec<Change> = held.into_iter().chain(fresh.iter().cloned()).collect();
            doc.apply_changes(all.clone())
                .map_err(|e| Error::bad_doc(id, e))?;
            for c in &all {
                let applied = doc.get_change_by_hash(&c.hash()).is_some();
                if applied {
                    tx.prepare_cached("DELETE FROM pending_changes WHERE doc = ?1 AND hash = ?2")?
                        .execute(params![id, c.hash().0.to_vec()])?;
                    report.applied += 1;
                    if let Some(note) = c
                        .message()
                        .and_then(|m| serde_json::from_str::<doc::ChangeNote>(m).ok())
                        && let Some(h) = Hlc::from_i64(note.hlc)
                    {
                        self.clock.observe(h, device_ms);
                    }
                } else {
                    tx.prepare_cached("INSERT OR IGNORE INTO pending_changes (doc, hash, change) VALUES (?1, ?2, ?3)")?
                        .execute(params![id, c.hash().0.to_vec(), c.raw_bytes()])?;
                    report.waiting += 1;
                }
            }
            if doc.get_heads() == heads {
                continue;
            }
            let Some((kind, grid)) = doc::kind_and_grid(doc) else {
                return Err(Error::bad_doc(
                    id,
                    "changes do not make a Xiuhua document (no kind or grid)",
                ));
            };
            if let Some((k0, g0)) = &before
                && (*k0 != kind || *g0 != grid)
            {
                return Err(Error::bad_doc(
                    id,
                    format!(
                        "changes move the document from {} {g0} to {} {grid}",
                        k0.as_str(),
                        kind.as_str()
                    ),
                ));
            }
            let rows = rows_of(id, doc)?.ok_or_else(|| Error::bad_doc(id, "empty document"))?;
            Self::save_doc(&tx, &self.codec, id, kind, &grid, doc, Chunk::After(&heads))?;
            projection::write_rows(&tx, &rows, true)?;
            match kind {
                DocKind::Household => {
                    for c in doc::field_conflicts(doc) {
                        if !conflicts_before.contains(&c.path) {
                            report.new_conflicts.push((id.to_string(), c));
                        }
                    }
                }
                DocKind::Task => {
                    let t: Task = hydrate(&*doc).map_err(|e| Error::bad_doc(id, e))?;
                    for e in workflow::fold(t.events.values()).rejected() {
                        if !rejected_before.contains(&e.event.id) {
                            let reason = match &e.outcome {
                                workflow::Outcome::Rejected { reason }
                                | workflow::Outcome::Held { reason } => reason.clone(),
                                workflow::Outcome::Applied => String::new(),
                            };
                            report.newly_rejected.push((
                                id.to_string(),
                                e.event.id.clone(),
                                reason,
                            ));
                        }
                    }
                }
                DocKind::Record => {}
            }
            report.changed.push((id.to_string(), kind));
        }
        Self::save_clock(&tx, &self.clock)?;
        if let Some((grid, seq)) = cursor {
            if !moves.moved_out.is_empty() || !moves.moved_in.is_empty() {
                let now = i64::try_from(self.clock.now_ms((self.time)())).unwrap_or(i64::MAX);
                let (docs, aside) = sync::apply_moves(&tx, grid, moves, now)?;
                report.dropped_docs = docs.len();
                report.set_aside = aside;
                *gone = docs;
            }
            tx.prepare_cached(
                "INSERT OR REPLACE INTO sync_cursors (grid, cursor) VALUES (?1, ?2)",
            )?
            .execute(params![grid, seq.to_string()])?;
        }
        tx.commit()?;
        Ok(report)
    }

    /// The stored pull cursor of a grid (0 when it never synced).
    pub fn sync_cursor(&self, grid: &str) -> Result<u64> {
        let c: Option<String> = self
            .conn
            .prepare_cached("SELECT cursor FROM sync_cursors WHERE grid = ?1")?
            .query_row([grid], |r| r.get(0))
            .optional()?;
        Ok(c.and_then(|c| c.parse().ok()).unwrap_or(0))
    }

    // ----- exchange -----

    /// Local changes not yet acknowledged, oldest first.
    pub fn outbox(&self, limit: usize) -> Result<Vec<OutboxEntry>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, doc, grid, change FROM outbox ORDER BY id LIMIT ?1")?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok(OutboxEntry {
                id: r.get(0)?,
                doc: r.get(1)?,
                grid: r.get(2)?,
                change: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// How many local changes wait for a server.
    pub fn outbox_len(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))?)
    }

    /// Deletes acknowledged outbox entries.
    pub fn ack_outbox(&mut self, ids: &[i64]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
            for id in ids {
                stmt.execute([id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every change of every document, for a peer that has nothing (tests, repair).
    pub fn export_all(&mut self) -> Result<Vec<RemoteChange>> {
        let ids: Vec<String> = self
            .conn
            .prepare("SELECT id FROM docs ORDER BY id")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut out = Vec::new();
        for id in ids {
            let changes = self.read_doc(&id, |doc, _| {
                Ok(doc
                    .get_changes(&[])
                    .iter()
                    .map(|c| c.raw_bytes().to_vec())
                    .collect::<Vec<_>>())
            })?;
            out.extend(changes.into_iter().map(|change| RemoteChange {
                doc: id.clone(),
                change,
            }));
        }
        Ok(out)
    }

    // ----- projection -----

    /// Recomputes every projection row from the documents.
    pub fn rebuild_projection(&mut self) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch("DELETE FROM households; DELETE FROM residents; DELETE FROM records; DELETE FROM tasks; DELETE FROM search_rows; DELETE FROM search_fts;")?;
        let ids: Vec<String> = tx
            .prepare("SELECT id FROM docs")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for id in ids {
            if let Some((doc, _, _)) = Self::load_doc_from_db(&tx, &self.codec, &id)?
                && let Some(rows) = rows_of(&id, &doc)?
            {
                projection::write_rows(&tx, &rows, false)?;
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('projection_version', ?1)",
            [PROJECTION_VERSION],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Every projection row as text in a fixed order (equal stores give equal dumps).
    pub fn projection_dump(&self) -> Result<String> {
        projection::dump(&self.conn)
    }

    /// Stores whole documents received in bulk (a first sync): parses them on all cores,
    /// computes their rows and writes everything in one transaction. Returns how many.
    pub fn import_documents(&mut self, docs: &[(String, Vec<u8>)]) -> Result<usize> {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 8);
        let chunk = docs.len().div_ceil(threads).max(1);
        let parsed: Vec<Result<Vec<(DocKind, String, Rows)>>> = std::thread::scope(|s| {
            let handles: Vec<_> = docs
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        part.iter()
                            .map(|(id, bytes)| {
                                let doc =
                                    doc::load_doc(bytes).map_err(|e| Error::bad_doc(id, e))?;
                                let (kind, grid) = doc::kind_and_grid(&doc)
                                    .ok_or_else(|| Error::bad_doc(id, "no kind or grid"))?;
                                let rows = rows_of(id, &doc)?
                                    .ok_or_else(|| Error::bad_doc(id, "empty document"))?;
                                Ok((kind, grid, rows))
                            })
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
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut n = 0;
        {
            let mut ins = tx.prepare_cached("INSERT OR REPLACE INTO docs (id, kind, grid, snapshot, chunks) VALUES (?1, ?2, ?3, ?4, 0)")?;
            let mut docs_iter = docs.iter();
            for part in parsed {
                for (kind, grid, rows) in part? {
                    let Some((id, bytes)) = docs_iter.next() else {
                        break;
                    };
                    ins.execute(params![id, kind.as_str(), grid, bytes])?;
                    tx.prepare_cached("DELETE FROM doc_chunks WHERE doc = ?1")?
                        .execute([id])?;
                    projection::write_rows(&tx, &rows, true)?;
                    n += 1;
                }
            }
        }
        tx.commit()?;
        for (id, _) in docs {
            self.cache.remove(id);
        }
        Ok(n)
    }

    /// The underlying connection, for queries in this crate.
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The underlying connection, mutable, for the sync support in this crate.
    #[allow(dead_code)]
    pub(crate) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// The member `member_id` of `household`, or `NotFound`.
fn member_mut<'a>(
    h: &'a mut Household,
    household: &str,
    member_id: &str,
) -> Result<&'a mut Member> {
    h.members
        .iter_mut()
        .find(|m| m.id == member_id)
        .ok_or_else(|| Error::NotFound(format!("member {member_id} in {household}")))
}

/// A visit's purpose, note and follow-up as stored: trimmed, bounded, an empty follow-up
/// none. The one check for adding and correcting a visit.
fn checked_visit(visit: NewVisit) -> Result<(String, String, Option<String>)> {
    let purpose = validate::non_empty("purpose", &visit.purpose, 100)?;
    if visit.note.chars().count() > 2000 {
        return Err(Error::invalid("note", "longer than 2000 characters"));
    }
    let follow_up = visit
        .follow_up
        .map(|f| f.trim().to_string())
        .filter(|f| !f.is_empty());
    Ok((purpose, visit.note.trim().to_string(), follow_up))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor() -> Actor {
        Actor::new("u-wang", "王伟", Role::GridMember, "dev-a").expect("valid actor")
    }

    fn schema_of(path: &Path) -> Vec<String> {
        let conn = Connection::open(path).expect("open");
        let mut rows: Vec<String> = conn
            .prepare("SELECT type || ' ' || name || ' ' || coalesce(sql, '') FROM sqlite_master ORDER BY type, name")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        for pragma in ["user_version", "application_id"] {
            let v: i64 = conn
                .query_row(&format!("PRAGMA {pragma}"), [], |r| r.get(0))
                .expect("pragma");
            rows.push(format!("{pragma}={v}"));
        }
        rows
    }

    fn household() -> NewHousehold {
        NewHousehold {
            address: Address::new("grid-1", "1号楼", "1单元", "101").expect("address"),
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
        }
    }

    #[test]
    fn events_are_signed_with_the_role_held_on_the_tasks_grid() {
        let mut s = Store::open_in_memory(actor()).expect("store");
        let grant = |grid: &str, role: Role| crate::sync::proto::Grant {
            grid: grid.into(),
            role: role.as_str().into(),
            buildings: vec![],
            ..Default::default()
        };
        s.save_grants(&[
            grant("grid-1", Role::GridMember),
            grant("grid-2", Role::CommunityStaff),
        ])
        .expect("grants");
        let new_task = |grid: &str| NewTask {
            grid: grid.into(),
            level: Level::Doorstep,
            category: Category::Service,
            title: "代办".into(),
            description: String::new(),
            household: None,
            source_record: None,
            assignee: None,
            deadline: None,
        };
        let t1 = s.create_task(new_task("grid-1")).expect("task 1");
        let t2 = s.create_task(new_task("grid-2")).expect("task 2");
        // 督单 is for 社区工作者: allowed on grid-2 only, and signed as such.
        let supervise = || TaskAction::Supervise {
            text: "抓紧".into(),
            new_deadline: None,
        };
        assert!(s.task_action(&t1, supervise()).is_err());
        let d = s
            .task_action(&t2, supervise())
            .expect("supervise on grid-2");
        let roles =
            |t: &Task| -> Vec<String> { t.events.values().map(|e| e.role.clone()).collect() };
        assert_eq!(roles(&d.task), vec!["社区工作者".to_string(); 2]);
        let d1 = s.task(&t1).expect("task 1");
        assert_eq!(roles(&d1.task), vec!["网格员".to_string()]);
    }

    #[test]
    fn fields_beyond_the_models_bounds_are_refused_before_writing() {
        let mut s = Store::open_in_memory(actor()).expect("store");
        let id = s.create_household(household()).expect("household");
        let long = "很".repeat(limits::TEXT + 1);
        let e = s
            .add_visit(
                &id,
                NewVisit {
                    purpose: "走访".into(),
                    note: String::new(),
                    follow_up: Some(long),
                },
            )
            .expect_err("an over-long follow-up");
        assert!(e.to_string().contains("follow_up"), "{e}");
        assert_eq!(s.household(&id).expect("household").visits.len(), 0);
        assert_eq!(s.outbox_len().expect("outbox"), 1);
    }

    #[test]
    fn upgraded_database_equals_fresh_one_and_keeps_its_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = dir.path().join("old.db");
        let fresh = dir.path().join("fresh.db");
        // This build writes through tables a v1 file lacks: the household's document is
        // made by a current store and put into the v1 file as a v1 build stored it.
        let id = {
            let mut current = Store::open_in_memory(actor()).expect("current store");
            let id = current.create_household(household()).expect("create");
            let (kind, grid, snapshot): (String, String, Vec<u8>) = current
                .conn
                .query_row(
                    "SELECT kind, grid, snapshot FROM docs WHERE id = ?1",
                    [&id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .expect("the document");
            let s = Store::open_at_version(&old, actor(), 1).expect("v1 store");
            s.conn
                .execute(
                    "INSERT INTO docs (id, kind, grid, snapshot, chunks) VALUES (?1, ?2, ?3, ?4, 0)",
                    params![id, kind, grid, snapshot],
                )
                .expect("stored at v1");
            id
        };
        let mut upgraded = Store::open(&old, actor()).expect("upgrade");
        drop(Store::open(&fresh, actor()).expect("fresh"));
        assert_eq!(
            upgraded.household(&id).expect("kept").members[0].name,
            "张三"
        );
        drop(upgraded);
        assert_eq!(schema_of(&old), schema_of(&fresh));
    }

    #[test]
    fn the_upgrade_to_shown_record_status_fills_it_from_the_tasks_held() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = dir.path().join("old.db");
        {
            let s = Store::open_at_version(&old, actor(), 4).expect("v4 store");
            // As a v4 store of this projection version holds them (no rebuild on open).
            s.conn
                .execute(
                    "INSERT INTO meta (key, value) VALUES ('projection_version', ?1)",
                    [PROJECTION_VERSION],
                )
                .expect("projection version");
            s.conn
                .execute_batch(
                    "INSERT INTO records (id, grid, category, status, reporter, household, building, place, reported_at, summary)
                     VALUES ('rec-1', 'g', '设施报修', '待处理', '刘', NULL, NULL, '', 1, ''),
                            ('rec-2', 'g', '设施报修', '待处理', '刘', NULL, NULL, '', 2, '');
                     INSERT INTO tasks (id, grid, title, category, level, status, tier, assignee, deadline, created_at, household, source_record, rating, rejected)
                     VALUES ('task-1', 'g', 't', '设施报修', NULL, 'closed', 'grid', NULL, NULL, 1, NULL, 'rec-1', 5, 0);",
                )
                .expect("v4 rows");
        }
        let s = Store::open(&old, actor()).expect("upgrade");
        let shown: Vec<(String, String)> = s
            .conn
            .prepare("SELECT id, shown FROM records ORDER BY id")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert_eq!(
            shown,
            vec![
                ("rec-1".to_string(), "已办结".to_string()),
                ("rec-2".to_string(), "待处理".to_string())
            ]
        );
    }

    #[test]
    fn a_database_from_a_newer_app_is_refused_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("new.db");
        drop(Store::open(&path, actor()).expect("create"));
        {
            let conn = Connection::open(&path).expect("open");
            conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .expect("bump");
        }
        let before = std::fs::read(&path).expect("read");
        match Store::open(&path, actor()) {
            Err(Error::SchemaTooNew { found, supported }) => {
                assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
            }
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
        assert_eq!(before, std::fs::read(&path).expect("read"));
    }

    #[test]
    fn many_edits_compact_into_a_full_save_and_reload_equal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        let mut s = Store::open(&path, actor()).expect("open");
        let id = s.create_household(household()).expect("create");
        for i in 0..(MAX_CHUNKS * 2 + 3) {
            s.add_visit(
                &id,
                NewVisit {
                    purpose: format!("走访{i}"),
                    note: String::new(),
                    follow_up: None,
                },
            )
            .expect("visit");
        }
        let chunks: i64 = s
            .conn
            .query_row(
                "SELECT count(*) FROM doc_chunks WHERE doc = ?1",
                [&id],
                |r| r.get(0),
            )
            .expect("count");
        assert!(chunks < MAX_CHUNKS, "chunks are compacted, found {chunks}");
        let before = s.household(&id).expect("read");
        drop(s);
        let mut s = Store::open(&path, actor()).expect("reopen");
        assert_eq!(s.household(&id).expect("read"), before);
        assert_eq!(before.visits.len() as i64, MAX_CHUNKS * 2 + 3);
    }

    #[test]
    fn an_encrypted_store_opens_only_with_its_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("enc.db");
        let id = {
            let mut s = Store::open_encrypted(&path, "k3y-from-keystore", actor()).expect("create");
            s.create_household(household()).expect("create")
        };
        let raw = std::fs::read(&path).expect("read");
        assert!(
            !raw.windows(6).any(|w| w == "张三".as_bytes()),
            "names are not readable on disk"
        );
        assert_ne!(&raw[..16], b"SQLite format 3\0");
        assert!(matches!(
            Store::open_encrypted(&path, "wrong", actor()),
            Err(Error::WrongKey)
        ));
        assert!(matches!(
            Store::open(&path, actor()),
            Err(Error::NotXiuhuaDatabase(_))
        ));
        assert_eq!(
            raw,
            std::fs::read(&path).expect("read"),
            "refused opens leave the file untouched"
        );
        let mut s = Store::open_encrypted(&path, "k3y-from-keystore", actor()).expect("reopen");
        assert_eq!(s.household(&id).expect("read").members[0].name, "张三");
    }
}
