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

use super::projected::{self, Dialect, PRow, RowGet, Val};
use super::*;
use crate::access::{Caller, GrantRow, Scope};
use crate::credentials::{self, CodeRow, DeviceRow, RefreshDecision, RefreshRow, Standing};
use crate::error::{Refusal, StoreError};
use crate::ingest::{self, Parsed, StoredDoc};
use crate::projection::{self as proj, DocRows};

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
    // 3: documents set aside by `xiuhua-server check`; each device's pushes per UTC day.
    r#"
CREATE TABLE quarantine (
    doc TEXT PRIMARY KEY, grid TEXT NOT NULL, reason TEXT NOT NULL, since_ms INTEGER NOT NULL) STRICT;
CREATE TABLE device_usage (
    device TEXT NOT NULL, day INTEGER NOT NULL, bytes INTEGER NOT NULL, changes INTEGER NOT NULL,
    PRIMARY KEY (device, day)) STRICT, WITHOUT ROWID;
"#,
    // 4: refresh tokens name their parent (a retry after a lost reply); a device whose
    // refresh token was reused is reset (credentials module).
    r#"
ALTER TABLE refresh_tokens ADD COLUMN parent TEXT;
CREATE INDEX refresh_tokens_parent ON refresh_tokens(parent);
ALTER TABLE devices ADD COLUMN reset_ms INTEGER;
"#,
    // 5: a device enrolled on a phone that holds an earlier device's data succeeds it
    // (credentials::decide_enroll).
    r#"
ALTER TABLE devices ADD COLUMN predecessor TEXT;
"#,
    // 6: documents that changed building (a household moved, and what follows it), so that
    // a pull tells a building-scoped phone what left or entered its buildings.
    r#"
CREATE TABLE moves (
    grid TEXT NOT NULL, seq INTEGER NOT NULL, doc TEXT NOT NULL,
    from_building TEXT, to_building TEXT,
    PRIMARY KEY (grid, seq, doc)) STRICT, WITHOUT ROWID;
"#,
    // 7: the server's projection (crate::projection), queried by the station's console.
    r#"
CREATE TABLE p_households (
    id TEXT PRIMARY KEY, grid TEXT NOT NULL, building TEXT NOT NULL, unit TEXT NOT NULL,
    room TEXT NOT NULL, head_name TEXT NOT NULL, member_count INTEGER NOT NULL,
    tags TEXT NOT NULL, visit_count INTEGER NOT NULL, last_visit_at INTEGER,
    conflicts INTEGER NOT NULL, created_at INTEGER NOT NULL, created_by TEXT NOT NULL,
    moved_out_at INTEGER) STRICT;
CREATE INDEX p_households_grid ON p_households(grid, created_at);
CREATE TABLE p_residents (
    household TEXT NOT NULL, pos INTEGER NOT NULL, member TEXT NOT NULL, grid TEXT NOT NULL,
    building TEXT NOT NULL, name TEXT NOT NULL, pinyin TEXT NOT NULL, initials TEXT NOT NULL,
    phone_masked TEXT, id_masked TEXT, gender TEXT NOT NULL, birth_year INTEGER NOT NULL,
    relation TEXT NOT NULL, tags TEXT NOT NULL, status TEXT,
    PRIMARY KEY (household, pos)) STRICT, WITHOUT ROWID;
CREATE INDEX p_residents_grid ON p_residents(grid);
CREATE TABLE p_visits (
    household TEXT NOT NULL, pos INTEGER NOT NULL, id TEXT NOT NULL, grid TEXT NOT NULL,
    at_ms INTEGER NOT NULL, by_user TEXT NOT NULL, by_name TEXT NOT NULL,
    purpose TEXT NOT NULL, note TEXT NOT NULL, follow_up TEXT,
    PRIMARY KEY (household, pos)) STRICT, WITHOUT ROWID;
CREATE INDEX p_visits_grid ON p_visits(grid, at_ms);
CREATE TABLE p_records (
    id TEXT PRIMARY KEY, grid TEXT NOT NULL, category TEXT NOT NULL, status TEXT NOT NULL,
    shown TEXT NOT NULL, reporter TEXT NOT NULL, household TEXT, building TEXT,
    place TEXT NOT NULL, reported_at INTEGER NOT NULL, summary TEXT NOT NULL,
    created_by TEXT NOT NULL) STRICT;
CREATE INDEX p_records_grid ON p_records(grid, reported_at);
CREATE INDEX p_records_household ON p_records(household);
CREATE TABLE p_tasks (
    id TEXT PRIMARY KEY, grid TEXT NOT NULL, title TEXT NOT NULL, category TEXT NOT NULL,
    level TEXT, status TEXT NOT NULL, ordered INTEGER NOT NULL, tier TEXT NOT NULL,
    linked_unit TEXT, assignee TEXT, deadline INTEGER, created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL, ordered_by TEXT, household TEXT, source_record TEXT,
    rating INTEGER, rejected INTEGER NOT NULL, done_at INTEGER, closed_at INTEGER,
    reopened INTEGER NOT NULL, escalated INTEGER NOT NULL) STRICT;
CREATE INDEX p_tasks_grid ON p_tasks(grid, created_at);
CREATE INDEX p_tasks_record ON p_tasks(source_record);
CREATE INDEX p_tasks_household ON p_tasks(household);
CREATE TABLE p_task_events (
    task TEXT NOT NULL, id TEXT NOT NULL, grid TEXT NOT NULL, pos INTEGER NOT NULL,
    kind TEXT NOT NULL, author TEXT NOT NULL, author_name TEXT NOT NULL, role TEXT NOT NULL,
    at_ms INTEGER NOT NULL, body TEXT NOT NULL, outcome TEXT NOT NULL, reason TEXT,
    PRIMARY KEY (task, id)) STRICT, WITHOUT ROWID;
CREATE INDEX p_task_events_grid ON p_task_events(grid);
"#,
    // 8: the station console: passwords, sessions (token hashes), failed logins, audit log.
    r#"
CREATE TABLE console_passwords (
    user TEXT PRIMARY KEY REFERENCES users(id), hash TEXT NOT NULL, set_ms INTEGER NOT NULL) STRICT;
CREATE TABLE console_sessions (
    hash TEXT PRIMARY KEY, user TEXT NOT NULL REFERENCES users(id),
    created_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL, ip TEXT NOT NULL) STRICT;
CREATE INDEX console_sessions_user ON console_sessions(user);
CREATE TABLE console_login_failures (
    user TEXT PRIMARY KEY REFERENCES users(id), count INTEGER NOT NULL,
    last_ms INTEGER NOT NULL, locked_until_ms INTEGER NOT NULL) STRICT;
CREATE TABLE console_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL, user TEXT NOT NULL,
    ip TEXT NOT NULL, action TEXT NOT NULL, detail TEXT NOT NULL, ok INTEGER NOT NULL) STRICT;
"#,
    // 9: each task's board columns (storage::console::board_flags), so that the board counts
    // and pages in SQL; the projection's new version refills them at start.
    r#"
ALTER TABLE p_tasks ADD COLUMN board INTEGER NOT NULL DEFAULT 0;
"#,
    // 10: numbers for people (core::numbers): each community's next sequence per year, and
    // the blocks of sequences reserved for each device.
    r#"
CREATE TABLE number_counters (
    community TEXT NOT NULL REFERENCES communities(id), year INTEGER NOT NULL,
    next INTEGER NOT NULL, PRIMARY KEY (community, year)) STRICT, WITHOUT ROWID;
CREATE TABLE number_blocks (
    device TEXT NOT NULL REFERENCES devices(id), community TEXT NOT NULL,
    year INTEGER NOT NULL, start_seq INTEGER NOT NULL, end_seq INTEGER NOT NULL,
    at_ms INTEGER NOT NULL, PRIMARY KEY (device, community, year, start_seq)) STRICT, WITHOUT ROWID;
"#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

struct Inner {
    path: PathBuf,
    /// The SQLCipher key, set on every connection before anything else.
    key: Option<String>,
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

/// Creates `dir` (0700) and the database file in it (0600) when missing, tightens their
/// modes when they exist; returns the database's path. SQLite gives the `-wal` and `-shm`
/// files the database file's mode.
fn private_data_dir(dir: &Path) -> StoreResult<PathBuf> {
    let fail = |what: &Path, e: std::io::Error| {
        StoreError::Backend(format!("cannot prepare {}: {e}", what.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, e))?;
    let path = dir.join(DB_FILE);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| fail(dir, e))?;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| fail(&path, e))?;
    }
    restrict_files(&path)?;
    Ok(path)
}

/// Makes the database, its `-wal` and `-shm` files 0600 (those that exist).
fn restrict_files(path: &Path) -> StoreResult<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            let p = PathBuf::from(p);
            match std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(StoreError::Backend(format!(
                        "cannot restrict {}: {e}",
                        p.display()
                    )));
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Sets the SQLCipher key (when given) and checks that it opens the database.
fn apply_key(conn: &Connection, key: Option<&str>) -> StoreResult<()> {
    if let Some(k) = key {
        conn.pragma_update(None, "key", k)?;
    }
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0))
        .map_err(|_| {
            StoreError::Backend(if key.is_some() {
                "the server database does not open with this key (XIUHUA_DB_KEY / XIUHUA_DB_KEY_FILE), or was created without one".into()
            } else {
                "the server database does not open: it is encrypted (set XIUHUA_DB_KEY or XIUHUA_DB_KEY_FILE) or not a database".into()
            })
        })?;
    Ok(())
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

// ----- the projection tables (rows from `crate::projection`, SQL from `projected`) -----

const D: Dialect = Dialect::Sqlite;

impl RowGet for rusqlite::Row<'_> {
    fn text(&self, i: usize) -> StoreResult<String> {
        Ok(self.get(i)?)
    }
    fn opt_text(&self, i: usize) -> StoreResult<Option<String>> {
        Ok(self.get(i)?)
    }
    fn int(&self, i: usize) -> StoreResult<i64> {
        Ok(self.get(i)?)
    }
    fn opt_int(&self, i: usize) -> StoreResult<Option<i64>> {
        Ok(self.get(i)?)
    }
}

fn sql_val(v: &Val) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match v {
        Val::Text(Some(s)) => Value::Text(s.clone()),
        Val::Int(Some(n)) => Value::Integer(*n),
        Val::Text(None) | Val::Int(None) => Value::Null,
        Val::Texts(list) => {
            Value::Text(serde_json::to_string(list).unwrap_or_else(|_| "[]".into()))
        }
    }
}

/// Sets the status `record` shows from the tasks made from it ([`proj::shown_status`]).
fn refresh_shown(c: &Connection, record: &str) -> StoreResult<()> {
    let own: Option<(String, String)> = c
        .prepare_cached(&projected::record_status_sql(D))?
        .query_row([record], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((own, grid)) = own else {
        return Ok(());
    };
    let tasks: Vec<String> = c
        .prepare_cached(&projected::tasks_of_record_sql(D))?
        .query_map([record, grid.as_str()], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let shown = proj::shown_status(&own, tasks.iter().map(String::as_str));
    c.prepare_cached(&projected::set_shown_sql(D))?
        .execute(params![record, shown])?;
    Ok(())
}

/// The record a stored task row was made from.
fn task_link(c: &Connection, task: &str) -> StoreResult<Option<String>> {
    Ok(c.prepare_cached(&projected::task_link_sql(D))?
        .query_row([task], |r| r.get::<_, Option<String>>(0))
        .optional()?
        .flatten())
}

/// Replaces a document's projection rows, in the caller's transaction.
fn write_doc_rows(c: &Connection, rows: &DocRows) -> StoreResult<()> {
    let id = rows.id();
    let linked_before = match rows.kind() {
        DocKind::Task => task_link(c, id)?,
        _ => None,
    };
    for t in projected::Table::of_kind(rows.kind()) {
        c.prepare_cached(&D.delete(*t))?.execute([id])?;
    }
    for (t, vals) in projected::values_of(rows) {
        c.prepare_cached(&D.insert(t))?
            .execute(rusqlite::params_from_iter(vals.iter().map(sql_val)))?;
    }
    for r in proj::records_to_refresh(rows, linked_before.as_deref()) {
        refresh_shown(c, &r)?;
    }
    Ok(())
}

/// Removes a document's projection rows (quarantine), refreshing the record a task was
/// made from.
fn delete_doc_rows(c: &Connection, id: &str) -> StoreResult<()> {
    let linked = task_link(c, id)?;
    for t in projected::Table::ALL {
        c.prepare_cached(&D.delete(t))?.execute([id])?;
    }
    if let Some(r) = linked {
        refresh_shown(c, &r)?;
    }
    Ok(())
}

/// Projects a stored document's bytes and writes its rows; a document that does not load
/// or project keeps none (it is for `xiuhua-server check` to quarantine). Returns whether
/// rows were written.
fn project_stored(c: &Connection, id: &str, bytes: &[u8]) -> StoreResult<bool> {
    let projected = AutoCommit::load(bytes)
        .map_err(|e| e.to_string())
        .and_then(|doc| proj::project(id, &doc).map_err(|e| e.to_string()));
    match projected {
        Ok(Some(p)) => {
            write_doc_rows(c, &p.server)?;
            Ok(true)
        }
        Ok(None) => Ok(false),
        Err(reason) => {
            tracing::warn!(doc = id, reason = %reason, "stored document not projected");
            Ok(false)
        }
    }
}

/// Recomputes every projection row from the stored documents (quarantined ones get none)
/// and records the projection's version, in the caller's transaction.
fn rebuild_rows(c: &Connection) -> StoreResult<u64> {
    for t in projected::Table::ALL {
        c.execute(&format!("DELETE FROM {}", t.name()), [])?;
    }
    let ids: Vec<String> = c
        .prepare("SELECT id FROM docs WHERE id NOT IN (SELECT doc FROM quarantine) ORDER BY id")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut n = 0;
    let mut stmt = c.prepare_cached("SELECT bytes FROM docs WHERE id = ?1")?;
    for id in &ids {
        let bytes: Vec<u8> = stmt.query_row([id], |r| r.get(0))?;
        if project_stored(c, id, &bytes)? {
            n += 1;
        }
    }
    c.execute(
        "INSERT INTO meta (key, value) VALUES ('projection', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [proj::stored_version()],
    )?;
    Ok(n)
}

/// Rebuilds the projection when it was written by another version (or never: a database
/// from before the projection tables).
fn ensure_projection(conn: &mut Connection) -> StoreResult<Option<u64>> {
    let stored: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'projection'", [], |r| {
            r.get(0)
        })
        .optional()?;
    if stored.as_deref() == Some(proj::stored_version().as_str()) {
        return Ok(None);
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let n = rebuild_rows(&tx)?;
    tx.commit()?;
    Ok(Some(n))
}

fn select_rows(c: &Connection, table: projected::Table, sel: &Select) -> StoreResult<Projection> {
    let (sql, vals) = sel.sql(table, D);
    let mut stmt = c.prepare_cached(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(vals.iter().map(sql_val)))?;
    let mut out = Projection::default();
    while let Some(r) = rows.next()? {
        let row: PRow = projected::decode(table, r)?;
        out.push(row);
    }
    Ok(out)
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

/// The devices `device` succeeds, nearest first (credentials::decide_enroll).
fn predecessors(conn: &Connection, device: &str) -> StoreResult<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "WITH RECURSIVE chain(id, n) AS (
             SELECT predecessor, 1 FROM devices WHERE id = ?1 AND predecessor IS NOT NULL
             UNION ALL
             SELECT d.predecessor, c.n + 1 FROM devices d JOIN chain c ON d.id = c.id
             WHERE d.predecessor IS NOT NULL AND c.n < ?2)
         SELECT id FROM chain ORDER BY n",
    )?;
    let max = i64::try_from(credentials::MAX_PREDECESSORS).unwrap_or(32);
    Ok(stmt
        .query_map(params![device, max], |r| r.get(0))?
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

fn load_stored(conn: &Connection, id: &str) -> StoreResult<Option<StoredDoc>> {
    let row = conn
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

fn is_quarantined(conn: &Connection, id: &str) -> StoreResult<bool> {
    exists(conn, "SELECT 1 FROM quarantine WHERE doc = ?1", id)
}

/// Attempts of a push whose documents changed while it applied them; the last one holds the
/// writer while applying, so a push always ends.
const PUSH_ATTEMPTS: usize = 6;

/// What a push's Automerge work reads.
struct PushRead {
    stored: HashMap<String, StoredDoc>,
    versions: HashMap<String, DocVersion>,
    known: HashSet<automerge::ChangeHash>,
}

/// The versions of the registered documents among `ids`; refuses a quarantined one.
fn versions_of(conn: &Connection, ids: &[String]) -> StoreResult<HashMap<String, DocVersion>> {
    let mut out = HashMap::new();
    let mut stmt = conn.prepare_cached(
        "SELECT heads, tier, building, EXISTS (SELECT 1 FROM quarantine q WHERE q.doc = docs.id)
         FROM docs WHERE id = ?1",
    )?;
    for id in ids {
        let row: Option<(DocVersion, bool)> = stmt
            .query_row([id], |r| {
                Ok((
                    DocVersion {
                        heads: r.get(0)?,
                        tier: r.get(1)?,
                        building: r.get(2)?,
                    },
                    r.get(3)?,
                ))
            })
            .optional()?;
        if let Some((version, quarantined)) = row {
            if quarantined {
                return Err(quarantined_refusal(id).into());
            }
            out.insert(id.clone(), version);
        }
    }
    Ok(out)
}

fn read_push(conn: &Connection, parsed: &Parsed) -> StoreResult<PushRead> {
    let ids = parsed.doc_ids();
    let versions = versions_of(conn, &ids)?;
    let mut stored = HashMap::new();
    for id in versions.keys() {
        if let Some(d) = load_stored(conn, id)? {
            stored.insert(id.clone(), d);
        }
    }
    let mut known = HashSet::new();
    let mut stmt = conn.prepare_cached("SELECT 1 FROM changes WHERE hash = ?1")?;
    for h in parsed.hashes() {
        if stmt
            .query_row([h.0.to_vec()], |_| Ok(()))
            .optional()?
            .is_some()
        {
            known.insert(h);
        }
    }
    Ok(PushRead {
        stored,
        versions,
        known,
    })
}

fn quarantine_rows(
    conn: &Connection,
    rows: &[(String, String, String)],
    now_ms: i64,
) -> StoreResult<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO quarantine (doc, grid, reason, since_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (doc) DO UPDATE SET reason = excluded.reason",
    )?;
    for (id, grid, reason) in rows {
        stmt.execute(params![id, grid, reason, now_ms])?;
        delete_doc_rows(conn, id)?;
    }
    Ok(())
}

/// Applying a push failed without a refusal: if a stored document it touched is broken,
/// quarantine it and refuse the push with that reason (a 409 the client skips past) instead
/// of failing every push that touches the document.
fn after_apply_error(conn: &Connection, read: &PushRead, e: StoreError) -> StoreError {
    if matches!(e, StoreError::Refused(_)) {
        return e;
    }
    let broken = crate::check::broken_among(&read.stored, &read.versions);
    let Some((id, grid, reason)) = broken.first() else {
        return e;
    };
    match quarantine_rows(conn, &broken, crate::now_ms()) {
        Ok(()) => {
            tracing::warn!(
                doc = id,
                grid,
                reason,
                "stored document broken: quarantined"
            );
            quarantined_refusal(id).into()
        }
        Err(q) => q,
    }
}

/// Writes an applied push in the writer's transaction if the documents it read are
/// unchanged; `None` when they changed (redo the push).
fn write_push(
    tx: &Transaction<'_>,
    caller: &Caller,
    ids: &[String],
    applied: ingest::Applied,
    read: &HashMap<String, DocVersion>,
    quota: &Quota,
) -> StoreResult<Option<PushOutcome>> {
    if !unchanged(read, &versions_of(tx, ids)?) {
        return Ok(None);
    }
    {
        // The same change pushed concurrently under another document id.
        let mut stmt = tx.prepare_cached("SELECT 1 FROM changes WHERE hash = ?1")?;
        for d in &applied.docs {
            for (h, _) in &d.changes {
                if stmt
                    .query_row([h.0.to_vec()], |_| Ok(()))
                    .optional()?
                    .is_some()
                {
                    return Ok(None);
                }
            }
        }
    }
    let mut households = HashMap::new();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT grid, building FROM docs WHERE id = ?1 AND kind = 'household'",
        )?;
        for h in applied.households_needed() {
            let at = stmt
                .query_row([&h], |r| {
                    Ok(ingest::HouseholdAt {
                        grid: r.get(0)?,
                        building: r.get(1)?,
                    })
                })
                .optional()?;
            if let Some(at) = at {
                households.insert(h, at);
            }
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
    let now = crate::now_ms();
    if stored_count > 0 {
        let bytes: u64 = plan
            .docs
            .iter()
            .flat_map(|d| d.changes.iter().map(|(_, b)| b.len() as u64))
            .sum();
        let day = Quota::day_of(now);
        let (used_bytes, used_changes): (i64, i64) = tx
            .prepare_cached(
                "INSERT INTO device_usage (device, day, bytes, changes) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (device, day) DO UPDATE
                 SET bytes = bytes + excluded.bytes, changes = changes + excluded.changes
                 RETURNING bytes, changes",
            )?
            .query_row(
                params![
                    caller.device,
                    day,
                    i64::try_from(bytes).unwrap_or(i64::MAX),
                    i64::try_from(stored_count).unwrap_or(i64::MAX)
                ],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
        quota.check(
            u64::try_from(used_bytes).unwrap_or(0),
            u64::try_from(used_changes).unwrap_or(0),
            now,
        )?;
        tx.prepare_cached("DELETE FROM device_usage WHERE device = ?1 AND day < ?2")?
            .execute(params![caller.device, day - 7])?;
    }
    {
        let mut last_seq: HashMap<String, u64> = HashMap::new();
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
            last_seq.insert(d.id.clone(), *seq);
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
        for d in &plan.docs {
            write_doc_rows(tx, &d.server_rows)?;
        }
        write_moves(tx, &plan, &last_seq)?;
        let mut upd_grid = tx.prepare_cached("UPDATE grids SET seq = ?2 WHERE id = ?1")?;
        for (grid, seq) in &seqs {
            upd_grid.execute(params![grid, *seq as i64])?;
        }
        tx.prepare_cached("UPDATE devices SET last_seen_ms = ?2 WHERE id = ?1")?
            .execute(params![caller.device, now])?;
    }
    let mut grid_seqs: Vec<(String, u64)> = seqs.into_iter().collect();
    grid_seqs.sort();
    Ok(Some(PushOutcome {
        stored: stored_count,
        duplicates: plan.duplicates,
        grid_seqs,
    }))
}

/// Records the moves of a push ([`push_moves`]) and files the documents that follow a
/// moved household under its new building.
fn write_moves(
    tx: &Transaction<'_>,
    plan: &ingest::Plan,
    last_seq: &HashMap<String, u64>,
) -> StoreResult<()> {
    let mut followers: HashMap<String, Vec<String>> = HashMap::new();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT id, kind, rows FROM docs
             WHERE grid = ?1 AND building IS ?2 AND kind IN ('record', 'task')",
        )?;
        for d in plan.docs.iter().filter(|d| d.kind == DocKind::Household) {
            let Some(from) = &d.moved_from else { continue };
            let rows = stmt.query_map(params![d.grid, from], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })?;
            let mut mine = Vec::new();
            for row in rows {
                let (id, kind, rows) = row?;
                if follows_household(&kind, &rows, &d.id) {
                    mine.push(id);
                }
            }
            followers.insert(d.id.clone(), mine);
        }
    }
    let moves = push_moves(plan, last_seq, &followers);
    let in_push: HashSet<&str> = plan.docs.iter().map(|d| d.id.as_str()).collect();
    let mut ins = tx.prepare_cached(
        "INSERT OR REPLACE INTO moves (grid, seq, doc, from_building, to_building)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut refile = tx.prepare_cached("UPDATE docs SET building = ?2 WHERE id = ?1")?;
    for (grid, m) in &moves {
        ins.execute(params![
            grid,
            i64::try_from(m.seq).unwrap_or(i64::MAX),
            m.doc,
            m.from,
            m.to
        ])?;
        if !in_push.contains(m.doc.as_str()) {
            refile.execute(params![m.doc, m.to])?;
        }
    }
    Ok(())
}

/// One attempt of a push. Optimistic (`locked` false): read on a reader, apply with no lock
/// held, then commit in the writer's transaction if nothing changed (`None` otherwise).
/// Locked: all of it in the writer's transaction.
fn push_attempt(
    inner: &Inner,
    caller: &Caller,
    parsed: Parsed,
    quota: &Quota,
    locked: bool,
) -> StoreResult<Option<PushOutcome>> {
    let ids = parsed.doc_ids();
    if locked {
        let mut w = lock(&inner.writer);
        let tx = w.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let read = read_push(&tx, &parsed)?;
        let applied = match ingest::apply(parsed, &read.stored, &read.known) {
            Ok(a) => a,
            Err(e) => {
                let e = after_apply_error(&tx, &read, e);
                if matches!(&e, StoreError::Refused(r) if r.kind == crate::error::RefusalKind::Quarantined)
                {
                    tx.commit()?;
                }
                return Err(e);
            }
        };
        let out = write_push(&tx, caller, &ids, applied, &read.versions, quota)?;
        tx.commit()?;
        return Ok(out);
    }
    let read = with_reader(inner, |c| {
        let tx = c.transaction()?;
        let r = read_push(&tx, &parsed);
        tx.commit()?;
        r
    })?;
    let applied = match ingest::apply(parsed, &read.stored, &read.known) {
        Ok(a) => a,
        Err(e) => {
            if matches!(e, StoreError::Refused(_)) {
                return Err(e);
            }
            let mut w = lock(&inner.writer);
            let tx = w.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let e = after_apply_error(&tx, &read, e);
            tx.commit()?;
            return Err(e);
        }
    };
    let mut w = lock(&inner.writer);
    let tx = w.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let out = write_push(&tx, caller, &ids, applied, &read.versions, quota)?;
    if out.is_some() {
        tx.commit()?;
    }
    Ok(out)
}

fn push_blocking(
    inner: &Inner,
    caller: &Caller,
    parsed: Parsed,
    quota: &Quota,
) -> StoreResult<PushOutcome> {
    let mut parsed = Some(parsed);
    for attempt in 0..PUSH_ATTEMPTS {
        let last = attempt + 1 == PUSH_ATTEMPTS;
        let p = if last { parsed.take() } else { parsed.clone() };
        let Some(p) = p else { break };
        if let Some(out) = push_attempt(inner, caller, p, quota, last)? {
            return Ok(out);
        }
        tracing::debug!(
            attempt,
            "a pushed document changed while the push applied; redoing"
        );
    }
    Err(StoreError::Backend("the push did not commit".into()))
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
    max_bytes: u64,
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
    let bs = buildings_json(scope);
    // First the sizes (no change bytes read), then the changes that fit.
    let size_of =
        |r: &rusqlite::Row<'_>| -> rusqlite::Result<(i64, i64)> { Ok((r.get(0)?, r.get(1)?)) };
    let sizes: Vec<(i64, i64)> = match &bs {
        None => tx
            .prepare_cached("SELECT seq, length(bytes) FROM changes WHERE grid = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3")?
            .query_map(params![grid, since_i, limit], size_of)?
            .collect::<rusqlite::Result<_>>()?,
        Some(bs) => tx
            .prepare_cached(
                "SELECT c.seq, length(c.bytes) FROM changes c JOIN docs d ON d.id = c.doc
                 WHERE c.grid = ?1 AND c.seq > ?2 AND d.building IN (SELECT value FROM json_each(?4))
                 ORDER BY c.seq LIMIT ?3",
            )?
            .query_map(params![grid, since_i, limit, bs], size_of)?
            .collect::<rusqlite::Result<_>>()?,
    };
    let lens: Vec<u64> = sizes
        .iter()
        .map(|s| u64::try_from(s.1).unwrap_or(0))
        .collect();
    let (n, _) = page_cut(&lens, limit as usize, max_bytes);
    let map = |r: &rusqlite::Row<'_>| -> rusqlite::Result<(u64, String, Vec<u8>)> {
        Ok((
            u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
            r.get(1)?,
            r.get(2)?,
        ))
    };
    let changes: Vec<(u64, String, Vec<u8>)> = match (n.checked_sub(1).map(|i| sizes[i].0), &bs) {
        (None, _) => Vec::new(),
        (Some(upto), None) => tx
            .prepare_cached("SELECT seq, doc, bytes FROM changes WHERE grid = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq")?
            .query_map(params![grid, since_i, upto], map)?
            .collect::<rusqlite::Result<_>>()?,
        (Some(upto), Some(bs)) => tx
            .prepare_cached(
                "SELECT c.seq, c.doc, c.bytes FROM changes c JOIN docs d ON d.id = c.doc
                 WHERE c.grid = ?1 AND c.seq > ?2 AND c.seq <= ?3
                   AND d.building IN (SELECT value FROM json_each(?4))
                 ORDER BY c.seq",
            )?
            .query_map(params![grid, since_i, upto, bs], map)?
            .collect::<rusqlite::Result<_>>()?,
    };
    let (next, more) = pull_page_end(
        since,
        limit,
        sizes.len(),
        changes.len(),
        changes.last().map(|c| c.0),
        max,
    );
    // The moves of the window that touch the scope, in the same snapshot.
    let moves = match &bs {
        None => Vec::new(),
        Some(bs) => tx
            .prepare_cached(
                "SELECT seq, doc, from_building, to_building FROM moves
                 WHERE grid = ?1 AND seq > ?2 AND seq <= ?3
                   AND (from_building IN (SELECT value FROM json_each(?4))
                        OR to_building IN (SELECT value FROM json_each(?4)))
                 ORDER BY seq, doc",
            )?
            .query_map(
                params![grid, since_i, i64::try_from(next).unwrap_or(i64::MAX), bs],
                |r| {
                    Ok(MoveRow {
                        seq: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                        doc: r.get(1)?,
                        from: r.get(2)?,
                        to: r.get(3)?,
                    })
                },
            )?
            .collect::<rusqlite::Result<_>>()?,
    };
    tx.commit()?;
    Ok(PullPage {
        changes,
        next,
        more,
        moves,
    })
}

fn bootstrap_tx(
    conn: &mut Connection,
    grid: &str,
    scope: &Scope,
    after: Option<&str>,
    limit: u32,
    max_bytes: u64,
) -> StoreResult<Snapshot> {
    let limit = bootstrap_page_limit(limit);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
    let cursor: i64 = tx
        .prepare_cached("SELECT seq FROM grids WHERE id = ?1")?
        .query_row([grid], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    // One more than the page, to know whether more follow. `after` none = from the start
    // (every id sorts after the empty string). First the sizes, then the documents that fit.
    let after = after.unwrap_or("");
    let fetch = i64::from(limit) + 1;
    let bs = buildings_json(scope);
    let size_of =
        |r: &rusqlite::Row<'_>| -> rusqlite::Result<(String, i64)> { Ok((r.get(0)?, r.get(1)?)) };
    let sizes: Vec<(String, i64)> = match &bs {
        None => tx
            .prepare_cached(
                "SELECT id, length(bytes) + length(rows) FROM docs
                 WHERE grid = ?1 AND id > ?2 AND id NOT IN (SELECT doc FROM quarantine)
                 ORDER BY id LIMIT ?3",
            )?
            .query_map(params![grid, after, fetch], size_of)?
            .collect::<rusqlite::Result<_>>()?,
        Some(bs) => tx
            .prepare_cached(
                "SELECT id, length(bytes) + length(rows) FROM docs
                 WHERE grid = ?1 AND id > ?2 AND building IN (SELECT value FROM json_each(?3))
                   AND id NOT IN (SELECT doc FROM quarantine)
                 ORDER BY id LIMIT ?4",
            )?
            .query_map(params![grid, after, bs, fetch], size_of)?
            .collect::<rusqlite::Result<_>>()?,
    };
    let lens: Vec<u64> = sizes
        .iter()
        .map(|s| u64::try_from(s.1).unwrap_or(0))
        .collect();
    let (n, more) = page_cut(&lens, limit as usize, max_bytes);
    let map = |r: &rusqlite::Row<'_>| -> rusqlite::Result<BundleRow> {
        Ok(BundleRow {
            id: r.get(0)?,
            kind: r.get(1)?,
            heads: r.get(2)?,
            bytes: r.get(3)?,
            rows: r.get(4)?,
        })
    };
    let docs: Vec<BundleRow> = match (n.checked_sub(1).map(|i| sizes[i].0.as_str()), &bs) {
        (None, _) => Vec::new(),
        (Some(upto), None) => tx
            .prepare_cached(
                "SELECT id, kind, heads, bytes, rows FROM docs
                 WHERE grid = ?1 AND id > ?2 AND id <= ?3 AND id NOT IN (SELECT doc FROM quarantine)
                 ORDER BY id",
            )?
            .query_map(params![grid, after, upto], map)?
            .collect::<rusqlite::Result<_>>()?,
        (Some(upto), Some(bs)) => tx
            .prepare_cached(
                "SELECT id, kind, heads, bytes, rows FROM docs
                 WHERE grid = ?1 AND id > ?2 AND id <= ?3
                   AND building IN (SELECT value FROM json_each(?4))
                   AND id NOT IN (SELECT doc FROM quarantine)
                 ORDER BY id",
            )?
            .query_map(params![grid, after, upto, bs], map)?
            .collect::<rusqlite::Result<_>>()?,
    };
    tx.commit()?;
    Ok(Snapshot {
        cursor: u64::try_from(cursor).unwrap_or(0),
        docs,
        more,
    })
}

/// Runs `f` on a pooled reader connection (opened read-only when none is free).
fn with_reader<R>(
    inner: &Inner,
    f: impl FnOnce(&mut Connection) -> StoreResult<R>,
) -> StoreResult<R> {
    let pooled = lock(&inner.readers).pop();
    let mut conn = match pooled {
        Some(c) => c,
        None => {
            let c = Connection::open_with_flags(
                &inner.path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            apply_key(&c, inner.key.as_deref())?;
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
}

impl SqliteStorage {
    /// Opens (creating if needed) the database in `dir`, migrating its schema.
    pub fn open(dir: &Path) -> StoreResult<SqliteStorage> {
        SqliteStorage::open_with_key(dir, None)
    }

    /// [`SqliteStorage::open`], the database encrypted with SQLCipher under `key` when one
    /// is given (a database created without a key cannot be opened with one, nor the
    /// reverse). The folder is made 0700 and the database files 0600 (Unix).
    pub fn open_with_key(dir: &Path, key: Option<&str>) -> StoreResult<SqliteStorage> {
        let path = private_data_dir(dir)?;
        let mut writer = Connection::open(&path)?;
        apply_key(&writer, key)?;
        let mode: String = writer.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "cannot switch {} to WAL (got {mode})",
                path.display()
            )));
        }
        configure(&writer)?;
        migrate(&mut writer)?;
        restrict_files(&path)?;
        let n = refresh_rows(&mut writer)?;
        if n > 0 {
            tracing::info!(
                documents = n,
                version = PROJECTION_VERSION,
                "recomputed projection rows"
            );
        }
        if let Some(n) = ensure_projection(&mut writer)? {
            tracing::info!(
                documents = n,
                version = proj::stored_version(),
                "rebuilt the server's projection"
            );
        }
        Ok(SqliteStorage {
            inner: Arc::new(Inner {
                path,
                key: key.map(str::to_string),
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
        tokio::task::spawn_blocking(move || with_reader(&inner, f))
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
                "SELECT g.id, g.name, g.community, m.district, g.seq, m.name FROM grids g JOIN communities m ON m.id = g.community ORDER BY g.id",
            )?;
            let mut grids: Vec<GridInfo> = stmt
                .query_map([], |r| {
                    Ok(GridInfo {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        community: r.get(2)?,
                        community_name: r.get(5)?,
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

    async fn number_blocks(
        &self,
        device: &str,
        community: &str,
        year: i32,
    ) -> StoreResult<Vec<Issued>> {
        let (device, community) = (device.to_string(), community.to_string());
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT start_seq, end_seq, at_ms FROM number_blocks
                 WHERE device = ?1 AND community = ?2 AND year = ?3 ORDER BY start_seq",
            )?;
            let rows = stmt.query_map(params![device, community, year], |r| {
                Ok(Issued {
                    start: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                    end: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                    at_ms: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn device_number_blocks(&self, devices: &[String]) -> StoreResult<Vec<OwnBlock>> {
        let devices = devices.to_vec();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT m.name, b.year, b.start_seq, b.end_seq FROM number_blocks b
                 JOIN communities m ON m.id = b.community WHERE b.device = ?1",
            )?;
            let mut out = Vec::new();
            for d in &devices {
                let rows = stmt.query_map([d], |r| {
                    Ok(OwnBlock {
                        prefix: xiuhua_core::numbers::prefix_of(&r.get::<_, String>(0)?),
                        year: r.get(1)?,
                        start: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                        end: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
                    })
                })?;
                out.extend(rows.collect::<rusqlite::Result<Vec<_>>>()?);
            }
            Ok(out)
        })
        .await
    }

    async fn reserve_number_block(
        &self,
        device: &str,
        community: &str,
        year: i32,
        size: u64,
        now_ms: i64,
    ) -> StoreResult<Issued> {
        let (device, community) = (device.to_string(), community.to_string());
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            require(&tx, "devices", &device, "device")?;
            require(&tx, "communities", &community, "community")?;
            let end: i64 = tx.query_row(
                "INSERT INTO number_counters (community, year, next) VALUES (?1, ?2, 1 + ?3)
                 ON CONFLICT (community, year) DO UPDATE SET next = next + ?3 RETURNING next",
                params![community, year, size],
                |r| r.get(0),
            )?;
            let start = end - size;
            tx.execute(
                "INSERT INTO number_blocks (device, community, year, start_seq, end_seq, at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![device, community, year, start, end, now_ms],
            )?;
            tx.commit()?;
            Ok(Issued {
                start: u64::try_from(start).unwrap_or(0),
                end: u64::try_from(end).unwrap_or(0),
                at_ms: now_ms,
            })
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
                "SELECT id, user, name, created_ms, last_seen_ms, revoked_ms IS NOT NULL,
                        reset_ms IS NOT NULL, predecessor FROM devices
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
                        reset: r.get(6)?,
                        succeeds: r.get(7)?,
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

    async fn enroll_device(
        &self,
        code_hash: &str,
        new: &NewDevice<'_>,
        previous: Option<&str>,
        now_ms: i64,
    ) -> StoreResult<EnrollOutcome> {
        let (code_hash, device, device_name, refresh_hash, refresh_expires_ms) = (
            code_hash.to_string(),
            new.id.to_string(),
            new.name.to_string(),
            new.refresh_hash.to_string(),
            new.refresh_expires_ms,
        );
        let previous = previous.map(str::to_string);
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
            let prev = match &previous {
                Some(id) => Some(credentials::PreviousDevice {
                    id: id.clone(),
                    owner: tx
                        .query_row("SELECT user FROM devices WHERE id = ?1", [id], |r| r.get(0))
                        .optional()?,
                }),
                None => None,
            };
            let succeeds = match credentials::decide_enroll(row.as_ref(), prev.as_ref(), now_ms) {
                credentials::EnrollDecision::Enroll { succeeds } => succeeds,
                credentials::EnrollDecision::Refuse => return Ok(EnrollOutcome::Refused),
                credentials::EnrollDecision::OtherUser => return Ok(EnrollOutcome::OtherUser),
                credentials::EnrollDecision::UnknownPrevious => {
                    return Ok(EnrollOutcome::UnknownPrevious);
                }
            };
            let Some(CodeRow { user, user_name, .. }) = row else {
                return Ok(EnrollOutcome::Refused);
            };
            tx.execute("UPDATE enroll_codes SET used_ms = ?2, device = ?3 WHERE hash = ?1", params![code_hash, now_ms, device])?;
            tx.execute(
                "INSERT INTO devices (id, user, name, created_ms, last_seen_ms, predecessor) VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
                params![device, user, device_name, now_ms, succeeds],
            )?;
            tx.execute(
                "INSERT INTO refresh_tokens (hash, device, issued_ms, expires_ms) VALUES (?1, ?2, ?3, ?4)",
                params![refresh_hash, device, now_ms, refresh_expires_ms],
            )?;
            if let Some(old) = &succeeds {
                tx.execute(
                    "UPDATE refresh_tokens SET revoked_ms = ?2 WHERE device = ?1 AND revoked_ms IS NULL",
                    params![old, now_ms],
                )?;
                tx.execute(
                    "UPDATE devices SET reset_ms = ?2 WHERE id = ?1 AND reset_ms IS NULL",
                    params![old, now_ms],
                )?;
                tx.execute(
                    "INSERT OR IGNORE INTO device_grids (device, grid, since_ms)
                     SELECT ?2, grid, since_ms FROM device_grids WHERE device = ?1",
                    params![old, device],
                )?;
            }
            let grants = grants_of(&tx, &user)?;
            tx.commit()?;
            Ok(EnrollOutcome::Enrolled(Enrolled { user, user_name, grants, succeeds }))
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
                    predecessors: predecessors(c, &device)?,
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

    async fn push_within(
        &self,
        caller: &Caller,
        parsed: Parsed,
        quota: &Quota,
    ) -> StoreResult<PushOutcome> {
        let (caller, quota) = (caller.clone(), *quota);
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || push_blocking(&inner, &caller, parsed, &quota))
            .await
            .map_err(|e| StoreError::Backend(format!("storage task failed: {e}")))?
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

    async fn pull_within(
        &self,
        grid: &str,
        since: u64,
        limit: u32,
        max_bytes: u64,
        scope: &Scope,
    ) -> StoreResult<PullPage> {
        let (grid, scope) = (grid.to_string(), scope.clone());
        self.read(move |c| pull_tx(c, &grid, since, limit, max_bytes, &scope))
            .await
    }

    async fn bootstrap_within(
        &self,
        grid: &str,
        scope: &Scope,
        after: Option<&str>,
        limit: u32,
        max_bytes: u64,
    ) -> StoreResult<Snapshot> {
        let (grid, scope) = (grid.to_string(), scope.clone());
        let after = after.map(str::to_string);
        self.read(move |c| bootstrap_tx(c, &grid, &scope, after.as_deref(), limit, max_bytes))
            .await
    }

    async fn grid_size(&self, grid: &str, scope: &Scope) -> StoreResult<(u64, u64)> {
        let (grid, bs) = (grid.to_string(), buildings_json(scope));
        self.read(move |c| {
            let size = |r: &rusqlite::Row<'_>| -> rusqlite::Result<(i64, i64)> {
                Ok((r.get(0)?, r.get(1)?))
            };
            let (n, b) = match &bs {
                None => c
                    .prepare_cached(
                        "SELECT count(*), coalesce(sum(length(bytes) + length(rows)), 0) FROM docs
                         WHERE grid = ?1 AND id NOT IN (SELECT doc FROM quarantine)",
                    )?
                    .query_row(params![grid], size)?,
                Some(bs) => c
                    .prepare_cached(
                        "SELECT count(*), coalesce(sum(length(bytes) + length(rows)), 0) FROM docs
                         WHERE grid = ?1 AND building IN (SELECT value FROM json_each(?2))
                           AND id NOT IN (SELECT doc FROM quarantine)",
                    )?
                    .query_row(params![grid, bs], size)?,
            };
            Ok((u64::try_from(n).unwrap_or(0), u64::try_from(b).unwrap_or(0)))
        })
        .await
    }

    async fn doc(&self, id: &str) -> StoreResult<Option<(DocMeta, Vec<u8>)>> {
        let id = id.to_string();
        self.read(move |c| {
            let tx = c.transaction()?;
            if is_quarantined(&tx, &id)? {
                return Err(quarantined_refusal(&id).into());
            }
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

    async fn scan_docs(&self, after: Option<&str>, limit: u32) -> StoreResult<Vec<StoredForCheck>> {
        let after = after.unwrap_or("").to_string();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, grid, kind, heads, bytes, EXISTS (SELECT 1 FROM quarantine q WHERE q.doc = docs.id)
                 FROM docs WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            Ok(stmt
                .query_map(params![after, limit], |r| {
                    Ok(StoredForCheck {
                        id: r.get(0)?,
                        grid: r.get(1)?,
                        kind: r.get(2)?,
                        heads: r.get(3)?,
                        bytes: r.get(4)?,
                        quarantined: r.get(5)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn quarantine(&self, id: &str, reason: &str, now_ms: i64) -> StoreResult<bool> {
        let (id, reason) = (id.to_string(), reason.to_string());
        self.write(move |c| {
            let grid: Option<String> = c
                .query_row("SELECT grid FROM docs WHERE id = ?1", [&id], |r| r.get(0))
                .optional()?;
            let Some(grid) = grid else { return Ok(false) };
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            quarantine_rows(&tx, &[(id, grid, reason)], now_ms)?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn release(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_string();
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let released = tx.execute("DELETE FROM quarantine WHERE doc = ?1", [&id])? == 1;
            if released {
                let bytes: Option<Vec<u8>> = tx
                    .query_row("SELECT bytes FROM docs WHERE id = ?1", [&id], |r| r.get(0))
                    .optional()?;
                if let Some(bytes) = bytes {
                    project_stored(&tx, &id, &bytes)?;
                }
            }
            tx.commit()?;
            Ok(released)
        })
        .await
    }

    async fn quarantined(&self) -> StoreResult<Vec<Quarantined>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT doc, grid, reason, since_ms FROM quarantine ORDER BY doc",
            )?;
            Ok(stmt
                .query_map([], |r| {
                    Ok(Quarantined {
                        id: r.get(0)?,
                        grid: r.get(1)?,
                        reason: r.get(2)?,
                        since_ms: r.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn select(&self, table: Table, sel: &Select) -> StoreResult<Projection> {
        let sel = sel.clone();
        self.read(move |c| {
            let tx = c.transaction()?;
            let out = select_rows(&tx, table, &sel);
            tx.commit()?;
            out
        })
        .await
    }

    fn dialect(&self) -> Dialect {
        D
    }

    async fn query(&self, q: &projected::Query) -> StoreResult<Vec<Vec<projected::Val>>> {
        let q = q.clone();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&q.sql)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(q.vals.iter().map(sql_val)))?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(projected::read_values(r, &q.types)?);
            }
            Ok(out)
        })
        .await
    }

    async fn rebuild_projection(&self) -> StoreResult<u64> {
        self.write(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = rebuild_rows(&tx)?;
            tx.commit()?;
            Ok(n)
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

    async fn set_password(&self, user: &str, password_hash: &str, now_ms: i64) -> StoreResult<()> {
        let (user, hash) = (user.to_string(), password_hash.to_string());
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            require(&tx, "users", &user, "user")?;
            tx.execute(
                "INSERT INTO console_passwords (user, hash, set_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user) DO UPDATE SET hash = excluded.hash, set_ms = excluded.set_ms",
                params![user, hash, now_ms],
            )?;
            tx.execute("DELETE FROM console_sessions WHERE user = ?1", [&user])?;
            tx.execute(
                "DELETE FROM console_login_failures WHERE user = ?1",
                [&user],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn console_account(&self, user: &str) -> StoreResult<Option<ConsoleAccount>> {
        let user = user.to_string();
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT u.id, u.name, p.hash, u.revoked_ms IS NOT NULL
                 FROM users u LEFT JOIN console_passwords p ON p.user = u.id WHERE u.id = ?1",
                [&user],
                |r| {
                    Ok(ConsoleAccount {
                        user: r.get(0)?,
                        name: r.get(1)?,
                        password_hash: r.get(2)?,
                        revoked: r.get(3)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    async fn login_failures(&self, user: &str) -> StoreResult<Option<LoginFailures>> {
        let user = user.to_string();
        self.read(move |c| sqlite_failures(c, &user)).await
    }

    async fn record_login_failure(
        &self,
        user: &str,
        now_ms: i64,
        audit: &AuditEntry,
    ) -> StoreResult<LoginFailures> {
        let (user, audit) = (user.to_string(), audit.clone());
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            require(&tx, "users", &user, "user")?;
            let prev = sqlite_failures(&tx, &user)?;
            let next = crate::console::rules::after_failure(prev.as_ref(), now_ms);
            tx.execute(
                "INSERT INTO console_login_failures (user, count, last_ms, locked_until_ms)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (user) DO UPDATE SET count = excluded.count,
                    last_ms = excluded.last_ms, locked_until_ms = excluded.locked_until_ms",
                params![user, next.count, next.last_ms, next.locked_until_ms],
            )?;
            sqlite_audit(&tx, &audit)?;
            tx.commit()?;
            Ok(next)
        })
        .await
    }

    async fn begin_session(&self, session: &ConsoleSession, audit: &AuditEntry) -> StoreResult<()> {
        let (s, audit) = (session.clone(), audit.clone());
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            require(&tx, "users", &s.user, "user")?;
            tx.execute(
                "DELETE FROM console_login_failures WHERE user = ?1",
                [&s.user],
            )?;
            tx.execute(
                "INSERT INTO console_sessions (hash, user, created_ms, last_seen_ms, ip)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![s.hash, s.user, s.created_ms, s.last_seen_ms, s.ip],
            )?;
            sqlite_audit(&tx, &audit)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn touch_session(
        &self,
        hash: &str,
        now_ms: i64,
        policy: &crate::console::rules::SessionPolicy,
    ) -> StoreResult<Option<ConsoleSession>> {
        let (hash, policy) = (hash.to_string(), *policy);
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let found = tx
                .query_row(
                    "SELECT s.hash, s.user, s.created_ms, s.last_seen_ms, s.ip
                     FROM console_sessions s JOIN users u ON u.id = s.user
                     WHERE s.hash = ?1 AND u.revoked_ms IS NULL",
                    [&hash],
                    |r| {
                        Ok(ConsoleSession {
                            hash: r.get(0)?,
                            user: r.get(1)?,
                            created_ms: r.get(2)?,
                            last_seen_ms: r.get(3)?,
                            ip: r.get(4)?,
                        })
                    },
                )
                .optional()?;
            let out = match found {
                Some(mut s) if crate::console::rules::session_live(&s, now_ms, &policy) => {
                    tx.execute(
                        "UPDATE console_sessions SET last_seen_ms = ?2 WHERE hash = ?1",
                        params![hash, now_ms],
                    )?;
                    s.last_seen_ms = now_ms;
                    Some(s)
                }
                _ => {
                    tx.execute("DELETE FROM console_sessions WHERE hash = ?1", [&hash])?;
                    None
                }
            };
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    async fn end_session(&self, hash: &str) -> StoreResult<bool> {
        let hash = hash.to_string();
        self.write(move |c| {
            Ok(c.execute("DELETE FROM console_sessions WHERE hash = ?1", [&hash])? == 1)
        })
        .await
    }

    async fn audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        let e = entry.clone();
        self.write(move |c| sqlite_audit(c, &e)).await
    }

    async fn audit_log(&self, before: Option<i64>, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        self.read(move |c| {
            let mut stmt = c.prepare(
                "SELECT id, at_ms, user, ip, action, detail, ok FROM console_audit
                 WHERE ?1 IS NULL OR id < ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            Ok(stmt
                .query_map(params![before, limit], |r| {
                    Ok(AuditEntry {
                        id: r.get(0)?,
                        at_ms: r.get(1)?,
                        user: r.get(2)?,
                        ip: r.get(3)?,
                        action: r.get(4)?,
                        detail: r.get(5)?,
                        ok: r.get(6)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }
}

fn sqlite_failures(c: &Connection, user: &str) -> StoreResult<Option<LoginFailures>> {
    Ok(c.query_row(
        "SELECT count, last_ms, locked_until_ms FROM console_login_failures WHERE user = ?1",
        [user],
        |r| {
            Ok(LoginFailures {
                count: r.get(0)?,
                last_ms: r.get(1)?,
                locked_until_ms: r.get(2)?,
            })
        },
    )
    .optional()?)
}

fn sqlite_audit(c: &Connection, e: &AuditEntry) -> StoreResult<()> {
    c.execute(
        "INSERT INTO console_audit (at_ms, user, ip, action, detail, ok) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![e.at_ms, e.user, e.ip, e.action, e.detail, e.ok],
    )?;
    Ok(())
}
