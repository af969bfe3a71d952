//! Sync: enrollment, one whole sync with progress, and the honest status.
//!
//! The core's engine is sans-I/O, so this driver holds the store's mutex only while the
//! engine reads or writes the store, and releases it while a request is on the network:
//! the screens keep working during a sync.

use std::sync::Arc;

use xiuhua_core as core;
use xiuhua_core::sync::SyncOptions;
use xiuhua_core::sync::http::HttpTransport;

use crate::error::{Result, XiuhuaError};
use crate::store::{ChangeEvent, ChangeOrigin, ChangedDoc, XiuhuaStore};

/// Where a sync stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum SyncPhase {
    Authenticate,
    Push,
    Escalate,
    Bootstrap,
    Pull,
    Done,
}

impl From<core::sync::SyncPhase> for SyncPhase {
    fn from(p: core::sync::SyncPhase) -> Self {
        use core::sync::SyncPhase as P;
        match p {
            P::Authenticate => SyncPhase::Authenticate,
            P::Push => SyncPhase::Push,
            P::Escalate => SyncPhase::Escalate,
            P::Bootstrap => SyncPhase::Bootstrap,
            P::Pull => SyncPhase::Pull,
            P::Done => SyncPhase::Done,
        }
    }
}

/// Implemented by the app to show a sync's progress.
#[uniffi::export(with_foreign)]
pub trait SyncProgressListener: Send + Sync {
    /// `done` of `total` (when known) in `phase`: changes for push and pull, documents for
    /// bootstrap. Called on the syncing thread; an exception thrown here is ignored.
    fn on_progress(&self, phase: SyncPhase, done: u64, total: Option<u64>) -> Result<()>;
}

/// A grant: what the user may do in one grid.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Grant {
    pub grid: String,
    pub role: String,
    /// For 楼门长: their buildings; empty = the whole grid.
    pub buildings: Vec<String>,
    /// The grid's community (its id; empty from a server that predates numbers).
    pub community: String,
}

impl From<core::sync::proto::Grant> for Grant {
    fn from(g: core::sync::proto::Grant) -> Self {
        Grant {
            grid: g.grid,
            role: g.role,
            buildings: g.buildings,
            community: g.community,
        }
    }
}

/// What enrollment established (the tokens stay inside the encrypted store).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Enrollment {
    pub server_url: String,
    /// The device id the server assigned: the store now acts as this device.
    pub device: String,
    pub user: String,
    pub user_name: String,
    pub grants: Vec<Grant>,
    /// What became of the data the store held.
    pub kind: EnrollmentKind,
}

/// How an enrollment related to what the store held.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum EnrollmentKind {
    /// The store held nothing.
    Fresh,
    /// The store held the same user's data (written as device `previous`): kept, and its
    /// unsynced work syncs with the next sync.
    Continued { previous: String },
    /// The store held another user's data, all synced: it was erased
    /// (`documents` deleted); the next sync brings what the new user's grants cover.
    HandedOver { documents: u64 },
}

impl From<core::sync::EnrollKind> for EnrollmentKind {
    fn from(k: core::sync::EnrollKind) -> Self {
        match k {
            core::sync::EnrollKind::Fresh => EnrollmentKind::Fresh,
            core::sync::EnrollKind::Continued { previous } => {
                EnrollmentKind::Continued { previous }
            }
            core::sync::EnrollKind::HandedOver { documents } => {
                EnrollmentKind::HandedOver { documents }
            }
        }
    }
}

/// What a sign-out deleted.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SignedOut {
    /// Documents erased from the phone.
    pub documents: u64,
    /// Unsynced changes deleted with them (only when forced), and their documents.
    pub unsynced_changes: u64,
    pub unsynced_documents: u64,
}

/// Work made on this phone that the station has not received yet.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct UnsyncedWork {
    pub changes: u64,
    pub documents: u64,
    pub households: u64,
    pub records: u64,
    pub tasks: u64,
    /// "3 changes to 2 documents (1 household, 1 record)".
    pub description: String,
}

/// A document the server refused, with its reason.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Refusal {
    pub doc: String,
    pub reason: String,
}

impl XiuhuaStore {
    /// Runs a core routine that reaches the store step by step (`core::sync::WithStore`):
    /// the store is locked for each step only, never while a request is on the network. A
    /// store made unusable by an earlier panic is reported as such, not as the routine's
    /// error.
    fn step_by_step<R>(
        &self,
        run: impl FnOnce(&mut core::sync::WithStore<'_>) -> core::Result<R>,
    ) -> Result<R> {
        let mut unusable: Option<XiuhuaError> = None;
        let r = run(&mut |step| match self.lock() {
            Ok(mut store) => step(&mut store),
            Err(e) => {
                unusable = Some(e);
                Err(core::Error::invalid("store", "unusable"))
            }
        });
        match (r, unusable) {
            (_, Some(e)) => Err(e),
            (r, None) => Ok(r?),
        }
    }

    fn policy(&self) -> core::sync::http::TransportPolicy {
        self.transport_policy
            .lock()
            .map_or_else(|_| Default::default(), |p| p.clone())
    }

    /// Applies `change` to a copy of the transport policy, and keeps it if it checks.
    fn update_policy(
        &self,
        change: impl FnOnce(&mut core::sync::http::TransportPolicy),
    ) -> Result<()> {
        let mut next = self.policy();
        change(&mut next);
        next.check()?;
        let mut p = self
            .transport_policy
            .lock()
            .map_err(|_| XiuhuaError::internal("the transport settings are unusable"))?;
        *p = next;
        Ok(())
    }

    /// A transport to `url` under the app's settings.
    fn transport(&self, url: &str) -> Result<HttpTransport> {
        Ok(HttpTransport::with_policy(url, &self.policy())?)
    }
}

fn refusals(v: Vec<(String, String)>) -> Vec<Refusal> {
    v.into_iter()
        .map(|(doc, reason)| Refusal { doc, reason })
        .collect()
}

/// What the sync screen shows. A sync that did not finish never counts as a success.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncStatus {
    pub enrolled: bool,
    pub server_url: Option<String>,
    /// Local changes no server has acknowledged yet.
    pub pending_changes: i64,
    /// When the last sync that finished did so.
    pub last_success_ms: Option<i64>,
    /// What went wrong in the last sync that failed, unless a sync finished since.
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
    /// Documents whose changes the server refused at the last finished sync.
    pub refused: Vec<Refusal>,
    /// A sync is running now.
    pub running: bool,
    /// Local changes kept aside because the grant covering their document was lost: not
    /// pushed, not lost ([`XiuhuaStore::set_aside`]).
    pub set_aside_changes: i64,
    /// The last sync started and neither finished nor failed (the app was killed during
    /// it): say "the last sync did not finish". Nothing is lost; sync again.
    pub interrupted: bool,
    /// Remote changes waiting for changes they depend on, and their documents (repaired
    /// from the server automatically after a few syncs).
    pub waiting_changes: i64,
    pub waiting_docs: i64,
    /// What the last sync that ended did, finished or failed.
    pub last_sync: Option<crate::status::LastSync>,
}

/// Local changes of one document kept aside because its grant was lost (a grid
/// withdrawn, a building taken off a 楼门长).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SetAside {
    pub doc: String,
    pub grid: String,
    pub reason: String,
    pub changes: i64,
    pub at_ms: i64,
}

/// What one sync did.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncReport {
    pub pushed: u64,
    /// Records and tasks whose provisional number this sync replaced with a real one.
    pub renumbered: u64,
    pub pulled: u64,
    pub duplicates: u64,
    /// Task events newly rejected, and documents or escalations the server refused.
    pub rejected: Vec<Refusal>,
    pub conflicts: u64,
    pub purged_grids: Vec<String>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub duration_ms: u64,
    pub bootstrapped_docs: u64,
    /// The refresh token was refused while the access token still worked: the sync ran,
    /// and the device must be enrolled again (its data is kept) before long.
    pub refresh_refused: Option<String>,
    /// Documents removed because a narrowed grant no longer covers them.
    pub dropped_docs: u64,
    /// Local changes kept aside because their grant was lost (see `set_aside`).
    pub set_aside: u64,
    /// Remote changes still waiting for their dependencies when the sync ended.
    pub waiting_changes: u64,
    /// Documents repaired from the server during this sync.
    pub repaired_docs: u64,
    /// Refused documents no longer sent (see `XiuhuaStore::refused_changes`).
    pub held_docs: Vec<String>,
}

impl From<core::sync::SyncReport> for SyncReport {
    fn from(r: core::sync::SyncReport) -> Self {
        SyncReport {
            pushed: r.pushed,
            renumbered: r.renumbered,
            pulled: r.pulled,
            duplicates: r.duplicates,
            rejected: refusals(r.rejected),
            conflicts: u64::try_from(r.conflicts).unwrap_or(u64::MAX),
            purged_grids: r.purged_grids,
            bytes_sent: r.bytes_sent,
            bytes_received: r.bytes_received,
            duration_ms: r.duration_ms,
            bootstrapped_docs: r.bootstrapped_docs,
            refresh_refused: r.refresh_refused,
            dropped_docs: r.dropped_docs,
            set_aside: r.set_aside,
            waiting_changes: r.waiting_changes,
            repaired_docs: r.repaired_docs,
            held_docs: r.held_docs,
        }
    }
}

/// The app's listener as the core's progress trait.
struct Listener(Arc<dyn SyncProgressListener>);

impl core::sync::SyncProgress for Listener {
    fn on_progress(&self, phase: core::sync::SyncPhase, done: u64, total: Option<u64>) {
        // An exception thrown by the app's listener is ignored.
        let _ = self.0.on_progress(phase.into(), done, total);
    }
}

fn busy() -> XiuhuaError {
    XiuhuaError::Sync {
        detail: "a sync or an enrollment is already running".into(),
    }
}

/// One grid's first sync, as the server estimates it ([`XiuhuaStore::first_sync_estimate`]).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct GridEstimate {
    pub grid: String,
    /// Households, 民情 records and tasks this device would receive.
    pub documents: u64,
    /// Their stored size: an upper bound of the download.
    pub bytes: u64,
}

#[uniffi::export]
impl XiuhuaStore {
    /// Exchanges a one-time enrollment code (printed at the station) for this device's
    /// identity and tokens, saved in the store, which then acts as the device and user the
    /// server assigned. The identity rules are the core's (`enroll_store`): a store holding
    /// data of the same user keeps it and its unsynced work ([`EnrollmentKind::Continued`]:
    /// after [`XiuhuaError::ReenrollmentNeeded`]); a code for another user erases the
    /// store first when nothing is unsynced ([`EnrollmentKind::HandedOver`]), else
    /// [`XiuhuaError::UnsyncedWork`] and nothing changes.
    pub fn enroll(
        &self,
        server_url: String,
        code: String,
        device_name: String,
    ) -> Result<Enrollment> {
        let _sync = self.sync_lock.try_lock().map_err(|_| busy())?;
        let mut transport = self.transport(&server_url)?;
        let base_url = transport.base_url().to_string();
        let done = self.step_by_step(|with_store| {
            core::sync::enroll_store(with_store, &mut transport, &base_url, &code, &device_name)
        })?;
        self.notify_all();
        let answer = done.answer;
        Ok(Enrollment {
            server_url: base_url,
            device: answer.device,
            user: answer.user,
            user_name: answer.user_name,
            grants: answer.grants.into_iter().map(Grant::from).collect(),
            kind: done.kind.into(),
        })
    }

    /// The grants known from enrollment.
    pub fn grants(&self) -> Result<Vec<Grant>> {
        let g = self.with(|s| s.grants())?;
        Ok(g.into_iter().map(Grant::from).collect())
    }

    /// The grids this device works on: every granted grid and every grid pulled before.
    pub fn grids(&self) -> Result<Vec<String>> {
        self.with(|s| s.sync_grids())
    }

    /// The station's server URL, when enrolled.
    pub fn server_url(&self) -> Result<Option<String>> {
        Ok(self.with(|s| s.credentials())?.map(|c| c.server_url))
    }

    /// Points this device at another address of its station's server (same server, new
    /// address). Needs an enrolled device.
    pub fn set_server_url(&self, server_url: String) -> Result<()> {
        let url = self.policy().check_url(&server_url)?;
        self.with(|s| {
            let mut creds = s.credentials()?.ok_or(core::Error::NotEnrolled)?;
            creds.server_url = url;
            s.save_credentials(&creds)
        })
    }

    /// Signs out: forgets the credentials and erases the residents' data from this phone.
    /// With work not yet sent to the station it is refused with
    /// [`XiuhuaError::UnsyncedWork`] (how many changes, to how many documents; nothing
    /// changed) unless `force`, the user's explicit confirmation that this work is to be
    /// deleted. Returns what was deleted.
    pub fn sign_out(&self, force: bool) -> Result<SignedOut> {
        let _sync = self.sync_lock.try_lock().map_err(|_| busy())?;
        let out = self.with(|s| s.sign_out(force))?;
        self.notify_all();
        Ok(SignedOut {
            documents: out.documents,
            unsynced_changes: out.unsynced.changes,
            unsynced_documents: out.unsynced.documents,
        })
    }

    /// Work made on this phone that the station has not received yet (what a sign-out or a
    /// handover would delete).
    pub fn unsynced_work(&self) -> Result<UnsyncedWork> {
        let w = self.with(|s| s.unsynced_work())?;
        Ok(UnsyncedWork {
            changes: w.changes,
            documents: w.documents,
            households: w.households,
            records: w.records,
            tasks: w.tasks,
            description: w.describe(),
        })
    }

    /// Changes kept aside because their grant was lost, one entry per document.
    pub fn set_aside(&self) -> Result<Vec<SetAside>> {
        let v = self.with(|s| s.set_aside())?;
        Ok(v.into_iter()
            .map(|a| SetAside {
                doc: a.doc,
                grid: a.grid,
                reason: a.reason,
                changes: a.changes,
                at_ms: a.at_ms,
            })
            .collect())
    }

    /// Forgets the changes kept aside for `doc` (after the user confirmed). Returns how many.
    pub fn discard_set_aside(&self, doc: String) -> Result<u64> {
        let n = self.with(|s| s.discard_set_aside(&doc))?;
        Ok(u64::try_from(n).unwrap_or(u64::MAX))
    }

    /// Stops the running sync, if any, at its next request boundary (Kotlin coroutine and
    /// Swift task cancellation call this): it ends with a `cancelled` error, keeping what
    /// it received, and the status records that it did not finish. No effect otherwise.
    pub fn cancel_sync(&self) {
        self.cancel.cancel();
    }

    /// Sets the connect and whole-request timeouts of the following syncs, in ms (0 = the
    /// defaults: 10 s to connect, 120 s per request).
    pub fn set_sync_timeouts(&self, connect_ms: u64, request_ms: u64) {
        if let Ok(mut p) = self.transport_policy.lock() {
            p.connect = std::time::Duration::from_millis(connect_ms);
            p.request = std::time::Duration::from_millis(request_ms);
        }
    }

    /// Trusts only this PEM certificate (the station's own self-signed certificate, or
    /// its own CA) for the following syncs and enrollments, instead of the public roots;
    /// `None` goes back to the public roots. A text that holds no certificate is refused
    /// with `Invalid` and changes nothing. Set it at each launch, like the timeouts.
    pub fn trust_station_certificate(&self, pem: Option<String>) -> Result<()> {
        use core::sync::http::Trust;
        let trust = pem.map_or(Trust::Default, |p| Trust::Pinned(p.into_bytes()));
        self.update_policy(|p| p.trust = trust)
    }

    /// Allows plain http:// to these hosts, addresses and networks besides this device
    /// (`192.168.10.0/24`, `192.168.10.2`, `station.lan`): a station LAN the user chose.
    /// Everything else needs https:// (enrollment, sync and `set_server_url` refuse it
    /// before connecting). An entry that is none of these is refused with `Invalid` and
    /// changes nothing. An empty list allows loopback only (the default).
    pub fn allow_plain_http(&self, hosts: Vec<String>) -> Result<()> {
        self.update_policy(|p| p.plain_http = hosts)
    }

    /// What the sync screen shows.
    pub fn sync_status(&self) -> Result<SyncStatus> {
        let running = self.sync_lock.try_lock().is_err();
        let (status, creds) = self.with(|s| Ok((s.sync_status()?, s.credentials()?)))?;
        Ok(SyncStatus {
            enrolled: creds.is_some(),
            server_url: creds.map(|c| c.server_url),
            pending_changes: status.pending_outbox,
            last_success_ms: status.last_success_ms,
            last_error: status.last_error,
            last_error_ms: status.last_error_ms,
            refused: refusals(status.refused_docs),
            running,
            set_aside_changes: status.set_aside_changes,
            interrupted: !running && status.unfinished_since_ms.is_some(),
            waiting_changes: status.waiting_changes,
            waiting_docs: status.waiting_docs,
            last_sync: status.last_sync.map(crate::status::LastSync::from),
        })
    }

    /// How big the first sync will be, asked of the server before it starts: per granted
    /// grid, the documents this device would receive and their size in bytes (an upper
    /// bound: the download is compressed). For the enrollment screen's "3,214 records,
    /// about 2.6 MB — download now or on Wi-Fi?". Blocking (one request); writes nothing.
    pub fn first_sync_estimate(&self) -> Result<Vec<GridEstimate>> {
        let creds = self
            .with(|s| s.credentials())?
            .ok_or_else(|| XiuhuaError::from(core::Error::NotEnrolled))?;
        let mut transport = self.transport(&creds.server_url)?;
        // The store is not locked while the request waits.
        let e = core::sync::estimate(&creds, &mut transport)?;
        Ok(e.grids
            .into_iter()
            .map(|g| GridEstimate {
                grid: g.grid,
                documents: g.docs,
                bytes: g.bytes,
            })
            .collect())
    }

    /// Runs one whole sync with the station's server: session, push, escalate, bootstrap,
    /// pull — the core's one sync loop (`xiuhua_core::sync::drive`), holding the store's
    /// lock only between requests. Blocking; call it from a background thread. Either it
    /// finishes and is recorded as a success, or it returns the error, recorded in the
    /// status (never a success). [`XiuhuaStore::cancel_sync`] stops it at the next request.
    pub fn sync(&self, progress: Option<Arc<dyn SyncProgressListener>>) -> Result<SyncReport> {
        let _sync = self.sync_lock.try_lock().map_err(|_| busy())?;
        self.cancel.reset();
        let creds = self
            .with(|s| s.credentials())?
            .ok_or_else(|| XiuhuaError::from(core::Error::NotEnrolled))?;
        let mut transport = self.transport(&creds.server_url)?;
        let listener = progress.map(Listener);
        let report = self.step_by_step(|with_store| {
            core::sync::drive(
                with_store,
                &mut transport,
                listener
                    .as_ref()
                    .map(|l| l as &dyn core::sync::SyncProgress),
                &creds,
                SyncOptions::default(),
                Some(&self.cancel),
            )
        })?;
        if report.changed_everything {
            self.notify_all();
        } else if !report.changed_docs.is_empty() {
            // The documents this sync changed, so that a screen refreshes only if it shows one.
            self.notify(ChangeEvent {
                origin: ChangeOrigin::Remote,
                docs: report
                    .changed_docs
                    .iter()
                    .map(|(id, kind)| ChangedDoc {
                        id: id.clone(),
                        kind: kind.as_str().to_string(),
                    })
                    .collect(),
                everything: false,
            });
        }
        Ok(SyncReport::from(report))
    }
}
