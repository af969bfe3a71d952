//! The lists of real screens: the home list, paged records and tasks, search, visit
//! coverage and the grid's people. Records and enums mirror `xiuhua_core::store`'s.

use xiuhua_core as core;

use crate::error::Result;
use crate::store::XiuhuaStore;
use crate::types::{HouseholdSummary, parse_opt, to_usize};

/// Why an item is on the home list, in priority order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum HomeReason {
    /// An open task assigned to me, past its deadline.
    Overdue,
    /// An open task assigned to me, due within three days.
    DueSoon,
    /// A 督单 reminder I have not acted on since.
    Reminded,
    /// Reopened by a bad rating (1–2).
    Reopened,
    /// A household with no visit this month.
    NotVisited,
}

impl From<core::store::HomeReason> for HomeReason {
    fn from(r: core::store::HomeReason) -> Self {
        use core::store::HomeReason as R;
        match r {
            R::Overdue => HomeReason::Overdue,
            R::DueSoon => HomeReason::DueSoon,
            R::Reminded => HomeReason::Reminded,
            R::Reopened => HomeReason::Reopened,
            R::NotVisited => HomeReason::NotVisited,
        }
    }
}

/// A household's address as a list shows it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct AddressLine {
    pub household: String,
    pub building: String,
    pub unit: String,
    pub room: String,
    pub head_name: String,
}

impl From<core::store::AddressLine> for AddressLine {
    fn from(a: core::store::AddressLine) -> Self {
        AddressLine {
            household: a.household,
            building: a.building,
            unit: a.unit,
            room: a.room,
            head_name: a.head_name,
        }
    }
}

/// What [`crate::XiuhuaStore::find_by_number`] found.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct NumberHit {
    /// `record` or `task`.
    pub kind: String,
    pub id: String,
    /// Its number now (the real one, when a provisional number was asked for).
    pub number: String,
}

/// A task in a list, with its household's address and its assignee's name.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct TaskItem {
    pub id: String,
    pub grid: String,
    pub title: String,
    pub category: String,
    pub level: Option<String>,
    /// `ordered`, `assigned`, `in_progress`, `done`, `closed`, `cancelled`.
    pub status: String,
    /// The Chinese label of `status`.
    pub status_label: String,
    pub tier: String,
    /// The assignee's user id (or a linked unit's name).
    pub assignee: Option<String>,
    /// The assignee's name from the grid's people, when known: show it instead of the id.
    pub assignee_name: Option<String>,
    pub deadline: Option<i64>,
    pub rating: Option<i64>,
    pub rejected: i64,
    pub address: Option<AddressLine>,
    /// The number to give the resident.
    pub number: Option<String>,
}

impl From<core::store::TaskItem> for TaskItem {
    fn from(t: core::store::TaskItem) -> Self {
        TaskItem {
            status_label: core::TaskStatus::parse(&t.status)
                .map_or_else(|_| t.status.clone(), |s| s.label().to_string()),
            id: t.id,
            grid: t.grid,
            title: t.title,
            category: t.category,
            level: t.level,
            status: t.status,
            tier: t.tier,
            assignee: t.assignee,
            assignee_name: t.assignee_name,
            deadline: t.deadline,
            rating: t.rating,
            rejected: t.rejected,
            address: t.address.map(AddressLine::from),
            number: t.number,
        }
    }
}

/// A 民情 record in a list, with its household's address.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RecordItem {
    pub id: String,
    pub grid: String,
    pub category: String,
    /// The status it shows (its own, raised by its tasks).
    pub status: String,
    pub reporter: String,
    /// Its own building, else its household's.
    pub building: Option<String>,
    pub place: String,
    pub reported_at: i64,
    pub summary: String,
    pub address: Option<AddressLine>,
    /// The number to give the resident.
    pub number: Option<String>,
}

impl From<core::store::RecordItem> for RecordItem {
    fn from(r: core::store::RecordItem) -> Self {
        RecordItem {
            id: r.id,
            grid: r.grid,
            category: r.category,
            status: r.status,
            reporter: r.reporter,
            building: r.building,
            place: r.place,
            reported_at: r.reported_at,
            summary: r.summary,
            address: r.address.map(AddressLine::from),
            number: r.number,
        }
    }
}

/// One line of the home list: a task (the task reasons) or a household (not visited).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct HomeItem {
    pub reason: HomeReason,
    /// The deadline, the reminder, the bad rating or the last visit (none: never).
    pub at: Option<i64>,
    pub task: Option<TaskItem>,
    pub household: Option<HouseholdSummary>,
}

impl From<core::store::HomeItem> for HomeItem {
    fn from(h: core::store::HomeItem) -> Self {
        HomeItem {
            reason: h.reason.into(),
            at: h.at,
            task: h.task.map(TaskItem::from),
            household: h.household.map(HouseholdSummary::from),
        }
    }
}

/// Filters of the records list (`None`: any). Strings as stored: `tag` 独居老人 …,
/// `status` 待处理 …, `category` 环境卫生 ….
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct RecordFilter {
    #[uniffi(default = None)]
    pub building: Option<String>,
    #[uniffi(default = None)]
    pub tag: Option<String>,
    #[uniffi(default = None)]
    pub status: Option<String>,
    #[uniffi(default = None)]
    pub category: Option<String>,
}

/// Filters of the tasks list (`None`: any): `status` `in_progress` …, `level` 上门办 ….
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct TaskFilter {
    #[uniffi(default = None)]
    pub building: Option<String>,
    #[uniffi(default = None)]
    pub tag: Option<String>,
    #[uniffi(default = None)]
    pub status: Option<String>,
    #[uniffi(default = None)]
    pub level: Option<String>,
    #[uniffi(default = None)]
    pub assignee: Option<String>,
}

/// A page of records, newest first; pass `next` to get the following page.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RecordPage {
    pub items: Vec<RecordItem>,
    pub next: Option<String>,
}

/// A page of tasks, soonest deadline first; pass `next` to get the following page.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct TaskPage {
    pub items: Vec<TaskItem>,
    pub next: Option<String>,
}

/// What a search hit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum SearchKind {
    Resident,
    Household,
    Record,
    Task,
}

/// One search result; a resident's never carries an ID or phone number.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SearchHit {
    pub kind: SearchKind,
    /// The household (resident, household), record or task id.
    pub id: String,
    /// A resident's member id.
    pub member: Option<String>,
    pub title: String,
    /// `name`, `pinyin`, `phone`, `address`, `text`, `place` or `title`.
    pub matched: String,
    pub snippet: String,
    pub address: Option<AddressLine>,
}

impl From<core::store::SearchHit> for SearchHit {
    fn from(h: core::store::SearchHit) -> Self {
        use core::store::SearchKind as K;
        SearchHit {
            kind: match h.kind {
                K::Resident => SearchKind::Resident,
                K::Household => SearchKind::Household,
                K::Record => SearchKind::Record,
                K::Task => SearchKind::Task,
            },
            id: h.id,
            member: h.member,
            title: h.title,
            matched: h.matched,
            snippet: h.snippet,
            address: h.address.map(AddressLine::from),
        }
    }
}

/// Households of one building visited this month out of those registered.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct BuildingCoverage {
    pub building: String,
    pub registered: i64,
    pub visited: i64,
}

/// A grid's visit coverage in the current month (China time).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Coverage {
    pub grid: String,
    /// ms of 00:00 (UTC+8) on the month's first day.
    pub month_start: i64,
    pub registered: i64,
    pub visited: i64,
    /// visited ÷ registered (0 with no household).
    pub ratio: f64,
    pub buildings: Vec<BuildingCoverage>,
}

impl From<core::store::Coverage> for Coverage {
    fn from(c: core::store::Coverage) -> Self {
        Coverage {
            grid: c.grid,
            month_start: c.month_start,
            registered: c.registered,
            visited: c.visited,
            ratio: c.ratio,
            buildings: c
                .buildings
                .into_iter()
                .map(|b| BuildingCoverage {
                    building: b.building,
                    registered: b.registered,
                    visited: b.visited,
                })
                .collect(),
        }
    }
}

/// A user of a grid for the assignee picker: name and role only.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Person {
    pub user: String,
    pub name: String,
    pub role: String,
}

fn record_filter(f: &RecordFilter) -> Result<core::store::RecordFilter> {
    Ok(core::store::RecordFilter {
        building: f.building.clone(),
        tag: parse_opt(f.tag.as_deref())?,
        status: parse_opt(f.status.as_deref())?,
        category: parse_opt(f.category.as_deref())?,
    })
}

fn task_filter(f: &TaskFilter) -> Result<core::store::TaskFilter> {
    Ok(core::store::TaskFilter {
        building: f.building.clone(),
        tag: parse_opt(f.tag.as_deref())?,
        status: parse_opt(f.status.as_deref())?,
        level: parse_opt(f.level.as_deref())?,
        assignee: f.assignee.clone(),
    })
}

#[uniffi::export]
impl XiuhuaStore {
    /// The home list of the store's user on `grid` at the clock-anchored now: overdue, due
    /// within three days, reminded (督单), reopened by a bad rating, then households not
    /// visited this month; at most `limit` items.
    pub fn home_list(&self, grid: String, limit: u32) -> Result<Vec<HomeItem>> {
        let limit = to_usize("limit", limit)?;
        let rows = self.with(|s| {
            let user = s.actor().user.clone();
            s.home_list(&grid, &user, s.now_ms(), limit)
        })?;
        Ok(rows.into_iter().map(HomeItem::from).collect())
    }

    /// A page of the grid's records (newest first), filtered; `after` is the previous
    /// page's `next` (none: the first page). At most 200 items.
    pub fn record_page(
        &self,
        grid: String,
        filter: RecordFilter,
        after: Option<String>,
        limit: u32,
    ) -> Result<RecordPage> {
        let f = record_filter(&filter)?;
        let limit = to_usize("limit", limit)?;
        let p = self.with(|s| s.record_page(&grid, &f, after.as_deref(), limit))?;
        Ok(RecordPage {
            items: p.items.into_iter().map(RecordItem::from).collect(),
            next: p.next,
        })
    }

    /// A page of the grid's tasks (soonest deadline first), filtered; `after` as in
    /// `record_page`.
    pub fn task_page(
        &self,
        grid: String,
        filter: TaskFilter,
        after: Option<String>,
        limit: u32,
    ) -> Result<TaskPage> {
        let f = task_filter(&filter)?;
        let limit = to_usize("limit", limit)?;
        let p = self.with(|s| s.task_page(&grid, &f, after.as_deref(), limit))?;
        Ok(TaskPage {
            items: p.items.into_iter().map(TaskItem::from).collect(),
            next: p.next,
        })
    }

    /// Searches residents (name, pinyin, initials, phone suffix), addresses, record text
    /// and tasks; 1–2 character queries work too.
    pub fn search(&self, query: String, limit: u32) -> Result<Vec<SearchHit>> {
        let limit = to_usize("limit", limit)?;
        let rows = self.with(|s| s.search(&query, limit))?;
        Ok(rows.into_iter().map(SearchHit::from).collect())
    }

    /// The record or task whose number is `number`, or whose provisional number it was
    /// (what a resident reads out from the slip they were given); `None` when none is here.
    pub fn find_by_number(&self, number: String) -> Result<Option<NumberHit>> {
        Ok(self
            .with(|s| s.find_by_number(&number))?
            .map(|h| NumberHit {
                kind: h.kind.as_str().to_string(),
                id: h.id,
                number: h.number,
            }))
    }

    /// The grid's visit coverage this month, in all and per building.
    pub fn visit_coverage(&self, grid: String) -> Result<Coverage> {
        self.with(|s| s.visit_coverage(&grid, s.now_ms()))
            .map(Coverage::from)
    }

    /// The grid's households (of one building, when given) not visited this month.
    pub fn not_visited(
        &self,
        grid: String,
        building: Option<String>,
        limit: u32,
    ) -> Result<Vec<HouseholdSummary>> {
        let limit = to_usize("limit", limit)?;
        let rows = self.with(|s| s.not_visited(&grid, building.as_deref(), s.now_ms(), limit))?;
        Ok(rows.into_iter().map(HouseholdSummary::from).collect())
    }

    /// The grid's people (names and roles, from the last sync): the assignee picker.
    pub fn grid_people(&self, grid: String) -> Result<Vec<Person>> {
        let rows = self.with(|s| s.grid_people(&grid))?;
        Ok(rows
            .into_iter()
            .map(|p| Person {
                user: p.user,
                name: p.name,
                role: p.role,
            })
            .collect())
    }
}
