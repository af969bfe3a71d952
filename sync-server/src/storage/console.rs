//! What the station's console asks of the projection, and the rules that are not SQL, once
//! for both backends: the board's columns and overdue days, the two ledgers, per-grid
//! monthly statistics (median days to close, on-time rate, average satisfaction) and the
//! household search's ranking. A backend only reads rows ([`super::Storage::select`]); these
//! pure functions turn them into answers.
//!
//! Access: every query takes the grids the console user may see; a lookup by id returns the
//! row's grid, which the caller checks before showing it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use xiuhua_core::model::{Category, Level, RecordStatus, TaskStatus};
use xiuhua_core::pinyin;

use super::DAY_MS;
use super::projected::{TimeRange, like_escape};
use crate::projection::{EventP, HouseholdP, RecordP, ResidentP, TaskP, VisitP};

/// A column of the 督单/问单 board. A task may be in several (an overdue task is also in
/// progress).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BoardColumn {
    /// Ordered (点单), nobody assigned yet: awaiting 派单.
    AwaitingAssign,
    /// Assigned or being worked on.
    InProgress,
    /// Open and past its deadline.
    Overdue,
    /// Done, awaiting the resident's rating (评单).
    AwaitingRating,
    /// Open again after a bad rating.
    Reopened,
    /// Open and escalated to the community.
    Escalated,
    /// Open and handed to a linked unit (1+3+N).
    LinkedUnit,
}

impl BoardColumn {
    pub const ALL: [BoardColumn; 7] = [
        BoardColumn::AwaitingAssign,
        BoardColumn::InProgress,
        BoardColumn::Overdue,
        BoardColumn::AwaitingRating,
        BoardColumn::Reopened,
        BoardColumn::Escalated,
        BoardColumn::LinkedUnit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BoardColumn::AwaitingAssign => "awaiting_assign",
            BoardColumn::InProgress => "in_progress",
            BoardColumn::Overdue => "overdue",
            BoardColumn::AwaitingRating => "awaiting_rating",
            BoardColumn::Reopened => "reopened",
            BoardColumn::Escalated => "escalated",
            BoardColumn::LinkedUnit => "linked_unit",
        }
    }

    pub fn parse(s: &str) -> Option<BoardColumn> {
        BoardColumn::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The column's Chinese label.
    pub fn label(self) -> &'static str {
        match self {
            BoardColumn::AwaitingAssign => "待派单",
            BoardColumn::InProgress => "办理中",
            BoardColumn::Overdue => "已超期",
            BoardColumn::AwaitingRating => "待评单",
            BoardColumn::Reopened => "差评重办",
            BoardColumn::Escalated => "上报社区",
            BoardColumn::LinkedUnit => "转交联动单位",
        }
    }

    /// The column's bit in a task's [`board_flags`]; the overdue column has none (it
    /// depends on the time: [`OPEN_BIT`] and a deadline already past).
    pub fn bit(self) -> Option<i64> {
        let i = match self {
            BoardColumn::AwaitingAssign => 0,
            BoardColumn::InProgress => 1,
            BoardColumn::Overdue => return None,
            BoardColumn::AwaitingRating => 3,
            BoardColumn::Reopened => 4,
            BoardColumn::Escalated => 5,
            BoardColumn::LinkedUnit => 6,
        };
        Some(1 << i)
    }

    /// Whether `task` is in this column at `now_ms`.
    pub fn holds(self, task: &TaskP, now_ms: i64) -> bool {
        match self.bit() {
            Some(bit) => board_flags(task) & bit != 0,
            None => days_overdue(task, now_ms).is_some(),
        }
    }

    /// The same test as [`BoardColumn::holds`], as SQL on `p_tasks` (whose `board` column
    /// holds [`board_flags`]), with `now` the placeholder of the time.
    pub fn sql(self, now: &str) -> String {
        match self.bit() {
            Some(bit) => format!("(board & {bit}) <> 0"),
            None => format!("(board & {OPEN_BIT}) <> 0 AND deadline < {now}"),
        }
    }
}

/// A task's [`board_flags`] bit for "ordered and still open": such a task is overdue once
/// its deadline has passed.
pub const OPEN_BIT: i64 = 1 << 7;

/// The board's rules, once: which of the columns that do not depend on the time a task is
/// in, as bits ([`BoardColumn::bit`]), and [`OPEN_BIT`]. The projection stores them with the
/// task (`p_tasks.board`), so a board counts and pages in SQL without reading every task.
pub fn board_flags(task: &TaskP) -> i64 {
    let status = TaskStatus::parse(&task.status).ok();
    let open = status.is_some_and(TaskStatus::is_open) && task.ordered;
    let columns = [
        (
            BoardColumn::AwaitingAssign,
            task.ordered && status == Some(TaskStatus::Ordered),
        ),
        (
            BoardColumn::InProgress,
            matches!(status, Some(TaskStatus::Assigned | TaskStatus::InProgress)),
        ),
        (
            BoardColumn::AwaitingRating,
            status == Some(TaskStatus::Done),
        ),
        (BoardColumn::Reopened, open && task.reopened),
        (BoardColumn::Escalated, open && task.tier == "community"),
        (BoardColumn::LinkedUnit, open && task.tier == "linked_unit"),
    ];
    columns
        .into_iter()
        .filter(|(_, on)| *on)
        .filter_map(|(c, _)| c.bit())
        .fold(if open { OPEN_BIT } else { 0 }, |acc, b| acc | b)
}

/// Whole days a task is past its deadline at `now_ms` (a started day counts: 1 ms late is
/// 1 day), if it is ordered, still open and past it; else `None`.
pub fn days_overdue(task: &TaskP, now_ms: i64) -> Option<i64> {
    let deadline = task.deadline?;
    if board_flags(task) & OPEN_BIT == 0 || now_ms <= deadline {
        return None;
    }
    let late = now_ms.saturating_sub(deadline);
    Some(late.saturating_add(DAY_MS - 1) / DAY_MS)
}

/// The days-overdue figure of [`days_overdue`] as SQL (NULL when not overdue).
pub fn days_overdue_sql(now: &str) -> String {
    format!(
        "CASE WHEN {} THEN ({now} - deadline + {}) / {DAY_MS} END",
        BoardColumn::Overdue.sql(now),
        DAY_MS - 1
    )
}

/// Days from a task's creation to its closing, if closed.
pub fn days_to_close(task: &TaskP) -> Option<f64> {
    let closed = task.closed_at?;
    Some(closed.saturating_sub(task.created_at).max(0) as f64 / DAY_MS as f64)
}

/// Whether a task was done (办结) by its deadline: `None` without a deadline or before it
/// is done.
pub fn on_time(task: &TaskP) -> Option<bool> {
    Some(task.done_at? <= task.deadline?)
}

/// The median of `values` (`None` when empty); the mean of the middle two for an even count.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Hours the month key is taken in: China Standard Time (UTC+8), the stations' time.
const CST_OFFSET_MS: i64 = 8 * 3_600_000;

/// The month (`YYYY-MM`, China Standard Time) of a time in ms.
pub fn month_of(ms: i64) -> String {
    let days = ms.saturating_add(CST_OFFSET_MS).div_euclid(DAY_MS);
    let (y, m, _) = xiuhua_core::hlc::civil_date(u64::try_from(days).unwrap_or(0));
    format!("{y:04}-{m:02}")
}

/// A calendar month of China Standard Time: what the ledgers and statistics are cut by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    pub year: i32,
    /// 1–12.
    pub month: u32,
}

impl Month {
    /// The month of a time in ms (China Standard Time).
    pub fn of(ms: i64) -> Month {
        let days = ms.saturating_add(CST_OFFSET_MS).div_euclid(DAY_MS);
        let (y, m, _) = civil_from_days(days);
        Month { year: y, month: m }
    }

    /// Parses `YYYY-MM` (a four-digit year from 1970 to 9999).
    pub fn parse(s: &str) -> Option<Month> {
        let (y, m) = s.split_once('-')?;
        if y.len() != 4 || m.len() != 2 || !(y.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let (year, month) = (y.parse().ok()?, m.parse().ok()?);
        ((1970..=9999).contains(&year) && (1..=12).contains(&month))
            .then_some(Month { year, month })
    }

    /// The month after this one.
    pub fn next(self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year.saturating_add(1),
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// The month `n` months before this one.
    pub fn minus(self, n: u32) -> Month {
        let index = i64::from(self.year) * 12 + i64::from(self.month) - 1 - i64::from(n);
        Month {
            year: i32::try_from(index.div_euclid(12)).unwrap_or(i32::MIN),
            month: u32::try_from(index.rem_euclid(12) + 1).unwrap_or(1),
        }
    }

    /// Its first instant, ms (China Standard Time).
    pub fn start_ms(self) -> i64 {
        day_start_ms(self.year, self.month, 1).unwrap_or(i64::MIN)
    }

    /// The first instant of the next month: its exclusive end.
    pub fn end_ms(self) -> i64 {
        self.next().start_ms()
    }

    pub fn range(self) -> TimeRange {
        TimeRange {
            from_ms: self.start_ms(),
            to_ms: self.end_ms(),
        }
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// The months a range touches, in order (none for an empty range).
pub fn months_in(range: TimeRange) -> Vec<Month> {
    let mut out = Vec::new();
    if range.to_ms <= range.from_ms {
        return out;
    }
    let last = Month::of(range.to_ms - 1);
    let mut m = Month::of(range.from_ms);
    while m <= last {
        out.push(m);
        m = m.next();
    }
    out
}

/// Days from 1970-01-01 to a date (the core's calendar, [`xiuhua_core::hlc::days_from_civil`]);
/// `None` for a day the month does not have, or outside 1970–9999.
pub fn days_from_civil(year: i32, month: u32, day: u32) -> Option<i64> {
    let days = xiuhua_core::hlc::days_from_civil(
        u64::try_from(year).ok()?,
        u64::from(month),
        u64::from(day),
    )?;
    i64::try_from(days).ok()
}

/// The civil date of a day counted from 1970-01-01 ([`xiuhua_core::hlc::civil_date`]).
fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let (y, m, d) = xiuhua_core::hlc::civil_date(u64::try_from(days).unwrap_or(0));
    (
        i32::try_from(y).unwrap_or(i32::MAX),
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

/// The days of a month (28–31).
pub fn days_in_month(year: i32, month: u32) -> u32 {
    let days = u64::try_from(year)
        .ok()
        .and_then(|y| xiuhua_core::hlc::days_in_month(y, u64::from(month)));
    days.and_then(|d| u32::try_from(d).ok()).unwrap_or(0)
}

/// The first instant (ms) of a day in China Standard Time; `None` for a day that does not
/// exist.
pub fn day_start_ms(year: i32, month: u32, day: u32) -> Option<i64> {
    Some(days_from_civil(year, month, day)? * DAY_MS - CST_OFFSET_MS)
}

/// Parses `YYYY-MM-DD` (China Standard Time) into its year, month and day, checked against
/// the calendar (1970 to 9999).
pub fn parse_day(s: &str) -> Option<(i32, u32, u32)> {
    let mut parts = s.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || y.len() != 4
        || m.len() != 2
        || d.len() != 2
        || !(y.bytes().chain(m.bytes()).chain(d.bytes())).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let (year, month, day) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    if !(1970..=9999).contains(&year) {
        return None;
    }
    days_from_civil(year, month, day)?;
    Some((year, month, day))
}

/// The range of whole days `from` to `to`, both included (China Standard Time): what a
/// ledger's `from` and `to` mean.
pub fn day_range(from: (i32, u32, u32), to: (i32, u32, u32)) -> Option<TimeRange> {
    let from_ms = day_start_ms(from.0, from.1, from.2)?;
    let to_ms = day_start_ms(to.0, to.1, to.2)? + DAY_MS;
    (from_ms < to_ms).then_some(TimeRange { from_ms, to_ms })
}

/// A day as `YYYY-MM-DD` (China Standard Time).
pub fn day_of(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.saturating_add(CST_OFFSET_MS).div_euclid(DAY_MS));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Which tasks a board or ledger looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// The grids the console user may see (required: an empty list shows nothing).
    pub grids: Vec<String>,
    pub level: Option<String>,
    pub category: Option<String>,
    pub assignee: Option<String>,
    /// Created in this range.
    pub created: Option<TimeRange>,
}

impl TaskFilter {
    pub fn matches(&self, t: &TaskP) -> bool {
        self.grids.contains(&t.grid)
            && self
                .level
                .as_ref()
                .is_none_or(|l| t.level.as_ref() == Some(l))
            && self.category.as_ref().is_none_or(|c| &t.category == c)
            && self
                .assignee
                .as_ref()
                .is_none_or(|a| t.assignee.as_ref() == Some(a))
            && self.created.is_none_or(|r| r.contains(t.created_at))
    }
}

/// The order of a board's page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TaskSort {
    /// Earliest deadline first (tasks without one last).
    #[default]
    Deadline,
    /// Newest first.
    CreatedDesc,
    /// Oldest first.
    CreatedAsc,
    /// Most days overdue first.
    MostOverdue,
}

/// A board request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardQuery {
    pub filter: TaskFilter,
    pub column: BoardColumn,
    pub sort: TaskSort,
    pub offset: usize,
    pub limit: usize,
    pub now_ms: i64,
}

/// A task on the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardTask {
    pub task: TaskP,
    pub days_overdue: Option<i64>,
}

/// The board: every column's count and one page of one column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Board {
    pub counts: Vec<(BoardColumn, usize)>,
    pub column: BoardColumn,
    /// Tasks in the column (all pages).
    pub total: usize,
    pub tasks: Vec<BoardTask>,
}

/// Most tasks a page holds.
pub const MAX_PAGE: usize = 500;

/// The board from the tasks of the filter's grids.
pub fn board(tasks: Vec<TaskP>, q: &BoardQuery) -> Board {
    let tasks: Vec<TaskP> = tasks.into_iter().filter(|t| q.filter.matches(t)).collect();
    let counts = BoardColumn::ALL
        .iter()
        .map(|c| (*c, tasks.iter().filter(|t| c.holds(t, q.now_ms)).count()))
        .collect();
    let mut col: Vec<BoardTask> = tasks
        .into_iter()
        .filter(|t| q.column.holds(t, q.now_ms))
        .map(|task| BoardTask {
            days_overdue: days_overdue(&task, q.now_ms),
            task,
        })
        .collect();
    match q.sort {
        TaskSort::Deadline => col.sort_by(|a, b| {
            (a.task.deadline.is_none(), a.task.deadline, &a.task.id).cmp(&(
                b.task.deadline.is_none(),
                b.task.deadline,
                &b.task.id,
            ))
        }),
        TaskSort::CreatedDesc => col
            .sort_by(|a, b| (b.task.created_at, &b.task.id).cmp(&(a.task.created_at, &a.task.id))),
        TaskSort::CreatedAsc => col
            .sort_by(|a, b| (a.task.created_at, &a.task.id).cmp(&(b.task.created_at, &b.task.id))),
        TaskSort::MostOverdue => {
            col.sort_by(|a, b| (b.days_overdue, &a.task.id).cmp(&(a.days_overdue, &b.task.id)))
        }
    }
    let total = col.len();
    let tasks = col
        .into_iter()
        .skip(q.offset)
        .take(q.limit.min(MAX_PAGE))
        .collect();
    Board {
        counts,
        column: q.column,
        total,
        tasks,
    }
}

/// A task and its timeline: every event in fold order, rejected ones with their reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskDetail {
    pub task: TaskP,
    pub events: Vec<EventP>,
}

/// Which rows a ledger or statistics page covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerFilter {
    pub grids: Vec<String>,
    /// 民情台账: reported in the range; 政务台账: created in it; statistics: each count by
    /// its own time.
    pub range: Option<TimeRange>,
}

/// A line of the 民情台账: one record.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordLedgerRow {
    pub record: RecordP,
    /// Tasks made from it (点单 from the record), cancelled ones included.
    pub tasks: usize,
    /// Of which still open.
    pub open_tasks: usize,
    /// When its last task closed, if it shows 已办结 or 已回访 through its tasks.
    pub closed_at: Option<i64>,
}

/// The 民情台账 from the range's records and the grids' tasks, by report time then id.
pub fn record_ledger(records: Vec<RecordP>, tasks: &[TaskP]) -> Vec<RecordLedgerRow> {
    let mut by_record: HashMap<&str, Vec<&TaskP>> = HashMap::new();
    for t in tasks {
        if let Some(r) = &t.source_record {
            by_record.entry(r.as_str()).or_default().push(t);
        }
    }
    let mut out: Vec<RecordLedgerRow> = records
        .into_iter()
        .map(|record| {
            let mine = by_record
                .get(record.id.as_str())
                .cloned()
                .unwrap_or_default();
            let open_tasks = mine
                .iter()
                .filter(|t| TaskStatus::parse(&t.status).is_ok_and(TaskStatus::is_open))
                .count();
            let closed = record_closed(&record.shown);
            RecordLedgerRow {
                tasks: mine.len(),
                open_tasks,
                closed_at: if closed {
                    mine.iter().filter_map(|t| t.closed_at).max()
                } else {
                    None
                },
                record,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        (a.record.reported_at, &a.record.id).cmp(&(b.record.reported_at, &b.record.id))
    });
    out
}

fn record_closed(shown: &str) -> bool {
    matches!(
        RecordStatus::parse(shown),
        Ok(RecordStatus::Resolved | RecordStatus::FollowedUp)
    )
}

/// A line of the 政务台账: one task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskLedgerRow {
    pub task: TaskP,
    pub days_to_close: Option<f64>,
    pub on_time: Option<bool>,
    pub days_overdue: Option<i64>,
}

/// The 政务台账 from the range's tasks, by creation time then id.
pub fn task_ledger(tasks: Vec<TaskP>, now_ms: i64) -> Vec<TaskLedgerRow> {
    let mut out: Vec<TaskLedgerRow> = tasks
        .into_iter()
        .map(|task| TaskLedgerRow {
            days_to_close: days_to_close(&task),
            on_time: on_time(&task),
            days_overdue: days_overdue(&task, now_ms),
            task,
        })
        .collect();
    out.sort_by(|a, b| (a.task.created_at, &a.task.id).cmp(&(b.task.created_at, &b.task.id)));
    out
}

/// Counts of a ledger column's values (each with its weight): the known values in their
/// declared order first (those with none included, so that a totals sheet always has the
/// same lines), then any other value a phone wrote, by value.
fn ordered_counts<'a>(
    values: impl Iterator<Item = (&'a str, usize)>,
    known: &[&str],
) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (v, n) in values {
        *counts.entry(v).or_default() += n;
    }
    let mut out: Vec<(String, usize)> = known
        .iter()
        .map(|k| (k.to_string(), counts.remove(k).unwrap_or(0)))
        .collect();
    out.extend(counts.into_iter().map(|(k, n)| (k.to_string(), n)));
    out
}

/// The totals of a 民情台账 (its export's 合计 sheet, the page's summary).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordTotals {
    pub records: usize,
    /// By category, in [`Category::ALL`]'s order, then any other.
    pub by_category: Vec<(String, usize)>,
    /// By shown status, in [`RecordStatus::ALL`]'s order, then any other.
    pub by_status: Vec<(String, usize)>,
    /// Showing 已办结 or 已回访.
    pub closed: usize,
    /// With at least one task made from them.
    pub with_tasks: usize,
}

/// A 民情台账's records counted by category and shown status, and how many of them have a
/// task: all its totals need. A page's groups are counted in SQL
/// ([`super::projected::record_groups`]), a file's from its rows ([`record_groups`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordGroup {
    pub category: String,
    pub shown: String,
    pub records: usize,
    pub with_tasks: usize,
}

/// The groups of a ledger's rows.
pub fn record_groups(rows: &[RecordLedgerRow]) -> Vec<RecordGroup> {
    let mut groups: BTreeMap<(&str, &str), (usize, usize)> = BTreeMap::new();
    for r in rows {
        let g = groups
            .entry((r.record.category.as_str(), r.record.shown.as_str()))
            .or_default();
        g.0 += 1;
        g.1 += usize::from(r.tasks > 0);
    }
    groups
        .into_iter()
        .map(|((category, shown), (records, with_tasks))| RecordGroup {
            category: category.to_string(),
            shown: shown.to_string(),
            records,
            with_tasks,
        })
        .collect()
}

pub fn record_totals(groups: &[RecordGroup]) -> RecordTotals {
    let cats: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
    let statuses: Vec<&str> = RecordStatus::ALL.iter().map(|s| s.as_str()).collect();
    RecordTotals {
        records: groups.iter().map(|g| g.records).sum(),
        by_category: ordered_counts(
            groups.iter().map(|g| (g.category.as_str(), g.records)),
            &cats,
        ),
        by_status: ordered_counts(
            groups.iter().map(|g| (g.shown.as_str(), g.records)),
            &statuses,
        ),
        closed: groups
            .iter()
            .filter(|g| record_closed(&g.shown))
            .map(|g| g.records)
            .sum(),
        with_tasks: groups.iter().map(|g| g.with_tasks).sum(),
    }
}

/// The totals of a 政务台账.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TaskTotals {
    pub tasks: usize,
    /// By state (the stored value), in [`TaskStatus::ALL`]'s order, then any other.
    pub by_status: Vec<(String, usize)>,
    /// By level, in [`Level::ALL`]'s order, then `""` (never ordered), then any other.
    pub by_level: Vec<(String, usize)>,
    pub by_category: Vec<(String, usize)>,
    /// 办结: done, rated or not.
    pub completed: usize,
    /// Open and past their deadline at the ledger's time.
    pub overdue: usize,
    pub escalated: usize,
    pub reopened: usize,
    /// Of the completed tasks with a deadline, the share done by it.
    pub on_time_rate: Option<f64>,
    /// The mean rating (1–5) of the rated tasks.
    pub mean_satisfaction: Option<f64>,
    pub rated: usize,
}

pub fn task_totals(rows: &[TaskLedgerRow]) -> TaskTotals {
    let statuses: Vec<&str> = TaskStatus::ALL.iter().map(|s| s.as_str()).collect();
    let mut levels: Vec<&str> = Level::ALL.iter().map(|l| l.as_str()).collect();
    levels.push("");
    let cats: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
    let judged: Vec<bool> = rows.iter().filter_map(|r| r.on_time).collect();
    let ratings: Vec<i64> = rows.iter().filter_map(|r| r.task.rating).collect();
    TaskTotals {
        tasks: rows.len(),
        by_status: ordered_counts(rows.iter().map(|r| (r.task.status.as_str(), 1)), &statuses),
        by_level: ordered_counts(
            rows.iter()
                .map(|r| (r.task.level.as_deref().unwrap_or(""), 1)),
            &levels,
        ),
        by_category: ordered_counts(rows.iter().map(|r| (r.task.category.as_str(), 1)), &cats),
        completed: rows
            .iter()
            .filter(|r| {
                matches!(
                    TaskStatus::parse(&r.task.status),
                    Ok(TaskStatus::Done | TaskStatus::Closed)
                )
            })
            .count(),
        overdue: rows.iter().filter(|r| r.days_overdue.is_some()).count(),
        escalated: rows.iter().filter(|r| r.task.escalated).count(),
        reopened: rows.iter().filter(|r| r.task.reopened).count(),
        on_time_rate: (!judged.is_empty())
            .then(|| judged.iter().filter(|ok| **ok).count() as f64 / judged.len() as f64),
        mean_satisfaction: (!ratings.is_empty())
            .then(|| ratings.iter().sum::<i64>() as f64 / ratings.len() as f64),
        rated: ratings.len(),
    }
}

/// Whether a household is on its grid's register at `at_ms` (an exclusive instant, such
/// as a month's end): registered before it and not moved out (迁出) by then. The coverage
/// denominator of a month counts these at the month's end, so that a grid's coverage is
/// visited ÷ households living there, not ÷ households registered that month.
///
/// The projection knows a household's current grid only: one moved from another grid
/// counts in its new grid since its registration.
pub fn registered_at(h: &HouseholdP, at_ms: i64) -> bool {
    h.created_at < at_ms && h.moved_out_at.is_none_or(|out| out >= at_ms)
}

/// One grid's figures for one month (China Standard Time).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GridMonthStats {
    pub grid: String,
    /// `YYYY-MM`.
    pub month: String,
    /// Households on the grid's register at the month's end ([`registered_at`]): the
    /// coverage denominator.
    pub households_registered: usize,
    /// Households registered (created) that month.
    pub households_new: usize,
    /// Distinct households visited that month.
    pub households_visited: usize,
    /// Of the households registered at the month's end, those visited that month: the
    /// coverage numerator (a household visited and then moved out is not in it).
    pub registered_visited: usize,
    pub visits: usize,
    /// Records reported that month.
    pub records_opened: usize,
    /// Of those, the ones showing 已办结 or 已回访 now.
    pub records_closed: usize,
    /// Tasks created that month, by level (`""`: not ordered) and by state.
    pub tasks_by_level: BTreeMap<String, usize>,
    pub tasks_by_state: BTreeMap<String, usize>,
    /// Of the tasks created that month, those escalated.
    pub escalations: usize,
    /// Tasks closed that month: their median days from creation to closing.
    pub tasks_closed: usize,
    pub median_days_to_close: Option<f64>,
    /// Of the tasks closed that month with a deadline, the share done by it.
    pub on_time_rate: Option<f64>,
    /// The mean rating (1–5) of the tasks closed that month.
    pub average_satisfaction: Option<f64>,
}

impl GridMonthStats {
    /// 走访覆盖率: the share of the households registered at the month's end visited
    /// that month; `None` for a grid with none registered.
    pub fn coverage(&self) -> Option<f64> {
        (self.households_registered > 0)
            .then(|| self.registered_visited as f64 / self.households_registered as f64)
    }
}

/// Rows a statistics page reads.
#[derive(Debug, Clone, Default)]
pub struct StatsInput {
    /// Every household of the grids, whenever registered (the denominators count those
    /// registered before the range).
    pub households: Vec<HouseholdP>,
    pub visits: Vec<VisitP>,
    pub records: Vec<RecordP>,
    pub tasks: Vec<TaskP>,
}

/// The closing figures of one grid and month, gathered before they are summarised.
#[derive(Default)]
struct Closing {
    days: Vec<f64>,
    with_deadline: usize,
    in_time: usize,
    ratings: Vec<i64>,
}

/// The figures of `grid` for the month of `ms`, if `ms` is within `range`.
fn slot<'a>(
    out: &'a mut BTreeMap<(String, String), GridMonthStats>,
    range: Option<TimeRange>,
    grid: &str,
    ms: i64,
) -> Option<&'a mut GridMonthStats> {
    if !range.is_none_or(|r| r.contains(ms)) {
        return None;
    }
    let month = month_of(ms);
    Some(
        out.entry((grid.to_string(), month.clone()))
            .or_insert_with(|| GridMonthStats {
                grid: grid.to_string(),
                month,
                ..GridMonthStats::default()
            }),
    )
}

/// Per-grid, per-month statistics, sorted by grid then month. Each count falls in the
/// month of its own time (registration, visit, report, creation, closing), within `range`
/// when given; the register ([`GridMonthStats::households_registered`]) is counted at
/// each month's end. With a range, every grid that has households gets a line for every
/// month of the range, a month without any visit included (its coverage is 0, not absent).
pub fn grid_month_stats(input: &StatsInput, range: Option<TimeRange>) -> Vec<GridMonthStats> {
    let mut out: BTreeMap<(String, String), GridMonthStats> = BTreeMap::new();
    for h in &input.households {
        if let Some(s) = slot(&mut out, range, &h.grid, h.created_at) {
            s.households_new += 1;
        }
    }
    if let Some(r) = range {
        let grids: BTreeSet<&str> = input.households.iter().map(|h| h.grid.as_str()).collect();
        for grid in grids {
            for m in months_in(r) {
                // Any instant of the month within the range names its slot.
                let _ = slot(&mut out, range, grid, m.start_ms().max(r.from_ms));
            }
        }
    }
    // The households visited, per (grid, month).
    let mut visited: HashMap<(String, String), HashSet<&str>> = HashMap::new();
    for v in &input.visits {
        if let Some(s) = slot(&mut out, range, &v.grid, v.at) {
            s.visits += 1;
            if visited
                .entry((s.grid.clone(), s.month.clone()))
                .or_default()
                .insert(v.household.as_str())
            {
                s.households_visited += 1;
            }
        }
    }
    for r in &input.records {
        if let Some(s) = slot(&mut out, range, &r.grid, r.reported_at) {
            s.records_opened += 1;
            if record_closed(&r.shown) {
                s.records_closed += 1;
            }
        }
    }
    // Closing figures gathered per (grid, month) first.
    let mut closing: BTreeMap<(String, String), Closing> = BTreeMap::new();
    for t in &input.tasks {
        if let Some(s) = slot(&mut out, range, &t.grid, t.created_at) {
            *s.tasks_by_level
                .entry(t.level.clone().unwrap_or_default())
                .or_default() += 1;
            *s.tasks_by_state.entry(t.status.clone()).or_default() += 1;
            if t.escalated {
                s.escalations += 1;
            }
        }
        if let Some(closed) = t.closed_at
            && let Some(s) = slot(&mut out, range, &t.grid, closed)
        {
            s.tasks_closed += 1;
            let c = closing
                .entry((s.grid.clone(), s.month.clone()))
                .or_default();
            if let Some(d) = days_to_close(t) {
                c.days.push(d);
            }
            if let Some(ok) = on_time(t) {
                c.with_deadline += 1;
                if ok {
                    c.in_time += 1;
                }
            }
            if let Some(r) = t.rating {
                c.ratings.push(r);
            }
        }
    }
    // The register at each month's end, and which of its households were visited.
    let mut by_grid: HashMap<&str, Vec<&HouseholdP>> = HashMap::new();
    for h in &input.households {
        by_grid.entry(h.grid.as_str()).or_default().push(h);
    }
    let none = HashSet::new();
    for (key, s) in out.iter_mut() {
        let Some(end) = Month::parse(&s.month).map(Month::end_ms) else {
            continue;
        };
        let seen = visited.get(key).unwrap_or(&none);
        for h in by_grid.get(s.grid.as_str()).into_iter().flatten() {
            if registered_at(h, end) {
                s.households_registered += 1;
                if seen.contains(h.id.as_str()) {
                    s.registered_visited += 1;
                }
            }
        }
    }
    for (
        key,
        Closing {
            days,
            with_deadline,
            in_time,
            ratings,
        },
    ) in closing
    {
        if let Some(s) = out.get_mut(&key) {
            s.median_days_to_close = median(&days);
            s.on_time_rate = (with_deadline > 0).then(|| in_time as f64 / with_deadline as f64);
            s.average_satisfaction = (!ratings.is_empty())
                .then(|| ratings.iter().sum::<i64>() as f64 / ratings.len() as f64);
        }
    }
    out.into_values().collect()
}

/// A household found by a search, with the residents that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HouseholdHit {
    pub household: HouseholdP,
    pub residents: Vec<ResidentP>,
}

/// A household's page: members (masked), visits, records and tasks naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HouseholdDetail {
    pub household: HouseholdP,
    pub residents: Vec<ResidentP>,
    pub visits: Vec<VisitP>,
    pub records: Vec<RecordP>,
    pub tasks: Vec<TaskP>,
}

/// The `LIKE` pattern a resident search reads with, as the phone searches: a name
/// substring (张), full pinyin (zhangsan) or initials (zs), normalised by the core
/// (`pinyin::normalize_query`). `None` for an empty query. Phone numbers are stored masked
/// only, so a digits query finds nothing here.
pub fn search_pattern(query: &str) -> Option<String> {
    let q = pinyin::normalize_query(query);
    if q.is_empty() || q.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let term = if pinyin::is_pinyin_query(&q) {
        q
    } else {
        query.trim().to_string()
    };
    Some(format!("%{}%", like_escape(&term)))
}

/// Sorts a search's residents as the phone orders its hits: initials starting with the
/// query (or a name starting with it) first, then shorter names, then by name.
fn sort_hits(query: &str, residents: &mut [ResidentP]) {
    let q = pinyin::normalize_query(query);
    let pinyin_q = pinyin::is_pinyin_query(&q);
    let term = query.trim();
    residents.sort_by_cached_key(|r| {
        let first = if pinyin_q {
            r.initials.split(' ').any(|k| k.starts_with(q.as_str()))
        } else {
            r.name.starts_with(term)
        };
        (
            !first,
            r.name.chars().count(),
            r.name.clone(),
            r.household.clone(),
            r.pos,
        )
    });
}

/// The households of a search's best hits, best first, at most `limit`.
pub fn ranked_household_ids(query: &str, residents: &[ResidentP], limit: usize) -> Vec<String> {
    let mut sorted = residents.to_vec();
    sort_hits(query, &mut sorted);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for r in sorted {
        if out.len() >= limit {
            break;
        }
        if seen.insert(r.household.clone()) {
            out.push(r.household);
        }
    }
    out
}

/// Groups a search's residents under their households (those of `households`, in the
/// order of [`ranked_household_ids`]), at most `limit`, each with the residents that
/// matched.
pub fn rank_households(
    query: &str,
    residents: Vec<ResidentP>,
    households: Vec<HouseholdP>,
    limit: usize,
) -> Vec<HouseholdHit> {
    let mut residents = residents;
    sort_hits(query, &mut residents);
    let mut by_id: HashMap<String, HouseholdP> =
        households.into_iter().map(|h| (h.id.clone(), h)).collect();
    let mut order: Vec<String> = Vec::new();
    let mut hits: HashMap<String, Vec<ResidentP>> = HashMap::new();
    for r in residents {
        if !by_id.contains_key(&r.household) {
            continue;
        }
        if !hits.contains_key(&r.household) {
            if order.len() >= limit {
                continue;
            }
            order.push(r.household.clone());
        }
        hits.entry(r.household.clone()).or_default().push(r);
    }
    order
        .into_iter()
        .filter_map(|id| {
            Some(HouseholdHit {
                household: by_id.remove(&id)?,
                residents: hits.remove(&id).unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn task(id: &str, status: &str) -> TaskP {
        TaskP {
            id: id.into(),
            grid: "g1".into(),
            title: String::new(),
            category: "代办服务".into(),
            level: Some("上门办".into()),
            status: status.into(),
            ordered: true,
            tier: "grid".into(),
            linked_unit: None,
            assignee: None,
            deadline: None,
            created_at: 0,
            created_by: String::new(),
            ordered_by: None,
            household: None,
            source_record: None,
            rating: None,
            rejected: 0,
            done_at: None,
            closed_at: None,
            reopened: false,
            escalated: false,
        }
    }

    #[test]
    fn overdue_days_count_started_days_of_open_tasks_only() {
        let mut t = task("t", "in_progress");
        assert_eq!(days_overdue(&t, 10), None, "no deadline");
        t.deadline = Some(1_000);
        assert_eq!(days_overdue(&t, 1_000), None, "at the deadline");
        assert_eq!(days_overdue(&t, 1_001), Some(1));
        assert_eq!(days_overdue(&t, 1_000 + DAY_MS), Some(1));
        assert_eq!(days_overdue(&t, 1_001 + DAY_MS), Some(2));
        t.status = "done".into();
        assert_eq!(days_overdue(&t, 1_000 + 5 * DAY_MS), None, "done");
        t.status = "ordered".into();
        t.ordered = false;
        assert_eq!(days_overdue(&t, 1_000 + 5 * DAY_MS), None, "never ordered");
    }

    #[test]
    fn median_on_time_and_days_to_close() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        let mut t = task("t", "closed");
        t.created_at = 0;
        t.closed_at = Some(3 * DAY_MS / 2);
        assert_eq!(days_to_close(&t), Some(1.5));
        assert_eq!(on_time(&t), None, "no deadline");
        t.deadline = Some(DAY_MS);
        t.done_at = Some(DAY_MS);
        assert_eq!(on_time(&t), Some(true));
        t.done_at = Some(DAY_MS + 1);
        assert_eq!(on_time(&t), Some(false));
    }

    #[test]
    fn months_are_china_standard_time() {
        // 2026-11-30T16:00:00Z is 2026-12-01 00:00 in Beijing.
        let utc_2026_11_30_16h = 1_796_054_400_000;
        assert_eq!(month_of(utc_2026_11_30_16h - 1), "2026-11");
        assert_eq!(month_of(utc_2026_11_30_16h), "2026-12");
        assert_eq!(month_of(0), "1970-01");
    }

    #[test]
    fn board_columns_counts_filters_and_pages() {
        let now = 10 * DAY_MS;
        let mut ordered = task("a", "ordered");
        ordered.deadline = Some(now - 3 * DAY_MS);
        let mut working = task("b", "in_progress");
        working.deadline = Some(now - DAY_MS);
        working.assignee = Some("u-li".into());
        let done = task("c", "done");
        let mut reopened = task("d", "in_progress");
        reopened.reopened = true;
        let mut esc = task("e", "ordered");
        esc.tier = "community".into();
        let mut unit = task("f", "assigned");
        unit.tier = "linked_unit".into();
        let mut closed_unit = task("g", "closed");
        closed_unit.tier = "linked_unit".into();
        let mut other_grid = task("h", "ordered");
        other_grid.grid = "g9".into();
        let all = vec![
            ordered,
            working,
            done,
            reopened,
            esc,
            unit,
            closed_unit,
            other_grid,
        ];
        let q = |column, sort| BoardQuery {
            filter: TaskFilter {
                grids: vec!["g1".into()],
                ..TaskFilter::default()
            },
            column,
            sort,
            offset: 0,
            limit: 10,
            now_ms: now,
        };
        let b = board(all.clone(), &q(BoardColumn::Overdue, TaskSort::MostOverdue));
        let count = |c| b.counts.iter().find(|(k, _)| *k == c).map(|(_, n)| *n);
        assert_eq!(count(BoardColumn::AwaitingAssign), Some(2));
        assert_eq!(count(BoardColumn::InProgress), Some(3));
        assert_eq!(count(BoardColumn::Overdue), Some(2));
        assert_eq!(count(BoardColumn::AwaitingRating), Some(1));
        assert_eq!(count(BoardColumn::Reopened), Some(1));
        assert_eq!(count(BoardColumn::Escalated), Some(1));
        assert_eq!(count(BoardColumn::LinkedUnit), Some(1));
        let ids: Vec<(&str, Option<i64>)> = b
            .tasks
            .iter()
            .map(|t| (t.task.id.as_str(), t.days_overdue))
            .collect();
        assert_eq!(ids, vec![("a", Some(3)), ("b", Some(1))]);
        // Filters and paging.
        let mut by_assignee = q(BoardColumn::InProgress, TaskSort::Deadline);
        by_assignee.filter.assignee = Some("u-li".into());
        let b = board(all.clone(), &by_assignee);
        assert_eq!(b.total, 1);
        assert_eq!(b.tasks[0].task.id, "b");
        let mut page = q(BoardColumn::InProgress, TaskSort::CreatedAsc);
        page.offset = 1;
        page.limit = 1;
        let b = board(all, &page);
        assert_eq!((b.total, b.tasks.len()), (3, 1));
        assert_eq!(b.tasks[0].task.id, "d");
    }

    #[test]
    fn stats_fall_in_the_month_of_their_own_time() {
        let nov = 1_793_462_400_000; // 2026-11-01T00:00+08:00
        let dec = 1_796_054_400_000; // 2026-12-01T00:00+08:00
        let mut a = task("a", "closed");
        a.created_at = nov;
        a.closed_at = Some(dec + DAY_MS);
        a.done_at = Some(dec);
        a.deadline = Some(dec + 5 * DAY_MS);
        a.rating = Some(5);
        let mut b = task("b", "closed");
        b.created_at = dec;
        b.closed_at = Some(dec + 3 * DAY_MS);
        b.done_at = Some(dec + 3 * DAY_MS);
        b.deadline = Some(dec + DAY_MS);
        b.rating = Some(2);
        b.escalated = true;
        b.level = None;
        let stats = grid_month_stats(
            &StatsInput {
                tasks: vec![a, b],
                ..StatsInput::default()
            },
            None,
        );
        assert_eq!(stats.len(), 2);
        let (n, d) = (&stats[0], &stats[1]);
        assert_eq!((n.month.as_str(), d.month.as_str()), ("2026-11", "2026-12"));
        assert_eq!(n.tasks_by_level.get("上门办"), Some(&1));
        assert_eq!(n.tasks_closed, 0);
        assert_eq!(d.tasks_by_level.get(""), Some(&1));
        assert_eq!(d.escalations, 1);
        assert_eq!(d.tasks_closed, 2);
        // 31 days and 3 days.
        assert_eq!(d.median_days_to_close, Some(17.0));
        assert_eq!(d.on_time_rate, Some(0.5));
        assert_eq!(d.average_satisfaction, Some(3.5));
        // A range keeps only what falls in it.
        let only_dec = grid_month_stats(
            &StatsInput {
                tasks: vec![task("x", "ordered")],
                ..StatsInput::default()
            },
            Some(TimeRange {
                from_ms: dec,
                to_ms: dec + 31 * DAY_MS,
            }),
        );
        assert!(only_dec.is_empty());
    }

    fn household(id: &str, created_at: i64, moved_out_at: Option<i64>) -> HouseholdP {
        HouseholdP {
            id: id.into(),
            grid: "g1".into(),
            building: "1号楼".into(),
            unit: "1单元".into(),
            room: "101".into(),
            head_name: String::new(),
            member_count: 1,
            tags: String::new(),
            visit_count: 0,
            last_visit_at: None,
            conflicts: 0,
            created_at,
            created_by: String::new(),
            moved_out_at,
        }
    }

    fn visit(household: &str, at: i64) -> VisitP {
        VisitP {
            household: household.into(),
            pos: 0,
            id: format!("v-{household}-{at}"),
            grid: "g1".into(),
            at,
            by: "u-g1".into(),
            by_name: "王伟".into(),
            purpose: "入户走访".into(),
            note: String::new(),
            follow_up: None,
        }
    }

    #[test]
    fn coverage_divides_by_the_register_at_the_months_end() {
        let m = |y, mo| Month { year: y, month: mo };
        let (oct, nov, dec) = (m(2026, 10), m(2026, 11), m(2026, 12));
        let households = vec![
            // Registered long before the range: on the register every month.
            household("old", m(2025, 3).start_ms() + DAY_MS, None),
            household("oct", oct.start_ms() + 2 * DAY_MS, None),
            // Moved out in November: on October's register, not November's.
            household(
                "gone",
                oct.start_ms() + 3 * DAY_MS,
                Some(nov.start_ms() + DAY_MS),
            ),
            // Moves out at the first instant of December: still there at November's end.
            household("edge", oct.start_ms() + 4 * DAY_MS, Some(dec.start_ms())),
            household("dec", dec.start_ms() + 5 * DAY_MS, None),
        ];
        let visits = vec![
            visit("old", oct.start_ms() + 10 * DAY_MS),
            visit("old", oct.start_ms() + 11 * DAY_MS),
            visit("oct", oct.start_ms() + 12 * DAY_MS),
            // Visited in November before moving out: a visit, not coverage.
            visit("gone", nov.start_ms()),
            visit("edge", nov.start_ms() + 9 * DAY_MS),
        ];
        let range = TimeRange {
            from_ms: oct.start_ms(),
            to_ms: dec.end_ms(),
        };
        let stats = grid_month_stats(
            &StatsInput {
                households,
                visits,
                ..StatsInput::default()
            },
            Some(range),
        );
        let got: Vec<(String, usize, usize, usize, usize, Option<f64>)> = stats
            .iter()
            .map(|s| {
                (
                    s.month.clone(),
                    s.households_registered,
                    s.households_new,
                    s.households_visited,
                    s.registered_visited,
                    s.coverage(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                // old, oct, gone, edge registered; old and oct visited.
                ("2026-10".into(), 4, 3, 2, 2, Some(0.5)),
                // gone moved out: 3 on the register; edge visited; gone's visit is no coverage.
                ("2026-11".into(), 3, 0, 2, 1, Some(1.0 / 3.0)),
                // edge gone, dec new; nobody visited: a line with coverage 0.
                ("2026-12".into(), 3, 1, 0, 0, Some(0.0)),
            ]
        );
        assert!(registered_at(&household("h", 10, None), 11));
        assert!(
            !registered_at(&household("h", 10, None), 10),
            "created at the end"
        );
        assert!(!registered_at(&household("h", 0, Some(5)), 10));
        assert!(registered_at(&household("h", 0, Some(10)), 10));
        let empty = GridMonthStats::default();
        assert_eq!(empty.coverage(), None, "no register, no rate");
    }

    #[test]
    fn calendar_days_and_months_in_china_time() {
        assert_eq!(days_from_civil(1970, 1, 1), Some(0));
        assert_eq!(days_from_civil(2000, 3, 1), Some(11_017));
        assert_eq!(days_from_civil(2024, 2, 29), Some(19_782));
        assert_eq!(days_from_civil(2026, 2, 29), None);
        assert_eq!(days_from_civil(2026, 4, 31), None);
        for d in [0, 59, 60, 11_016, 19_782, 20_789, 2_932_896] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), Some(d), "{d}");
        }
        assert_eq!(parse_day("2026-12-01"), Some((2026, 12, 1)));
        for bad in [
            "2026-2-01",
            "2026-02-30",
            "2026-13-01",
            "1969-12-31",
            "20261201",
            "2026-12-01-",
            "２０２６-12-01",
            "+026-12-01",
            "",
        ] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
        // 2026-12-01 00:00 in Beijing is 2026-11-30T16:00Z.
        assert_eq!(day_start_ms(2026, 12, 1), Some(1_796_054_400_000));
        let r = day_range((2026, 12, 1), (2026, 12, 31)).unwrap();
        assert_eq!(r.to_ms - r.from_ms, 31 * DAY_MS);
        assert_eq!(day_range((2026, 12, 2), (2026, 12, 1)), None, "backwards");
        assert_eq!(day_of(r.from_ms), "2026-12-01");
        assert_eq!(day_of(r.to_ms - 1), "2026-12-31");
        let dec = Month::parse("2026-12").unwrap();
        assert_eq!(dec.range(), r);
        assert_eq!(dec.next().to_string(), "2027-01");
        assert_eq!(dec.minus(12).to_string(), "2025-12");
        assert_eq!(dec.minus(5).to_string(), "2026-07");
        assert_eq!(Month::of(r.from_ms - 1).to_string(), "2026-11");
        assert_eq!(Month::parse("2026-1"), None);
        assert_eq!(Month::parse("2026-00"), None);
        let months: Vec<String> = months_in(TimeRange {
            from_ms: Month::parse("2026-11").unwrap().start_ms() + 5,
            to_ms: Month::parse("2027-02").unwrap().start_ms(),
        })
        .iter()
        .map(Month::to_string)
        .collect();
        assert_eq!(months, vec!["2026-11", "2026-12", "2027-01"]);
    }

    #[test]
    fn ledger_totals_count_in_a_fixed_order() {
        let rec = |id: &str, category: &str, shown: &str| RecordP {
            id: id.into(),
            grid: "g1".into(),
            category: category.into(),
            status: "待处理".into(),
            shown: shown.into(),
            reporter: String::new(),
            household: None,
            building: None,
            place: String::new(),
            reported_at: 0,
            summary: String::new(),
            created_by: String::new(),
        };
        let mut from = task("t0", "closed");
        from.source_record = Some("r1".into());
        let rows = record_ledger(
            vec![
                rec("r1", "环境卫生", "已办结"),
                rec("r2", "环境卫生", "待处理"),
                rec("r3", "外星来客", "处理中"),
            ],
            &[from],
        );
        let t = record_totals(&record_groups(&rows));
        assert_eq!((t.records, t.closed, t.with_tasks), (3, 1, 1));
        assert_eq!(t.by_category.len(), Category::ALL.len() + 1);
        assert_eq!(t.by_category[0], ("矛盾纠纷".to_string(), 0));
        assert!(t.by_category.contains(&("环境卫生".to_string(), 2)));
        assert_eq!(
            t.by_category.last(),
            Some(&("外星来客".to_string(), 1)),
            "a value no phone should write still counts, last"
        );
        let statuses: Vec<&str> = t.by_status.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(statuses, vec!["待处理", "处理中", "已办结", "已回访"]);

        let now = 100 * DAY_MS;
        let mut a = task("a", "closed");
        a.deadline = Some(10);
        a.done_at = Some(5);
        a.rating = Some(5);
        let mut b = task("b", "done");
        b.deadline = Some(10);
        b.done_at = Some(20);
        b.rating = Some(2);
        b.reopened = true;
        let mut c = task("c", "in_progress");
        c.deadline = Some(now - DAY_MS);
        c.escalated = true;
        let mut d = task("d", "ordered");
        d.level = None;
        let t = task_totals(&task_ledger(vec![a, b, c, d], now));
        assert_eq!(
            (t.tasks, t.completed, t.overdue, t.escalated, t.reopened),
            (4, 2, 1, 1, 1)
        );
        assert_eq!(t.on_time_rate, Some(0.5));
        assert_eq!((t.rated, t.mean_satisfaction), (2, Some(3.5)));
        let levels: Vec<(&str, usize)> = t.by_level.iter().map(|(l, n)| (l.as_str(), *n)).collect();
        assert_eq!(
            levels,
            vec![("党群办", 0), ("小区办", 0), ("上门办", 3), ("", 1)]
        );
        assert_eq!(t.by_status[0], ("ordered".to_string(), 1));
        assert_eq!(task_totals(&[]).on_time_rate, None);
    }

    #[test]
    fn search_patterns_and_ranking() {
        assert_eq!(search_pattern("  "), None);
        assert_eq!(search_pattern("1380"), None);
        assert_eq!(search_pattern("Zhang San"), Some("%zhangsan%".into()));
        assert_eq!(search_pattern("张"), Some("%张%".into()));
        assert_eq!(search_pattern("z_s"), Some("%z\\_s%".into()));
        let res = |hh: &str, name: &str| {
            let k = pinyin::name_keys(name);
            ResidentP {
                household: hh.into(),
                pos: 0,
                member: name.into(),
                grid: "g1".into(),
                building: "1号楼".into(),
                name: name.into(),
                pinyin: k.full.join(" "),
                initials: k.initials.join(" "),
                phone_masked: None,
                id_masked: None,
                gender: "男".into(),
                birth_year: 1950,
                relation: "户主".into(),
                tags: String::new(),
                status: None,
            }
        };
        let hh = |id: &str| HouseholdP {
            id: id.into(),
            grid: "g1".into(),
            building: "1号楼".into(),
            unit: String::new(),
            room: String::new(),
            head_name: String::new(),
            member_count: 1,
            tags: String::new(),
            visit_count: 0,
            last_visit_at: None,
            conflicts: 0,
            created_at: 0,
            created_by: String::new(),
            moved_out_at: None,
        };
        let hits = rank_households(
            "zs",
            vec![res("h2", "张森淼"), res("h1", "张三"), res("h1", "周晓松")],
            vec![hh("h1"), hh("h2")],
            10,
        );
        let ids: Vec<&str> = hits.iter().map(|h| h.household.id.as_str()).collect();
        assert_eq!(ids, vec!["h1", "h2"]);
        assert_eq!(hits[0].residents[0].name, "张三");
        let both = vec![res("h2", "张森淼"), res("h1", "张三")];
        assert_eq!(ranked_household_ids("zs", &both, 1), vec!["h1".to_string()]);
        let one = rank_households("zs", both, vec![hh("h1"), hh("h2")], 1);
        assert_eq!(one.len(), 1);
    }
}
