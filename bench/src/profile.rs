//! `__profile DOCS`: where the bulk load's time goes, stage by stage, on one thread.

use std::path::Path;
use std::time::Instant;

use automerge::{AutoCommit, ReadDoc};
use xiuhua_core::store::rows_of;
use xiuhua_core::{Household, Record, Task, doc, pinyin, workflow};

use crate::error::{Context, Result};
use crate::measure;

fn stage<T>(name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let t = Instant::now();
    let r = f()?;
    println!("{name:<44} {:>8.3} s", t.elapsed().as_secs_f64());
    Ok(r)
}

/// Times each stage of what `import_documents` does per document, on one thread.
pub fn run(docs_path: &Path) -> Result<()> {
    let docs = measure::read_docs(docs_path)?;
    println!("{} documents, single thread", docs.len());
    let loaded: Vec<AutoCommit> = stage("AutoCommit::load", || {
        docs.iter()
            .map(|(id, b)| AutoCommit::load(b).context_with(|| format!("loading {id}")))
            .collect()
    })?;
    stage("AutoCommit::load_unverified_heads", || {
        docs.iter()
            .map(|(id, b)| {
                AutoCommit::load_unverified_heads(b).context_with(|| format!("loading {id}"))
            })
            .collect::<Result<Vec<AutoCommit>>>()
    })?;
    stage("automerge's own hydrate (whole doc, one pass)", || {
        Ok(loaded
            .iter()
            .filter(|d| {
                matches!(
                    d.hydrate(automerge::ROOT, None),
                    Ok(automerge::hydrate::Value::Map(_))
                )
            })
            .count())
    })?;
    let kind = |id: &str| id.split('-').next().unwrap_or("").to_string();
    for prefix in ["hh", "rec", "task"] {
        let of_kind: Vec<&AutoCommit> = docs
            .iter()
            .zip(&loaded)
            .filter(|((id, _), _)| kind(id) == prefix)
            .map(|(_, d)| d)
            .collect();
        match prefix {
            "hh" => {
                let hs: Vec<Household> = stage("  hydrate Household", || {
                    of_kind
                        .iter()
                        .map(|d| Ok(autosurgeon::hydrate(*d)?))
                        .collect()
                })?;
                stage("  field_conflicts (households)", || {
                    Ok(of_kind
                        .iter()
                        .map(|d| doc::field_conflicts(d).len())
                        .sum::<usize>())
                })?;
                stage("  pinyin::name_keys (members)", || {
                    Ok(hs
                        .iter()
                        .flat_map(|h| &h.members)
                        .map(|m| pinyin::name_keys(&m.name).full.len())
                        .sum::<usize>())
                })?;
            }
            "rec" => {
                stage("  hydrate Record", || {
                    of_kind
                        .iter()
                        .map(|d| Ok(autosurgeon::hydrate(*d)?))
                        .collect::<Result<Vec<Record>>>()
                })?;
            }
            _ => {
                let ts: Vec<Task> = stage("  hydrate Task", || {
                    of_kind
                        .iter()
                        .map(|d| Ok(autosurgeon::hydrate(*d)?))
                        .collect()
                })?;
                stage("  workflow::fold (tasks)", || {
                    Ok(ts
                        .iter()
                        .map(|t| workflow::fold(t.events.values()).events.len())
                        .sum::<usize>())
                })?;
            }
        }
    }
    stage("rows_of (all: hydrate, conflicts, fold, pinyin)", || {
        docs.iter()
            .zip(&loaded)
            .map(|((id, _), d)| Ok(rows_of(id, d)?.is_some()))
            .collect::<Result<Vec<bool>>>()
    })?;
    Ok(())
}
