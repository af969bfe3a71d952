//! The lists of real screens, served from the projection tables: the home list, paged and
//! filtered records and tasks carrying their household's address and the assignee's name,
//! the text search (FTS5 trigram, with a scan for 1–2 character queries), visit coverage
//! and the grid's people (the assignee picker).
//!
//! Paging is keyset, not offset: a page ends with a cursor (`key:id` of its last row) and
//! the next page starts strictly after it, so rows a sync adds or removes meanwhile never
//! shift a page (no row shown twice or skipped), and a deep page costs what the first does.

use rusqlite::{OptionalExtension, Row, params};

use super::Store;
use crate::error::{Error, Result};
use crate::model::{Category, Level, RecordStatus, Tag, TaskStatus};
use crate::pinyin;

/// Three days, the horizon of "due soon" on the home list.
pub const DUE_SOON_MS: i64 = 3 * 24 * 3600 * 1000;
/// The largest page a list returns.
pub const MAX_PAGE: usize = 200;
/// China Standard Time (UTC+8, no daylight saving): where a month starts for coverage.
const CST_OFFSET_MS: i64 = 8 * 3600 * 1000;
const DAY_MS: i64 = 24 * 3600 * 1000;
/// The most people a `/v1/session` reply may list.
const MAX_PEOPLE: usize = 20_000;

/// Why an item is on the home list. The order is the list's priority order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HomeReason {
    /// An open task assigned to me, past its deadline.
    Overdue,
    /// An open task assigned to me, due within three days.
    DueSoon,
    /// A 督单 reminder on an open task of mine that I have not acted on since.
    Reminded,
    /// An open task of mine that a bad rating (1–2) reopened.
    Reopened,
    /// A household of the grid with no visit this month.
    NotVisited,
}

/// A household's address as a list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressLine {
    pub household: String,
    pub building: String,
    pub unit: String,
    pub room: String,
    pub head_name: String,
}

/// A task in a list: its household's address and its assignee's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskItem {
    pub id: String,
    pub grid: String,
    pub title: String,
    pub category: String,
    pub level: Option<String>,
    pub status: String,
    pub tier: String,
    pub assignee: Option<String>,
    /// The assignee's name from the grid's people; `None` when unknown here (then show
    /// the id, or a linked unit's name, which `assignee` holds).
    pub assignee_name: Option<String>,
    pub deadline: Option<i64>,
    pub rating: Option<i64>,
    pub rejected: i64,
    pub address: Option<AddressLine>,
    /// The number people are given ([`crate::numbers`]).
    pub number: Option<String>,
}

/// A 民情 record in a list: its household's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordItem {
    pub id: String,
    pub grid: String,
    pub category: String,
    /// The status it shows (its own, raised by its tasks).
    pub status: String,
    /// Who raised it (a resident's name, as told).
    pub reporter: String,
    /// The record's own building, else its household's.
    pub building: Option<String>,
    pub place: String,
    pub reported_at: i64,
    pub summary: String,
    pub address: Option<AddressLine>,
    /// The number people are given ([`crate::numbers`]).
    pub number: Option<String>,
}

/// One line of the home list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeItem {
    pub reason: HomeReason,
    /// What the reason is about: the deadline (overdue, due soon), the reminder, the bad
    /// rating, the last visit (`None`: never visited).
    pub at: Option<i64>,
    /// Set for the task reasons.
    pub task: Option<TaskItem>,
    /// Set for [`HomeReason::NotVisited`].
    pub household: Option<super::HouseholdSummary>,
}

/// Filters of the records list; `None` is "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordFilter {
    pub building: Option<String>,
    /// The household's tag, or a tag of one of its members.
    pub tag: Option<Tag>,
    /// The status the record shows.
    pub status: Option<RecordStatus>,
    pub category: Option<Category>,
}

/// Filters of the tasks list; `None` is "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// The building of the task's household.
    pub building: Option<String>,
    /// The household's tag, or a tag of one of its members.
    pub tag: Option<Tag>,
    pub status: Option<TaskStatus>,
    pub level: Option<Level>,
    pub assignee: Option<String>,
}

/// A page of records, newest first; `next` is the cursor of the following page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordPage {
    pub items: Vec<RecordItem>,
    pub next: Option<String>,
}

/// A page of tasks, soonest deadline first (none last); `next` as [`RecordPage::next`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskPage {
    pub items: Vec<TaskItem>,
    pub next: Option<String>,
}

/// What a search hit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SearchKind {
    Resident,
    Household,
    Record,
    Task,
}

/// One search result. A resident's never carries an ID or phone number (a phone suffix
/// may match, shown as `matched == "phone"` only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHit {
    pub kind: SearchKind,
    /// The household (resident, household), record or task id.
    pub id: String,
    /// The member id of a resident.
    pub member: Option<String>,
    /// A resident's name, a household's address, a record's summary, a task's title.
    pub title: String,
    /// Which field matched: `name`, `pinyin`, `phone`, `address`, `text`, `place`, `title`,
    /// `number`.
    pub matched: String,
    /// The matched text around the match (empty for residents).
    pub snippet: String,
    pub address: Option<AddressLine>,
}

/// Visits of one building (or the whole grid) in a month.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildingCoverage {
    pub building: String,
    pub registered: i64,
    pub visited: i64,
}

/// A grid's visit coverage in the month holding `now` (China time).
#[derive(Debug, Clone, PartialEq)]
pub struct Coverage {
    pub grid: String,
    /// ms of the month's first instant (00:00 UTC+8 on the 1st).
    pub month_start: i64,
    pub registered: i64,
    pub visited: i64,
    /// visited ÷ registered (0 with no household).
    pub ratio: f64,
    /// Per building, in natural order.
    pub buildings: Vec<BuildingCoverage>,
}

/// A user of a grid, for the assignee picker: name and role, nothing more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub user: String,
    pub name: String,
    pub role: String,
}

/// The first instant (ms) of the month holding `now`, in China time (UTC+8).
pub fn month_start_ms(now: i64) -> i64 {
    let local_days = (now + CST_OFFSET_MS).div_euclid(DAY_MS);
    let day_of_month = civil_day_of_month(local_days);
    (local_days - (day_of_month - 1)) * DAY_MS - CST_OFFSET_MS
}

/// The day of the month (1–31) of a day counted from 1970-01-01 (the proleptic Gregorian
/// calendar; H. Hinnant's `civil_from_days`).
fn civil_day_of_month(days: i64) -> i64 {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    doy - (153 * mp + 2) / 5 + 1
}

/// Why an open task assigned to me is on the home list, and the time it is about: the
/// highest of its reasons only (a task is listed once).
pub fn home_reason(
    deadline: Option<i64>,
    reminded_at: Option<i64>,
    reopened_at: Option<i64>,
    now: i64,
) -> Option<(HomeReason, Option<i64>)> {
    match deadline {
        Some(d) if d < now => return Some((HomeReason::Overdue, Some(d))),
        Some(d) if d < now.saturating_add(DUE_SOON_MS) => {
            return Some((HomeReason::DueSoon, Some(d)));
        }
        _ => {}
    }
    if let Some(at) = reminded_at {
        return Some((HomeReason::Reminded, Some(at)));
    }
    reopened_at.map(|at| (HomeReason::Reopened, Some(at)))
}

fn clamp_page(limit: usize) -> i64 {
    limit.clamp(1, MAX_PAGE) as i64
}

fn tag_pattern(tag: Option<Tag>) -> Option<String> {
    tag.map(|t| format!("%,{},%", t.as_str()))
}

/// A cursor `key:id` (what [`cursor_of`] made).
fn parse_cursor(cursor: &str) -> Result<(i64, String)> {
    let bad = || Error::invalid("cursor", "is not a cursor of this list");
    let (key, id) = cursor.split_once(':').ok_or_else(bad)?;
    let key: i64 = key.parse().map_err(|_| bad())?;
    if id.is_empty() || id.len() > 200 {
        return Err(bad());
    }
    Ok((key, id.to_string()))
}

fn cursor_of(key: i64, id: &str) -> String {
    format!("{key}:{id}")
}

/// A page is read with one row more than `limit`: when it came, the page is cut to `limit`
/// and the cursor of its last row is the next page's start.
fn cut_page<T>(items: &mut Vec<T>, limit: i64, cursor: impl Fn(&T) -> String) -> Option<String> {
    if items.len() as i64 <= limit {
        return None;
    }
    items.truncate(limit as usize);
    items.last().map(cursor)
}

fn address_at(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<AddressLine>> {
    let household: Option<String> = r.get(i)?;
    let building: Option<String> = r.get(i + 1)?;
    Ok(match (household, building) {
        (Some(household), Some(building)) => Some(AddressLine {
            household,
            building,
            unit: r.get(i + 2)?,
            room: r.get(i + 3)?,
            head_name: r.get(i + 4)?,
        }),
        _ => None,
    })
}

/// Columns of a task item: tasks `t`, households `h`, people `p`.
const TASK_ITEM_COLS: &str = "t.id, t.grid, t.title, t.category, t.level, t.status, t.tier, t.assignee, p.name, t.deadline, t.rating, t.rejected,
     h.id, h.building, h.unit, h.room, h.head_name, t.reminded_at, t.reopened_at, t.number";
const TASK_ITEM_FROM: &str = "tasks t LEFT JOIN households h ON h.id = t.household
     LEFT JOIN people p ON p.grid = t.grid AND p.user = t.assignee";

fn task_item(r: &Row<'_>) -> rusqlite::Result<TaskItem> {
    Ok(TaskItem {
        id: r.get(0)?,
        grid: r.get(1)?,
        title: r.get(2)?,
        category: r.get(3)?,
        level: r.get(4)?,
        status: r.get(5)?,
        tier: r.get(6)?,
        assignee: r.get(7)?,
        assignee_name: r.get(8)?,
        deadline: r.get(9)?,
        rating: r.get(10)?,
        rejected: r.get(11)?,
        address: address_at(r, 12)?,
        number: r.get(19)?,
    })
}

const RECORD_ITEM_COLS: &str = "r.id, r.grid, r.category, r.shown, r.reporter, coalesce(r.building, h.building), r.place, r.reported_at, r.summary,
     h.id, h.building, h.unit, h.room, h.head_name, r.number";

fn record_item(r: &Row<'_>) -> rusqlite::Result<RecordItem> {
    Ok(RecordItem {
        id: r.get(0)?,
        grid: r.get(1)?,
        category: r.get(2)?,
        status: r.get(3)?,
        reporter: r.get(4)?,
        building: r.get(5)?,
        place: r.get(6)?,
        reported_at: r.get(7)?,
        summary: r.get(8)?,
        address: address_at(r, 9)?,
        number: r.get(14)?,
    })
}

/// The tag condition on household `h` (its tags or a member's), parameter `?{n}`.
fn tag_condition(n: usize) -> String {
    format!(
        "(?{n} IS NULL OR (',' || h.tags || ',') LIKE ?{n}
          OR EXISTS (SELECT 1 FROM residents m WHERE m.household = h.id AND (',' || m.tags || ',') LIKE ?{n}))"
    )
}

/// Escapes `%`, `_` and `\` for a LIKE pattern with `ESCAPE '\'`.
fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// At most `chars` characters of `text` around the first case-insensitive occurrence of
/// `needle`, with `…` where it was cut.
fn snippet_around(text: &str, needle: &str, chars: usize) -> String {
    let lower = text.to_lowercase();
    let chars_of: Vec<char> = text.chars().collect();
    // Lowercasing may change a character count (rarely): stay within the text.
    let start = lower
        .find(&needle.to_lowercase())
        .map_or(0, |b| lower[..b].chars().count())
        .min(chars_of.len());
    let from = start.saturating_sub(chars / 3);
    let to = (from + chars).min(chars_of.len());
    let mut s: String = chars_of[from..to].iter().collect();
    if from > 0 {
        s.insert(0, '…');
    }
    if to < chars_of.len() {
        s.push('…');
    }
    s
}

impl Store {
    /// The home list of `user` on `grid` at `now`: open tasks assigned to them that are
    /// overdue, due within three days, reminded (督单) since they last acted, or reopened by
    /// a bad rating — in that priority order, each task once under its highest reason —
    /// then the grid's households not visited this month (never visited first), up to
    /// `limit` items in all.
    pub fn home_list(
        &self,
        grid: &str,
        user: &str,
        now: i64,
        limit: usize,
    ) -> Result<Vec<HomeItem>> {
        let limit = limit.min(10 * MAX_PAGE);
        // One bounded, indexed read per reason, in the reasons' order (a worker may hold
        // thousands of overdue tasks: only the first `limit` are read). Each row's reason is
        // still [`home_reason`]'s, the one rule; a row it places elsewhere is left to its part.
        let soon = now.saturating_add(DUE_SOON_MS);
        let parts: [(HomeReason, &str); 4] = [
            (
                HomeReason::Overdue,
                "t.deadline < ?3 ORDER BY t.deadline, t.id",
            ),
            (
                HomeReason::DueSoon,
                "t.deadline >= ?3 AND t.deadline < ?4 ORDER BY t.deadline, t.id",
            ),
            (
                HomeReason::Reminded,
                "t.reminded_at IS NOT NULL AND (t.deadline IS NULL OR t.deadline >= ?4)
                 ORDER BY t.reminded_at, t.id",
            ),
            (
                HomeReason::Reopened,
                "t.reopened_at IS NOT NULL AND t.reminded_at IS NULL
                 AND (t.deadline IS NULL OR t.deadline >= ?4) ORDER BY t.reopened_at, t.id",
            ),
        ];
        let mut items = Vec::new();
        for (want, part) in parts {
            if items.len() >= limit {
                break;
            }
            let sql = format!(
                "SELECT {TASK_ITEM_COLS} FROM {TASK_ITEM_FROM}
                 WHERE t.assignee = ?1 AND t.grid = ?2
                   AND t.status IN ('ordered','assigned','in_progress')
                   AND {part} LIMIT ?5"
            );
            let mut stmt = self.conn().prepare_cached(&sql)?;
            let left = (limit - items.len()) as i64;
            let mut rows = stmt.query(params![user, grid, now, soon, left])?;
            while let Some(r) = rows.next()? {
                let task = task_item(r)?;
                if let Some((reason, at)) = home_reason(task.deadline, r.get(17)?, r.get(18)?, now)
                    && reason == want
                {
                    items.push(HomeItem {
                        reason,
                        at,
                        task: Some(task),
                        household: None,
                    });
                }
            }
        }
        if items.len() < limit {
            let left = (limit - items.len()) as i64;
            for h in self.not_visited_within(grid, None, now, left)? {
                items.push(HomeItem {
                    reason: HomeReason::NotVisited,
                    at: h.last_visit_at,
                    task: None,
                    household: Some(h),
                });
            }
        }
        Ok(items)
    }

    /// A page of the grid's 民情 records, newest first, filtered; `after` is the `next` of
    /// the previous page (`None`: the first page). At most [`MAX_PAGE`] items.
    pub fn record_page(
        &self,
        grid: &str,
        filter: &RecordFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RecordPage> {
        let limit = clamp_page(limit);
        let after = after.map(parse_cursor).transpose()?;
        let sql = format!(
            "SELECT {RECORD_ITEM_COLS} FROM records r LEFT JOIN households h ON h.id = r.household
             WHERE r.grid = ?1
               AND (?2 IS NULL OR coalesce(r.building, h.building) = ?2)
               AND {}
               AND (?4 IS NULL OR r.shown = ?4)
               AND (?5 IS NULL OR r.category = ?5)
               {}
             ORDER BY r.reported_at DESC, r.id DESC LIMIT ?8",
            tag_condition(3),
            if after.is_some() {
                "AND (r.reported_at, r.id) < (?6, ?7)"
            } else {
                "AND ?6 IS NULL AND ?7 IS NULL"
            }
        );
        let mut stmt = self.conn().prepare_cached(&sql)?;
        let (key, id) = after.unzip();
        let mut items = stmt
            .query_map(
                params![
                    grid,
                    filter.building,
                    tag_pattern(filter.tag),
                    filter.status.map(|s| s.as_str()),
                    filter.category.map(|c| c.as_str()),
                    key,
                    id,
                    limit + 1
                ],
                record_item,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let next = cut_page(&mut items, limit, |r| cursor_of(r.reported_at, &r.id));
        Ok(RecordPage { items, next })
    }

    /// A page of the grid's tasks, soonest deadline first (no deadline last), filtered;
    /// `after` as in [`Store::record_page`].
    pub fn task_page(
        &self,
        grid: &str,
        filter: &TaskFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<TaskPage> {
        let limit = clamp_page(limit);
        let after = after.map(parse_cursor).transpose()?;
        let sql = format!(
            "SELECT {TASK_ITEM_COLS} FROM {TASK_ITEM_FROM}
             WHERE t.grid = ?1
               AND (?2 IS NULL OR h.building = ?2)
               AND {}
               AND (?4 IS NULL OR t.status = ?4)
               AND (?5 IS NULL OR t.level = ?5)
               AND (?6 IS NULL OR t.assignee = ?6)
               {}
             ORDER BY coalesce(t.deadline, 9223372036854775807), t.id LIMIT ?9",
            tag_condition(3),
            if after.is_some() {
                "AND (coalesce(t.deadline, 9223372036854775807), t.id) > (?7, ?8)"
            } else {
                "AND ?7 IS NULL AND ?8 IS NULL"
            }
        );
        let mut stmt = self.conn().prepare_cached(&sql)?;
        let (key, id) = after.unzip();
        let mut items = stmt
            .query_map(
                params![
                    grid,
                    filter.building,
                    tag_pattern(filter.tag),
                    filter.status.map(|s| s.as_str()),
                    filter.level.map(|l| l.as_str()),
                    filter.assignee,
                    key,
                    id,
                    limit + 1
                ],
                task_item,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let next = cut_page(&mut items, limit, |t| {
            cursor_of(t.deadline.unwrap_or(i64::MAX), &t.id)
        });
        Ok(TaskPage { items, next })
    }

    /// Searches residents (name, pinyin, pinyin initials, phone suffix; ID and phone
    /// numbers never shown), addresses, record text and place, and task titles and text.
    /// Queries of 3 or more characters use the FTS5 trigram index (residents' names and
    /// pinyin keys are indexed too); shorter ones, which trigram cannot match (two Chinese
    /// characters are a common word, `zs` common initials), scan: the residents table as
    /// [`Store::search_residents`] does, and the indexed texts with LIKE, stopping at the
    /// limit. Residents first, then households, records and tasks, newest first within each.
    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<SearchHit>> {
        let term = query.trim();
        let q = pinyin::normalize_query(term);
        if q.is_empty() {
            return Ok(Vec::new());
        }
        let limit = clamp_page(limit) as usize;
        let digits = q.chars().all(|c| c.is_ascii_digit());
        let pinyin_query = pinyin::is_pinyin_query(&q);
        // What goes to the text index: pinyin without its spaces and apostrophes.
        let text_query = if pinyin_query { q.as_str() } else { term };
        let indexed = text_query.chars().count() >= 3;
        let mut hits: Vec<SearchHit> = Vec::new();
        if digits || !indexed {
            let matched = if digits {
                "phone"
            } else if pinyin_query {
                "pinyin"
            } else {
                "name"
            };
            for r in self.search_residents(term, limit)? {
                let address = self.address_of(&r.household)?;
                hits.push(SearchHit {
                    kind: SearchKind::Resident,
                    id: r.household,
                    member: Some(r.member),
                    title: r.name,
                    matched: matched.to_string(),
                    snippet: String::new(),
                    address,
                });
            }
        }
        let fetch = (limit * 2) as i64;
        let mut text_hits: Vec<(SearchKind, String, Option<String>, String, String)> = Vec::new();
        let row =
            |r: &Row<'_>| -> rusqlite::Result<(String, String, Option<String>, String, String)> {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            };
        if indexed {
            let mut stmt = self.conn().prepare_cached(
                "SELECT s.kind, s.doc, s.member, s.field, snippet(search_fts, 0, '', '', '…', 16)
                 FROM search_fts JOIN search_rows s ON s.id = search_fts.rowid
                 WHERE search_fts MATCH ?1 ORDER BY search_fts.rowid DESC LIMIT ?2",
            )?;
            let phrase = format!("\"{}\"", text_query.replace('"', "\"\""));
            for r in stmt.query_map(params![phrase, fetch], row)? {
                let (kind, doc, member, field, snippet) = r?;
                text_hits.push((kind_of(&kind, &field), doc, member, field, snippet));
            }
        } else {
            // Trigram needs 3 characters: a scan of the texts, stopping at the limit. The
            // residents came from their own table above.
            let mut stmt = self.conn().prepare_cached(
                "SELECT s.kind, s.doc, s.member, s.field, search_fts.body
                 FROM search_fts JOIN search_rows s ON s.id = search_fts.rowid
                 WHERE s.member IS NULL AND search_fts.body LIKE ?1 ESCAPE '\\'
                 ORDER BY search_fts.rowid DESC LIMIT ?2",
            )?;
            let pat = format!("%{}%", like_escape(term));
            for r in stmt.query_map(params![pat, fetch], row)? {
                let (kind, doc, member, field, body) = r?;
                let snippet = snippet_around(&body, term, 32);
                text_hits.push((kind_of(&kind, &field), doc, member, field, snippet));
            }
        }
        // Residents, households, records, tasks; newest first within each (a stable sort).
        text_hits.sort_by_key(|h| h.0);
        for (kind, doc, member, field, snippet) in text_hits {
            if hits.len() >= limit {
                break;
            }
            if hits
                .iter()
                .any(|h| h.kind == kind && h.id == doc && h.member == member)
            {
                continue; // matched in two fields: listed once
            }
            let Some((title, address)) = self.title_of(kind, &doc, member.as_deref())? else {
                continue;
            };
            let snippet = if kind == SearchKind::Resident {
                String::new()
            } else {
                snippet
            };
            hits.push(SearchHit {
                kind,
                id: doc,
                member,
                title,
                matched: field,
                snippet,
                address,
            });
        }
        hits.truncate(limit);
        Ok(hits)
    }

    fn address_of(&self, household: &str) -> Result<Option<AddressLine>> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT id, building, unit, room, head_name FROM households WHERE id = ?1",
            )?
            .query_row([household], |r| address_at(r, 0))
            .optional()?
            .flatten())
    }

    /// What a search hit of `kind` shows as its title, and its household's address.
    fn title_of(
        &self,
        kind: SearchKind,
        doc: &str,
        member: Option<&str>,
    ) -> Result<Option<(String, Option<AddressLine>)>> {
        let c = self.conn();
        let row: Option<(String, Option<String>)> = match kind {
            SearchKind::Resident => c
                .prepare_cached(
                    "SELECT name, household FROM residents WHERE household = ?1 AND member = ?2",
                )?
                .query_row(params![doc, member], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?,
            SearchKind::Household => c
                .prepare_cached(
                    "SELECT building || unit || room || ' ' || head_name, id FROM households WHERE id = ?1",
                )?
                .query_row([doc], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?,
            SearchKind::Record => c
                .prepare_cached("SELECT summary, household FROM records WHERE id = ?1")?
                .query_row([doc], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?,
            SearchKind::Task => c
                .prepare_cached("SELECT title, household FROM tasks WHERE id = ?1")?
                .query_row([doc], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?,
        };
        let Some((title, household)) = row else {
            return Ok(None);
        };
        let address = match household {
            Some(h) => self.address_of(&h)?,
            None => None,
        };
        Ok(Some((title, address)))
    }

    /// The grid's visit coverage in the month holding `now` (China time): households
    /// visited at least once since the month began ÷ households registered, in all and per
    /// building.
    pub fn visit_coverage(&self, grid: &str, now: i64) -> Result<Coverage> {
        let month_start = month_start_ms(now);
        let buildings: Vec<BuildingCoverage> = self
            .conn()
            .prepare_cached(
                "SELECT building, count(*), count(CASE WHEN last_visit_at >= ?2 THEN 1 END)
                 FROM households WHERE grid = ?1 AND moved_out_at IS NULL
                 GROUP BY building ORDER BY length(building), building",
            )?
            .query_map(params![grid, month_start], |r| {
                Ok(BuildingCoverage {
                    building: r.get(0)?,
                    registered: r.get(1)?,
                    visited: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        let registered: i64 = buildings.iter().map(|b| b.registered).sum();
        let visited: i64 = buildings.iter().map(|b| b.visited).sum();
        Ok(Coverage {
            grid: grid.to_string(),
            month_start,
            registered,
            visited,
            ratio: if registered == 0 {
                0.0
            } else {
                visited as f64 / registered as f64
            },
            buildings,
        })
    }

    /// The grid's households (of one building, when given) not visited in the month holding
    /// `now`: never visited first, then the longest unvisited. At most `limit`.
    pub fn not_visited(
        &self,
        grid: &str,
        building: Option<&str>,
        now: i64,
        limit: usize,
    ) -> Result<Vec<super::HouseholdSummary>> {
        self.not_visited_within(grid, building, now, limit.min(10_000) as i64)
    }

    fn not_visited_within(
        &self,
        grid: &str,
        building: Option<&str>,
        now: i64,
        limit: i64,
    ) -> Result<Vec<super::HouseholdSummary>> {
        let sql = format!(
            "SELECT {} FROM households WHERE grid = ?1 AND (?2 IS NULL OR building = ?2)
               AND (last_visit_at IS NULL OR last_visit_at < ?3) AND moved_out_at IS NULL
             ORDER BY last_visit_at, id LIMIT ?4",
            super::query::HH_COLS
        );
        let mut stmt = self.conn().prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![grid, building, month_start_ms(now), limit],
            super::query::household_summary,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The grid's people (from the server's `/v1/session`), by name: the assignee picker.
    pub fn grid_people(&self, grid: &str) -> Result<Vec<Person>> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT user, name, role FROM people WHERE grid = ?1 ORDER BY name, user",
        )?;
        let rows = stmt.query_map([grid], |r| {
            Ok(Person {
                user: r.get(0)?,
                name: r.get(1)?,
                role: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Replaces the people of the granted grids with what a sync's `/v1/session` said, in
    /// one transaction; people of other grids are ignored, the people of grids no longer
    /// granted are forgotten. A reply with an oversized entry is refused whole (nothing
    /// changes).
    pub fn apply_people(
        &mut self,
        grants: &[crate::sync::proto::Grant],
        people: &[crate::sync::proto::GridPerson],
    ) -> Result<()> {
        if people.len() > MAX_PEOPLE {
            return Err(Error::invalid(
                "people",
                "the server listed too many people",
            ));
        }
        for p in people {
            if p.user.is_empty()
                || p.user.len() > 200
                || p.name.chars().count() > 64
                || p.role.chars().count() > 32
            {
                return Err(Error::invalid(
                    "people",
                    "a person's id, name or role is too long",
                ));
            }
        }
        let tx = self.conn_mut().transaction()?;
        tx.execute("DELETE FROM people", [])?;
        {
            let mut ins = tx.prepare_cached(
                "INSERT OR REPLACE INTO people (grid, user, name, role) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for p in people {
                if grants.iter().any(|g| g.grid == p.grid) {
                    ins.execute(params![p.grid, p.user, p.name, p.role])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}

fn kind_of(kind: &str, field: &str) -> SearchKind {
    match kind {
        "household" if field == "name" || field == "pinyin" => SearchKind::Resident,
        "household" => SearchKind::Household,
        "record" => SearchKind::Record,
        _ => SearchKind::Task,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_start_at_midnight_china_time() {
        // 2026-03-15 12:00 UTC → 2026-03-01 00:00 +08:00 = 2026-02-28 16:00 UTC.
        assert_eq!(month_start_ms(1_773_576_000_000), 1_772_294_400_000);
        // 2026-02-28 17:00 UTC is already March 1st in China.
        assert_eq!(month_start_ms(1_772_298_000_000), 1_772_294_400_000);
        // 2026-02-28 15:59:59.999 UTC is still February in China: 2026-01-31 16:00 UTC.
        assert_eq!(month_start_ms(1_772_294_399_999), 1_769_875_200_000);
    }

    #[test]
    fn a_task_is_listed_once_under_its_highest_reason() {
        let now = 1_000_000_000;
        assert_eq!(
            home_reason(Some(now - 1), Some(5), Some(6), now),
            Some((HomeReason::Overdue, Some(now - 1)))
        );
        assert_eq!(
            home_reason(Some(now + DUE_SOON_MS - 1), Some(5), None, now),
            Some((HomeReason::DueSoon, Some(now + DUE_SOON_MS - 1)))
        );
        assert_eq!(
            home_reason(Some(now + DUE_SOON_MS), Some(5), Some(6), now),
            Some((HomeReason::Reminded, Some(5)))
        );
        assert_eq!(
            home_reason(None, None, Some(6), now),
            Some((HomeReason::Reopened, Some(6)))
        );
        assert_eq!(home_reason(None, None, None, now), None);
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        assert_eq!(
            parse_cursor(&cursor_of(-5, "rec-a:b")).ok(),
            Some((-5, "rec-a:b".to_string()))
        );
        assert!(parse_cursor("x:y").is_err());
        assert!(parse_cursor("12").is_err());
        assert!(parse_cursor("12:").is_err());
    }

    #[test]
    fn snippets_cut_around_the_match() {
        assert_eq!(
            snippet_around("楼道里堆满了杂物需要清理", "杂物", 4),
            "…了杂物需…"
        );
        assert_eq!(snippet_around("abc", "zz", 10), "abc");
    }
}
