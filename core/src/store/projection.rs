//! The projection: the rows the screens query, computed from a document by a pure function
//! and written beside it in the same transaction. [`PROJECTION_VERSION`] changes whenever
//! the rows computed from the same document change; a store opened with an older version
//! rebuilds its projection.

use automerge::AutoCommit;
use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use crate::doc::{DocKind, kind_and_grid};
use crate::error::{Error, Result};
use crate::model::{Household, Record, RecordStatus, Tag, Task, TaskStatus};
use crate::{pinyin, validate, workflow};

/// Version of the projection rows computed from documents.
pub const PROJECTION_VERSION: i64 = 4;

/// The rows of one document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Rows {
    Household {
        household: HouseholdRow,
        residents: Vec<ResidentRow>,
    },
    Record(RecordRow),
    Task(TaskRow),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HouseholdRow {
    pub id: String,
    pub grid: String,
    pub building: String,
    pub unit: String,
    pub room: String,
    pub head_name: String,
    pub member_count: i64,
    pub tags: String,
    pub visit_count: i64,
    pub last_visit_at: Option<i64>,
    /// Fields holding concurrent values, waiting for someone to choose.
    pub conflicts: i64,
    /// When the household moved out of the grid (absent in rows of older servers).
    #[serde(default)]
    pub moved_out_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResidentRow {
    pub household: String,
    pub member: String,
    pub grid: String,
    pub building: String,
    pub name: String,
    pub pinyin: String,
    pub initials: String,
    pub phone: Option<String>,
    pub id_masked: Option<String>,
    pub gender: String,
    pub birth_year: i64,
    pub relation: String,
    pub tags: String,
    /// 迁出 or 去世; `None` while the member lives here (absent in older rows).
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordRow {
    pub id: String,
    pub grid: String,
    pub category: String,
    pub status: String,
    pub reporter: String,
    pub household: Option<String>,
    pub building: Option<String>,
    pub place: String,
    pub reported_at: i64,
    pub summary: String,
    /// The whole description, for the text search (`search_fts`); not a column of `records`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
    /// Fields holding concurrent values (two phones edited the same field offline), for
    /// the conflicts screen; absent (0) in older rows.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub conflicts: i64,
    /// Its number and the provisional one it had ([`crate::numbers`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisional_number: Option<String>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRow {
    pub id: String,
    pub grid: String,
    pub title: String,
    pub category: String,
    pub level: Option<String>,
    pub status: String,
    pub tier: String,
    pub assignee: Option<String>,
    pub deadline: Option<i64>,
    pub created_at: i64,
    pub household: Option<String>,
    pub source_record: Option<String>,
    pub rating: Option<i64>,
    pub rejected: i64,
    /// ms of the latest applied 督单 reminder the assignee has not acted on since, while the
    /// task is open ([`reminder_pending`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reminded_at: Option<i64>,
    /// ms of the bad rating (1–2) that reopened the task, while it is still open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reopened_at: Option<i64>,
    /// The whole description, for the text search (`search_fts`); not a column of `tasks`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
    /// Its number and the provisional one it had ([`crate::numbers`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisional_number: Option<String>,
}

pub(crate) fn tags_text(tags: &[Tag]) -> String {
    tags.iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Computes the rows of a document. `None` for a document that is still empty (its first
/// change has not arrived yet).
pub fn rows_of(doc_id: &str, doc: &AutoCommit) -> Result<Option<Rows>> {
    Ok(rows_and_model(doc_id, doc)?.map(|(rows, _)| rows))
}

/// A document read into the core's model, as [`rows_and_model`] gives it beside the rows:
/// for a task, the fold's view too. What a reader needing more than the rows (the server's
/// projection: visits, every task event) uses, so that nothing parses a document twice or
/// differently.
#[derive(Debug, Clone, PartialEq)]
pub enum Model {
    Household(Household),
    Record(Record),
    Task(Box<(Task, workflow::TaskView)>),
}

/// [`rows_of`] and the model the rows were computed from (hydrated once, folded once).
pub fn rows_and_model(doc_id: &str, doc: &AutoCommit) -> Result<Option<(Rows, Model)>> {
    let Some((kind, _grid)) = kind_and_grid(doc) else {
        if doc.is_empty() {
            return Ok(None);
        }
        return Err(Error::bad_doc(
            doc_id,
            "no kind or grid at the document root",
        ));
    };
    let bad = |e: autosurgeon::HydrateError| Error::bad_doc(doc_id, e);
    Ok(Some(match kind {
        DocKind::Household => {
            let h = Household::read_from(doc).map_err(bad)?;
            let rows = household_rows(&h, crate::doc::field_conflicts(doc).len() as i64);
            (rows, Model::Household(h))
        }
        DocKind::Record => {
            let r: Record = autosurgeon::hydrate(doc).map_err(bad)?;
            let conflicts = crate::doc::field_conflicts(doc).len() as i64;
            (Rows::Record(record_row(&r, conflicts)), Model::Record(r))
        }
        DocKind::Task => {
            let t: Task = autosurgeon::hydrate(doc).map_err(bad)?;
            let view = workflow::fold(t.events.values());
            let row = task_row_with(&t, &view);
            (Rows::Task(row), Model::Task(Box::new((t, view))))
        }
    }))
}

pub(crate) fn household_rows(h: &Household, conflicts: i64) -> Rows {
    let a = &h.address;
    let head = h
        .living()
        .find(|m| m.relation == crate::model::Relation::Head)
        .or(h.living().next())
        .or(h.members.first())
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let residents = h
        .members
        .iter()
        .map(|m| {
            let keys = pinyin::name_keys(&m.name);
            ResidentRow {
                household: h.id.clone(),
                member: m.id.clone(),
                grid: a.grid.clone(),
                building: a.building.clone(),
                name: m.name.clone(),
                pinyin: keys.full.join(" "),
                initials: keys.initials.join(" "),
                phone: m.phone.clone(),
                id_masked: m.id_number.as_deref().map(validate::mask_id),
                gender: m.gender.as_str().to_string(),
                birth_year: m.birth_year,
                relation: m.relation.as_str().to_string(),
                tags: tags_text(&m.tags),
                status: m.status.map(|s| s.as_str().to_string()),
            }
        })
        .collect();
    Rows::Household {
        household: HouseholdRow {
            id: h.id.clone(),
            grid: a.grid.clone(),
            building: a.building.clone(),
            unit: a.unit.clone(),
            room: a.room.clone(),
            head_name: head,
            member_count: h.living().count() as i64,
            tags: tags_text(&h.tags),
            visit_count: h.visits.len() as i64,
            last_visit_at: h.visits.iter().map(|v| v.at).max(),
            conflicts,
            moved_out_at: h.moved_out_at,
        },
        residents,
    }
}

pub(crate) fn record_row(r: &Record, conflicts: i64) -> RecordRow {
    RecordRow {
        id: r.id.clone(),
        grid: r.grid.clone(),
        category: r.category.as_str().to_string(),
        status: r.status.as_str().to_string(),
        reporter: r.reporter.clone(),
        household: r.household.clone(),
        building: r.building.clone(),
        place: r.place.clone(),
        reported_at: r.reported_at,
        summary: r.description.as_str().chars().take(40).collect(),
        text: r.description.as_str().to_string(),
        conflicts,
        number: r.number.clone(),
        provisional_number: r.provisional_number.clone(),
    }
}

pub(crate) fn task_row(t: &Task) -> TaskRow {
    task_row_with(t, &workflow::fold(t.events.values()))
}

/// [`task_row`] when the fold is already done.
pub(crate) fn task_row_with(t: &Task, view: &workflow::TaskView) -> TaskRow {
    TaskRow {
        id: t.id.clone(),
        grid: t.grid.clone(),
        title: t.title.clone(),
        category: t.category.as_str().to_string(),
        level: view.level.map(|l| l.as_str().to_string()),
        status: view.status.as_str().to_string(),
        tier: view.tier.as_str().to_string(),
        assignee: view.assignee.clone(),
        deadline: view.deadline,
        created_at: t.created_at,
        household: t.household.clone(),
        source_record: t.source_record.clone(),
        rating: view.last_rating.as_ref().map(|r| i64::from(r.score)),
        rejected: view.rejected().count() as i64,
        reminded_at: reminder_pending(view),
        reopened_at: reopened_by_rating(view),
        text: t.description.as_str().to_string(),
        number: t.number.clone(),
        provisional_number: t.provisional_number.clone(),
    }
}

fn event_ms(hlc: i64) -> i64 {
    crate::hlc::Hlc::from_i64(hlc).map_or(0, |h| i64::try_from(h.wall_ms()).unwrap_or(i64::MAX))
}

fn is_open(status: TaskStatus) -> bool {
    matches!(
        status,
        TaskStatus::Ordered | TaskStatus::Assigned | TaskStatus::InProgress
    )
}

/// When the latest applied 督单 reminder was given, if the task is open and its assignee has
/// applied no event of their own after it (in fold order): a reminder "received" and not yet
/// answered.
pub(crate) fn reminder_pending(view: &workflow::TaskView) -> Option<i64> {
    if !is_open(view.status) {
        return None;
    }
    let assignee = view.assignee.as_deref();
    let mut pending = None;
    for f in &view.events {
        if f.outcome != workflow::Outcome::Applied {
            continue;
        }
        if f.event.kind == crate::model::EventKind::Supervise.as_str() {
            pending = Some(event_ms(f.event.hlc));
        } else if Some(f.event.author.as_str()) == assignee {
            pending = None;
        }
    }
    pending
}

/// When a bad rating (1–2) reopened the task, while it is open again.
pub(crate) fn reopened_by_rating(view: &workflow::TaskView) -> Option<i64> {
    let r = view.last_rating.as_ref()?;
    (is_open(view.status) && r.score <= 2).then(|| event_ms(r.hlc))
}

/// One searchable text of a document: its field, the resident it is about (households),
/// and the text.
pub(crate) struct SearchText {
    pub field: &'static str,
    pub member: Option<String>,
    pub text: String,
}

/// The searchable texts of a document's rows for `search_fts`: a household's address and
/// each resident's name and pinyin keys (full and initials; never a phone or ID number), a
/// record's text and place, a task's title and text.
pub(crate) fn search_texts(rows: &Rows) -> Vec<SearchText> {
    let t = |field, member: Option<&String>, text: String| SearchText {
        field,
        member: member.cloned(),
        text,
    };
    let mut out = Vec::new();
    match rows {
        Rows::Household {
            household: h,
            residents,
        } => {
            // "3号楼2单元502" and "3号楼502": what people type for an address.
            out.push(t(
                "address",
                None,
                format!(
                    "{}{}{} {}{}",
                    h.building, h.unit, h.room, h.building, h.room
                ),
            ));
            for r in residents {
                out.push(t("name", Some(&r.member), r.name.clone()));
                out.push(t(
                    "pinyin",
                    Some(&r.member),
                    format!("{} {}", r.pinyin, r.initials),
                ));
            }
        }
        Rows::Record(r) => {
            let text = if r.text.is_empty() {
                &r.summary
            } else {
                &r.text
            };
            out.push(t("text", None, text.clone()));
            if !r.place.is_empty() {
                out.push(t("place", None, r.place.clone()));
            }
            if let Some(n) = numbers_text(&r.number, &r.provisional_number) {
                out.push(t("number", None, n));
            }
        }
        Rows::Task(task) => {
            out.push(t("title", None, task.title.clone()));
            if !task.text.is_empty() {
                out.push(t("text", None, task.text.clone()));
            }
            if let Some(n) = numbers_text(&task.number, &task.provisional_number) {
                out.push(t("number", None, n));
            }
        }
    }
    out
}

/// A document's numbers as one searchable text ("金湖-2026-000123 金湖-2026-临…-3").
fn numbers_text(number: &Option<String>, provisional: &Option<String>) -> Option<String> {
    let both: Vec<&str> = [number, provisional]
        .into_iter()
        .filter_map(|n| n.as_deref())
        .collect();
    (!both.is_empty()).then(|| both.join(" "))
}

/// Writes a document's search rows (`search_rows` and the `search_fts` text of the same
/// rowid), in the transaction that writes its projection rows.
fn write_search(tx: &Transaction<'_>, rows: &Rows) -> Result<()> {
    let (id, kind, grid) = match rows {
        Rows::Household { household: h, .. } => (&h.id, DocKind::Household, &h.grid),
        Rows::Record(r) => (&r.id, DocKind::Record, &r.grid),
        Rows::Task(t) => (&t.id, DocKind::Task, &t.grid),
    };
    let mut row = tx.prepare_cached(
        "INSERT INTO search_rows (doc, kind, grid, field, member) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut fts = tx.prepare_cached("INSERT INTO search_fts (rowid, body) VALUES (?1, ?2)")?;
    for s in search_texts(rows) {
        row.execute(params![id, kind.as_str(), grid, s.field, s.member])?;
        fts.execute(params![tx.last_insert_rowid(), s.text])?;
    }
    Ok(())
}

/// Deletes a document's search rows.
fn delete_search(tx: &Transaction<'_>, id: &str) -> Result<()> {
    tx.prepare_cached(
        "DELETE FROM search_fts WHERE rowid IN (SELECT id FROM search_rows WHERE doc = ?1)",
    )?
    .execute([id])?;
    tx.prepare_cached("DELETE FROM search_rows WHERE doc = ?1")?
        .execute([id])?;
    Ok(())
}

/// Deletes the search rows of every document of `grid` (a purged grid).
pub(crate) fn delete_search_of_grid(tx: &Transaction<'_>, grid: &str) -> Result<()> {
    tx.prepare_cached(
        "DELETE FROM search_fts WHERE rowid IN (SELECT id FROM search_rows WHERE grid = ?1)",
    )?
    .execute([grid])?;
    tx.prepare_cached("DELETE FROM search_rows WHERE grid = ?1")?
        .execute([grid])?;
    Ok(())
}

/// Removes a document's rows (its search rows too, whatever `kind` says: callers that do
/// not know the kind delete through `DocKind::Task` first).
pub(crate) fn delete_rows(tx: &Transaction<'_>, kind: DocKind, id: &str) -> Result<()> {
    delete_search(tx, id)?;
    match kind {
        DocKind::Household => {
            tx.prepare_cached("DELETE FROM households WHERE id = ?1")?
                .execute([id])?;
            tx.prepare_cached("DELETE FROM residents WHERE household = ?1")?
                .execute([id])?;
        }
        DocKind::Record => {
            tx.prepare_cached("DELETE FROM records WHERE id = ?1")?
                .execute([id])?;
        }
        DocKind::Task => {
            if let Some(r) = delete_task_row(tx, id)? {
                refresh_record_shown(tx, &r)?;
            }
        }
    }
    Ok(())
}

/// Deletes a task's row; returns the record it was made from, whose shown status the
/// caller refreshes.
fn delete_task_row(tx: &Transaction<'_>, id: &str) -> Result<Option<String>> {
    // RETURNING: the row is deleted by the first step, which reads its link.
    Ok(tx
        .prepare_cached("DELETE FROM tasks WHERE id = ?1 RETURNING source_record")?
        .query_row([id], |r| r.get::<_, Option<String>>(0))
        .optional()?
        .flatten())
}

/// The status a record whose own status is `own` shows, given the tasks held here that
/// were made from it ([`workflow::record_status_shown`]).
fn shown_status(tx: &Transaction<'_>, record: &str, own: &str) -> Result<RecordStatus> {
    // Rows were written by this build from validated documents; an unknown value (a newer
    // build's) counts as the lowest.
    let own = RecordStatus::parse(own).unwrap_or(RecordStatus::Pending);
    let tasks: Vec<TaskStatus> = tx
        .prepare_cached("SELECT status FROM tasks WHERE source_record = ?1")?
        .query_map([record], |r| r.get::<_, String>(0))?
        .filter_map(|s| s.ok().and_then(|s| TaskStatus::parse(&s).ok()))
        .collect();
    Ok(workflow::record_status_shown(own, tasks))
}

/// Sets the status `record` shows after a task made from it changed, in the transaction
/// that changed it. A record not held here is left alone.
pub(crate) fn refresh_record_shown(tx: &Transaction<'_>, record: &str) -> Result<()> {
    let own: Option<String> = tx
        .prepare_cached("SELECT status FROM records WHERE id = ?1")?
        .query_row([record], |r| r.get(0))
        .optional()?;
    let Some(own) = own else {
        return Ok(());
    };
    let shown = shown_status(tx, record, &own)?;
    tx.prepare_cached("UPDATE records SET shown = ?2 WHERE id = ?1 AND shown IS NOT ?2")?
        .execute(params![record, shown.as_str()])?;
    Ok(())
}

/// [`refresh_record_shown`] for every record some task held here was made from (after the
/// migration that added the column).
pub(crate) fn refresh_all_records_shown(tx: &Transaction<'_>) -> Result<()> {
    let records: Vec<String> = tx
        .prepare("SELECT DISTINCT source_record FROM tasks WHERE source_record IS NOT NULL")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for r in records {
        refresh_record_shown(tx, &r)?;
    }
    Ok(())
}

/// Replaces a document's rows.
pub(crate) fn write_rows(tx: &Transaction<'_>, rows: &Rows, replace: bool) -> Result<()> {
    write_table_rows(tx, rows, replace)?;
    write_search(tx, rows)
}

fn write_table_rows(tx: &Transaction<'_>, rows: &Rows, replace: bool) -> Result<()> {
    match rows {
        Rows::Household {
            household: h,
            residents,
        } => {
            if replace {
                delete_rows(tx, DocKind::Household, &h.id)?;
            }
            tx.prepare_cached(
                "INSERT INTO households (id, grid, building, unit, room, head_name, member_count, tags, visit_count, last_visit_at, conflicts, moved_out_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?
            .execute(params![
                h.id, h.grid, h.building, h.unit, h.room, h.head_name, h.member_count, h.tags, h.visit_count,
                h.last_visit_at, h.conflicts, h.moved_out_at
            ])?;
            let mut stmt = tx.prepare_cached(
                "INSERT INTO residents (household, member, grid, building, name, pinyin, initials, phone, phone_rev, id_masked, gender, birth_year, relation, tags, status)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            )?;
            for r in residents {
                let rev = r
                    .phone
                    .as_ref()
                    .map(|p| p.chars().rev().collect::<String>());
                stmt.execute(params![
                    r.household,
                    r.member,
                    r.grid,
                    r.building,
                    r.name,
                    r.pinyin,
                    r.initials,
                    r.phone,
                    rev,
                    r.id_masked,
                    r.gender,
                    r.birth_year,
                    r.relation,
                    r.tags,
                    r.status
                ])?;
            }
        }
        Rows::Record(r) => {
            if replace {
                delete_rows(tx, DocKind::Record, &r.id)?;
            }
            tx.prepare_cached(
                "INSERT INTO records (id, grid, category, status, shown, reporter, household, building, place, reported_at, summary, conflicts, number, provisional_number)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?
            .execute(params![
                r.id, r.grid, r.category, r.status, shown_status(tx, &r.id, &r.status)?.as_str(), r.reporter,
                r.household, r.building, r.place, r.reported_at, r.summary, r.conflicts,
                r.number, r.provisional_number
            ])?;
        }
        Rows::Task(t) => {
            // The record it was made from before, refreshed below when the link changed.
            let linked_before = if replace {
                delete_task_row(tx, &t.id)?
            } else {
                None
            };
            tx.prepare_cached(
                "INSERT INTO tasks (id, grid, title, category, level, status, tier, assignee, deadline, created_at, household, source_record, rating, rejected, reminded_at, reopened_at, number, provisional_number)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
            )?
            .execute(params![
                t.id, t.grid, t.title, t.category, t.level, t.status, t.tier, t.assignee, t.deadline, t.created_at,
                t.household, t.source_record, t.rating, t.rejected, t.reminded_at, t.reopened_at,
                t.number, t.provisional_number
            ])?;
            if let Some(r) = &t.source_record {
                refresh_record_shown(tx, r)?;
            }
            if let Some(r) = linked_before.filter(|r| t.source_record.as_ref() != Some(r)) {
                refresh_record_shown(tx, &r)?;
            }
        }
    }
    Ok(())
}

/// Every projection row of the store as text, in a fixed order: two stores with equal
/// projections give equal dumps.
pub fn dump(conn: &rusqlite::Connection) -> Result<String> {
    let mut out = String::new();
    for (table, order) in [
        ("households", "id"),
        ("residents", "household, member"),
        ("records", "id"),
        ("tasks", "id"),
    ] {
        let mut stmt = conn.prepare(&format!("SELECT * FROM {table} ORDER BY {order}"))?;
        let n = stmt.column_count();
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            out.push_str(table);
            for i in 0..n {
                let v: rusqlite::types::Value = row.get(i)?;
                out.push_str(&format!("|{v:?}"));
            }
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A household's rows as a server without members' status or moved-out households
    /// ships them in a bootstrap bundle: the fields the newer rows added are absent.
    #[derive(Serialize)]
    struct OlderResident<'a> {
        household: &'a str,
        member: &'a str,
        grid: &'a str,
        building: &'a str,
        name: &'a str,
        pinyin: &'a str,
        initials: &'a str,
        phone: Option<&'a str>,
        id_masked: Option<&'a str>,
        gender: &'a str,
        birth_year: i64,
        relation: &'a str,
        tags: &'a str,
    }

    #[test]
    fn rows_from_an_older_server_decode_with_the_new_fields_empty() {
        let older = OlderResident {
            household: "hh-1",
            member: "m-1",
            grid: "g",
            building: "1号楼",
            name: "张三",
            pinyin: "zhangsan",
            initials: "zs",
            phone: None,
            id_masked: None,
            gender: "男",
            birth_year: 1960,
            relation: "户主",
            tags: "",
        };
        let bytes = rmp_serde::to_vec_named(&older).unwrap();
        let row: ResidentRow = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(row.status, None);
        assert_eq!(row.name, "张三");
    }
}
