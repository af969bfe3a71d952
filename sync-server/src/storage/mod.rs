//! Storage behind one async trait, so that a PostgreSQL backend shared by several server
//! processes can follow the embedded SQLite one.
//!
//! **Contract for every backend** (what the protocol relies on):
//! - [`Storage::push`] is one transaction: all of a push or nothing of it.
//! - Per-grid sequence numbers are assigned under a per-grid lock held until commit
//!   (SQLite: the IMMEDIATE transaction; PostgreSQL: `SELECT … FROM grid_seqs … FOR UPDATE`, which
//!   row-locks the grid), so seqs of a grid become visible in order and a pull never skips
//!   a change committed later with a smaller seq.
//! - [`Storage::pull`] and [`Storage::bootstrap`] read their rows and the grid's current seq
//!   in one snapshot.
//! - Change hashes are unique across the whole store.
//! - Nothing assumes one writer process: in-process wake-ups of long polls are an
//!   optimisation ([`crate::http`]); a backend shared by several processes also publishes
//!   "grid g is now at seq n" through [`Storage::subscribe`] (PostgreSQL: LISTEN/NOTIFY).
//!
//! Backends: [`sqlite::SqliteStorage`] (default, embedded) and [`postgres::PgStorage`]
//! (chosen by a `postgres://` database URL). Both pass the same conformance suite
//! (`sync-server/tests/storage_conformance.rs`).

pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;
use xiuhua_core::doc::DocKind;
use xiuhua_core::model::{Role, Tier};

use crate::access::{Caller, GrantRow, Scope};
use crate::credentials::CredentialRefusal;
use crate::error::StoreError;
use crate::ingest::Parsed;

/// Result of storage calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// A device as the admin lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub id: String,
    pub user: String,
    pub name: String,
    pub created_ms: i64,
    pub last_seen_ms: Option<i64>,
    pub revoked: bool,
}

/// A user as the admin lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub id: String,
    pub name: String,
    pub revoked: bool,
}

/// A grid of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridInfo {
    pub id: String,
    pub name: String,
    pub community: String,
    pub district: String,
    pub buildings: Vec<String>,
    pub seq: u64,
}

/// What an enrollment created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    pub user: String,
    pub user_name: String,
    pub grants: Vec<GrantRow>,
}

/// The outcome of presenting a refresh token (the rule: [`crate::credentials::decide_refresh`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// Rotated: the old token is spent (or was, and this is a retry after a lost reply),
    /// the new one stored as its child.
    Rotated { device: String, user: String },
    /// Unknown, expired, or reused (then every token of the device is revoked now).
    Refused(CredentialRefusal),
    /// The device or its user is revoked: it must delete these grids.
    Revoked { held_grids: Vec<String> },
}

/// A device's standing at a request (the rule: [`crate::credentials::decide_standing`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceStanding {
    Unknown,
    /// Its tokens were revoked after a refresh-token reuse: it must enroll again (and
    /// keeps its data).
    Reset,
    /// Revoked (the device or its user): it must delete these grids.
    Revoked {
        held_grids: Vec<String>,
    },
    Active(Caller),
}

/// The result of a stored push.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PushOutcome {
    pub stored: u64,
    pub duplicates: u64,
    /// Where each touched grid's feed stands (grids the caller may read).
    pub grid_seqs: Vec<(String, u64)>,
}

/// One page of a grid's feed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PullPage {
    /// (seq, doc, change bytes).
    pub changes: Vec<(u64, String, Vec<u8>)>,
    pub next: u64,
    pub more: bool,
}

/// One document of a bootstrap bundle, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleRow {
    pub id: String,
    pub kind: String,
    pub heads: Vec<u8>,
    pub bytes: Vec<u8>,
    /// MessagePack of `Rows`.
    pub rows: Vec<u8>,
}

/// One page of a grid's snapshot: documents ordered by id and the grid's seq read in the
/// same transaction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub cursor: u64,
    pub docs: Vec<BundleRow>,
    /// More documents follow the last one of `docs`.
    pub more: bool,
}

/// The page size a bootstrap request gets: `limit`, or the default when 0, capped at
/// [`xiuhua_core::sync::proto::BOOTSTRAP_MAX_PAGE`].
pub fn bootstrap_page_limit(limit: u32) -> u32 {
    use xiuhua_core::sync::proto::BOOTSTRAP_MAX_PAGE;
    if limit == 0 {
        BOOTSTRAP_MAX_PAGE
    } else {
        limit.min(BOOTSTRAP_MAX_PAGE)
    }
}

/// A registered document's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocMeta {
    pub id: String,
    pub grid: String,
    pub kind: DocKind,
    pub building: Option<String>,
    pub tier: Tier,
    pub unit: Option<String>,
}

/// "Grid `grid` is now at `seq`": a push stored changes there, in any process sharing the
/// database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridAt {
    pub grid: String,
    pub seq: u64,
}

/// The server's storage.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Checks that the database answers.
    async fn health(&self) -> StoreResult<()>;

    /// Pushes stored by *other* processes sharing the database (and possibly this one), so
    /// that long polls here wake up. `None` when the backend has no such feed (SQLite: one
    /// process, whose in-process notifier suffices).
    fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<GridAt>> {
        None
    }

    // ----- directory and users (admin) -----
    async fn add_district(&self, id: &str, name: &str) -> StoreResult<()>;
    async fn add_community(&self, id: &str, name: &str, district: &str) -> StoreResult<()>;
    async fn add_grid(&self, id: &str, name: &str, community: &str) -> StoreResult<()>;
    async fn add_building(&self, grid: &str, name: &str) -> StoreResult<()>;
    async fn add_user(&self, id: &str, name: &str) -> StoreResult<()>;
    /// The grids of a community.
    async fn community_grids(&self, community: &str) -> StoreResult<Vec<String>>;
    /// Grants `role` on each grid (replacing an earlier grant there), in one transaction.
    async fn grant(
        &self,
        user: &str,
        grids: &[String],
        role: Role,
        buildings: &[String],
    ) -> StoreResult<()>;
    async fn revoke_grant(&self, user: &str, grid: &str) -> StoreResult<()>;
    async fn list_users(&self) -> StoreResult<Vec<UserInfo>>;
    async fn list_grids(&self) -> StoreResult<Vec<GridInfo>>;
    async fn list_grants(&self) -> StoreResult<Vec<GrantRow>>;
    async fn list_devices(&self, user: Option<&str>) -> StoreResult<Vec<DeviceInfo>>;
    /// Revokes a device and its refresh tokens.
    async fn revoke_device(&self, device: &str, now_ms: i64) -> StoreResult<()>;
    /// Revokes a user, their devices and refresh tokens.
    async fn revoke_user(&self, user: &str, now_ms: i64) -> StoreResult<()>;
    /// Stores a one-time enrollment code (hashed) for a user.
    async fn add_enroll_code(
        &self,
        user: &str,
        code_hash: &str,
        expires_ms: i64,
        now_ms: i64,
    ) -> StoreResult<()>;

    // ----- credentials -----
    /// Spends an enrollment code and registers the device with its first refresh token, in
    /// one transaction. `None` when the code is unknown, spent or expired.
    async fn enroll(
        &self,
        code_hash: &str,
        device: &str,
        device_name: &str,
        refresh_hash: &str,
        refresh_expires_ms: i64,
        now_ms: i64,
    ) -> StoreResult<Option<Enrolled>>;
    /// Rotates a refresh token, per [`crate::credentials::decide_refresh`], in one
    /// transaction that locks the presented token's row.
    async fn refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
        new_expires_ms: i64,
        now_ms: i64,
    ) -> StoreResult<RefreshOutcome>;
    /// The standing of a device for an authenticated request.
    async fn device_standing(
        &self,
        device: &str,
        user: &str,
        now_ms: i64,
    ) -> StoreResult<DeviceStanding>;

    // ----- sync -----
    /// Checks and stores a push in one transaction (see [`crate::ingest`]).
    async fn push(&self, caller: &Caller, parsed: Parsed) -> StoreResult<PushOutcome>;
    /// Records that a device holds a grid (for purge).
    async fn mark_held(&self, device: &str, grid: &str) -> StoreResult<()>;
    /// A page of a grid's feed after `since`, filtered by `scope`.
    async fn pull(
        &self,
        grid: &str,
        since: u64,
        limit: u32,
        scope: &Scope,
    ) -> StoreResult<PullPage>;
    /// A page of a grid's snapshot, filtered by `scope`: the documents with an id after
    /// `after` (all when none), ordered by id, at most [`bootstrap_page_limit`]`(limit)`.
    async fn bootstrap(
        &self,
        grid: &str,
        scope: &Scope,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Snapshot>;
    /// A registered document's metadata and `save_nocompress()` bytes.
    async fn doc(&self, id: &str) -> StoreResult<Option<(DocMeta, Vec<u8>)>>;
    /// Moves a task from tier `from` to `to` if it still is at `from`; false otherwise.
    async fn set_tier(
        &self,
        task: &str,
        from: Tier,
        to: Tier,
        unit: Option<&str>,
    ) -> StoreResult<bool>;
}
