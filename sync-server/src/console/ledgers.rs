//! The two ledgers (两台账) and the statistics page.
//!
//! - `GET /console/ledgers/records` (民情台账) and `GET /console/ledgers/tasks` (政务台账):
//!   the records reported, or the tasks created, in a range of whole days (`from`, `to` as
//!   `YYYY-MM-DD`, China time, both included; the current month by default), of one grid
//!   (`grid`) or of all the user's grids, 100 rows a page (`page`). With `format=xlsx` or
//!   `format=csv` the same rows come as a download ([`export`]), and the export is audited.
//! - `GET /console/stats`: per grid and month (`from`, `to` as `YYYY-MM`, the last 6
//!   months by default): coverage, records, tasks by level and by state, days to close,
//!   on-time rate, satisfaction and escalations, with two charts ([`chart`]).
//!
//! Who sees what is the console's rule: the grids of `Me::grids`; any other grid is the
//! one 404. A query value that cannot be read is a 400 page saying which and why.

use std::collections::{BTreeSet, HashMap};

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use xiuhua_core::model::{Level, TaskStatus, Tier};

use super::chart::{self, Series};
use super::export::{self, Cell, SheetNames, Summary, Table};
use super::i18n::Lang;
use super::{Answer, Client, Console, Me, Nav, page};
use crate::storage::console::{
    Month, RecordTotals, TaskTotals, day_of, day_range, days_in_month, months_in, parse_day,
    record_groups, record_totals, task_totals,
};
use crate::storage::{GridMonthStats, LedgerFilter, RecordLedgerRow, TaskLedgerRow, TimeRange};

/// Ledger rows per page.
pub const PAGE_ROWS: usize = 100;
/// Most months one statistics page covers.
pub const MAX_STATS_MONTHS: usize = 36;
/// Months the statistics page shows by default (the current one included).
const DEFAULT_STATS_MONTHS: u32 = 6;
/// The highest page number accepted.
const MAX_PAGE: usize = 1_000_000;

const XLSX_TYPE: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
const CSV_TYPE: &str = "text/csv; charset=utf-8";

/// The routes of the ledgers and the statistics (merged into [`super::router`]'s).
pub fn routes() -> Router<Console> {
    Router::new()
        .route(
            "/console/ledgers",
            get(|| async { Redirect::to("/console/ledgers/records") }),
        )
        .route("/console/ledgers/records", get(records_ledger))
        .route("/console/ledgers/tasks", get(tasks_ledger))
        .route("/console/stats", get(stats_page))
}

// ----- strings -----

/// The strings of these pages and files, one table per language.
#[derive(Debug)]
pub struct LedgerStrings {
    pub nav_ledgers: &'static str,
    pub nav_stats: &'static str,
    pub records_title: &'static str,
    pub tasks_title: &'static str,
    pub stats_title: &'static str,
    pub from: &'static str,
    pub to: &'static str,
    pub from_month: &'static str,
    pub to_month: &'static str,
    pub grid: &'static str,
    pub all_grids: &'static str,
    pub show: &'static str,
    pub export_xlsx: &'static str,
    pub export_csv: &'static str,
    /// `{n}`: rows.
    pub rows_total: &'static str,
    /// `{p}`, `{q}`: this page, pages.
    pub page_of: &'static str,
    pub prev: &'static str,
    pub next: &'static str,
    pub empty: &'static str,
    pub no_grids: &'static str,
    /// `{k}`: the query parameter.
    pub bad_day: &'static str,
    pub bad_order: &'static str,
    pub bad_page: &'static str,
    pub bad_format: &'static str,
    /// `{k}`: the query parameter.
    pub bad_month: &'static str,
    /// `{n}`: [`MAX_STATS_MONTHS`].
    pub too_many_months: &'static str,
    pub record_headers: [&'static str; 13],
    pub task_headers: [&'static str; 20],
    pub totals: &'static str,
    pub by_category: &'static str,
    pub by_status: &'static str,
    pub by_level: &'static str,
    pub records_count: &'static str,
    pub tasks_count: &'static str,
    pub records_closed: &'static str,
    pub with_tasks: &'static str,
    pub completed: &'static str,
    pub overdue: &'static str,
    pub escalated: &'static str,
    pub reopened: &'static str,
    pub on_time_rate: &'static str,
    pub mean_satisfaction: &'static str,
    pub rated: &'static str,
    pub about_ledger: &'static str,
    pub about_grids: &'static str,
    pub about_range: &'static str,
    pub about_at: &'static str,
    pub about_by: &'static str,
    pub range_sep: &'static str,
    pub yes: &'static str,
    pub no: &'static str,
    pub not_ordered: &'static str,
    /// By [`Tier`]: grid, community, linked unit.
    pub tiers: [&'static str; 3],
    /// By [`TaskStatus::ALL`]'s order.
    pub task_states: [&'static str; 6],
    /// File names (UTF-8) and sheet names.
    pub file_records: &'static str,
    pub file_tasks: &'static str,
    pub sheet_totals: &'static str,
    pub chart_coverage: &'static str,
    pub chart_tasks: &'static str,
    pub coverage_note: &'static str,
    pub section_visits: &'static str,
    pub section_tasks: &'static str,
    pub stats_empty: &'static str,
    pub visit_headers: [&'static str; 15],
    /// Grid, month, then the task states ([`LedgerStrings::task_states`]), then these.
    pub handling_headers: [&'static str; 6],
}

pub static ZH: LedgerStrings = LedgerStrings {
    nav_ledgers: "台账",
    nav_stats: "统计",
    records_title: "民情台账",
    tasks_title: "政务台账",
    stats_title: "统计分析",
    from: "开始日期",
    to: "结束日期",
    from_month: "起始月份",
    to_month: "截止月份",
    grid: "网格",
    all_grids: "全部网格",
    show: "查询",
    export_xlsx: "导出 Excel",
    export_csv: "导出 CSV",
    rows_total: "共 {n} 条",
    page_of: "第 {p} / {q} 页",
    prev: "上一页",
    next: "下一页",
    empty: "所选范围内没有记录。",
    no_grids: "您的账户没有可查看的网格。",
    bad_day: "日期 {k} 无法识别：请使用 YYYY-MM-DD 格式的真实日期（1970 年至 9999 年）。",
    bad_order: "开始日期晚于结束日期。",
    bad_page: "页码无法识别：请使用 1 至 1000000 之间的整数。",
    bad_format: "导出格式无法识别：只能是 xlsx 或 csv。",
    bad_month: "月份 {k} 无法识别：请使用 YYYY-MM 格式（1970 年至 9999 年）。",
    too_many_months: "起始月份晚于截止月份，或跨度超过 {n} 个月。",
    record_headers: [
        "编号",
        "网格",
        "上报时间",
        "类别",
        "状态",
        "反映人",
        "楼栋",
        "地点",
        "摘要",
        "代办数",
        "未办结代办",
        "办结时间",
        "登记人",
    ],
    task_headers: [
        "编号",
        "网格",
        "创建时间",
        "标题",
        "类别",
        "代办层级",
        "状态",
        "办理层级",
        "承办人",
        "办理期限",
        "办结时间",
        "评价时间",
        "办结天数",
        "是否按期",
        "超期天数",
        "满意度",
        "差评重办",
        "已上报",
        "来源民情",
        "登记人",
    ],
    totals: "合计",
    by_category: "按类别",
    by_status: "按状态",
    by_level: "按代办层级",
    records_count: "民情条数",
    tasks_count: "代办件数",
    records_closed: "已办结（含已回访）",
    with_tasks: "已转代办",
    completed: "已办结（含已评价）",
    overdue: "已超期",
    escalated: "已上报",
    reopened: "差评重办",
    on_time_rate: "按期办结率",
    mean_satisfaction: "平均满意度",
    rated: "已评价件数",
    about_ledger: "台账",
    about_grids: "网格",
    about_range: "时间范围",
    about_at: "导出时间",
    about_by: "导出人",
    range_sep: "至",
    yes: "是",
    no: "否",
    not_ordered: "未点单",
    tiers: ["网格", "社区", "联动单位"],
    task_states: ["已点单", "已派单", "办理中", "已办结", "已评价", "已撤销"],
    file_records: "民情台账",
    file_tasks: "政务台账",
    sheet_totals: "合计",
    chart_coverage: "走访覆盖率（按月）",
    chart_tasks: "当月新建代办的状态（按月）",
    coverage_note: "覆盖率 = 当月走访过的在册户数 ÷ 月末在册户数（月末前已迁出的不计）。",
    section_visits: "走访与民情",
    section_tasks: "代办办理",
    stats_empty: "所选范围内没有数据。",
    visit_headers: [
        "网格",
        "月份",
        "月末在册户数",
        "新登记户数",
        "走访户数",
        "覆盖率",
        "走访次数",
        "新增民情",
        "其中已办结",
        "新建代办",
        "党群办",
        "小区办",
        "上门办",
        "未点单",
        "上报",
    ],
    handling_headers: [
        "网格",
        "月份",
        "当月办结",
        "办结天数中位数",
        "按期办结率",
        "平均满意度",
    ],
};

pub static EN: LedgerStrings = LedgerStrings {
    nav_ledgers: "Ledgers",
    nav_stats: "Statistics",
    records_title: "Records ledger (民情台账)",
    tasks_title: "Tasks ledger (政务台账)",
    stats_title: "Statistics",
    from: "From",
    to: "To",
    from_month: "From month",
    to_month: "To month",
    grid: "Grid",
    all_grids: "All grids",
    show: "Show",
    export_xlsx: "Export Excel",
    export_csv: "Export CSV",
    rows_total: "{n} rows",
    page_of: "Page {p} of {q}",
    prev: "Previous",
    next: "Next",
    empty: "Nothing in this range.",
    no_grids: "Your account has no grid to see.",
    bad_day: "The date {k} cannot be read: use a real date as YYYY-MM-DD (years 1970 to 9999).",
    bad_order: "The start date is after the end date.",
    bad_page: "The page cannot be read: use a whole number from 1 to 1000000.",
    bad_format: "The export format cannot be read: use xlsx or csv.",
    bad_month: "The month {k} cannot be read: use YYYY-MM (years 1970 to 9999).",
    too_many_months: "The first month is after the last, or the range is longer than {n} months.",
    record_headers: [
        "ID",
        "Grid",
        "Reported",
        "Category",
        "Status",
        "Reporter",
        "Building",
        "Place",
        "Summary",
        "Tasks",
        "Open tasks",
        "Closed",
        "Recorded by",
    ],
    task_headers: [
        "ID",
        "Grid",
        "Created",
        "Title",
        "Category",
        "Level",
        "Status",
        "Tier",
        "Assignee",
        "Deadline",
        "Done",
        "Closed",
        "Days to close",
        "On time",
        "Days overdue",
        "Rating",
        "Reopened",
        "Escalated",
        "Source record",
        "Created by",
    ],
    totals: "Totals",
    by_category: "By category",
    by_status: "By status",
    by_level: "By level",
    records_count: "Records",
    tasks_count: "Tasks",
    records_closed: "Closed (resolved or followed up)",
    with_tasks: "With tasks",
    completed: "Done (rated or not)",
    overdue: "Overdue",
    escalated: "Escalated",
    reopened: "Reopened after a bad rating",
    on_time_rate: "Done on time",
    mean_satisfaction: "Mean satisfaction",
    rated: "Rated",
    about_ledger: "Ledger",
    about_grids: "Grids",
    about_range: "Range",
    about_at: "Exported at",
    about_by: "Exported by",
    range_sep: "to",
    yes: "yes",
    no: "no",
    not_ordered: "not ordered",
    tiers: ["grid", "community", "linked unit"],
    task_states: [
        "ordered",
        "assigned",
        "in progress",
        "done",
        "rated",
        "cancelled",
    ],
    file_records: "records-ledger",
    file_tasks: "tasks-ledger",
    sheet_totals: "Totals",
    chart_coverage: "Visit coverage by month",
    chart_tasks: "State of the tasks created each month",
    coverage_note: "Coverage = households on the register visited that month ÷ households on the \
                    register at the month's end (those moved out by then not counted).",
    section_visits: "Visits and records",
    section_tasks: "Task handling",
    stats_empty: "No data in this range.",
    visit_headers: [
        "Grid",
        "Month",
        "Registered at month end",
        "New households",
        "Households visited",
        "Coverage",
        "Visits",
        "Records",
        "of which closed",
        "Tasks created",
        "党群办",
        "小区办",
        "上门办",
        "Not ordered",
        "Escalated",
    ],
    handling_headers: [
        "Grid",
        "Month",
        "Closed that month",
        "Median days to close",
        "On-time rate",
        "Mean satisfaction",
    ],
};

/// The strings of a language.
pub fn strings(lang: Lang) -> &'static LedgerStrings {
    match lang {
        Lang::Zh => &ZH,
        Lang::En => &EN,
    }
}

impl Lang {
    /// [`strings`], for `base.html`'s navigation (whose own table is [`super::i18n`]'s).
    pub fn ledger_strings(self) -> &'static LedgerStrings {
        strings(self)
    }
}

fn with(template: &str, key: &str, value: impl std::fmt::Display) -> String {
    template.replace(key, &value.to_string())
}

impl LedgerStrings {
    fn task_state(&self, status: &str) -> String {
        match TaskStatus::parse(status) {
            Ok(s) => TaskStatus::ALL
                .iter()
                .position(|x| *x == s)
                .and_then(|i| self.task_states.get(i))
                .map_or_else(|| status.to_string(), |l| l.to_string()),
            Err(_) => status.to_string(),
        }
    }

    fn tier(&self, tier: &str, unit: Option<&str>) -> String {
        let label = match Tier::parse(tier) {
            Ok(Tier::Grid) => self.tiers[0],
            Ok(Tier::Community) => self.tiers[1],
            Ok(Tier::LinkedUnit) => self.tiers[2],
            Err(_) => return tier.to_string(),
        };
        match unit {
            Some(u) if !u.is_empty() => format!("{label}：{u}"),
            _ => label.to_string(),
        }
    }

    fn level(&self, level: Option<&str>) -> String {
        match level {
            Some(l) if !l.is_empty() => l.to_string(),
            _ => self.not_ordered.to_string(),
        }
    }

    fn yes_no(&self, v: bool) -> &'static str {
        if v { self.yes } else { self.no }
    }
}

// ----- the query -----

/// Which rendering a ledger request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Page,
    Xlsx,
    Csv,
}

type Day = (i32, u32, u32);

/// A ledger request's values, read and checked (the grid apart: it needs the user).
#[derive(Debug, Clone, PartialEq, Eq)]
struct LedgerQuery {
    from: Day,
    to: Day,
    range: TimeRange,
    grid: Option<String>,
    page: usize,
    format: Format,
}

/// A query parameter, empty counting as absent (an empty form field).
fn param<'a>(q: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    q.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
}

fn last_day(y: i32, m: u32) -> Day {
    (y, m, days_in_month(y, m))
}

/// Reads a ledger query. Without dates: the current month up to today; with `from` only:
/// to the end of its month; with `to` only: from the start of its month. The error is
/// the message of the 400 page.
fn ledger_query(
    q: &HashMap<String, String>,
    now_ms: i64,
    l: &LedgerStrings,
) -> Result<LedgerQuery, String> {
    let day = |key: &str| -> Result<Option<Day>, String> {
        param(q, key)
            .map(|v| parse_day(v).ok_or_else(|| with(l.bad_day, "{k}", key)))
            .transpose()
    };
    let (from, to) = match (day("from")?, day("to")?) {
        (Some(f), Some(t)) => (f, t),
        (Some(f), None) => (f, last_day(f.0, f.1)),
        (None, Some(t)) => ((t.0, t.1, 1), t),
        (None, None) => {
            let today = parse_day(&day_of(now_ms)).unwrap_or((1970, 1, 1));
            ((today.0, today.1, 1), today)
        }
    };
    let range = day_range(from, to).ok_or_else(|| l.bad_order.to_string())?;
    let page = match param(q, "page") {
        None => 1,
        Some(p) => p
            .parse::<usize>()
            .ok()
            .filter(|p| (1..=MAX_PAGE).contains(p))
            .ok_or_else(|| l.bad_page.to_string())?,
    };
    let format = match param(q, "format") {
        None => Format::Page,
        Some("xlsx") => Format::Xlsx,
        Some("csv") => Format::Csv,
        Some(_) => return Err(l.bad_format.to_string()),
    };
    Ok(LedgerQuery {
        from,
        to,
        range,
        grid: param(q, "grid").map(str::to_string),
        page,
        format,
    })
}

fn day_text(d: Day) -> String {
    format!("{:04}-{:02}-{:02}", d.0, d.1, d.2)
}

/// Percent-encodes a query value (all but the unreserved characters).
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl LedgerQuery {
    fn href(&self, path: &str, page: Option<usize>, format: Option<&str>) -> String {
        let mut s = format!(
            "{path}?from={}&to={}",
            enc(&day_text(self.from)),
            enc(&day_text(self.to))
        );
        if let Some(g) = &self.grid {
            s.push_str(&format!("&grid={}", enc(g)));
        }
        if let Some(p) = page {
            s.push_str(&format!("&page={p}"));
        }
        if let Some(f) = format {
            s.push_str(&format!("&format={f}"));
        }
        s
    }

    /// The period in file names: `2026-12` for a whole month, else both days.
    fn period(&self) -> String {
        if self.from.2 == 1 && self.to == last_day(self.from.0, self.from.1) {
            format!("{:04}-{:02}", self.from.0, self.from.1)
        } else {
            format!("{}_{}", day_text(self.from), day_text(self.to))
        }
    }
}

/// The grids a request reads: the one asked for if it is the user's (else the one 404,
/// audited), or all the user's.
async fn chosen_grids(
    con: &Console,
    c: &Client,
    me: &Me,
    grid: Option<&str>,
    action: &str,
) -> Result<Vec<String>, Response> {
    let mine: BTreeSet<String> = me.grids().iter().map(|(g, _)| g.to_string()).collect();
    match grid {
        Some(g) if mine.contains(g) => Ok(vec![g.to_string()]),
        Some(g) => {
            let shown: String = g.chars().take(64).collect();
            Err(con
                .out_of_scope(c, me, action, &format!("grid={shown}"))
                .await)
        }
        None => Ok(mine.into_iter().collect()),
    }
}

/// The names of the grids (their ids when unnamed).
async fn grid_names(con: &Console, c: &Client) -> Result<HashMap<String, String>, Response> {
    Ok(con
        .storage
        .list_grids()
        .await
        .map_err(|e| con.fail(c, e))?
        .into_iter()
        .map(|g| {
            let name = if g.name.is_empty() {
                g.id.clone()
            } else {
                g.name
            };
            (g.id, name)
        })
        .collect())
}

// ----- the ledgers' cells -----

fn name_of<'a>(names: &'a HashMap<String, String>, grid: &'a str) -> &'a str {
    names.get(grid).map_or(grid, String::as_str)
}

fn masked(s: &str) -> Cell {
    Cell::Text(export::mask_numbers(s).into_owned())
}

fn record_cells(r: &RecordLedgerRow, names: &HashMap<String, String>) -> Vec<Cell> {
    let rec = &r.record;
    vec![
        Cell::text(&rec.id),
        Cell::text(name_of(names, &rec.grid)),
        Cell::Time(Some(rec.reported_at)),
        Cell::text(&rec.category),
        Cell::text(&rec.shown),
        Cell::text(&rec.reporter),
        Cell::text(rec.building.clone().unwrap_or_default()),
        masked(&rec.place),
        masked(&rec.summary),
        Cell::Int(i64::try_from(r.tasks).ok()),
        Cell::Int(i64::try_from(r.open_tasks).ok()),
        Cell::Time(r.closed_at),
        Cell::text(&rec.created_by),
    ]
}

fn task_cells(r: &TaskLedgerRow, names: &HashMap<String, String>, l: &LedgerStrings) -> Vec<Cell> {
    let t = &r.task;
    vec![
        Cell::text(&t.id),
        Cell::text(name_of(names, &t.grid)),
        Cell::Time(Some(t.created_at)),
        masked(&t.title),
        Cell::text(&t.category),
        Cell::Text(l.level(t.level.as_deref())),
        Cell::Text(l.task_state(&t.status)),
        Cell::Text(l.tier(&t.tier, t.linked_unit.as_deref())),
        Cell::text(t.assignee.clone().unwrap_or_default()),
        Cell::Time(t.deadline),
        Cell::Time(t.done_at),
        Cell::Time(t.closed_at),
        Cell::Num(r.days_to_close),
        Cell::text(r.on_time.map_or("", |ok| l.yes_no(ok))),
        Cell::Int(r.days_overdue),
        Cell::Int(t.rating),
        Cell::text(l.yes_no(t.reopened)),
        Cell::text(l.yes_no(t.escalated)),
        Cell::text(t.source_record.clone().unwrap_or_default()),
        Cell::text(&t.created_by),
    ]
}

fn count(n: usize) -> Cell {
    Cell::Int(i64::try_from(n).ok())
}

fn record_summary(t: &RecordTotals, l: &LedgerStrings) -> Summary {
    Summary {
        about: Vec::new(),
        figures: vec![
            (l.records_count, count(t.records)),
            (l.records_closed, count(t.closed)),
            (l.with_tasks, count(t.with_tasks)),
        ],
        sections: vec![
            (l.by_category, t.by_category.clone()),
            (l.by_status, t.by_status.clone()),
        ],
    }
}

fn task_summary(t: &TaskTotals, l: &LedgerStrings) -> Summary {
    let states = t
        .by_status
        .iter()
        .map(|(s, n)| (l.task_state(s), *n))
        .collect();
    let levels = t
        .by_level
        .iter()
        .map(|(v, n)| (l.level(Some(v)), *n))
        .collect();
    Summary {
        about: Vec::new(),
        figures: vec![
            (l.tasks_count, count(t.tasks)),
            (l.completed, count(t.completed)),
            (l.overdue, count(t.overdue)),
            (l.escalated, count(t.escalated)),
            (l.reopened, count(t.reopened)),
            (l.on_time_rate, Cell::Rate(t.on_time_rate)),
            (l.rated, count(t.rated)),
            (l.mean_satisfaction, Cell::Num(t.mean_satisfaction)),
        ],
        sections: vec![
            (l.by_status, states),
            (l.by_level, levels),
            (l.by_category, t.by_category.clone()),
        ],
    }
}

// ----- the pages -----

/// A grid of the filter's choice.
struct GridOption {
    id: String,
    name: String,
    selected: bool,
}

/// What both ledger templates show.
struct LedgerView {
    title: &'static str,
    path: &'static str,
    from: String,
    to: String,
    grids: Vec<GridOption>,
    xlsx_href: String,
    csv_href: String,
    /// The two ledgers with the same filters.
    records_href: String,
    tasks_href: String,
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    figures: Vec<(&'static str, String)>,
    sections: Vec<(&'static str, Vec<(String, usize)>)>,
    total_text: String,
    page_text: String,
    prev: Option<String>,
    next: Option<String>,
}

#[derive(Template)]
#[template(path = "console/ledger_records.html")]
struct RecordsPage {
    nav: Nav,
    l: &'static LedgerStrings,
    v: LedgerView,
}

#[derive(Template)]
#[template(path = "console/ledger_tasks.html")]
struct TasksPage {
    nav: Nav,
    l: &'static LedgerStrings,
    v: LedgerView,
}

/// Which of the two ledgers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ledger {
    Records,
    Tasks,
}

impl Ledger {
    fn path(self) -> &'static str {
        match self {
            Ledger::Records => "/console/ledgers/records",
            Ledger::Tasks => "/console/ledgers/tasks",
        }
    }
    fn key(self) -> &'static str {
        match self {
            Ledger::Records => "records",
            Ledger::Tasks => "tasks",
        }
    }
    fn title(self, l: &LedgerStrings) -> &'static str {
        match self {
            Ledger::Records => l.records_title,
            Ledger::Tasks => l.tasks_title,
        }
    }
    fn file_name(self, l: &LedgerStrings) -> &'static str {
        match self {
            Ledger::Records => l.file_records,
            Ledger::Tasks => l.file_tasks,
        }
    }
    fn ascii_name(self) -> &'static str {
        match self {
            Ledger::Records => "records-ledger",
            Ledger::Tasks => "tasks-ledger",
        }
    }
}

async fn records_ledger(
    State(con): State<Console>,
    c: Client,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    ledger(&con, &c, &q, Ledger::Records)
        .await
        .unwrap_or_else(|r| r)
}

async fn tasks_ledger(
    State(con): State<Console>,
    c: Client,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    ledger(&con, &c, &q, Ledger::Tasks)
        .await
        .unwrap_or_else(|r| r)
}

/// A ledger's rows as typed cells, with their totals.
struct Rows {
    /// A page shows one page of rows: only those are made into cells.
    table: Table,
    /// Rows in the range (all pages).
    total: usize,
    summary: Summary,
}

async fn ledger(con: &Console, c: &Client, q: &HashMap<String, String>, which: Ledger) -> Answer {
    let me = con.require(c).await?;
    let l = strings(c.lang);
    let action = match which {
        Ledger::Records => "ledger_records",
        Ledger::Tasks => "ledger_tasks",
    };
    let grids = chosen_grids(con, c, &me, param(q, "grid"), action).await?;
    let now = crate::now_ms();
    let lq = ledger_query(q, now, l)
        .map_err(|m| con.message(c, Some(&me), StatusCode::BAD_REQUEST, &m))?;
    let names = grid_names(con, c).await?;
    let filter = LedgerFilter {
        grids: grids.clone(),
        range: Some(lq.range),
    };
    // The rows made into cells: a page's, or every row for a file.
    let (skip, take) = match lq.format {
        Format::Page => ((lq.page - 1).saturating_mul(PAGE_ROWS), PAGE_ROWS),
        Format::Xlsx | Format::Csv => (0, usize::MAX),
    };
    let rows = match which {
        // A page reads its own rows, and the totals counted in SQL; a file reads them all.
        Ledger::Records if lq.format == Format::Page => {
            let (rows, totals) = con
                .storage
                .records_ledger_page(&filter, skip, take)
                .await
                .map_err(|e| con.fail(c, e))?;
            Rows {
                summary: record_summary(&totals, l),
                total: totals.records,
                table: Table {
                    headers: l.record_headers.to_vec(),
                    rows: rows.iter().map(|r| record_cells(r, &names)).collect(),
                },
            }
        }
        Ledger::Records => {
            let rows = con
                .storage
                .records_ledger(&filter)
                .await
                .map_err(|e| con.fail(c, e))?;
            Rows {
                summary: record_summary(&record_totals(&record_groups(&rows)), l),
                total: rows.len(),
                table: Table {
                    headers: l.record_headers.to_vec(),
                    rows: rows
                        .iter()
                        .skip(skip)
                        .take(take)
                        .map(|r| record_cells(r, &names))
                        .collect(),
                },
            }
        }
        Ledger::Tasks => {
            let rows = con
                .storage
                .tasks_ledger(&filter, now)
                .await
                .map_err(|e| con.fail(c, e))?;
            Rows {
                summary: task_summary(&task_totals(&rows), l),
                total: rows.len(),
                table: Table {
                    headers: l.task_headers.to_vec(),
                    rows: rows
                        .iter()
                        .skip(skip)
                        .take(take)
                        .map(|r| task_cells(r, &names, l))
                        .collect(),
                },
            }
        }
    };
    match lq.format {
        Format::Page => Ok(ledger_page(con, c, &me, which, &lq, &names, rows)),
        Format::Xlsx | Format::Csv => {
            download(con, c, &me, which, &lq, &grids, &names, rows, now).await
        }
    }
}

fn ledger_page(
    con: &Console,
    c: &Client,
    me: &Me,
    which: Ledger,
    lq: &LedgerQuery,
    names: &HashMap<String, String>,
    rows: Rows,
) -> Response {
    let l = strings(c.lang);
    let total = rows.total;
    let pages = total.div_ceil(PAGE_ROWS).max(1);
    let path = which.path();
    let shown = rows
        .table
        .rows
        .iter()
        .map(|r| r.iter().map(Cell::display).collect())
        .collect();
    let mine: BTreeSet<&str> = me.grids().iter().map(|(g, _)| *g).collect();
    let v = LedgerView {
        title: which.title(l),
        path,
        from: day_text(lq.from),
        to: day_text(lq.to),
        grids: mine
            .into_iter()
            .map(|g| GridOption {
                id: g.to_string(),
                name: name_of(names, g).to_string(),
                selected: lq.grid.as_deref() == Some(g),
            })
            .collect(),
        xlsx_href: lq.href(path, None, Some("xlsx")),
        csv_href: lq.href(path, None, Some("csv")),
        records_href: lq.href(Ledger::Records.path(), None, None),
        tasks_href: lq.href(Ledger::Tasks.path(), None, None),
        headers: rows.table.headers,
        rows: shown,
        figures: rows
            .summary
            .figures
            .iter()
            .map(|(k, v)| (*k, v.display()))
            .collect(),
        sections: rows.summary.sections,
        total_text: with(l.rows_total, "{n}", total),
        page_text: with(&with(l.page_of, "{p}", lq.page), "{q}", pages),
        prev: (lq.page > 1).then(|| lq.href(path, Some(lq.page.min(pages + 1) - 1), None)),
        next: (lq.page < pages).then(|| lq.href(path, Some(lq.page + 1), None)),
    };
    let nav = con.nav(c, Some(me));
    match which {
        Ledger::Records => page(StatusCode::OK, &RecordsPage { nav, l, v }),
        Ledger::Tasks => page(StatusCode::OK, &TasksPage { nav, l, v }),
    }
}

/// The ledger as a file, built on the blocking pool under one of the server's work
/// permits, and audited.
#[allow(clippy::too_many_arguments)]
async fn download(
    con: &Console,
    c: &Client,
    me: &Me,
    which: Ledger,
    lq: &LedgerQuery,
    grids: &[String],
    names: &HashMap<String, String>,
    mut rows: Rows,
    now: i64,
) -> Answer {
    let l = strings(c.lang);
    let grid_list: Vec<&str> = grids.iter().map(|g| name_of(names, g)).collect();
    rows.summary.about = vec![
        (l.about_ledger, Cell::text(which.title(l))),
        (l.about_grids, Cell::Text(grid_list.join("、"))),
        (
            l.about_range,
            Cell::Text(format!(
                "{} {} {}",
                day_text(lq.from),
                l.range_sep,
                day_text(lq.to)
            )),
        ),
        (l.about_at, Cell::Time(Some(now))),
        (l.about_by, Cell::Text(format!("{} ({})", me.name, me.user))),
    ];
    let (ext, content_type) = match lq.format {
        Format::Csv => ("csv", CSV_TYPE),
        _ => ("xlsx", XLSX_TYPE),
    };
    let one = lq.grid.as_deref();
    let ascii = match one {
        Some(g) => format!("{}-{g}-{}.{ext}", which.ascii_name(), lq.period()),
        None => format!("{}-{}.{ext}", which.ascii_name(), lq.period()),
    };
    let utf8 = match one {
        Some(g) => format!(
            "{}-{}-{}.{ext}",
            which.file_name(l),
            export::file_part(name_of(names, g)),
            lq.period()
        ),
        None => format!("{}-{}.{ext}", which.file_name(l), lq.period()),
    };
    let n = rows.total;
    let format = lq.format;
    let names = SheetNames {
        ledger: match which {
            Ledger::Records => l.file_records,
            Ledger::Tasks => l.file_tasks,
        },
        totals: l.sheet_totals,
        totals_title: format!("{} {}", which.title(l), l.totals),
    };
    let built = {
        let Ok(_permit) = con.work.clone().acquire_owned().await else {
            return Err(con.message(
                c,
                Some(me),
                StatusCode::SERVICE_UNAVAILABLE,
                c.t().server_error,
            ));
        };
        tokio::task::spawn_blocking(move || match format {
            Format::Csv => export::csv(&rows.table).map_err(|e| e.to_string()),
            _ => export::xlsx(&rows.table, &rows.summary, &names).map_err(|e| e.to_string()),
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
    };
    let bytes = match built {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "console: export failed");
            con.record(
                &me.user,
                c,
                "export",
                &format!("ledger={} format={ext}: failed", which.key()),
                false,
            )
            .await?;
            return Err(con.message(
                c,
                Some(me),
                StatusCode::INTERNAL_SERVER_ERROR,
                c.t().server_error,
            ));
        }
    };
    con.record(
        &me.user,
        c,
        "export",
        &format!(
            "ledger={} format={ext} grids={} range={}..{} rows={n}",
            which.key(),
            grids.join(","),
            day_text(lq.from),
            day_text(lq.to)
        ),
        true,
    )
    .await?;
    let mut r = (StatusCode::OK, bytes).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&export::content_disposition(&ascii, &utf8)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

// ----- statistics -----

/// The colours of the task states in the chart, by [`TaskStatus::ALL`]'s order.
const STATE_COLORS: [&str; 6] = [
    "#9aa5b1", "#5b8bd9", "#e0a526", "#3f9b5a", "#1e6b34", "#c4c9cf",
];

#[derive(Template)]
#[template(path = "console/stats.html")]
struct StatsPage {
    nav: Nav,
    l: &'static LedgerStrings,
    from: String,
    to: String,
    grids: Vec<GridOption>,
    coverage_svg: String,
    tasks_svg: String,
    visit_rows: Vec<Vec<String>>,
    handling_headers: Vec<&'static str>,
    handling_rows: Vec<Vec<String>>,
}

/// A statistics request's months, read and checked: the last 6 by default.
fn stats_months(
    q: &HashMap<String, String>,
    now_ms: i64,
    l: &LedgerStrings,
) -> Result<(Month, Month), String> {
    let month = |key: &str| -> Result<Option<Month>, String> {
        param(q, key)
            .map(|v| Month::parse(v).ok_or_else(|| with(l.bad_month, "{k}", key)))
            .transpose()
    };
    let to = month("to")?.unwrap_or_else(|| Month::of(now_ms));
    let from = month("from")?.unwrap_or_else(|| to.minus(DEFAULT_STATS_MONTHS - 1));
    let span = months_in(TimeRange {
        from_ms: from.start_ms(),
        to_ms: to.end_ms(),
    })
    .len();
    if from > to || span > MAX_STATS_MONTHS {
        return Err(with(l.too_many_months, "{n}", MAX_STATS_MONTHS));
    }
    Ok((from, to))
}

fn rate_text(r: Option<f64>) -> String {
    Cell::Rate(r).display()
}

fn num_text(x: Option<f64>, decimals: usize) -> String {
    x.map(|x| format!("{x:.decimals$}")).unwrap_or_default()
}

async fn stats_page(
    State(con): State<Console>,
    c: Client,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    stats(&con, &c, &q).await.unwrap_or_else(|r| r)
}

async fn stats(con: &Console, c: &Client, q: &HashMap<String, String>) -> Answer {
    let me = con.require(c).await?;
    let l = strings(c.lang);
    let grid = param(q, "grid");
    let grids = chosen_grids(con, c, &me, grid, "stats").await?;
    let (from, to) = stats_months(q, crate::now_ms(), l)
        .map_err(|m| con.message(c, Some(&me), StatusCode::BAD_REQUEST, &m))?;
    let names = grid_names(con, c).await?;
    let range = TimeRange {
        from_ms: from.start_ms(),
        to_ms: to.end_ms(),
    };
    let stats = con
        .storage
        .grid_stats(&LedgerFilter {
            grids: grids.clone(),
            range: Some(range),
        })
        .await
        .map_err(|e| con.fail(c, e))?;
    let months = months_in(range);
    let labels: Vec<String> = months.iter().map(Month::to_string).collect();
    let coverage: Vec<Option<f64>> = labels
        .iter()
        .map(|m| {
            let (reg, vis) = of_month(&stats, m).fold((0, 0), |(r, v), s| {
                (r + s.households_registered, v + s.registered_visited)
            });
            (reg > 0).then(|| vis as f64 / reg as f64)
        })
        .collect();
    let series: Vec<Series> = TaskStatus::ALL
        .iter()
        .zip(l.task_states)
        .zip(STATE_COLORS)
        .map(|((s, label), color)| Series {
            label: label.to_string(),
            color,
            values: labels
                .iter()
                .map(|m| {
                    of_month(&stats, m)
                        .map(|x| x.tasks_by_state.get(s.as_str()).copied().unwrap_or(0))
                        .sum::<usize>() as f64
                })
                .collect(),
        })
        .collect();
    let coverage_svg = chart::percent_bars("coverage-chart", l.chart_coverage, &labels, &coverage);
    let tasks_svg = chart::stacked_columns("tasks-chart", l.chart_tasks, &labels, &series);
    let visit_rows = stats.iter().map(|s| visit_row(s, &names)).collect();
    let mut handling_headers: Vec<&'static str> = l.handling_headers[..2].to_vec();
    handling_headers.extend(l.task_states);
    handling_headers.extend(&l.handling_headers[2..]);
    let handling_rows = stats.iter().map(|s| handling_row(s, &names)).collect();
    let mine: BTreeSet<&str> = me.grids().iter().map(|(g, _)| *g).collect();
    Ok(page(
        StatusCode::OK,
        &StatsPage {
            nav: con.nav(c, Some(&me)),
            l,
            from: from.to_string(),
            to: to.to_string(),
            grids: mine
                .into_iter()
                .map(|g| GridOption {
                    id: g.to_string(),
                    name: name_of(&names, g).to_string(),
                    selected: grid == Some(g),
                })
                .collect(),
            coverage_svg,
            tasks_svg,
            visit_rows,
            handling_headers,
            handling_rows,
        },
    ))
}

/// The lines of one month, all grids.
fn of_month<'a>(
    stats: &'a [GridMonthStats],
    month: &'a str,
) -> impl Iterator<Item = &'a GridMonthStats> {
    stats.iter().filter(move |s| s.month == month)
}

fn visit_row(s: &GridMonthStats, names: &HashMap<String, String>) -> Vec<String> {
    let level = |k: &str| s.tasks_by_level.get(k).copied().unwrap_or(0).to_string();
    let mut row = vec![
        name_of(names, &s.grid).to_string(),
        s.month.clone(),
        s.households_registered.to_string(),
        s.households_new.to_string(),
        s.households_visited.to_string(),
        rate_text(s.coverage()),
        s.visits.to_string(),
        s.records_opened.to_string(),
        s.records_closed.to_string(),
        s.tasks_by_level.values().sum::<usize>().to_string(),
    ];
    row.extend(Level::ALL.iter().map(|lv| level(lv.as_str())));
    row.push(level(""));
    row.push(s.escalations.to_string());
    row
}

fn handling_row(s: &GridMonthStats, names: &HashMap<String, String>) -> Vec<String> {
    let mut row = vec![name_of(names, &s.grid).to_string(), s.month.clone()];
    row.extend(TaskStatus::ALL.iter().map(|st| {
        s.tasks_by_state
            .get(st.as_str())
            .copied()
            .unwrap_or(0)
            .to_string()
    }));
    row.push(s.tasks_closed.to_string());
    row.push(num_text(s.median_days_to_close, 1));
    row.push(rate_text(s.on_time_rate));
    row.push(num_text(s.average_satisfaction, 2));
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn ledger_queries_default_to_the_current_month_and_refuse_bad_values() {
        // 2026-12-02 03:17 in Beijing.
        let now = 1_796_152_620_000;
        let d = ledger_query(&q(&[]), now, &ZH).unwrap();
        assert_eq!((d.from, d.to), ((2026, 12, 1), (2026, 12, 2)));
        assert_eq!(
            (d.page, d.format, d.grid.as_deref()),
            (1, Format::Page, None)
        );
        let m = ledger_query(&q(&[("from", "2026-02-01"), ("grid", " g1 ")]), now, &ZH).unwrap();
        assert_eq!(m.to, (2026, 2, 28), "to the end of from's month");
        assert_eq!(m.period(), "2026-02");
        assert_eq!(m.grid.as_deref(), Some("g1"));
        let t = ledger_query(&q(&[("to", "2026-11-15"), ("from", "")]), now, &ZH).unwrap();
        assert_eq!(t.from, (2026, 11, 1), "an empty field counts as absent");
        assert_eq!(t.period(), "2026-11-01_2026-11-15");
        let x = ledger_query(&q(&[("format", "xlsx"), ("page", "3")]), now, &ZH).unwrap();
        assert_eq!((x.format, x.page), (Format::Xlsx, 3));
        assert_eq!(
            x.href("/console/ledgers/records", Some(2), None),
            "/console/ledgers/records?from=2026-12-01&to=2026-12-02&page=2"
        );
        for bad in [
            vec![("from", "2026-13-01")],
            vec![("to", "yesterday")],
            vec![("from", "2026-12-05"), ("to", "2026-12-01")],
            vec![("page", "0")],
            vec![("page", "-1")],
            vec![("page", "99999999999999999999999")],
            vec![("format", "pdf")],
        ] {
            assert!(ledger_query(&q(&bad), now, &ZH).is_err(), "{bad:?}");
        }
        assert!(
            ledger_query(&q(&[("to", "x")]), now, &EN)
                .unwrap_err()
                .contains("to")
        );
        let g = LedgerQuery {
            grid: Some("g 1&x".into()),
            ..d
        };
        assert!(
            g.href("/p", None, Some("csv"))
                .ends_with("&grid=g%201%26x&format=csv")
        );
    }

    #[test]
    fn stats_months_default_to_the_last_six() {
        let now = 1_796_152_620_000;
        let (f, t) = stats_months(&q(&[]), now, &ZH).unwrap();
        assert_eq!(
            (f.to_string(), t.to_string()),
            ("2026-07".into(), "2026-12".into())
        );
        let (f, _) = stats_months(&q(&[("to", "2026-03")]), now, &ZH).unwrap();
        assert_eq!(f.to_string(), "2025-10");
        assert!(stats_months(&q(&[("from", "2026-12"), ("to", "2026-11")]), now, &ZH).is_err());
        assert!(stats_months(&q(&[("from", "2020-01"), ("to", "2026-11")]), now, &ZH).is_err());
        assert!(stats_months(&q(&[("from", "2026-1")]), now, &ZH).is_err());
        assert!(stats_months(&q(&[("from", "2024-01"), ("to", "2026-12")]), now, &ZH).is_ok());
    }

    #[test]
    fn labels_of_states_tiers_and_levels() {
        assert_eq!(ZH.task_state("closed"), "已评价");
        assert_eq!(EN.task_state("in_progress"), "in progress");
        assert_eq!(ZH.task_state("weird"), "weird");
        assert_eq!(
            ZH.tier("linked_unit", Some("物业公司")),
            "联动单位：物业公司"
        );
        assert_eq!(ZH.tier("community", None), "社区");
        assert_eq!(ZH.level(None), "未点单");
        assert_eq!(ZH.level(Some("")), "未点单");
        assert_eq!(ZH.level(Some("上门办")), "上门办");
    }
}
