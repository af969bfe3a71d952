//! The sans-I/O sync engine: given the store, it says which request to send next
//! ([`SyncEngine::next_request`]) and consumes each reply ([`SyncEngine::handle_response`]).
//! It never touches a socket; [`super::sync`] drives it through a [`super::Transport`].
//!
//! # The sequence
//! 1. **Authenticate**: when the access token expires within
//!    [`SyncOptions::refresh_margin_ms`] (on the clock-anchored "now"), `/v1/refresh` first.
//!    The rotated tokens are saved at once (the server keeps the old refresh token usable
//!    until the new one is presented, so a lost reply is retried with it). A `401` on any
//!    later request triggers one refresh and a resend of that request. A refused refresh
//!    while the access token is still valid does not end the sync: it runs on the access
//!    token and says so in [`SyncReport::refresh_refused`].
//! 2. **Push** the outbox oldest first, in batches of at most
//!    [`SyncOptions::push_max_changes`] changes and [`SyncOptions::push_max_bytes`] bytes,
//!    grouped per document. Entries are acknowledged (deleted) only after a `2xx`.
//! 3. **Escalate**: the escalations recorded by [`Store::escalate_task`] are sent to
//!    `/v1/escalate` once the task's earlier changes are acknowledged (so the server knows
//!    the task); until then the task's entries from the escalation's change on are held
//!    back from the push. After any accepted escalation, another push round sends them.
//! 4. **Pull** each grid of [`Store::sync_grids`]: bootstrap from `/v1/bootstrap` when its
//!    cursor is 0 and the store holds none of its documents (in pages of documents until
//!    `more == false`; each page is stored in its own transaction, and the first page's
//!    cursor only with the last page, so an interrupted bootstrap pulls from 0), then pages of
//!    [`SyncOptions::pull_limit`] until `more == false`; each page is applied and its cursor
//!    stored in one transaction ([`Store::apply_pulled`]), so an interrupted pull resumes
//!    at the page it stopped at.
//! 5. **Repair** the documents whose remote changes waited for their dependencies through
//!    [`crate::store::REPAIR_AFTER_SYNCS`] finished syncs, and those whose refused changes
//!    the user discarded ([`Store::discard_refused`]): Automerge's sync protocol over
//!    `/v1/repair`, at most [`super::REPAIR_MAX_ROUNDS`] rounds each (a `403`/`404` means
//!    the server has no copy this device may read: nothing to repair).
//! 6. **Finish**: [`SyncEngine::finish`] records the success. Every reply's
//!    `server_time_ms` anchors the clock; every grid a reply lists in `purge_grids` is
//!    purged at once, whatever the status: wiped ([`Store::purge_grid`]) when the device is
//!    revoked (a `401`), else with its unpushed work set aside ([`Store::drop_grid`]).
//!
//! Right after authenticating, `/v1/session` brings the device's current grants
//! ([`Store::apply_grants`]): new grids are bootstrapped by the pull, buildings added to a
//! 楼门长 are fetched by a *scope bootstrap* (a bootstrap filtered to those buildings, which
//! keeps the grid's cursor), and documents a narrowed grant no longer covers leave the
//! phone, their unpushed changes set aside ([`Store::set_aside`]).
//!
//! A pull page of a 楼门长 also says which documents moved out of or into their buildings
//! (a household whose address changed, with the records and tasks that follow it): those
//! that left are removed in the page's transaction, their unpushed changes set aside
//! ([`Store::apply_pulled_page`]); those that arrived are repaired (fetched whole) in step 5.
//!
//! # Decisions
//! - **A refused push batch never loses the outbox.** A `4xx` (other than `401`, `426`,
//!   `429`) to a batch of several documents splits it in two and retries each half, until
//!   the refused document is alone: its entries stay in the outbox, the document is skipped
//!   for the rest of this sync (its later changes depend on the refused ones) and reported
//!   in [`SyncReport::rejected`] and in the status's `refused_docs`. Everything else is
//!   pushed and pulled, and the sync finishes. A `413` to one document's batch splits its
//!   changes, in order. A `5xx`, a `401` after a refresh, a `426` or a network error ends
//!   the sync with an error; nothing unacknowledged is deleted.
//! - **Refusals are not retried forever.** A refused document is sent again at the next
//!   syncs, up to [`crate::store::REFUSED_RETRY_SYNCS`] finished syncs; then its changes are
//!   held (not sent, listed in [`SyncReport::held_docs`] and [`Store::refused_changes`])
//!   until the user discards them ([`Store::discard_refused`]) or retries
//!   ([`Store::retry_refused`]).
//! - **The status tells the truth about an unfinished sync.** The first request marks the
//!   sync as started in the store; finishing or failing clears the mark, so after a kill the
//!   status says the last sync did not finish. A failed sync records what it did before
//!   failing (its partial [`SyncReport`], as [`crate::store::LastSync`]).
//! - **Errors say what to do** ([`classify_refusal`]): revoked (wipe), re-enroll
//!   ([`Error::Unauthorized`]), upgrade (`426`), or the server's status and code.
//! - **Escalation** uses a `pending_escalations` table written in the same transaction as
//!   the `escalate` event, rather than scanning outbox changes for new events: the request
//!   survives restarts and is sent exactly before the event. A refused escalation (`4xx`)
//!   keeps its request and the task's held entries (reported; retried at the next sync).
//!   A `409` (the server's tier is already there: a retry after a lost reply, or someone
//!   escalated meanwhile) releases the held entries: the server accepts the event when its
//!   tier allows it, and a request whose event was accepted is forgotten.
//! - **Counting**: `pushed` = changes the server stored; `pulled` = pulled changes applied
//!   here; `duplicates` = changes the server already had plus pulled changes already here
//!   (our own, echoed); `conflicts` = household fields that gained concurrent values;
//!   `rejected` = task events the fold newly rejects (`task`, `event: reason`) and documents
//!   or escalations the server refused.
//! - A pull page whose grid does not match, or whose `next` goes backwards, or that says
//!   `more` without advancing, is an error (a stuck server must not loop a phone forever).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use serde::Deserialize;

use super::proto::{self, ErrorBody};
use super::{Credentials, TransportError};
use crate::error::{Error, Result};
use crate::store::{OutboxEntry, PulledMoves, RemoteChange, Store};

/// Limits of one sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOptions {
    /// Most changes in one push request.
    pub push_max_changes: usize,
    /// Most change bytes in one push request (before compression).
    pub push_max_bytes: usize,
    /// Most changes asked for in one pull page.
    pub pull_limit: u32,
    /// Most documents asked for in one bootstrap page (0 = the server's default).
    pub bootstrap_page: u32,
    /// Refresh the access token when it expires within this many ms.
    pub refresh_margin_ms: i64,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            push_max_changes: 2_000,
            push_max_bytes: 4 * 1024 * 1024,
            pull_limit: 2_000,
            bootstrap_page: 0,
            refresh_margin_ms: 60_000,
        }
    }
}

/// One request to send: `POST path` with `body` (already encoded), with
/// `Authorization: Bearer <bearer>` when given.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    pub path: &'static str,
    pub body: Vec<u8>,
    pub bearer: Option<String>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("path", &self.path)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// Where a sync stands, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncPhase {
    Authenticate,
    Push,
    Escalate,
    Bootstrap,
    Pull,
    Done,
}

/// Receives progress during a long sync: `done` of `total` (when known) in `phase`:
/// changes for push and pull, documents for bootstrap, escalations for escalate.
pub trait SyncProgress: Send {
    fn on_progress(&self, phase: SyncPhase, done: u64, total: Option<u64>);
}

/// The most documents a [`SyncReport`] lists as changed; past it, "everything".
pub const CHANGED_DOCS_LISTED: usize = 500;

impl SyncReport {
    /// Notes that `docs` changed here.
    fn changed(&mut self, docs: impl IntoIterator<Item = (String, crate::doc::DocKind)>) {
        if self.changed_everything {
            return;
        }
        for (id, kind) in docs {
            if self.changed_docs.iter().any(|(d, _)| *d == id) {
                continue;
            }
            if self.changed_docs.len() >= CHANGED_DOCS_LISTED {
                self.everything();
                return;
            }
            self.changed_docs.push((id, kind));
        }
    }

    /// Notes that too much changed to list.
    fn everything(&mut self) {
        self.changed_everything = true;
        self.changed_docs.clear();
    }
}

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Documents whose content this sync changed here (pulled, repaired, renumbered), each
    /// once, at most [`CHANGED_DOCS_LISTED`]; see [`SyncReport::changed_everything`].
    pub changed_docs: Vec<(String, crate::doc::DocKind)>,
    /// Too much changed to list (a bootstrap, a purge, documents dropped, or more than
    /// [`CHANGED_DOCS_LISTED`]): screens should refresh everything.
    pub changed_everything: bool,
    /// Changes the server stored.
    pub pushed: u64,
    /// Records and tasks whose provisional number was replaced by a real one.
    pub renumbered: u64,
    /// Pulled changes applied here.
    pub pulled: u64,
    /// Pushed changes the server already had, plus pulled changes already here.
    pub duplicates: u64,
    /// (document, reason): task events the fold newly rejects, and documents or escalations
    /// the server refused (their changes stay in the outbox).
    pub rejected: Vec<(String, String)>,
    /// Household fields that gained concurrent values.
    pub conflicts: usize,
    /// Grids purged because their grant was revoked.
    pub purged_grids: Vec<String>,
    /// Request bodies sent, as on the wire (compressed).
    pub bytes_sent: u64,
    /// Reply bodies received, as on the wire (compressed).
    pub bytes_received: u64,
    pub duration_ms: u64,
    /// Documents stored from bootstrap bundles.
    pub bootstrapped_docs: u64,
    /// Documents removed from this phone because a narrowed grant no longer covers them.
    pub dropped_docs: u64,
    /// Local changes kept aside (not pushed, not lost) because the grant that covered
    /// their document is gone: [`Store::set_aside`].
    pub set_aside: u64,
    /// The refresh token was refused (`code: message`) while the access token still
    /// worked: this sync ran on the access token; the device needs a new enrollment
    /// before that expires.
    pub refresh_refused: Option<String>,
    /// Remote changes still waiting here for changes they depend on when the sync ended,
    /// and their documents (also in [`super::SyncStatus`]).
    pub waiting_changes: u64,
    pub waiting_docs: u64,
    /// Documents repaired from the server (`/v1/repair`): changes that waited too long for
    /// their dependencies, or copies whose refused changes the user discarded; and the
    /// changes that brought.
    pub repaired_docs: u64,
    pub repaired_changes: u64,
    /// Documents the server refused at [`crate::store::REFUSED_RETRY_SYNCS`] syncs: not sent
    /// any more until the user discards or retries them.
    pub held_docs: Vec<String>,
}

/// What the request in flight was.
#[derive(Debug, Clone)]
enum InFlight {
    Refresh,
    /// With what the phone holds of each community's numbers.
    Session(Vec<crate::numbers::NumberHeld>),
    Push(Vec<OutboxEntry>),
    Escalate {
        id: i64,
        task: String,
        tier: String,
        unit: Option<String>,
    },
    /// A page of a grid's bundle: the first (`after` none) or the one after document
    /// `after`, with the first page's `cursor`.
    ///
    /// With `scope`, a scope bootstrap: only those buildings (empty: the whole grid) of a
    /// grid already held, whose cursor is kept.
    Bootstrap {
        grid: String,
        after: Option<String>,
        cursor: Option<u64>,
        scope: Option<Vec<String>>,
    },
    Pull {
        grid: String,
        since: u64,
    },
    /// A round of repairing the document `repair_current` names, with its encoded request.
    Repair(Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Session,
    Push,
    Escalate,
    Pull,
    Repair,
    Done,
}

/// Reads only the optional `purge_grids` of any reply (a server following ADR 0001 may
/// send it on every reply; the typed success bodies do not carry it yet).
#[derive(Deserialize, Default)]
struct PurgeOnly {
    #[serde(default)]
    purge_grids: Vec<String>,
}

/// The engine of one sync. Create one per sync.
pub struct SyncEngine {
    opts: SyncOptions,
    creds: Credentials,
    started: Instant,
    checked: bool,
    failed: bool,
    need_refresh: bool,
    refreshed: bool,
    retry: Option<InFlight>,
    in_flight: Option<InFlight>,
    stage: Stage,
    // push
    push_after: i64,
    push_retry: VecDeque<Vec<OutboxEntry>>,
    push_total: u64,
    push_done: u64,
    skip_docs: HashSet<String>,
    held_from: HashMap<String, i64>,
    // escalate
    escalations_tried: HashSet<i64>,
    /// Escalations answered `409` (the server's tier was already there, or moved): the
    /// task's entries they held back are pushed anyway.
    escalations_released: HashSet<i64>,
    escalated_in_round: bool,
    // pull
    grids: Vec<String>,
    grid_idx: usize,
    grid_started: bool,
    grid_pulled: u64,
    /// How many documents the grid's bundle holds, as its first page said.
    bootstrap_total: Option<u64>,
    /// The next bootstrap page to ask for, while a grid's bundle has more.
    bootstrap_next: Option<InFlight>,
    grid_seqs: HashMap<String, u64>,
    purged: HashSet<String>,
    refused: Vec<(String, String)>,
    report: SyncReport,
    progress: (SyncPhase, u64, Option<u64>),
    // status: refusals counted over syncs, and the repair of waiting or discarded documents
    status_loaded: bool,
    refused_syncs: std::collections::BTreeMap<String, u32>,
    held: HashSet<String>,
    repair_queue: VecDeque<String>,
    repair_current: Option<(String, automerge::sync::State, usize)>,
}

impl std::fmt::Debug for SyncEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncEngine")
            .field("stage", &self.stage)
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

fn bad_reply(status: u16, e: impl std::fmt::Display) -> Error {
    Error::Sync {
        status,
        code: "bad_reply".into(),
        message: format!("the server's reply cannot be read: {e}"),
    }
}

/// Which request a refusal answers: it decides what a `401` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// `/v1/enroll`: a `401` is a wrong, used or expired code.
    Enroll,
    /// `/v1/refresh` or a request with the access token: a `401` means the credentials are
    /// dead (enroll again), unless the server says the device was revoked.
    Credentials,
}

/// The error a refusal stands for, as an app acts on it (one place for the rule):
/// - `426` → [`Error::UpgradeRequired`] (update the app);
/// - `401` naming grids to purge, or with the code `revoked`/`device_revoked`, or a message
///   saying the device was revoked → [`Error::Revoked`] (wipe);
/// - any other `401` → [`Error::Unauthorized`] (enroll again, the work is kept), or for an
///   enrollment an invalid `code`;
/// - everything else → [`Error::Sync`] with the server's status and code.
pub fn classify_refusal(status: u16, body: Option<&ErrorBody>, asked: Asked) -> Error {
    let (code, message) = match body {
        Some(e) => (e.code.clone(), e.message.clone()),
        None => (String::from("http"), format!("HTTP status {status}")),
    };
    match status {
        426 => Error::UpgradeRequired(message),
        401 => {
            // The server's stable codes decide (`revoked`: wipe; `reenroll`: enroll again,
            // keep the data); a 401 naming grids to purge is a revocation whatever its code.
            let revoked = code != "reenroll"
                && (matches!(code.as_str(), "revoked" | "device_revoked")
                    || body.is_some_and(|b| !b.purge_grids.is_empty()));
            if revoked {
                Error::Revoked(message)
            } else if asked == Asked::Enroll {
                Error::invalid("code", message)
            } else {
                Error::Unauthorized(message)
            }
        }
        _ => Error::Sync {
            status,
            code,
            message,
        },
    }
}

/// The error a non-2xx reply to a request with credentials stands for.
pub(crate) fn error_from_reply(status: u16, body: &[u8]) -> Error {
    let eb: Option<ErrorBody> = proto::decode(body).ok();
    classify_refusal(status, eb.as_ref(), Asked::Credentials)
}

/// The error a non-2xx reply to `/v1/enroll` stands for.
pub(crate) fn error_from_enroll_reply(status: u16, body: &[u8]) -> Error {
    let eb: Option<ErrorBody> = proto::decode(body).ok();
    classify_refusal(status, eb.as_ref(), Asked::Enroll)
}

impl SyncEngine {
    pub fn new(creds: &Credentials, options: SyncOptions) -> SyncEngine {
        SyncEngine {
            opts: options,
            creds: creds.clone(),
            started: Instant::now(),
            checked: false,
            failed: false,
            need_refresh: false,
            refreshed: false,
            retry: None,
            in_flight: None,
            stage: Stage::Session,
            push_after: 0,
            push_retry: VecDeque::new(),
            push_total: 0,
            push_done: 0,
            skip_docs: HashSet::new(),
            held_from: HashMap::new(),
            escalations_tried: HashSet::new(),
            escalations_released: HashSet::new(),
            escalated_in_round: false,
            grids: Vec::new(),
            grid_idx: 0,
            grid_started: false,
            bootstrap_next: None,
            grid_pulled: 0,
            bootstrap_total: None,
            grid_seqs: HashMap::new(),
            purged: HashSet::new(),
            refused: Vec::new(),
            report: SyncReport::default(),
            progress: (SyncPhase::Authenticate, 0, None),
            status_loaded: false,
            refused_syncs: std::collections::BTreeMap::new(),
            held: HashSet::new(),
            repair_queue: VecDeque::new(),
            repair_current: None,
        }
    }

    /// The phase, progress and total (when known) of the request last returned.
    pub fn progress(&self) -> (SyncPhase, u64, Option<u64>) {
        self.progress
    }

    /// What the sync did so far.
    pub fn report(&self) -> &SyncReport {
        &self.report
    }

    /// The next request to send, or `None` when the sync is complete (then call
    /// [`SyncEngine::finish`]). Exactly one request is in flight at a time: answer it with
    /// [`SyncEngine::handle_response`] or [`SyncEngine::transport_failed`] first.
    pub fn next_request(&mut self, store: &mut Store) -> Result<Option<Request>> {
        if self.failed {
            return Err(Error::invalid(
                "sync",
                "this sync already failed; start a new one",
            ));
        }
        if self.in_flight.is_some() {
            return Err(Error::invalid("sync", "a request is still in flight"));
        }
        let r = self
            .load_status(store)
            .and_then(|()| self.next_inner(store));
        self.record_if_failed(store, r)
    }

    /// Consumes the reply to the request in flight.
    pub fn handle_response(&mut self, store: &mut Store, status: u16, body: &[u8]) -> Result<()> {
        let Some(sent) = self.in_flight.take() else {
            return Err(Error::invalid("sync", "no request is in flight"));
        };
        self.report.bytes_received += body.len() as u64;
        let r = self.handle_inner(store, sent, status, body);
        self.record_if_failed(store, r)
    }

    /// The request in flight could not be delivered or its reply read: the sync ends here.
    /// Records the error in the store's status and returns it.
    pub fn transport_failed(&mut self, store: &mut Store, error: TransportError) -> Error {
        self.in_flight = None;
        let e = Error::from(error);
        self.failed = true;
        let _ = store.record_sync_failure(&e, Some(&self.report));
        e
    }

    /// The sync is cancelled between requests (nothing in flight): it ends here, with
    /// every reply so far applied. Records that it did not finish and returns the error.
    pub fn cancelled(&mut self, store: &mut Store) -> Error {
        let e = super::cancelled_error();
        self.failed = true;
        self.in_flight = None;
        let _ = store.record_sync_failure(&e, Some(&self.report));
        e
    }

    /// Ends a complete sync: records the success (and the documents the server refused) in
    /// the store and returns the report. A sync that is not complete is refused, and never
    /// recorded as a success.
    pub fn finish(mut self, store: &mut Store) -> Result<SyncReport> {
        if self.failed || self.in_flight.is_some() || self.stage != Stage::Done {
            return Err(Error::invalid("sync", "the sync is not complete"));
        }
        self.report.duration_ms =
            u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (changes, docs) = store.waiting_changes()?;
        self.report.waiting_changes = u64::try_from(changes).unwrap_or(0);
        self.report.waiting_docs = u64::try_from(docs).unwrap_or(0);
        let refused = self
            .refused
            .iter()
            .map(|(doc, why)| {
                let before = self.refused_syncs.get(doc).copied().unwrap_or(0);
                // A held document was not sent: its count stays.
                let n = if self.held.contains(doc) {
                    before
                } else {
                    before.saturating_add(1)
                };
                (doc.clone(), why.clone(), n)
            })
            .collect();
        store.record_sync_success(&crate::store::FinishedSync {
            refused,
            report: Some(&self.report),
        })?;
        self.progress = (
            SyncPhase::Done,
            self.report.pushed + self.report.pulled,
            None,
        );
        Ok(self.report)
    }

    fn record_if_failed<T>(&mut self, store: &mut Store, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            self.failed = true;
            self.in_flight = None;
            let _ = store.record_sync_failure(e, Some(&self.report));
        }
        r
    }

    /// Once per sync, before the first request: marks the sync as started in the store
    /// (so a kill shows as a sync that did not finish), holds back the documents refused at
    /// too many syncs, and queues the documents due for repair.
    fn load_status(&mut self, store: &mut Store) -> Result<()> {
        if self.status_loaded {
            return Ok(());
        }
        self.status_loaded = true;
        store.mark_sync_started()?;
        self.refused_syncs = store.refused_syncs()?;
        for r in store.refused_changes()? {
            if r.held && r.changes > 0 {
                self.skip_docs.insert(r.doc.clone());
                self.held.insert(r.doc.clone());
                self.report.held_docs.push(r.doc.clone());
                self.refused.push((r.doc, r.reason));
            }
        }
        self.repair_queue = store.repair_due()?.into();
        Ok(())
    }

    fn bearer(&self) -> Option<String> {
        Some(self.creds.access_token.clone())
    }

    fn send(&mut self, what: InFlight) -> Request {
        let (path, body, bearer) = match &what {
            InFlight::Refresh => (
                "/v1/refresh",
                proto::encode(&proto::RefreshRequest {
                    refresh_token: self.creds.refresh_token.clone(),
                }),
                None,
            ),
            InFlight::Push(batch) => {
                let mut docs: Vec<proto::DocChanges> = Vec::new();
                let mut index: HashMap<&str, usize> = HashMap::new();
                for e in batch {
                    let i = *index.entry(e.doc.as_str()).or_insert_with(|| {
                        docs.push(proto::DocChanges {
                            doc: e.doc.clone(),
                            changes: Vec::new(),
                        });
                        docs.len() - 1
                    });
                    if let Some(d) = docs.get_mut(i) {
                        d.changes.push(serde_bytes::ByteBuf::from(e.change.clone()));
                    }
                }
                (
                    "/v1/push",
                    proto::encode(&proto::PushRequest { docs }),
                    self.bearer(),
                )
            }
            InFlight::Escalate {
                task, tier, unit, ..
            } => (
                "/v1/escalate",
                proto::encode(&proto::EscalateRequest {
                    task: task.clone(),
                    tier: tier.clone(),
                    unit: unit.clone(),
                }),
                self.bearer(),
            ),
            InFlight::Session(numbers) => (
                "/v1/session",
                proto::encode(&proto::SessionRequest {
                    numbers: numbers.clone(),
                }),
                self.bearer(),
            ),
            InFlight::Bootstrap {
                grid, after, scope, ..
            } => (
                "/v1/bootstrap",
                proto::encode(&proto::BootstrapRequest {
                    grid: grid.clone(),
                    after: after.clone(),
                    limit: self.opts.bootstrap_page,
                    buildings: scope.clone().unwrap_or_default(),
                }),
                self.bearer(),
            ),
            InFlight::Pull { grid, since } => (
                "/v1/pull",
                proto::encode(&proto::PullRequest {
                    grid: grid.clone(),
                    since: *since,
                    limit: self.opts.pull_limit,
                    wait_ms: 0,
                }),
                self.bearer(),
            ),
            InFlight::Repair(body) => ("/v1/repair", body.clone(), self.bearer()),
        };
        self.report.bytes_sent += body.len() as u64;
        self.in_flight = Some(what);
        Request { path, body, bearer }
    }

    fn next_inner(&mut self, store: &mut Store) -> Result<Option<Request>> {
        if !self.checked {
            if self.creds.device != store.actor().device {
                return Err(Error::invalid(
                    "device",
                    format!(
                        "the credentials are for device {}, the store acts as device {}",
                        self.creds.device,
                        store.actor().device
                    ),
                ));
            }
            self.checked = true;
            self.need_refresh = self.creds.access_expires_ms.saturating_sub(store.now_ms())
                < self.opts.refresh_margin_ms;
            self.push_total = u64::try_from(store.outbox_len()?).unwrap_or(0);
            self.start_push_round(store)?;
        }
        if self.need_refresh {
            self.progress = (SyncPhase::Authenticate, 0, None);
            return Ok(Some(self.send(InFlight::Refresh)));
        }
        if let Some(again) = self.retry.take() {
            return Ok(Some(self.send(again)));
        }
        loop {
            match self.stage {
                Stage::Session => {
                    self.progress = (SyncPhase::Authenticate, 0, None);
                    let numbers = store.numbers_held()?;
                    return Ok(Some(self.send(InFlight::Session(numbers))));
                }
                Stage::Push => {
                    if let Some(batch) = self.next_push_batch(store)? {
                        self.progress = (
                            SyncPhase::Push,
                            self.push_done,
                            Some(self.push_total.max(self.push_done)),
                        );
                        return Ok(Some(self.send(InFlight::Push(batch))));
                    }
                    self.stage = Stage::Escalate;
                }
                Stage::Escalate => {
                    if let Some(e) = self.next_escalation(store)? {
                        self.progress = (
                            SyncPhase::Escalate,
                            self.escalations_tried.len() as u64,
                            None,
                        );
                        return Ok(Some(self.send(e)));
                    }
                    if self.escalated_in_round {
                        // Accepted escalations release held entries: push them.
                        self.escalated_in_round = false;
                        self.start_push_round(store)?;
                        self.stage = Stage::Push;
                    } else {
                        self.grids = store.sync_grids()?;
                        self.stage = Stage::Pull;
                    }
                }
                Stage::Pull => {
                    let Some(grid) = self.grids.get(self.grid_idx).cloned() else {
                        self.stage = Stage::Repair;
                        continue;
                    };
                    if self.purged.contains(&grid) {
                        self.next_grid();
                        continue;
                    }
                    if let Some(next) = self.bootstrap_next.take() {
                        return Ok(Some(self.send(next)));
                    }
                    let since = store.sync_cursor(&grid)?;
                    if !self.grid_started {
                        self.grid_started = true;
                        self.grid_pulled = 0;
                        if since == 0 && store.grid_doc_count(&grid)? == 0 {
                            self.progress = (SyncPhase::Bootstrap, 0, None);
                            return Ok(Some(self.send(InFlight::Bootstrap {
                                grid,
                                after: None,
                                cursor: None,
                                scope: None,
                            })));
                        }
                        if let Some(buildings) = store.scope_bootstrap(&grid)? {
                            // Newly granted buildings of a grid held here: their documents.
                            self.progress = (SyncPhase::Bootstrap, 0, None);
                            return Ok(Some(self.send(InFlight::Bootstrap {
                                grid,
                                after: None,
                                cursor: None,
                                scope: Some(buildings),
                            })));
                        }
                    }
                    let total = self
                        .grid_seqs
                        .get(&grid)
                        .map(|s| s.saturating_sub(since) + self.grid_pulled);
                    self.progress = (SyncPhase::Pull, self.grid_pulled, total);
                    return Ok(Some(self.send(InFlight::Pull { grid, since })));
                }
                Stage::Repair => {
                    if let Some(request) = self.next_repair(store)? {
                        return Ok(Some(request));
                    }
                    self.stage = Stage::Done;
                }
                Stage::Done => return Ok(None),
            }
        }
    }

    /// The next `/v1/repair` round: of the document being repaired, else of the next one
    /// queued. A document whose copy matches (no message to send), or that needed more than
    /// [`super::REPAIR_MAX_ROUNDS`] rounds, leaves the queue (the latter is tried again
    /// after more syncs).
    fn next_repair(&mut self, store: &mut Store) -> Result<Option<Request>> {
        loop {
            let (doc, mut state, rounds) = match self.repair_current.take() {
                Some(c) => c,
                None => match self.repair_queue.pop_front() {
                    None => return Ok(None),
                    Some(doc) => (doc, automerge::sync::State::new(), 0),
                },
            };
            if rounds >= super::REPAIR_MAX_ROUNDS {
                store.repair_finished(&doc)?;
                continue;
            }
            let Some(message) = store.repair_message(&doc, &mut state)? else {
                self.repair_done(store, &doc)?;
                continue;
            };
            let body = proto::encode(&proto::RepairRequest {
                doc: doc.clone(),
                message: serde_bytes::ByteBuf::from(message),
            });
            self.repair_current = Some((doc, state, rounds + 1));
            self.progress = (SyncPhase::Pull, self.report.repaired_docs, None);
            return Ok(Some(self.send(InFlight::Repair(body))));
        }
    }

    /// A document's repair ended: its copy matches the server's (or the server has none).
    fn repair_done(&mut self, store: &mut Store, doc: &str) -> Result<()> {
        store.repair_finished(doc)?;
        self.report.repaired_docs += 1;
        Ok(())
    }

    fn next_grid(&mut self) {
        self.grid_idx += 1;
        self.grid_started = false;
        self.bootstrap_next = None;
    }

    fn start_push_round(&mut self, store: &Store) -> Result<()> {
        self.push_after = 0;
        self.held_from.clear();
        for e in store.pending_escalations()? {
            if self.escalations_released.contains(&e.id) {
                continue;
            }
            let from = self.held_from.entry(e.task).or_insert(e.outbox_id);
            *from = (*from).min(e.outbox_id);
        }
        Ok(())
    }

    fn pushable(&self, e: &OutboxEntry) -> bool {
        !self.skip_docs.contains(&e.doc)
            && !self.purged.contains(&e.grid)
            && self.held_from.get(&e.doc).is_none_or(|from| e.id < *from)
    }

    /// The next batch: a split batch waiting for a retry first, then fresh outbox entries.
    fn next_push_batch(&mut self, store: &Store) -> Result<Option<Vec<OutboxEntry>>> {
        while let Some(mut batch) = self.push_retry.pop_front() {
            batch.retain(|e| self.pushable(e));
            if !batch.is_empty() {
                return Ok(Some(batch));
            }
        }
        let mut batch: Vec<OutboxEntry> = Vec::new();
        let mut bytes = 0usize;
        loop {
            let page = store.outbox_after(self.push_after, 512)?;
            if page.is_empty() {
                break;
            }
            for e in page {
                if !self.pushable(&e) {
                    self.push_after = e.id;
                    continue;
                }
                if !batch.is_empty()
                    && (batch.len() >= self.opts.push_max_changes
                        || bytes + e.change.len() > self.opts.push_max_bytes)
                {
                    return Ok(Some(batch));
                }
                self.push_after = e.id;
                bytes += e.change.len();
                batch.push(e);
            }
        }
        Ok(if batch.is_empty() { None } else { Some(batch) })
    }

    fn next_escalation(&mut self, store: &mut Store) -> Result<Option<InFlight>> {
        for e in store.pending_escalations()? {
            if !store.outbox_contains(e.outbox_id)? {
                // Its event was pushed and accepted: the server's tier allows it already.
                store.complete_escalation(e.id)?;
                continue;
            }
            if self.escalations_tried.contains(&e.id)
                || self.skip_docs.contains(&e.task)
                || self.purged.contains(&e.grid)
            {
                continue;
            }
            // Earlier changes of the task (its creation, at least) must be on the server first.
            if store.outbox_has_before(&e.task, e.outbox_id)? {
                continue;
            }
            self.escalations_tried.insert(e.id);
            return Ok(Some(InFlight::Escalate {
                id: e.id,
                task: e.task,
                tier: e.tier,
                unit: e.unit,
            }));
        }
        Ok(None)
    }

    /// Purges the grids a reply names. `wipe`: the device is revoked, everything goes;
    /// otherwise a grant was withdrawn and the grid's unpushed work is set aside.
    fn purge(&mut self, store: &mut Store, grids: &[String], wipe: bool) -> Result<()> {
        for g in grids {
            if g.is_empty() || self.purged.contains(g) {
                continue;
            }
            // The server keeps naming a revoked grid; report it only when this device
            // still held something of it (documents, a cursor or the grant).
            let held = store.grid_doc_count(g)? > 0
                || store.sync_cursor(g)? > 0
                || store.grants()?.iter().any(|x| &x.grid == g);
            if wipe {
                store.purge_grid(g)?;
            } else {
                let (_, aside) = store.drop_grid(g)?;
                self.report.set_aside += aside as u64;
            }
            self.purged.insert(g.clone());
            if held {
                self.report.purged_grids.push(g.clone());
                self.report.everything();
            }
        }
        // Refusals of documents that were just purged no longer matter.
        let mut kept = Vec::with_capacity(self.refused.len());
        for (doc, why) in std::mem::take(&mut self.refused) {
            if store.doc_grid(&doc)?.is_some() {
                kept.push((doc, why));
            }
        }
        self.refused = kept;
        Ok(())
    }

    fn handle_inner(
        &mut self,
        store: &mut Store,
        sent: InFlight,
        status: u16,
        body: &[u8],
    ) -> Result<()> {
        if (200..300).contains(&status) {
            // Any reply may name grids to purge (ADR 0001); read that first. Not for bundles:
            // they are large, and a grid the bundle is of is not also purged.
            if !matches!(sent, InFlight::Bootstrap { .. })
                && let Ok(p) = proto::decode::<PurgeOnly>(body)
                && !p.purge_grids.is_empty()
            {
                self.purge(store, &p.purge_grids, false)?;
            }
            return self.handle_success(store, sent, status, body);
        }
        let eb: Option<ErrorBody> = proto::decode(body).ok();
        if let Some(eb) = &eb {
            // Only a revoked device is answered 401 with grids to purge: it wipes them.
            self.purge(store, &eb.purge_grids, status == 401)?;
        }
        let reason = eb.as_ref().map_or_else(
            || format!("HTTP status {status}"),
            |e| format!("{}: {}", e.code, e.message),
        );
        match sent {
            InFlight::Refresh
                if status == 401
                    && self.retry.is_none()
                    && self.creds.access_expires_ms > store.now_ms() =>
            {
                // A proactive refresh was refused while the access token still works:
                // sync on it (the refused token needs a new enrollment; the report says so).
                self.need_refresh = false;
                self.refreshed = true;
                self.report.refresh_refused = Some(reason);
                Ok(())
            }
            InFlight::Refresh => Err(error_from_reply(status, body)),
            InFlight::Session(_) if status == 404 => {
                // A server without `/v1/session`: the grants stay as they are.
                self.stage = Stage::Push;
                Ok(())
            }
            other if status == 401 && !self.refreshed => {
                // The access token was refused before it expired by our clock: refresh once.
                self.need_refresh = true;
                self.retry = Some(other);
                Ok(())
            }
            InFlight::Push(batch)
                if (400..500).contains(&status) && ![401, 426, 429].contains(&status) =>
            {
                self.push_refused(batch, status, &reason);
                Ok(())
            }
            InFlight::Escalate { id, .. } if status == 409 => {
                // The server's tier is not below the one asked for (a retry after a lost
                // reply, or someone escalated meanwhile), or moved concurrently. Push the
                // event anyway: the server accepts it if its tier allows, else refuses the
                // document (reported) and the request is retried at the next sync.
                self.escalations_released.insert(id);
                self.escalated_in_round = true;
                Ok(())
            }
            InFlight::Escalate { task, .. }
                if (400..500).contains(&status) && ![401, 426, 429].contains(&status) =>
            {
                // Keep the request (retried next sync) and hold the task's entries back.
                self.skip_docs.insert(task.clone());
                let why = format!("escalation refused: {reason}");
                self.report.rejected.push((task.clone(), why.clone()));
                self.refused.push((task, why));
                Ok(())
            }
            InFlight::Pull { grid, .. } | InFlight::Bootstrap { grid, .. }
                if self.purged.contains(&grid) =>
            {
                self.next_grid();
                Ok(())
            }
            InFlight::Repair(_) if [403, 404].contains(&status) => {
                // The server has no copy (404: the copy here is gone, as the server's), or
                // none this device may read (403): nothing to repair from.
                if let Some((doc, _, _)) = self.repair_current.take() {
                    if status == 404 {
                        self.repair_done(store, &doc)?;
                    } else {
                        store.repair_finished(&doc)?;
                    }
                }
                Ok(())
            }
            _ => Err(error_from_reply(status, body)),
        }
    }

    /// A push batch was refused: split it until the refused document is alone.
    fn push_refused(&mut self, mut batch: Vec<OutboxEntry>, status: u16, reason: &str) {
        batch.retain(|e| self.pushable(e));
        let mut docs: Vec<&str> = Vec::new();
        for e in &batch {
            if !docs.contains(&e.doc.as_str()) {
                docs.push(e.doc.as_str());
            }
        }
        if docs.len() > 1 {
            let first: HashSet<String> = docs[..docs.len() / 2]
                .iter()
                .map(|d| d.to_string())
                .collect();
            let (a, b): (Vec<OutboxEntry>, Vec<OutboxEntry>) =
                batch.into_iter().partition(|e| first.contains(&e.doc));
            self.push_retry.push_front(b);
            self.push_retry.push_front(a);
        } else if status == 413 && batch.len() > 1 {
            let b = batch.split_off(batch.len() / 2);
            self.push_retry.push_front(b);
            self.push_retry.push_front(batch);
        } else if let Some(e) = batch.first() {
            let doc = e.doc.clone();
            self.skip_docs.insert(doc.clone());
            self.report.rejected.push((doc.clone(), reason.to_string()));
            self.refused.push((doc, reason.to_string()));
        }
    }

    fn handle_success(
        &mut self,
        store: &mut Store,
        sent: InFlight,
        status: u16,
        body: &[u8],
    ) -> Result<()> {
        match sent {
            InFlight::Refresh => {
                let t: proto::TokenResponse =
                    proto::decode(body).map_err(|e| bad_reply(status, e))?;
                if t.access_token.is_empty() || t.refresh_token.is_empty() {
                    return Err(bad_reply(status, "empty token"));
                }
                store.save_tokens(&t)?;
                self.creds.access_token = t.access_token;
                self.creds.access_expires_ms = t.access_expires_ms;
                self.creds.refresh_token = t.refresh_token;
                self.need_refresh = false;
                self.refreshed = true;
            }
            InFlight::Session(_) => {
                let r: proto::SessionResponse =
                    proto::decode(body).map_err(|e| bad_reply(status, e))?;
                if r.device != self.creds.device || r.user != self.creds.user {
                    return Err(bad_reply(
                        status,
                        "the session is of another device or user than the credentials",
                    ));
                }
                store.anchor_clock(r.server_time_ms)?;
                let change = store.apply_grants(&r.grants)?;
                if let Some(people) = &r.people {
                    store.apply_people(&r.grants, people)?;
                }
                self.report.dropped_docs += change.dropped_docs;
                self.report.set_aside += change.set_aside;
                if change.dropped_docs > 0 {
                    self.report.everything();
                }
                // Provisional numbers given offline take numbers of the blocks now held;
                // the edits join this sync's push.
                store.accept_number_blocks(&r.number_blocks)?;
                let renumbered = store.replace_provisional_numbers()?;
                if !renumbered.is_empty() {
                    self.report.renumbered += renumbered.len() as u64;
                    self.report.changed(renumbered);
                    self.push_total = u64::try_from(store.outbox_len()?).unwrap_or(0);
                }
                self.stage = Stage::Push;
            }
            InFlight::Push(batch) => {
                let r: proto::PushResponse =
                    proto::decode(body).map_err(|e| bad_reply(status, e))?;
                store.anchor_clock(r.server_time_ms)?;
                let ids: Vec<i64> = batch.iter().map(|e| e.id).collect();
                store.ack_outbox(&ids)?;
                self.push_done += ids.len() as u64;
                self.report.pushed += r.stored;
                self.report.duplicates += r.duplicates;
                for gs in r.grid_seqs {
                    self.grid_seqs.insert(gs.grid, gs.seq);
                }
                self.progress = (
                    SyncPhase::Push,
                    self.push_done,
                    Some(self.push_total.max(self.push_done)),
                );
            }
            InFlight::Escalate { id, .. } => {
                let r: proto::EscalateResponse =
                    proto::decode(body).map_err(|e| bad_reply(status, e))?;
                store.anchor_clock(r.server_time_ms)?;
                store.complete_escalation(id)?;
                self.escalated_in_round = true;
            }
            InFlight::Bootstrap {
                grid,
                after,
                cursor,
                scope,
            } => {
                let bundle: proto::Bundle =
                    proto::decode(body).map_err(|e| bad_reply(status, e))?;
                if bundle.grid != grid {
                    return Err(bad_reply(
                        status,
                        format!(
                            "asked for grid {grid}, got a bundle of grid {}",
                            bundle.grid
                        ),
                    ));
                }
                // A page must move past `after`, else a stuck server would loop the phone.
                let last = bundle.docs.last().map(|d| d.id.clone());
                if bundle.more
                    && (last.is_none() || after.is_some() && last.as_deref() <= after.as_deref())
                {
                    return Err(bad_reply(
                        status,
                        "the server says more documents wait but the page did not advance",
                    ));
                }
                store.anchor_clock(bundle.server_time_ms)?;
                // The first page's cursor is kept, and stored only with the last page: later
                // pages may be newer, and pulling from the first re-delivers harmlessly.
                let cursor = cursor.unwrap_or(bundle.cursor);
                // A scope bootstrap keeps the grid's cursor: the pull that follows goes on
                // from it (re-delivering changes of the bundle's documents is harmless).
                let set_cursor = (!bundle.more && scope.is_none()).then_some(cursor);
                let n = store.import_bundle_page(&bundle, set_cursor)?;
                if !bundle.more
                    && let Some(buildings) = &scope
                {
                    store.complete_scope_bootstrap(&grid, buildings)?;
                }
                self.report.bootstrapped_docs += n as u64;
                if n > 0 {
                    self.report.everything();
                }
                self.grid_pulled += n as u64;
                if after.is_none() {
                    self.bootstrap_total = bundle.total_docs;
                }
                // The first page's total (a count taken a moment earlier: never shown below
                // what arrived), exact once the last page is in.
                let total = if bundle.more {
                    self.bootstrap_total.map(|t| t.max(self.grid_pulled))
                } else {
                    Some(self.grid_pulled)
                };
                self.progress = (SyncPhase::Bootstrap, self.grid_pulled, total);
                if bundle.more {
                    self.bootstrap_next = Some(InFlight::Bootstrap {
                        grid,
                        after: last,
                        cursor: Some(cursor),
                        scope,
                    });
                } else {
                    self.grid_pulled = 0;
                }
            }
            InFlight::Repair(_) => {
                let r: proto::RepairResponse =
                    proto::decode(body).map_err(|e| bad_reply(status, e))?;
                let Some((doc, mut state, rounds)) = self.repair_current.take() else {
                    return Ok(());
                };
                let applied = match r.message {
                    None => None,
                    Some(m) => store.apply_repair_message(&doc, &mut state, &m)?,
                };
                match applied {
                    None => self.repair_done(store, &doc)?,
                    Some(merge) => {
                        self.report.changed(merge.changed.iter().cloned());
                        self.report.repaired_changes += merge.applied as u64;
                        self.repair_current = Some((doc, state, rounds));
                    }
                }
            }
            InFlight::Pull { grid, .. } if self.purged.contains(&grid) => {
                // The same reply revoked the grid: drop the page.
                self.next_grid();
            }
            InFlight::Pull { grid, since } => {
                let page: proto::PullResponse =
                    proto::decode(body).map_err(|e| bad_reply(status, e))?;
                if page.grid != grid {
                    return Err(bad_reply(
                        status,
                        format!("asked for grid {grid}, got changes of grid {}", page.grid),
                    ));
                }
                if page.next < since {
                    return Err(bad_reply(
                        status,
                        format!("the cursor went back from {since} to {}", page.next),
                    ));
                }
                if page.more && page.next == since {
                    return Err(bad_reply(
                        status,
                        "the server says more changes wait but the cursor did not move",
                    ));
                }
                store.anchor_clock(page.server_time_ms)?;
                let n = page.changes.len() as u64;
                let changes: Vec<RemoteChange> = page
                    .changes
                    .into_iter()
                    .map(|c| RemoteChange {
                        doc: c.doc,
                        change: c.change.into_vec(),
                    })
                    .collect();
                let moves = PulledMoves {
                    moved_out: page.moved_out,
                    moved_in: page.moved_in,
                };
                let merge = store.apply_pulled_page(&grid, page.next, &changes, &moves)?;
                self.report.changed(merge.changed.iter().cloned());
                if merge.dropped_docs > 0 {
                    self.report.everything();
                    self.report.dropped_docs += merge.dropped_docs as u64;
                    self.report.set_aside += merge.set_aside as u64;
                    // Refusals of documents that just left no longer matter.
                    let mut kept = Vec::with_capacity(self.refused.len());
                    for (doc, why) in std::mem::take(&mut self.refused) {
                        if store.doc_grid(&doc)?.is_some() {
                            kept.push((doc, why));
                        }
                    }
                    self.refused = kept;
                }
                // Documents that moved into this device's buildings: fetched whole after the
                // pull (their history before the move was never in this feed).
                for doc in moves.moved_in {
                    if !doc.is_empty()
                        && doc.len() <= 200
                        && !self.repair_queue.contains(&doc)
                        && self
                            .repair_current
                            .as_ref()
                            .is_none_or(|(d, _, _)| *d != doc)
                    {
                        self.repair_queue.push_back(doc);
                    }
                }
                self.report.pulled += merge.applied as u64;
                self.report.duplicates += merge.duplicates as u64;
                self.report.conflicts += merge.new_conflicts.len();
                for (task, event, why) in merge.newly_rejected {
                    self.report.rejected.push((task, format!("{event}: {why}")));
                }
                self.grid_pulled += n;
                if !page.more {
                    self.next_grid();
                }
            }
        }
        Ok(())
    }
}
