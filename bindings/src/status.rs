//! The clock and the parts of the sync status an app acts on: the time source (tests,
//! simulations, a trusted network time), whether the clock is anchored to the server, what
//! the last sync did, and the refused changes the user can discard.

use std::sync::Arc;

use xiuhua_core as core;

use crate::error::Result;
use crate::store::XiuhuaStore;

/// Implemented by the app to replace the device's wall clock (tests and simulations; an
/// app may also use a network time it trusts). Called on the calling thread with the store
/// lock held: return at once, and never call back into the store.
#[uniffi::export(with_foreign)]
pub trait TimeSource: Send + Sync {
    /// Milliseconds since the Unix epoch (may be wrong: 1970 after a battery swap).
    fn now_ms(&self) -> i64;
}

/// What the last sync that ended did, finished or failed: a failed sync still says what it
/// pushed, pulled and purged before it failed.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct LastSync {
    pub started_ms: i64,
    pub ended_ms: i64,
    pub finished: bool,
    /// Why it did not finish.
    pub error: Option<String>,
    pub pushed: u64,
    pub pulled: u64,
    pub bootstrapped_docs: u64,
    pub purged_grids: Vec<String>,
    pub repaired_docs: u64,
}

impl From<core::store::LastSync> for LastSync {
    fn from(l: core::store::LastSync) -> Self {
        LastSync {
            started_ms: l.started_ms,
            ended_ms: l.ended_ms,
            finished: l.finished,
            error: l.error,
            pushed: l.pushed,
            pulled: l.pulled,
            bootstrapped_docs: l.bootstrapped_docs,
            purged_grids: l.purged_grids,
            repaired_docs: l.repaired_docs,
        }
    }
}

/// A document whose changes the server refused (a 楼门长's record in another building, say).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RefusedChange {
    pub doc: String,
    /// `household`, `record` or `task`.
    pub kind: String,
    /// Its grid, while the document is still here.
    pub grid: Option<String>,
    /// The server's reason.
    pub reason: String,
    /// At how many syncs the server refused it.
    pub syncs: u32,
    /// No longer sent: discard it ([`XiuhuaStore::discard_refused`]) or retry it
    /// ([`XiuhuaStore::retry_refused`]).
    pub held: bool,
    /// Its changes still waiting in the outbox.
    pub changes: i64,
}

#[uniffi::export]
impl XiuhuaStore {
    /// Replaces the device's wall clock. Stamps and "overdue" still follow the server once
    /// anchored. Reopening the store (enrolling as another identity) goes back to the
    /// system clock.
    pub fn set_time_source(&self, source: Arc<dyn TimeSource>) -> Result<()> {
        self.with(|s| {
            s.set_time_source(move || source.now_ms());
            Ok(())
        })
    }

    /// Whether the clock was ever anchored to the server's time (at enrollment or a sync).
    /// Until then, dates follow the phone's own clock: a UI may warn when it looks wrong.
    pub fn clock_anchored(&self) -> Result<bool> {
        Ok(self.lock()?.clock_anchored())
    }

    /// What the last sync that ended did (finished or failed); none before the first.
    pub fn last_sync(&self) -> Result<Option<LastSync>> {
        Ok(self
            .with(|s| s.sync_status())?
            .last_sync
            .map(LastSync::from))
    }

    /// The documents whose changes the server refused, with the reason.
    pub fn refused_changes(&self) -> Result<Vec<RefusedChange>> {
        let refused = self.with(|s| s.refused_changes())?;
        Ok(refused
            .into_iter()
            .map(|r| RefusedChange {
                kind: crate::store::kind_of(&r.doc),
                doc: r.doc,
                grid: r.grid,
                reason: r.reason,
                syncs: r.syncs,
                held: r.held,
                changes: r.changes,
            })
            .collect())
    }

    /// Discards what the server refused of `doc`: its changes leave the outbox, the local
    /// copy goes, and the next sync fetches the server's copy (if it has one). Returns how
    /// many changes were discarded. Only a document listed by
    /// [`XiuhuaStore::refused_changes`].
    pub fn discard_refused(&self, doc: String) -> Result<u64> {
        let n = self.with(|s| s.discard_refused(&doc))?;
        self.notify(crate::store::ChangeEvent {
            origin: crate::store::ChangeOrigin::Local,
            docs: Vec::new(),
            everything: true,
        });
        Ok(u64::try_from(n).unwrap_or(u64::MAX))
    }

    /// Sends a held refused document again at the next sync (after the station fixed the
    /// grant).
    pub fn retry_refused(&self, doc: String) -> Result<()> {
        self.with(|s| s.retry_refused(&doc))
    }
}
