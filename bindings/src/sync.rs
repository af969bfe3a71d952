//! Sync: enrollment, one whole sync with progress, and the honest status.
//!
//! The core's engine is sans-I/O, so this driver holds the store's mutex only while the
//! engine reads or writes the store, and releases it while a request is on the network:
//! the screens keep working during a sync.

use std::sync::Arc;

use xiuhua_core as core;
use xiuhua_core::sync::http::HttpTransport;
use xiuhua_core::sync::{SyncEngine, SyncOptions, Transport};

use crate::error::{Result, XiuhuaError};
use crate::store::{ChangeEvent, ChangeOrigin, XiuhuaStore, open_core};

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
}

impl From<core::sync::proto::Grant> for Grant {
    fn from(g: core::sync::proto::Grant) -> Self {
        Grant {
            grid: g.grid,
            role: g.role,
            buildings: g.buildings,
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
}

/// A document the server refused, with its reason.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Refusal {
    pub doc: String,
    pub reason: String,
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

/// What one sync did.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncReport {
    pub pushed: u64,
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
            pulled: r.pulled,
            duplicates: r.duplicates,
            rejected: refusals(r.rejected),
            conflicts: u64::try_from(r.conflicts).unwrap_or(u64::MAX),
            purged_grids: r.purged_grids,
            bytes_sent: r.bytes_sent,
            bytes_received: r.bytes_received,
            duration_ms: r.duration_ms,
            bootstrapped_docs: r.bootstrapped_docs,
            waiting_changes: r.waiting_changes,
            repaired_docs: r.repaired_docs,
            held_docs: r.held_docs,
        }
    }
}

fn busy() -> XiuhuaError {
    XiuhuaError::Sync {
        detail: "a sync or an enrollment is already running".into(),
    }
}

#[uniffi::export]
impl XiuhuaStore {
    /// Exchanges a one-time enrollment code (printed at the station) for this device's
    /// identity and tokens, saved in the store. The store then acts as the device and user
    /// the server assigned; this needs a store that holds no data yet (enroll before the
    /// first write), else [`XiuhuaError::InvalidInput`].
    pub fn enroll(
        &self,
        server_url: String,
        code: String,
        device_name: String,
    ) -> Result<Enrollment> {
        let _sync = self.sync_lock.try_lock().map_err(|_| busy())?;
        let mut transport = HttpTransport::new(&server_url)?;
        // No store lock while the request is on the network.
        let answer = core::sync::enroll(&mut transport, &code, &device_name)?;
        let mut store = self.lock()?;
        let current = store.actor().clone();
        let role = answer
            .grants
            .first()
            .and_then(|g| g.role.parse::<core::Role>().ok())
            .unwrap_or(current.role);
        let actor = core::Actor::new(&answer.user, &answer.user_name, role, &answer.device)?;
        if actor != current {
            let empty = store.outbox_len()? == 0 && store.export_all()?.is_empty();
            if !empty {
                return Err(XiuhuaError::invalid(
                    "store",
                    format!(
                        "this store already holds data written as device {}; enroll with a new, empty store",
                        current.device
                    ),
                ));
            }
            // Open the new one first: on failure the store stays as it was.
            let reopened = open_core(&self.location, actor)?;
            *store = reopened;
        }
        store.save_enrollment(transport.base_url(), &answer)?;
        Ok(Enrollment {
            server_url: transport.base_url().to_string(),
            device: answer.device,
            user: answer.user,
            user_name: answer.user_name,
            grants: answer.grants.into_iter().map(Grant::from).collect(),
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
        let url = HttpTransport::new(&server_url)?.base_url().to_string();
        self.with(|s| {
            let mut creds = s.credentials()?.ok_or(core::Error::NotEnrolled)?;
            creds.server_url = url;
            s.save_credentials(&creds)
        })
    }

    /// Forgets the credentials and grants (sign out). The data stays.
    pub fn sign_out(&self) -> Result<()> {
        let _sync = self.sync_lock.try_lock().map_err(|_| busy())?;
        self.with(|s| s.clear_credentials())
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
            interrupted: !running && status.unfinished_since_ms.is_some(),
            waiting_changes: status.waiting_changes,
            waiting_docs: status.waiting_docs,
            last_sync: status.last_sync.map(crate::status::LastSync::from),
        })
    }

    /// Runs one whole sync with the station's server: push, escalate, bootstrap, pull.
    /// Blocking; call it from a background thread. Either it finishes and is recorded as a
    /// success, or it returns the error, recorded in the status (never a success).
    pub fn sync(&self, progress: Option<Arc<dyn SyncProgressListener>>) -> Result<SyncReport> {
        let _sync = self.sync_lock.try_lock().map_err(|_| busy())?;
        let creds = self
            .with(|s| s.credentials())?
            .ok_or_else(|| XiuhuaError::from(core::Error::NotEnrolled))?;
        let mut transport = HttpTransport::new(&creds.server_url)?;
        let mut engine = SyncEngine::new(&creds, SyncOptions::default());
        loop {
            let request = {
                let mut store = self.lock()?;
                engine.next_request(&mut store)?
            };
            let Some(request) = request else { break };
            if let Some(p) = &progress {
                let (phase, done, total) = engine.progress();
                let _ = p.on_progress(phase.into(), done, total);
            }
            let reply = transport.post(request.path, request.body, request.bearer.as_deref());
            let mut store = self.lock()?;
            match reply {
                Ok((status, body)) => engine.handle_response(&mut store, status, &body)?,
                Err(e) => return Err(engine.transport_failed(&mut store, e).into()),
            }
        }
        let report = {
            let mut store = self.lock()?;
            engine.finish(&mut store)?
        };
        if let Some(p) = &progress {
            let _ = p.on_progress(SyncPhase::Done, report.pushed + report.pulled, None);
        }
        if report.pulled > 0
            || report.bootstrapped_docs > 0
            || report.repaired_changes > 0
            || !report.purged_grids.is_empty()
        {
            // The core's report does not list the documents that changed: refresh all.
            self.notify(ChangeEvent {
                origin: ChangeOrigin::Remote,
                docs: Vec::new(),
                everything: true,
            });
        }
        Ok(SyncReport::from(report))
    }
}
