//! The PostgreSQL backend: several server processes share one database.
//!
//! - A pool of connections (deadpool-postgres over tokio-postgres, no TLS: run the database
//!   on the same host or a private network, or put a TLS tunnel in front), with a maximum size,
//!   a wait timeout and a per-statement timeout (`statement_timeout`, set on every connection).
//! - Versioned migrations in `schema_migrations(version, description, applied_ms)`, applied at
//!   start under an advisory lock, so processes starting together do not race; a database whose
//!   schema is newer than this binary is refused at start.
//! - Every feed and document table has the grid as the leading column of its primary key
//!   (`grid_seqs`, `docs`, `changes`), so the layout maps onto Citus (distribution column
//!   `grid`) or CockroachDB (ranges split by grid). Directory, users, grants, devices and tokens
//!   are small reference tables.
//! - Per-grid sequence numbers: a push locks its grids' `grid_seqs` rows (`SELECT … FOR UPDATE`,
//!   in grid order) after its documents are written, assigns the seqs and commits while still
//!   holding them. Commits of one grid therefore serialize, and a transaction waiting for the
//!   row sees the previous one's `seq` only once that one is committed and visible: a reader can
//!   never see seq `n + 1` while `n` is uncommitted, so `seq > since` never skips a change.
//! - `NOTIFY xiuhua_grid, 'grid:seq'` inside the push transaction (delivered at commit); every
//!   process `LISTEN`s on a dedicated connection and wakes its long polls ([`Storage::subscribe`]).
//! - The access-token signing secret lives in the database (`meta`), so every process and the
//!   admin CLI, wherever they run, sign and check with the same one.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use automerge::AutoCommit;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::broadcast;
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, IsolationLevel, NoTls, Row};
use xiuhua_core::doc::DocKind;
use xiuhua_core::model::{Role, Tier};
use xiuhua_core::store::{PROJECTION_VERSION, rows_of};

use super::projected::{self, Dialect, RowGet, Val};
use super::*;
use crate::access::{Caller, GrantRow, Scope};
use crate::credentials::{
    self, CodeRow, CredentialRefusal, DeviceRow, RefreshDecision, RefreshRow, Standing,
};
use crate::error::{Refusal, StoreError};
use crate::ingest::{self, Parsed, StoredDoc};
use crate::projection::{self as proj, DocRows};

/// The NOTIFY channel of "grid g is now at seq n" (payload `g:n`).
pub const CHANNEL: &str = "xiuhua_grid";
/// Advisory lock key held while migrating ("XHSV").
const MIGRATION_LOCK: i64 = 0x5848_5356;
/// Attempts of a push that hit a concurrent insert of the same change or document, or
/// whose documents changed while it applied them.
const PUSH_ATTEMPTS: usize = 8;

/// Each entry migrates from version `i` to `i + 1`: (description, SQL).
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "initial schema",
        r#"
CREATE TABLE meta (key TEXT COLLATE "C" PRIMARY KEY, value BYTEA NOT NULL);
-- reference tables: the directory, users, grants, devices, credentials
CREATE TABLE districts (id TEXT COLLATE "C" PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE communities (
    id TEXT COLLATE "C" PRIMARY KEY, name TEXT NOT NULL,
    district TEXT COLLATE "C" NOT NULL REFERENCES districts(id));
CREATE TABLE grids (
    id TEXT COLLATE "C" PRIMARY KEY, name TEXT NOT NULL,
    community TEXT COLLATE "C" NOT NULL REFERENCES communities(id));
CREATE TABLE buildings (
    grid TEXT COLLATE "C" NOT NULL REFERENCES grids(id), name TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (grid, name));
CREATE TABLE users (
    id TEXT COLLATE "C" PRIMARY KEY, name TEXT NOT NULL,
    created_ms BIGINT NOT NULL, revoked_ms BIGINT);
CREATE TABLE grants (
    user_id TEXT COLLATE "C" NOT NULL REFERENCES users(id),
    grid TEXT COLLATE "C" NOT NULL REFERENCES grids(id),
    role TEXT NOT NULL, buildings TEXT[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (user_id, grid));
CREATE TABLE devices (
    id TEXT COLLATE "C" PRIMARY KEY, user_id TEXT COLLATE "C" NOT NULL REFERENCES users(id),
    name TEXT NOT NULL, created_ms BIGINT NOT NULL, last_seen_ms BIGINT, revoked_ms BIGINT);
CREATE INDEX devices_user ON devices(user_id);
CREATE TABLE enroll_codes (
    hash TEXT PRIMARY KEY, user_id TEXT COLLATE "C" NOT NULL REFERENCES users(id),
    created_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL, used_ms BIGINT, device TEXT);
CREATE TABLE refresh_tokens (
    hash TEXT PRIMARY KEY, device TEXT COLLATE "C" NOT NULL REFERENCES devices(id),
    issued_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL, used_ms BIGINT, revoked_ms BIGINT);
CREATE INDEX refresh_tokens_device ON refresh_tokens(device);
CREATE TABLE device_grids (
    device TEXT COLLATE "C" NOT NULL, grid TEXT COLLATE "C" NOT NULL, since_ms BIGINT NOT NULL,
    PRIMARY KEY (device, grid));
-- partitioned by grid: the grid leads every primary key
CREATE TABLE grid_seqs (grid TEXT COLLATE "C" PRIMARY KEY, seq BIGINT NOT NULL DEFAULT 0);
CREATE TABLE docs (
    grid TEXT COLLATE "C" NOT NULL, id TEXT COLLATE "C" NOT NULL, kind TEXT NOT NULL,
    building TEXT COLLATE "C", tier TEXT NOT NULL DEFAULT 'grid', unit TEXT,
    heads BYTEA NOT NULL, bytes BYTEA NOT NULL, rows BYTEA NOT NULL, rows_version BIGINT NOT NULL,
    PRIMARY KEY (grid, id));
CREATE UNIQUE INDEX docs_id ON docs(id);
CREATE INDEX docs_building ON docs(grid, building);
CREATE TABLE changes (
    grid TEXT COLLATE "C" NOT NULL, seq BIGINT NOT NULL, doc TEXT COLLATE "C" NOT NULL,
    hash BYTEA NOT NULL, bytes BYTEA NOT NULL,
    PRIMARY KEY (grid, seq));
CREATE UNIQUE INDEX changes_hash ON changes(hash);
"#,
    ),
    (
        "quarantine and per-device daily usage",
        r#"
CREATE TABLE quarantine (
    doc TEXT COLLATE "C" PRIMARY KEY, grid TEXT COLLATE "C" NOT NULL,
    reason TEXT NOT NULL, since_ms BIGINT NOT NULL);
CREATE TABLE device_usage (
    device TEXT COLLATE "C" NOT NULL, day BIGINT NOT NULL,
    bytes BIGINT NOT NULL, changes BIGINT NOT NULL,
    PRIMARY KEY (device, day));
"#,
    ),
    (
        "refresh-token parents and device resets",
        r#"
ALTER TABLE refresh_tokens ADD COLUMN parent TEXT;
CREATE INDEX refresh_tokens_parent ON refresh_tokens(parent);
ALTER TABLE devices ADD COLUMN reset_ms BIGINT;
"#,
    ),
    (
        "device successions",
        r#"
ALTER TABLE devices ADD COLUMN predecessor TEXT COLLATE "C";
"#,
    ),
    (
        "documents that changed building",
        r#"
CREATE TABLE moves (
    grid TEXT COLLATE "C" NOT NULL, seq BIGINT NOT NULL, doc TEXT COLLATE "C" NOT NULL,
    from_building TEXT COLLATE "C", to_building TEXT COLLATE "C",
    PRIMARY KEY (grid, seq, doc));
"#,
    ),
    (
        "the server's projection (the station's console)",
        r#"
CREATE TABLE p_households (
    id TEXT COLLATE "C" PRIMARY KEY, grid TEXT COLLATE "C" NOT NULL,
    building TEXT COLLATE "C" NOT NULL, unit TEXT NOT NULL, room TEXT NOT NULL,
    head_name TEXT NOT NULL, member_count BIGINT NOT NULL, tags TEXT NOT NULL,
    visit_count BIGINT NOT NULL, last_visit_at BIGINT, conflicts BIGINT NOT NULL,
    created_at BIGINT NOT NULL, created_by TEXT NOT NULL, moved_out_at BIGINT);
CREATE INDEX p_households_grid ON p_households(grid, created_at);
CREATE TABLE p_residents (
    household TEXT COLLATE "C" NOT NULL, pos BIGINT NOT NULL, member TEXT NOT NULL,
    grid TEXT COLLATE "C" NOT NULL, building TEXT NOT NULL, name TEXT NOT NULL,
    pinyin TEXT NOT NULL, initials TEXT NOT NULL, phone_masked TEXT, id_masked TEXT,
    gender TEXT NOT NULL, birth_year BIGINT NOT NULL, relation TEXT NOT NULL,
    tags TEXT NOT NULL, status TEXT,
    PRIMARY KEY (household, pos));
CREATE INDEX p_residents_grid ON p_residents(grid);
CREATE TABLE p_visits (
    household TEXT COLLATE "C" NOT NULL, pos BIGINT NOT NULL, id TEXT NOT NULL,
    grid TEXT COLLATE "C" NOT NULL, at_ms BIGINT NOT NULL, by_user TEXT NOT NULL,
    by_name TEXT NOT NULL, purpose TEXT NOT NULL, note TEXT NOT NULL, follow_up TEXT,
    PRIMARY KEY (household, pos));
CREATE INDEX p_visits_grid ON p_visits(grid, at_ms);
CREATE TABLE p_records (
    id TEXT COLLATE "C" PRIMARY KEY, grid TEXT COLLATE "C" NOT NULL, category TEXT NOT NULL,
    status TEXT NOT NULL, shown TEXT NOT NULL, reporter TEXT NOT NULL,
    household TEXT COLLATE "C", building TEXT, place TEXT NOT NULL,
    reported_at BIGINT NOT NULL, summary TEXT NOT NULL, created_by TEXT NOT NULL);
CREATE INDEX p_records_grid ON p_records(grid, reported_at);
CREATE INDEX p_records_household ON p_records(household);
CREATE TABLE p_tasks (
    id TEXT COLLATE "C" PRIMARY KEY, grid TEXT COLLATE "C" NOT NULL, title TEXT NOT NULL,
    category TEXT NOT NULL, level TEXT, status TEXT NOT NULL, ordered BIGINT NOT NULL,
    tier TEXT NOT NULL, linked_unit TEXT, assignee TEXT, deadline BIGINT,
    created_at BIGINT NOT NULL, created_by TEXT NOT NULL, ordered_by TEXT,
    household TEXT COLLATE "C", source_record TEXT COLLATE "C", rating BIGINT,
    rejected BIGINT NOT NULL, done_at BIGINT, closed_at BIGINT, reopened BIGINT NOT NULL,
    escalated BIGINT NOT NULL);
CREATE INDEX p_tasks_grid ON p_tasks(grid, created_at);
CREATE INDEX p_tasks_record ON p_tasks(source_record);
CREATE INDEX p_tasks_household ON p_tasks(household);
CREATE TABLE p_task_events (
    task TEXT COLLATE "C" NOT NULL, id TEXT COLLATE "C" NOT NULL,
    grid TEXT COLLATE "C" NOT NULL, pos BIGINT NOT NULL, kind TEXT NOT NULL,
    author TEXT NOT NULL, author_name TEXT NOT NULL, role TEXT NOT NULL,
    at_ms BIGINT NOT NULL, body TEXT NOT NULL, outcome TEXT NOT NULL, reason TEXT,
    PRIMARY KEY (task, id));
CREATE INDEX p_task_events_grid ON p_task_events(grid);
"#,
    ),
    (
        "the station console: passwords, sessions, failed logins, audit log",
        r#"
CREATE TABLE console_passwords (
    user_id TEXT COLLATE "C" PRIMARY KEY REFERENCES users(id), hash TEXT NOT NULL,
    set_ms BIGINT NOT NULL);
CREATE TABLE console_sessions (
    hash TEXT COLLATE "C" PRIMARY KEY, user_id TEXT COLLATE "C" NOT NULL REFERENCES users(id),
    created_ms BIGINT NOT NULL, last_seen_ms BIGINT NOT NULL, ip TEXT NOT NULL);
CREATE INDEX console_sessions_user ON console_sessions(user_id);
CREATE TABLE console_login_failures (
    user_id TEXT COLLATE "C" PRIMARY KEY REFERENCES users(id), count INTEGER NOT NULL,
    last_ms BIGINT NOT NULL, locked_until_ms BIGINT NOT NULL);
CREATE TABLE console_audit (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at_ms BIGINT NOT NULL,
    user_id TEXT NOT NULL, ip TEXT NOT NULL, action TEXT NOT NULL, detail TEXT NOT NULL,
    ok BOOLEAN NOT NULL);
"#,
    ),
    (
        "each task's board columns, counted and paged in SQL",
        r#"
ALTER TABLE p_tasks ADD COLUMN board BIGINT NOT NULL DEFAULT 0;
"#,
    ),
    (
        "numbers for people: each community's next sequence per year, blocks per device",
        r#"
CREATE TABLE number_counters (
    community TEXT COLLATE "C" NOT NULL REFERENCES communities(id), year INTEGER NOT NULL,
    next BIGINT NOT NULL, PRIMARY KEY (community, year));
CREATE TABLE number_blocks (
    device TEXT COLLATE "C" NOT NULL REFERENCES devices(id), community TEXT COLLATE "C" NOT NULL,
    year INTEGER NOT NULL, start_seq BIGINT NOT NULL, end_seq BIGINT NOT NULL,
    at_ms BIGINT NOT NULL, PRIMARY KEY (device, community, year, start_seq));
"#,
    ),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Pool and timeout settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// Most connections of this process's pool (the LISTEN connection is one more).
    pub max_connections: usize,
    /// `statement_timeout` of every connection (0: none).
    pub statement_timeout_ms: u64,
    /// How long to wait for a connection (connect, or a free one in the pool).
    pub connect_timeout_ms: u64,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            max_connections: 16,
            statement_timeout_ms: 10_000,
            connect_timeout_ms: 5_000,
        }
    }
}

/// The PostgreSQL backend.
#[derive(Clone)]
pub struct PgStorage {
    pool: Pool,
    events: broadcast::Sender<GridAt>,
    listener: std::sync::Arc<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for PgStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStorage")
            .field("pool", &self.pool.status())
            .finish_non_exhaustive()
    }
}

impl Drop for PgStorage {
    fn drop(&mut self) {
        // The last clone stops the LISTEN task.
        if std::sync::Arc::strong_count(&self.listener) == 1 {
            self.listener.abort();
        }
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Backend(pg_message(&e))
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Backend(format!("database connection: {e}"))
    }
}

fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// The URL with its password hidden, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn pg_config(url: &str, opts: &PgOptions) -> StoreResult<tokio_postgres::Config> {
    let mut cfg: tokio_postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Backend(format!("database URL {}: {e}", redact(url))))?;
    let mut options = cfg.get_options().unwrap_or("").to_string();
    if opts.statement_timeout_ms > 0 {
        options.push_str(&format!(
            " -c statement_timeout={}",
            opts.statement_timeout_ms
        ));
    }
    options.push_str(" -c lock_timeout=0");
    cfg.options(options.trim());
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(Duration::from_millis(opts.connect_timeout_ms));
    }
    if cfg.get_application_name().is_none() {
        cfg.application_name("xiuhua-server");
    }
    Ok(cfg)
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn parse_kind(s: &str) -> StoreResult<DocKind> {
    DocKind::parse(s).ok_or_else(|| StoreError::Backend(format!("stored kind {s:?}")))
}

fn parse_tier(s: &str) -> StoreResult<Tier> {
    Tier::parse(s).map_err(|e| StoreError::Backend(format!("stored tier: {e}")))
}

fn grant_row(r: &Row) -> StoreResult<GrantRow> {
    let role: String = r.try_get(2)?;
    Ok(GrantRow {
        user: r.try_get(0)?,
        grid: r.try_get(1)?,
        role: Role::parse(&role).map_err(|e| StoreError::Backend(format!("stored role: {e}")))?,
        buildings: r.try_get(3)?,
    })
}

/// What a push attempt may end with besides success: retry it when another transaction
/// inserted the same change or document concurrently, or a deadlock was broken.
enum Attempt {
    Retry(String),
    Fail(StoreError),
}

impl From<tokio_postgres::Error> for Attempt {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.code() {
            Some(c)
                if *c == SqlState::UNIQUE_VIOLATION
                    || *c == SqlState::T_R_DEADLOCK_DETECTED
                    || *c == SqlState::T_R_SERIALIZATION_FAILURE =>
            {
                Attempt::Retry(pg_message(&e))
            }
            _ => Attempt::Fail(e.into()),
        }
    }
}

fn fail(e: impl Into<StoreError>) -> Attempt {
    Attempt::Fail(e.into())
}

impl PgStorage {
    /// Connects, migrates the schema (refusing a newer one), recomputes stale projection rows
    /// and starts listening for other processes' pushes.
    pub async fn open(url: &str, opts: &PgOptions) -> StoreResult<PgStorage> {
        let cfg = pg_config(url, opts)?;
        let shown = redact(url);
        // A first connection of its own, so that an unreachable database gives a clear error.
        let (mut client, conn) = cfg.connect(NoTls).await.map_err(|e| {
            StoreError::Backend(format!(
                "cannot connect to the database at {shown}: {}",
                pg_message(&e)
            ))
        })?;
        let conn_task = tokio::spawn(async move {
            let _ = conn.await;
        });
        let migrated = migrate(&mut client).await;
        let refreshed = match &migrated {
            Ok(()) => refresh_rows(&mut client).await,
            Err(_) => Ok(0),
        };
        drop(client);
        let _ = conn_task.await;
        migrated?;
        let n = refreshed?;
        if n > 0 {
            tracing::info!(
                documents = n,
                version = PROJECTION_VERSION,
                "recomputed projection rows"
            );
        }
        let timeout = Some(Duration::from_millis(opts.connect_timeout_ms.max(1)));
        let mgr = Manager::from_config(
            cfg.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(opts.max_connections.max(1))
            .wait_timeout(timeout)
            .create_timeout(timeout)
            .recycle_timeout(timeout)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Backend(format!("connection pool: {e}")))?;
        {
            let mut c = pool.get().await?;
            if let Some(n) = ensure_projection(&mut c).await? {
                tracing::info!(
                    documents = n,
                    version = proj::stored_version(),
                    "rebuilt the server's projection"
                );
            }
        }
        let (events, _) = broadcast::channel(1024);
        let listener = tokio::spawn(listen(cfg, events.clone()));
        Ok(PgStorage {
            pool,
            events,
            listener: std::sync::Arc::new(listener),
        })
    }

    /// The access-token signing secret: the one the configuration gives (every process
    /// and admin command is given the same file or variable). It is never kept in the
    /// database: a secret an earlier version stored in `meta` is deleted. Without one the
    /// server refuses to start.
    pub async fn signing_secret(&self, given: Option<&[u8]>) -> StoreResult<Vec<u8>> {
        let Some(secret) = given else {
            return Err(StoreError::Backend(
                "PostgreSQL needs the token-signing secret from XIUHUA_SECRET_FILE (a file of at least 32 random bytes, e.g. `head -c 32 /dev/urandom > /etc/xiuhua/secret`) or XIUHUA_SECRET; give every process the same one".into(),
            ));
        };
        let c = self.pool.get().await?;
        let removed = c
            .execute("DELETE FROM meta WHERE key = 'secret'", &[])
            .await?;
        if removed > 0 {
            tracing::warn!(
                "removed the signing secret an earlier version kept in the database; tokens it signed are refused (devices refresh), enrollment codes issued before must be issued again"
            );
        }
        Ok(secret.to_vec())
    }

    /// Connections in use and idle (for sizing).
    pub fn pool_status(&self) -> (usize, usize) {
        let s = self.pool.status();
        (s.size - s.available, s.available)
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Client> {
        Ok(self.pool.get().await?)
    }

    /// Reads what a push's Automerge work needs: the registered touched documents and their
    /// versions (refusing a quarantined one), and which of its hashes are stored. `lock`:
    /// the documents' rows are locked (in id order) until the transaction ends.
    async fn read_push(
        tx: &deadpool_postgres::Transaction<'_>,
        parsed: &Parsed,
        lock: bool,
    ) -> Result<PushRead, Attempt> {
        let ids = parsed.doc_ids();
        let hashes: Vec<Vec<u8>> = parsed.hashes().iter().map(|h| h.0.to_vec()).collect();
        let sql = if lock {
            "SELECT d.id, d.grid, d.kind, d.building, d.tier, d.unit, d.bytes, d.heads, q.doc IS NOT NULL
             FROM docs d LEFT JOIN quarantine q ON q.doc = d.id
             WHERE d.id = ANY($1) ORDER BY d.id FOR UPDATE OF d"
        } else {
            "SELECT d.id, d.grid, d.kind, d.building, d.tier, d.unit, d.bytes, d.heads, q.doc IS NOT NULL
             FROM docs d LEFT JOIN quarantine q ON q.doc = d.id
             WHERE d.id = ANY($1)"
        };
        let stmt = tx.prepare_cached(sql).await?;
        let mut stored = HashMap::new();
        let mut versions = HashMap::new();
        for r in tx.query(&stmt, &[&ids]).await? {
            let id: String = r.try_get(0)?;
            if r.try_get::<_, bool>(8)? {
                return Err(fail(quarantined_refusal(&id)));
            }
            let tier: String = r.try_get(4)?;
            let d = StoredDoc {
                id: id.clone(),
                grid: r.try_get(1)?,
                kind: parse_kind(r.try_get(2)?).map_err(fail)?,
                building: r.try_get(3)?,
                tier: parse_tier(&tier).map_err(fail)?,
                unit: r.try_get(5)?,
                bytes: r.try_get(6)?,
            };
            versions.insert(
                id.clone(),
                DocVersion {
                    heads: r.try_get(7)?,
                    tier,
                    building: r.try_get(3)?,
                },
            );
            stored.insert(id, d);
        }
        let stmt = tx
            .prepare_cached("SELECT hash FROM changes WHERE hash = ANY($1)")
            .await?;
        let mut known = HashSet::new();
        for r in tx.query(&stmt, &[&hashes]).await? {
            let h: Vec<u8> = r.try_get(0)?;
            if let Ok(a) = <[u8; 32]>::try_from(h.as_slice()) {
                known.insert(automerge::ChangeHash(a));
            }
        }
        Ok(PushRead {
            stored,
            versions,
            known,
        })
    }

    /// Locks the registered documents among `ids` (in id order, until the transaction ends)
    /// and returns their versions; refuses a quarantined one.
    async fn lock_versions(
        tx: &deadpool_postgres::Transaction<'_>,
        ids: &[String],
    ) -> Result<HashMap<String, DocVersion>, Attempt> {
        let stmt = tx
            .prepare_cached(
                "SELECT d.id, d.heads, d.tier, q.doc IS NOT NULL, d.building
                 FROM docs d LEFT JOIN quarantine q ON q.doc = d.id
                 WHERE d.id = ANY($1) ORDER BY d.id FOR UPDATE OF d",
            )
            .await?;
        let mut out = HashMap::new();
        for r in tx.query(&stmt, &[&ids]).await? {
            let id: String = r.try_get(0)?;
            if r.try_get::<_, bool>(3)? {
                return Err(fail(quarantined_refusal(&id)));
            }
            out.insert(
                id,
                DocVersion {
                    heads: r.try_get(1)?,
                    tier: r.try_get(2)?,
                    building: r.try_get(4)?,
                },
            );
        }
        Ok(out)
    }

    /// The Automerge work of a push, off the async threads; a failure that is not a
    /// refusal quarantines the broken stored documents it touched, if any.
    async fn apply(&self, parsed: Parsed, read: &PushRead) -> Result<ingest::Applied, Attempt> {
        let (stored, known) = (read.stored.clone(), read.known.clone());
        let applied = tokio::task::spawn_blocking(move || ingest::apply(parsed, &stored, &known))
            .await
            .map_err(|e| fail(StoreError::Backend(format!("push task failed: {e}"))))?;
        match applied {
            Ok(a) => Ok(a),
            Err(e @ StoreError::Refused(_)) => Err(fail(e)),
            Err(e) => {
                let (stored, versions) = (read.stored.clone(), read.versions.clone());
                let broken = tokio::task::spawn_blocking(move || {
                    crate::check::broken_among(&stored, &versions)
                })
                .await
                .unwrap_or_default();
                let Some((id, grid, reason)) = broken.first().cloned() else {
                    return Err(fail(e));
                };
                for (id, _, reason) in &broken {
                    self.quarantine(id, reason, crate::now_ms())
                        .await
                        .map_err(fail)?;
                }
                tracing::warn!(
                    doc = id,
                    grid,
                    reason,
                    "stored document broken: quarantined"
                );
                Err(fail(quarantined_refusal(&id)))
            }
        }
    }

    /// One attempt of a push. Optimistic (`locked` false): read in a read-only snapshot on a
    /// pooled connection that goes back to the pool before the Automerge work, apply holding
    /// no connection and no lock, then write in a transaction that locks the documents' rows
    /// and commits only if they are as read (`Attempt::Retry` otherwise). Locked: the rows are
    /// locked while applying, so the attempt cannot be overtaken.
    async fn push_once(
        &self,
        caller: &Caller,
        parsed: Parsed,
        quota: &Quota,
        locked: bool,
    ) -> Result<PushOutcome, Attempt> {
        if locked {
            let mut client = self.client().await.map_err(fail)?;
            let tx = client.transaction().await?;
            let read = Self::read_push(&tx, &parsed, true).await?;
            let applied = self.apply(parsed, &read).await?;
            let out = Self::write_push(&tx, caller, applied, quota).await?;
            tx.commit().await?;
            return Ok(out);
        }
        let ids = parsed.doc_ids();
        let read = {
            let mut client = self.client().await.map_err(fail)?;
            let tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            let r = Self::read_push(&tx, &parsed, false).await?;
            tx.commit().await?;
            r
        };
        let applied = self.apply(parsed, &read).await?;
        let mut client = self.client().await.map_err(fail)?;
        let tx = client.transaction().await?;
        if !unchanged(&read.versions, &Self::lock_versions(&tx, &ids).await?) {
            return Err(Attempt::Retry(
                "a pushed document changed while the push applied".into(),
            ));
        }
        let out = Self::write_push(&tx, caller, applied, quota).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Authorizes an applied push and writes it in `tx` (the documents' rows locked or new),
    /// counting it against the device's quota.
    async fn write_push(
        tx: &deadpool_postgres::Transaction<'_>,
        caller: &Caller,
        applied: ingest::Applied,
        quota: &Quota,
    ) -> Result<PushOutcome, Attempt> {
        let now = crate::now_ms();
        let needed = applied.households_needed();
        let mut households = HashMap::new();
        if !needed.is_empty() {
            let stmt = tx
                .prepare_cached(
                    "SELECT id, grid, building FROM docs WHERE id = ANY($1) AND kind = 'household'",
                )
                .await?;
            for r in tx.query(&stmt, &[&needed]).await? {
                households.insert(
                    r.try_get::<_, String>(0)?,
                    ingest::HouseholdAt {
                        grid: r.try_get(1)?,
                        building: r.try_get(2)?,
                    },
                );
            }
        }
        let plan = ingest::authorize(applied, caller, &households).map_err(fail)?;
        // Documents first (their rows are locked already, or new), then the grids' seqs.
        // One statement for the new documents, one for the updated ones.
        let (new_docs, old_docs): (Vec<_>, Vec<_>) = plan.docs.iter().partition(|d| d.is_new);
        if !new_docs.is_empty() {
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO docs (grid, id, kind, building, tier, heads, bytes, rows, rows_version)
                     SELECT g, i, k, b, 'grid', h, y, r, $8
                     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[],
                                 $6::bytea[], $7::bytea[]) AS u(g, i, k, b, h, y, r)",
                )
                .await?;
            let grid: Vec<&str> = new_docs.iter().map(|d| d.grid.as_str()).collect();
            let id: Vec<&str> = new_docs.iter().map(|d| d.id.as_str()).collect();
            let kind: Vec<&str> = new_docs.iter().map(|d| d.kind.as_str()).collect();
            let building: Vec<Option<&str>> =
                new_docs.iter().map(|d| d.building.as_deref()).collect();
            let heads: Vec<&[u8]> = new_docs.iter().map(|d| d.heads.as_slice()).collect();
            let bytes: Vec<&[u8]> = new_docs.iter().map(|d| d.bytes.as_slice()).collect();
            let rows: Vec<&[u8]> = new_docs.iter().map(|d| d.rows.as_slice()).collect();
            tx.execute(
                &stmt,
                &[
                    &grid,
                    &id,
                    &kind,
                    &building,
                    &heads,
                    &bytes,
                    &rows,
                    &PROJECTION_VERSION,
                ],
            )
            .await?;
        }
        if !old_docs.is_empty() {
            let stmt = tx
                .prepare_cached(
                    "UPDATE docs SET building = u.b, heads = u.h, bytes = u.y, rows = u.r, rows_version = $7
                     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bytea[], $5::bytea[],
                                 $6::bytea[]) AS u(g, i, b, h, y, r)
                     WHERE docs.grid = u.g AND docs.id = u.i",
                )
                .await?;
            let grid: Vec<&str> = old_docs.iter().map(|d| d.grid.as_str()).collect();
            let id: Vec<&str> = old_docs.iter().map(|d| d.id.as_str()).collect();
            let building: Vec<Option<&str>> =
                old_docs.iter().map(|d| d.building.as_deref()).collect();
            let heads: Vec<&[u8]> = old_docs.iter().map(|d| d.heads.as_slice()).collect();
            let bytes: Vec<&[u8]> = old_docs.iter().map(|d| d.bytes.as_slice()).collect();
            let rows: Vec<&[u8]> = old_docs.iter().map(|d| d.rows.as_slice()).collect();
            tx.execute(
                &stmt,
                &[
                    &grid,
                    &id,
                    &building,
                    &heads,
                    &bytes,
                    &rows,
                    &PROJECTION_VERSION,
                ],
            )
            .await?;
        }
        for d in &plan.docs {
            write_doc_rows(tx, &d.server_rows).await?;
        }
        // The per-grid lock, held until commit (grids in order: no deadlock between pushes).
        let grids: Vec<String> = plan.grids.iter().cloned().collect();
        let stmt = tx
            .prepare_cached(
                "SELECT grid, seq FROM grid_seqs WHERE grid = ANY($1) ORDER BY grid FOR UPDATE",
            )
            .await?;
        let mut seqs: HashMap<String, u64> = HashMap::new();
        for r in tx.query(&stmt, &[&grids]).await? {
            seqs.insert(r.try_get(0)?, u64_of(r.try_get(1)?));
        }
        if let Some(g) = grids.iter().find(|g| !seqs.contains_key(*g)) {
            return Err(fail(Refusal::forbidden(format!(
                "grid {g} is not in the directory"
            ))));
        }
        let stored_count = plan.change_count();
        if stored_count > 0 {
            let bytes: u64 = plan
                .docs
                .iter()
                .flat_map(|d| d.changes.iter().map(|(_, b)| b.len() as u64))
                .sum();
            let day = Quota::day_of(now);
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO device_usage (device, day, bytes, changes) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (device, day) DO UPDATE
                     SET bytes = device_usage.bytes + excluded.bytes,
                         changes = device_usage.changes + excluded.changes
                     RETURNING bytes, changes",
                )
                .await?;
            let r = tx
                .query_one(
                    &stmt,
                    &[&caller.device, &day, &i64_of(bytes), &i64_of(stored_count)],
                )
                .await?;
            quota
                .check(u64_of(r.try_get(0)?), u64_of(r.try_get(1)?), now)
                .map_err(fail)?;
            let stmt = tx
                .prepare_cached("DELETE FROM device_usage WHERE device = $1 AND day < $2")
                .await?;
            tx.execute(&stmt, &[&caller.device, &(day - 7)]).await?;
        }
        if stored_count > 0 {
            let n = usize::try_from(stored_count).unwrap_or(0);
            let (mut c_grid, mut c_seq, mut c_doc, mut c_hash, mut c_bytes) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            let mut before: HashMap<String, u64> = HashMap::new();
            let mut last_seq: HashMap<String, u64> = HashMap::new();
            for d in &plan.docs {
                let seq = seqs.get_mut(&d.grid).ok_or_else(|| {
                    fail(StoreError::Backend(format!("no seq for grid {}", d.grid)))
                })?;
                before.entry(d.grid.clone()).or_insert(*seq);
                for (hash, bytes) in &d.changes {
                    *seq += 1;
                    c_grid.push(d.grid.as_str());
                    c_seq.push(i64_of(*seq));
                    c_doc.push(d.id.as_str());
                    c_hash.push(hash.as_slice());
                    c_bytes.push(bytes.as_slice());
                }
                last_seq.insert(d.id.clone(), *seq);
            }
            let ins = tx
                .prepare_cached(
                    "INSERT INTO changes (grid, seq, doc, hash, bytes)
                     SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::bytea[], $5::bytea[])",
                )
                .await?;
            tx.execute(&ins, &[&c_grid, &c_seq, &c_doc, &c_hash, &c_bytes])
                .await?;
            Self::write_moves(tx, &plan, &last_seq).await?;
            let upd = tx
                .prepare_cached("UPDATE grid_seqs SET seq = $2 WHERE grid = $1")
                .await?;
            let notify = tx.prepare_cached("SELECT pg_notify($1, $2)").await?;
            for (grid, seq) in &seqs {
                if before.get(grid).is_some_and(|b| b != seq) {
                    tx.execute(&upd, &[grid, &i64_of(*seq)]).await?;
                    tx.execute(&notify, &[&CHANNEL, &format!("{grid}:{seq}")])
                        .await?;
                }
            }
        }
        let stmt = tx
            .prepare_cached("UPDATE devices SET last_seen_ms = $2 WHERE id = $1")
            .await?;
        tx.execute(&stmt, &[&caller.device, &now]).await?;
        let mut grid_seqs: Vec<(String, u64)> = seqs.into_iter().collect();
        grid_seqs.sort();
        Ok(PushOutcome {
            stored: stored_count,
            duplicates: plan.duplicates,
            grid_seqs,
        })
    }
}

impl PgStorage {
    /// Records the moves of a push ([`push_moves`]) and files the documents that follow a
    /// moved household under its new building (after the grids' locks: a pull reading the
    /// moves sees them with the changes of their seqs).
    async fn write_moves(
        tx: &deadpool_postgres::Transaction<'_>,
        plan: &ingest::Plan,
        last_seq: &HashMap<String, u64>,
    ) -> Result<(), Attempt> {
        let mut followers: HashMap<String, Vec<String>> = HashMap::new();
        let moved: Vec<&ingest::PlannedDoc> = plan
            .docs
            .iter()
            .filter(|d| d.kind == DocKind::Household && d.moved_from.is_some())
            .collect();
        if !moved.is_empty() {
            let stmt = tx
                .prepare_cached(
                    "SELECT id, kind, rows FROM docs
                     WHERE grid = $1 AND building IS NOT DISTINCT FROM $2
                       AND kind IN ('record', 'task')",
                )
                .await?;
            for d in moved {
                let from = d.moved_from.clone().flatten();
                let mut mine = Vec::new();
                for r in tx.query(&stmt, &[&d.grid, &from]).await? {
                    let id: String = r.try_get(0)?;
                    let kind: String = r.try_get(1)?;
                    let rows: Vec<u8> = r.try_get(2)?;
                    if follows_household(&kind, &rows, &d.id) {
                        mine.push(id);
                    }
                }
                followers.insert(d.id.clone(), mine);
            }
        }
        let moves = push_moves(plan, last_seq, &followers);
        if moves.is_empty() {
            return Ok(());
        }
        let in_push: HashSet<&str> = plan.docs.iter().map(|d| d.id.as_str()).collect();
        let ins = tx
            .prepare_cached(
                "INSERT INTO moves (grid, seq, doc, from_building, to_building)
                 SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[])
                 ON CONFLICT (grid, seq, doc) DO UPDATE
                 SET from_building = excluded.from_building, to_building = excluded.to_building",
            )
            .await?;
        let grid: Vec<&str> = moves.iter().map(|(g, _)| g.as_str()).collect();
        let seq: Vec<i64> = moves.iter().map(|(_, m)| i64_of(m.seq)).collect();
        let doc: Vec<&str> = moves.iter().map(|(_, m)| m.doc.as_str()).collect();
        let from: Vec<Option<&str>> = moves.iter().map(|(_, m)| m.from.as_deref()).collect();
        let to: Vec<Option<&str>> = moves.iter().map(|(_, m)| m.to.as_deref()).collect();
        tx.execute(&ins, &[&grid, &seq, &doc, &from, &to]).await?;
        let refile = tx
            .prepare_cached("UPDATE docs SET building = $3 WHERE grid = $1 AND id = $2")
            .await?;
        for (g, m) in moves
            .iter()
            .filter(|(_, m)| !in_push.contains(m.doc.as_str()))
        {
            tx.execute(&refile, &[g, &m.doc, &m.to]).await?;
        }
        Ok(())
    }
}

/// What a push's Automerge work reads.
struct PushRead {
    stored: HashMap<String, StoredDoc>,
    versions: HashMap<String, DocVersion>,
    known: HashSet<automerge::ChangeHash>,
}

// ----- the projection tables (rows from `crate::projection`, SQL from `projected`) -----

const D: Dialect = Dialect::Postgres;

impl RowGet for Row {
    fn text(&self, i: usize) -> StoreResult<String> {
        Ok(self.try_get(i)?)
    }
    fn opt_text(&self, i: usize) -> StoreResult<Option<String>> {
        Ok(self.try_get(i)?)
    }
    fn int(&self, i: usize) -> StoreResult<i64> {
        Ok(self.try_get(i)?)
    }
    fn opt_int(&self, i: usize) -> StoreResult<Option<i64>> {
        Ok(self.try_get(i)?)
    }
}

type Param = Box<dyn tokio_postgres::types::ToSql + Sync + Send>;

fn pg_vals(vals: &[Val]) -> Vec<Param> {
    vals.iter()
        .map(|v| -> Param {
            match v {
                Val::Text(t) => Box::new(t.clone()),
                Val::Int(n) => Box::new(*n),
                Val::Texts(list) => Box::new(list.clone()),
            }
        })
        .collect()
}

fn pg_refs(p: &[Param]) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    p.iter()
        .map(|b| b.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

/// Sets the status `record` shows from the tasks made from it ([`proj::shown_status`]).
async fn refresh_shown(
    tx: &deadpool_postgres::Transaction<'_>,
    record: &str,
) -> Result<(), tokio_postgres::Error> {
    let stmt = tx.prepare_cached(&projected::record_status_sql(D)).await?;
    let Some(own) = tx.query_opt(&stmt, &[&record]).await? else {
        return Ok(());
    };
    let (own, grid): (String, String) = (own.try_get(0)?, own.try_get(1)?);
    let stmt = tx
        .prepare_cached(&projected::tasks_of_record_sql(D))
        .await?;
    let tasks: Vec<String> = tx
        .query(&stmt, &[&record, &grid])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let shown = proj::shown_status(&own, tasks.iter().map(String::as_str));
    let stmt = tx.prepare_cached(&projected::set_shown_sql(D)).await?;
    tx.execute(&stmt, &[&record, &shown]).await?;
    Ok(())
}

/// The record a stored task row was made from.
async fn task_link(
    tx: &deadpool_postgres::Transaction<'_>,
    task: &str,
) -> Result<Option<String>, tokio_postgres::Error> {
    let stmt = tx.prepare_cached(&projected::task_link_sql(D)).await?;
    Ok(match tx.query_opt(&stmt, &[&task]).await? {
        Some(r) => r.try_get(0)?,
        None => None,
    })
}

/// Replaces a document's projection rows, in the caller's transaction.
async fn write_doc_rows(
    tx: &deadpool_postgres::Transaction<'_>,
    rows: &DocRows,
) -> Result<(), tokio_postgres::Error> {
    let id = rows.id();
    let linked_before = match rows.kind() {
        DocKind::Task => task_link(tx, id).await?,
        _ => None,
    };
    for t in projected::Table::of_kind(rows.kind()) {
        let stmt = tx.prepare_cached(&D.delete(*t)).await?;
        tx.execute(&stmt, &[&id]).await?;
    }
    for (t, vals) in projected::values_of(rows) {
        let stmt = tx.prepare_cached(&D.insert(t)).await?;
        let p = pg_vals(&vals);
        tx.execute(&stmt, &pg_refs(&p)).await?;
    }
    for r in proj::records_to_refresh(rows, linked_before.as_deref()) {
        refresh_shown(tx, &r).await?;
    }
    Ok(())
}

/// Removes a document's projection rows (quarantine), refreshing the record a task was
/// made from.
async fn delete_doc_rows(
    tx: &deadpool_postgres::Transaction<'_>,
    id: &str,
) -> Result<(), tokio_postgres::Error> {
    let linked = task_link(tx, id).await?;
    for t in projected::Table::ALL {
        let stmt = tx.prepare_cached(&D.delete(t)).await?;
        tx.execute(&stmt, &[&id]).await?;
    }
    if let Some(r) = linked {
        refresh_shown(tx, &r).await?;
    }
    Ok(())
}

/// Projects a stored document's bytes and writes its rows; a document that does not load
/// or project keeps none (for `xiuhua-server check` to quarantine). Returns whether rows
/// were written.
async fn project_stored(
    tx: &deadpool_postgres::Transaction<'_>,
    id: &str,
    bytes: &[u8],
) -> StoreResult<bool> {
    let projected = AutoCommit::load(bytes)
        .map_err(|e| e.to_string())
        .and_then(|doc| proj::project(id, &doc).map_err(|e| e.to_string()));
    match projected {
        Ok(Some(p)) => {
            write_doc_rows(tx, &p.server).await?;
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
/// and records the projection's version, in the caller's transaction (which holds the
/// migration lock, so two processes do not rebuild at once).
async fn rebuild_rows(tx: &deadpool_postgres::Transaction<'_>) -> StoreResult<u64> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    for t in projected::Table::ALL {
        tx.execute(&format!("DELETE FROM {}", t.name()), &[])
            .await?;
    }
    let ids: Vec<String> = tx
        .query(
            "SELECT id FROM docs WHERE id NOT IN (SELECT doc FROM quarantine) ORDER BY id",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let stmt = tx
        .prepare_cached("SELECT bytes FROM docs WHERE id = $1")
        .await?;
    let mut n = 0;
    for id in &ids {
        let bytes: Vec<u8> = tx.query_one(&stmt, &[id]).await?.try_get(0)?;
        if project_stored(tx, id, &bytes).await? {
            n += 1;
        }
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('projection', $1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&proj::stored_version().into_bytes()],
    )
    .await?;
    Ok(n)
}

/// Rebuilds the projection when it was written by another version (or never).
async fn ensure_projection(c: &mut deadpool_postgres::Client) -> StoreResult<Option<u64>> {
    let want = proj::stored_version().into_bytes();
    let tx = c.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let stored: Option<Vec<u8>> = tx
        .query_opt("SELECT value FROM meta WHERE key = 'projection'", &[])
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
    if stored.as_ref() == Some(&want) {
        return Ok(None);
    }
    let n = rebuild_rows(&tx).await?;
    tx.commit().await?;
    Ok(Some(n))
}

async fn migrate(client: &mut tokio_postgres::Client) -> StoreResult<()> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let r = migrate_locked(client).await;
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    r
}

async fn migrate_locked(client: &mut tokio_postgres::Client) -> StoreResult<()> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version BIGINT PRIMARY KEY, description TEXT NOT NULL, applied_ms BIGINT NOT NULL)",
        )
        .await?;
    let version: i64 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .try_get(0)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Backend(format!(
            "the database has schema version {version}, newer than this server ({SCHEMA_VERSION}); upgrade the server"
        )));
    }
    for (i, (what, sql)) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, description, applied_ms) VALUES ($1, $2, $3)",
            &[&(i as i64 + 1), what, &crate::now_ms()],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version = i + 1, what, "database migrated");
    }
    Ok(())
}

async fn refresh_rows(client: &mut tokio_postgres::Client) -> StoreResult<usize> {
    let tx = client.transaction().await?;
    let stale = tx
        .query(
            "SELECT grid, id, bytes FROM docs WHERE rows_version != $1 FOR UPDATE",
            &[&PROJECTION_VERSION],
        )
        .await?;
    for r in &stale {
        let (grid, id, bytes): (String, String, Vec<u8>) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        let doc = AutoCommit::load(&bytes)
            .map_err(|e| StoreError::Backend(format!("document {id}: {e}")))?;
        let rows = rows_of(&id, &doc)
            .map_err(|e| StoreError::Backend(format!("document {id}: {e}")))?
            .ok_or_else(|| StoreError::Backend(format!("document {id} is empty")))?;
        tx.execute(
            "UPDATE docs SET rows = $3, rows_version = $4 WHERE grid = $1 AND id = $2",
            &[
                &grid,
                &id,
                &ingest::encode_rows(&rows)?,
                &PROJECTION_VERSION,
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(stale.len())
}

/// Listens for other processes' pushes on a dedicated connection, reconnecting after a
/// failure. While it is down, long polls only time out sooner than they would.
async fn listen(cfg: tokio_postgres::Config, events: broadcast::Sender<GridAt>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match cfg.connect(NoTls).await {
            Ok((client, mut conn)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    loop {
                        match futures_util::future::poll_fn(|cx| conn.poll_message(cx)).await {
                            Some(Ok(AsyncMessage::Notification(n))) => {
                                if tx.send(n.payload().to_string()).is_err() {
                                    break;
                                }
                            }
                            Some(Ok(_)) => {}
                            Some(Err(e)) => {
                                tracing::warn!(error = %e, "LISTEN connection failed");
                                break;
                            }
                            None => break,
                        }
                    }
                });
                if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    tracing::warn!(error = %e, "LISTEN failed");
                } else {
                    backoff = Duration::from_millis(100);
                    while let Some(payload) = rx.recv().await {
                        if let Some((grid, seq)) = payload.rsplit_once(':')
                            && let Ok(seq) = seq.parse()
                        {
                            let _ = events.send(GridAt {
                                grid: grid.to_string(),
                                seq,
                            });
                        }
                    }
                }
                driver.abort();
            }
            Err(e) => tracing::warn!(error = %pg_message(&e), "LISTEN connection failed"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn require(
    c: &impl tokio_postgres::GenericClient,
    table: &str,
    id: &str,
    what: &str,
) -> StoreResult<()> {
    let sql = format!("SELECT 1 FROM {table} WHERE id = $1");
    if c.query_opt(&sql, &[&id]).await?.is_some() {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!("no {what} with id {id:?}")))
    }
}

async fn refuse_duplicate(
    c: &impl tokio_postgres::GenericClient,
    table: &str,
    id: &str,
    what: &str,
) -> StoreResult<()> {
    let sql = format!("SELECT 1 FROM {table} WHERE id = $1");
    if c.query_opt(&sql, &[&id]).await?.is_some() {
        Err(StoreError::Duplicate(format!(
            "a {what} with id {id:?} exists already"
        )))
    } else {
        Ok(())
    }
}

async fn grants_of(
    c: &impl tokio_postgres::GenericClient,
    user: &str,
) -> StoreResult<Vec<GrantRow>> {
    c.query(
        "SELECT user_id, grid, role, buildings FROM grants WHERE user_id = $1 ORDER BY grid",
        &[&user],
    )
    .await?
    .iter()
    .map(grant_row)
    .collect()
}

async fn held_grids(
    c: &impl tokio_postgres::GenericClient,
    device: &str,
) -> StoreResult<Vec<String>> {
    c.query(
        "SELECT grid FROM device_grids WHERE device = $1 ORDER BY grid",
        &[&device],
    )
    .await?
    .iter()
    .map(|r| Ok(r.try_get(0)?))
    .collect()
}

fn map_duplicate(e: tokio_postgres::Error, msg: impl FnOnce() -> String) -> StoreError {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        StoreError::Duplicate(msg())
    } else {
        e.into()
    }
}

#[async_trait]
impl Storage for PgStorage {
    async fn health(&self) -> StoreResult<()> {
        let c = self.client().await?;
        let v: i64 = c
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                &[],
            )
            .await?
            .try_get(0)?;
        if v == SCHEMA_VERSION {
            Ok(())
        } else {
            Err(StoreError::Backend(format!("schema version {v}")))
        }
    }

    fn subscribe(&self) -> Option<broadcast::Receiver<GridAt>> {
        Some(self.events.subscribe())
    }

    async fn add_district(&self, id: &str, name: &str) -> StoreResult<()> {
        let c = self.client().await?;
        refuse_duplicate(&**c, "districts", id, "district").await?;
        c.execute(
            "INSERT INTO districts (id, name) VALUES ($1, $2)",
            &[&id, &name],
        )
        .await
        .map_err(|e| map_duplicate(e, || format!("a district with id {id:?} exists already")))?;
        Ok(())
    }

    async fn add_community(&self, id: &str, name: &str, district: &str) -> StoreResult<()> {
        let c = self.client().await?;
        refuse_duplicate(&**c, "communities", id, "community").await?;
        require(&**c, "districts", district, "district").await?;
        c.execute(
            "INSERT INTO communities (id, name, district) VALUES ($1, $2, $3)",
            &[&id, &name, &district],
        )
        .await
        .map_err(|e| map_duplicate(e, || format!("a community with id {id:?} exists already")))?;
        Ok(())
    }

    async fn add_grid(&self, id: &str, name: &str, community: &str) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        refuse_duplicate(&*tx, "grids", id, "grid").await?;
        require(&*tx, "communities", community, "community").await?;
        tx.execute(
            "INSERT INTO grids (id, name, community) VALUES ($1, $2, $3)",
            &[&id, &name, &community],
        )
        .await
        .map_err(|e| map_duplicate(e, || format!("a grid with id {id:?} exists already")))?;
        tx.execute(
            "INSERT INTO grid_seqs (grid, seq) VALUES ($1, 0) ON CONFLICT (grid) DO NOTHING",
            &[&id],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn add_building(&self, grid: &str, name: &str) -> StoreResult<()> {
        let c = self.client().await?;
        require(&**c, "grids", grid, "grid").await?;
        let n = c
            .execute(
                "INSERT INTO buildings (grid, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&grid, &name],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::Duplicate(format!(
                "grid {grid} already has a building {name:?}"
            )));
        }
        Ok(())
    }

    async fn add_user(&self, id: &str, name: &str) -> StoreResult<()> {
        let c = self.client().await?;
        refuse_duplicate(&**c, "users", id, "user").await?;
        c.execute(
            "INSERT INTO users (id, name, created_ms) VALUES ($1, $2, $3)",
            &[&id, &name, &crate::now_ms()],
        )
        .await
        .map_err(|e| map_duplicate(e, || format!("a user with id {id:?} exists already")))?;
        Ok(())
    }

    async fn community_grids(&self, community: &str) -> StoreResult<Vec<String>> {
        let c = self.client().await?;
        require(&**c, "communities", community, "community").await?;
        c.query(
            "SELECT id FROM grids WHERE community = $1 ORDER BY id",
            &[&community],
        )
        .await?
        .iter()
        .map(|r| Ok(r.try_get(0)?))
        .collect()
    }

    async fn grant(
        &self,
        user: &str,
        grids: &[String],
        role: Role,
        buildings: &[String],
    ) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        require(&*tx, "users", user, "user").await?;
        let buildings: Vec<String> = buildings.to_vec();
        for grid in grids {
            require(&*tx, "grids", grid, "grid").await?;
            for b in &buildings {
                if tx
                    .query_opt(
                        "SELECT 1 FROM buildings WHERE grid = $1 AND name = $2",
                        &[grid, b],
                    )
                    .await?
                    .is_none()
                {
                    return Err(StoreError::NotFound(format!(
                        "grid {grid} has no building {b:?}; add it with `building add {grid} {b}`"
                    )));
                }
            }
            tx.execute(
                "INSERT INTO grants (user_id, grid, role, buildings) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (user_id, grid) DO UPDATE SET role = excluded.role, buildings = excluded.buildings",
                &[&user, grid, &role.as_str(), &buildings],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn revoke_grant(&self, user: &str, grid: &str) -> StoreResult<()> {
        let c = self.client().await?;
        require(&**c, "users", user, "user").await?;
        require(&**c, "grids", grid, "grid").await?;
        let n = c
            .execute(
                "DELETE FROM grants WHERE user_id = $1 AND grid = $2",
                &[&user, &grid],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "user {user} has no grant on grid {grid}"
            )));
        }
        Ok(())
    }

    async fn list_users(&self) -> StoreResult<Vec<UserInfo>> {
        let c = self.client().await?;
        c.query(
            "SELECT id, name, revoked_ms IS NOT NULL FROM users ORDER BY id",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(UserInfo {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
                revoked: r.try_get(2)?,
            })
        })
        .collect()
    }

    async fn list_grids(&self) -> StoreResult<Vec<GridInfo>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT g.id, g.name, g.community, m.district, COALESCE(s.seq, 0),
                        COALESCE((SELECT array_agg(b.name ORDER BY b.name) FROM buildings b WHERE b.grid = g.id), '{}'),
                        m.name
                 FROM grids g JOIN communities m ON m.id = g.community
                 LEFT JOIN grid_seqs s ON s.grid = g.id ORDER BY g.id",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(GridInfo {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    community: r.try_get(2)?,
                    community_name: r.try_get(6)?,
                    district: r.try_get(3)?,
                    seq: u64_of(r.try_get(4)?),
                    buildings: r.try_get(5)?,
                })
            })
            .collect()
    }

    async fn number_blocks(
        &self,
        device: &str,
        community: &str,
        year: i32,
    ) -> StoreResult<Vec<Issued>> {
        let c = self.client().await?;
        c.query(
            "SELECT start_seq, end_seq, at_ms FROM number_blocks
             WHERE device = $1 AND community = $2 AND year = $3 ORDER BY start_seq",
            &[&device, &community, &year],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(Issued {
                start: u64_of(r.try_get(0)?),
                end: u64_of(r.try_get(1)?),
                at_ms: r.try_get(2)?,
            })
        })
        .collect()
    }

    async fn device_number_blocks(&self, devices: &[String]) -> StoreResult<Vec<OwnBlock>> {
        let c = self.client().await?;
        c.query(
            "SELECT m.name, b.year, b.start_seq, b.end_seq FROM number_blocks b
             JOIN communities m ON m.id = b.community WHERE b.device = ANY($1)",
            &[&devices],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(OwnBlock {
                prefix: xiuhua_core::numbers::prefix_of(&r.try_get::<_, String>(0)?),
                year: r.try_get(1)?,
                start: u64_of(r.try_get(2)?),
                end: u64_of(r.try_get(3)?),
            })
        })
        .collect()
    }

    async fn reserve_number_block(
        &self,
        device: &str,
        community: &str,
        year: i32,
        size: u64,
        now_ms: i64,
    ) -> StoreResult<Issued> {
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        require(&*tx, "devices", device, "device").await?;
        require(&*tx, "communities", community, "community").await?;
        let end: i64 = tx
            .query_one(
                "INSERT INTO number_counters (community, year, next) VALUES ($1, $2, 1 + $3::BIGINT)
                 ON CONFLICT (community, year) DO UPDATE
                 SET next = number_counters.next + $3::BIGINT RETURNING next",
                &[&community, &year, &size],
            )
            .await?
            .try_get(0)?;
        let start = end - size;
        tx.execute(
            "INSERT INTO number_blocks (device, community, year, start_seq, end_seq, at_ms)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[&device, &community, &year, &start, &end, &now_ms],
        )
        .await?;
        tx.commit().await?;
        Ok(Issued {
            start: u64_of(start),
            end: u64_of(end),
            at_ms: now_ms,
        })
    }

    async fn list_grants(&self) -> StoreResult<Vec<GrantRow>> {
        let c = self.client().await?;
        c.query(
            "SELECT user_id, grid, role, buildings FROM grants ORDER BY user_id, grid",
            &[],
        )
        .await?
        .iter()
        .map(grant_row)
        .collect()
    }

    async fn list_devices(&self, user: Option<&str>) -> StoreResult<Vec<DeviceInfo>> {
        let c = self.client().await?;
        if let Some(u) = user {
            require(&**c, "users", u, "user").await?;
        }
        c.query(
            "SELECT id, user_id, name, created_ms, last_seen_ms, revoked_ms IS NOT NULL,
                    reset_ms IS NOT NULL, predecessor FROM devices
             WHERE $1::text IS NULL OR user_id = $1 ORDER BY user_id, created_ms",
            &[&user],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(DeviceInfo {
                id: r.try_get(0)?,
                user: r.try_get(1)?,
                name: r.try_get(2)?,
                created_ms: r.try_get(3)?,
                last_seen_ms: r.try_get(4)?,
                revoked: r.try_get(5)?,
                reset: r.try_get(6)?,
                succeeds: r.try_get(7)?,
            })
        })
        .collect()
    }

    async fn revoke_device(&self, device: &str, now_ms: i64) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        require(&*tx, "devices", device, "device").await?;
        tx.execute(
            "UPDATE devices SET revoked_ms = $2 WHERE id = $1 AND revoked_ms IS NULL",
            &[&device, &now_ms],
        )
        .await?;
        tx.execute(
            "UPDATE refresh_tokens SET revoked_ms = $2 WHERE device = $1 AND revoked_ms IS NULL",
            &[&device, &now_ms],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revoke_user(&self, user: &str, now_ms: i64) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        require(&*tx, "users", user, "user").await?;
        tx.execute(
            "UPDATE users SET revoked_ms = $2 WHERE id = $1 AND revoked_ms IS NULL",
            &[&user, &now_ms],
        )
        .await?;
        tx.execute(
            "UPDATE devices SET revoked_ms = $2 WHERE user_id = $1 AND revoked_ms IS NULL",
            &[&user, &now_ms],
        )
        .await?;
        tx.execute(
            "UPDATE refresh_tokens SET revoked_ms = $2
             WHERE device IN (SELECT id FROM devices WHERE user_id = $1) AND revoked_ms IS NULL",
            &[&user, &now_ms],
        )
        .await?;
        tx.execute(
            "UPDATE enroll_codes SET used_ms = $2 WHERE user_id = $1 AND used_ms IS NULL",
            &[&user, &now_ms],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn add_enroll_code(
        &self,
        user: &str,
        code_hash: &str,
        expires_ms: i64,
        now_ms: i64,
    ) -> StoreResult<()> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                "SELECT revoked_ms IS NOT NULL FROM users WHERE id = $1",
                &[&user],
            )
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no user with id {user:?}")))?;
        if row.try_get::<_, bool>(0)? {
            return Err(StoreError::Invalid(format!("user {user} is revoked")));
        }
        c.execute(
            "INSERT INTO enroll_codes (hash, user_id, created_ms, expires_ms) VALUES ($1, $2, $3, $4)",
            &[&code_hash, &user, &now_ms, &expires_ms],
        )
        .await?;
        Ok(())
    }

    async fn enroll_device(
        &self,
        code_hash: &str,
        new: &NewDevice<'_>,
        previous: Option<&str>,
        now_ms: i64,
    ) -> StoreResult<EnrollOutcome> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // The code's row is locked first: a concurrent use of it waits, then finds it spent.
        let row = tx
            .query_opt(
                "SELECT e.user_id, u.name, e.expires_ms, e.used_ms, u.revoked_ms IS NOT NULL
                 FROM enroll_codes e JOIN users u ON u.id = e.user_id
                 WHERE e.hash = $1 FOR UPDATE OF e",
                &[&code_hash],
            )
            .await?
            .map(|r| -> StoreResult<CodeRow> {
                Ok(CodeRow {
                    user: r.try_get(0)?,
                    user_name: r.try_get(1)?,
                    expires_ms: r.try_get(2)?,
                    used_ms: r.try_get(3)?,
                    user_revoked: r.try_get(4)?,
                })
            })
            .transpose()?;
        let prev = match previous {
            Some(id) => Some(credentials::PreviousDevice {
                id: id.to_string(),
                owner: tx
                    .query_opt(
                        "SELECT user_id FROM devices WHERE id = $1 FOR UPDATE",
                        &[&id],
                    )
                    .await?
                    .map(|r| r.try_get(0))
                    .transpose()?,
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
        let Some(CodeRow {
            user, user_name, ..
        }) = row
        else {
            return Ok(EnrollOutcome::Refused);
        };
        tx.execute(
            "UPDATE enroll_codes SET used_ms = $2, device = $3 WHERE hash = $1",
            &[&code_hash, &now_ms, &new.id],
        )
        .await?;
        tx.execute(
            "INSERT INTO devices (id, user_id, name, created_ms, last_seen_ms, predecessor)
             VALUES ($1, $2, $3, $4, $4, $5)",
            &[&new.id, &user, &new.name, &now_ms, &succeeds],
        )
        .await?;
        tx.execute(
            "INSERT INTO refresh_tokens (hash, device, issued_ms, expires_ms) VALUES ($1, $2, $3, $4)",
            &[&new.refresh_hash, &new.id, &now_ms, &new.refresh_expires_ms],
        )
        .await?;
        if let Some(old) = &succeeds {
            tx.execute(
                "UPDATE refresh_tokens SET revoked_ms = $2 WHERE device = $1 AND revoked_ms IS NULL",
                &[old, &now_ms],
            )
            .await?;
            tx.execute(
                "UPDATE devices SET reset_ms = $2 WHERE id = $1 AND reset_ms IS NULL",
                &[old, &now_ms],
            )
            .await?;
            tx.execute(
                "INSERT INTO device_grids (device, grid, since_ms)
                 SELECT $2, grid, since_ms FROM device_grids WHERE device = $1
                 ON CONFLICT DO NOTHING",
                &[old, &new.id],
            )
            .await?;
        }
        let grants = grants_of(&*tx, &user).await?;
        tx.commit().await?;
        Ok(EnrollOutcome::Enrolled(Enrolled {
            user,
            user_name,
            grants,
            succeeds,
        }))
    }

    async fn refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
        new_expires_ms: i64,
        now_ms: i64,
    ) -> StoreResult<RefreshOutcome> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // The refreshes of one device are serialized on its row (locked first, then the token
        // read in a fresh snapshot), so that two children of one token cannot both win.
        if let Some(r) = tx
            .query_opt(
                "SELECT device FROM refresh_tokens WHERE hash = $1",
                &[&old_hash],
            )
            .await?
        {
            let device: String = r.try_get(0)?;
            tx.execute("SELECT 1 FROM devices WHERE id = $1 FOR UPDATE", &[&device])
                .await?;
        }
        let row = tx
            .query_opt(
                "SELECT r.device, d.user_id, r.expires_ms, r.used_ms, r.revoked_ms,
                        d.revoked_ms IS NOT NULL OR u.revoked_ms IS NOT NULL, d.reset_ms IS NOT NULL,
                        r.parent,
                        EXISTS (SELECT 1 FROM refresh_tokens c WHERE c.parent = r.hash AND c.used_ms IS NOT NULL)
                 FROM refresh_tokens r JOIN devices d ON d.id = r.device JOIN users u ON u.id = d.user_id
                 WHERE r.hash = $1",
                &[&old_hash],
            )
            .await?
            .map(|r| -> StoreResult<RefreshRow> {
                Ok(RefreshRow {
                    device: r.try_get(0)?,
                    user: r.try_get(1)?,
                    expires_ms: r.try_get(2)?,
                    used_ms: r.try_get(3)?,
                    revoked_ms: r.try_get(4)?,
                    device_revoked: r.try_get(5)?,
                    device_reset: r.try_get(6)?,
                    parent: r.try_get(7)?,
                    child_used: r.try_get(8)?,
                })
            })
            .transpose()?;
        let decision = credentials::decide_refresh(row.as_ref(), now_ms);
        let (device, user) = match (row, &decision) {
            (Some(r), RefreshDecision::Rotate { .. } | RefreshDecision::Reissue) => {
                (r.device, r.user)
            }
            (Some(r), RefreshDecision::Revoked) => {
                return Ok(RefreshOutcome::Revoked {
                    held_grids: held_grids(&*tx, &r.device).await?,
                });
            }
            (Some(r), RefreshDecision::Theft) => {
                tx.execute(
                    "UPDATE refresh_tokens SET revoked_ms = $2 WHERE device = $1 AND revoked_ms IS NULL",
                    &[&r.device, &now_ms],
                )
                .await?;
                tx.execute(
                    "UPDATE devices SET reset_ms = $2 WHERE id = $1",
                    &[&r.device, &now_ms],
                )
                .await?;
                tx.commit().await?;
                tracing::warn!(
                    device = r.device,
                    "refresh token reused: every token of the device revoked"
                );
                return Ok(RefreshOutcome::Refused(CredentialRefusal::TokenReused));
            }
            (_, RefreshDecision::Refuse(why)) => return Ok(RefreshOutcome::Refused(*why)),
            (None, _) => return Ok(RefreshOutcome::Refused(CredentialRefusal::UnknownToken)),
        };
        if let RefreshDecision::Rotate { parent } = &decision {
            tx.execute(
                "UPDATE refresh_tokens SET used_ms = $2 WHERE hash = $1",
                &[&old_hash, &now_ms],
            )
            .await?;
            if let Some(parent) = parent {
                // The first child presented wins: its unused siblings die.
                tx.execute(
                    "UPDATE refresh_tokens SET revoked_ms = $3
                     WHERE parent = $1 AND hash != $2 AND used_ms IS NULL AND revoked_ms IS NULL",
                    &[parent, &old_hash, &now_ms],
                )
                .await?;
            }
        }
        tx.execute(
            "INSERT INTO refresh_tokens (hash, device, issued_ms, expires_ms, parent) VALUES ($1, $2, $3, $4, $5)",
            &[&new_hash, &device, &now_ms, &new_expires_ms, &old_hash],
        )
        .await?;
        tx.execute(
            "UPDATE devices SET last_seen_ms = $2 WHERE id = $1",
            &[&device, &now_ms],
        )
        .await?;
        tx.commit().await?;
        Ok(RefreshOutcome::Rotated { device, user })
    }

    async fn device_standing(
        &self,
        device: &str,
        user: &str,
        _now_ms: i64,
    ) -> StoreResult<DeviceStanding> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(
                "SELECT d.user_id, u.name, d.revoked_ms IS NOT NULL OR u.revoked_ms IS NOT NULL,
                        d.reset_ms IS NOT NULL,
                        COALESCE((SELECT array_agg(g.grid ORDER BY g.grid) FROM device_grids g WHERE g.device = d.id), '{}'),
                        COALESCE((WITH RECURSIVE chain(id, n) AS (
                                      SELECT p.predecessor, 1 FROM devices p
                                      WHERE p.id = $1 AND p.predecessor IS NOT NULL
                                      UNION ALL
                                      SELECT p.predecessor, c.n + 1 FROM devices p JOIN chain c ON p.id = c.id
                                      WHERE p.predecessor IS NOT NULL AND c.n < $2)
                                  SELECT array_agg(id ORDER BY n) FROM chain), '{}')
                 FROM devices d JOIN users u ON u.id = d.user_id WHERE d.id = $1",
            )
            .await?;
        let max = i32::try_from(credentials::MAX_PREDECESSORS).unwrap_or(32);
        let fetched = c.query_opt(&stmt, &[&device, &max]).await?;
        let (row, held, predecessors): (Option<DeviceRow>, Vec<String>, Vec<String>) =
            match &fetched {
                None => (None, Vec::new(), Vec::new()),
                Some(r) => (
                    Some(DeviceRow {
                        owner: r.try_get(0)?,
                        user_name: r.try_get(1)?,
                        revoked: r.try_get(2)?,
                        reset: r.try_get(3)?,
                    }),
                    r.try_get(4)?,
                    r.try_get(5)?,
                ),
            };
        let user_name = match (credentials::decide_standing(row.as_ref(), user), row) {
            (Standing::Active, Some(r)) => r.user_name,
            (Standing::Revoked, _) => return Ok(DeviceStanding::Revoked { held_grids: held }),
            (Standing::Reset, _) => return Ok(DeviceStanding::Reset),
            (Standing::Unknown | Standing::Active, _) => return Ok(DeviceStanding::Unknown),
        };
        let stmt = c
            .prepare_cached(
                "SELECT user_id, grid, role, buildings FROM grants WHERE user_id = $1 ORDER BY grid",
            )
            .await?;
        let grants = c
            .query(&stmt, &[&user])
            .await?
            .iter()
            .map(grant_row)
            .collect::<StoreResult<_>>()?;
        Ok(DeviceStanding::Active(Caller {
            device: device.to_string(),
            user: user.to_string(),
            user_name,
            grants,
            held_grids: held,
            predecessors,
        }))
    }

    async fn push_within(
        &self,
        caller: &Caller,
        parsed: Parsed,
        quota: &Quota,
    ) -> StoreResult<PushOutcome> {
        let mut last = String::new();
        for attempt in 0..PUSH_ATTEMPTS {
            // The last attempt locks the documents while applying: a push always ends.
            let locked = attempt + 1 == PUSH_ATTEMPTS;
            match self.push_once(caller, parsed.clone(), quota, locked).await {
                Ok(o) => return Ok(o),
                Err(Attempt::Fail(e)) => return Err(e),
                Err(Attempt::Retry(why)) => {
                    tracing::debug!(attempt, why, "push raced another one; retrying");
                    last = why;
                }
            }
        }
        Err(StoreError::Refused(Refusal::conflict(format!(
            "the push kept colliding with concurrent pushes of the same changes ({last}); retry"
        ))))
    }

    async fn mark_held(&self, device: &str, grid: &str) -> StoreResult<()> {
        let c = self.client().await?;
        let stmt = c
            .prepare_cached(
                "INSERT INTO device_grids (device, grid, since_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (device, grid) DO NOTHING",
            )
            .await?;
        c.execute(&stmt, &[&device, &grid, &crate::now_ms()])
            .await?;
        Ok(())
    }

    async fn pull_within(
        &self,
        grid: &str,
        since: u64,
        limit: u32,
        max_bytes: u64,
        scope: &Scope,
    ) -> StoreResult<PullPage> {
        let since_i = i64_of(since);
        let limit_i = i64::from(limit);
        let mut c = self.client().await?;
        // One snapshot: the grid's seq, the sizes of the candidate changes (no bytes read),
        // then the changes that fit.
        let tx = c
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let max = match tx
            .query_opt("SELECT seq FROM grid_seqs WHERE grid = $1", &[&grid])
            .await?
        {
            Some(r) => u64_of(r.try_get(0)?),
            None => 0,
        };
        let bs: Option<&Vec<String>> = match scope {
            Scope::Grid => None,
            Scope::Buildings(bs) => Some(bs),
        };
        let sizes = match bs {
            None => {
                let stmt = tx
                    .prepare_cached(
                        "SELECT seq, octet_length(bytes)::int8 FROM changes
                         WHERE grid = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                    )
                    .await?;
                tx.query(&stmt, &[&grid, &since_i, &limit_i]).await?
            }
            Some(bs) => {
                let stmt = tx
                    .prepare_cached(
                        "SELECT ch.seq, octet_length(ch.bytes)::int8 FROM changes ch
                         JOIN docs d ON d.grid = ch.grid AND d.id = ch.doc
                         WHERE ch.grid = $1 AND ch.seq > $2 AND d.building = ANY($4)
                         ORDER BY ch.seq LIMIT $3",
                    )
                    .await?;
                tx.query(&stmt, &[&grid, &since_i, &limit_i, bs]).await?
            }
        };
        let mut seqs = Vec::with_capacity(sizes.len());
        let mut lens = Vec::with_capacity(sizes.len());
        for r in &sizes {
            seqs.push(r.try_get::<_, i64>(0)?);
            lens.push(u64_of(r.try_get(1)?));
        }
        let (n, _) = page_cut(&lens, limit as usize, max_bytes);
        let rows = match (n.checked_sub(1).map(|i| seqs[i]), bs) {
            (None, _) => Vec::new(),
            (Some(upto), None) => {
                let stmt = tx
                    .prepare_cached(
                        "SELECT seq, doc, bytes FROM changes
                         WHERE grid = $1 AND seq > $2 AND seq <= $3 ORDER BY seq",
                    )
                    .await?;
                tx.query(&stmt, &[&grid, &since_i, &upto]).await?
            }
            (Some(upto), Some(bs)) => {
                let stmt = tx
                    .prepare_cached(
                        "SELECT ch.seq, ch.doc, ch.bytes FROM changes ch
                         JOIN docs d ON d.grid = ch.grid AND d.id = ch.doc
                         WHERE ch.grid = $1 AND ch.seq > $2 AND ch.seq <= $3 AND d.building = ANY($4)
                         ORDER BY ch.seq",
                    )
                    .await?;
                tx.query(&stmt, &[&grid, &since_i, &upto, bs]).await?
            }
        };
        let mut changes = Vec::with_capacity(rows.len());
        for r in &rows {
            changes.push((u64_of(r.try_get(0)?), r.try_get(1)?, r.try_get(2)?));
        }
        let (next, more) = pull_page_end(
            since,
            limit,
            seqs.len(),
            changes.len(),
            changes.last().map(|c: &(u64, String, Vec<u8>)| c.0),
            max,
        );
        // The moves of the window that touch the scope, in the same snapshot.
        let mut moves = Vec::new();
        if let Some(bs) = bs {
            let stmt = tx
                .prepare_cached(
                    "SELECT seq, doc, from_building, to_building FROM moves
                     WHERE grid = $1 AND seq > $2 AND seq <= $3
                       AND (from_building = ANY($4) OR to_building = ANY($4))
                     ORDER BY seq, doc",
                )
                .await?;
            for r in tx
                .query(&stmt, &[&grid, &since_i, &i64_of(next), bs])
                .await?
            {
                moves.push(MoveRow {
                    seq: u64_of(r.try_get(0)?),
                    doc: r.try_get(1)?,
                    from: r.try_get(2)?,
                    to: r.try_get(3)?,
                });
            }
        }
        tx.commit().await?;
        Ok(PullPage {
            changes,
            next,
            more,
            moves,
        })
    }

    async fn grid_size(&self, grid: &str, scope: &Scope) -> StoreResult<(u64, u64)> {
        let c = self.client().await?;
        let row = match scope {
            Scope::Grid => {
                c.query_one(
                    "SELECT count(*)::int8, coalesce(sum(octet_length(bytes) + octet_length(rows)), 0)::int8
                     FROM docs WHERE grid = $1 AND id NOT IN (SELECT doc FROM quarantine)",
                    &[&grid],
                )
                .await?
            }
            Scope::Buildings(bs) => {
                c.query_one(
                    "SELECT count(*)::int8, coalesce(sum(octet_length(bytes) + octet_length(rows)), 0)::int8
                     FROM docs WHERE grid = $1 AND building = ANY($2)
                       AND id NOT IN (SELECT doc FROM quarantine)",
                    &[&grid, bs],
                )
                .await?
            }
        };
        let (n, b): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        Ok((u64::try_from(n).unwrap_or(0), u64::try_from(b).unwrap_or(0)))
    }

    async fn bootstrap_within(
        &self,
        grid: &str,
        scope: &Scope,
        after: Option<&str>,
        limit: u32,
        max_bytes: u64,
    ) -> StoreResult<Snapshot> {
        let limit = bootstrap_page_limit(limit);
        // One more than the page, to know whether more follow. Ids are `COLLATE "C"`: byte
        // order, as in SQLite. `after` none = from the start. First the sizes (no bytes
        // read), then the documents that fit, in one snapshot.
        let fetch = i64::from(limit) + 1;
        let after = after.unwrap_or("");
        let mut c = self.client().await?;
        let tx = c
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let cursor: i64 = match tx
            .query_opt("SELECT seq FROM grid_seqs WHERE grid = $1", &[&grid])
            .await?
        {
            Some(r) => r.try_get(0)?,
            None => 0,
        };
        let sizes = match scope {
            Scope::Grid => {
                tx.query(
                    "SELECT id, (octet_length(bytes) + octet_length(rows))::int8 FROM docs
                     WHERE grid = $1 AND id > $2 AND id NOT IN (SELECT doc FROM quarantine)
                     ORDER BY id LIMIT $3",
                    &[&grid, &after, &fetch],
                )
                .await?
            }
            Scope::Buildings(bs) => {
                tx.query(
                    "SELECT id, (octet_length(bytes) + octet_length(rows))::int8 FROM docs
                     WHERE grid = $1 AND id > $2 AND building = ANY($3)
                       AND id NOT IN (SELECT doc FROM quarantine)
                     ORDER BY id LIMIT $4",
                    &[&grid, &after, bs, &fetch],
                )
                .await?
            }
        };
        let mut ids: Vec<String> = Vec::with_capacity(sizes.len());
        let mut lens = Vec::with_capacity(sizes.len());
        for r in &sizes {
            ids.push(r.try_get(0)?);
            lens.push(u64_of(r.try_get(1)?));
        }
        let (n, more) = page_cut(&lens, limit as usize, max_bytes);
        let rows = match (n.checked_sub(1).map(|i| ids[i].as_str()), scope) {
            (None, _) => Vec::new(),
            (Some(upto), Scope::Grid) => {
                tx.query(
                    "SELECT id, kind, heads, bytes, rows FROM docs
                     WHERE grid = $1 AND id > $2 AND id <= $3 AND id NOT IN (SELECT doc FROM quarantine)
                     ORDER BY id",
                    &[&grid, &after, &upto],
                )
                .await?
            }
            (Some(upto), Scope::Buildings(bs)) => {
                tx.query(
                    "SELECT id, kind, heads, bytes, rows FROM docs
                     WHERE grid = $1 AND id > $2 AND id <= $3 AND building = ANY($4)
                       AND id NOT IN (SELECT doc FROM quarantine)
                     ORDER BY id",
                    &[&grid, &after, &upto, bs],
                )
                .await?
            }
        };
        tx.commit().await?;
        let docs = rows
            .iter()
            .map(|r| {
                Ok(BundleRow {
                    id: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    heads: r.try_get(2)?,
                    bytes: r.try_get(3)?,
                    rows: r.try_get(4)?,
                })
            })
            .collect::<StoreResult<_>>()?;
        Ok(Snapshot {
            cursor: u64_of(cursor),
            docs,
            more,
        })
    }

    async fn doc(&self, id: &str) -> StoreResult<Option<(DocMeta, Vec<u8>)>> {
        let c = self.client().await?;
        let Some(r) = c
            .query_opt(
                "SELECT grid, kind, building, tier, unit, bytes,
                        EXISTS (SELECT 1 FROM quarantine q WHERE q.doc = docs.id)
                 FROM docs WHERE id = $1",
                &[&id],
            )
            .await?
        else {
            return Ok(None);
        };
        if r.try_get::<_, bool>(6)? {
            return Err(quarantined_refusal(id).into());
        }
        Ok(Some((
            DocMeta {
                id: id.to_string(),
                grid: r.try_get(0)?,
                kind: parse_kind(r.try_get(1)?)?,
                building: r.try_get(2)?,
                tier: parse_tier(r.try_get(3)?)?,
                unit: r.try_get(4)?,
            },
            r.try_get(5)?,
        )))
    }

    async fn scan_docs(&self, after: Option<&str>, limit: u32) -> StoreResult<Vec<StoredForCheck>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT id, grid, kind, heads, bytes, EXISTS (SELECT 1 FROM quarantine q WHERE q.doc = docs.id)
                 FROM docs WHERE id > $1 ORDER BY id LIMIT $2",
                &[&after.unwrap_or(""), &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredForCheck {
                    id: r.try_get(0)?,
                    grid: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    heads: r.try_get(3)?,
                    bytes: r.try_get(4)?,
                    quarantined: r.try_get(5)?,
                })
            })
            .collect()
    }

    async fn quarantine(&self, id: &str, reason: &str, now_ms: i64) -> StoreResult<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let n = tx
            .execute(
                "INSERT INTO quarantine (doc, grid, reason, since_ms)
                 SELECT id, grid, $2, $3 FROM docs WHERE id = $1
                 ON CONFLICT (doc) DO UPDATE SET reason = excluded.reason",
                &[&id, &reason, &now_ms],
            )
            .await?;
        if n == 1 {
            delete_doc_rows(&tx, id).await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn release(&self, id: &str) -> StoreResult<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let released = tx
            .execute("DELETE FROM quarantine WHERE doc = $1", &[&id])
            .await?
            == 1;
        if released
            && let Some(r) = tx
                .query_opt("SELECT bytes FROM docs WHERE id = $1", &[&id])
                .await?
        {
            let bytes: Vec<u8> = r.try_get(0)?;
            project_stored(&tx, id, &bytes).await?;
        }
        tx.commit().await?;
        Ok(released)
    }

    async fn quarantined(&self) -> StoreResult<Vec<Quarantined>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT doc, grid, reason, since_ms FROM quarantine ORDER BY doc",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Quarantined {
                    id: r.try_get(0)?,
                    grid: r.try_get(1)?,
                    reason: r.try_get(2)?,
                    since_ms: r.try_get(3)?,
                })
            })
            .collect()
    }

    async fn select(&self, table: Table, sel: &Select) -> StoreResult<Projection> {
        let (sql, vals) = sel.sql(table, D);
        let c = self.client().await?;
        let stmt = c.prepare_cached(&sql).await?;
        let p = pg_vals(&vals);
        let mut out = Projection::default();
        for r in c.query(&stmt, &pg_refs(&p)).await? {
            out.push(projected::decode(table, &r)?);
        }
        Ok(out)
    }

    fn dialect(&self) -> Dialect {
        D
    }

    async fn query(&self, q: &projected::Query) -> StoreResult<Vec<Vec<projected::Val>>> {
        let c = self.client().await?;
        let stmt = c.prepare_cached(&q.sql).await?;
        let p = pg_vals(&q.vals);
        c.query(&stmt, &pg_refs(&p))
            .await?
            .iter()
            .map(|r| projected::read_values(r, &q.types))
            .collect()
    }

    async fn rebuild_projection(&self) -> StoreResult<u64> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let n = rebuild_rows(&tx).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn set_tier(
        &self,
        task: &str,
        from: Tier,
        to: Tier,
        unit: Option<&str>,
    ) -> StoreResult<bool> {
        let c = self.client().await?;
        let n = c
            .execute(
                "UPDATE docs SET tier = $3, unit = COALESCE($4, unit)
                 WHERE id = $1 AND kind = 'task' AND tier = $2",
                &[&task, &from.as_str(), &to.as_str(), &unit],
            )
            .await?;
        Ok(n == 1)
    }

    async fn set_password(&self, user: &str, password_hash: &str, now_ms: i64) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        require(&*tx, "users", user, "user").await?;
        tx.execute(
            "INSERT INTO console_passwords (user_id, hash, set_ms) VALUES ($1, $2, $3)
             ON CONFLICT (user_id) DO UPDATE SET hash = excluded.hash, set_ms = excluded.set_ms",
            &[&user, &password_hash, &now_ms],
        )
        .await?;
        tx.execute("DELETE FROM console_sessions WHERE user_id = $1", &[&user])
            .await?;
        tx.execute(
            "DELETE FROM console_login_failures WHERE user_id = $1",
            &[&user],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn console_account(&self, user: &str) -> StoreResult<Option<ConsoleAccount>> {
        let c = self.client().await?;
        c.query_opt(
            "SELECT u.id, u.name, p.hash, u.revoked_ms IS NOT NULL
             FROM users u LEFT JOIN console_passwords p ON p.user_id = u.id WHERE u.id = $1",
            &[&user],
        )
        .await?
        .map(|r| {
            Ok(ConsoleAccount {
                user: r.try_get(0)?,
                name: r.try_get(1)?,
                password_hash: r.try_get(2)?,
                revoked: r.try_get(3)?,
            })
        })
        .transpose()
    }

    async fn login_failures(&self, user: &str) -> StoreResult<Option<LoginFailures>> {
        let c = self.client().await?;
        pg_failures(&**c, user).await
    }

    async fn record_login_failure(
        &self,
        user: &str,
        now_ms: i64,
        audit: &AuditEntry,
    ) -> StoreResult<LoginFailures> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // The user's row is the lock: concurrent failures of one account count one by one.
        if tx
            .query_opt("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", &[&user])
            .await?
            .is_none()
        {
            return Err(StoreError::NotFound(format!("no user with id {user:?}")));
        }
        let prev = pg_failures(&*tx, user).await?;
        let next = crate::console::rules::after_failure(prev.as_ref(), now_ms);
        let count = i32::try_from(next.count).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO console_login_failures (user_id, count, last_ms, locked_until_ms)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id) DO UPDATE SET count = excluded.count,
                last_ms = excluded.last_ms, locked_until_ms = excluded.locked_until_ms",
            &[&user, &count, &next.last_ms, &next.locked_until_ms],
        )
        .await?;
        pg_audit(&*tx, audit).await?;
        tx.commit().await?;
        Ok(next)
    }

    async fn begin_session(&self, session: &ConsoleSession, audit: &AuditEntry) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        require(&*tx, "users", &session.user, "user").await?;
        tx.execute(
            "DELETE FROM console_login_failures WHERE user_id = $1",
            &[&session.user],
        )
        .await?;
        tx.execute(
            "INSERT INTO console_sessions (hash, user_id, created_ms, last_seen_ms, ip)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &session.hash,
                &session.user,
                &session.created_ms,
                &session.last_seen_ms,
                &session.ip,
            ],
        )
        .await?;
        pg_audit(&*tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn touch_session(
        &self,
        hash: &str,
        now_ms: i64,
        policy: &crate::console::rules::SessionPolicy,
    ) -> StoreResult<Option<ConsoleSession>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let found = tx
            .query_opt(
                "SELECT s.hash, s.user_id, s.created_ms, s.last_seen_ms, s.ip
                 FROM console_sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.hash = $1 AND u.revoked_ms IS NULL FOR UPDATE OF s",
                &[&hash],
            )
            .await?
            .map(|r| -> StoreResult<ConsoleSession> {
                Ok(ConsoleSession {
                    hash: r.try_get(0)?,
                    user: r.try_get(1)?,
                    created_ms: r.try_get(2)?,
                    last_seen_ms: r.try_get(3)?,
                    ip: r.try_get(4)?,
                })
            })
            .transpose()?;
        let out = match found {
            Some(mut s) if crate::console::rules::session_live(&s, now_ms, policy) => {
                tx.execute(
                    "UPDATE console_sessions SET last_seen_ms = $2 WHERE hash = $1",
                    &[&hash, &now_ms],
                )
                .await?;
                s.last_seen_ms = now_ms;
                Some(s)
            }
            _ => {
                tx.execute("DELETE FROM console_sessions WHERE hash = $1", &[&hash])
                    .await?;
                None
            }
        };
        tx.commit().await?;
        Ok(out)
    }

    async fn end_session(&self, hash: &str) -> StoreResult<bool> {
        let c = self.client().await?;
        Ok(
            c.execute("DELETE FROM console_sessions WHERE hash = $1", &[&hash])
                .await?
                == 1,
        )
    }

    async fn audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        let c = self.client().await?;
        pg_audit(&**c, entry).await
    }

    async fn audit_log(&self, before: Option<i64>, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        let c = self.client().await?;
        c.query(
            "SELECT id, at_ms, user_id, ip, action, detail, ok FROM console_audit
             WHERE $1::bigint IS NULL OR id < $1 ORDER BY id DESC LIMIT $2",
            &[&before, &i64::from(limit)],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(AuditEntry {
                id: r.try_get(0)?,
                at_ms: r.try_get(1)?,
                user: r.try_get(2)?,
                ip: r.try_get(3)?,
                action: r.try_get(4)?,
                detail: r.try_get(5)?,
                ok: r.try_get(6)?,
            })
        })
        .collect()
    }
}

async fn pg_failures(
    c: &impl tokio_postgres::GenericClient,
    user: &str,
) -> StoreResult<Option<LoginFailures>> {
    c.query_opt(
        "SELECT count, last_ms, locked_until_ms FROM console_login_failures WHERE user_id = $1",
        &[&user],
    )
    .await?
    .map(|r| {
        let count: i32 = r.try_get(0)?;
        Ok(LoginFailures {
            count: u32::try_from(count).unwrap_or(0),
            last_ms: r.try_get(1)?,
            locked_until_ms: r.try_get(2)?,
        })
    })
    .transpose()
}

async fn pg_audit(c: &impl tokio_postgres::GenericClient, e: &AuditEntry) -> StoreResult<()> {
    c.execute(
        "INSERT INTO console_audit (at_ms, user_id, ip, action, detail, ok)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[&e.at_ms, &e.user, &e.ip, &e.action, &e.detail, &e.ok],
    )
    .await?;
    Ok(())
}
