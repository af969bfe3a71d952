//! The work pages of the console: the 督单/问单 board (the home page), a task with its
//! timeline and the actions the staff member's role allows, and the households (search and
//! a household's page with its history).
//!
//! Every page reads the projection ([`crate::storage::console`]); a task's allowed actions
//! are asked of the fold itself ([`workflow::check`] on the stored document), so the page
//! offers exactly what a push would accept. Every action goes through [`super::act`].

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use xiuhua_core::doc;
use xiuhua_core::model::{Actor, Category, Level, Role, Task, TaskAction, Tier};
use xiuhua_core::workflow::{self, TaskView};

use super::act::{self, ActError};
use super::i18n::Work;
use super::{Client, Console, Me, Nav, format_ms, page};
use crate::storage::DAY_MS;
use crate::storage::console::{BoardColumn, BoardQuery, TaskFilter, TaskSort};
use crate::storage::projected::TimeRange;

/// Tasks on one page of the board.
pub const BOARD_PAGE: usize = 50;
/// Households a search shows.
const SEARCH_LIMIT: usize = 50;

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/console/", get(board_page))
        .route("/console/tasks/{id}", get(task_page).post(task_act))
        .route("/console/households", get(households_page))
        .route("/console/households/{id}", get(household_page))
}

// ----- dates as people type them (China time) -----

/// `YYYY-MM-DD` as the ms its day starts at in China (the ledgers' rule,
/// [`crate::storage::console::parse_day`]).
pub fn parse_day(s: &str) -> Option<i64> {
    let (y, m, d) = crate::storage::console::parse_day(s.trim())?;
    crate::storage::console::day_start_ms(y, m, d)
}

/// `YYYY-MM-DDTHH:MM` (a `datetime-local` field) as ms, China time.
pub fn parse_minute(s: &str) -> Option<i64> {
    let (day, time) = s.trim().split_once(['T', ' '])?;
    let (h, m) = time.split_once(':')?;
    let (h, m): (i64, i64) = (h.parse().ok()?, m.get(..2)?.parse().ok()?);
    if !(0..24).contains(&h) || !(0..60).contains(&m) {
        return None;
    }
    Some(parse_day(day)? + h * 3_600_000 + m * 60_000)
}

/// A created-in range from two optional days (the second inclusive).
fn day_range(from: Option<&str>, to: Option<&str>) -> Result<Option<TimeRange>, String> {
    let parse = |name: &str, v: Option<&str>| -> Result<Option<i64>, String> {
        match v.map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => parse_day(v)
                .map(Some)
                .ok_or_else(|| format!("{name}: {v:?} is not a date YYYY-MM-DD")),
        }
    };
    let (f, t) = (parse("from", from)?, parse("to", to)?);
    if f.is_none() && t.is_none() {
        return Ok(None);
    }
    let range = TimeRange {
        from_ms: f.unwrap_or(i64::MIN),
        to_ms: t.map_or(i64::MAX, |t| t + DAY_MS),
    };
    if range.from_ms >= range.to_ms {
        return Err("from is after to".into());
    }
    Ok(Some(range))
}

fn opt<'a>(q: &'a HashMap<String, String>, k: &str) -> Option<&'a str> {
    q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty())
}

// ----- the board -----

struct Choice {
    value: String,
    label: String,
    selected: bool,
}

fn choices<'a>(
    items: impl IntoIterator<Item = (&'a str, String)>,
    current: Option<&str>,
) -> Vec<Choice> {
    items
        .into_iter()
        .map(|(v, label)| Choice {
            selected: current == Some(v),
            value: v.to_string(),
            label,
        })
        .collect()
}

struct CountCell {
    key: &'static str,
    label: String,
    count: usize,
    active: bool,
    href: String,
}

struct BoardRow {
    id: String,
    title: String,
    grid: String,
    category: String,
    level: String,
    status: String,
    assignee: String,
    deadline: String,
    overdue: Option<i64>,
    created: String,
}

#[derive(Template)]
#[template(path = "console/board.html")]
struct BoardPage {
    nav: Nav,
    w: &'static Work,
    grids: Vec<Choice>,
    levels: Vec<Choice>,
    categories: Vec<Choice>,
    sorts: Vec<Choice>,
    assignee: String,
    from: String,
    to: String,
    column: &'static str,
    counts: Vec<CountCell>,
    rows: Vec<BoardRow>,
    summary: String,
    prev: Option<String>,
    next: Option<String>,
    my_grids: Vec<(String, String, String, String)>,
}

/// Query strings of the board's links, keeping the filters.
fn board_href(q: &HashMap<String, String>, set: &[(&str, String)]) -> String {
    let mut pairs: Vec<(String, String)> = [
        "grid", "level", "category", "assignee", "from", "to", "col", "sort",
    ]
    .iter()
    .filter(|k| !set.iter().any(|(s, _)| s == *k))
    .filter_map(|k| opt(q, k).map(|v| (k.to_string(), v.to_string())))
    .collect();
    pairs.extend(set.iter().map(|(k, v)| (k.to_string(), v.clone())));
    match serde_urlencoded::to_string(&pairs) {
        Ok(s) if !s.is_empty() => format!("/console/?{s}"),
        _ => "/console/".to_string(),
    }
}

async fn board_page(
    State(con): State<Console>,
    c: Client,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let inner = async {
        let me = con.require(&c).await?;
        let w = c.lang.work();
        let bad = |m: String| con.message(&c, Some(&me), StatusCode::BAD_REQUEST, &m);
        let mine: Vec<String> = me.grids().iter().map(|(g, _)| g.to_string()).collect();
        let grid = opt(&q, "grid");
        let grids = match grid {
            Some(g) if !mine.iter().any(|m| m == g) => return Err(con.not_found_for(&c, Some(&me))),
            Some(g) => vec![g.to_string()],
            None => mine.clone(),
        };
        let level = match opt(&q, "level") {
            Some(l) => Some(
                Level::parse(l)
                    .map_err(|e| bad(e.to_string()))?
                    .as_str()
                    .to_string(),
            ),
            None => None,
        };
        let category = match opt(&q, "category") {
            Some(v) => Some(
                Category::parse(v)
                    .map_err(|e| bad(e.to_string()))?
                    .as_str()
                    .to_string(),
            ),
            None => None,
        };
        let assignee = opt(&q, "assignee").map(|a| a.chars().take(64).collect::<String>());
        let created = day_range(opt(&q, "from"), opt(&q, "to")).map_err(bad)?;
        let column = match opt(&q, "col") {
            Some(v) => {
                BoardColumn::parse(v).ok_or_else(|| bad(format!("col: unknown column {v:?}")))?
            }
            None => BoardColumn::Overdue,
        };
        let sort_key = opt(&q, "sort").unwrap_or("deadline");
        let sort = match sort_key {
            "deadline" => TaskSort::Deadline,
            "newest" => TaskSort::CreatedDesc,
            "oldest" => TaskSort::CreatedAsc,
            "overdue" => TaskSort::MostOverdue,
            v => return Err(bad(format!("sort: unknown order {v:?}"))),
        };
        let page_no = match opt(&q, "page") {
            Some(p) => p
                .parse::<usize>()
                .ok()
                .filter(|p| (1..=100_000).contains(p))
                .ok_or_else(|| bad(format!("page: {p:?} is not a page number")))?,
            None => 1,
        };
        let now = crate::now_ms();
        let board = con
            .storage
            .board(&BoardQuery {
                filter: TaskFilter {
                    grids,
                    level: level.clone(),
                    category: category.clone(),
                    assignee: assignee.clone(),
                    created,
                },
                column,
                sort,
                offset: (page_no - 1) * BOARD_PAGE,
                limit: BOARD_PAGE,
                now_ms: now,
            })
            .await
            .map_err(|e| con.fail(&c, e))?;
        let names = con.user_names(&c).await?;
        let grid_infos = con
            .storage
            .list_grids()
            .await
            .map_err(|e| con.fail(&c, e))?;
        let grid_name = |id: &str| {
            grid_infos
                .iter()
                .find(|g| g.id == id)
                .map_or_else(|| id.to_string(), |g| g.name.clone())
        };
        let pages = board.total.div_ceil(BOARD_PAGE).max(1);
        let rows = board
            .tasks
            .iter()
            .map(|t| BoardRow {
                id: t.task.id.clone(),
                title: t.task.title.clone(),
                grid: grid_name(&t.task.grid),
                category: t.task.category.clone(),
                level: t.task.level.clone().unwrap_or_default(),
                status: c.lang.label(&t.task.status),
                assignee: t
                    .task
                    .assignee
                    .as_deref()
                    .map(|a| names.get(a).cloned().unwrap_or_else(|| a.to_string()))
                    .unwrap_or_default(),
                deadline: t.task.deadline.map(format_minute).unwrap_or_default(),
                overdue: t.days_overdue,
                created: format_minute(t.task.created_at),
            })
            .collect();
        let counts = board
            .counts
            .iter()
            .map(|(col, n)| CountCell {
                key: col.as_str(),
                label: c.lang.label(col.as_str()),
                count: *n,
                active: *col == column,
                href: board_href(&q, &[("col", col.as_str().to_string())]),
            })
            .collect();
        let summary = w
            .page_of
            .replace("{n}", &board.total.to_string())
            .replace("{p}", &page_no.to_string())
            .replace("{q}", &pages.to_string());
        let my_grids = me
            .grids()
            .iter()
            .map(|(g, role)| {
                let info = grid_infos.iter().find(|i| i.id == *g);
                (
                    g.to_string(),
                    info.map(|i| i.name.clone()).unwrap_or_default(),
                    info.map(|i| i.community.clone()).unwrap_or_default(),
                    role.as_str().to_string(),
                )
            })
            .collect();
        let all = w.all.to_string();
        Ok(page(
            StatusCode::OK,
            &BoardPage {
                nav: con.nav(&c, Some(&me)),
                w,
                grids: std::iter::once(Choice {
                    value: String::new(),
                    label: all.clone(),
                    selected: grid.is_none(),
                })
                .chain(choices(
                    mine.iter()
                        .map(|g| (g.as_str(), format!("{} ({g})", grid_name(g)))),
                    grid,
                ))
                .collect(),
                levels: std::iter::once(Choice {
                    value: String::new(),
                    label: all.clone(),
                    selected: level.is_none(),
                })
                .chain(choices(
                    Level::ALL
                        .iter()
                        .map(|l| (l.as_str(), l.as_str().to_string())),
                    level.as_deref(),
                ))
                .collect(),
                categories: std::iter::once(Choice {
                    value: String::new(),
                    label: all,
                    selected: category.is_none(),
                })
                .chain(choices(
                    Category::ALL
                        .iter()
                        .map(|l| (l.as_str(), l.as_str().to_string())),
                    category.as_deref(),
                ))
                .collect(),
                sorts: choices(
                    [
                        ("deadline", w.sort_deadline.to_string()),
                        ("newest", w.sort_newest.to_string()),
                        ("oldest", w.sort_oldest.to_string()),
                        ("overdue", w.sort_overdue.to_string()),
                    ],
                    Some(sort_key),
                ),
                assignee: assignee.unwrap_or_default(),
                from: opt(&q, "from").unwrap_or_default().to_string(),
                to: opt(&q, "to").unwrap_or_default().to_string(),
                column: column.as_str(),
                counts,
                rows,
                summary,
                prev: (page_no > 1).then(|| board_href(&q, &[("page", (page_no - 1).to_string())])),
                next: (page_no < pages)
                    .then(|| board_href(&q, &[("page", (page_no + 1).to_string())])),
                my_grids,
            },
        ))
    };
    inner.await.unwrap_or_else(|r| r)
}

/// `YYYY-MM-DD HH:MM`, China time.
pub fn format_minute(ms: i64) -> String {
    format_ms(ms).chars().take(16).collect()
}

impl Console {
    /// User ids to names, for showing assignees and authors.
    async fn user_names(&self, c: &Client) -> Result<HashMap<String, String>, Response> {
        Ok(self
            .storage
            .list_users()
            .await
            .map_err(|e| self.fail(c, e))?
            .into_iter()
            .map(|u| (u.id, u.name))
            .collect())
    }
}

// ----- a task -----

struct EventRow {
    at: String,
    kind: String,
    by: String,
    role: String,
    text: String,
    outcome: String,
    applied: bool,
    reason: String,
}

/// Which action forms the page shows: asked of the fold.
#[derive(Default)]
struct Allowed {
    assign: bool,
    accept: bool,
    supervise: bool,
    inquire: bool,
    send_back: bool,
    complete: bool,
    rate: bool,
    change_level: bool,
    change_deadline: bool,
    escalate_community: bool,
    escalate_unit: bool,
    cancel: bool,
    note: bool,
}

impl Allowed {
    fn any(&self) -> bool {
        self.assign
            || self.accept
            || self.supervise
            || self.inquire
            || self.complete
            || self.rate
            || self.change_level
            || self.change_deadline
            || self.escalate_community
            || self.escalate_unit
            || self.cancel
            || self.note
    }
}

/// What the fold would accept from `actor` on `view` now.
fn allowed(view: &TaskView, actor: &Actor, now_ms: i64) -> Allowed {
    let ok = |a: TaskAction| workflow::check(view, actor, &a).is_ok();
    let text = String::from("?");
    Allowed {
        assign: ok(TaskAction::Assign {
            assignee: "?".into(),
        }),
        accept: ok(TaskAction::Accept),
        supervise: ok(TaskAction::Supervise {
            text: text.clone(),
            new_deadline: None,
        }),
        inquire: ok(TaskAction::Inquire {
            text: text.clone(),
            send_back: false,
        }),
        send_back: ok(TaskAction::Inquire {
            text: text.clone(),
            send_back: true,
        }),
        complete: ok(TaskAction::Complete {
            result: text.clone(),
        }),
        rate: ok(TaskAction::Rate {
            score: 5,
            comment: String::new(),
        }),
        change_level: Level::ALL
            .iter()
            .any(|l| ok(TaskAction::ChangeLevel { level: *l })),
        change_deadline: ok(TaskAction::ChangeDeadline {
            deadline: now_ms + DAY_MS,
        }),
        escalate_community: ok(TaskAction::Escalate {
            tier: Tier::Community,
            unit: None,
        }),
        escalate_unit: ok(TaskAction::Escalate {
            tier: Tier::LinkedUnit,
            unit: Some(text.clone()),
        }),
        cancel: ok(TaskAction::Cancel {
            reason: text.clone(),
        }),
        note: ok(TaskAction::Note { text }),
    }
}

#[derive(Template)]
#[template(path = "console/task.html")]
struct TaskPage {
    nav: Nav,
    w: &'static Work,
    id: String,
    title: String,
    facts: Vec<(String, String)>,
    household: Option<String>,
    record: Option<String>,
    events: Vec<EventRow>,
    allowed: Allowed,
    people: Vec<(String, String)>,
    levels: Vec<&'static str>,
}

async fn task_page(
    State(con): State<Console>,
    c: Client,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let inner = async {
        let me = con.require(&c).await?;
        // Only a known action's name is shown: a link cannot put words on the page.
        let flash = opt(&q, "done")
            .filter(|k| ACTION_KINDS.contains(k))
            .map(|k| (true, format!("{}{}", c.lang.work().acted, c.lang.label(k))));
        task_view(&con, &c, &me, &id, StatusCode::OK, flash).await
    };
    inner.await.unwrap_or_else(|r| r)
}

/// The task page of `id` for `me`, with an outcome to show.
async fn task_view(
    con: &Console,
    c: &Client,
    me: &Me,
    id: &str,
    status: StatusCode,
    flash: Option<(bool, String)>,
) -> Result<Response, Response> {
    let w = c.lang.work();
    let Some(detail) = con
        .storage
        .task_detail(id)
        .await
        .map_err(|e| con.fail(c, e))?
    else {
        return Err(con.not_found_for(c, Some(me)));
    };
    let grids = me.grids();
    let Some(role) = grids
        .iter()
        .find(|(g, _)| *g == detail.task.grid)
        .map(|(_, r)| *r)
    else {
        return Err(con.not_found_for(c, Some(me)));
    };
    let now = crate::now_ms();
    // What the fold allows: asked of the stored document itself.
    let actor = Actor {
        user: me.user.clone(),
        name: me.name.clone(),
        role,
        device: act::console_device_id(&me.user),
    };
    let view = match con.storage.doc(id).await {
        Ok(Some((_, bytes))) => doc::load_doc(&bytes)
            .ok()
            .and_then(|d| autosurgeon::hydrate::<_, Task>(&d).ok())
            .map(|t| workflow::fold(t.events.values())),
        _ => None,
    };
    let allowed = view
        .as_ref()
        .map(|v| allowed(v, &actor, now))
        .unwrap_or_default();
    // One read of the directory's users: names for the page and the assignee picker.
    let users = con.storage.list_users().await.map_err(|e| con.fail(c, e))?;
    let names: HashMap<&str, &str> = users
        .iter()
        .map(|u| (u.id.as_str(), u.name.as_str()))
        .collect();
    let name_of = |u: &str| {
        names
            .get(u)
            .map_or_else(|| u.to_string(), |n| (*n).to_string())
    };
    let t = &detail.task;
    let mut facts = vec![
        (w.status.to_string(), c.lang.label(&t.status)),
        (w.level.to_string(), t.level.clone().unwrap_or_default()),
        (w.category.to_string(), t.category.clone()),
        (c.t().grid.to_string(), t.grid.clone()),
        (w.tier.to_string(), c.lang.label(&t.tier)),
        (
            w.assignee.to_string(),
            t.assignee.as_deref().map(name_of).unwrap_or_default(),
        ),
        (
            w.deadline.to_string(),
            t.deadline.map(format_minute).unwrap_or_default(),
        ),
        (
            w.created.to_string(),
            format!(
                "{} · {}",
                format_minute(t.created_at),
                name_of(&t.created_by)
            ),
        ),
    ];
    if let Some(unit) = &t.linked_unit {
        facts.push((w.unit.to_string(), unit.clone()));
    }
    if let Some(d) = crate::storage::console::days_overdue(t, now) {
        facts.push((w.overdue_days.to_string(), d.to_string()));
    }
    if let Some(r) = t.rating {
        facts.push((w.rating.to_string(), format!("{r} / 5")));
    }
    let events = detail
        .events
        .iter()
        .map(|e| EventRow {
            at: format_minute(e.at),
            kind: c.lang.label(&e.kind),
            by: if e.author_name.is_empty() {
                e.author.clone()
            } else {
                e.author_name.clone()
            },
            role: e.role.clone(),
            text: e.text.clone(),
            applied: e.outcome == "applied",
            outcome: match e.outcome.as_str() {
                "applied" => w.applied,
                "held" => w.held,
                _ => w.rejected,
            }
            .to_string(),
            reason: e.reason.clone().unwrap_or_default(),
        })
        .collect();
    let all_grants = con
        .storage
        .list_grants()
        .await
        .map_err(|e| con.fail(c, e))?;
    let here: Vec<_> = all_grants
        .iter()
        .filter(|g| g.grid == t.grid)
        .cloned()
        .collect();
    let people = crate::access::grid_people(&here, &all_grants, &users)
        .into_iter()
        .filter(|p| p.role != Role::Admin.as_str())
        .map(|p| (p.user, format!("{} · {}", p.name, p.role)))
        .collect();
    let mut nav = con.nav(c, Some(me));
    if let Some((ok, text)) = flash {
        nav.flash = Some(text);
        nav.flash_ok = ok;
    }
    Ok(page(
        status,
        &TaskPage {
            nav,
            w,
            id: t.id.clone(),
            title: t.title.clone(),
            facts,
            household: t.household.clone(),
            record: t.source_record.clone(),
            events,
            allowed,
            people,
            levels: Level::ALL.iter().map(|l| l.as_str()).collect(),
        },
    ))
}

/// The `action` values of the task forms.
pub const ACTION_KINDS: [&str; 11] = [
    "assign",
    "accept",
    "note",
    "supervise",
    "inquire",
    "complete",
    "rate",
    "change_level",
    "change_deadline",
    "escalate",
    "cancel",
];

/// The action a task form asks for; `Err` with the field that is wrong.
pub fn action_of(form: &HashMap<String, String>) -> Result<TaskAction, String> {
    let f = |k: &str| form.get(k).map_or("", |v| v.trim()).to_string();
    let deadline = |k: &str| -> Result<Option<i64>, String> {
        let v = f(k);
        if v.is_empty() {
            return Ok(None);
        }
        parse_minute(&v)
            .map(Some)
            .ok_or_else(|| format!("{k}: {v:?} is not a date and time"))
    };
    Ok(match f("action").as_str() {
        "assign" => TaskAction::Assign {
            assignee: f("assignee"),
        },
        "accept" => TaskAction::Accept,
        "note" => TaskAction::Note { text: f("text") },
        "supervise" => TaskAction::Supervise {
            text: f("text"),
            new_deadline: deadline("deadline")?,
        },
        "inquire" => TaskAction::Inquire {
            text: f("text"),
            send_back: form.contains_key("send_back"),
        },
        "complete" => TaskAction::Complete { result: f("text") },
        "rate" => TaskAction::Rate {
            score: f("score")
                .parse()
                .map_err(|_| format!("score: {:?} is not a rating from 1 to 5", f("score")))?,
            comment: f("text"),
        },
        "change_level" => TaskAction::ChangeLevel {
            level: Level::parse(&f("level")).map_err(|e| e.to_string())?,
        },
        "change_deadline" => TaskAction::ChangeDeadline {
            deadline: deadline("deadline")?.ok_or("deadline: a new deadline is needed")?,
        },
        "escalate" => {
            let tier = Tier::parse(&f("tier")).map_err(|e| e.to_string())?;
            let unit = Some(f("unit")).filter(|u| !u.is_empty());
            TaskAction::Escalate { tier, unit }
        }
        "cancel" => TaskAction::Cancel { reason: f("text") },
        other => return Err(format!("action: unknown action {other:?}")),
    })
}

async fn task_act(
    State(con): State<Console>,
    c: Client,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let inner = async {
        let me = con.require_post(&c, &form, "task_action").await?;
        let kind = form
            .get("action")
            .map_or("", |v| v.trim())
            .chars()
            .take(32)
            .collect::<String>();
        let detail = format!(
            "task={} action={kind}",
            id.chars().take(200).collect::<String>()
        );
        // The task must be one of the user's grids before anything else is said about it.
        let visible = match con
            .storage
            .task_detail(&id)
            .await
            .map_err(|e| con.fail(&c, e))?
        {
            Some(d) => me.grids().iter().any(|(g, _)| *g == d.task.grid),
            None => false,
        };
        if !visible {
            return Err(con.out_of_scope(&c, &me, "task_action", &detail).await);
        }
        let action = match action_of(&form) {
            Ok(a) => a,
            Err(m) => {
                con.record(
                    &me.user,
                    &c,
                    "task_action",
                    &format!("{detail}: {m}"),
                    false,
                )
                .await?;
                return task_view(
                    &con,
                    &c,
                    &me,
                    &id,
                    StatusCode::BAD_REQUEST,
                    Some((false, m)),
                )
                .await;
            }
        };
        match act::act(&con.app, &me.user, &id, action, crate::now_ms()).await {
            Ok(_) => {
                con.record(&me.user, &c, "task_action", &detail, true)
                    .await?;
                Ok(Redirect::to(&format!("/console/tasks/{id}?done={kind}")).into_response())
            }
            Err(ActError::NotFound) => Err(con.out_of_scope(&c, &me, "task_action", &detail).await),
            Err(e) => {
                let (status, text) = match e {
                    ActError::Invalid(m) => (StatusCode::BAD_REQUEST, m),
                    ActError::Refused(m) => (StatusCode::CONFLICT, m),
                    ActError::DeviceRevoked => (
                        StatusCode::FORBIDDEN,
                        c.lang.work().device_revoked.to_string(),
                    ),
                    ActError::Internal(m) => {
                        tracing::error!(error = %m, "console: task action failed");
                        (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            c.t().server_error.to_string(),
                        )
                    }
                    ActError::NotFound => (StatusCode::NOT_FOUND, c.t().not_found.to_string()),
                };
                con.record(
                    &me.user,
                    &c,
                    "task_action",
                    &format!("{detail}: {text}"),
                    false,
                )
                .await?;
                task_view(
                    &con,
                    &c,
                    &me,
                    &id,
                    status,
                    Some((false, format!("{}{text}", c.t().refused))),
                )
                .await
            }
        }
    };
    inner.await.unwrap_or_else(|r| r)
}

// ----- households -----

struct HitRow {
    id: String,
    address: String,
    head: String,
    members: i64,
    matched: String,
    moved_out: bool,
}

#[derive(Template)]
#[template(path = "console/households.html")]
struct HouseholdsPage {
    nav: Nav,
    w: &'static Work,
    q: String,
    searched: bool,
    hits: Vec<HitRow>,
}

fn address(h: &crate::projection::HouseholdP) -> String {
    format!("{} {}-{}", h.building, h.unit, h.room)
}

async fn households_page(
    State(con): State<Console>,
    c: Client,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let inner = async {
        let me = con.require(&c).await?;
        let query: String = opt(&q, "q").unwrap_or_default().chars().take(64).collect();
        let grids: Vec<String> = me.grids().iter().map(|(g, _)| g.to_string()).collect();
        let hits = if query.is_empty() {
            Vec::new()
        } else {
            con.storage
                .search_households(&grids, &query, SEARCH_LIMIT)
                .await
                .map_err(|e| con.fail(&c, e))?
        };
        let hits = hits
            .into_iter()
            .map(|h| HitRow {
                id: h.household.id.clone(),
                address: address(&h.household),
                head: h.household.head_name.clone(),
                members: h.household.member_count,
                matched: h
                    .residents
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join("、"),
                moved_out: h.household.moved_out_at.is_some(),
            })
            .collect();
        Ok(page(
            StatusCode::OK,
            &HouseholdsPage {
                nav: con.nav(&c, Some(&me)),
                w: c.lang.work(),
                searched: !query.is_empty(),
                q: query,
                hits,
            },
        ))
    };
    inner.await.unwrap_or_else(|r| r)
}

struct MemberRow {
    name: String,
    relation: String,
    gender: String,
    birth_year: i64,
    id_masked: String,
    phone_masked: String,
    tags: String,
    status: String,
}

struct LineRow {
    at: String,
    a: String,
    b: String,
    c: String,
    href: Option<String>,
}

#[derive(Template)]
#[template(path = "console/household.html")]
struct HouseholdPage {
    nav: Nav,
    w: &'static Work,
    address: String,
    facts: Vec<(String, String)>,
    members: Vec<MemberRow>,
    visits: Vec<LineRow>,
    records: Vec<LineRow>,
    tasks: Vec<LineRow>,
    history: Vec<LineRow>,
}

async fn household_page(State(con): State<Console>, c: Client, Path(id): Path<String>) -> Response {
    let inner = async {
        let me = con.require(&c).await?;
        let w = c.lang.work();
        let Some(d) = con
            .storage
            .household_detail(&id)
            .await
            .map_err(|e| con.fail(&c, e))?
        else {
            return Err(con.not_found_for(&c, Some(&me)));
        };
        if !me.grids().iter().any(|(g, _)| *g == d.household.grid) {
            return Err(con.not_found_for(&c, Some(&me)));
        }
        // Who changed what, when: the change notes of the stored document.
        let history = match con.storage.doc(&id).await {
            Ok(Some((_, bytes))) => doc::load_doc(&bytes)
                .map(|mut doc| doc::history(&mut doc))
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let h = &d.household;
        let mut facts = vec![
            (c.t().grid.to_string(), h.grid.clone()),
            (w.tags.to_string(), h.tags.clone()),
            (w.created.to_string(), format_minute(h.created_at)),
        ];
        if let Some(m) = h.moved_out_at {
            facts.push((w.moved_out.to_string(), format_minute(m)));
        }
        let members = d
            .residents
            .iter()
            .map(|r| MemberRow {
                name: r.name.clone(),
                relation: r.relation.clone(),
                gender: r.gender.clone(),
                birth_year: r.birth_year,
                id_masked: r.id_masked.clone().unwrap_or_default(),
                phone_masked: r.phone_masked.clone().unwrap_or_default(),
                tags: r.tags.clone(),
                status: r.status.clone().unwrap_or_default(),
            })
            .collect();
        let visits = d
            .visits
            .iter()
            .rev()
            .map(|v| LineRow {
                at: format_minute(v.at),
                a: v.by_name.clone(),
                b: v.purpose.clone(),
                c: v.note.clone(),
                href: None,
            })
            .collect();
        let records = d
            .records
            .iter()
            .map(|r| LineRow {
                at: format_minute(r.reported_at),
                a: r.category.clone(),
                b: r.shown.clone(),
                c: r.summary.clone(),
                href: None,
            })
            .collect();
        let tasks = d
            .tasks
            .iter()
            .map(|t| LineRow {
                at: format_minute(t.created_at),
                a: t.level.clone().unwrap_or_default(),
                b: c.lang.label(&t.status),
                c: t.title.clone(),
                href: Some(format!("/console/tasks/{}", t.id)),
            })
            .collect();
        let history = history
            .iter()
            .rev()
            .map(|e| LineRow {
                at: format_minute(e.at_ms),
                a: if e.name.is_empty() {
                    e.user.clone()
                } else {
                    format!("{} ({})", e.name, e.user)
                },
                b: e.what.clone(),
                c: e.device.clone(),
                href: None,
            })
            .collect();
        Ok(page(
            StatusCode::OK,
            &HouseholdPage {
                nav: con.nav(&c, Some(&me)),
                w,
                address: address(h),
                facts,
                members,
                visits,
                records,
                tasks,
                history,
            },
        ))
    };
    inner.await.unwrap_or_else(|r| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_minutes_are_read_in_china_time() {
        // 2026-12-02 00:00 in China is 2026-12-01 16:00 UTC.
        assert_eq!(
            parse_day("2026-12-02"),
            Some(1_796_169_600_000 - 8 * 3_600_000)
        );
        assert_eq!(
            format_ms(parse_day("2026-12-02").unwrap()),
            "2026-12-02 00:00:00"
        );
        let m = parse_minute("2026-12-02T09:30").unwrap();
        assert_eq!(format_minute(m), "2026-12-02 09:30");
        for bad in ["2026-13-01", "2026-02-30", "26-12-02", "2026-12-2", "", "x"] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
        for bad in [
            "2026-12-02T24:00",
            "2026-12-02T09",
            "2026-12-02",
            "2026-12-02T9:3",
        ] {
            assert_eq!(parse_minute(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_created_range_includes_its_last_day() {
        let r = day_range(Some("2026-12-01"), Some("2026-12-01"))
            .unwrap()
            .unwrap();
        assert_eq!(r.to_ms - r.from_ms, DAY_MS);
        assert!(day_range(Some("2026-12-02"), Some("2026-12-01")).is_err());
        assert!(day_range(Some("tomorrow"), None).is_err());
        assert_eq!(day_range(None, Some(" ")).unwrap(), None);
    }

    #[test]
    fn task_forms_are_read_into_actions_or_name_the_wrong_field() {
        let form = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            action_of(&form(&[
                ("action", "supervise"),
                ("text", " 请尽快 "),
                ("deadline", "2026-12-03T18:00")
            ])),
            Ok(TaskAction::Supervise {
                text: "请尽快".into(),
                new_deadline: parse_minute("2026-12-03T18:00")
            })
        );
        assert_eq!(
            action_of(&form(&[
                ("action", "inquire"),
                ("text", "为何未办"),
                ("send_back", "on")
            ])),
            Ok(TaskAction::Inquire {
                text: "为何未办".into(),
                send_back: true
            })
        );
        assert!(
            action_of(&form(&[("action", "rate"), ("score", "五")]))
                .unwrap_err()
                .contains("score")
        );
        assert!(
            action_of(&form(&[("action", "change_deadline")]))
                .unwrap_err()
                .contains("deadline")
        );
        assert!(
            action_of(&form(&[("action", "supervise"), ("deadline", "明天")]))
                .unwrap_err()
                .contains("deadline")
        );
        assert!(
            action_of(&form(&[("action", "drop_table")]))
                .unwrap_err()
                .contains("unknown")
        );
        assert!(matches!(
            action_of(&form(&[("action", "escalate"), ("tier", "linked_unit"), ("unit", "物业")])),
            Ok(TaskAction::Escalate { tier: Tier::LinkedUnit, unit: Some(u) }) if u == "物业"
        ));
    }
}
