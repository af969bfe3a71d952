//! A five-order action recorded in a task document: the one rule a phone's
//! [`crate::Store::task_action`] and the station console's actions share.
//!
//! The console acts on the server as a console device of the staff member: it loads the
//! stored task document, records the action with [`record`] exactly as a phone would, commits
//! it with [`commit`] and pushes the change through the same ingest checks as a phone's push.
//! So there is one way to write an event, and the server cannot tell (nor need to) whether a
//! 督单 came from a phone or from the station's PC.

use automerge::{AutoCommit, ChangeHash};
use autosurgeon::{hydrate, reconcile};

use crate::doc;
use crate::error::{Error, Result};
use crate::hlc::Hlc;
use crate::model::{Actor, Task, TaskAction, TaskEvent, Tier};
use crate::validate;
use crate::workflow::{self, TaskView};

/// Longest free text of an action (a note, a reason, a result).
pub const MAX_TEXT_CHARS: usize = 2000;

/// Checks an action's own fields before it is tried on a task: texts present where the
/// action needs one and not too long, a score from 1 to 5, a linked unit named, and a new
/// deadline not already past at `now_ms`.
pub fn validate(action: &TaskAction, now_ms: i64) -> Result<()> {
    let long = |field: &str, s: &str| {
        if s.chars().count() > MAX_TEXT_CHARS {
            Err(Error::invalid(field, "longer than 2000 characters"))
        } else {
            Ok(())
        }
    };
    match action {
        TaskAction::Assign { assignee } => {
            validate::non_empty("assignee", assignee, 64)?;
        }
        TaskAction::Note { text } => {
            validate::non_empty("text", text, MAX_TEXT_CHARS)?;
        }
        TaskAction::Supervise { text, .. } | TaskAction::Inquire { text, .. } => {
            long("text", text)?
        }
        TaskAction::Complete { result } => {
            validate::non_empty("result", result, MAX_TEXT_CHARS)?;
        }
        TaskAction::Rate { score, comment } => {
            if !(1..=5).contains(score) {
                return Err(Error::invalid(
                    "score",
                    format!("{score} is not a rating from 1 to 5"),
                ));
            }
            long("comment", comment)?;
        }
        TaskAction::Escalate {
            tier: Tier::LinkedUnit,
            unit,
        } => {
            validate::non_empty("unit", unit.as_deref().unwrap_or(""), 64)?;
        }
        TaskAction::Cancel { reason } => {
            validate::non_empty("reason", reason, MAX_TEXT_CHARS)?;
        }
        TaskAction::Accept
        | TaskAction::ChangeLevel { .. }
        | TaskAction::ChangeDeadline { .. }
        | TaskAction::Escalate { .. } => {}
    }
    if let TaskAction::ChangeDeadline { deadline }
    | TaskAction::Supervise {
        new_deadline: Some(deadline),
        ..
    } = action
        && *deadline < now_ms
    {
        return Err(Error::invalid(
            "deadline",
            "the new deadline is already past",
        ));
    }
    Ok(())
}

/// The change note's `what` of an action (`task supervise`, …).
pub fn change_note(action: &TaskAction) -> String {
    let probe = Actor {
        user: String::new(),
        name: String::new(),
        role: crate::model::Role::Admin,
        device: String::new(),
    };
    format!(
        "task {}",
        workflow::event_for(action, String::new(), vec![], &probe, 0).kind
    )
}

/// The id of the event `actor`'s device records at `hlc`.
pub fn event_id(actor: &Actor, hlc: Hlc) -> String {
    format!("ev-{}-{:x}", actor.device, hlc.as_i64())
}

/// Adds the event of `action` by `actor` at `hlc` to `events` (folded as `view`), after
/// [`workflow::check`]: refused ([`Error::Refused`], with the fold's reason) when the
/// action cannot apply to the task as it stands. Returns the new event's id.
pub fn append(
    events: &mut std::collections::BTreeMap<String, TaskEvent>,
    view: &TaskView,
    actor: &Actor,
    hlc: Hlc,
    action: &TaskAction,
) -> Result<String> {
    workflow::check(view, actor, action)?;
    let id = event_id(actor, hlc);
    if events.contains_key(&id) {
        return Err(Error::Refused(format!(
            "an event {id} is already recorded; try again"
        )));
    }
    let ev = workflow::event_for(action, id.clone(), view.heads(), actor, hlc.as_i64());
    events.insert(id.clone(), ev);
    Ok(id)
}

/// Records `action` by `actor` at `hlc` in the task document `doc` (not committed): the
/// task as it now is and its new fold. Refused, with nothing changed in `doc`, when the
/// action cannot apply or the task would exceed its bounds.
pub fn record(
    doc: &mut AutoCommit,
    task_id: &str,
    actor: &Actor,
    hlc: Hlc,
    action: &TaskAction,
) -> Result<(Task, TaskView)> {
    let mut t: Task = hydrate(doc).map_err(|e| Error::bad_doc(task_id, e))?;
    let view = workflow::fold(t.events.values());
    append(&mut t.events, &view, actor, hlc, action)?;
    t.check_bounds()?;
    reconcile(doc, &t).map_err(|e| Error::bad_doc(task_id, e))?;
    let view = workflow::fold(t.events.values());
    Ok((t, view))
}

/// Commits what [`record`] wrote, with the change note of `actor` at `hlc` saying `what`:
/// the new change's hash, or `None` when nothing changed.
pub fn commit(doc: &mut AutoCommit, actor: &Actor, hlc: Hlc, what: &str) -> Option<ChangeHash> {
    doc::commit(doc, actor, hlc, what)
}
