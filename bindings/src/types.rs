//! Records and enums that cross the FFI, mirroring the core's types.
//!
//! Domain enums (性别, 关系, 标签, 类别, 状态, 级别, 角色, 层级) travel as their stored strings
//! (`"男"`, `"党员"`, `"矛盾纠纷"` …): that is what the screens show, and [`vocabulary`]
//! lists the allowed values. An unknown string is an [`XiuhuaError::InvalidInput`] naming the
//! allowed values. Times are milliseconds since the epoch (`i64`).

use xiuhua_core as core;
use xiuhua_core::hlc::Hlc;
use xiuhua_core::workflow;

use crate::error::{Result, XiuhuaError};

// ----- helpers -----

pub(crate) fn parse<T: std::str::FromStr<Err = core::Error>>(s: &str) -> Result<T> {
    s.parse::<T>().map_err(XiuhuaError::from)
}

pub(crate) fn parse_opt<T: std::str::FromStr<Err = core::Error>>(
    s: Option<&str>,
) -> Result<Option<T>> {
    s.map(parse::<T>).transpose()
}

pub(crate) fn parse_tags(tags: &[String]) -> Result<Vec<core::Tag>> {
    tags.iter().map(|t| parse::<core::Tag>(t)).collect()
}

fn tags_out(tags: &[core::Tag]) -> Vec<String> {
    tags.iter().map(|t| t.as_str().to_string()).collect()
}

pub(crate) fn to_usize(field: &str, n: u32) -> Result<usize> {
    usize::try_from(n).map_err(|_| XiuhuaError::invalid(field, format!("{n} is too large")))
}

fn wall_ms(hlc: i64) -> i64 {
    Hlc::from_i64(hlc).map_or(0, |h| i64::try_from(h.wall_ms()).unwrap_or(i64::MAX))
}

fn status_label(status: &str) -> String {
    core::TaskStatus::parse(status).map_or_else(|_| status.to_string(), |s| s.label().to_string())
}

// ----- who and where -----

/// Who acts on this device: recorded with every change.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Actor {
    /// The server's user id, e.g. `u-wangwei`.
    pub user: String,
    /// Display name, e.g. 王伟.
    pub name: String,
    /// A role: 网格员, 楼门长, 社区工作者, 社区书记, 管理员.
    pub role: String,
    /// This installation's device id (after enrollment: the id the server assigned).
    pub device: String,
}

impl Actor {
    pub(crate) fn to_core(&self) -> Result<core::Actor> {
        Ok(core::Actor::new(
            &self.user,
            &self.name,
            parse(&self.role)?,
            &self.device,
        )?)
    }
}

impl From<&core::Actor> for Actor {
    fn from(a: &core::Actor) -> Self {
        Actor {
            user: a.user.clone(),
            name: a.name.clone(),
            role: a.role.as_str().to_string(),
            device: a.device.clone(),
        }
    }
}

/// Grid → building (楼栋) → unit (单元) → room.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Address {
    pub grid: String,
    pub building: String,
    pub unit: String,
    pub room: String,
}

impl From<core::Address> for Address {
    fn from(a: core::Address) -> Self {
        Address {
            grid: a.grid,
            building: a.building,
            unit: a.unit,
            room: a.room,
        }
    }
}

// ----- households -----

/// A person to add to a household.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct NewMember {
    pub name: String,
    /// 男 or 女.
    pub gender: String,
    pub birth_year: i32,
    /// A mainland mobile number, or none.
    pub phone: Option<String>,
    /// An 18-character resident ID number (checksum verified), or none.
    pub id_number: Option<String>,
    /// 户主, 配偶, 子女, 父母, 孙子女, 其他.
    pub relation: String,
    pub tags: Vec<String>,
}

impl NewMember {
    pub(crate) fn to_core(&self) -> Result<core::NewMember> {
        Ok(core::NewMember {
            name: self.name.clone(),
            gender: parse(&self.gender)?,
            birth_year: i64::from(self.birth_year),
            phone: self.phone.clone(),
            id_number: self.id_number.clone(),
            relation: parse(&self.relation)?,
            tags: parse_tags(&self.tags)?,
        })
    }
}

/// A person in a household (ID number whole: detail screens only).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Member {
    pub id: String,
    pub name: String,
    pub gender: String,
    pub birth_year: i32,
    pub phone: Option<String>,
    pub id_number: Option<String>,
    pub relation: String,
    pub tags: Vec<String>,
    /// 在册 (lives here), 迁出 (moved out) or 去世 (deceased).
    pub status: String,
}

impl From<core::Member> for Member {
    fn from(m: core::Member) -> Self {
        let status = m.status().as_str().to_string();
        Member {
            id: m.id,
            name: m.name,
            gender: m.gender.as_str().to_string(),
            birth_year: i32::try_from(m.birth_year).unwrap_or(0),
            phone: m.phone,
            id_number: m.id_number,
            relation: m.relation.as_str().to_string(),
            tags: tags_out(&m.tags),
            status,
        }
    }
}

/// A household to register.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct NewHousehold {
    pub address: Address,
    pub members: Vec<NewMember>,
    pub tags: Vec<String>,
    pub note: String,
}

impl NewHousehold {
    pub(crate) fn to_core(&self) -> Result<core::NewHousehold> {
        let a = &self.address;
        Ok(core::NewHousehold {
            address: core::Address::new(&a.grid, &a.building, &a.unit, &a.room)?,
            members: self
                .members
                .iter()
                .map(NewMember::to_core)
                .collect::<Result<_>>()?,
            tags: parse_tags(&self.tags)?,
            note: self.note.clone(),
        })
    }
}

/// One door-to-door visit (走访).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Visit {
    pub id: String,
    pub at: i64,
    /// User id of the visitor.
    pub by: String,
    pub by_name: String,
    pub purpose: String,
    pub note: String,
    pub follow_up: Option<String>,
}

impl From<core::Visit> for Visit {
    fn from(v: core::Visit) -> Self {
        Visit {
            id: v.id,
            at: v.at,
            by: v.by,
            by_name: v.by_name,
            purpose: v.purpose,
            note: v.note,
            follow_up: v.follow_up,
        }
    }
}

/// A visit to log.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct NewVisit {
    pub purpose: String,
    pub note: String,
    pub follow_up: Option<String>,
}

impl From<NewVisit> for core::NewVisit {
    fn from(v: NewVisit) -> Self {
        core::NewVisit {
            purpose: v.purpose,
            note: v.note,
            follow_up: v.follow_up,
        }
    }
}

/// A household with everything its detail screen shows.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Household {
    pub id: String,
    pub address: Address,
    pub members: Vec<Member>,
    pub tags: Vec<String>,
    pub note: String,
    /// Oldest first.
    pub visits: Vec<Visit>,
    pub created_at: i64,
    pub created_by: String,
    /// When the household moved out of the grid (迁出), if it did.
    pub moved_out_at: Option<i64>,
}

impl From<core::Household> for Household {
    fn from(h: core::Household) -> Self {
        Household {
            id: h.id,
            address: h.address.into(),
            members: h.members.into_iter().map(Member::from).collect(),
            tags: tags_out(&h.tags),
            note: h.note.as_str().to_string(),
            visits: h.visits.into_iter().map(Visit::from).collect(),
            created_at: h.created_at,
            created_by: h.created_by,
            moved_out_at: h.moved_out_at,
        }
    }
}

/// A building of a grid with its household count.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Building {
    pub name: String,
    pub households: i64,
}

/// A household in a building list.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
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
    /// Fields holding concurrent values (shown on the conflicts screen).
    pub conflicts: i64,
}

impl From<core::store::HouseholdSummary> for HouseholdSummary {
    fn from(h: core::store::HouseholdSummary) -> Self {
        HouseholdSummary {
            id: h.id,
            building: h.building,
            unit: h.unit,
            room: h.room,
            head_name: h.head_name,
            member_count: h.member_count,
            tags: h.tags,
            visit_count: h.visit_count,
            last_visit_at: h.last_visit_at,
            conflicts: h.conflicts,
        }
    }
}

/// A resident found by search; the ID number is masked.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ResidentHit {
    pub household: String,
    pub member: String,
    pub name: String,
    pub building: String,
    pub phone: Option<String>,
    /// `110***********1234`.
    pub id_masked: Option<String>,
    pub relation: String,
    pub birth_year: i64,
    /// 迁出 or 去世; none while the resident lives there.
    pub status: Option<String>,
}

impl From<core::store::ResidentHit> for ResidentHit {
    fn from(r: core::store::ResidentHit) -> Self {
        ResidentHit {
            household: r.household,
            member: r.member,
            name: r.name,
            building: r.building,
            phone: r.phone,
            id_masked: r.id_masked,
            relation: r.relation,
            birth_year: r.birth_year,
            status: r.status,
        }
    }
}

// ----- 民情 records -----

/// A 民情 record to log (works offline).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct NewRecord {
    pub grid: String,
    /// 矛盾纠纷, 安全隐患, 环境卫生, 民生诉求, 政策咨询, 设施报修, 治安防控, 代办服务.
    pub category: String,
    pub description: String,
    /// Who raised it (a resident's name).
    pub reporter: String,
    pub household: Option<String>,
    pub building: Option<String>,
    /// Where (楼道, 3号楼东侧 …).
    pub place: String,
}

impl NewRecord {
    pub(crate) fn to_core(&self) -> Result<core::NewRecord> {
        Ok(core::NewRecord {
            grid: self.grid.clone(),
            category: parse(&self.category)?,
            description: self.description.clone(),
            reporter: self.reporter.clone(),
            household: self.household.clone(),
            building: self.building.clone(),
            place: self.place.clone(),
        })
    }
}

/// A 民情 record, whole.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RecordDetail {
    pub id: String,
    pub grid: String,
    pub category: String,
    pub description: String,
    pub reporter: String,
    pub household: Option<String>,
    pub building: Option<String>,
    pub place: String,
    /// What the record shows (待处理, 处理中, 已办结, 已回访): its own status, raised by the
    /// tasks made from it (a live task: at least 处理中; all closed: at least 已办结).
    pub status: String,
    /// The status set on the record itself.
    pub own_status: String,
    /// The tasks held here that were made from it (点单), oldest first.
    pub tasks: Vec<String>,
    pub reported_at: i64,
    pub created_by: String,
    /// The number to give the resident, `金湖-2026-000123` (a provisional one, with 临,
    /// until the next sync replaces it).
    pub number: Option<String>,
    /// The provisional number it had before a sync replaced it (still findable).
    pub provisional_number: Option<String>,
}

impl From<core::store::RecordDetail> for RecordDetail {
    fn from(d: core::store::RecordDetail) -> Self {
        let r = d.record;
        RecordDetail {
            id: r.id,
            grid: r.grid,
            category: r.category.as_str().to_string(),
            description: r.description.as_str().to_string(),
            reporter: r.reporter,
            household: r.household,
            building: r.building,
            place: r.place,
            status: d.shown.as_str().to_string(),
            own_status: r.status.as_str().to_string(),
            tasks: d.tasks,
            reported_at: r.reported_at,
            created_by: r.created_by,
            number: r.number,
            provisional_number: r.provisional_number,
        }
    }
}

/// A 民情 record in a list.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
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

impl From<core::store::RecordSummary> for RecordSummary {
    fn from(r: core::store::RecordSummary) -> Self {
        RecordSummary {
            id: r.id,
            category: r.category,
            status: r.status,
            reporter: r.reporter,
            household: r.household,
            place: r.place,
            reported_at: r.reported_at,
            summary: r.summary,
        }
    }
}

// ----- 代办 tasks -----

/// 点单 from a 民情 record: what the task needs beyond what the record gives (grid,
/// category, household, title and description).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct OrderFromRecord {
    /// 党群办, 小区办, 上门办.
    pub level: String,
    /// The task's title; the record's first words when empty or absent.
    pub title: Option<String>,
    /// When named, the task is assigned (派单) in the same action.
    pub assignee: Option<String>,
    pub deadline: Option<i64>,
}

impl OrderFromRecord {
    pub(crate) fn to_core(&self) -> Result<core::store::OrderFromRecord> {
        Ok(core::store::OrderFromRecord {
            level: parse(&self.level)?,
            title: self.title.clone(),
            assignee: self.assignee.clone(),
            deadline: self.deadline,
        })
    }
}

/// A 代办 order (点单) to place.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct NewTask {
    pub grid: String,
    /// 党群办, 小区办, 上门办.
    pub level: String,
    pub category: String,
    pub title: String,
    pub description: String,
    pub household: Option<String>,
    pub source_record: Option<String>,
    /// When named, the task is assigned (派单) in the same action.
    pub assignee: Option<String>,
    pub deadline: Option<i64>,
}

impl NewTask {
    pub(crate) fn to_core(&self) -> Result<core::NewTask> {
        Ok(core::NewTask {
            grid: self.grid.clone(),
            level: parse(&self.level)?,
            category: parse(&self.category)?,
            title: self.title.clone(),
            description: self.description.clone(),
            household: self.household.clone(),
            source_record: self.source_record.clone(),
            assignee: self.assignee.clone(),
            deadline: self.deadline,
        })
    }
}

/// One action of the five orders (五单工作法) on a task.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum TaskAction {
    /// 派单: name the handler (a user id or a linked unit).
    Assign {
        assignee: String,
    },
    /// 办单: the handler takes the task.
    Accept,
    /// A progress note.
    Note {
        text: String,
    },
    /// 督单: a reminder, optionally with a new deadline.
    Supervise {
        text: String,
        new_deadline: Option<i64>,
    },
    /// 办单 done: the result.
    Complete {
        result: String,
    },
    /// 问单: the secretary asks; `send_back` reopens the task.
    Inquire {
        text: String,
        send_back: bool,
    },
    /// 评单: the resident's rating, 1 to 5 (1–2 reopens the task).
    Rate {
        score: i32,
        comment: String,
    },
    ChangeLevel {
        level: String,
    },
    ChangeDeadline {
        deadline: i64,
    },
    /// Up a tier: `grid` → `community` → `linked_unit` (with the unit's name).
    Escalate {
        tier: String,
        unit: Option<String>,
    },
    Cancel {
        reason: String,
    },
}

impl TaskAction {
    pub(crate) fn to_core(&self) -> Result<core::TaskAction> {
        use core::TaskAction as A;
        Ok(match self.clone() {
            TaskAction::Assign { assignee } => A::Assign { assignee },
            TaskAction::Accept => A::Accept,
            TaskAction::Note { text } => A::Note { text },
            TaskAction::Supervise { text, new_deadline } => A::Supervise { text, new_deadline },
            TaskAction::Complete { result } => A::Complete { result },
            TaskAction::Inquire { text, send_back } => A::Inquire { text, send_back },
            TaskAction::Rate { score, comment } => A::Rate {
                score: u8::try_from(score)
                    .ok()
                    .filter(|s| (1..=5).contains(s))
                    .ok_or_else(|| {
                        XiuhuaError::invalid(
                            "score",
                            format!("{score} is not a rating from 1 to 5"),
                        )
                    })?,
                comment,
            },
            TaskAction::ChangeLevel { level } => A::ChangeLevel {
                level: parse(&level)?,
            },
            TaskAction::ChangeDeadline { deadline } => A::ChangeDeadline { deadline },
            TaskAction::Escalate { tier, unit } => A::Escalate {
                tier: parse(&tier)?,
                unit,
            },
            TaskAction::Cancel { reason } => A::Cancel { reason },
        })
    }
}

/// A task in a list.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct TaskSummary {
    pub id: String,
    pub title: String,
    pub category: String,
    pub level: Option<String>,
    /// `ordered`, `assigned`, `in_progress`, `done`, `closed`, `cancelled`.
    pub status: String,
    /// The Chinese label of `status` (已点单 …).
    pub status_label: String,
    pub tier: String,
    pub assignee: Option<String>,
    pub deadline: Option<i64>,
    pub rating: Option<i64>,
    /// Events the fold rejected (concurrent transitions that lost): shown as conflicts.
    pub rejected: i64,
}

impl From<core::store::TaskSummary> for TaskSummary {
    fn from(t: core::store::TaskSummary) -> Self {
        TaskSummary {
            status_label: status_label(&t.status),
            id: t.id,
            title: t.title,
            category: t.category,
            level: t.level,
            status: t.status,
            tier: t.tier,
            assignee: t.assignee,
            deadline: t.deadline,
            rating: t.rating,
            rejected: t.rejected,
        }
    }
}

/// What the workflow fold did with an event.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum EventOutcome {
    Applied,
    /// Kept and shown with its reason, never applied.
    Rejected {
        reason: String,
    },
    /// A rating overtaken by a concurrent send-back; counts when the task is done anew.
    Held {
        reason: String,
    },
}

/// One event of a task's log, with its outcome.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct TaskEvent {
    pub id: String,
    /// order, assign, accept, note, supervise, complete, inquire, rate, change_level,
    /// change_deadline, escalate, cancel.
    pub kind: String,
    pub author: String,
    pub author_name: String,
    pub role: String,
    pub device: String,
    /// When, on the clock-anchored hybrid logical clock (ms since the epoch).
    pub at: i64,
    pub text: String,
    pub assignee: Option<String>,
    pub level: Option<String>,
    pub deadline: Option<i64>,
    pub score: Option<i64>,
    pub send_back: Option<bool>,
    pub tier: Option<String>,
    pub unit: Option<String>,
    pub outcome: EventOutcome,
}

impl From<workflow::FoldedEvent> for TaskEvent {
    fn from(f: workflow::FoldedEvent) -> Self {
        let e = f.event;
        TaskEvent {
            at: wall_ms(e.hlc),
            id: e.id,
            kind: e.kind,
            author: e.author,
            author_name: e.author_name,
            role: e.role,
            device: e.device,
            text: e.text,
            assignee: e.assignee,
            level: e.level,
            deadline: e.deadline,
            score: e.score,
            send_back: e.send_back,
            tier: e.tier,
            unit: e.unit,
            outcome: match f.outcome {
                workflow::Outcome::Applied => EventOutcome::Applied,
                workflow::Outcome::Rejected { reason } => EventOutcome::Rejected { reason },
                workflow::Outcome::Held { reason } => EventOutcome::Held { reason },
            },
        }
    }
}

/// A resident's rating (评单).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Rating {
    pub score: i32,
    pub comment: String,
    pub by: String,
    pub event_id: String,
}

/// A task with its folded state and its whole event log.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct TaskDetail {
    pub id: String,
    pub grid: String,
    pub category: String,
    pub title: String,
    pub description: String,
    pub household: Option<String>,
    pub source_record: Option<String>,
    pub created_at: i64,
    pub created_by: String,
    pub status: String,
    pub status_label: String,
    pub level: Option<String>,
    pub tier: String,
    pub linked_unit: Option<String>,
    pub assignee: Option<String>,
    pub deadline: Option<i64>,
    pub ordered_by: Option<String>,
    pub overdue: bool,
    pub last_rating: Option<Rating>,
    /// In fold order, each with its outcome.
    pub events: Vec<TaskEvent>,
    /// How many events were rejected or held.
    pub rejected: u32,
    /// The number to give the resident (see [`RecordDetail::number`]).
    pub number: Option<String>,
    pub provisional_number: Option<String>,
}

impl From<core::TaskDetail> for TaskDetail {
    fn from(d: core::TaskDetail) -> Self {
        let core::TaskDetail {
            task,
            view,
            overdue,
        } = d;
        let rejected = u32::try_from(view.rejected().count()).unwrap_or(u32::MAX);
        TaskDetail {
            id: task.id,
            grid: task.grid,
            category: task.category.as_str().to_string(),
            title: task.title,
            description: task.description.as_str().to_string(),
            household: task.household,
            source_record: task.source_record,
            created_at: task.created_at,
            created_by: task.created_by,
            status: view.status.as_str().to_string(),
            status_label: view.status.label().to_string(),
            level: view.level.map(|l| l.as_str().to_string()),
            tier: view.tier.as_str().to_string(),
            linked_unit: view.linked_unit,
            assignee: view.assignee,
            deadline: view.deadline,
            ordered_by: view.ordered_by,
            overdue,
            last_rating: view.last_rating.map(|r| Rating {
                score: i32::from(r.score),
                comment: r.comment,
                by: r.by,
                event_id: r.event_id,
            }),
            events: view.events.into_iter().map(TaskEvent::from).collect(),
            rejected,
            number: task.number,
            provisional_number: task.provisional_number,
        }
    }
}

// ----- ledger, history, conflicts -----

/// One count of the ledger: (category or level, status, count).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct LedgerCount {
    /// The record's category, or the task's level (empty when it has none).
    pub key: String,
    pub status: String,
    pub count: i64,
}

/// The grid's ledger (民情台账 / 政务台账).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Ledger {
    pub records: Vec<LedgerCount>,
    pub tasks: Vec<LedgerCount>,
    pub average_satisfaction: Option<f64>,
    pub rated_tasks: i64,
    pub overdue_tasks: i64,
    pub households: i64,
    pub residents: i64,
}

impl From<core::store::Ledger> for Ledger {
    fn from(l: core::store::Ledger) -> Self {
        let counts = |v: Vec<(String, String, i64)>| {
            v.into_iter()
                .map(|(key, status, count)| LedgerCount { key, status, count })
                .collect()
        };
        Ledger {
            records: counts(l.records),
            tasks: counts(l.tasks),
            average_satisfaction: l.average_satisfaction,
            rated_tasks: l.rated_tasks,
            overdue_tasks: l.overdue_tasks,
            households: l.households,
            residents: l.residents,
        }
    }
}

/// One line of a household's timeline.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct TimelineEntry {
    pub at: i64,
    /// `visit`, `record`, `task` or `change`.
    pub kind: String,
    pub id: String,
    pub who: String,
    pub text: String,
}

impl From<core::store::TimelineEntry> for TimelineEntry {
    fn from(t: core::store::TimelineEntry) -> Self {
        TimelineEntry {
            at: t.at,
            kind: t.kind,
            id: t.id,
            who: t.who,
            text: t.text,
        }
    }
}

/// Who changed a document, when and what (the audit trail).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct HistoryEntry {
    /// The change's hash.
    pub change: String,
    pub user: String,
    pub name: String,
    pub device: String,
    pub at: i64,
    pub what: String,
    /// What it changed, field by field (`members[张三].phone`: old → new); ID numbers
    /// masked; empty for the change that created the document.
    pub fields: Vec<FieldChange>,
}

/// One field a change changed (`None`: absent before, or removed).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct FieldChange {
    pub field: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

impl From<core::HistoryEntry> for HistoryEntry {
    fn from(h: core::HistoryEntry) -> Self {
        HistoryEntry {
            change: h.change,
            user: h.user,
            name: h.name,
            device: h.device,
            at: h.at_ms,
            what: h.what,
            fields: h
                .fields
                .into_iter()
                .map(|f| FieldChange {
                    field: f.field,
                    old: f.old,
                    new: f.new,
                })
                .collect(),
        }
    }
}

/// One competing value of a conflicting field.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ConflictValue {
    pub value: String,
    /// The device that wrote it.
    pub device: String,
}

/// A field holding concurrent values after a merge; settle it with `resolve_conflict`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct FieldConflict {
    /// E.g. `members/m-1/phone`.
    pub path: String,
    /// The value shown now first.
    pub values: Vec<ConflictValue>,
}

impl From<core::FieldConflict> for FieldConflict {
    fn from(c: core::FieldConflict) -> Self {
        FieldConflict {
            path: c.path,
            values: c
                .values
                .into_iter()
                .map(|v| ConflictValue {
                    value: v.value,
                    device: v.device,
                })
                .collect(),
        }
    }
}

// ----- the vocabulary -----

/// A value of a domain enum and its label.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Choice {
    /// What the API takes and returns.
    pub value: String,
    /// What a screen shows (the same Chinese word, except for task statuses).
    pub label: String,
}

/// Every allowed value of every domain enum, for pickers.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Vocabulary {
    pub genders: Vec<Choice>,
    pub relations: Vec<Choice>,
    pub tags: Vec<Choice>,
    pub categories: Vec<Choice>,
    pub record_statuses: Vec<Choice>,
    pub levels: Vec<Choice>,
    pub roles: Vec<Choice>,
    pub tiers: Vec<Choice>,
    pub task_statuses: Vec<Choice>,
}

fn choices<T: Copy>(all: &[T], value: impl Fn(T) -> &'static str) -> Vec<Choice> {
    all.iter()
        .map(|v| Choice {
            value: value(*v).to_string(),
            label: value(*v).to_string(),
        })
        .collect()
}

/// The allowed values of every domain enum.
#[uniffi::export]
pub fn vocabulary() -> Vocabulary {
    Vocabulary {
        genders: choices(core::Gender::ALL, core::Gender::as_str),
        relations: choices(core::Relation::ALL, core::Relation::as_str),
        tags: choices(core::Tag::ALL, core::Tag::as_str),
        categories: choices(core::Category::ALL, core::Category::as_str),
        record_statuses: choices(core::RecordStatus::ALL, core::RecordStatus::as_str),
        levels: choices(core::Level::ALL, core::Level::as_str),
        roles: choices(core::Role::ALL, core::Role::as_str),
        tiers: choices(core::Tier::ALL, core::Tier::as_str),
        task_statuses: core::TaskStatus::ALL
            .iter()
            .map(|s| Choice {
                value: s.as_str().to_string(),
                label: s.label().to_string(),
            })
            .collect(),
    }
}
