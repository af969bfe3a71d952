//! The sync client: a sans-I/O engine ([`engine::SyncEngine`]) that says which request to
//! send next and what to do with each reply, a [`Transport`] that carries the bytes (an HTTP
//! one, [`http::HttpTransport`], behind the `http` feature), and the driver [`sync`] that
//! runs one whole sync. The wire types live in [`proto`]; the design is ADR 0001
//! (`docs/adr/0001-sync.md`).
//!
//! One sync, in order (see [`engine`] for the details and the decisions):
//! refresh the access token when it expires within a minute → push the outbox in batches
//! (escalations are sent to `/v1/escalate` before the task's `escalate` event is pushed) →
//! for each grid: bootstrap from a bundle when the device holds nothing of it, then pull
//! pages until the feed is drained → record the status. Every reply's `server_time_ms`
//! anchors the clock; any `purge_grids` a reply names are purged at once.

pub mod engine;
#[cfg(feature = "http")]
pub mod http;
pub mod link;
pub mod proto;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use engine::{Request, SyncEngine, SyncOptions, SyncPhase, SyncProgress, SyncReport};

use crate::error::{Error, Result};
use crate::store::Store;

/// What a device needs to talk to its server, kept in the store's `meta` table (the store
/// is encrypted at rest). Tokens are never printed by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// Base URL of the station's server, e.g. `https://sync.example:8443`.
    pub server_url: String,
    /// The device id the server assigned at enrollment: also the store's actor device.
    pub device: String,
    pub user: String,
    pub user_name: String,
    pub access_token: String,
    /// When the access token expires, in server ms.
    pub access_expires_ms: i64,
    pub refresh_token: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("server_url", &self.server_url)
            .field("device", &self.device)
            .field("user", &self.user)
            .field("user_name", &self.user_name)
            .field("access_expires_ms", &self.access_expires_ms)
            .finish_non_exhaustive()
    }
}

/// What the UI shows about sync, honestly: a sync that did not finish never counts as a
/// success.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncStatus {
    /// Local changes no server has acknowledged yet.
    pub pending_outbox: i64,
    /// When the last sync that finished did so (clock-anchored ms).
    pub last_success_ms: Option<i64>,
    /// What went wrong in the last sync that failed, unless a sync finished since.
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
    /// Documents whose changes the server refused at the last finished sync: (document,
    /// reason). Their changes stay in the outbox until discarded
    /// ([`Store::refused_changes`], [`Store::discard_refused`]).
    pub refused_docs: Vec<(String, String)>,
    /// Local changes kept aside because the grant covering their document was lost
    /// ([`Store::set_aside`]): not pushed, not lost.
    pub set_aside_changes: i64,
    /// Remote changes waiting here for changes they depend on, and their documents. A
    /// document waiting through [`crate::store::REPAIR_AFTER_SYNCS`] finished syncs is
    /// repaired from the server at the next one.
    pub waiting_changes: i64,
    pub waiting_docs: i64,
    /// A sync started at this time and neither finished nor failed: when no sync is running
    /// now, the last one was interrupted (the app was killed). Nothing is lost: what was not
    /// acknowledged is still in the outbox.
    pub unfinished_since_ms: Option<i64>,
    /// What the last sync that ended did, finished or failed (a failed sync still says what
    /// it pushed, pulled and purged).
    pub last_sync: Option<crate::store::LastSync>,
}

/// An escalation recorded on this device, waiting to be sent to `/v1/escalate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEscalation {
    pub id: i64,
    pub task: String,
    pub grid: String,
    /// A [`crate::model::Tier`] string.
    pub tier: String,
    pub unit: Option<String>,
    /// The first outbox entry of the change that added the `escalate` event: the task's
    /// entries from there on are pushed only once the server accepted the escalation.
    pub outbox_id: i64,
}

/// Why a [`Transport`] could not deliver a request or read its reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The server could not be reached (DNS, refused, TLS handshake, no network).
    #[error("cannot reach the server: {0}")]
    Connect(String),
    /// The server did not answer in time.
    #[error("the server did not answer in time: {0}")]
    Timeout(String),
    /// The connection broke, or the reply could not be read.
    #[error("{0}")]
    Other(String),
}

impl From<TransportError> for Error {
    fn from(e: TransportError) -> Self {
        Error::Network(e.to_string())
    }
}

/// Carries one request to the server and brings back its status and body. The body is
/// already encoded ([`proto::encode`]); an implementation sets the content type
/// ([`proto::CONTENT_TYPE`]) and the protocol header ([`proto::PROTOCOL_HEADER`] =
/// [`proto::PROTOCOL_VERSION`]), and `Authorization: Bearer …` when `bearer` is given.
pub trait Transport {
    fn post(
        &mut self,
        path: &str,
        body: Vec<u8>,
        bearer: Option<&str>,
    ) -> Result<(u16, Vec<u8>), TransportError>;
}

/// Runs one whole sync of `store` with the server through `transport`, with the
/// credentials saved in the store. Returns what it did; on failure the error is recorded
/// in the store's status (never a success) and returned. See [`engine`].
pub fn sync(
    store: &mut Store,
    transport: &mut dyn Transport,
    progress: Option<&dyn SyncProgress>,
) -> Result<SyncReport> {
    let creds = match store.credentials()? {
        Some(c) => c,
        None => {
            let e = Error::NotEnrolled;
            store.record_sync_error(&e)?;
            return Err(e);
        }
    };
    sync_with(store, transport, progress, &creds, SyncOptions::default())
}

/// [`sync`] with explicit credentials and options (tests, benchmarks).
pub fn sync_with(
    store: &mut Store,
    transport: &mut dyn Transport,
    progress: Option<&dyn SyncProgress>,
    creds: &Credentials,
    options: SyncOptions,
) -> Result<SyncReport> {
    drive(
        &mut |step| step(store),
        transport,
        progress,
        creds,
        options,
        None,
    )
}

/// Gives one step of a sync the store: `step` runs with it, and whatever lock guards the
/// store is taken for the step only. The bindings lock their shared store here, so that
/// the screens keep working while a request is on the network.
pub type WithStore<'a> = dyn FnMut(&mut dyn FnMut(&mut Store) -> Result<()>) -> Result<()> + 'a;

/// Stops a running sync from another thread (a cancelled coroutine or task): the sync
/// ends at the next request boundary, before sending anything more, with the store
/// consistent (every reply received so far is applied, nothing half-applied) and the
/// status recording that it did not finish. A flag shared by clones.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl CancelFlag {
    pub fn new() -> CancelFlag {
        CancelFlag::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
    /// Clears the flag (at the start of a sync).
    pub fn reset(&self) {
        self.0.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The error of a cancelled sync (`Error::Sync` with code `cancelled`).
pub fn cancelled_error() -> Error {
    Error::Sync {
        status: 0,
        code: "cancelled".into(),
        message: "the sync was cancelled; what was received so far is kept".into(),
    }
}

/// The one sync loop, for every caller (core's [`sync`], the bindings): runs the engine,
/// reaching the store only through `with_store` for each step and never while a request is
/// on the network, and checks `cancel` before every request.
pub fn drive(
    with_store: &mut WithStore<'_>,
    transport: &mut dyn Transport,
    progress: Option<&dyn SyncProgress>,
    creds: &Credentials,
    options: SyncOptions,
    cancel: Option<&CancelFlag>,
) -> Result<SyncReport> {
    let mut engine = Some(SyncEngine::new(creds, options));
    loop {
        let mut request = None;
        let mut stopped = None;
        with_store(&mut |store| {
            let Some(e) = engine.as_mut() else {
                return Err(Error::invalid("sync", "the sync already ended"));
            };
            if cancel.is_some_and(CancelFlag::is_cancelled) {
                stopped = Some(e.cancelled(store));
                return Ok(());
            }
            request = e.next_request(store)?;
            Ok(())
        })?;
        if let Some(e) = stopped {
            return Err(e);
        }
        let Some(request) = request else { break };
        if let (Some(p), Some(e)) = (progress, engine.as_ref()) {
            let (phase, done, total) = e.progress();
            p.on_progress(phase, done, total);
        }
        match transport.post(request.path, request.body, request.bearer.as_deref()) {
            Ok((status, body)) => with_store(&mut |store| match engine.as_mut() {
                Some(e) => e.handle_response(store, status, &body),
                None => Err(Error::invalid("sync", "the sync already ended")),
            })?,
            Err(t) => {
                let mut failed = None;
                with_store(&mut |store| {
                    if let Some(e) = engine.as_mut() {
                        failed = Some(e.transport_failed(store, t.clone()));
                    }
                    Ok(())
                })?;
                return Err(failed.unwrap_or_else(|| Error::from(t)));
            }
        }
    }
    let mut report = None;
    with_store(&mut |store| {
        if let Some(e) = engine.take() {
            report = Some(e.finish(store)?);
        }
        Ok(())
    })?;
    let report = report.ok_or_else(|| Error::invalid("sync", "the sync already ended"))?;
    if let Some(p) = progress {
        p.on_progress(SyncPhase::Done, report.pushed + report.pulled, None);
    }
    Ok(report)
}

/// Most request rounds of one [`repair_document`].
pub const REPAIR_MAX_ROUNDS: usize = 8;

/// Repairs one document whose copy here may miss some of the server's changes, with
/// Automerge's sync protocol over `/v1/repair` (read-only on the server; ADR 0001): sends
/// the document's sync message, applies the changes of the server's reply through the
/// store (one transaction each, projection kept), and loops until the server answers
/// with no message, or with one that carries no change (what remains is local changes the
/// server lacks: those go by push), at most [`REPAIR_MAX_ROUNDS`] rounds. A document not
/// here yet is fetched whole. Uses the saved access token (a sync refreshes it). Returns
/// how many changes were applied here.
pub fn repair_document(
    store: &mut Store,
    transport: &mut dyn Transport,
    doc: &str,
) -> Result<usize> {
    let creds = store.credentials()?.ok_or(Error::NotEnrolled)?;
    let mut state = automerge::sync::State::new();
    let mut applied = 0;
    for _ in 0..REPAIR_MAX_ROUNDS {
        let Some(message) = store.repair_message(doc, &mut state)? else {
            return Ok(applied);
        };
        let body = proto::encode(&proto::RepairRequest {
            doc: doc.to_string(),
            message: serde_bytes::ByteBuf::from(message),
        });
        let (status, reply) = transport.post("/v1/repair", body, Some(&creds.access_token))?;
        if !(200..300).contains(&status) {
            return Err(engine::error_from_reply(status, &reply));
        }
        let r: proto::RepairResponse = proto::decode(&reply).map_err(|e| Error::Sync {
            status,
            code: "bad_reply".into(),
            message: e.to_string(),
        })?;
        let Some(m) = r.message else {
            return Ok(applied);
        };
        match store.apply_repair_message(doc, &mut state, &m)? {
            None => return Ok(applied),
            Some(merge) => applied += merge.applied,
        }
    }
    Err(Error::Sync {
        status: 200,
        code: "repair_unfinished".into(),
        message: format!("document {doc} still differs after {REPAIR_MAX_ROUNDS} repair rounds"),
    })
}

/// How big a first sync will be: per granted grid, the documents the phone would receive
/// and their stored bytes (`/v1/estimate`), so the app can say "3,214 documents, about
/// 2.6 MB" and let the worker wait for Wi-Fi. Asked right after enrollment with the saved
/// access token (a sync refreshes it; an expired one is refused 401 like any request, and
/// the app then just syncs). Writes nothing.
/// Takes the credentials (not the store), so that nothing is locked while it waits.
pub fn estimate(
    creds: &Credentials,
    transport: &mut dyn Transport,
) -> Result<proto::EstimateResponse> {
    let body = proto::encode(&proto::EstimateRequest {});
    let (status, reply) = transport.post("/v1/estimate", body, Some(&creds.access_token))?;
    if !(200..300).contains(&status) {
        return Err(engine::error_from_reply(status, &reply));
    }
    proto::decode(&reply).map_err(|e| Error::Sync {
        status,
        code: "bad_reply".into(),
        message: e.to_string(),
    })
}

/// Exchanges a one-time enrollment code (printed at the station) for a device id and tokens.
/// Save the answer with [`Store::save_enrollment`]; [`enroll_store`] does both with the
/// identity rules, and is what an app calls.
pub fn enroll(
    transport: &mut dyn Transport,
    code: &str,
    device_name: &str,
) -> Result<proto::EnrollResponse> {
    enroll_request(transport, code, device_name, None)
}

fn enroll_request(
    transport: &mut dyn Transport,
    code: &str,
    device_name: &str,
    previous_device: Option<String>,
) -> Result<proto::EnrollResponse> {
    let code = code.trim();
    if code.is_empty() {
        return Err(Error::invalid("code", "the enrollment code is empty"));
    }
    let device_name = crate::validate::non_empty("device_name", device_name, 100)?;
    let body = proto::encode(&proto::EnrollRequest {
        code: code.to_string(),
        device_name,
        previous_device,
    });
    let (status, reply) = transport.post("/v1/enroll", body, None)?;
    if (200..300).contains(&status) {
        return proto::decode(&reply).map_err(|e| Error::Sync {
            status,
            code: "bad_reply".into(),
            message: e.to_string(),
        });
    }
    Err(engine::error_from_enroll_reply(status, &reply))
}

/// How an enrollment related to what the store held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollKind {
    /// The store held nothing.
    Fresh,
    /// The store held data of the same user (written as `previous`): kept, and its outbox
    /// syncs as the new device's (the server accepts the previous device's changes from it).
    Continued { previous: String },
    /// The code was for another user than the store's data; the store had no unsynced work
    /// and was erased first (`documents` documents deleted).
    HandedOver { documents: u64 },
}

/// What [`enroll_store`] established.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub answer: proto::EnrollResponse,
    pub kind: EnrollKind,
}

fn refused_as_other_user(e: &Error) -> bool {
    matches!(e, Error::Sync { status: 409, code, .. } if code == "other_user" || code == "unknown_device")
}

/// Enrolls the store with a code, with the identity rules (one place for them; the
/// bindings call this):
/// - a store holding nothing is enrolled ([`EnrollKind::Fresh`]);
/// - a store holding data names the device it was written as; a code for the **same
///   user** keeps the data and the outbox ([`EnrollKind::Continued`]: a phone whose
///   credentials were lost, reset or revoked and re-admitted, or long expired);
/// - a code for **another user** (or a server that does not know the store's device) is a
///   handover: with no unsynced work the store is erased and enrolled for the new user
///   ([`EnrollKind::HandedOver`]; the server left the code unspent for that); with unsynced
///   work it is refused with [`Error::UnsyncedWork`] and nothing changes.
///
/// The store is reached only through `with_store`, never while a request is on the
/// network. Every failure leaves the store as it was.
pub fn enroll_store(
    with_store: &mut WithStore<'_>,
    transport: &mut dyn Transport,
    server_url: &str,
    code: &str,
    device_name: &str,
) -> Result<Enrolled> {
    let mut previous = None;
    let mut unsynced = crate::store::UnsyncedWork::default();
    with_store(&mut |s| {
        previous = s.previous_device()?;
        unsynced = s.unsynced_work()?;
        Ok(())
    })?;
    let (answer, handover) = match enroll_request(transport, code, device_name, previous.clone()) {
        Ok(a) => (a, false),
        Err(e) if previous.is_some() && refused_as_other_user(&e) => {
            if !unsynced.is_empty() {
                return Err(unsynced.refusal(
                    "enrolling this phone for another user",
                    "sync it as its current user first (enroll again with a code for that user if its credentials are lost), or sign out with force to delete it",
                ));
            }
            (enroll_request(transport, code, device_name, None)?, true)
        }
        Err(e) => return Err(e),
    };
    let mut kind = EnrollKind::Fresh;
    with_store(&mut |s| {
        if handover {
            // Unsynced work may have appeared while the request was on the network.
            let now = s.unsynced_work()?;
            if !now.is_empty() {
                return Err(now.refusal(
                    "enrolling this phone for another user",
                    "sync it first; the enrollment code was used: ask the station for a new one",
                ));
            }
            kind = EnrollKind::HandedOver {
                documents: s.erase_all()?,
            };
        } else if let Some(p) = &previous {
            kind = EnrollKind::Continued {
                previous: p.clone(),
            };
        }
        s.save_enrollment(server_url, &answer)
    })?;
    Ok(Enrolled { answer, kind })
}
