//! The queries the screens need, all served from the projection tables.

use rusqlite::{Row, params};

use super::Store;
use crate::error::Result;
use crate::pinyin;

/// A household in a building list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HouseholdSummary {
    pub id: String,
    pub building: String,
    pub unit: String,
    pub room: String,
    pub head_name: String,
    pub member_count: i64,
    pub tags: Vec<String>,
    pub visit_count: i64,
    pub last_visit_at: Option<i64>,
    pub conflicts: i64,
}

/// A resident found by search; the ID number is masked (`110***********1234`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResidentHit {
    pub household: String,
    pub member: String,
    pub name: String,
    pub building: String,
    pub phone: Option<String>,
    pub id_masked: Option<String>,
    pub relation: String,
    pub birth_year: i64,
    /// 迁出 or 去世; `None` while the resident lives there.
    pub status: Option<String>,
}

/// A 民情 record in a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSummary {
    pub id: String,
    pub category: String,
    pub status: String,
    pub reporter: String,
    pub household: Option<String>,
    pub place: String,
    pub reported_at: i64,
    pub summary: String,
}

/// A task in a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSummary {
    pub id: String,
    pub title: String,
    pub category: String,
    pub level: Option<String>,
    pub status: String,
    pub tier: String,
    pub assignee: Option<String>,
    pub deadline: Option<i64>,
    pub rating: Option<i64>,
    /// How many of its events were rejected (conflicts to show).
    pub rejected: i64,
}

/// The grid's ledger (民情台账 / 政务台账) counts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ledger {
    /// (category, status, count) of 民情 records.
    pub records: Vec<(String, String, i64)>,
    /// (level, status, count) of 代办 tasks.
    pub tasks: Vec<(String, String, i64)>,
    /// Mean of the last rating of every rated task, when any.
    pub average_satisfaction: Option<f64>,
    pub rated_tasks: i64,
    pub overdue_tasks: i64,
    pub households: i64,
    pub residents: i64,
}

/// One line of a household's history timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    /// ms since the epoch.
    pub at: i64,
    /// "visit", "record", "task" or "change".
    pub kind: String,
    /// The visit, record or task id, or the change hash.
    pub id: String,
    /// Who (user id or name).
    pub who: String,
    pub text: String,
}

const OPEN_STATUSES: &str = "('ordered','assigned','in_progress')";

pub(super) fn household_summary(r: &Row<'_>) -> rusqlite::Result<HouseholdSummary> {
    let tags: String = r.get(6)?;
    Ok(HouseholdSummary {
        id: r.get(0)?,
        building: r.get(1)?,
        unit: r.get(2)?,
        room: r.get(3)?,
        head_name: r.get(4)?,
        member_count: r.get(5)?,
        tags: tags
            .split(',')
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect(),
        visit_count: r.get(7)?,
        last_visit_at: r.get(8)?,
        conflicts: r.get(9)?,
    })
}

fn resident_hit(r: &Row<'_>) -> rusqlite::Result<ResidentHit> {
    Ok(ResidentHit {
        household: r.get(0)?,
        member: r.get(1)?,
        name: r.get(2)?,
        building: r.get(3)?,
        phone: r.get(4)?,
        id_masked: r.get(5)?,
        relation: r.get(6)?,
        birth_year: r.get(7)?,
        status: r.get(8)?,
    })
}

fn record_summary(r: &Row<'_>) -> rusqlite::Result<RecordSummary> {
    Ok(RecordSummary {
        id: r.get(0)?,
        category: r.get(1)?,
        status: r.get(2)?,
        reporter: r.get(3)?,
        household: r.get(4)?,
        place: r.get(5)?,
        reported_at: r.get(6)?,
        summary: r.get(7)?,
    })
}

fn task_summary(r: &Row<'_>) -> rusqlite::Result<TaskSummary> {
    Ok(TaskSummary {
        id: r.get(0)?,
        title: r.get(1)?,
        category: r.get(2)?,
        level: r.get(3)?,
        status: r.get(4)?,
        tier: r.get(5)?,
        assignee: r.get(6)?,
        deadline: r.get(7)?,
        rating: r.get(8)?,
        rejected: r.get(9)?,
    })
}

pub(super) const HH_COLS: &str = "id, building, unit, room, head_name, member_count, tags, visit_count, last_visit_at, conflicts";
const RES_COLS: &str =
    "household, member, name, building, phone, id_masked, relation, birth_year, status";
/// `shown` is the status a record shows: its own, raised by the tasks made from it.
const REC_COLS: &str = "id, category, shown, reporter, household, place, reported_at, summary";
const TASK_COLS: &str =
    "id, title, category, level, status, tier, assignee, deadline, rating, rejected";

/// Escapes `%`, `_` and `\` for a LIKE pattern with `ESCAPE '\'`.
fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

impl Store {
    /// Buildings of a grid with their household counts, in natural order.
    pub fn buildings(&self, grid: &str) -> Result<Vec<(String, i64)>> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT building, count(*) FROM households WHERE grid = ?1 AND moved_out_at IS NULL
             GROUP BY building ORDER BY length(building), building",
        )?;
        let rows = stmt.query_map([grid], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Households of a building, or of one unit of it, ordered by unit and room.
    pub fn households_in(
        &self,
        grid: &str,
        building: &str,
        unit: Option<&str>,
    ) -> Result<Vec<HouseholdSummary>> {
        let sql = format!(
            "SELECT {HH_COLS} FROM households WHERE grid = ?1 AND building = ?2 AND (?3 IS NULL OR unit = ?3)
               AND moved_out_at IS NULL
             ORDER BY length(unit), unit, length(room), room"
        );
        let mut stmt = self.conn().prepare_cached(&sql)?;
        let rows = stmt.query_map(params![grid, building, unit], household_summary)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Residents by name substring (张), full pinyin (zhangsan), pinyin initials (zs), or
    /// phone-number suffix (4 or more digits). At most `limit` hits.
    pub fn search_residents(&self, query: &str, limit: usize) -> Result<Vec<ResidentHit>> {
        let q = pinyin::normalize_query(query);
        if q.is_empty() {
            return Ok(Vec::new());
        }
        let limit = limit.min(500) as i64;
        let rows = if q.chars().all(|c| c.is_ascii_digit()) {
            let rev: String = q.chars().rev().collect();
            let sql = format!(
                "SELECT {RES_COLS} FROM residents WHERE phone_rev LIKE ?1 ESCAPE '\\' ORDER BY name LIMIT ?2"
            );
            let mut stmt = self.conn().prepare_cached(&sql)?;
            stmt.query_map(
                params![format!("{}%", like_escape(&rev)), limit],
                resident_hit,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?
        } else if pinyin::is_pinyin_query(&q) {
            let pat = format!("%{}%", like_escape(&q));
            // Initials matches first (zs → 张三 before 张森淼), then full-pinyin matches.
            let sql = format!(
                "SELECT {RES_COLS} FROM residents WHERE initials LIKE ?1 ESCAPE '\\' OR pinyin LIKE ?1 ESCAPE '\\'
                 ORDER BY (initials LIKE ?2 ESCAPE '\\') DESC, length(name), name LIMIT ?3"
            );
            let mut stmt = self.conn().prepare_cached(&sql)?;
            stmt.query_map(
                params![pat, format!("{}%", like_escape(&q)), limit],
                resident_hit,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?
        } else {
            let term = query.trim();
            let sql = format!(
                "SELECT {RES_COLS} FROM residents WHERE name LIKE ?1 ESCAPE '\\' ORDER BY (name LIKE ?2 ESCAPE '\\') DESC, length(name), name LIMIT ?3"
            );
            let mut stmt = self.conn().prepare_cached(&sql)?;
            stmt.query_map(
                params![
                    format!("%{}%", like_escape(term)),
                    format!("{}%", like_escape(term)),
                    limit
                ],
                resident_hit,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?
        };
        Ok(rows)
    }

    /// 民情 records filtered by status and/or category, newest first.
    pub fn records(
        &self,
        grid: &str,
        status: Option<&str>,
        category: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RecordSummary>> {
        let sql = format!(
            "SELECT {REC_COLS} FROM records WHERE grid = ?1 AND (?2 IS NULL OR shown = ?2) AND (?3 IS NULL OR category = ?3)
             ORDER BY reported_at DESC, id LIMIT ?4"
        );
        let mut stmt = self.conn().prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![grid, status, category, limit.min(10_000) as i64],
            record_summary,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Open tasks assigned to `user`, soonest deadline first (no deadline last).
    pub fn my_tasks(&self, user: &str) -> Result<Vec<TaskSummary>> {
        let sql = format!(
            "SELECT {TASK_COLS} FROM tasks WHERE assignee = ?1 AND status IN {OPEN_STATUSES}
             ORDER BY deadline IS NULL, deadline, id"
        );
        let mut stmt = self.conn().prepare_cached(&sql)?;
        let rows = stmt.query_map([user], task_summary)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Open tasks past their deadline on the clock-anchored now, most overdue first.
    pub fn overdue_tasks(&self, grid: &str) -> Result<Vec<TaskSummary>> {
        let now = self.now_ms();
        let sql = format!(
            "SELECT {TASK_COLS} FROM tasks WHERE status IN {OPEN_STATUSES} AND deadline < ?1 AND grid = ?2 ORDER BY deadline, id"
        );
        let mut stmt = self.conn().prepare_cached(&sql)?;
        let rows = stmt.query_map(params![now, grid], task_summary)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Tasks filtered by level and/or status, soonest deadline first.
    pub fn tasks(
        &self,
        grid: &str,
        level: Option<&str>,
        status: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TaskSummary>> {
        let sql = format!(
            "SELECT {TASK_COLS} FROM tasks WHERE grid = ?1 AND (?2 IS NULL OR level = ?2) AND (?3 IS NULL OR status = ?3)
             ORDER BY deadline IS NULL, deadline, id LIMIT ?4"
        );
        let mut stmt = self.conn().prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![grid, level, status, limit.min(10_000) as i64],
            task_summary,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// 民情 records with fields holding concurrent values, for the conflicts screen (settle
    /// each with [`Store::conflicts`] and [`Store::resolve_conflict`], as for households).
    pub fn records_with_conflicts(&self, grid: &str) -> Result<Vec<RecordSummary>> {
        let sql =
            format!("SELECT {REC_COLS} FROM records WHERE grid = ?1 AND conflicts > 0 ORDER BY id");
        let mut stmt = self.conn().prepare_cached(&sql)?;
        let rows = stmt.query_map([grid], record_summary)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Tasks with rejected events (concurrent transitions that lost), for the conflicts screen.
    pub fn tasks_with_conflicts(&self, grid: &str) -> Result<Vec<TaskSummary>> {
        let sql =
            format!("SELECT {TASK_COLS} FROM tasks WHERE grid = ?1 AND rejected > 0 ORDER BY id");
        let mut stmt = self.conn().prepare_cached(&sql)?;
        let rows = stmt.query_map([grid], task_summary)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Households with fields holding concurrent values.
    pub fn households_with_conflicts(&self, grid: &str) -> Result<Vec<HouseholdSummary>> {
        let sql = format!(
            "SELECT {HH_COLS} FROM households WHERE grid = ?1 AND conflicts > 0 ORDER BY id"
        );
        let mut stmt = self.conn().prepare_cached(&sql)?;
        let rows = stmt.query_map([grid], household_summary)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The grid's ledger counts.
    pub fn ledger(&self, grid: &str) -> Result<Ledger> {
        let c = self.conn();
        let records = c
            .prepare_cached("SELECT category, shown, count(*) FROM records WHERE grid = ?1 GROUP BY category, shown ORDER BY category, shown")?
            .query_map([grid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let tasks = c
            .prepare_cached(
                "SELECT coalesce(level, ''), status, count(*) FROM tasks WHERE grid = ?1 GROUP BY level, status ORDER BY level, status",
            )?
            .query_map([grid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let (average_satisfaction, rated_tasks): (Option<f64>, i64) = c
            .prepare_cached("SELECT avg(rating), count(rating) FROM tasks WHERE grid = ?1 AND rating IS NOT NULL")?
            .query_row([grid], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let overdue_tasks = c
            .prepare_cached(&format!("SELECT count(*) FROM tasks WHERE grid = ?1 AND status IN {OPEN_STATUSES} AND deadline < ?2"))?
            .query_row(params![grid, self.now_ms()], |r| r.get(0))?;
        let households = c
            .prepare_cached("SELECT count(*) FROM households WHERE grid = ?1")?
            .query_row([grid], |r| r.get(0))?;
        let residents = c
            .prepare_cached("SELECT count(*) FROM residents WHERE grid = ?1")?
            .query_row([grid], |r| r.get(0))?;
        Ok(Ledger {
            records,
            tasks,
            average_satisfaction,
            rated_tasks,
            overdue_tasks,
            households,
            residents,
        })
    }

    /// A household's history: its visits, the records and tasks about it, and every change
    /// to its document, newest first.
    pub fn household_history(&mut self, id: &str) -> Result<Vec<TimelineEntry>> {
        let h = self.household(id)?;
        let mut out: Vec<TimelineEntry> = h
            .visits
            .iter()
            .map(|v| TimelineEntry {
                at: v.at,
                kind: "visit".into(),
                id: v.id.clone(),
                who: v.by_name.clone(),
                text: if v.note.is_empty() {
                    v.purpose.clone()
                } else {
                    format!("{}: {}", v.purpose, v.note)
                },
            })
            .collect();
        let c = self.conn();
        let recs: Vec<TimelineEntry> = c
            .prepare_cached("SELECT reported_at, id, reporter, category, summary FROM records WHERE household = ?1")?
            .query_map([id], |r| {
                Ok(TimelineEntry {
                    at: r.get(0)?,
                    kind: "record".into(),
                    id: r.get(1)?,
                    who: r.get(2)?,
                    text: format!("{}: {}", r.get::<_, String>(3)?, r.get::<_, String>(4)?),
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        let tasks: Vec<TimelineEntry> = c
            .prepare_cached("SELECT created_at, id, coalesce(assignee, ''), title, status FROM tasks WHERE household = ?1")?
            .query_map([id], |r| {
                Ok(TimelineEntry {
                    at: r.get(0)?,
                    kind: "task".into(),
                    id: r.get(1)?,
                    who: r.get(2)?,
                    text: format!("{} ({})", r.get::<_, String>(3)?, r.get::<_, String>(4)?),
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        out.extend(recs);
        out.extend(tasks);
        out.extend(self.history(id)?.into_iter().map(|e| TimelineEntry {
            at: e.at_ms,
            kind: "change".into(),
            id: e.change,
            who: e.name,
            text: e.what,
        }));
        out.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }
}
