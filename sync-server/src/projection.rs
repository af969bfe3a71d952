//! The server's projection: the rows the station's console queries (households, residents,
//! visits, 民情 records, tasks with their folded state, every task event), computed from a
//! document by one pure function, [`project`], that reuses the core's (`rows_and_model`:
//! the phone's rows, the hydrated model and the fold). The backends only write the rows it
//! returns, in the transaction that stored the document, and delete them with it.
//!
//! Residents' ID numbers and phone numbers are masked here, before anything is stored: the
//! full values never reach these tables.
//!
//! The one value that depends on other documents, a record's shown status, is computed by
//! [`shown_status`] (the core's `record_status_shown`) from the statuses of the tasks made
//! from it, whenever the record or one of those tasks is written or deleted.

use automerge::AutoCommit;
use xiuhua_core::hlc::Hlc;
use xiuhua_core::model::{RecordStatus, TaskStatus};
use xiuhua_core::store::{Model, Rows, rows_and_model};
use xiuhua_core::workflow::{self, Outcome};
use xiuhua_core::{DocKind, validate};

/// Version of the rows [`project`] computes; with the core's `PROJECTION_VERSION` it makes
/// the stored projection's version ([`stored_version`]). A server that finds another
/// version rebuilds the projection at start.
pub const SERVER_PROJECTION_VERSION: i64 = 2;

/// The version the `meta` table records for the projection tables.
pub fn stored_version() -> String {
    format!(
        "{}.{}",
        xiuhua_core::store::PROJECTION_VERSION,
        SERVER_PROJECTION_VERSION
    )
}

/// A household (户).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HouseholdP {
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
    pub conflicts: i64,
    pub created_at: i64,
    pub created_by: String,
    /// When the household moved out of the grid (迁出), if it did.
    pub moved_out_at: Option<i64>,
}

/// A resident: ID number and phone masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResidentP {
    pub household: String,
    /// Position in the household's member list (member ids are not trusted to be unique).
    pub pos: i64,
    pub member: String,
    pub grid: String,
    pub building: String,
    pub name: String,
    /// Full-pinyin keys, space separated (every reading of a polyphonic surname).
    pub pinyin: String,
    /// Initials keys, space separated.
    pub initials: String,
    pub phone_masked: Option<String>,
    pub id_masked: Option<String>,
    pub gender: String,
    pub birth_year: i64,
    pub relation: String,
    pub tags: String,
    /// 迁出 or 去世; none while the resident lives there.
    pub status: Option<String>,
}

/// A visit (走访) of a household.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitP {
    pub household: String,
    /// Position in the household's visit list.
    pub pos: i64,
    pub id: String,
    pub grid: String,
    pub at: i64,
    pub by: String,
    pub by_name: String,
    pub purpose: String,
    pub note: String,
    pub follow_up: Option<String>,
}

/// A 民情 record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordP {
    pub id: String,
    pub grid: String,
    pub category: String,
    /// Its own status, as set on the record.
    pub status: String,
    /// The status it shows: its own raised by the tasks made from it ([`shown_status`]).
    pub shown: String,
    pub reporter: String,
    pub household: Option<String>,
    pub building: Option<String>,
    pub place: String,
    pub reported_at: i64,
    pub summary: String,
    pub created_by: String,
}

/// A 代办 task with its folded state. Times in ms since the epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskP {
    pub id: String,
    pub grid: String,
    pub title: String,
    pub category: String,
    pub level: Option<String>,
    pub status: String,
    /// Whether a valid order (点单) was applied.
    pub ordered: bool,
    pub tier: String,
    pub linked_unit: Option<String>,
    pub assignee: Option<String>,
    pub deadline: Option<i64>,
    pub created_at: i64,
    pub created_by: String,
    pub ordered_by: Option<String>,
    pub household: Option<String>,
    pub source_record: Option<String>,
    /// The resident's latest rating (评单), 1–5.
    pub rating: Option<i64>,
    /// Events not applied (rejected or held).
    pub rejected: i64,
    pub done_at: Option<i64>,
    pub closed_at: Option<i64>,
    /// Open again after a bad rating (1–2) of its latest completion.
    pub reopened: bool,
    /// An escalation was applied.
    pub escalated: bool,
}

/// One event of a task, in fold order, with what the fold did with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventP {
    pub task: String,
    pub id: String,
    pub grid: String,
    /// Position in fold order, from 0.
    pub pos: i64,
    pub kind: String,
    pub author: String,
    pub author_name: String,
    pub role: String,
    /// ms since the epoch (the event's HLC wall time).
    pub at: i64,
    pub text: String,
    /// `applied`, `rejected` or `held`.
    pub outcome: String,
    /// Why it was rejected or held.
    pub reason: Option<String>,
}

/// The server rows of one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocRows {
    Household {
        household: HouseholdP,
        residents: Vec<ResidentP>,
        visits: Vec<VisitP>,
    },
    Record(RecordP),
    Task {
        task: TaskP,
        events: Vec<EventP>,
    },
}

impl DocRows {
    pub fn id(&self) -> &str {
        match self {
            DocRows::Household { household, .. } => &household.id,
            DocRows::Record(r) => &r.id,
            DocRows::Task { task, .. } => &task.id,
        }
    }
    pub fn kind(&self) -> DocKind {
        match self {
            DocRows::Household { .. } => DocKind::Household,
            DocRows::Record(_) => DocKind::Record,
            DocRows::Task { .. } => DocKind::Task,
        }
    }
}

/// A document's projections: the phone's rows (shipped in bootstrap bundles) and the
/// server's.
#[derive(Debug, Clone, PartialEq)]
pub struct Projected {
    pub rows: Rows,
    pub server: DocRows,
}

/// The wall time of an HLC stamp, in ms.
fn hlc_ms(hlc: i64) -> i64 {
    Hlc::from_i64(hlc).map_or(0, |h| i64::try_from(h.wall_ms()).unwrap_or(i64::MAX))
}

/// Computes a document's rows: `None` for a document that is still empty.
pub fn project(doc_id: &str, doc: &AutoCommit) -> xiuhua_core::Result<Option<Projected>> {
    let Some((rows, model)) = rows_and_model(doc_id, doc)? else {
        return Ok(None);
    };
    let server = server_rows(&rows, &model).ok_or_else(|| xiuhua_core::Error::BadDocument {
        doc: doc_id.to_string(),
        reason: "its rows and model disagree".into(),
    })?;
    Ok(Some(Projected { rows, server }))
}

/// The server rows from the core's rows and model ([`project`]'s second half); `None`
/// when they are of different kinds (`rows_and_model` never returns such a pair).
pub fn server_rows(rows: &Rows, model: &Model) -> Option<DocRows> {
    Some(match (rows, model) {
        (
            Rows::Household {
                household: h,
                residents,
            },
            Model::Household(doc),
        ) => DocRows::Household {
            household: HouseholdP {
                id: h.id.clone(),
                grid: h.grid.clone(),
                building: h.building.clone(),
                unit: h.unit.clone(),
                room: h.room.clone(),
                head_name: h.head_name.clone(),
                member_count: h.member_count,
                tags: h.tags.clone(),
                visit_count: h.visit_count,
                last_visit_at: h.last_visit_at,
                conflicts: h.conflicts,
                created_at: doc.created_at,
                created_by: doc.created_by.clone(),
                moved_out_at: h.moved_out_at,
            },
            residents: residents
                .iter()
                .enumerate()
                .map(|(pos, r)| ResidentP {
                    household: r.household.clone(),
                    pos: pos as i64,
                    member: r.member.clone(),
                    grid: r.grid.clone(),
                    building: r.building.clone(),
                    name: r.name.clone(),
                    pinyin: r.pinyin.clone(),
                    initials: r.initials.clone(),
                    phone_masked: r.phone.as_deref().map(validate::mask_phone),
                    // The core's row holds the masked ID already.
                    id_masked: r.id_masked.clone(),
                    gender: r.gender.clone(),
                    birth_year: r.birth_year,
                    relation: r.relation.clone(),
                    tags: r.tags.clone(),
                    status: r.status.clone(),
                })
                .collect(),
            visits: doc
                .visits
                .iter()
                .enumerate()
                .map(|(pos, v)| VisitP {
                    household: h.id.clone(),
                    pos: pos as i64,
                    id: v.id.clone(),
                    grid: h.grid.clone(),
                    at: v.at,
                    by: v.by.clone(),
                    by_name: v.by_name.clone(),
                    purpose: v.purpose.clone(),
                    note: v.note.clone(),
                    follow_up: v.follow_up.clone(),
                })
                .collect(),
        },
        (Rows::Record(r), Model::Record(doc)) => DocRows::Record(RecordP {
            id: r.id.clone(),
            grid: r.grid.clone(),
            category: r.category.clone(),
            status: r.status.clone(),
            shown: r.status.clone(),
            reporter: r.reporter.clone(),
            household: r.household.clone(),
            building: r.building.clone(),
            place: r.place.clone(),
            reported_at: r.reported_at,
            summary: r.summary.clone(),
            created_by: doc.created_by.clone(),
        }),
        (Rows::Task(t), Model::Task(tv)) => {
            let (doc, view) = tv.as_ref();
            let m = workflow::milestones(view);
            let events = view
                .events
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let (outcome, reason) = match &f.outcome {
                        Outcome::Applied => ("applied", None),
                        Outcome::Rejected { reason } => ("rejected", Some(reason.clone())),
                        Outcome::Held { reason } => ("held", Some(reason.clone())),
                    };
                    EventP {
                        task: t.id.clone(),
                        id: f.event.id.clone(),
                        grid: t.grid.clone(),
                        pos: i as i64,
                        kind: f.event.kind.clone(),
                        author: f.event.author.clone(),
                        author_name: f.event.author_name.clone(),
                        role: f.event.role.clone(),
                        at: hlc_ms(f.event.hlc),
                        text: f.event.text.clone(),
                        outcome: outcome.to_string(),
                        reason,
                    }
                })
                .collect();
            DocRows::Task {
                task: TaskP {
                    id: t.id.clone(),
                    grid: t.grid.clone(),
                    title: t.title.clone(),
                    category: t.category.clone(),
                    level: t.level.clone(),
                    status: t.status.clone(),
                    ordered: view.ordered,
                    tier: t.tier.clone(),
                    linked_unit: view.linked_unit.clone(),
                    assignee: t.assignee.clone(),
                    deadline: t.deadline,
                    created_at: t.created_at,
                    created_by: doc.created_by.clone(),
                    ordered_by: view.ordered_by.clone(),
                    household: t.household.clone(),
                    source_record: t.source_record.clone(),
                    rating: t.rating,
                    rejected: t.rejected,
                    done_at: m.done_hlc.map(hlc_ms),
                    closed_at: m.closed_hlc.map(hlc_ms),
                    reopened: m.reopened_by_rating,
                    escalated: m.escalated,
                },
                events,
            }
        }
        _ => return None,
    })
}

/// The status a record whose own status is `own` shows, given the statuses of the tasks
/// made from it (the core's rule, `workflow::record_status_shown`). Unknown values (a newer
/// build's) count as the lowest.
pub fn shown_status<'a>(own: &str, tasks: impl IntoIterator<Item = &'a str>) -> String {
    let own = RecordStatus::parse(own).unwrap_or(RecordStatus::Pending);
    let tasks = tasks
        .into_iter()
        .filter_map(|s| TaskStatus::parse(s).ok())
        .collect::<Vec<_>>();
    workflow::record_status_shown(own, tasks)
        .as_str()
        .to_string()
}

/// The records whose shown status a write of `rows` may change, given the record the task
/// was made from before (`linked_before`, read from the stored row): the record itself, or a
/// task's record now and before.
pub fn records_to_refresh(rows: &DocRows, linked_before: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = match rows {
        DocRows::Record(r) => vec![r.id.clone()],
        DocRows::Task { task, .. } => task.source_record.iter().cloned().collect(),
        DocRows::Household { .. } => Vec::new(),
    };
    if let Some(b) = linked_before
        && !out.iter().any(|r| r == b)
    {
        out.push(b.to_string());
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use xiuhua_core::Store;
    use xiuhua_core::model::*;

    fn store() -> Store {
        Store::open_in_memory(Actor::new("u-w", "王伟", Role::GridMember, "d-w").unwrap()).unwrap()
    }

    /// The document as the server would hold it: the outbox's changes applied.
    fn load(s: &Store, id: &str) -> AutoCommit {
        let mut doc = AutoCommit::new();
        for e in s.outbox(10_000).unwrap().iter().filter(|e| e.doc == id) {
            doc.load_incremental(&e.change).unwrap();
        }
        doc
    }

    #[test]
    fn residents_are_masked_and_visits_listed() {
        let mut s = store();
        let id = s
            .create_household(NewHousehold {
                address: Address::new("g1", "1号楼", "1单元", "101").unwrap(),
                members: vec![NewMember {
                    name: "曾秀英".into(),
                    gender: Gender::Female,
                    birth_year: 1942,
                    phone: Some("13812345678".into()),
                    id_number: Some("11010519491231002X".into()),
                    relation: Relation::Head,
                    tags: vec![],
                }],
                tags: vec![],
                note: String::new(),
            })
            .unwrap();
        s.add_visit(
            &id,
            NewVisit {
                purpose: "走访".into(),
                note: "身体好".into(),
                follow_up: None,
            },
        )
        .unwrap();
        let p = project(&id, &load(&s, &id)).unwrap().unwrap();
        let DocRows::Household {
            household,
            residents,
            visits,
        } = p.server
        else {
            panic!("a household");
        };
        assert_eq!(household.visit_count, 1);
        assert_eq!(household.created_by, "u-w");
        assert_eq!(residents[0].phone_masked.as_deref(), Some("138****5678"));
        assert_eq!(
            residents[0].id_masked.as_deref(),
            Some("110***********002X")
        );
        assert!(residents[0].pinyin.contains("zengxiuying"));
        assert_eq!(visits.len(), 1);
        assert_eq!(visits[0].by, "u-w");
        assert_eq!(visits[0].note, "身体好");
    }

    #[test]
    fn shown_status_is_the_cores_rule() {
        assert_eq!(shown_status("待处理", []), "待处理");
        assert_eq!(shown_status("待处理", ["in_progress"]), "处理中");
        assert_eq!(shown_status("待处理", ["closed", "cancelled"]), "已办结");
        assert_eq!(shown_status("已回访", ["ordered"]), "已回访");
        assert_eq!(shown_status("??", ["??"]), "待处理");
    }

    #[test]
    fn a_relinked_task_refreshes_both_records() {
        let task = |src: Option<&str>| DocRows::Task {
            task: TaskP {
                id: "t".into(),
                grid: "g".into(),
                title: String::new(),
                category: String::new(),
                level: None,
                status: "ordered".into(),
                ordered: true,
                tier: "grid".into(),
                linked_unit: None,
                assignee: None,
                deadline: None,
                created_at: 0,
                created_by: String::new(),
                ordered_by: None,
                household: None,
                source_record: src.map(str::to_string),
                rating: None,
                rejected: 0,
                done_at: None,
                closed_at: None,
                reopened: false,
                escalated: false,
            },
            events: vec![],
        };
        assert_eq!(
            records_to_refresh(&task(Some("r1")), Some("r0")),
            vec!["r1".to_string(), "r0".to_string()]
        );
        assert_eq!(
            records_to_refresh(&task(Some("r1")), Some("r1")),
            vec!["r1".to_string()]
        );
        assert!(records_to_refresh(&task(None), None).is_empty());
    }
}
