//! The store's side of numbers for people ([`crate::numbers`]): the blocks a sync received,
//! the number a new record or task takes (in the action's transaction), provisional numbers
//! replaced at the next sync, and finding a document by either number.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{OptionalExtension, Transaction, params};

use super::Store;
use super::sync::{meta_get, meta_put};
use crate::doc::DocKind;
use crate::error::{Error, Result};
use crate::numbers::{self, NumberBlock, NumberHeld};

const K_PROVISIONAL_COUNT: &str = "numbers.provisional_count";

/// Where a number came from, to write down in the action's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// The next sequence of this block (its `next` was `seq`).
    Block {
        community: String,
        year: i32,
        start: u64,
        seq: u64,
    },
    /// The device's `count`-th provisional number.
    Provisional { year: i32, count: u64 },
}

/// A number taken for a new document, not yet written down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Taken {
    pub number: String,
    source: Source,
}

impl Taken {
    /// Writes down, in the action's transaction, that the number is used.
    pub(super) fn commit(&self, tx: &Transaction<'_>, doc: &str) -> Result<()> {
        match &self.source {
            Source::Block {
                community,
                year,
                start,
                seq,
            } => {
                let n = tx
                    .prepare_cached(
                        "UPDATE number_blocks SET next = next + 1
                         WHERE community = ?1 AND year = ?2 AND start = ?3 AND next = ?4",
                    )?
                    .execute(params![community, year, to_i64(*start), to_i64(*seq)])?;
                if n != 1 {
                    return Err(Error::invalid(
                        "number",
                        "the block of numbers changed while the number was taken",
                    ));
                }
                tx.prepare_cached("DELETE FROM provisional_numbers WHERE doc = ?1")?
                    .execute([doc])?;
            }
            Source::Provisional { year, count } => {
                meta_put(tx, K_PROVISIONAL_COUNT, &to_i64(*count))?;
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO provisional_numbers (doc, year) VALUES (?1, ?2)",
                )?
                .execute(params![doc, year])?;
            }
        }
        Ok(())
    }
}

/// Where a number was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberHit {
    pub kind: DocKind,
    pub id: String,
    /// Its number now (the one asked for, or the real one that replaced it).
    pub number: String,
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Store {
    /// The community and number prefix of `grid`, from the grants (`None` when the server
    /// did not say: one that predates numbers, or a grid not granted).
    fn community_of(&self, grid: &str) -> Result<Option<(String, String)>> {
        Ok(self
            .grants()?
            .into_iter()
            .find(|g| g.grid == grid && !g.community.is_empty())
            .map(|g| {
                let prefix = if g.number_prefix.is_empty() {
                    g.community.clone()
                } else {
                    g.number_prefix
                };
                (g.community, prefix)
            }))
    }

    /// The number a new document of `grid` created at `ms` takes: the next of the first block
    /// of its community and year with one left, else a provisional one.
    pub(super) fn take_number(&self, grid: &str, ms: i64) -> Result<Taken> {
        let year = numbers::year_of(ms);
        let community = self.community_of(grid)?;
        if let Some((community, _)) = &community {
            let block: Option<(i64, i64, String)> = self
                .conn
                .prepare_cached(
                    "SELECT start, next, prefix FROM number_blocks
                     WHERE community = ?1 AND year = ?2 AND next < end ORDER BY start LIMIT 1",
                )?
                .query_row(params![community, year], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()?;
            if let Some((start, next, prefix)) = block {
                return Ok(Taken {
                    number: numbers::format(&prefix, year, to_u64(next)),
                    source: Source::Block {
                        community: community.clone(),
                        year,
                        start: to_u64(start),
                        seq: to_u64(next),
                    },
                });
            }
        }
        let prefix = community.map_or_else(|| grid.to_string(), |(_, p)| p);
        let count = to_u64(meta_get::<i64>(&self.conn, K_PROVISIONAL_COUNT)?.unwrap_or(0)) + 1;
        Ok(Taken {
            number: numbers::provisional(&prefix, year, &self.actor.device, count),
            source: Source::Provisional { year, count },
        })
    }

    /// What this phone holds of the numbers of each community it has grants in, for this
    /// year (and the next, in December) and the years of provisional numbers still to
    /// replace: what `/v1/session` tells the server.
    pub fn numbers_held(&self) -> Result<Vec<NumberHeld>> {
        let communities: BTreeSet<String> = self
            .grants()?
            .into_iter()
            .map(|g| g.community)
            .filter(|c| !c.is_empty())
            .collect();
        let mut years: BTreeSet<i32> = numbers::years_for(self.now_ms()).into_iter().collect();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT DISTINCT year FROM provisional_numbers")?;
        for y in stmt.query_map([], |r| r.get::<_, i32>(0))? {
            years.insert(y?);
        }
        let mut held: BTreeMap<(String, i32), (u64, u64)> = BTreeMap::new();
        let mut stmt = self.conn.prepare_cached(
            "SELECT community, year, sum(end - next), max(start) FROM number_blocks
             GROUP BY community, year",
        )?;
        for row in stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i32>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })? {
            let (c, y, left, last) = row?;
            held.insert((c, y), (to_u64(left), to_u64(last)));
        }
        let mut out = Vec::new();
        for c in &communities {
            for y in &years {
                let (left, last_start) = held.get(&(c.clone(), *y)).copied().unwrap_or((0, 0));
                out.push(NumberHeld {
                    community: c.clone(),
                    year: *y,
                    left,
                    last_start,
                });
            }
        }
        Ok(out)
    }

    /// Keeps the blocks a sync received (a block received twice is kept once).
    pub fn accept_number_blocks(&mut self, blocks: &[NumberBlock]) -> Result<()> {
        if blocks.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        {
            let mut put = tx.prepare_cached(
                "INSERT OR IGNORE INTO number_blocks (community, year, start, end, next, prefix)
                 VALUES (?1, ?2, ?3, ?4, ?3, ?5)",
            )?;
            for b in blocks {
                if b.end <= b.start || b.community.is_empty() {
                    continue;
                }
                let prefix = if b.prefix.is_empty() {
                    &b.community
                } else {
                    &b.prefix
                };
                put.execute(params![
                    b.community,
                    b.year,
                    to_i64(b.start),
                    to_i64(b.end),
                    prefix
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Gives each document holding a provisional number of this device a number of a block,
    /// while blocks have numbers left: one action each (the document keeps the provisional
    /// number beside the new one). Returns the documents renumbered.
    pub fn replace_provisional_numbers(&mut self) -> Result<Vec<(String, DocKind)>> {
        let waiting: Vec<(String, Option<String>, Option<String>)> = self
            .conn
            .prepare_cached(
                "SELECT p.doc, d.kind, d.grid FROM provisional_numbers p
                 LEFT JOIN docs d ON d.id = p.doc ORDER BY p.doc",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut replaced = Vec::new();
        for (doc, kind, grid) in waiting {
            let (Some(kind), Some(grid)) = (kind, grid) else {
                // The document is gone (its grid was dropped): nothing to number.
                self.conn
                    .prepare_cached("DELETE FROM provisional_numbers WHERE doc = ?1")?
                    .execute([&doc])?;
                continue;
            };
            let (old, created, kind) = match kind.as_str() {
                "record" => {
                    let r = self.record(&doc)?;
                    (r.number, r.reported_at, DocKind::Record)
                }
                "task" => {
                    let t = self.task(&doc)?.task;
                    (t.number, t.created_at, DocKind::Task)
                }
                _ => continue,
            };
            let taken = self.take_number(&grid, created)?;
            if !matches!(taken.source, Source::Block { .. }) {
                continue; // no block of its community and year yet
            }
            let old = old.filter(|n| numbers::is_provisional(n));
            let number = taken.number.clone();
            self.act_then(
                &doc,
                "number",
                |d, _, _| {
                    let put = |d: &mut automerge::AutoCommit, key: &str, v: &Option<String>| {
                        autosurgeon::reconcile_prop(d, automerge::ROOT, key, v)
                            .map_err(|e| Error::bad_doc(&doc, e))
                    };
                    put(d, "number", &Some(number))?;
                    if old.is_some() {
                        put(d, "provisional_number", &old)?;
                    }
                    Ok(((), None))
                },
                |tx, _, _| taken.commit(tx, &doc),
            )?;
            replaced.push((doc, kind));
        }
        Ok(replaced)
    }

    /// The record or task whose number, or the provisional number it had, is `number`
    /// (spaces around it ignored).
    pub fn find_by_number(&self, number: &str) -> Result<Option<NumberHit>> {
        let n = number.trim();
        if n.is_empty() {
            return Ok(None);
        }
        for (kind, table) in [(DocKind::Record, "records"), (DocKind::Task, "tasks")] {
            let hit: Option<(String, Option<String>)> = self
                .conn
                .prepare_cached(&format!(
                    "SELECT id, number FROM {table} WHERE number = ?1
                     UNION ALL SELECT id, number FROM {table} WHERE provisional_number = ?1
                     LIMIT 1"
                ))?
                .query_row([n], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            if let Some((id, current)) = hit {
                return Ok(Some(NumberHit {
                    kind,
                    id,
                    number: current.unwrap_or_else(|| n.to_string()),
                }));
            }
        }
        Ok(None)
    }
}
