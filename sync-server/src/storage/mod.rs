//! Storage behind one async trait, so that a PostgreSQL backend shared by several server
//! processes can follow the embedded SQLite one.
//!
//! **Contract for every backend** (what the protocol relies on):
//! - [`Storage::push_within`] is one transaction: all of a push or nothing of it. The
//!   Automerge work of a push ([`crate::ingest::apply`]) runs outside the writer lock (SQLite)
//!   and outside row locks and pooled connections (PostgreSQL): the touched documents are
//!   read first, applied with no lock held, and the writing transaction commits only if every
//!   touched document is still as read ([`DocVersion`]); otherwise the push is redone
//!   (bounded; the last attempt holds the lock while applying, so a push always ends).
//! - A device's pushes are counted per UTC day ([`Quota`]); over the quota a push is
//!   refused ([`crate::error::RefusalKind::QuotaExceeded`]) and stores nothing.
//! - Pull and bootstrap pages are bounded by count and by bytes ([`page_cut`]), always at
//!   least one item, so a reply stays under what the client accepts.
//! - A quarantined document ([`Storage::quarantine`], found by `xiuhua-server check`) is left
//!   out of bootstrap pages; pushes to it and [`Storage::doc`] are refused
//!   ([`crate::error::RefusalKind::Quarantined`]), so it never stops other documents syncing.
//! - Per-grid sequence numbers are assigned under a per-grid lock held until commit
//!   (SQLite: the IMMEDIATE transaction; PostgreSQL: `SELECT … FROM grid_seqs … FOR UPDATE`, which
//!   row-locks the grid), so seqs of a grid become visible in order and a pull never skips
//!   a change committed later with a smaller seq.
//! - [`Storage::pull`] and [`Storage::bootstrap`] read their rows and the grid's current seq
//!   in one snapshot.
//! - Change hashes are unique across the whole store.
//! - A push that changes a document's building records the move ([`push_moves`]: the
//!   document at the seq of its last change, and for a household the records and tasks that
//!   follow it, whose building is updated in the same transaction); a pull of a building
//!   scope returns the moves of its window that touch the scope ([`PullPage::moves`]), read
//!   in the same snapshot, so a phone learns what left or entered its buildings
//!   ([`scope_moves`]).
//! - Nothing assumes one writer process: in-process wake-ups of long polls are an
//!   optimisation ([`crate::http`]); a backend shared by several processes also publishes
//!   "grid g is now at seq n" through [`Storage::subscribe`] (PostgreSQL: LISTEN/NOTIFY).
//!
//! Backends: [`sqlite::SqliteStorage`] (default, embedded) and [`postgres::PgStorage`]
//! (chosen by a `postgres://` database URL). Both pass the same conformance suite
//! (`sync-server/tests/storage_conformance.rs`).

pub mod console;
pub mod postgres;
pub mod projected;
pub mod sqlite;

pub use console::{
    Board, BoardColumn, BoardQuery, BoardTask, GridMonthStats, HouseholdDetail, HouseholdHit,
    LedgerFilter, Month, RecordLedgerRow, RecordTotals, StatsInput, TaskDetail, TaskFilter,
    TaskLedgerRow, TaskSort, TaskTotals,
};
pub use projected::{Projection, Select, Table, TimeRange};

use async_trait::async_trait;
use xiuhua_core::doc::DocKind;
use xiuhua_core::model::{Role, Tier};

pub use xiuhua_core::numbers::{Issued, OwnBlock};

use crate::access::{Caller, GrantRow, Scope};
use crate::credentials::CredentialRefusal;
use crate::error::{Refusal, RefusalKind, StoreError};
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
    /// Its tokens were revoked (a reused refresh token, or a successor enrolled).
    pub reset: bool,
    /// The earlier device this one succeeds (enrolled on the same phone).
    pub succeeds: Option<String>,
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
    /// The community's name (金湖社区), whose short form begins its numbers.
    pub community_name: String,
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
    /// The earlier device this one succeeds.
    pub succeeds: Option<String>,
}

/// A device being enrolled.
#[derive(Debug, Clone, Copy)]
pub struct NewDevice<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub refresh_hash: &'a str,
    pub refresh_expires_ms: i64,
}

/// The outcome of an enrollment (the rule: [`crate::credentials::decide_enroll`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollOutcome {
    /// Enrolled; `succeeds` names the earlier device it took over.
    Enrolled(Enrolled),
    /// Unknown, spent or expired code, or a revoked user.
    Refused,
    /// The code is for another user than the previous device's (not spent).
    OtherUser,
    /// The previous device is unknown here (the code is not spent).
    UnknownPrevious,
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
    /// For a building scope: the moves of the page's window (`since`, `next`] that leave
    /// or enter one of its buildings, in seq order ([`scope_moves`] reads them). Empty for
    /// a whole-grid scope.
    pub moves: Vec<MoveRow>,
}

/// A document whose building changed: at `seq` of its grid's feed it went from `from` to
/// `to`. A household moves when its address does; the records (without a building of
/// their own) and tasks that name it move with it, at the same seq ([`push_moves`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveRow {
    pub seq: u64,
    pub doc: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// Whether a stored document (its kind and MessagePack rows) takes its building from
/// household `household`: a task naming it, or a record naming it without a building of
/// its own (the rule [`crate::ingest::authorize`] resolves buildings by). Rows that do not
/// decode follow nothing.
pub fn follows_household(kind: &str, rows: &[u8], household: &str) -> bool {
    let Ok(rows) = rmp_serde::from_slice::<xiuhua_core::store::Rows>(rows) else {
        return false;
    };
    match (kind, rows) {
        ("record", xiuhua_core::store::Rows::Record(r)) => {
            r.building.is_none() && r.household.as_deref() == Some(household)
        }
        ("task", xiuhua_core::store::Rows::Task(t)) => t.household.as_deref() == Some(household),
        _ => false,
    }
}

/// The moves a push records, once its changes have seqs: every document of `plan` whose
/// building changed, at the seq of its last new change (`last_seq`, by document id), and
/// with each moved household the documents that follow it (`followers`: household id →
/// documents, read with [`follows_household`]) and are not in the push themselves (those
/// moved on their own, by the first rule). Returns (grid, move) pairs.
pub fn push_moves(
    plan: &crate::ingest::Plan,
    last_seq: &std::collections::HashMap<String, u64>,
    followers: &std::collections::HashMap<String, Vec<String>>,
) -> Vec<(String, MoveRow)> {
    let in_push: std::collections::HashSet<&str> =
        plan.docs.iter().map(|d| d.id.as_str()).collect();
    let mut out = Vec::new();
    for d in &plan.docs {
        let (Some(from), Some(&seq)) = (&d.moved_from, last_seq.get(&d.id)) else {
            continue;
        };
        let row = |doc: &str| MoveRow {
            seq,
            doc: doc.to_string(),
            from: from.clone(),
            to: d.building.clone(),
        };
        out.push((d.grid.clone(), row(&d.id)));
        if d.kind == DocKind::Household {
            for f in followers.get(&d.id).into_iter().flatten() {
                if !in_push.contains(f.as_str()) {
                    out.push((d.grid.clone(), row(f)));
                }
            }
        }
    }
    out
}

/// What the moves of a pull window mean for a device reading `scope`: the documents that
/// left it (in scope before their first move of the window, out after their last) and
/// those that entered it (the other way round), each sorted by id. A document that left
/// and came back, or never touched the scope, is in neither. A whole-grid scope has no
/// moves to follow. `moves` may hold only the rows whose `from` or `to` is in scope: the
/// net effect is the same.
pub fn scope_moves(scope: &Scope, moves: &[MoveRow]) -> (Vec<String>, Vec<String>) {
    if matches!(scope, Scope::Grid) {
        return (Vec::new(), Vec::new());
    }
    let mut by_doc: std::collections::BTreeMap<&str, (&MoveRow, &MoveRow)> =
        std::collections::BTreeMap::new();
    for m in moves {
        by_doc
            .entry(m.doc.as_str())
            .and_modify(|(first, last)| {
                if m.seq < first.seq {
                    *first = m;
                }
                if m.seq >= last.seq {
                    *last = m;
                }
            })
            .or_insert((m, m));
    }
    let (mut left, mut entered) = (Vec::new(), Vec::new());
    for (doc, (first, last)) in by_doc {
        let was = scope.covers(first.from.as_deref());
        let is = scope.covers(last.to.as_deref());
        if was && !is {
            left.push(doc.to_string());
        } else if is && !was {
            entered.push(doc.to_string());
        }
    }
    (left, entered)
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

/// Bytes of document (or change) data a pull or bootstrap page holds at most, besides its
/// first item: half of what the client accepts ([`xiuhua_core::sync::proto::MAX_BODY_BYTES`],
/// decompressed), leaving room for ids, projection rows' framing and the rest of the reply.
pub const PAGE_MAX_BYTES: u64 = (xiuhua_core::sync::proto::MAX_BODY_BYTES / 2) as u64;

/// How many of a page's candidate items to send, given each one's size in bytes (in page
/// order; at most `limit + 1` of them): at most `limit` items whose sizes add up to at most
/// `max_bytes`, and always the first one. Returns the count and whether items follow it.
pub fn page_cut(sizes: &[u64], limit: usize, max_bytes: u64) -> (usize, bool) {
    let mut total: u64 = 0;
    let mut n = 0;
    for &size in sizes.iter().take(limit.max(1)) {
        let next = total.saturating_add(size);
        if n > 0 && next > max_bytes {
            break;
        }
        total = next;
        n += 1;
    }
    (n, n < sizes.len())
}

/// Where a pull page ends: `fetched` changes were read (at most `limit`, the last one at
/// seq `last_fetched`), `taken` of them are sent (the last one at seq `last_taken`), the
/// grid is at `max`. Returns (`next`, `more`).
pub fn pull_page_end(
    since: u64,
    limit: u32,
    fetched: usize,
    taken: usize,
    last_taken: Option<u64>,
    max: u64,
) -> (u64, bool) {
    match last_taken {
        // Cut short by bytes: more follow the last change sent.
        Some(last) if taken < fetched => (last, true),
        Some(last) if fetched >= limit as usize => (last, last < max),
        _ => (since.max(max), false),
    }
}

/// A device's daily allowance of pushed data (0: no limit). Days are UTC days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quota {
    /// Bytes of new changes a device may store per day.
    pub daily_bytes: u64,
    /// New changes a device may store per day.
    pub daily_changes: u64,
}

/// Milliseconds in a quota day.
pub const DAY_MS: i64 = 86_400_000;

impl Quota {
    /// No limit.
    pub const UNLIMITED: Quota = Quota {
        daily_bytes: 0,
        daily_changes: 0,
    };

    /// The quota day of a time.
    pub fn day_of(now_ms: i64) -> i64 {
        now_ms.div_euclid(DAY_MS)
    }

    /// Checks a device's use of the day, this push included.
    pub fn check(&self, used_bytes: u64, used_changes: u64, now_ms: i64) -> Result<(), Refusal> {
        let over_bytes = self.daily_bytes > 0 && used_bytes > self.daily_bytes;
        let over_changes = self.daily_changes > 0 && used_changes > self.daily_changes;
        if !(over_bytes || over_changes) {
            return Ok(());
        }
        let left_s = (DAY_MS - now_ms.rem_euclid(DAY_MS)) / 1000;
        let what = if over_bytes {
            format!("{} bytes of changes", self.daily_bytes)
        } else {
            format!("{} changes", self.daily_changes)
        };
        Err(Refusal::new(
            RefusalKind::QuotaExceeded,
            format!(
                "this device's daily quota ({what}) is used up; nothing was stored; it renews in {left_s} s (at 00:00 UTC), or ask the station to raise it"
            ),
        ))
    }
}

/// What a push's commit compares with what its Automerge work read: the document's heads
/// (32 bytes each, concatenated, as stored), its recorded tier and its building.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocVersion {
    pub heads: Vec<u8>,
    pub tier: String,
    /// The building it is filed under: a household's move changes it for the documents
    /// that follow the household, without a change of theirs.
    pub building: Option<String>,
}

/// Whether every document a push read is still as it was (and none appeared): the
/// condition of committing a push whose Automerge work ran with no lock held.
pub fn unchanged(
    read: &std::collections::HashMap<String, DocVersion>,
    now: &std::collections::HashMap<String, DocVersion>,
) -> bool {
    read == now
}

/// The refusal of a push to, or a read of, a quarantined document.
pub fn quarantined_refusal(id: &str) -> Refusal {
    Refusal::new(
        RefusalKind::Quarantined,
        format!(
            "document {id} is quarantined on the server (its stored state does not load; see `xiuhua-server check`): it is not synced until the station repairs it; other documents sync normally"
        ),
    )
}

/// A quarantined document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    pub id: String,
    pub grid: String,
    /// Why, for the station's staff (no document content).
    pub reason: String,
    pub since_ms: i64,
}

/// A stored document as `xiuhua-server check` verifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredForCheck {
    pub id: String,
    pub grid: String,
    pub kind: String,
    /// As stored: 32 bytes per head, concatenated.
    pub heads: Vec<u8>,
    pub bytes: Vec<u8>,
    pub quarantined: bool,
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

/// A directory user as the console's login sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleAccount {
    pub user: String,
    pub name: String,
    /// The argon2id PHC string; `None` until `xiuhua-server set-password` ran.
    pub password_hash: Option<String>,
    pub revoked: bool,
}

/// Failed console logins of an account (the rule: [`crate::console::rules::after_failure`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginFailures {
    pub count: u32,
    pub last_ms: i64,
    /// The account refuses logins until then (0: not locked).
    pub locked_until_ms: i64,
}

/// A console session; the cookie holds the token, the database its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// SHA-256 of the token, hex.
    pub hash: String,
    pub user: String,
    pub created_ms: i64,
    pub last_seen_ms: i64,
    /// The address it was opened from.
    pub ip: String,
}

/// One row of the console's audit log: who, when, what, from which address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Assigned by the storage (increasing); ignored when appending.
    pub id: i64,
    pub at_ms: i64,
    /// The user acting, or the user id a failed login named.
    pub user: String,
    pub ip: String,
    /// What was done (`login`, `logout`, `grant`, …).
    pub action: String,
    /// Its arguments, for people (never a password, ID or phone number).
    pub detail: String,
    /// Whether it succeeded.
    pub ok: bool,
}

/// "Grid `grid` is now at `seq`": a push stored changes there, in any process sharing the
/// database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridAt {
    pub grid: String,
    pub seq: u64,
}

/// The 民情台账 rows of `records`, each with the tasks of `grids` made from it (read through
/// the `source_record` index, only for these records).
async fn ledger_rows<S: Storage + ?Sized>(
    s: &S,
    grids: &[String],
    records: Vec<crate::projection::RecordP>,
) -> StoreResult<Vec<RecordLedgerRow>> {
    let tasks = if records.is_empty() {
        Vec::new()
    } else {
        let made_from = Select {
            grids: Some(grids.to_vec()),
            source_records: Some(records.iter().map(|r| r.id.clone()).collect()),
            ..Select::default()
        };
        s.select(Table::Tasks, &made_from).await?.tasks
    };
    Ok(console::record_ledger(records, &tasks))
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

    // ----- numbers for people (core::numbers) -----
    /// Every block of numbers reserved for these devices, with its community's prefix: what
    /// a push of theirs may number documents with.
    async fn device_number_blocks(&self, devices: &[String]) -> StoreResult<Vec<OwnBlock>>;
    /// The blocks of numbers given to `device` for a community and year, by start.
    async fn number_blocks(
        &self,
        device: &str,
        community: &str,
        year: i32,
    ) -> StoreResult<Vec<Issued>>;
    /// Reserves the community's next `size` sequences of `year` for `device`, in one
    /// transaction: the counter moves past them and the block is recorded. Concurrent
    /// reservations never overlap.
    async fn reserve_number_block(
        &self,
        device: &str,
        community: &str,
        year: i32,
        size: u64,
        now_ms: i64,
    ) -> StoreResult<Issued>;
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
    ) -> StoreResult<Option<Enrolled>> {
        let new = NewDevice {
            id: device,
            name: device_name,
            refresh_hash,
            refresh_expires_ms,
        };
        Ok(
            match self.enroll_device(code_hash, &new, None, now_ms).await? {
                EnrollOutcome::Enrolled(e) => Some(e),
                _ => None,
            },
        )
    }
    /// [`Storage::enroll`] for a phone that holds data written as `previous` (an earlier
    /// device): decided by [`crate::credentials::decide_enroll`], in one transaction. On
    /// success the new device succeeds `previous` (it may push that device's changes, and
    /// takes over the grids it held); `previous` is retired (its refresh tokens revoked,
    /// the device reset). A refusal leaves the code unspent unless it was spent already.
    async fn enroll_device(
        &self,
        code_hash: &str,
        device: &NewDevice<'_>,
        previous: Option<&str>,
        now_ms: i64,
    ) -> StoreResult<EnrollOutcome>;
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
    /// Checks and stores a push in one transaction (see [`crate::ingest`]), counting it
    /// against the device's daily `quota`.
    async fn push_within(
        &self,
        caller: &Caller,
        parsed: Parsed,
        quota: &Quota,
    ) -> StoreResult<PushOutcome>;
    /// [`Storage::push_within`] with no quota (tests, the demo, tools).
    async fn push(&self, caller: &Caller, parsed: Parsed) -> StoreResult<PushOutcome> {
        self.push_within(caller, parsed, &Quota::UNLIMITED).await
    }
    /// Records that a device holds a grid (for purge).
    async fn mark_held(&self, device: &str, grid: &str) -> StoreResult<()>;
    /// A page of a grid's feed after `since`, filtered by `scope`: at most `limit` changes
    /// whose bytes add up to at most `max_bytes` (always at least one; [`page_cut`]).
    async fn pull_within(
        &self,
        grid: &str,
        since: u64,
        limit: u32,
        max_bytes: u64,
        scope: &Scope,
    ) -> StoreResult<PullPage>;
    /// [`Storage::pull_within`] bounded by [`PAGE_MAX_BYTES`].
    async fn pull(
        &self,
        grid: &str,
        since: u64,
        limit: u32,
        scope: &Scope,
    ) -> StoreResult<PullPage> {
        self.pull_within(grid, since, limit, PAGE_MAX_BYTES, scope)
            .await
    }
    /// A page of a grid's snapshot, filtered by `scope`: the documents with an id after
    /// `after` (all when none), ordered by id, at most [`bootstrap_page_limit`]`(limit)` of
    /// them whose bytes and rows add up to at most `max_bytes` (always at least one).
    /// Quarantined documents are left out.
    async fn bootstrap_within(
        &self,
        grid: &str,
        scope: &Scope,
        after: Option<&str>,
        limit: u32,
        max_bytes: u64,
    ) -> StoreResult<Snapshot>;
    /// [`Storage::bootstrap_within`] bounded by [`PAGE_MAX_BYTES`].
    async fn bootstrap(
        &self,
        grid: &str,
        scope: &Scope,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Snapshot> {
        self.bootstrap_within(grid, scope, after, limit, PAGE_MAX_BYTES)
            .await
    }
    /// How many documents a bootstrap of `grid` in `scope` would send, and their stored
    /// bytes (documents and rows); quarantined documents are left out, as in a bootstrap.
    async fn grid_size(&self, grid: &str, scope: &Scope) -> StoreResult<(u64, u64)>;
    /// A registered document's metadata and `save_nocompress()` bytes; refused
    /// ([`quarantined_refusal`]) for a quarantined document.
    async fn doc(&self, id: &str) -> StoreResult<Option<(DocMeta, Vec<u8>)>>;

    // ----- check and quarantine -----
    /// Stored documents in id order after `after` (all when none), at most `limit`, for
    /// `xiuhua-server check`.
    async fn scan_docs(&self, after: Option<&str>, limit: u32) -> StoreResult<Vec<StoredForCheck>>;
    /// Quarantines a registered document (or updates its reason); false if unknown.
    async fn quarantine(&self, id: &str, reason: &str, now_ms: i64) -> StoreResult<bool>;
    /// Lifts a document's quarantine; false if it was not quarantined.
    async fn release(&self, id: &str) -> StoreResult<bool>;
    /// The quarantined documents, by id.
    async fn quarantined(&self) -> StoreResult<Vec<Quarantined>>;
    /// Moves a task from tier `from` to `to` if it still is at `from`; false otherwise.
    async fn set_tier(
        &self,
        task: &str,
        from: Tier,
        to: Tier,
        unit: Option<&str>,
    ) -> StoreResult<bool>;

    // ----- the projection (the station's console) -----
    /// Rows of one projection table ([`projected::Select`]), in its key's order.
    async fn select(&self, table: Table, sel: &Select) -> StoreResult<Projection>;
    /// The rows of a statement of the shared SQL over the projection (counts, groups).
    async fn query(&self, q: &projected::Query) -> StoreResult<Vec<Vec<projected::Val>>>;
    /// The SQL dialect of [`Storage::query`].
    fn dialect(&self) -> projected::Dialect;
    /// Recomputes every projection row from the stored documents, in one transaction
    /// (`xiuhua-server rebuild-projection`); quarantined documents get none. Returns the
    /// number of documents projected.
    async fn rebuild_projection(&self) -> StoreResult<u64>;

    /// Every projection row, each table in its key's order: two stores with equal
    /// projections give equal dumps.
    async fn projection_dump(&self) -> StoreResult<Projection> {
        let mut all = Projection::default();
        for t in Table::ALL {
            let p = self.select(t, &Select::default()).await?;
            all.households.extend(p.households);
            all.residents.extend(p.residents);
            all.visits.extend(p.visits);
            all.records.extend(p.records);
            all.tasks.extend(p.tasks);
            all.events.extend(p.events);
        }
        Ok(all)
    }
    /// The 督单/问单 board: every column's count and a page of one column, counted and
    /// paged in SQL over the tasks' stored [`console::board_flags`] (the same answer as
    /// [`console::board`] over every task: the conformance suite checks it).
    async fn board(&self, q: &BoardQuery) -> StoreResult<Board> {
        let d = self.dialect();
        let f = &q.filter;
        let sel = Select {
            grids: Some(f.grids.clone()),
            range: f.created,
            level: f.level.clone(),
            category: f.category.clone(),
            assignee: f.assignee.clone(),
            ..Select::default()
        };
        let row = self
            .query(&sel.board_counts(d, q.now_ms))
            .await?
            .pop()
            .unwrap_or_default();
        let counts: Vec<(BoardColumn, usize)> = BoardColumn::ALL
            .iter()
            .zip(
                row.iter()
                    .chain(std::iter::repeat(&projected::Val::Int(None))),
            )
            .map(|(c, v)| (*c, v.as_count()))
            .collect();
        let total = counts
            .iter()
            .find(|(c, _)| *c == q.column)
            .map_or(0, |(_, n)| *n);
        let page = Select {
            column: Some((q.column, q.now_ms)),
            order: Some(projected::Order::Board(q.sort, q.now_ms)),
            page: Some(projected::Page {
                offset: q.offset,
                limit: q.limit.min(console::MAX_PAGE),
            }),
            ..sel
        };
        let tasks = self
            .select(Table::Tasks, &page)
            .await?
            .tasks
            .into_iter()
            .map(|task| console::BoardTask {
                days_overdue: console::days_overdue(&task, q.now_ms),
                task,
            })
            .collect();
        Ok(Board {
            counts,
            column: q.column,
            total,
            tasks,
        })
    }
    /// A task and its events (rejected ones with their reasons).
    async fn task_detail(&self, id: &str) -> StoreResult<Option<TaskDetail>> {
        let Some(task) = self
            .select(Table::Tasks, &Select::doc(id))
            .await?
            .tasks
            .pop()
        else {
            return Ok(None);
        };
        let events = self.select(Table::Events, &Select::doc(id)).await?.events;
        Ok(Some(TaskDetail { task, events }))
    }
    /// The 民情台账: one row per record reported in the range.
    async fn records_ledger(&self, f: &LedgerFilter) -> StoreResult<Vec<RecordLedgerRow>> {
        let sel = Select {
            grids: Some(f.grids.clone()),
            range: f.range,
            ..Select::default()
        };
        let records = self.select(Table::Records, &sel).await?.records;
        ledger_rows(self, &f.grids, records).await
    }
    /// One page of the 民情台账 (`offset`, at most `limit` rows) with the totals of the
    /// whole range, counted in SQL: the page reads its own rows only.
    async fn records_ledger_page(
        &self,
        f: &LedgerFilter,
        offset: usize,
        limit: usize,
    ) -> StoreResult<(Vec<RecordLedgerRow>, RecordTotals)> {
        let sel = Select {
            grids: Some(f.grids.clone()),
            range: f.range,
            ..Select::default()
        };
        let groups: Vec<console::RecordGroup> = self
            .query(&sel.record_groups(self.dialect()))
            .await?
            .into_iter()
            .map(|row| match row.as_slice() {
                [
                    projected::Val::Text(Some(category)),
                    projected::Val::Text(Some(shown)),
                    n,
                    with,
                ] => Ok(console::RecordGroup {
                    category: category.clone(),
                    shown: shown.clone(),
                    records: n.as_count(),
                    with_tasks: with.as_count(),
                }),
                other => Err(projected::bad_row(format!("record group {other:?}"))),
            })
            .collect::<StoreResult<_>>()?;
        let page = Select {
            order: Some(projected::Order::Reported),
            page: Some(projected::Page { offset, limit }),
            ..sel
        };
        let records = self.select(Table::Records, &page).await?.records;
        Ok((
            ledger_rows(self, &f.grids, records).await?,
            console::record_totals(&groups),
        ))
    }
    /// The 政务台账: one row per task created in the range.
    async fn tasks_ledger(&self, f: &LedgerFilter, now_ms: i64) -> StoreResult<Vec<TaskLedgerRow>> {
        let sel = Select {
            grids: Some(f.grids.clone()),
            range: f.range,
            ..Select::default()
        };
        let tasks = self.select(Table::Tasks, &sel).await?.tasks;
        Ok(console::task_ledger(tasks, now_ms))
    }
    /// Per-grid, per-month statistics of the range.
    async fn grid_stats(&self, f: &LedgerFilter) -> StoreResult<Vec<GridMonthStats>> {
        let sel = |range| Select {
            grids: Some(f.grids.clone()),
            range,
            ..Select::default()
        };
        let input = StatsInput {
            // The register at a month's end counts households registered before the range.
            households: self.select(Table::Households, &sel(None)).await?.households,
            visits: self.select(Table::Visits, &sel(f.range)).await?.visits,
            records: self.select(Table::Records, &sel(f.range)).await?.records,
            // Tasks count by creation and by closing: read them all.
            tasks: self.select(Table::Tasks, &sel(None)).await?.tasks,
        };
        Ok(console::grid_month_stats(&input, f.range))
    }
    /// Households of `grids` with a resident matching `query` (name, full pinyin or
    /// initials, as on the phone), at most `limit`.
    async fn search_households(
        &self,
        grids: &[String],
        query: &str,
        limit: usize,
    ) -> StoreResult<Vec<HouseholdHit>> {
        let Some(like) = console::search_pattern(query) else {
            return Ok(Vec::new());
        };
        let sel = Select {
            grids: Some(grids.to_vec()),
            like: Some(like),
            ..Select::default()
        };
        let residents = self.select(Table::Residents, &sel).await?.residents;
        let mut households = Vec::new();
        for id in console::ranked_household_ids(query, &residents, limit) {
            households.extend(
                self.select(Table::Households, &Select::doc(&id))
                    .await?
                    .households,
            );
        }
        Ok(console::rank_households(
            query, residents, households, limit,
        ))
    }
    /// A household with its members (masked), visits, and the records and tasks naming it.
    async fn household_detail(&self, id: &str) -> StoreResult<Option<HouseholdDetail>> {
        let Some(household) = self
            .select(Table::Households, &Select::doc(id))
            .await?
            .households
            .pop()
        else {
            return Ok(None);
        };
        let mine = Select {
            household: Some(id.to_string()),
            ..Select::default()
        };
        Ok(Some(HouseholdDetail {
            household,
            residents: self.select(Table::Residents, &mine).await?.residents,
            visits: self.select(Table::Visits, &mine).await?.visits,
            records: self.select(Table::Records, &mine).await?.records,
            tasks: self.select(Table::Tasks, &mine).await?.tasks,
        }))
    }
    // ----- the station console (accounts, sessions, audit) -----
    /// Sets a user's console password (an argon2id PHC string), ends their sessions and
    /// clears their failed logins, in one transaction. `NotFound` for an unknown user.
    async fn set_password(&self, user: &str, password_hash: &str, now_ms: i64) -> StoreResult<()>;
    /// A user's name, password hash and standing; `None` for an unknown user.
    async fn console_account(&self, user: &str) -> StoreResult<Option<ConsoleAccount>>;
    /// A user's failed logins (`None`: none remembered).
    async fn login_failures(&self, user: &str) -> StoreResult<Option<LoginFailures>>;
    /// Counts a failed login of a known user by [`crate::console::rules::after_failure`] and
    /// appends `audit`, in one transaction; returns the new count and lock.
    async fn record_login_failure(
        &self,
        user: &str,
        now_ms: i64,
        audit: &AuditEntry,
    ) -> StoreResult<LoginFailures>;
    /// A successful login: clears the user's failures, stores the session and appends
    /// `audit`, in one transaction.
    async fn begin_session(&self, session: &ConsoleSession, audit: &AuditEntry) -> StoreResult<()>;
    /// The session with this hash if [`crate::console::rules::session_live`] at `now`
    /// (its last use set to `now`); an expired one is deleted and `None` returned.
    async fn touch_session(
        &self,
        hash: &str,
        now_ms: i64,
        policy: &crate::console::rules::SessionPolicy,
    ) -> StoreResult<Option<ConsoleSession>>;
    /// Ends a session (logout); false if there was none.
    async fn end_session(&self, hash: &str) -> StoreResult<bool>;
    /// Appends a row to the audit log.
    async fn audit(&self, entry: &AuditEntry) -> StoreResult<()>;
    /// The audit log, newest first: at most `limit` rows with an id below `before` (all when
    /// none).
    async fn audit_log(&self, before: Option<i64>, limit: u32) -> StoreResult<Vec<AuditEntry>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cut_by_count_and_bytes_never_empty() {
        // By count: limit items, more when a candidate is left.
        assert_eq!(page_cut(&[1, 1, 1, 1], 3, 100), (3, true));
        assert_eq!(page_cut(&[1, 1, 1], 3, 100), (3, false));
        // By bytes: as many as fit, exactly at the bound included.
        assert_eq!(page_cut(&[4, 4, 4], 10, 8), (2, true));
        assert_eq!(page_cut(&[4, 4, 4], 10, 7), (1, true));
        // Always the first item, however large.
        assert_eq!(page_cut(&[100, 1], 10, 8), (1, true));
        assert_eq!(page_cut(&[100], 10, 8), (1, false));
        assert_eq!(page_cut(&[], 10, 8), (0, false));
        assert_eq!(page_cut(&[u64::MAX, 1], 10, u64::MAX - 1), (1, true));
        assert_eq!(page_cut(&[u64::MAX, 1], 10, u64::MAX), (2, false));
        // A limit of 0 still sends one.
        assert_eq!(page_cut(&[1, 1], 0, 8), (1, true));
    }

    #[test]
    fn pull_pages_end_where_they_were_cut() {
        // Cut by bytes: more, from the last change sent.
        assert_eq!(pull_page_end(0, 10, 10, 4, Some(7), 50), (7, true));
        assert_eq!(pull_page_end(0, 10, 5, 4, Some(7), 50), (7, true));
        // Full by count: more while below the head.
        assert_eq!(pull_page_end(0, 3, 3, 3, Some(9), 50), (9, true));
        assert_eq!(pull_page_end(0, 3, 3, 3, Some(50), 50), (50, false));
        // Short: the head.
        assert_eq!(pull_page_end(0, 10, 2, 2, Some(9), 50), (50, false));
        assert_eq!(pull_page_end(60, 10, 0, 0, None, 50), (60, false));
    }

    fn mv(seq: u64, doc: &str, from: &str, to: &str) -> MoveRow {
        MoveRow {
            seq,
            doc: doc.into(),
            from: Some(from.into()),
            to: Some(to.into()),
        }
    }

    #[test]
    fn moves_leave_or_enter_a_building_scope_by_their_net_effect() {
        let b1 = Scope::Buildings(vec!["1号楼".into()]);
        let moves = vec![
            mv(5, "hh-out", "1号楼", "2号楼"),
            mv(6, "hh-in", "2号楼", "1号楼"),
            // Out and back within the window: still here.
            mv(7, "hh-back", "1号楼", "3号楼"),
            mv(9, "hh-back", "3号楼", "1号楼"),
            // In and out again: never arrived.
            mv(8, "hh-pass", "2号楼", "1号楼"),
            mv(10, "hh-pass", "1号楼", "3号楼"),
            // Elsewhere only.
            mv(11, "hh-far", "2号楼", "3号楼"),
            // Out over two moves, listed out of order.
            mv(13, "hh-two", "2号楼", "3号楼"),
            mv(12, "hh-two", "1号楼", "2号楼"),
        ];
        assert_eq!(
            scope_moves(&b1, &moves),
            (
                vec!["hh-out".to_string(), "hh-two".to_string()],
                vec!["hh-in".to_string()]
            )
        );
        // Only the rows touching the scope (what a backend returns): the same result.
        let touching: Vec<MoveRow> = moves
            .iter()
            .filter(|m| b1.covers(m.from.as_deref()) || b1.covers(m.to.as_deref()))
            .cloned()
            .collect();
        assert_eq!(scope_moves(&b1, &touching), scope_moves(&b1, &moves));
        // A document without a building (a task whose household is unknown) is out.
        let none = MoveRow {
            seq: 3,
            doc: "task-1".into(),
            from: Some("1号楼".into()),
            to: None,
        };
        assert_eq!(scope_moves(&b1, &[none]).0, vec!["task-1".to_string()]);
        assert_eq!(scope_moves(&Scope::Grid, &moves), (vec![], vec![]));
    }

    #[test]
    fn records_and_tasks_follow_their_household_unless_a_record_has_its_own_building() {
        use xiuhua_core::store::{RecordRow, Rows, TaskRow};
        let record = |building: Option<&str>, household: Option<&str>| {
            rmp_serde::to_vec_named(&Rows::Record(RecordRow {
                id: "rec-1".into(),
                grid: "g1".into(),
                category: "环境".into(),
                status: "待处理".into(),
                reporter: "张阿姨".into(),
                household: household.map(str::to_string),
                building: building.map(str::to_string),
                place: String::new(),
                reported_at: 0,
                summary: String::new(),
                text: String::new(),
                conflicts: 0,
                number: None,
                provisional_number: None,
            }))
            .unwrap()
        };
        let task = |household: Option<&str>| {
            rmp_serde::to_vec_named(&Rows::Task(TaskRow {
                id: "task-1".into(),
                grid: "g1".into(),
                title: "代办".into(),
                category: "服务".into(),
                level: None,
                status: "ordered".into(),
                tier: "grid".into(),
                assignee: None,
                deadline: None,
                created_at: 0,
                household: household.map(str::to_string),
                source_record: None,
                rating: None,
                rejected: 0,
                reminded_at: None,
                reopened_at: None,
                text: String::new(),
                number: None,
                provisional_number: None,
            }))
            .unwrap()
        };
        assert!(follows_household(
            "record",
            &record(None, Some("hh-1")),
            "hh-1"
        ));
        assert!(!follows_household(
            "record",
            &record(Some("1号楼"), Some("hh-1")),
            "hh-1"
        ));
        assert!(!follows_household(
            "record",
            &record(None, Some("hh-2")),
            "hh-1"
        ));
        assert!(!follows_household("record", &record(None, None), "hh-1"));
        assert!(follows_household("task", &task(Some("hh-1")), "hh-1"));
        assert!(!follows_household("task", &task(None), "hh-1"));
        assert!(!follows_household("record", &task(Some("hh-1")), "hh-1"));
        assert!(!follows_household("task", b"not rows", "hh-1"));
    }

    #[test]
    fn quota_counts_the_day_and_names_what_ran_out() {
        let q = Quota {
            daily_bytes: 100,
            daily_changes: 10,
        };
        assert!(q.check(100, 10, 0).is_ok());
        let e = q.check(101, 1, 0).unwrap_err();
        assert_eq!(e.kind, RefusalKind::QuotaExceeded);
        assert!(e.message.contains("100 bytes"), "{}", e.message);
        let e = q.check(1, 11, DAY_MS - 5_000).unwrap_err();
        assert!(
            e.message.contains("10 changes") && e.message.contains("in 5 s"),
            "{}",
            e.message
        );
        assert!(Quota::UNLIMITED.check(u64::MAX, u64::MAX, 0).is_ok());
        assert_eq!(Quota::day_of(DAY_MS - 1), 0);
        assert_eq!(Quota::day_of(DAY_MS), 1);
    }
}
