//! `xiuhua-server check`: finds stored documents that no longer load and quarantines them.
//!
//! A document is *sound* when its stored bytes load, have exactly the stored heads, and are a
//! Xiuhua document of the stored kind and grid ([`verify`]). The command walks every stored
//! document in id order, one page at a time, quarantines the broken ones (a `quarantine`
//! table in both backends) and lifts the quarantine of those that verify again. A
//! quarantined document is left out of bootstrap pages, and pushes to it and repairs of it
//! answer `409 quarantined` instead of 500, so the rest of its grid keeps syncing
//! ([`crate::storage`]). A push that finds a stored document it cannot load quarantines it
//! on the spot ([`broken_among`]). `/metrics` reports how many documents are quarantined.
//!
//! Reasons name the document and what failed, never its content.

use std::collections::{BTreeSet, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};

use automerge::AutoCommit;
use xiuhua_core::doc::kind_and_grid;

use crate::error::StoreError;
use crate::ingest::StoredDoc;
use crate::storage::{DocVersion, Storage, StoredForCheck};

/// Documents read per page.
const PAGE: u32 = 200;

/// Why stored bytes are not a sound document, or `Ok`.
pub fn verify_bytes(bytes: &[u8], heads: &[u8], kind: &str, grid: &str) -> Result<(), String> {
    let loaded = catch_unwind(AssertUnwindSafe(|| AutoCommit::load(bytes)));
    let mut doc = match loaded {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => return Err(format!("the stored bytes do not load ({e})")),
        Err(_) => return Err("loading the stored bytes panicked".into()),
    };
    let got: BTreeSet<[u8; 32]> = doc.get_heads().iter().map(|h| h.0).collect();
    let want: BTreeSet<[u8; 32]> = heads
        .chunks(32)
        .filter_map(|c| <[u8; 32]>::try_from(c).ok())
        .collect();
    if !heads.len().is_multiple_of(32) || got != want {
        return Err(format!(
            "the stored bytes have {} head(s) other than the {} stored with them",
            got.len(),
            heads.len() / 32
        ));
    }
    match catch_unwind(AssertUnwindSafe(|| kind_and_grid(&doc))) {
        Ok(Some((k, g))) if k.as_str() == kind && g == grid => Ok(()),
        Ok(Some((k, _))) if k.as_str() != kind => Err(format!(
            "the stored bytes are a {} but the document is registered as a {kind}",
            k.as_str()
        )),
        Ok(Some(_)) => Err("the stored bytes name another grid than the registered one".into()),
        Ok(None) => Err("the stored bytes are not a Xiuhua document".into()),
        Err(_) => Err("reading the stored document panicked".into()),
    }
}

/// Why a stored document is not sound, or `Ok`.
pub fn verify(d: &StoredForCheck) -> Result<(), String> {
    verify_bytes(&d.bytes, &d.heads, &d.kind, &d.grid)
}

/// Of the stored documents a push read (with their stored heads), the ones that are not
/// sound: (id, grid, reason). Called when applying a push failed without a refusal, so that
/// a broken document is quarantined instead of failing every push that touches it.
pub fn broken_among(
    stored: &HashMap<String, StoredDoc>,
    versions: &HashMap<String, DocVersion>,
) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (id, d) in stored {
        let heads = versions.get(id).map_or(&[][..], |v| v.heads.as_slice());
        if let Err(reason) = verify_bytes(&d.bytes, heads, d.kind.as_str(), &d.grid) {
            out.push((id.clone(), d.grid.clone(), reason));
        }
    }
    out.sort();
    out
}

/// What a check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Documents verified.
    pub checked: u64,
    /// Newly quarantined, or still broken: (id, grid, reason).
    pub broken: Vec<(String, String, String)>,
    /// Quarantined before, sound now: released.
    pub released: Vec<String>,
}

/// Verifies every stored document, quarantining the broken ones and releasing quarantined
/// ones that verify again.
pub async fn run(s: &dyn Storage, now_ms: i64) -> Result<CheckReport, StoreError> {
    let mut report = CheckReport::default();
    let mut after: Option<String> = None;
    loop {
        let page = s.scan_docs(after.as_deref(), PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        let n = page.len();
        let verdicts = tokio::task::spawn_blocking(move || {
            page.into_iter()
                .map(|d| {
                    let v = verify(&d);
                    (d, v)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| StoreError::Backend(format!("check task failed: {e}")))?;
        for (d, v) in verdicts {
            report.checked += 1;
            match v {
                Err(reason) => {
                    s.quarantine(&d.id, &reason, now_ms).await?;
                    tracing::warn!(doc = d.id, grid = d.grid, reason, "document quarantined");
                    report.broken.push((d.id, d.grid, reason));
                }
                Ok(()) if d.quarantined => {
                    s.release(&d.id).await?;
                    tracing::info!(doc = d.id, "document sound again: quarantine lifted");
                    report.released.push(d.id);
                }
                Ok(()) => {}
            }
        }
        if n < PAGE as usize {
            break;
        }
    }
    Ok(report)
}

/// The report as the command prints it.
pub fn render(r: &CheckReport) -> String {
    let mut out = format!(
        "checked {} document(s): {} broken (quarantined), {} released\n",
        r.checked,
        r.broken.len(),
        r.released.len()
    );
    for (id, grid, reason) in &r.broken {
        out.push_str(&format!("quarantined {id} (grid {grid}): {reason}\n"));
    }
    for id in &r.released {
        out.push_str(&format!("released {id}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;

    fn sound() -> (Vec<u8>, Vec<u8>) {
        let mut d = AutoCommit::new();
        d.put(automerge::ROOT, "kind", "record").unwrap();
        d.put(automerge::ROOT, "grid", "g1").unwrap();
        let heads: Vec<u8> = d.get_heads().iter().flat_map(|h| h.0).collect();
        (d.save_nocompress(), heads)
    }

    #[test]
    fn verify_finds_what_is_broken() {
        let (bytes, heads) = sound();
        assert_eq!(verify_bytes(&bytes, &heads, "record", "g1"), Ok(()));
        assert!(verify_bytes(b"not automerge", &heads, "record", "g1").is_err());
        let mut cut = bytes.clone();
        cut.truncate(bytes.len() / 2);
        assert!(verify_bytes(&cut, &heads, "record", "g1").is_err());
        assert!(verify_bytes(&bytes, &[7; 32], "record", "g1").is_err());
        assert!(verify_bytes(&bytes, &heads[..31], "record", "g1").is_err());
        assert!(verify_bytes(&bytes, &heads, "task", "g1").is_err());
        assert!(verify_bytes(&bytes, &heads, "record", "g2").is_err());
    }
}
