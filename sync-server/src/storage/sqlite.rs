//! The embedded SQLite backend: one file in the data folder, WAL, a writer connection behind
//! a mutex and a small pool of reader connections; blocking calls run in `spawn_blocking`.
//! Schema versioned with `PRAGMA user_version`; each migration is one IMMEDIATE transaction.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use automerge::AutoCommit;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use xiuhua_core::doc::DocKind;
use xiuhua_core::model::{Role, Tier};
use xiuhua_core::store::{PROJECTION_VERSION, rows_of};

use super::*;
use crate::access::{Caller, GrantRow, Scope};
use crate::credentials::{self, CodeRow, DeviceRow, RefreshDecision, RefreshRow, Standing};
use crate::error::{Refusal, StoreError};
use crate::ingest::{self, Parsed, StoredDoc};

/// File name of the database in the data folder.
pub const DB_FILE: &str = "xiuhua-server.sqlite3";
/// `PRAGMA application_id` of a server database ("XHSV").
pub const APPLICATION_ID: i64 = 0x5848_5356;
/// Reader connections kept open.
const READERS: usize = 4;

/// Each entry migrates from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value ANY) STRICT;
CREATE TABLE districts (id TEXT PRIMARY KEY, name TEXT NOT NULL) STRICT;
CREATE TABLE communities (
    id TEXT PRIMARY KEY, name TEXT NOT NULL,
    district TEXT NOT NULL REFERENCES districts(id)) STRICT;
CREATE TABLE grids (
    id TEXT PRIMARY KEY, name TEXT NOT NULL,
    community TEXT NOT NULL REFERENCES communities(id),
    seq INTEGER NOT NULL DEFAULT 0) STRICT;
CREATE TABLE buildings (
    grid TEXT NOT NULL REFERENCES grids(id), name TEXT NOT NULL,
    PRIMARY KEY (grid, name)) STRICT;
CREATE TABLE users (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, created_ms INTEGER NOT NULL, revoked_ms INTEGER) STRICT;
CREATE TABLE grants (
    user TEXT NOT NULL REFERENCES users(id), grid TEXT NOT NULL REFERENCES grids(id),
    role TEXT NOT NULL, buildings TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (user, grid)) STRICT;
CREATE TABLE devices (
    id TEXT PRIMARY KEY, user TEXT NOT NULL REFERENCES users(id), name TEXT NOT NULL,
    created_ms INTEGER NOT NULL, last_seen_ms INTEGER, revoked_ms INTEGER) STRICT;
CREATE INDEX devices_user ON devices(user);
CREATE TABLE enroll_codes (
    hash TEXT PRIMARY KEY, user TEXT NOT NULL REFERENCES users(id),
    created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL, used_ms INTEGER, device TEXT) STRICT;
CREATE TABLE refresh_tokens (
    hash TEXT PRIMARY KEY, device TEXT NOT NULL REFERENCES devices(id),
    issued_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL, used_ms INTEGER, revoked_ms INTEGER) STRICT;
CREATE INDEX refresh_tokens_device ON refresh_tokens(device);
CREATE TABLE docs (
    id TEXT PRIMARY KEY, grid TEXT NOT NULL, kind TEXT NOT NULL, building TEXT,
    tier TEXT NOT NULL DEFAULT 'grid', unit TEXT,
    heads BLOB NOT NULL, bytes BLOB NOT NULL, rows BLOB NOT NULL, rows_version INTEGER NOT NULL) STRICT;
CREATE INDEX docs_grid ON docs(grid, building);
CREATE TABLE changes (
    grid TEXT NOT NULL, seq INTEGER NOT NULL, doc TEXT NOT NULL,
    hash BLOB NOT NULL UNIQUE, bytes BLOB NOT NULL,
    PRIMARY KEY (grid, seq)) STRICT, WITHOUT ROWID;
CREATE TABLE device_grids (
    device TEXT NOT NULL, grid TEXT NOT NULL, since_ms INTEGER NOT NULL,
    PRIMARY KEY (device, grid)) STRICT, WITHOUT ROWID;
"#,
    // 2: bootstrap pages walk one grid's documents in id order.
    r#"
CREATE INDEX docs_grid_id ON docs(grid, id);
"#,
    // 3: refresh tokens name their parent (a retry after a lost reply); a device whose
    // refresh token was reused is reset (credentials module).
    r#"
ALTER TABLE refresh_tokens ADD COLUMN parent TEXT;
CREATE INDEX refresh_tokens_parent ON refresh_tokens(parent);
ALTER TABLE devices ADD COLUMN reset_ms INTEGER;
"#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

/// The SQLite backend.
#[derive(Clone)]
pub struct SqliteStorage {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SqliteStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStorage")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock rolled its transaction back (the Transaction is
    // dropped on unwind): the connection is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let app: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if app != 0 && app != APPLICATION_ID {
        return Err(StoreError::Backend(format!(
            "not a Xiuhua server database (application_id {app:#x})"
        )));
    }
    if version > SCHEMA_VERSION {
        return Err(StoreError::Backend(format!(
            "the database has schema version {version}, newer than this server ({SCHEMA_VERSION}); upgrade the server"
        )));
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// Recomputes the projection rows stored with documents when the core's projection changed.
fn refresh_rows(conn: &mut Connection) -> StoreResult<usize> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let stale: Vec<(String, Vec<u8>)> = {
        let mut stmt = tx.prepare("SELECT id, bytes FROM docs WHERE rows_version != ?1")?;
        stmt.query_map([PROJECTION_VERSION], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?
    };
    for (id, bytes) in &stale {
        let doc = AutoCommit::load(bytes)
            .map_err(|e| StoreError::Backend(format!("document {id}: {e}")))?;
        let rows = rows_of(id, &doc)
            .map_err(|e| StoreError::Backend(format!("document {id}: {e}")))?
            .ok_or_else(|| StoreError::Backend(format!("document {id} is empty")))?;
        tx.execute(
            "UPDATE docs SET rows = ?2, rows_version = ?3 WHERE id = ?1",
            params![id, ingest::encode_rows(&rows)?, PROJECTION_VERSION],
        )?;
    }
    tx.commit()?;
    Ok(stale.len())
}

fn parse_kind(s: &str) -> rusqlite::Result<DocKind> {
    DocKind::parse(s).ok_or_else(|| {
        rusqlite::Error::InvalidColumnType(0, format!("kind {s}"), rusqlite::types::Type::Text)
    })
}

fn parse_tier(s: &str) -> rusqlite::Result<Tier> {
    Tier::parse(s).map_err(|e| {
        rusqlite::Error::InvalidColumnType(0, e.to_string(), rusqlite::types::Type::Text)
    })
}

fn grant_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<GrantRow> {
    let role: String = r.get(2)?;
    let buildings: String = r.get(3)?;
    Ok(GrantRow {
        user: r.get(0)?,
        grid: r.get(1)?,
        role: Role::parse(&role).map_err(|e| {
            rusqlite::Error::InvalidColumnType(2, e.to_string(), rusqlite::types::Type::Text)
        })?,
        buildings: serde_json::from_str(&buildings).map_err(|e| {
            rusqlite::Error::InvalidColumnType(3, e.to_string(), rusqlite::types::Type::Text)
        })?,
    })
}

fn grants_of(conn: &Connection, user: &str) -> StoreResult<Vec<GrantRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT user, grid, role, buildings FROM grants WHERE user = ?1 ORDER BY grid",
    )?;
    Ok(stmt
        .query_map([user], grant_row)?
        .collect::<rusqlite::Result<_>>()?)
}

fn held_grids(conn: &Connection, device: &str) -> StoreResult<Vec<String>> {
    let mut stmt =
        conn.prepare_cached("SELECT grid FROM device_grids WHERE device = ?1 ORDER BY grid")?;
    Ok(stmt
        .query_map([device], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?)
}

fn exists(conn: &Connection, sql: &str, id: &str) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached(sql)?
        .query_row([id], |_| Ok(()))
        .optional()?
        .is_some())
}

fn require(conn: &Connection, table: &str, id: &str, what: &str) -> StoreResult<()> {
    if exists(conn, &format!("SELECT 1 FROM {table} WHERE id = ?1"), id)? {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!("no {what} with id {id:?}")))
    }
}

fn refuse_duplicate(conn: &Connection, table: &str, id: &str, what: &str) -> StoreResult<()> {
    if exists(conn, &format!("SELECT 1 FROM {table} WHERE id = ?1"), id)? {
        Err(StoreError::Duplicate(format!(
            "a {what} with id {id:?} exists already"
        )))
    } else {
        Ok(())
    }
}

fn load_stored(tx: &Transaction<'_>, id: &str) -> StoreResult<Option<StoredDoc>> {
    let row = tx
        .prepare_cached("SELECT grid, kind, building, tier, unit, bytes FROM docs WHERE id = ?1")?
        .query_row([id], |r| {
            Ok(StoredDoc {
                id: id.to_string(),
                grid: r.get(0)?,
                kind: parse_kind(&r.get::<_, String>(1)?)?,
                building: r.get(2)?,
                tier: parse_tier(&r.get::<_, String>(3)?)?,
                unit: r.get(4)?,
                bytes: r.get(5)?,
            })
        })
        .optional()?;
    Ok(row)
}

fn push_tx(conn: &mut Connection, caller: &Caller, parsed: Parsed) -> StoreResult<PushOutcome> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut stored = HashMap::new();
    for id in parsed.doc_ids() {
        if let Some(d) = load_stored(&tx, &id)? {
            stored.insert(id, d);
        }
    }
    let mut known = HashSet::new();
    {
        let mut stmt = tx.prepare_cached("SELECT 1 FROM changes WHERE hash = ?1")?;
        for h in parsed.hashes() {
            if stmt
                .query_row([h.0.to_vec()], |_| Ok(()))
                .optional()?
                .is_some()
            {
                known.insert(h);
            }
        }
    }
    let applied = ingest::apply(parsed, &stored, &known)?;
    let mut households = HashMap::new();
    {
        let mut stmt =
            tx.prepare_cached("SELECT building FROM docs WHERE id = ?1 AND kind = 'household'")?;
        for h in applied.households_needed() {
            let b: Option<Option<String>> = stmt.query_row([&h], |r| r.get(0)).optional()?;
            households.insert(h, b.flatten());
        }
    }
    let plan = ingest::authorize(applied, caller, &households)?;
    let mut seqs: HashMap<String, u64> = HashMap::new();
    for grid in &plan.grids {
        let s: Option<i64> = tx
            .prepare_cached("SELECT seq FROM grids WHERE id = ?1")?
            .query_row([grid], |r| r.get(0))
            .optional()?;
        let s =
            s.ok_or_else(|| Refusal::forbidden(format!("grid {grid} is not in the directory")))?;
        seqs.insert(grid.clone(), u64::try_from(s).unwrap_or(0));
    }
    let stored_count = plan.change_count();
    {
        let mut ins = tx.prepare_cached(
            "INSERT INTO changes (grid, seq, doc, hash, bytes) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        let mut new_doc = tx.prepare_cached(
            "INSERT INTO docs (id, grid, kind, building, tier, heads, bytes, rows, rows_version)
             VALUES (?1, ?2, ?3, ?4, 'grid', ?5, ?6, ?7, ?8)",
        )?;
        let mut upd_doc = tx.prepare_cached(
            "UPDATE docs SET building = ?2, heads = ?3, bytes = ?4, rows = ?5, rows_version = ?6 WHERE id = ?1",
        )?;
        for d in &plan.docs {
            let seq = seqs
                .get_mut(&d.grid)
                .ok_or_else(|| StoreError::Backend(format!("no seq for grid {}", d.grid)))?;
            for (hash, bytes) in &d.changes {
                *seq += 1;
                ins.execute(params![d.grid, *seq as i64, d.id, hash, bytes])?;
            }
            if d.is_new {
                new_doc.execute(params![
                    d.id,
                    d.grid,
                    d.kind.as_str(),
                    d.building,
                    d.heads,
                    d.bytes,
                    d.rows,
                    PROJECTION_VERSION
                ])?;
            } else {
                upd_doc.execute(params![
                    d.id,
                    d.building,
                    d.heads,
                    d.bytes,
                    d.rows,
                    PROJECTION_VERSION
                ])?;
            }
        }
        let mut upd_grid = tx.prepare_cached("UPDATE grids SET seq = ?2 WHERE id = ?1")?;
        for (grid, seq) in &seqs {
            upd_grid.execute(params![grid, *seq as i64])?;
        }
        tx.prepare_cached("UPDATE devices SET last_seen_ms = ?2 WHERE id = ?1")?
            .execute(params![caller.device, crate::now_ms()])?;
    }
    tx.commit()?;
    let mut grid_seqs: Vec<(String, u64)> = seqs.into_iter().collect();
    grid_seqs.sort();
    Ok(PushOutcome {
        stored: stored_count,
        duplicates: plan.duplicates,
        grid_seqs,
    })
}

fn buildings_json(scope: &Scope) -> Option<String> {
    match scope {
        Scope::Grid => None,
        Scope::Buildings(b) => Some(serde_json::to_string(b).unwrap_or_else(|_| "[]".into())),
    }
}

fn pull_tx(
    conn: &mut Connection,
    grid: &str,
    since: u64,
    limit: u32,
    scope: &Scope,
) -> StoreResult<PullPage> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
    let max: i64 = tx
        .prepare_cached("SELECT seq FROM grids WHERE id = ?1")?
        .query_row([grid], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let max = u64::try_from(max).unwrap_or(0);
    let since_i = i64::try_from(since).unwrap_or(i64::MAX);
    let map = |r: &rusqlite::Row<'_>| -> rusqlite::Result<(u64, String, Vec<u8>)> {
        Ok((
            u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
            r.get(1)?,
            r.get(2)?,
        ))
    };
    let changes: Vec<(u64, String, Vec<u8>)> = match buildings_json(scope) {
        None => tx
            .prepare_cached("SELECT seq, doc, bytes FROM changes WHERE grid = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3")?
            .query_map(params![grid, since_i, limit], map)?
            .collect::<rusqlite::Result<_>>()?,
        Some(bs) => tx
            .prepare_cached(
                "SELECT c.seq, c.doc, c.bytes FROM changes c JOIN docs d ON d.id = c.doc
                 WHERE c.grid = ?1 AND c.seq > ?2 AND d.building IN (SELECT value FROM json_each(?4))
                 ORDER BY c.seq LIMIT ?3",
            )?
            .query_map(params![grid, since_i, limit, bs], map)?
            .collect::<rusqlite::Result<_>>()?,
    };
    tx.commit()?;
    let full = changes.len() >= limit as usize;
    let (next, more) = match changes.last() {
        Some((last, _, _)) if full => (*last, *last < max),
        _ => (since.max(max), false),
    };
    Ok(PullPage {
        changes,
        next,
        more,
    })
}

fn bootstrap_tx(
    conn: &mut Connection,
    grid: &str,
    scope: &Scope,
    after: Option<&str>,
    limit: u32,
) -> StoreResult<Snapshot> {
    let limit = bootstrap_page_limit(limit);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
    let cursor: i64 = tx
        .prepare_cached("SELECT seq FROM grids WHERE id = ?1")?
        .query_row([grid], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let map = |r: &rusqlite::Row<'_>| -> rusqlite::Result<BundleRow> {
        Ok(BundleRow {
            id: r.get(0)?,
            kind: r.get(1)?,
            heads: r.get(2)?,
            bytes: r.get(3)?,
            rows: r.get(4)?,
        })
    };
    // One more than the page, to know whether more follow. `after` none = from the start
    // (every id sorts after the empty string).
    let after = after.unwrap_or("");
    let fetch = i64::from(limit) + 1;
    let mut docs: Vec<BundleRow> = match buildings_json(scope) {
        None => tx
            .prepare_cached(
                "SELECT id, kind, heads, bytes, rows FROM docs
                 WHERE grid = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
            )?
            .query_map(params![grid, after, fetch], map)?
            .collect::<rusqlite::Result<_>>()?,
        Some(bs) => tx
            .prepare_cached(
                "SELECT id, kind, heads, bytes, rows FROM docs
                 WHERE grid = ?1 AND id > ?2 AND building IN (SELECT value FROM json_each(?3))
                 ORDER BY id LIMIT ?4",
            )?
            .query_map(params![grid, after, bs, fetch], map)?
            .collect::<rusqlite::Result<_>>()?,
    };
    tx.commit()?;
    let more = docs.len() > limit as usize;
    docs.truncate(limit as usize);
    Ok(Snapshot {
        cursor: u64::try_from(cursor).unwrap_or(0),
        docs,
        more,
    })
}

impl SqliteStorage {
    /// Opens (creating if needed) the database in `dir`, migrating its schema.
    pub fn open(dir: &Path) -> StoreResult<SqliteStorage> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join(DB_FILE);
        let mut writer = Connection::open(&path)?;
        let mode: String = writer.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "cannot switch {} to WAL (got {mode})",
                path.display()
            )));
        }
        configure(&writer)?;
        migrate(&mut writer)?;
        let n = refresh_rows(&mut writer)?;
        if n > 0 {
            tracing::info!(
                documents = n,
                version = PROJECTION_VERSION,
                "recomputed projection rows"
            );
        }
        Ok(SqliteStorage {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> StoreResult<R> + Send + 'static,
    ) -> StoreResult<R> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = lock(&inner.writer);
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("storage task failed: {e}")))?
    }

    async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> StoreResult<R> + Send + 'static,
    ) -> StoreResult<R> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = lock(&inner.readers).pop();
            let mut conn = match pooled {
                Some(c) => c,
                None => {
                    let c = Connection::open_with_flags(
                        &inner.path,
                        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )?;
                    configure(&c)?;
                    c
                }
            };
            let r = f(&mut conn);
            let mut pool = lock(&inner.readers);
            if pool.len() < READERS {
                pool.push(conn);
            }
            r
        })
        .await
        .map_err(|e| StoreError::Backend(format!("storage task failed: {e}")))?
    }
}

#[async_trait]
impl Storage for SqliteStorage {
    async fn health(&self) -> StoreResult<()> {
        self.read(|c| {
            let v: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if v == SCHEMA_VERSION {
                Ok(())
            } else {
                Err(StoreError::Backend(format!("schema version {v}")))
            }
        })
        .await
    }

    async fn add_district(&self, id: &str, name: &str) -> StoreResult<()> {
        let (id, name) = (id.to_string(), name.to_string());
        self.write(move |c| {
            refuse_duplicate(c, "districts", &id, "district")?;
            c.execute(
                "INSERT INTO districts (id, name) VALUES (?1, ?2)",
                params![id, name],
            )?;
            Ok(())
        })
        .await
    }

    async fn add_community(&self, id: &str, name: &str, district: &str) -> StoreResult<()> {
        let (id, name, district) = (id.to_string(), name.to_string(), district.to_string());
        self.write(move |c| {
            refuse_duplicate(c, "communities", &id, "community")?;
            require(c, "districts", &district, "district")?;
            c.execute(
                "INSERT INTO communities (id, name, district) VALUES (?1, ?2, ?3)",
                params![id, name, district],
            )?;
            Ok(())
        })
        .await
    }

    async fn add_grid(&self, id: &str, name: &str, community: &str) -> StoreResult<()> {
        let (id, name, community) = (id.to_string(), name.to_string(), community.to_string());
        self.write(move |c| {
            refuse_duplicate(c, "grids", &id, "grid")?;
            require(c, "communities", &community, "community")?;
            c.execute(
                "INSERT INTO grids (id, name, community) VALUES (?1, ?2, ?3)",
                params![id, name, community],
            )?;
            Ok(())
        })
        .await
    }

    async fn add_building(&self, grid: &str, name: &str) -> StoreResult<()> {
        let (grid, name) = (grid.to_string(), name.to_string());
        self.write(move |c| {
            require(c, "grids", &grid, "grid")?;
            let n = c.execute(
                "INSERT OR IGNORE INTO buildings (grid, name) VALUES (?1, ?2)",
                params![grid, name],
            )?;
            if n == 0 {
                return Err(StoreError::Duplicate(format!(
                    "grid {grid} already has a building {name:?}"
                )));
            }
            Ok(())
        })
        .await
    }

    async fn add_user(&self, id: &str, name: &str) -> StoreResult<()> {
        let (id, name) = (id.to_string(), name.to_string());
        self.write(move |c| {
            refuse_duplicate(c, "users", &id, "user")?;
            c.execute(
                "INSERT INTO users (id, name, created_ms) VALUES (?1, ?2, ?3)",
                params![id, name, crate::now_ms()],
            )?;
            Ok(())
        })
        .await
    }

    async fn community_grids(&self, community: &str) -> StoreResult<Vec<String>> {
        let community = community.to_string();
        self.read(move |c| {
            require(c, "communities", &community, "community")?;
            let mut stmt = c.prepare("SELECT id FROM grids WHERE community = ?1 ORDER BY id")?;
            Ok(stmt
                .query_map([&community], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn grant(
        &self,
        user: &str,
        grids: &[String],
        role: Role,
        buildings: &[String],
    ) -> StoreResult<()> {
        let (user, grids, buildings) = (user.to_string(), grids.to_vec(), buildings.to_vec());
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            require(&tx, "users", &user, "user")?;
            for grid in &grids {
                require(&tx, "grids", grid, "grid")?;
                for b in &buildings {
                    let known = tx
                        .prepare_cached("SELECT 1 FROM buildings WHERE grid = ?1 AND name = ?2")?
                        .query_row(params![grid, b], |_| Ok(()))
                        .optional()?;
                    if known.is_none() {
                        return Err(StoreError::NotFound(format!(
                            "grid {grid} has no building {b:?}; add it with `building add {grid} {b}`"
                        )));
                    }
                }
                let json = serde_json::to_string(&buildings).map_err(|e| StoreError::Invalid(e.to_string()))?;
                tx.execute(
                    "INSERT INTO grants (user, grid, role, buildings) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (user, grid) DO UPDATE SET role = excluded.role, buildings = excluded.buildings",
                    params![user, grid, role.as_str(), json],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn revoke_grant(&self, user: &str, grid: &str) -> StoreResult<()> {
        let (user, grid) = (user.to_string(), grid.to_string());
        self.write(move |c| {
            require(c, "users", &user, "user")?;
            require(c, "grids", &grid, "grid")?;
            if c.execute(
                "DELETE FROM grants WHERE user = ?1 AND grid = ?2",
                params![user, grid],
            )? == 0
            {
                return Err(StoreError::NotFound(format!(
                    "user {user} has no grant on grid {grid}"
                )));
            }
            Ok(())
        })
        .await
    }

    async fn list_users(&self) -> StoreResult<Vec<UserInfo>> {
        self.read(|c| {
            let mut stmt =
                c.prepare("SELECT id, name, revoked_ms IS NOT NULL FROM users ORDER BY id")?;
            Ok(stmt
                .query_map([], |r| {
                    Ok(UserInfo {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        revoked: r.get(2)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn list_grids(&self) -> StoreResult<Vec<GridInfo>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT g.id, g.name, g.community, m.district, g.seq FROM grids g JOIN communities m ON m.id = g.community ORDER BY g.id",
            )?;
            let mut grids: Vec<GridInfo> = stmt
                .query_map([], |r| {
                    Ok(GridInfo {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        community: r.get(2)?,
                        district: r.get(3)?,
                        buildings: Vec::new(),
                        seq: u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut b = c.prepare("SELECT name FROM buildings WHERE grid = ?1 ORDER BY name")?;
            for g in &mut grids {
                g.buildings = b.query_map([&g.id], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
            }
            Ok(grids)
        })
        .await
    }

    async fn list_grants(&self) -> StoreResult<Vec<GrantRow>> {
        self.read(|c| {
            let mut stmt =
                c.prepare("SELECT user, grid, role, buildings FROM grants ORDER BY user, grid")?;
            Ok(stmt
                .query_map([], grant_row)?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn list_devices(&self, user: Option<&str>) -> StoreResult<Vec<DeviceInfo>> {
        let user = user.map(str::to_string);
        self.read(move |c| {
            if let Some(u) = &user {
                require(c, "users", u, "user")?;
            }
            let mut stmt = c.prepare(
                "SELECT id, user, name, created_ms, last_seen_ms, revoked_ms IS NOT NULL FROM devices
                 WHERE ?1 IS NULL OR user = ?1 ORDER BY user, created_ms",
            )?;
            Ok(stmt
                .query_map([&user], |r| {
                    Ok(DeviceInfo {
                        id: r.get(0)?,
                        user: r.get(1)?,
                        name: r.get(2)?,
                        created_ms: r.get(3)?,
                        last_seen_ms: r.get(4)?,
                        revoked: r.get(5)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn revoke_device(&self, device: &str, now_ms: i64) -> StoreResult<()> {
        let device = device.to_string();
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            require(&tx, "devices", &device, "device")?;
            tx.execute("UPDATE devices SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL", params![device, now_ms])?;
            tx.execute(
                "UPDATE refresh_tokens SET revoked_ms = ?2 WHERE device = ?1 AND revoked_ms IS NULL",
                params![device, now_ms],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn revoke_user(&self, user: &str, now_ms: i64) -> StoreResult<()> {
        let user = user.to_string();
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            require(&tx, "users", &user, "user")?;
            tx.execute(
                "UPDATE users SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
                params![user, now_ms],
            )?;
            tx.execute(
                "UPDATE devices SET revoked_ms = ?2 WHERE user = ?1 AND revoked_ms IS NULL",
                params![user, now_ms],
            )?;
            tx.execute(
                "UPDATE refresh_tokens SET revoked_ms = ?2
                 WHERE device IN (SELECT id FROM devices WHERE user = ?1) AND revoked_ms IS NULL",
                params![user, now_ms],
            )?;
            tx.execute(
                "UPDATE enroll_codes SET used_ms = ?2 WHERE user = ?1 AND used_ms IS NULL",
                params![user, now_ms],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn add_enroll_code(
        &self,
        user: &str,
        code_hash: &str,
        expires_ms: i64,
        now_ms: i64,
    ) -> StoreResult<()> {
        let (user, code_hash) = (user.to_string(), code_hash.to_string());
        self.write(move |c| {
            require(c, "users", &user, "user")?;
            let revoked: bool = c.query_row("SELECT revoked_ms IS NOT NULL FROM users WHERE id = ?1", [&user], |r| r.get(0))?;
            if revoked {
                return Err(StoreError::Invalid(format!("user {user} is revoked")));
            }
            c.execute(
                "INSERT INTO enroll_codes (hash, user, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4)",
                params![code_hash, user, now_ms, expires_ms],
            )?;
            Ok(())
        })
        .await
    }

    async fn enroll(
        &self,
        code_hash: &str,
        device: &str,
        device_name: &str,
        refresh_hash: &str,
        refresh_expires_ms: i64,
        now_ms: i64,
    ) -> StoreResult<Option<Enrolled>> {
        let (code_hash, device, device_name, refresh_hash) = (
            code_hash.to_string(),
            device.to_string(),
            device_name.to_string(),
            refresh_hash.to_string(),
        );
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let row: Option<CodeRow> = tx
                .query_row(
                    "SELECT e.user, u.name, e.expires_ms, e.used_ms, u.revoked_ms IS NOT NULL
                     FROM enroll_codes e JOIN users u ON u.id = e.user WHERE e.hash = ?1",
                    [&code_hash],
                    |r| {
                        Ok(CodeRow {
                            user: r.get(0)?,
                            user_name: r.get(1)?,
                            expires_ms: r.get(2)?,
                            used_ms: r.get(3)?,
                            user_revoked: r.get(4)?,
                        })
                    },
                )
                .optional()?;
            let Some(CodeRow { user, user_name, .. }) =
                row.filter(|r| credentials::may_enroll(Some(r), now_ms))
            else {
                return Ok(None);
            };
            tx.execute("UPDATE enroll_codes SET used_ms = ?2, device = ?3 WHERE hash = ?1", params![code_hash, now_ms, device])?;
            tx.execute(
                "INSERT INTO devices (id, user, name, created_ms, last_seen_ms) VALUES (?1, ?2, ?3, ?4, ?4)",
                params![device, user, device_name, now_ms],
            )?;
            tx.execute(
                "INSERT INTO refresh_tokens (hash, device, issued_ms, expires_ms) VALUES (?1, ?2, ?3, ?4)",
                params![refresh_hash, device, now_ms, refresh_expires_ms],
            )?;
            let grants = grants_of(&tx, &user)?;
            tx.commit()?;
            Ok(Some(Enrolled { user, user_name, grants }))
        })
        .await
    }

    async fn refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
        new_expires_ms: i64,
        now_ms: i64,
    ) -> StoreResult<RefreshOutcome> {
        let (old_hash, new_hash) = (old_hash.to_string(), new_hash.to_string());
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let row: Option<RefreshRow> = tx
                .query_row(
                    "SELECT r.device, d.user, r.expires_ms, r.used_ms, r.revoked_ms,
                            d.revoked_ms IS NOT NULL OR u.revoked_ms IS NOT NULL, d.reset_ms IS NOT NULL,
                            r.parent,
                            EXISTS (SELECT 1 FROM refresh_tokens c WHERE c.parent = r.hash AND c.used_ms IS NOT NULL)
                     FROM refresh_tokens r JOIN devices d ON d.id = r.device JOIN users u ON u.id = d.user
                     WHERE r.hash = ?1",
                    [&old_hash],
                    |r| {
                        Ok(RefreshRow {
                            device: r.get(0)?,
                            user: r.get(1)?,
                            expires_ms: r.get(2)?,
                            used_ms: r.get(3)?,
                            revoked_ms: r.get(4)?,
                            device_revoked: r.get(5)?,
                            device_reset: r.get(6)?,
                            parent: r.get(7)?,
                            child_used: r.get(8)?,
                        })
                    },
                )
                .optional()?;
            let decision = credentials::decide_refresh(row.as_ref(), now_ms);
            let (device, user) = match (row, &decision) {
                (Some(r), RefreshDecision::Rotate { .. } | RefreshDecision::Reissue) => (r.device, r.user),
                (Some(r), RefreshDecision::Revoked) => {
                    return Ok(RefreshOutcome::Revoked { held_grids: held_grids(&tx, &r.device)? });
                }
                (Some(r), RefreshDecision::Theft) => {
                    tx.execute(
                        "UPDATE refresh_tokens SET revoked_ms = ?2 WHERE device = ?1 AND revoked_ms IS NULL",
                        params![r.device, now_ms],
                    )?;
                    tx.execute("UPDATE devices SET reset_ms = ?2 WHERE id = ?1", params![r.device, now_ms])?;
                    tx.commit()?;
                    tracing::warn!(device = r.device, "refresh token reused: every token of the device revoked");
                    return Ok(RefreshOutcome::Refused(credentials::CredentialRefusal::TokenReused));
                }
                (_, RefreshDecision::Refuse(why)) => return Ok(RefreshOutcome::Refused(*why)),
                (None, _) => return Ok(RefreshOutcome::Refused(credentials::CredentialRefusal::UnknownToken)),
            };
            if let RefreshDecision::Rotate { parent } = &decision {
                tx.execute("UPDATE refresh_tokens SET used_ms = ?2 WHERE hash = ?1", params![old_hash, now_ms])?;
                if let Some(parent) = parent {
                    // The first child presented wins: its unused siblings die.
                    tx.execute(
                        "UPDATE refresh_tokens SET revoked_ms = ?3
                         WHERE parent = ?1 AND hash != ?2 AND used_ms IS NULL AND revoked_ms IS NULL",
                        params![parent, old_hash, now_ms],
                    )?;
                }
            }
            tx.execute(
                "INSERT INTO refresh_tokens (hash, device, issued_ms, expires_ms, parent) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![new_hash, device, now_ms, new_expires_ms, old_hash],
            )?;
            tx.execute("UPDATE devices SET last_seen_ms = ?2 WHERE id = ?1", params![device, now_ms])?;
            tx.commit()?;
            Ok(RefreshOutcome::Rotated { device, user })
        })
        .await
    }

    async fn device_standing(
        &self,
        device: &str,
        user: &str,
        _now_ms: i64,
    ) -> StoreResult<DeviceStanding> {
        let (device, user) = (device.to_string(), user.to_string());
        self.read(move |c| {
            let row: Option<DeviceRow> = c
                .prepare_cached(
                    "SELECT d.user, u.name, d.revoked_ms IS NOT NULL OR u.revoked_ms IS NOT NULL, d.reset_ms IS NOT NULL
                     FROM devices d JOIN users u ON u.id = d.user WHERE d.id = ?1",
                )?
                .query_row([&device], |r| {
                    Ok(DeviceRow { owner: r.get(0)?, user_name: r.get(1)?, revoked: r.get(2)?, reset: r.get(3)? })
                })
                .optional()?;
            match (credentials::decide_standing(row.as_ref(), &user), row) {
                (Standing::Active, Some(r)) => Ok(DeviceStanding::Active(Caller {
                    held_grids: held_grids(c, &device)?,
                    device,
                    grants: grants_of(c, &user)?,
                    user,
                    user_name: r.user_name,
                })),
                (Standing::Revoked, _) => Ok(DeviceStanding::Revoked { held_grids: held_grids(c, &device)? }),
                (Standing::Reset, _) => Ok(DeviceStanding::Reset),
                (Standing::Unknown | Standing::Active, _) => Ok(DeviceStanding::Unknown),
            }
        })
        .await
    }

    async fn push(&self, caller: &Caller, parsed: Parsed) -> StoreResult<PushOutcome> {
        let caller = caller.clone();
        self.write(move |c| push_tx(c, &caller, parsed)).await
    }

    async fn mark_held(&self, device: &str, grid: &str) -> StoreResult<()> {
        let (device, grid) = (device.to_string(), grid.to_string());
        self.write(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO device_grids (device, grid, since_ms) VALUES (?1, ?2, ?3)",
                params![device, grid, crate::now_ms()],
            )?;
            Ok(())
        })
        .await
    }

    async fn pull(
        &self,
        grid: &str,
        since: u64,
        limit: u32,
        scope: &Scope,
    ) -> StoreResult<PullPage> {
        let (grid, scope) = (grid.to_string(), scope.clone());
        self.read(move |c| pull_tx(c, &grid, since, limit, &scope))
            .await
    }

    async fn bootstrap(
        &self,
        grid: &str,
        scope: &Scope,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Snapshot> {
        let (grid, scope) = (grid.to_string(), scope.clone());
        let after = after.map(str::to_string);
        self.read(move |c| bootstrap_tx(c, &grid, &scope, after.as_deref(), limit))
            .await
    }

    async fn doc(&self, id: &str) -> StoreResult<Option<(DocMeta, Vec<u8>)>> {
        let id = id.to_string();
        self.read(move |c| {
            let tx = c.transaction()?;
            let d = load_stored(&tx, &id)?;
            tx.commit()?;
            Ok(d.map(|d| {
                (
                    DocMeta {
                        id: d.id,
                        grid: d.grid,
                        kind: d.kind,
                        building: d.building,
                        tier: d.tier,
                        unit: d.unit,
                    },
                    d.bytes,
                )
            }))
        })
        .await
    }

    async fn set_tier(
        &self,
        task: &str,
        from: Tier,
        to: Tier,
        unit: Option<&str>,
    ) -> StoreResult<bool> {
        let (task, unit) = (task.to_string(), unit.map(str::to_string));
        self.write(move |c| {
            let n = c.execute(
                "UPDATE docs SET tier = ?3, unit = COALESCE(?4, unit) WHERE id = ?1 AND kind = 'task' AND tier = ?2",
                params![task, from.as_str(), to.as_str(), unit],
            )?;
            Ok(n == 1)
        })
        .await
    }
}
