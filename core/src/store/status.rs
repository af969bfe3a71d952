//! The store's side of the sync status: what the last sync did (finished or not), whether
//! a sync was interrupted, the documents the server refused (listed, retried at a bounded
//! number of syncs, discardable by the user), and remote changes waiting for their
//! dependencies (counted, and repaired from the server when they wait too long).
//!
//! Everything lives in the `meta` table under `sync.*` keys (JSON values).

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use super::Store;
use super::sync::{meta_get, meta_json, meta_put, to_json};
use crate::error::{Error, Result};
use crate::sync::{SyncReport, SyncStatus};

pub(super) const K_LAST_SUCCESS: &str = "sync.last_success_ms";
pub(super) const K_LAST_ERROR: &str = "sync.last_error";
pub(super) const K_LAST_ERROR_MS: &str = "sync.last_error_ms";
/// `[(doc, reason)]` of the last finished sync.
pub(super) const K_REFUSED: &str = "sync.refused_docs";
/// `{doc: finished syncs at which the server refused it}`.
pub(super) const K_REFUSED_SYNCS: &str = "sync.refused_syncs";
/// When the sync running (or interrupted) started.
const K_STARTED: &str = "sync.started_ms";
/// The [`LastSync`] of the last sync that ended (finished or failed).
const K_LAST_SYNC: &str = "sync.last_sync";
/// `{doc: finished syncs after which it still had changes waiting for dependencies}`.
const K_WAITING: &str = "sync.waiting_syncs";
/// Documents to fetch again from the server (discarded refusals).
pub(super) const K_REPAIR: &str = "sync.repair_queue";

/// A document the server refused is sent again at this many syncs; after that its changes
/// are held (not sent) until the user discards them ([`Store::discard_refused`]) or retries
/// ([`Store::retry_refused`]).
pub const REFUSED_RETRY_SYNCS: u32 = 3;

/// A document whose remote changes still wait for their dependencies after this many
/// finished syncs is repaired from the server (`/v1/repair`) at the next sync.
pub const REPAIR_AFTER_SYNCS: u32 = 2;

/// What the last sync that ended did, finished or not: a failed sync still says what it
/// pushed, pulled and purged before it failed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastSync {
    /// When it started and ended (clock-anchored ms).
    pub started_ms: i64,
    pub ended_ms: i64,
    /// Whether it finished (else `error` says why not).
    pub finished: bool,
    pub error: Option<String>,
    pub pushed: u64,
    pub pulled: u64,
    pub bootstrapped_docs: u64,
    pub purged_grids: Vec<String>,
    /// Documents repaired from the server.
    pub repaired_docs: u64,
}

/// A document whose changes the server refused: listed until the user discards them (or
/// a later sync gets them accepted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedDoc {
    pub doc: String,
    /// Its grid, when the document is still here.
    pub grid: Option<String>,
    /// The server's reason (status code and message).
    pub reason: String,
    /// At how many finished syncs the server refused it.
    pub syncs: u32,
    /// No longer sent (refused at [`REFUSED_RETRY_SYNCS`] syncs): discard or retry it.
    pub held: bool,
    /// Its changes still in the outbox.
    pub changes: i64,
}

/// What the engine hands over when a sync finished.
#[derive(Debug, Clone, Default)]
pub(crate) struct FinishedSync<'a> {
    /// (document, reason, syncs at which it was refused, this one included).
    pub refused: Vec<(String, String, u32)>,
    pub report: Option<&'a SyncReport>,
}

fn last_sync(started: i64, now: i64, report: &SyncReport, error: Option<&Error>) -> LastSync {
    LastSync {
        started_ms: started,
        ended_ms: now,
        finished: error.is_none(),
        error: error.map(ToString::to_string),
        pushed: report.pushed,
        pulled: report.pulled,
        bootstrapped_docs: report.bootstrapped_docs,
        purged_grids: report.purged_grids.clone(),
        repaired_docs: report.repaired_docs,
    }
}

impl Store {
    /// What the UI shows about sync.
    pub fn sync_status(&self) -> Result<SyncStatus> {
        let (waiting_changes, waiting_docs) = self.waiting_changes()?;
        Ok(SyncStatus {
            pending_outbox: self.outbox_len()?,
            last_success_ms: meta_get(&self.conn, K_LAST_SUCCESS)?,
            last_error: meta_get(&self.conn, K_LAST_ERROR)?,
            last_error_ms: meta_get(&self.conn, K_LAST_ERROR_MS)?,
            refused_docs: meta_json(&self.conn, K_REFUSED)?.unwrap_or_default(),
            waiting_changes,
            waiting_docs,
            unfinished_since_ms: meta_get(&self.conn, K_STARTED)?,
            last_sync: meta_json(&self.conn, K_LAST_SYNC)?,
            set_aside_changes: self
                .conn
                .prepare_cached("SELECT count(*) FROM set_aside")?
                .query_row([], |r| r.get(0))?,
        })
    }

    /// Remote changes held here because changes they depend on have not arrived, and how
    /// many documents they belong to.
    pub fn waiting_changes(&self) -> Result<(i64, i64)> {
        Ok(self.conn.query_row(
            "SELECT count(*), count(DISTINCT doc) FROM pending_changes",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    /// Marks a sync as started: until it is recorded as finished or failed, the status says
    /// a sync did not finish (`unfinished_since_ms`), which survives the app being killed.
    pub(crate) fn mark_sync_started(&mut self) -> Result<()> {
        let now = self.now_ms();
        meta_put(&self.conn, K_STARTED, &now)
    }

    /// Records a sync that finished: its time and report, the documents the server refused
    /// (with their counts), the waiting documents' counts; clears the last error and the
    /// "started" mark.
    pub(crate) fn record_sync_success(&mut self, done: &FinishedSync<'_>) -> Result<()> {
        let now = self.now_ms();
        let started: i64 = meta_get(&self.conn, K_STARTED)?.unwrap_or(now);
        let waiting_before: BTreeMap<String, u32> =
            meta_json(&self.conn, K_WAITING)?.unwrap_or_default();
        let tx = self.conn.transaction()?;
        let waiting_now: Vec<String> = tx
            .prepare("SELECT DISTINCT doc FROM pending_changes")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let waiting: BTreeMap<String, u32> = waiting_now
            .into_iter()
            .map(|d| {
                let n = waiting_before
                    .get(&d)
                    .copied()
                    .unwrap_or(0)
                    .saturating_add(1);
                (d, n)
            })
            .collect();
        let reasons: Vec<(&str, &str)> = done
            .refused
            .iter()
            .map(|(d, r, _)| (d.as_str(), r.as_str()))
            .collect();
        let counts: BTreeMap<&str, u32> = done
            .refused
            .iter()
            .map(|(d, _, n)| (d.as_str(), *n))
            .collect();
        meta_put(&tx, K_LAST_SUCCESS, &now)?;
        meta_put(&tx, K_REFUSED, &to_json(&reasons)?)?;
        meta_put(&tx, K_REFUSED_SYNCS, &to_json(&counts)?)?;
        meta_put(&tx, K_WAITING, &to_json(&waiting)?)?;
        if let Some(report) = done.report {
            meta_put(
                &tx,
                K_LAST_SYNC,
                &to_json(&last_sync(started, now, report, None))?,
            )?;
        }
        tx.execute(
            "DELETE FROM meta WHERE key IN (?1, ?2, ?3)",
            [K_LAST_ERROR, K_LAST_ERROR_MS, K_STARTED],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Records a sync that failed before it started talking to the server (nothing done).
    /// The last success stays what it was.
    pub(crate) fn record_sync_error(&mut self, error: &Error) -> Result<()> {
        self.record_sync_failure(error, None)
    }

    /// Records a sync that failed, with what it did before failing. The last success stays
    /// what it was; the "started" mark is cleared (the sync ended, badly).
    pub(crate) fn record_sync_failure(
        &mut self,
        error: &Error,
        report: Option<&SyncReport>,
    ) -> Result<()> {
        let now = self.now_ms();
        let started: i64 = meta_get(&self.conn, K_STARTED)?.unwrap_or(now);
        let tx = self.conn.transaction()?;
        meta_put(&tx, K_LAST_ERROR, &error.to_string())?;
        meta_put(&tx, K_LAST_ERROR_MS, &now)?;
        if let Some(report) = report {
            meta_put(
                &tx,
                K_LAST_SYNC,
                &to_json(&last_sync(started, now, report, Some(error)))?,
            )?;
        }
        tx.execute("DELETE FROM meta WHERE key = ?1", [K_STARTED])?;
        tx.commit()?;
        Ok(())
    }

    /// At how many finished syncs each refused document was refused.
    pub(crate) fn refused_syncs(&self) -> Result<BTreeMap<String, u32>> {
        Ok(meta_json(&self.conn, K_REFUSED_SYNCS)?.unwrap_or_default())
    }

    /// The documents whose changes the server refused, with their reason, how often, and
    /// whether they are held back now. Discard them with [`Store::discard_refused`].
    pub fn refused_changes(&self) -> Result<Vec<RefusedDoc>> {
        let reasons: Vec<(String, String)> = meta_json(&self.conn, K_REFUSED)?.unwrap_or_default();
        let counts = self.refused_syncs()?;
        let mut out = Vec::with_capacity(reasons.len());
        for (doc, reason) in reasons {
            let syncs = counts.get(&doc).copied().unwrap_or(1);
            let changes: i64 = self
                .conn
                .prepare_cached("SELECT count(*) FROM outbox WHERE doc = ?1")?
                .query_row([&doc], |r| r.get(0))?;
            out.push(RefusedDoc {
                grid: self.doc_grid(&doc)?,
                held: syncs >= REFUSED_RETRY_SYNCS,
                doc,
                reason,
                syncs,
                changes,
            });
        }
        Ok(out)
    }

    /// Sends a held refused document again at the next sync (after the station fixed the
    /// grant, say): its count starts over.
    pub fn retry_refused(&mut self, doc: &str) -> Result<()> {
        let mut counts = self.refused_syncs()?;
        if counts.remove(doc).is_none() {
            return Err(Error::NotFound(format!("refused document {doc}")));
        }
        meta_put(&self.conn, K_REFUSED_SYNCS, &to_json(&counts)?)
    }

    /// Discards what the server refused of document `doc`: its changes leave the outbox
    /// (with its pending escalations), the local copy and its rows are deleted, and the next
    /// sync fetches the server's copy again (`/v1/repair`; nothing when the server never
    /// had it). In one transaction. Returns how many changes were discarded. Only a document
    /// listed in [`Store::refused_changes`] can be discarded.
    pub fn discard_refused(&mut self, doc: &str) -> Result<usize> {
        let mut reasons: Vec<(String, String)> =
            meta_json(&self.conn, K_REFUSED)?.unwrap_or_default();
        if !reasons.iter().any(|(d, _)| d == doc) {
            return Err(Error::NotFound(format!("refused document {doc}")));
        }
        reasons.retain(|(d, _)| d != doc);
        let mut counts = self.refused_syncs()?;
        counts.remove(doc);
        let mut queue: BTreeSet<String> = meta_json(&self.conn, K_REPAIR)?.unwrap_or_default();
        queue.insert(doc.to_string());
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let discarded = tx.execute("DELETE FROM outbox WHERE doc = ?1", [doc])?;
        // A task's row goes through the projection: the record it was made from shows its
        // status without it.
        super::projection::delete_rows(&tx, crate::doc::DocKind::Task, doc)?;
        for sql in [
            "DELETE FROM pending_escalations WHERE task = ?1",
            "DELETE FROM pending_changes WHERE doc = ?1",
            "DELETE FROM doc_chunks WHERE doc = ?1",
            "DELETE FROM residents WHERE household = ?1",
            "DELETE FROM households WHERE id = ?1",
            "DELETE FROM records WHERE id = ?1",
            "DELETE FROM docs WHERE id = ?1",
        ] {
            tx.execute(sql, params![doc])?;
        }
        meta_put(&tx, K_REFUSED, &to_json(&reasons)?)?;
        meta_put(&tx, K_REFUSED_SYNCS, &to_json(&counts)?)?;
        meta_put(&tx, K_REPAIR, &to_json(&queue)?)?;
        tx.commit()?;
        self.cache.remove(doc);
        Ok(discarded)
    }

    /// The documents the next sync repairs from the server: those discarded by the user,
    /// then those whose changes waited for dependencies through [`REPAIR_AFTER_SYNCS`]
    /// finished syncs and still wait.
    pub(crate) fn repair_due(&self) -> Result<Vec<String>> {
        let mut due: Vec<String> = meta_json::<BTreeSet<String>>(&self.conn, K_REPAIR)?
            .unwrap_or_default()
            .into_iter()
            .collect();
        let waiting: BTreeMap<String, u32> = meta_json(&self.conn, K_WAITING)?.unwrap_or_default();
        for (doc, syncs) in waiting {
            if syncs < REPAIR_AFTER_SYNCS || due.contains(&doc) {
                continue;
            }
            let still: bool = self
                .conn
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM pending_changes WHERE doc = ?1)")?
                .query_row([&doc], |r| r.get(0))?;
            if still {
                due.push(doc);
            }
        }
        Ok(due)
    }

    /// A repair of `doc` ended (its copy matches the server's, or the server has none):
    /// it leaves the repair queue, and its waiting count starts over.
    pub(crate) fn repair_finished(&mut self, doc: &str) -> Result<()> {
        let mut queue: BTreeSet<String> = meta_json(&self.conn, K_REPAIR)?.unwrap_or_default();
        let mut waiting: BTreeMap<String, u32> =
            meta_json(&self.conn, K_WAITING)?.unwrap_or_default();
        let tx = self.conn.transaction()?;
        if queue.remove(doc) {
            meta_put(&tx, K_REPAIR, &to_json(&queue)?)?;
        }
        if waiting.remove(doc).is_some() {
            meta_put(&tx, K_WAITING, &to_json(&waiting)?)?;
        }
        tx.commit()?;
        Ok(())
    }
}
