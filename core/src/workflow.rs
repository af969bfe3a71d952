//! The 代办 task lifecycle (五单工作法) as a pure, versioned fold over a task's events.
//!
//! A task document holds an append-only set of [`TaskEvent`]s. Every device runs [`fold`]
//! over the same set and gets the same [`TaskView`]: no I/O, no clock reads, no dependence on
//! the order the events were handed in. Transitions that lose (wrong role, wrong state, or a
//! concurrency rule) stay in [`TaskView::events`] with [`Outcome::Rejected`] and a reason a
//! person can read; nothing is dropped. `WORKFLOW.md` is the specification; this comment
//! records how it was read and what was decided where it is silent.
//!
//! # Fold order
//!
//! Events are deduplicated by id (if two different events share an id, the one that compares
//! smallest field by field is kept, so the choice does not depend on input order). They are
//! then sorted topologically along `prev` (ids not present are ignored, as are self-references),
//! always taking the ready event with the smallest `(hlc, id)`. A `prev` cycle, which no honest
//! device can produce, is broken by taking the smallest `(hlc, id)` among the waiting events.
//!
//! # Who may record what (as decided)
//!
//! | event | roles | from state | effect |
//! |---|---|---|---|
//! | order | 楼门长, 网格员, 社区工作者 | no order applied yet | `ordered`; level (required), deadline, `ordered_by` |
//! | assign | 网格员, 社区工作者, 社区书记 | ordered, assigned | `assigned`; assignee = payload (non-empty) |
//! | accept | the assignee; anyone when unassigned | ordered, assigned | `in_progress`; assignee = author |
//! | note | anyone | any but cancelled | — |
//! | supervise (督单) | 社区工作者, 社区书记 | ordered, assigned, in_progress, done | optional new deadline |
//! | complete | the assignee | in_progress | `done` (a new *completion*) |
//! | inquire (问单) | 社区书记 | any; with `send_back` only done or closed | send-back → `in_progress` |
//! | rate (评单) | anyone (for the resident) | done, once per completion | 3–5 → `closed`, 1–2 → `in_progress` |
//! | change_level | 网格员, 社区工作者 | ordered, assigned, in_progress | level |
//! | change_deadline | 网格员, 社区工作者, 社区书记 | ordered, assigned, in_progress | deadline |
//! | escalate | 网格员 → community; 社区工作者, 社区书记 → community or linked unit | ordered, assigned, in_progress | tier strictly up |
//! | cancel | the orderer (ordered, assigned); 社区工作者, 社区书记 (ordered, assigned, in_progress) | see roles | `cancelled` |
//!
//! 管理员 records nothing but notes. Every event other than the order needs an applied order
//! before it in fold order. Roles are taken from the event's `role` string (grants are
//! enforced by the server).
//!
//! Decisions where the specification is silent:
//! - **Escalation hands the task over.** The table says the state stays "same", but an
//!   `in_progress` task whose assignee was cleared could then never be completed or
//!   re-assigned. So an escalation to the community clears the assignee and puts the task back
//!   to `ordered` (awaiting 派单 there); an escalation to a linked unit sets the assignee to the
//!   unit's name and the state to `assigned`.
//! - **Linked units act through the community.** A linked unit (物业, 执法 …) is not a user; when
//!   the assignee is the linked unit, 社区工作者 and 社区书记 may record its accept and complete.
//! - Accepting when unassigned is open to every role except 管理员 (the 楼门长 included).
//! - A rating with a missing score or a score outside 1–5 is rejected. Inquire without
//!   `send_back` is a plain question and applies in any state, cancelled included.
//! - A completion's result text may be empty (it was recorded at the door; the fold does not
//!   judge it).
//!
//! # Two people, one state (concurrency)
//!
//! Two events are concurrent when neither is a causal ancestor (through `prev`) of the other.
//! When the event being applied is concurrent with an already applied one:
//! 1. cancel vs accept or complete: the cancel is rejected ("already accepted/done by …"),
//!    whichever comes first in fold order.
//! 2. two accepts: the first in fold order wins, the other is rejected "already accepted by …".
//! 3. complete vs escalate: the complete wins, the escalation is rejected.
//! 4. inquire with send-back vs a closing rating (3–5) of the same completion: the send-back
//!    wins; the rating is [`Outcome::Held`], shown as [`TaskView::last_rating`], and is counted
//!    for the next completion right after that completion is applied (its outcome then becomes
//!    [`Outcome::Applied`]), so the resident is not asked twice. *Decision:* a bad rating (1–2)
//!    concurrent with a send-back of the same completion wants the same thing (reopen): both are
//!    applied, the rating is that completion's rating, the state is `in_progress`.
//! 5. two ratings of one completion: the first counts (a held rating counts), the other is
//!    rejected. This also covers a rating after the completion was already rated.
//! 6. level or deadline changes: all applied in fold order, so the later by clock wins.
//! 7. notes and supervise reminders never conflict.
//! 8. *Decision:* accept vs a concurrent assign to someone else: the accept wins (the worker at
//!    the door is never erased), the assign is rejected "already accepted by …".
//!
//! When the winner comes later in fold order than the loser (rules 1, 3, 4, 8), the loser is
//! rejected (or held) retroactively: the fold is repeated with a growing set of forced
//! outcomes until a pass finds nothing new. A later winner only knocks out earlier losers if it
//! would itself be applied without them (checked by a trial pass), so an invalid accept never
//! erases a valid cancel. Each repetition adds at least one event to the forced set, so there
//! are at most as many passes as events.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::error::{Error, Result};
use crate::model::{
    Actor, EventKind, Level, RecordStatus, Role, TaskAction, TaskEvent, TaskStatus, Tier,
};

/// Version of the fold's rules. Bump it whenever [`fold`] may give a different result for the
/// same events, so that stored projections are recomputed.
pub const FOLD_VERSION: u32 = 1;

/// The folded state of a task: what the screens show.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    /// Before any valid order event: `Ordered` with `ordered == false`.
    pub status: TaskStatus,
    /// Whether a valid order event was applied.
    pub ordered: bool,
    pub level: Option<Level>,
    /// Starts at [`Tier::Grid`].
    pub tier: Tier,
    /// The linked unit (1+3+N) the task was escalated to, if any.
    pub linked_unit: Option<String>,
    /// User id of the handler, or the linked unit's name.
    pub assignee: Option<String>,
    /// ms since the epoch.
    pub deadline: Option<i64>,
    /// User id of the author of the applied order.
    pub ordered_by: Option<String>,
    /// All events, in fold order, each with its outcome.
    pub events: Vec<FoldedEvent>,
    /// The resident's latest rating (also while it is held by a send-back).
    pub last_rating: Option<Rating>,
    pub fold_version: u32,
}

/// One event and what the fold did with it.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldedEvent {
    pub event: TaskEvent,
    pub outcome: Outcome,
}

/// What the fold did with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Kept in the document, shown with its reason, never applied.
    Rejected {
        reason: String,
    },
    /// A closing rating that a concurrent send-back overtook: it counts when the task is done
    /// anew.
    Held {
        reason: String,
    },
}

/// A resident's rating (评单).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rating {
    pub score: u8,
    pub comment: String,
    /// User id of whoever recorded it for the resident.
    pub by: String,
    pub event_id: String,
    pub hlc: i64,
}

/// Folds a task's events into its state. Pure and deterministic: the result depends only on
/// the set of events (duplicates by id count once), not on their order.
pub fn fold<'a>(events: impl IntoIterator<Item = &'a TaskEvent>) -> TaskView {
    let graph = Graph::new(events);
    let mut forced: BTreeMap<usize, Outcome> = BTreeMap::new();
    loop {
        match run_pass(&graph, &forced, true) {
            PassEnd::Done(state, outcomes) => return build_view(&graph, state, outcomes),
            PassEnd::Retro(list) => {
                let before = forced.len();
                for (i, outcome) in list {
                    forced.entry(i).or_insert(outcome);
                }
                if forced.len() == before {
                    // Cannot happen (candidates are never forced already); stay total anyway.
                    return match run_pass(&graph, &forced, false) {
                        PassEnd::Done(state, outcomes) => build_view(&graph, state, outcomes),
                        PassEnd::Retro(_) => build_view(&graph, Box::new(State::new()), Vec::new()),
                    };
                }
            }
        }
    }
}

impl TaskView {
    /// Ordered, still open (not done, closed or cancelled), with a deadline that `now_ms` is
    /// past.
    pub fn is_overdue(&self, now_ms: i64) -> bool {
        self.ordered && self.status.is_open() && self.deadline.is_some_and(|d| now_ms > d)
    }

    /// The events to show as conflicts: rejected and held ones, in fold order.
    pub fn rejected(&self) -> impl Iterator<Item = &FoldedEvent> {
        self.events.iter().filter(|f| f.outcome != Outcome::Applied)
    }

    /// Ids of the events that no other event lists in `prev`, sorted: the `prev` of a new
    /// event.
    pub fn heads(&self) -> Vec<String> {
        let named: BTreeSet<&str> = self
            .events
            .iter()
            .flat_map(|f| f.event.prev.iter().filter(move |p| **p != f.event.id))
            .map(String::as_str)
            .collect();
        let heads: BTreeSet<&str> = self
            .events
            .iter()
            .map(|f| f.event.id.as_str())
            .filter(|id| !named.contains(id))
            .collect();
        heads.into_iter().map(str::to_string).collect()
    }
}

/// Would `action` by `actor` be accepted if recorded now on top of `view`? `Ok(())` or
/// [`Error::Refused`] with the reason the fold would give. Agrees with [`fold`] by
/// construction: it folds the view's events plus the event [`event_for`] would build, with
/// `prev = view.heads()` and a later clock, and looks at that event's outcome.
pub fn check(view: &TaskView, actor: &Actor, action: &TaskAction) -> Result<()> {
    let ids: BTreeSet<&str> = view.events.iter().map(|f| f.event.id.as_str()).collect();
    let mut id = format!("{}-check", actor.device);
    while ids.contains(id.as_str()) {
        id.push('~');
    }
    let hlc = view
        .events
        .iter()
        .map(|f| f.event.hlc)
        .max()
        .unwrap_or(0)
        .saturating_add(1);
    let candidate = event_for(action, id.clone(), view.heads(), actor, hlc);
    let folded = fold(
        view.events
            .iter()
            .map(|f| &f.event)
            .chain(std::iter::once(&candidate)),
    );
    match folded
        .events
        .iter()
        .find(|f| f.event.id == id)
        .map(|f| &f.outcome)
    {
        Some(Outcome::Applied) => Ok(()),
        Some(Outcome::Rejected { reason }) | Some(Outcome::Held { reason }) => {
            Err(Error::Refused(reason.clone()))
        }
        None => Err(Error::Refused(
            "the action could not be evaluated".to_string(),
        )),
    }
}

/// Builds the flat [`TaskEvent`] for an action: kind and payload fields from the action,
/// the rest from the arguments.
pub fn event_for(
    action: &TaskAction,
    id: String,
    prev: Vec<String>,
    actor: &Actor,
    hlc: i64,
) -> TaskEvent {
    let mut e = base_event(id, prev, actor, hlc);
    let kind = match action {
        TaskAction::Assign { assignee } => {
            e.assignee = Some(assignee.clone());
            EventKind::Assign
        }
        TaskAction::Accept => EventKind::Accept,
        TaskAction::Note { text } => {
            e.text = text.clone();
            EventKind::Note
        }
        TaskAction::Supervise { text, new_deadline } => {
            e.text = text.clone();
            e.deadline = *new_deadline;
            EventKind::Supervise
        }
        TaskAction::Complete { result } => {
            e.text = result.clone();
            EventKind::Complete
        }
        TaskAction::Inquire { text, send_back } => {
            e.text = text.clone();
            e.send_back = Some(*send_back);
            EventKind::Inquire
        }
        TaskAction::Rate { score, comment } => {
            e.score = Some(i64::from(*score));
            e.text = comment.clone();
            EventKind::Rate
        }
        TaskAction::ChangeLevel { level } => {
            e.level = Some(level.as_str().to_string());
            EventKind::ChangeLevel
        }
        TaskAction::ChangeDeadline { deadline } => {
            e.deadline = Some(*deadline);
            EventKind::ChangeDeadline
        }
        TaskAction::Escalate { tier, unit } => {
            e.tier = Some(tier.as_str().to_string());
            e.unit = unit.clone();
            EventKind::Escalate
        }
        TaskAction::Cancel { reason } => {
            e.text = reason.clone();
            EventKind::Cancel
        }
    };
    e.kind = kind.as_str().to_string();
    e
}

/// Builds the order (点单) event, the first event of a task (no `prev`).
pub fn order_event(
    level: Level,
    deadline: Option<i64>,
    text: String,
    id: String,
    actor: &Actor,
    hlc: i64,
) -> TaskEvent {
    let mut e = base_event(id, Vec::new(), actor, hlc);
    e.kind = EventKind::Order.as_str().to_string();
    e.level = Some(level.as_str().to_string());
    e.deadline = deadline;
    e.text = text;
    e
}

/// The status a 民情 record shows, from its own (as set on the record) and the folded
/// statuses of the 代办 tasks made from it (点单 from the record). A record with a live task
/// (any not cancelled) is at least 处理中; when every live task is closed (completed and
/// rated well) it is at least 已办结. The record never shows less than its own status, so a
/// 已回访 set by hand stays. A pure function of the documents: every device shows the same,
/// whatever order the tasks arrived in.
pub fn record_status_shown(
    own: RecordStatus,
    tasks: impl IntoIterator<Item = TaskStatus>,
) -> RecordStatus {
    let mut live = false;
    let mut all_closed = true;
    for t in tasks {
        if t == TaskStatus::Cancelled {
            continue;
        }
        live = true;
        all_closed &= t == TaskStatus::Closed;
    }
    let from_tasks = match (live, all_closed) {
        (false, _) => RecordStatus::Pending,
        (true, true) => RecordStatus::Resolved,
        (true, false) => RecordStatus::InProgress,
    };
    own.max(from_tasks)
}

/// When a task reached its milestones, read from the fold's outcomes (HLC stamps of the
/// applied events that caused them), and whether a bad rating reopened it. Pure: what the
/// server's ledgers and the console's board show beside [`TaskView`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Milestones {
    /// The applied order (点单).
    pub ordered_hlc: Option<i64>,
    /// The latest applied completion (办结), if the task is done or closed now.
    pub done_hlc: Option<i64>,
    /// When it closed: the later of its last applied completion and rating, if closed now.
    pub closed_hlc: Option<i64>,
    /// Open again because the resident's latest applied rating of its latest completion was
    /// bad (1–2) and nothing was completed since.
    pub reopened_by_rating: bool,
    /// Ever escalated (an applied escalation).
    pub escalated: bool,
}

/// The [`Milestones`] of a folded task.
pub fn milestones(view: &TaskView) -> Milestones {
    let mut m = Milestones::default();
    let mut last_complete: Option<i64> = None;
    let mut last_rate: Option<i64> = None;
    // Whether the latest of completions and ratings, in fold order, is a bad rating.
    let mut bad_rating_last = false;
    for f in view.events.iter().filter(|f| f.outcome == Outcome::Applied) {
        let e = &f.event;
        match EventKind::parse(&e.kind) {
            Ok(EventKind::Order) => m.ordered_hlc = m.ordered_hlc.or(Some(e.hlc)),
            Ok(EventKind::Complete) => {
                last_complete = Some(e.hlc);
                bad_rating_last = false;
            }
            Ok(EventKind::Rate) => {
                last_rate = Some(e.hlc);
                bad_rating_last = e.score.is_some_and(|s| (1..=2).contains(&s));
            }
            Ok(EventKind::Escalate) => m.escalated = true,
            _ => {}
        }
    }
    match view.status {
        TaskStatus::Done => m.done_hlc = last_complete,
        TaskStatus::Closed => {
            m.done_hlc = last_complete;
            m.closed_hlc = last_complete.max(last_rate);
        }
        _ => {}
    }
    m.reopened_by_rating = view.status.is_open() && bad_rating_last;
    m
}

fn base_event(id: String, prev: Vec<String>, actor: &Actor, hlc: i64) -> TaskEvent {
    TaskEvent {
        id,
        prev,
        author: actor.user.clone(),
        author_name: actor.name.clone(),
        role: actor.role.as_str().to_string(),
        device: actor.device.clone(),
        hlc,
        ..TaskEvent::default()
    }
}

// ---------------------------------------------------------------------------------------------
// The event graph: fold order and causality.

/// Events in fold order, with their parsed kinds and causal ancestor sets.
struct Graph {
    evs: Vec<TaskEvent>,
    kinds: Vec<Option<EventKind>>,
    /// `anc[i]`: bitset over positions of the causal ancestors of event `i`.
    anc: Vec<Vec<u64>>,
}

/// A total order over every field, used only to pick one of two different events that
/// share an id.
#[allow(clippy::type_complexity)]
fn full_key(
    e: &TaskEvent,
) -> (
    (i64, &str, &[String], &str, &str, &str),
    (
        &str,
        &str,
        &Option<String>,
        &Option<String>,
        Option<i64>,
        Option<i64>,
    ),
    (Option<bool>, &Option<String>, &Option<String>),
) {
    (
        (e.hlc, &e.kind, &e.prev, &e.author, &e.author_name, &e.role),
        (
            &e.device,
            &e.text,
            &e.assignee,
            &e.level,
            e.deadline,
            e.score,
        ),
        (e.send_back, &e.tier, &e.unit),
    )
}

impl Graph {
    fn new<'a>(events: impl IntoIterator<Item = &'a TaskEvent>) -> Graph {
        let mut by_id: BTreeMap<&str, &TaskEvent> = BTreeMap::new();
        for e in events {
            match by_id.entry(e.id.as_str()) {
                Entry::Vacant(v) => {
                    v.insert(e);
                }
                Entry::Occupied(mut o) => {
                    if full_key(e) < full_key(o.get()) {
                        o.insert(e);
                    }
                }
            }
        }
        let mut uniq: Vec<&TaskEvent> = by_id.into_values().collect();
        uniq.sort_by(|a, b| (a.hlc, &a.id).cmp(&(b.hlc, &b.id)));
        let n = uniq.len();
        let rank: HashMap<&str, usize> = uniq
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id.as_str(), i))
            .collect();

        let mut parents: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, e) in uniq.iter().enumerate() {
            let mut ps: Vec<usize> = e
                .prev
                .iter()
                .filter_map(|p| rank.get(p.as_str()).copied())
                .filter(|&p| p != i)
                .collect();
            ps.sort_unstable();
            ps.dedup();
            for &p in &ps {
                children[p].push(i);
            }
            parents[i] = ps;
        }

        // Kahn's algorithm, smallest (hlc, id) = smallest rank first.
        let mut waiting: Vec<usize> = parents.iter().map(Vec::len).collect();
        let mut ready: BTreeSet<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
        let mut taken = vec![false; n];
        let mut order: Vec<usize> = Vec::with_capacity(n);
        while order.len() < n {
            let next = match ready.pop_first() {
                Some(i) => i,
                // A prev cycle: break it at the smallest waiting event.
                None => match (0..n).find(|&i| !taken[i]) {
                    Some(i) => i,
                    None => break,
                },
            };
            taken[next] = true;
            order.push(next);
            for &c in &children[next] {
                if !taken[c] {
                    waiting[c] = waiting[c].saturating_sub(1);
                    if waiting[c] == 0 {
                        ready.insert(c);
                    }
                }
            }
        }

        let mut pos = vec![0usize; n];
        for (p, &r) in order.iter().enumerate() {
            pos[r] = p;
        }
        let words = n.div_ceil(64);
        let mut anc: Vec<Vec<u64>> = Vec::with_capacity(n);
        for &r in &order {
            let p = pos[r];
            let mut set = vec![0u64; words];
            for &q in &parents[r] {
                let qp = pos[q];
                if qp < p {
                    for (w, x) in set.iter_mut().zip(&anc[qp]) {
                        *w |= *x;
                    }
                    set[qp / 64] |= 1 << (qp % 64);
                }
            }
            anc.push(set);
        }
        let evs: Vec<TaskEvent> = order.iter().map(|&r| uniq[r].clone()).collect();
        let kinds = evs.iter().map(|e| EventKind::parse(&e.kind).ok()).collect();
        Graph { evs, kinds, anc }
    }

    fn is_ancestor(&self, a: usize, of: usize) -> bool {
        self.anc[of]
            .get(a / 64)
            .is_some_and(|w| w & (1 << (a % 64)) != 0)
    }

    /// Neither is a causal ancestor of the other.
    fn concurrent(&self, a: usize, b: usize) -> bool {
        a != b && !self.is_ancestor(a, b) && !self.is_ancestor(b, a)
    }
}

// ---------------------------------------------------------------------------------------------
// One pass of the fold.

struct Completion {
    /// Position of the applied complete event.
    event: usize,
    /// Position of the rating counted (or held) for this completion.
    rating: Option<usize>,
    /// Position of the send-back inquiry that reopened this completion.
    sent_back: Option<usize>,
}

struct State {
    status: TaskStatus,
    ordered: bool,
    level: Option<Level>,
    tier: Tier,
    linked_unit: Option<String>,
    assignee: Option<String>,
    deadline: Option<i64>,
    ordered_by: Option<String>,
    last_rating: Option<Rating>,
    order: Option<usize>,
    accepted: Option<usize>,
    cancelled: Option<usize>,
    completion: Option<Completion>,
    /// Closing ratings held by a send-back, waiting for the next completion.
    held: Vec<usize>,
}

impl State {
    fn new() -> State {
        State {
            status: TaskStatus::Ordered,
            ordered: false,
            level: None,
            tier: Tier::Grid,
            linked_unit: None,
            assignee: None,
            deadline: None,
            ordered_by: None,
            last_rating: None,
            order: None,
            accepted: None,
            cancelled: None,
            completion: None,
            held: Vec::new(),
        }
    }
}

enum PassEnd {
    Done(Box<State>, Vec<Outcome>),
    /// Earlier applied events that a later concurrent event beats: force these outcomes and
    /// fold again.
    Retro(Vec<(usize, Outcome)>),
}

enum Step {
    Out(Outcome),
    Retro(Vec<(usize, Outcome)>),
}

fn run_pass(graph: &Graph, forced: &BTreeMap<usize, Outcome>, retro: bool) -> PassEnd {
    let mut pass = Pass {
        g: graph,
        forced,
        retro,
        st: State::new(),
        outcomes: Vec::with_capacity(graph.evs.len()),
        applied: Vec::new(),
    };
    for i in 0..graph.evs.len() {
        let outcome = match forced.get(&i) {
            Some(o) => {
                if matches!(o, Outcome::Held { .. }) {
                    pass.hold(i);
                }
                o.clone()
            }
            None => match pass.step(i) {
                Step::Out(o) => o,
                Step::Retro(list) => return PassEnd::Retro(list),
            },
        };
        if outcome == Outcome::Applied {
            pass.applied.push(i);
        }
        pass.outcomes.push(outcome);
    }
    PassEnd::Done(Box::new(pass.st), pass.outcomes)
}

fn build_view(graph: &Graph, st: Box<State>, outcomes: Vec<Outcome>) -> TaskView {
    TaskView {
        status: st.status,
        ordered: st.ordered,
        level: st.level,
        tier: st.tier,
        linked_unit: st.linked_unit,
        assignee: st.assignee,
        deadline: st.deadline,
        ordered_by: st.ordered_by,
        events: graph
            .evs
            .iter()
            .zip(outcomes)
            .map(|(e, outcome)| FoldedEvent {
                event: e.clone(),
                outcome,
            })
            .collect(),
        last_rating: st.last_rating,
        fold_version: FOLD_VERSION,
    }
}

fn rejected(reason: impl Into<String>) -> Outcome {
    Outcome::Rejected {
        reason: reason.into(),
    }
}

/// `u-li (李四)`, or just the id when no name was recorded.
fn who(e: &TaskEvent) -> String {
    if e.author_name.trim().is_empty() {
        e.author.clone()
    } else {
        format!("{} ({})", e.author, e.author_name)
    }
}

fn verb(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Order => "order (点单)",
        EventKind::Assign => "assign (派单)",
        EventKind::Accept => "accept (接单)",
        EventKind::Note => "add a note",
        EventKind::Supervise => "supervise (督单)",
        EventKind::Complete => "complete (办结)",
        EventKind::Inquire => "inquire (问单)",
        EventKind::Rate => "rate (评单)",
        EventKind::ChangeLevel => "change the level",
        EventKind::ChangeDeadline => "change the deadline",
        EventKind::Escalate => "escalate",
        EventKind::Cancel => "cancel",
    }
}

fn rating_of(e: &TaskEvent) -> Option<Rating> {
    let score = u8::try_from(e.score?)
        .ok()
        .filter(|s| (1..=5).contains(s))?;
    Some(Rating {
        score,
        comment: e.text.clone(),
        by: e.author.clone(),
        event_id: e.id.clone(),
        hlc: e.hlc,
    })
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

const OPEN: &[TaskStatus] = &[
    TaskStatus::Ordered,
    TaskStatus::Assigned,
    TaskStatus::InProgress,
];
const STAFF: &[Role] = &[Role::CommunityStaff, Role::Secretary];

struct Pass<'g> {
    g: &'g Graph,
    forced: &'g BTreeMap<usize, Outcome>,
    retro: bool,
    st: State,
    outcomes: Vec<Outcome>,
    /// Positions of the events applied so far in this pass, in fold order.
    applied: Vec<usize>,
}

impl Pass<'_> {
    fn ev(&self, i: usize) -> &TaskEvent {
        &self.g.evs[i]
    }

    fn who_at(&self, i: Option<usize>) -> String {
        i.map(|i| who(self.ev(i)))
            .unwrap_or_else(|| "someone".to_string())
    }

    fn state_refusal(&self, kind: EventKind) -> Outcome {
        let s = self.st.status;
        rejected(format!(
            "cannot {}: the task is {} ({})",
            verb(kind),
            s.as_str(),
            s.label()
        ))
    }

    /// Applied events concurrent with `i` of the given kind, in fold order.
    fn concurrent_applied(
        &self,
        i: usize,
        kind: EventKind,
    ) -> impl DoubleEndedIterator<Item = usize> + '_ {
        self.applied
            .iter()
            .copied()
            .filter(move |&a| self.g.kinds[a] == Some(kind) && self.g.concurrent(a, i))
    }

    /// Whether the assignee is the linked unit, for which community staff act.
    fn acts_for_unit(&self, role: Role) -> bool {
        STAFF.contains(&role)
            && self.st.assignee.is_some()
            && self.st.assignee == self.st.linked_unit
    }

    /// Records a closing rating as held until the next completion.
    fn hold(&mut self, i: usize) {
        self.st.held.push(i);
        if let Some(r) = rating_of(&self.g.evs[i]) {
            self.st.last_rating = Some(r);
        }
        if let Some(c) = self.st.completion.as_mut()
            && c.rating.is_none()
        {
            c.rating = Some(i);
        }
    }

    fn step(&mut self, i: usize) -> Step {
        let e = self.ev(i);
        let Some(kind) = self.g.kinds[i] else {
            return Step::Out(rejected(format!("unknown event kind {:?}", e.kind)));
        };
        let Ok(role) = Role::parse(&e.role) else {
            return Step::Out(rejected(format!("unknown role {:?}", e.role)));
        };
        if kind != EventKind::Order && !self.st.ordered {
            return Step::Out(rejected(
                "the task has no valid order (点单) before this event",
            ));
        }
        if role == Role::Admin && kind != EventKind::Note {
            return Step::Out(rejected(format!("{role} may only add notes")));
        }
        if let Some(reason) = self.lost_to_concurrent(i, kind) {
            return Step::Out(rejected(reason));
        }
        if self.retro {
            let candidates = self.retro_candidates(i, kind);
            if !candidates.is_empty() && self.trial_applies(i, &candidates) {
                return Step::Retro(candidates);
            }
        }
        Step::Out(self.apply(i, kind, role))
    }

    /// Rules where the event being applied loses to an earlier applied concurrent one.
    fn lost_to_concurrent(&self, i: usize, kind: EventKind) -> Option<String> {
        match kind {
            EventKind::Cancel => {
                if let Some(c) = self.concurrent_applied(i, EventKind::Complete).next_back() {
                    return Some(format!("already done by {}", who(self.ev(c))));
                }
                self.concurrent_applied(i, EventKind::Accept)
                    .next_back()
                    .map(|a| format!("already accepted by {}", who(self.ev(a))))
            }
            EventKind::Accept | EventKind::Assign => self
                .concurrent_applied(i, EventKind::Accept)
                .next()
                .map(|a| format!("already accepted by {}", who(self.ev(a)))),
            EventKind::Escalate => self
                .concurrent_applied(i, EventKind::Complete)
                .next()
                .map(|c| format!("already done by {}", who(self.ev(c)))),
            _ => None,
        }
    }

    /// Earlier events that event `i` beats (rules 1, 3, 4, 8), with their new outcome. All
    /// earlier concurrent losers are named, not only the applied one: once an applied cancel
    /// is set aside, a second concurrent cancel must not take its place. Empty unless at least
    /// one of them is applied now (so every retroactive pass forces something new).
    fn retro_candidates(&self, i: usize, kind: EventKind) -> Vec<(usize, Outcome)> {
        let e = self.ev(i);
        let mut out = Vec::new();
        let mut any_applied = false;
        for a in 0..i {
            if self.forced.contains_key(&a) || !self.g.concurrent(a, i) {
                continue;
            }
            let loser = self.ev(a);
            let applied = self.outcomes.get(a) == Some(&Outcome::Applied);
            let outcome = match (kind, self.g.kinds[a]) {
                (EventKind::Accept, Some(EventKind::Cancel)) => {
                    Some(rejected(format!("already accepted by {}", who(e))))
                }
                (EventKind::Complete, Some(EventKind::Cancel | EventKind::Escalate)) => {
                    Some(rejected(format!("already done by {}", who(e))))
                }
                (EventKind::Accept, Some(EventKind::Assign))
                    if non_empty(&loser.assignee).as_deref() != Some(e.author.as_str()) =>
                {
                    Some(rejected(format!("already accepted by {}", who(e))))
                }
                (EventKind::Inquire, Some(EventKind::Rate))
                    if applied
                        && e.send_back == Some(true)
                        && self.st.status == TaskStatus::Closed
                        && self.st.completion.as_ref().and_then(|c| c.rating) == Some(a) =>
                {
                    Some(Outcome::Held {
                        reason: format!(
                            "sent back by {}; counts when the task is done anew",
                            who(e)
                        ),
                    })
                }
                _ => None,
            };
            if let Some(o) = outcome {
                any_applied |= applied;
                out.push((a, o));
            }
        }
        if !any_applied {
            out.clear();
        }
        out
    }

    /// Would event `i` be applied if the candidates had their forced outcomes?
    fn trial_applies(&self, i: usize, candidates: &[(usize, Outcome)]) -> bool {
        let mut forced = self.forced.clone();
        for (a, o) in candidates {
            forced.insert(*a, o.clone());
        }
        match run_pass(self.g, &forced, false) {
            PassEnd::Done(_, outcomes) => outcomes.get(i) == Some(&Outcome::Applied),
            PassEnd::Retro(_) => false,
        }
    }

    /// The role and from-state rules; updates the state when the event applies.
    fn apply(&mut self, i: usize, kind: EventKind, role: Role) -> Outcome {
        let e = &self.g.evs[i];
        let status = self.st.status;
        let role_refusal = || rejected(format!("{role} may not {}", verb(kind)));
        match kind {
            EventKind::Order => {
                if ![Role::BuildingLeader, Role::GridMember, Role::CommunityStaff].contains(&role) {
                    return role_refusal();
                }
                if self.st.ordered {
                    return rejected(format!("already ordered by {}", self.who_at(self.st.order)));
                }
                let Some(level) = e.level.as_deref() else {
                    return rejected("an order needs a level");
                };
                let Ok(level) = Level::parse(level) else {
                    return rejected(format!("unknown level {level:?}"));
                };
                self.st.ordered = true;
                self.st.status = TaskStatus::Ordered;
                self.st.level = Some(level);
                self.st.deadline = e.deadline;
                self.st.ordered_by = Some(e.author.clone());
                self.st.order = Some(i);
            }
            EventKind::Assign => {
                if ![Role::GridMember, Role::CommunityStaff, Role::Secretary].contains(&role) {
                    return role_refusal();
                }
                if status == TaskStatus::InProgress {
                    return rejected(format!(
                        "already accepted by {}",
                        self.who_at(self.st.accepted)
                    ));
                }
                if !matches!(status, TaskStatus::Ordered | TaskStatus::Assigned) {
                    return self.state_refusal(kind);
                }
                let Some(assignee) = non_empty(&e.assignee) else {
                    return rejected("an assignment needs an assignee");
                };
                self.st.assignee = Some(assignee);
                self.st.status = TaskStatus::Assigned;
                self.st.accepted = None;
            }
            EventKind::Accept => {
                if status == TaskStatus::InProgress {
                    return rejected(format!(
                        "already accepted by {}",
                        self.who_at(self.st.accepted)
                    ));
                }
                if !matches!(status, TaskStatus::Ordered | TaskStatus::Assigned) {
                    return self.state_refusal(kind);
                }
                let for_unit = self.acts_for_unit(role);
                if let Some(a) = &self.st.assignee
                    && *a != e.author
                    && !for_unit
                {
                    return rejected(format!("assigned to {a}, not to {}", who(e)));
                }
                if !for_unit {
                    self.st.assignee = Some(e.author.clone());
                }
                self.st.status = TaskStatus::InProgress;
                self.st.accepted = Some(i);
            }
            EventKind::Note => {
                if status == TaskStatus::Cancelled {
                    return self.state_refusal(kind);
                }
            }
            EventKind::Supervise => {
                if !STAFF.contains(&role) {
                    return role_refusal();
                }
                if !matches!(
                    status,
                    TaskStatus::Ordered
                        | TaskStatus::Assigned
                        | TaskStatus::InProgress
                        | TaskStatus::Done
                ) {
                    return self.state_refusal(kind);
                }
                if let Some(d) = e.deadline {
                    self.st.deadline = Some(d);
                }
            }
            EventKind::Complete => {
                if status == TaskStatus::Done {
                    let by = self.st.completion.as_ref().map(|c| c.event);
                    return rejected(format!("already done by {}", self.who_at(by)));
                }
                if status != TaskStatus::InProgress {
                    return self.state_refusal(kind);
                }
                if self.st.assignee.as_deref() != Some(e.author.as_str())
                    && !self.acts_for_unit(role)
                {
                    return match &self.st.assignee {
                        Some(a) => rejected(format!(
                            "only the assignee {a} may complete it, not {}",
                            who(e)
                        )),
                        None => rejected("nobody has the task: it must be accepted first"),
                    };
                }
                self.st.status = TaskStatus::Done;
                self.st.completion = Some(Completion {
                    event: i,
                    rating: None,
                    sent_back: None,
                });
                self.reapply_held(i);
            }
            EventKind::Inquire => {
                if role != Role::Secretary {
                    return role_refusal();
                }
                if e.send_back == Some(true) {
                    match status {
                        TaskStatus::Done | TaskStatus::Closed => {
                            self.st.status = TaskStatus::InProgress;
                            if let Some(c) = self.st.completion.as_mut() {
                                c.sent_back = Some(i);
                            }
                        }
                        _ if self.concurrent_bad_rating(i) => {
                            // Rule 4, decision: a concurrent bad rating already reopened it.
                            if let Some(c) = self.st.completion.as_mut() {
                                c.sent_back = Some(i);
                            }
                        }
                        _ => {
                            return rejected(format!(
                                "nothing to send back: the task is {} ({})",
                                status.as_str(),
                                status.label()
                            ));
                        }
                    }
                }
            }
            EventKind::Rate => return self.apply_rating(i),
            EventKind::ChangeLevel => {
                if ![Role::GridMember, Role::CommunityStaff].contains(&role) {
                    return role_refusal();
                }
                if !OPEN.contains(&status) {
                    return self.state_refusal(kind);
                }
                let Some(level) = e.level.as_deref() else {
                    return rejected("a level change needs a level");
                };
                let Ok(level) = Level::parse(level) else {
                    return rejected(format!("unknown level {level:?}"));
                };
                self.st.level = Some(level);
            }
            EventKind::ChangeDeadline => {
                if ![Role::GridMember, Role::CommunityStaff, Role::Secretary].contains(&role) {
                    return role_refusal();
                }
                if !OPEN.contains(&status) {
                    return self.state_refusal(kind);
                }
                let Some(d) = e.deadline else {
                    return rejected("a deadline change needs a deadline");
                };
                self.st.deadline = Some(d);
            }
            EventKind::Escalate => {
                if ![Role::GridMember, Role::CommunityStaff, Role::Secretary].contains(&role) {
                    return role_refusal();
                }
                if !OPEN.contains(&status) {
                    return self.state_refusal(kind);
                }
                let Some(tier) = e.tier.as_deref() else {
                    return rejected("an escalation needs a tier");
                };
                let Ok(tier) = Tier::parse(tier) else {
                    return rejected(format!("unknown tier {tier:?}"));
                };
                if tier <= self.st.tier {
                    return rejected(format!(
                        "cannot escalate to {}: the task is already at {}",
                        tier.as_str(),
                        self.st.tier.as_str()
                    ));
                }
                match tier {
                    Tier::Community => {
                        self.st.assignee = None;
                        self.st.status = TaskStatus::Ordered;
                    }
                    Tier::LinkedUnit => {
                        if role == Role::GridMember {
                            return rejected(format!("{role} may only escalate to the community"));
                        }
                        let Some(unit) = non_empty(&e.unit) else {
                            return rejected(
                                "an escalation to a linked unit needs the unit's name",
                            );
                        };
                        self.st.linked_unit = Some(unit.clone());
                        self.st.assignee = Some(unit);
                        self.st.status = TaskStatus::Assigned;
                    }
                    Tier::Grid => return rejected("cannot escalate to the grid"),
                }
                self.st.tier = tier;
                self.st.accepted = None;
            }
            EventKind::Cancel => {
                let is_orderer = self.st.ordered_by.as_deref() == Some(e.author.as_str());
                let allowed: &[TaskStatus] = if STAFF.contains(&role) {
                    OPEN
                } else if is_orderer {
                    &[TaskStatus::Ordered, TaskStatus::Assigned]
                } else {
                    return rejected(format!(
                        "only the one who ordered it, community staff or the secretary may cancel, not {}",
                        who(e)
                    ));
                };
                if !allowed.contains(&status) {
                    return match status {
                        TaskStatus::InProgress => rejected(format!(
                            "already accepted by {}",
                            self.who_at(self.st.accepted)
                        )),
                        TaskStatus::Done | TaskStatus::Closed => {
                            let by = self.st.completion.as_ref().map(|c| c.event);
                            rejected(format!("already done by {}", self.who_at(by)))
                        }
                        TaskStatus::Cancelled => rejected(format!(
                            "already cancelled by {}",
                            self.who_at(self.st.cancelled)
                        )),
                        _ => self.state_refusal(kind),
                    };
                }
                self.st.status = TaskStatus::Cancelled;
                self.st.cancelled = Some(i);
            }
        }
        Outcome::Applied
    }

    /// Whether the current completion's rating is a bad one (1–2) concurrent with event `i`.
    fn concurrent_bad_rating(&self, i: usize) -> bool {
        self.st.status == TaskStatus::InProgress
            && self.st.completion.as_ref().is_some_and(|c| {
                c.sent_back.is_none()
                    && c.rating.is_some_and(|r| {
                        self.g.concurrent(r, i)
                            && rating_of(self.ev(r)).is_some_and(|x| x.score <= 2)
                    })
            })
    }

    fn apply_rating(&mut self, i: usize) -> Outcome {
        let e = &self.g.evs[i];
        let Some(rating) = rating_of(e) else {
            return rejected(match e.score {
                Some(s) => format!("a rating must be 1–5, not {s}"),
                None => "a rating needs a score".to_string(),
            });
        };
        let status = self.st.status;
        let (rated, sent_back) = match &self.st.completion {
            Some(c) => (c.rating, c.sent_back),
            None => (None, None),
        };
        let already = |r: usize| rejected(format!("already rated by {}", who(self.ev(r))));
        match (status, rated) {
            (TaskStatus::Done, Some(r)) | (TaskStatus::Closed, Some(r)) => return already(r),
            (TaskStatus::Done, None) => {}
            // Rule 5 after a bad rating reopened the task (or after it moved on).
            (_, Some(r)) if self.g.concurrent(r, i) => return already(r),
            // Rule 4: the completion this rating is for was sent back concurrently.
            (s, None)
                if OPEN.contains(&s) && sent_back.is_some_and(|b| self.g.concurrent(b, i)) =>
            {
                if rating.score >= 3 {
                    // Rule 4: the send-back wins; the rating counts for the next completion.
                    let by = sent_back.map(|s| who(self.ev(s))).unwrap_or_default();
                    self.hold(i);
                    return Outcome::Held {
                        reason: format!("sent back by {by}; counts when the task is done anew"),
                    };
                }
                if status == TaskStatus::InProgress {
                    // Decision: a concurrent bad rating agrees with the send-back; both count.
                    if let Some(c) = self.st.completion.as_mut() {
                        c.rating = Some(i);
                    }
                    self.st.last_rating = Some(rating);
                    return Outcome::Applied;
                }
                return rejected(format!(
                    "cannot rate: the task is {} ({}); only a done task can be rated",
                    status.as_str(),
                    status.label()
                ));
            }
            _ => {
                return rejected(format!(
                    "cannot rate: the task is {} ({}); only a done task can be rated",
                    status.as_str(),
                    status.label()
                ));
            }
        }
        if let Some(c) = self.st.completion.as_mut() {
            c.rating = Some(i);
        }
        self.st.status = if rating.score >= 3 {
            TaskStatus::Closed
        } else {
            TaskStatus::InProgress
        };
        self.st.last_rating = Some(rating);
        Outcome::Applied
    }

    /// After a completion: count the held rating (rule 4) for it, right away.
    fn reapply_held(&mut self, completion: usize) {
        if self.st.held.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.st.held);
        let first = held[0];
        for &h in &held[1..] {
            if let Some(o) = self.outcomes.get_mut(h) {
                *o = rejected(format!("already rated by {}", who(&self.g.evs[first])));
            }
        }
        let Some(rating) = rating_of(&self.g.evs[first]) else {
            return;
        };
        if let Some(o) = self.outcomes.get_mut(first) {
            *o = Outcome::Applied;
        }
        if let Some(c) = self.st.completion.as_mut()
            && c.event == completion
        {
            c.rating = Some(first);
        }
        self.st.status = if rating.score >= 3 {
            TaskStatus::Closed
        } else {
            TaskStatus::InProgress
        };
        self.st.last_rating = Some(rating);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn actor(user: &str, name: &str, role: Role) -> Actor {
        Actor {
            user: user.into(),
            name: name.into(),
            role,
            device: format!("d-{user}"),
        }
    }
    /// 楼门长.
    fn lou() -> Actor {
        actor("u-lou", "张大妈", Role::BuildingLeader)
    }
    /// 网格员.
    fn wang() -> Actor {
        actor("u-wang", "王伟", Role::GridMember)
    }
    /// 网格员 (the usual handler).
    fn li() -> Actor {
        actor("u-li", "李四", Role::GridMember)
    }
    /// 社区工作者.
    fn zhao() -> Actor {
        actor("u-zhao", "赵敏", Role::CommunityStaff)
    }
    /// 社区书记.
    fn sun() -> Actor {
        actor("u-sun", "孙书记", Role::Secretary)
    }
    fn admin() -> Actor {
        actor("u-admin", "管理员甲", Role::Admin)
    }

    fn assign(to: &str) -> TaskAction {
        TaskAction::Assign {
            assignee: to.into(),
        }
    }
    fn note(t: &str) -> TaskAction {
        TaskAction::Note { text: t.into() }
    }
    fn complete() -> TaskAction {
        TaskAction::Complete {
            result: "修好了".into(),
        }
    }
    fn rate(score: u8) -> TaskAction {
        TaskAction::Rate {
            score,
            comment: format!("{score}分"),
        }
    }
    fn send_back() -> TaskAction {
        TaskAction::Inquire {
            text: "居民说还漏水".into(),
            send_back: true,
        }
    }
    fn cancel() -> TaskAction {
        TaskAction::Cancel {
            reason: "居民自己解决了".into(),
        }
    }
    fn escalate(tier: Tier, unit: Option<&str>) -> TaskAction {
        TaskAction::Escalate {
            tier,
            unit: unit.map(str::to_string),
        }
    }

    /// A task's event log under construction.
    #[derive(Clone)]
    struct Log {
        evs: Vec<TaskEvent>,
    }

    impl Log {
        fn empty() -> Log {
            Log { evs: Vec::new() }
        }
        /// Ordered by the 楼门长 at hlc 100, level 上门办, deadline 10_000.
        fn ordered() -> Log {
            let mut l = Log::empty();
            l.evs.push(order_event(
                Level::Doorstep,
                Some(10_000),
                "楼道灯坏了".into(),
                "o".into(),
                &lou(),
                100,
            ));
            l
        }
        fn assigned() -> Log {
            Log::ordered().next("s", &wang(), assign("u-li"))
        }
        fn in_progress() -> Log {
            Log::assigned().next("acc", &li(), TaskAction::Accept)
        }
        fn done() -> Log {
            Log::in_progress().next("c", &li(), complete())
        }
        fn closed() -> Log {
            Log::done().next("r", &lou(), rate(5))
        }
        fn cancelled() -> Log {
            Log::assigned().next("x", &zhao(), cancel())
        }
        fn max_hlc(&self) -> i64 {
            self.evs.iter().map(|e| e.hlc).max().unwrap_or(0)
        }
        /// Recorded after everything so far (prev = heads, later clock).
        fn next(mut self, id: &str, a: &Actor, action: TaskAction) -> Log {
            let prev = self.view().heads();
            let hlc = self.max_hlc() + 10;
            self.evs.push(event_for(&action, id.into(), prev, a, hlc));
            self
        }
        /// Recorded with explicit prev and clock (for forks).
        fn at(mut self, id: &str, prev: &[&str], hlc: i64, a: &Actor, action: TaskAction) -> Log {
            let prev = prev.iter().map(|p| p.to_string()).collect();
            self.evs.push(event_for(&action, id.into(), prev, a, hlc));
            self
        }
        fn raw(mut self, e: TaskEvent) -> Log {
            self.evs.push(e);
            self
        }
        fn view(&self) -> TaskView {
            fold(&self.evs)
        }
    }

    fn outcome(v: &TaskView, id: &str) -> Outcome {
        v.events
            .iter()
            .find(|f| f.event.id == id)
            .map(|f| f.outcome.clone())
            .expect("event present")
    }

    fn assert_applied(v: &TaskView, id: &str) {
        assert_eq!(outcome(v, id), Outcome::Applied, "{id} in {v:#?}");
    }

    fn assert_rejected(v: &TaskView, id: &str, contains: &str) {
        match outcome(v, id) {
            Outcome::Rejected { reason } => assert!(
                reason.contains(contains),
                "{id}: {reason:?} lacks {contains:?}"
            ),
            other => panic!("{id}: expected rejected ({contains}), got {other:?}"),
        }
    }

    fn assert_held(v: &TaskView, id: &str, contains: &str) {
        match outcome(v, id) {
            Outcome::Held { reason } => assert!(
                reason.contains(contains),
                "{id}: {reason:?} lacks {contains:?}"
            ),
            other => panic!("{id}: expected held, got {other:?}"),
        }
    }

    fn refused(v: &TaskView, a: &Actor, action: TaskAction, contains: &str) {
        match check(v, a, &action) {
            Err(Error::Refused(reason)) => {
                assert!(reason.contains(contains), "{reason:?} lacks {contains:?}")
            }
            other => panic!(
                "{action:?} by {}: expected refusal ({contains}), got {other:?}",
                a.user
            ),
        }
    }

    #[test]
    fn milestones_follow_the_applied_events() {
        let m = milestones(&Log::ordered().view());
        assert_eq!(m.ordered_hlc, Some(100));
        assert_eq!((m.done_hlc, m.closed_hlc), (None, None));
        assert!(!m.reopened_by_rating && !m.escalated);

        let done = Log::done();
        let c = done.max_hlc();
        let m = milestones(&done.view());
        assert_eq!((m.done_hlc, m.closed_hlc), (Some(c), None));

        let closed = Log::closed();
        let r = closed.max_hlc();
        let m = milestones(&closed.view());
        assert_eq!((m.done_hlc, m.closed_hlc), (Some(c), Some(r)));
        assert!(!m.reopened_by_rating);

        // A bad rating reopens it; a new completion ends that.
        let reopened = Log::done().next("r1", &lou(), rate(1));
        let m = milestones(&reopened.view());
        assert_eq!(reopened.view().status, TaskStatus::InProgress);
        assert!(m.reopened_by_rating);
        assert_eq!((m.done_hlc, m.closed_hlc), (None, None));
        let again = reopened.next("c2", &li(), complete());
        assert!(!milestones(&again.view()).reopened_by_rating);
        let c2 = again.max_hlc();
        let closed2 = again.next("r2", &lou(), rate(4));
        let m = milestones(&closed2.view());
        assert_eq!(m.done_hlc, Some(c2));
        assert_eq!(m.closed_hlc, Some(closed2.max_hlc()));

        // A rejected escalation does not count; an applied one does.
        let esc = Log::assigned().next("e", &wang(), escalate(Tier::Community, None));
        assert!(milestones(&esc.view()).escalated);
        let bad = Log::closed().next("e", &wang(), escalate(Tier::Community, None));
        assert_rejected(&bad.view(), "e", "");
        assert!(!milestones(&bad.view()).escalated);
    }

    // ----- happy path ------------------------------------------------------------------------

    #[test]
    fn empty_task_is_not_ordered() {
        let v = fold(&[]);
        assert!(!v.ordered);
        assert_eq!(v.status, TaskStatus::Ordered);
        assert_eq!(v.tier, Tier::Grid);
        assert_eq!(v.fold_version, FOLD_VERSION);
        assert!(v.heads().is_empty());
        refused(&v, &li(), TaskAction::Accept, "no valid order");
    }

    #[test]
    fn happy_path_through_the_five_orders() {
        let steps: Vec<(&str, Actor, TaskAction, TaskStatus)> = vec![
            ("s", wang(), assign("u-li"), TaskStatus::Assigned),
            ("acc", li(), TaskAction::Accept, TaskStatus::InProgress),
            ("n", li(), note("买了灯泡"), TaskStatus::InProgress),
            (
                "sup",
                sun(),
                TaskAction::Supervise {
                    text: "周五前办好".into(),
                    new_deadline: Some(20_000),
                },
                TaskStatus::InProgress,
            ),
            ("c", li(), complete(), TaskStatus::Done),
            (
                "q",
                sun(),
                TaskAction::Inquire {
                    text: "满意吗".into(),
                    send_back: false,
                },
                TaskStatus::Done,
            ),
            ("r", lou(), rate(5), TaskStatus::Closed),
        ];
        let mut log = Log::ordered();
        let v = log.view();
        assert!(v.ordered);
        assert_eq!(v.status, TaskStatus::Ordered);
        assert_eq!(v.level, Some(Level::Doorstep));
        assert_eq!(v.deadline, Some(10_000));
        assert_eq!(v.ordered_by.as_deref(), Some("u-lou"));
        for (id, a, action, status) in steps {
            check(&log.view(), &a, &action).unwrap();
            log = log.next(id, &a, action);
            let v = log.view();
            assert_applied(&v, id);
            assert_eq!(v.status, status, "after {id}");
        }
        let v = log.view();
        assert_eq!(v.assignee.as_deref(), Some("u-li"));
        assert_eq!(v.deadline, Some(20_000));
        assert_eq!(v.rejected().count(), 0);
        let r = v.last_rating.clone().unwrap();
        assert_eq!(
            (
                r.score,
                r.by.as_str(),
                r.event_id.as_str(),
                r.comment.as_str()
            ),
            (5, "u-lou", "r", "5分")
        );
        assert_eq!(v.events.len(), 8);
        assert_eq!(v.heads(), vec!["r".to_string()]);
    }

    #[test]
    fn event_for_fills_the_flat_event() {
        let e = event_for(
            &escalate(Tier::LinkedUnit, Some("物业")),
            "e1".into(),
            vec!["p".into()],
            &zhao(),
            42,
        );
        assert_eq!(e.kind, "escalate");
        assert_eq!(
            (e.author.as_str(), e.author_name.as_str(), e.role.as_str()),
            ("u-zhao", "赵敏", "社区工作者")
        );
        assert_eq!(
            (e.device.as_str(), e.hlc, e.prev.clone()),
            ("d-u-zhao", 42, vec!["p".to_string()])
        );
        assert_eq!(
            (e.tier.as_deref(), e.unit.as_deref()),
            (Some("linked_unit"), Some("物业"))
        );
        let r = event_for(&rate(4), "r".into(), vec![], &lou(), 1);
        assert_eq!(
            (r.kind.as_str(), r.score, r.text.as_str()),
            ("rate", Some(4), "4分")
        );
        let q = event_for(&send_back(), "q".into(), vec![], &sun(), 1);
        assert_eq!((q.kind.as_str(), q.send_back), ("inquire", Some(true)));
        let l = event_for(
            &TaskAction::ChangeLevel {
                level: Level::Compound,
            },
            "l".into(),
            vec![],
            &wang(),
            1,
        );
        assert_eq!(l.level.as_deref(), Some("小区办"));
        let o = order_event(Level::PartyMass, None, "t".into(), "o".into(), &wang(), 7);
        assert_eq!(
            (
                o.kind.as_str(),
                o.level.as_deref(),
                o.deadline,
                o.prev.len()
            ),
            ("order", Some("党群办"), None, 0)
        );
    }

    // ----- role and state refusals -------------------------------------------------------------

    #[test]
    fn order_roles() {
        for (a, ok) in [
            (lou(), true),
            (wang(), true),
            (zhao(), true),
            (sun(), false),
            (admin(), false),
        ] {
            let v = Log::empty()
                .raw(order_event(
                    Level::Compound,
                    None,
                    "t".into(),
                    "o".into(),
                    &a,
                    1,
                ))
                .view();
            assert_eq!(v.ordered, ok, "{:?}", a.role);
            if !ok {
                assert!(matches!(outcome(&v, "o"), Outcome::Rejected { .. }));
            }
        }
    }

    #[test]
    fn second_order_rejected() {
        let v = Log::ordered()
            .raw(order_event(
                Level::PartyMass,
                None,
                "again".into(),
                "o2".into(),
                &wang(),
                200,
            ))
            .view();
        assert_rejected(&v, "o2", "already ordered by u-lou (张大妈)");
        assert_eq!(v.level, Some(Level::Doorstep));
    }

    #[test]
    fn events_before_the_order_are_rejected() {
        let v = Log::empty().at("n", &[], 1, &li(), note("x")).view();
        assert_rejected(&v, "n", "no valid order");
        assert!(!v.ordered);
    }

    #[test]
    fn assign_roles() {
        let v = Log::ordered().view();
        refused(&v, &lou(), assign("u-li"), "楼门长 may not assign");
        refused(&v, &admin(), assign("u-li"), "管理员 may only add notes");
        refused(&v, &wang(), assign("  "), "needs an assignee");
        for a in [wang(), zhao(), sun()] {
            check(&v, &a, &assign("u-li")).unwrap();
        }
        refused(
            &Log::in_progress().view(),
            &zhao(),
            assign("u-wang"),
            "already accepted by u-li (李四)",
        );
    }

    #[test]
    fn accept_only_by_assignee_or_anyone_when_unassigned() {
        let v = Log::assigned().view();
        refused(&v, &wang(), TaskAction::Accept, "assigned to u-li");
        check(&v, &li(), &TaskAction::Accept).unwrap();
        let v = Log::ordered().view();
        for a in [lou(), wang(), zhao(), sun()] {
            check(&v, &a, &TaskAction::Accept).unwrap();
        }
        refused(&v, &admin(), TaskAction::Accept, "only add notes");
        refused(
            &Log::in_progress().view(),
            &li(),
            TaskAction::Accept,
            "already accepted by u-li (李四)",
        );
        refused(
            &Log::done().view(),
            &li(),
            TaskAction::Accept,
            "the task is done",
        );
    }

    #[test]
    fn notes_by_anyone_but_not_on_cancelled() {
        for a in [lou(), wang(), zhao(), sun(), admin()] {
            check(&Log::closed().view(), &a, &note("回访")).unwrap();
        }
        refused(
            &Log::cancelled().view(),
            &li(),
            note("x"),
            "cannot add a note: the task is cancelled",
        );
    }

    #[test]
    fn supervise_roles_and_states() {
        let action = || TaskAction::Supervise {
            text: "抓紧".into(),
            new_deadline: None,
        };
        refused(
            &Log::in_progress().view(),
            &li(),
            action(),
            "网格员 may not supervise",
        );
        refused(
            &Log::in_progress().view(),
            &lou(),
            action(),
            "楼门长 may not supervise",
        );
        check(&Log::done().view(), &zhao(), &action()).unwrap();
        refused(
            &Log::closed().view(),
            &sun(),
            action(),
            "the task is closed",
        );
    }

    #[test]
    fn complete_only_by_assignee_from_in_progress() {
        let v = Log::in_progress().view();
        refused(
            &v,
            &wang(),
            complete(),
            "only the assignee u-li may complete it",
        );
        refused(&v, &zhao(), complete(), "only the assignee");
        refused(
            &Log::assigned().view(),
            &li(),
            complete(),
            "the task is assigned",
        );
        refused(
            &Log::done().view(),
            &li(),
            complete(),
            "already done by u-li (李四)",
        );
    }

    #[test]
    fn inquire_only_by_secretary() {
        let v = Log::done().view();
        refused(&v, &zhao(), send_back(), "社区工作者 may not inquire");
        refused(
            &v,
            &wang(),
            TaskAction::Inquire {
                text: "?".into(),
                send_back: false,
            },
            "may not inquire",
        );
        check(
            &Log::cancelled().view(),
            &sun(),
            &TaskAction::Inquire {
                text: "?".into(),
                send_back: false,
            },
        )
        .unwrap();
        refused(
            &Log::in_progress().view(),
            &sun(),
            send_back(),
            "nothing to send back",
        );
        refused(
            &Log::cancelled().view(),
            &sun(),
            send_back(),
            "nothing to send back",
        );
    }

    #[test]
    fn send_back_from_closed_needs_a_new_rating() {
        let log = Log::closed().next("q", &sun(), send_back());
        let v = log.view();
        assert_applied(&v, "q");
        assert_eq!(v.status, TaskStatus::InProgress);
        let v = log.next("c2", &li(), complete()).view();
        assert_eq!(v.status, TaskStatus::Done);
        check(&v, &lou(), &rate(4)).unwrap();
    }

    #[test]
    fn rate_rules() {
        let v = Log::done().view();
        for a in [lou(), wang(), zhao(), sun()] {
            check(&v, &a, &rate(4)).unwrap();
        }
        refused(&v, &admin(), rate(4), "only add notes");
        refused(&v, &lou(), rate(0), "must be 1–5");
        refused(&v, &lou(), rate(6), "must be 1–5");
        refused(
            &Log::in_progress().view(),
            &lou(),
            rate(5),
            "cannot rate: the task is in_progress",
        );
        refused(
            &Log::closed().view(),
            &wang(),
            rate(5),
            "already rated by u-lou (张大妈)",
        );
        let no_score = Log::done().raw(TaskEvent {
            id: "r".into(),
            kind: "rate".into(),
            prev: vec!["c".into()],
            author: "u-lou".into(),
            role: "楼门长".into(),
            hlc: 999,
            ..TaskEvent::default()
        });
        assert_rejected(&no_score.view(), "r", "needs a score");
    }

    #[test]
    fn bad_rating_reopens_and_a_new_completion_can_be_rated() {
        let log = Log::done().next("r1", &lou(), rate(2));
        let v = log.view();
        assert_applied(&v, "r1");
        assert_eq!(v.status, TaskStatus::InProgress);
        assert_eq!(v.assignee.as_deref(), Some("u-li"));
        assert_eq!(v.last_rating.as_ref().map(|r| r.score), Some(2));
        refused(&v, &wang(), rate(5), "cannot rate: the task is in_progress");
        let log = log
            .next("c2", &li(), complete())
            .next("r2", &lou(), rate(4));
        let v = log.view();
        assert_applied(&v, "c2");
        assert_applied(&v, "r2");
        assert_eq!(v.status, TaskStatus::Closed);
        assert_eq!(
            v.last_rating.as_ref().map(|r| r.event_id.as_str()),
            Some("r2")
        );
    }

    #[test]
    fn change_level_and_deadline_roles() {
        let v = Log::in_progress().view();
        let lvl = || TaskAction::ChangeLevel {
            level: Level::PartyMass,
        };
        let dl = || TaskAction::ChangeDeadline { deadline: 5 };
        check(&v, &wang(), &lvl()).unwrap();
        check(&v, &zhao(), &lvl()).unwrap();
        refused(&v, &sun(), lvl(), "社区书记 may not change the level");
        refused(&v, &lou(), lvl(), "楼门长 may not change the level");
        for a in [wang(), zhao(), sun()] {
            check(&v, &a, &dl()).unwrap();
        }
        refused(&v, &lou(), dl(), "楼门长 may not change the deadline");
        refused(&Log::done().view(), &wang(), lvl(), "the task is done");
        refused(&Log::closed().view(), &zhao(), dl(), "the task is closed");
    }

    #[test]
    fn escalation_roles_and_tiers() {
        let v = Log::in_progress().view();
        refused(
            &v,
            &lou(),
            escalate(Tier::Community, None),
            "楼门长 may not escalate",
        );
        refused(
            &v,
            &wang(),
            escalate(Tier::LinkedUnit, Some("物业")),
            "may only escalate to the community",
        );
        refused(
            &v,
            &zhao(),
            escalate(Tier::LinkedUnit, None),
            "needs the unit's name",
        );
        refused(&v, &zhao(), escalate(Tier::Grid, None), "already at grid");
        check(&v, &wang(), &escalate(Tier::Community, None)).unwrap();
        check(&v, &zhao(), &escalate(Tier::LinkedUnit, Some("物业"))).unwrap();
        let up = Log::in_progress().next("e", &wang(), escalate(Tier::Community, None));
        refused(
            &up.view(),
            &zhao(),
            escalate(Tier::Community, None),
            "already at community",
        );
        refused(
            &Log::done().view(),
            &zhao(),
            escalate(Tier::Community, None),
            "the task is done",
        );
    }

    #[test]
    fn escalation_hands_the_task_over() {
        let log = Log::in_progress().next("e1", &wang(), escalate(Tier::Community, None));
        let v = log.view();
        assert_eq!(
            (v.tier, v.status, v.assignee.clone()),
            (Tier::Community, TaskStatus::Ordered, None)
        );
        refused(&v, &li(), complete(), "the task is ordered");
        let log = log.next("e2", &zhao(), escalate(Tier::LinkedUnit, Some(" 物业 ")));
        let v = log.view();
        assert_eq!(v.tier, Tier::LinkedUnit);
        assert_eq!(v.status, TaskStatus::Assigned);
        assert_eq!(v.assignee.as_deref(), Some("物业"));
        assert_eq!(v.linked_unit.as_deref(), Some("物业"));
        refused(&v, &li(), TaskAction::Accept, "assigned to 物业");
        let log = log
            .next("a", &zhao(), TaskAction::Accept)
            .next("c", &sun(), complete());
        let v = log.view();
        assert_applied(&v, "a");
        assert_applied(&v, "c");
        assert_eq!(
            (v.status, v.assignee.as_deref()),
            (TaskStatus::Done, Some("物业"))
        );
    }

    #[test]
    fn cancel_rules() {
        check(&Log::ordered().view(), &lou(), &cancel()).unwrap();
        check(&Log::assigned().view(), &lou(), &cancel()).unwrap();
        refused(
            &Log::in_progress().view(),
            &lou(),
            cancel(),
            "already accepted by u-li (李四)",
        );
        refused(
            &Log::assigned().view(),
            &li(),
            cancel(),
            "only the one who ordered it",
        );
        refused(
            &Log::assigned().view(),
            &admin(),
            cancel(),
            "only add notes",
        );
        check(&Log::in_progress().view(), &zhao(), &cancel()).unwrap();
        check(&Log::in_progress().view(), &sun(), &cancel()).unwrap();
        refused(
            &Log::done().view(),
            &zhao(),
            cancel(),
            "already done by u-li (李四)",
        );
        refused(
            &Log::cancelled().view(),
            &sun(),
            cancel(),
            "already cancelled by u-zhao (赵敏)",
        );
        let v = Log::cancelled().view();
        assert_eq!(v.status, TaskStatus::Cancelled);
        refused(&v, &li(), TaskAction::Accept, "the task is cancelled");
    }

    #[test]
    fn author_name_missing_shows_the_id() {
        let mut nameless = li();
        nameless.name = String::new();
        let log = Log::assigned().next("acc", &nameless, TaskAction::Accept);
        match check(&log.view(), &lou(), &cancel()) {
            Err(Error::Refused(reason)) => assert_eq!(reason, "already accepted by u-li"),
            other => panic!("{other:?}"),
        }
    }

    // ----- unknown values, duplicates, graph ---------------------------------------------------

    #[test]
    fn unknown_values_are_rejected_but_kept() {
        let mut future = event_for(&note("x"), "f".into(), vec!["o".into()], &wang(), 200);
        future.kind = "transfer".into();
        let mut bad_role = event_for(&note("x"), "g".into(), vec!["o".into()], &wang(), 210);
        bad_role.role = "居民".into();
        let mut bad_level = event_for(
            &TaskAction::ChangeLevel {
                level: Level::Compound,
            },
            "h".into(),
            vec!["o".into()],
            &wang(),
            220,
        );
        bad_level.level = Some("县级办".into());
        let mut bad_tier = event_for(
            &escalate(Tier::Community, None),
            "t".into(),
            vec!["o".into()],
            &wang(),
            230,
        );
        bad_tier.tier = Some("province".into());
        let v = Log::ordered()
            .raw(future)
            .raw(bad_role)
            .raw(bad_level)
            .raw(bad_tier)
            .view();
        assert_rejected(&v, "f", "unknown event kind \"transfer\"");
        assert_rejected(&v, "g", "unknown role \"居民\"");
        assert_rejected(&v, "h", "unknown level \"县级办\"");
        assert_rejected(&v, "t", "unknown tier \"province\"");
        assert_eq!(v.events.len(), 5);
        assert_eq!(v.rejected().count(), 4);
        assert_eq!(
            (v.status, v.level, v.tier),
            (TaskStatus::Ordered, Some(Level::Doorstep), Tier::Grid)
        );
    }

    #[test]
    fn order_with_bad_level_is_rejected() {
        let mut o = order_event(Level::Compound, None, "t".into(), "o".into(), &wang(), 1);
        o.level = Some("大事办".into());
        let v = fold([&o]);
        assert!(!v.ordered);
        assert_rejected(&v, "o", "unknown level");
        o.level = None;
        assert_rejected(&fold([&o]), "o", "needs a level");
    }

    #[test]
    fn duplicates_are_ignored() {
        let log = Log::done();
        let mut doubled = log.evs.clone();
        doubled.extend(log.evs.iter().cloned());
        doubled.reverse();
        assert_eq!(fold(&doubled), log.view());
        assert_eq!(fold(&doubled).events.len(), 4);
    }

    #[test]
    fn conflicting_duplicate_ids_resolve_the_same_way_in_any_order() {
        let a = event_for(&note("一"), "n".into(), vec!["o".into()], &wang(), 200);
        let b = event_for(&note("二"), "n".into(), vec!["o".into()], &li(), 200);
        let o = Log::ordered().evs.remove(0);
        let v1 = fold([&o, &a, &b]);
        let v2 = fold([&b, &o, &a]);
        assert_eq!(v1, v2);
        assert_eq!(v1.events.len(), 2);
    }

    #[test]
    fn causal_order_beats_clock_and_missing_prev_is_ignored() {
        // "acc" has an earlier clock than its predecessor "s" (a skewed device): still after it.
        let log = Log::ordered()
            .at("s", &["o"], 300, &wang(), assign("u-li"))
            .at("acc", &["s", "ghost"], 150, &li(), TaskAction::Accept);
        let v = log.view();
        let ids: Vec<&str> = v.events.iter().map(|f| f.event.id.as_str()).collect();
        assert_eq!(ids, ["o", "s", "acc"]);
        assert_applied(&v, "acc");
        assert_eq!(v.status, TaskStatus::InProgress);
    }

    #[test]
    fn prev_cycles_do_not_break_the_fold() {
        let log = Log::ordered()
            .at("a", &["o", "b"], 200, &wang(), note("a"))
            .at("b", &["a"], 210, &li(), note("b"))
            .at("c", &["c"], 220, &li(), note("self"));
        let v = log.view();
        assert_eq!(v.events.len(), 4);
        let mut rev = log.evs.clone();
        rev.reverse();
        assert_eq!(fold(&rev), v);
    }

    #[test]
    fn heads_are_the_unreferenced_events_sorted() {
        let log = Log::assigned().at("n2", &["s"], 300, &li(), note("b")).at(
            "n1",
            &["s"],
            300,
            &wang(),
            note("a"),
        );
        assert_eq!(log.view().heads(), vec!["n1".to_string(), "n2".to_string()]);
        let joined = log.next("j", &zhao(), note("c"));
        assert_eq!(joined.view().heads(), vec!["j".to_string()]);
        assert_eq!(
            joined.view().events.last().map(|f| f.event.prev.clone()),
            Some(vec!["n1".to_string(), "n2".to_string()])
        );
    }

    /// Every permutation of the input gives the same view.
    fn all_permutations_agree(evs: &[TaskEvent]) -> TaskView {
        fn permute(items: &mut Vec<TaskEvent>, k: usize, expected: &TaskView, count: &mut usize) {
            if k == items.len() {
                *count += 1;
                assert_eq!(&fold(items.iter()), expected);
                return;
            }
            for i in k..items.len() {
                items.swap(k, i);
                permute(items, k + 1, expected, count);
                items.swap(k, i);
            }
        }
        let expected = fold(evs);
        let mut items = evs.to_vec();
        let mut count = 0;
        permute(&mut items, 0, &expected, &mut count);
        assert!(count >= 120);
        expected
    }

    #[test]
    fn determinism_over_permutations_with_two_forks() {
        // Fork 1: cancel (earlier clock) vs accept; fork 2: a note and a level change.
        let log = Log::assigned()
            .at("x", &["s"], 120, &zhao(), cancel())
            .at("acc", &["s"], 130, &li(), TaskAction::Accept)
            .at("n", &["s"], 125, &lou(), note("楼下也坏了"))
            .at(
                "lv",
                &["n"],
                126,
                &wang(),
                TaskAction::ChangeLevel {
                    level: Level::Compound,
                },
            )
            .at("c", &["acc"], 140, &li(), complete());
        let v = all_permutations_agree(&log.evs);
        assert_eq!(v.status, TaskStatus::Done);
        assert_eq!(v.level, Some(Level::Compound));
        assert_rejected(&v, "x", "already accepted by u-li (李四)");
    }

    #[test]
    fn determinism_over_permutations_with_a_send_back_fork() {
        let log = Log::done()
            .at("r", &["c"], 300, &lou(), rate(5))
            .at("q", &["c"], 310, &sun(), send_back())
            .at("r2", &["c"], 305, &wang(), rate(4))
            .at("c2", &["q"], 320, &li(), complete());
        let v = all_permutations_agree(&log.evs);
        assert_eq!(v.status, TaskStatus::Closed);
        assert_applied(&v, "r");
        assert_rejected(&v, "r2", "already rated by u-lou (张大妈)");
    }

    // ----- concurrency rules -------------------------------------------------------------------

    /// Rule 1: cancel vs accept, both fold orders.
    #[test]
    fn rule1_accept_beats_cancel_either_order() {
        for (cancel_hlc, accept_hlc) in [(120, 130), (130, 120)] {
            let v = Log::assigned()
                .at("x", &["s"], cancel_hlc, &zhao(), cancel())
                .at("acc", &["s"], accept_hlc, &li(), TaskAction::Accept)
                .view();
            assert_applied(&v, "acc");
            assert_rejected(&v, "x", "already accepted by u-li (李四)");
            assert_eq!(v.status, TaskStatus::InProgress);
            assert_eq!(v.assignee.as_deref(), Some("u-li"));
        }
    }

    /// Rule 1 with the orderer's own cancel on an unassigned task.
    #[test]
    fn rule1_orderer_cancel_loses_to_accept_either_order() {
        for (cancel_hlc, accept_hlc) in [(120, 130), (130, 120)] {
            let v = Log::ordered()
                .at("x", &["o"], cancel_hlc, &lou(), cancel())
                .at("acc", &["o"], accept_hlc, &wang(), TaskAction::Accept)
                .view();
            assert_rejected(&v, "x", "already accepted by u-wang (王伟)");
            assert_eq!(
                (v.status, v.assignee.as_deref()),
                (TaskStatus::InProgress, Some("u-wang"))
            );
        }
    }

    /// Rule 1: cancel vs complete.
    #[test]
    fn rule1_complete_beats_cancel_either_order() {
        for (cancel_hlc, complete_hlc) in [(220, 230), (230, 220)] {
            let v = Log::in_progress()
                .at("x", &["acc"], cancel_hlc, &sun(), cancel())
                .at("c", &["acc"], complete_hlc, &li(), complete())
                .view();
            assert_applied(&v, "c");
            assert_rejected(&v, "x", "already done by u-li (李四)");
            assert_eq!(v.status, TaskStatus::Done);
        }
    }

    /// A later accept only overturns a cancel when it would itself be valid.
    #[test]
    fn invalid_accept_does_not_erase_a_cancel() {
        let v = Log::assigned()
            .at("x", &["s"], 120, &zhao(), cancel())
            .at("acc", &["s"], 130, &wang(), TaskAction::Accept)
            .view();
        assert_applied(&v, "x");
        assert_eq!(v.status, TaskStatus::Cancelled);
        assert!(matches!(outcome(&v, "acc"), Outcome::Rejected { .. }));
    }

    /// A cancel recorded after seeing the accept is just a cancel (by staff).
    #[test]
    fn causal_cancel_after_accept_by_staff_applies() {
        let v = Log::in_progress().next("x", &zhao(), cancel()).view();
        assert_applied(&v, "x");
        assert_eq!(v.status, TaskStatus::Cancelled);
    }

    /// Rule 2: two accepts; the earlier in fold order wins.
    #[test]
    fn rule2_two_accepts_earlier_wins() {
        for (li_hlc, wang_hlc, winner, loser, loser_msg) in [
            (
                120,
                130,
                "u-li",
                "a-wang",
                "already accepted by u-li (李四)",
            ),
            (
                130,
                120,
                "u-wang",
                "a-li",
                "already accepted by u-wang (王伟)",
            ),
        ] {
            let v = Log::ordered()
                .at("a-li", &["o"], li_hlc, &li(), TaskAction::Accept)
                .at("a-wang", &["o"], wang_hlc, &wang(), TaskAction::Accept)
                .view();
            assert_eq!(v.assignee.as_deref(), Some(winner));
            assert_eq!(v.status, TaskStatus::InProgress);
            assert_rejected(&v, loser, loser_msg);
        }
    }

    /// Rule 3: complete vs escalate; the complete wins.
    #[test]
    fn rule3_complete_beats_escalate_either_order() {
        for (esc_hlc, complete_hlc) in [(220, 230), (230, 220)] {
            let v = Log::in_progress()
                .at(
                    "e",
                    &["acc"],
                    esc_hlc,
                    &wang(),
                    escalate(Tier::Community, None),
                )
                .at("c", &["acc"], complete_hlc, &li(), complete())
                .view();
            assert_applied(&v, "c");
            assert_rejected(&v, "e", "already done by u-li (李四)");
            assert_eq!((v.status, v.tier), (TaskStatus::Done, Tier::Grid));
            assert_eq!(v.assignee.as_deref(), Some("u-li"));
        }
    }

    /// Rule 3 when a community assignment followed the losing escalation.
    #[test]
    fn rule3_escalate_then_reassign_still_loses_to_complete() {
        let v = Log::in_progress()
            .at("e", &["acc"], 220, &wang(), escalate(Tier::Community, None))
            .at("s2", &["e"], 225, &zhao(), assign("u-zhao"))
            .at("c", &["acc"], 230, &li(), complete())
            .view();
        assert_applied(&v, "c");
        assert_rejected(&v, "e", "already done by u-li");
        assert!(matches!(outcome(&v, "s2"), Outcome::Rejected { .. }));
        assert_eq!(v.status, TaskStatus::Done);
    }

    /// Rule 4: send-back vs closing rating; the send-back wins and the rating is held.
    #[test]
    fn rule4_send_back_beats_closing_rating_either_order() {
        for (rate_hlc, back_hlc) in [(300, 310), (310, 300)] {
            let v = Log::done()
                .at("r", &["c"], rate_hlc, &lou(), rate(5))
                .at("q", &["c"], back_hlc, &sun(), send_back())
                .view();
            assert_applied(&v, "q");
            assert_held(
                &v,
                "r",
                "sent back by u-sun (孙书记); counts when the task is done anew",
            );
            assert_eq!(v.status, TaskStatus::InProgress);
            assert_eq!(
                v.last_rating
                    .as_ref()
                    .map(|r| (r.score, r.event_id.as_str())),
                Some((5, "r"))
            );
            assert_eq!(
                v.rejected()
                    .map(|f| f.event.id.as_str())
                    .collect::<Vec<_>>(),
                ["r"]
            );
            refused(&v, &wang(), rate(4), "cannot rate: the task is in_progress");
        }
    }

    /// Rule 4: the held rating counts for the next completion; a later rating is a second one.
    #[test]
    fn rule4_held_rating_counts_for_the_next_completion() {
        for (rate_hlc, back_hlc) in [(300, 310), (310, 300)] {
            let log = Log::done()
                .at("r", &["c"], rate_hlc, &lou(), rate(4))
                .at("q", &["c"], back_hlc, &sun(), send_back())
                .next("c2", &li(), complete());
            let v = log.view();
            assert_applied(&v, "c2");
            assert_applied(&v, "r");
            assert_eq!(v.status, TaskStatus::Closed);
            assert_eq!(v.rejected().count(), 0);
            assert_eq!(
                v.last_rating.as_ref().map(|r| r.event_id.as_str()),
                Some("r")
            );
            refused(&v, &wang(), rate(5), "already rated by u-lou (张大妈)");
            let v = log.next("r2", &wang(), rate(5)).view();
            assert_rejected(&v, "r2", "already rated by u-lou (张大妈)");
            assert_eq!(
                v.last_rating.as_ref().map(|r| r.event_id.as_str()),
                Some("r")
            );
        }
    }

    /// Rule 4 decision: a bad rating concurrent with a send-back; both count.
    #[test]
    fn rule4_bad_rating_and_send_back_both_apply_either_order() {
        for (rate_hlc, back_hlc) in [(300, 310), (310, 300)] {
            let v = Log::done()
                .at("r", &["c"], rate_hlc, &lou(), rate(1))
                .at("q", &["c"], back_hlc, &sun(), send_back())
                .view();
            assert_applied(&v, "r");
            assert_applied(&v, "q");
            assert_eq!(v.status, TaskStatus::InProgress);
            assert_eq!(v.last_rating.as_ref().map(|r| r.score), Some(1));
        }
    }

    /// A send-back recorded after seeing the closing rating does not hold it.
    #[test]
    fn causal_send_back_after_rating_keeps_the_rating() {
        let v = Log::closed().next("q", &sun(), send_back()).view();
        assert_applied(&v, "r");
        assert_applied(&v, "q");
        assert_eq!(v.status, TaskStatus::InProgress);
    }

    /// Rule 5: two ratings of one completion; the earlier counts.
    #[test]
    fn rule5_two_ratings_earlier_counts() {
        for (lou_hlc, wang_hlc, status, loser, msg) in [
            (
                300,
                310,
                TaskStatus::Closed,
                "r-wang",
                "already rated by u-lou (张大妈)",
            ),
            (
                310,
                300,
                TaskStatus::InProgress,
                "r-lou",
                "already rated by u-wang (王伟)",
            ),
        ] {
            let v = Log::done()
                .at("r-lou", &["c"], lou_hlc, &lou(), rate(4))
                .at("r-wang", &["c"], wang_hlc, &wang(), rate(2))
                .view();
            assert_eq!(v.status, status);
            assert_rejected(&v, loser, msg);
        }
    }

    /// Rule 6: concurrent level / deadline changes all apply; the later clock wins.
    #[test]
    fn rule6_level_and_deadline_changes_later_clock_wins() {
        for (a_hlc, b_hlc, level, deadline) in [
            (220, 230, Level::Compound, 2_000),
            (230, 220, Level::PartyMass, 1_000),
        ] {
            let v = Log::in_progress()
                .at(
                    "l1",
                    &["acc"],
                    a_hlc,
                    &wang(),
                    TaskAction::ChangeLevel {
                        level: Level::PartyMass,
                    },
                )
                .at(
                    "l2",
                    &["acc"],
                    b_hlc,
                    &zhao(),
                    TaskAction::ChangeLevel {
                        level: Level::Compound,
                    },
                )
                .at(
                    "d1",
                    &["acc"],
                    a_hlc,
                    &sun(),
                    TaskAction::ChangeDeadline { deadline: 1_000 },
                )
                .at(
                    "d2",
                    &["acc"],
                    b_hlc,
                    &zhao(),
                    TaskAction::ChangeDeadline { deadline: 2_000 },
                )
                .view();
            for id in ["l1", "l2", "d1", "d2"] {
                assert_applied(&v, id);
            }
            assert_eq!((v.level, v.deadline), (Some(level), Some(deadline)));
        }
    }

    /// Rule 7: notes and reminders never conflict.
    #[test]
    fn rule7_notes_and_reminders_never_conflict() {
        for (n_hlc, c_hlc) in [(220, 230), (230, 220)] {
            let v = Log::in_progress()
                .at("n", &["acc"], n_hlc, &lou(), note("居民在家"))
                .at(
                    "sup",
                    &["acc"],
                    n_hlc + 1,
                    &zhao(),
                    TaskAction::Supervise {
                        text: "快".into(),
                        new_deadline: Some(9),
                    },
                )
                .at("c", &["acc"], c_hlc, &li(), complete())
                .view();
            assert_eq!(v.rejected().count(), 0);
            assert_eq!((v.status, v.deadline), (TaskStatus::Done, Some(9)));
        }
    }

    /// Rule 8: accept vs a concurrent assign to someone else; the accept wins.
    #[test]
    fn rule8_accept_beats_concurrent_assign_either_order() {
        for (assign_hlc, accept_hlc) in [(120, 130), (130, 120)] {
            let v = Log::ordered()
                .at("s", &["o"], assign_hlc, &zhao(), assign("u-wang"))
                .at("acc", &["o"], accept_hlc, &li(), TaskAction::Accept)
                .view();
            assert_applied(&v, "acc");
            assert_rejected(&v, "s", "already accepted by u-li (李四)");
            assert_eq!(
                (v.status, v.assignee.as_deref()),
                (TaskStatus::InProgress, Some("u-li"))
            );
        }
    }

    /// Rule 8: a reassignment after an accepted assignee's own accept loses too; a concurrent
    /// assign to the accepting worker stands.
    #[test]
    fn rule8_assign_to_the_same_worker_is_no_conflict() {
        let v = Log::ordered()
            .at("s", &["o"], 120, &zhao(), assign("u-li"))
            .at("acc", &["o"], 130, &li(), TaskAction::Accept)
            .view();
        assert_applied(&v, "s");
        assert_applied(&v, "acc");
        assert_eq!(v.assignee.as_deref(), Some("u-li"));
    }

    #[test]
    fn rule8_with_two_concurrent_assigns() {
        // Assigned to li; concurrently reassigned to wang while li accepts.
        let v = Log::assigned()
            .at("s2", &["s"], 120, &zhao(), assign("u-wang"))
            .at("acc", &["s"], 130, &li(), TaskAction::Accept)
            .at("acc-w", &["s2"], 140, &wang(), TaskAction::Accept)
            .view();
        assert_applied(&v, "acc");
        assert_rejected(&v, "s2", "already accepted by u-li");
        assert_rejected(&v, "acc-w", "already accepted by u-li");
        assert_eq!(v.assignee.as_deref(), Some("u-li"));
        assert_eq!(v.rejected().count(), 2);
    }

    // ----- check agrees with fold ---------------------------------------------------------------

    fn states() -> Vec<(&'static str, Log)> {
        vec![
            ("empty", Log::empty()),
            ("ordered", Log::ordered()),
            ("assigned", Log::assigned()),
            ("in_progress", Log::in_progress()),
            ("done", Log::done()),
            ("closed", Log::closed()),
            ("cancelled", Log::cancelled()),
            ("reopened", Log::done().next("r", &lou(), rate(1))),
            (
                "sent_back_held",
                Log::done().at("r", &["c"], 300, &lou(), rate(5)).at(
                    "q",
                    &["c"],
                    310,
                    &sun(),
                    send_back(),
                ),
            ),
            (
                "community",
                Log::in_progress().next("e", &wang(), escalate(Tier::Community, None)),
            ),
            (
                "unit",
                Log::in_progress().next("e", &zhao(), escalate(Tier::LinkedUnit, Some("物业"))),
            ),
        ]
    }

    fn actions() -> Vec<TaskAction> {
        vec![
            assign("u-li"),
            assign("u-wang"),
            assign(""),
            TaskAction::Accept,
            note("n"),
            TaskAction::Supervise {
                text: "s".into(),
                new_deadline: Some(1),
            },
            complete(),
            TaskAction::Inquire {
                text: "?".into(),
                send_back: false,
            },
            send_back(),
            rate(0),
            rate(2),
            rate(5),
            TaskAction::ChangeLevel {
                level: Level::PartyMass,
            },
            TaskAction::ChangeDeadline { deadline: 3 },
            escalate(Tier::Community, None),
            escalate(Tier::LinkedUnit, Some("执法")),
            escalate(Tier::LinkedUnit, None),
            cancel(),
        ]
    }

    #[test]
    fn check_agrees_with_fold_for_every_state_actor_action() {
        let mut ok = 0;
        for (name, log) in states() {
            let view = log.view();
            for a in [lou(), wang(), li(), zhao(), sun(), admin()] {
                for action in actions() {
                    let checked = check(&view, &a, &action);
                    let appended = event_for(
                        &action,
                        "zz-new".into(),
                        view.heads(),
                        &a,
                        log.max_hlc() + 1,
                    );
                    let folded = log.clone().raw(appended).view();
                    let applied = outcome(&folded, "zz-new") == Outcome::Applied;
                    assert_eq!(
                        checked.is_ok(),
                        applied,
                        "{name} / {} / {action:?}: {checked:?}",
                        a.user
                    );
                    if applied {
                        ok += 1;
                        // Earlier events keep their outcomes when a new event is appended,
                        // except a held rating, which counts once the task is done anew.
                        for (before, after) in view.events.iter().zip(&folded.events) {
                            assert_eq!(before.event, after.event);
                            if !matches!(before.outcome, Outcome::Held { .. }) {
                                assert_eq!(before.outcome, after.outcome, "{name} {action:?}");
                            }
                        }
                    } else {
                        assert!(matches!(checked, Err(Error::Refused(_))));
                    }
                }
            }
        }
        assert!(ok > 50, "only {ok} accepted combinations");
    }

    #[test]
    fn check_table() {
        let table: Vec<(Log, Actor, TaskAction, bool)> = vec![
            (Log::ordered(), wang(), assign("u-li"), true),
            (Log::ordered(), lou(), assign("u-li"), false),
            (Log::assigned(), li(), TaskAction::Accept, true),
            (Log::assigned(), wang(), TaskAction::Accept, false),
            (Log::in_progress(), li(), complete(), true),
            (Log::in_progress(), zhao(), complete(), false),
            (Log::done(), sun(), send_back(), true),
            (Log::in_progress(), sun(), send_back(), false),
            (Log::done(), lou(), rate(3), true),
            (Log::closed(), lou(), rate(3), false),
            (Log::in_progress(), lou(), cancel(), false),
            (Log::in_progress(), zhao(), cancel(), true),
            (Log::cancelled(), admin(), note("x"), false),
            (Log::closed(), admin(), note("x"), true),
            (Log::unit_assigned(), zhao(), TaskAction::Accept, true),
            (Log::unit_assigned(), li(), TaskAction::Accept, false),
        ];
        for (log, a, action, expect) in table {
            let v = log.view();
            assert_eq!(
                check(&v, &a, &action).is_ok(),
                expect,
                "{:?} {} {action:?}",
                v.status,
                a.user
            );
        }
    }

    impl Log {
        fn unit_assigned() -> Log {
            Log::in_progress().next("e", &zhao(), escalate(Tier::LinkedUnit, Some("物业")))
        }
    }

    /// A tiny deterministic generator for the randomized tests (no dependency needed).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) % n as u64) as usize
        }
    }

    /// Random histories (every event forks from random earlier events, random clocks, random
    /// actors and actions) fold to the same view whatever the input order, and never panic.
    #[test]
    fn random_histories_are_order_independent() {
        let actors = [lou(), wang(), li(), zhao(), sun(), admin()];
        let acts = actions();
        let mut rng = Lcg(7);
        for round in 0..150 {
            let mut log = Log::ordered();
            let len = 3 + rng.next(8);
            for k in 0..len {
                let ids: Vec<String> = log.evs.iter().map(|e| e.id.clone()).collect();
                let mut prev: Vec<&str> = vec![ids[rng.next(ids.len())].as_str()];
                if rng.next(3) == 0 {
                    prev.push(ids[rng.next(ids.len())].as_str());
                }
                let a = &actors[rng.next(actors.len())];
                let action = acts[rng.next(acts.len())].clone();
                let hlc = 100 + rng.next(60) as i64;
                log = log.at(&format!("e{k}"), &prev, hlc, a, action);
            }
            let expected = log.view();
            assert_eq!(expected.events.len(), len + 1);
            for _ in 0..4 {
                let mut shuffled = log.evs.clone();
                for i in (1..shuffled.len()).rev() {
                    shuffled.swap(i, rng.next(i + 1));
                }
                assert_eq!(fold(&shuffled), expected, "round {round}");
            }
        }
    }

    /// Many concurrent cancels and accepts: the fold stays quick and the workers win.
    #[test]
    fn many_concurrent_conflicts_terminate() {
        let mut log = Log::ordered();
        for k in 0..15 {
            log = log.at(&format!("x{k}"), &["o"], 200 + k, &zhao(), cancel());
            log = log.at(&format!("a{k}"), &["o"], 230 - k, &li(), TaskAction::Accept);
            log = log.at(&format!("n{k}"), &["o"], 210 + k, &lou(), note("n"));
        }
        let started = std::time::Instant::now();
        let v = log.view();
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(v.status, TaskStatus::InProgress);
        assert_eq!(v.rejected().count(), 29);
        let mut rev = log.evs.clone();
        rev.reverse();
        assert_eq!(fold(&rev), v);
    }

    // ----- overdue ---------------------------------------------------------------------------------

    #[test]
    fn is_overdue() {
        let v = Log::in_progress().view();
        assert!(!v.is_overdue(10_000));
        assert!(v.is_overdue(10_001));
        assert!(!Log::done().view().is_overdue(99_999));
        assert!(!Log::closed().view().is_overdue(99_999));
        assert!(!Log::cancelled().view().is_overdue(99_999));
        assert!(Log::ordered().view().is_overdue(10_001));
        assert!(
            Log::done()
                .next("r", &lou(), rate(1))
                .view()
                .is_overdue(10_001)
        );
        let no_deadline = Log::empty().raw(order_event(
            Level::Compound,
            None,
            "t".into(),
            "o".into(),
            &wang(),
            1,
        ));
        assert!(!no_deadline.view().is_overdue(i64::MAX));
        let mut unordered = Log::ordered().view();
        unordered.ordered = false;
        assert!(!unordered.is_overdue(99_999));
        let moved = Log::in_progress().next(
            "d",
            &zhao(),
            TaskAction::ChangeDeadline { deadline: 50_000 },
        );
        assert!(!moved.view().is_overdue(20_000));
    }

    #[test]
    fn a_record_follows_the_tasks_made_from_it_in_any_order() {
        use RecordStatus as R;
        use TaskStatus as T;
        let cases: &[(R, &[T], R)] = &[
            (R::Pending, &[], R::Pending),
            (R::Pending, &[T::Ordered], R::InProgress),
            (R::Pending, &[T::Done], R::InProgress),
            (R::Pending, &[T::Closed], R::Resolved),
            (R::Pending, &[T::Closed, T::InProgress], R::InProgress),
            (R::Pending, &[T::Closed, T::Cancelled], R::Resolved),
            (R::Pending, &[T::Cancelled], R::Pending),
            (R::FollowedUp, &[T::Ordered], R::FollowedUp),
            (R::Resolved, &[T::Assigned], R::Resolved),
        ];
        for (own, tasks, shown) in cases {
            assert_eq!(
                record_status_shown(*own, tasks.iter().copied()),
                *shown,
                "{own:?} with {tasks:?}"
            );
            let reversed = tasks.iter().rev().copied();
            assert_eq!(record_status_shown(*own, reversed), *shown);
        }
    }
}
