//! [`XiuhuaStore`]: one device's store, shared by every thread of the app.
//!
//! **Threading.** Every method takes `&self` and is blocking: call it from a background
//! thread (Kotlin: `Dispatchers.IO`; Swift: a detached task). The core store sits behind a
//! mutex, so calls are serialised. [`XiuhuaStore::sync`] holds that mutex only while it
//! reads or writes the store, never while it waits for the network, so the screens stay
//! usable during a sync.
//!
//! **Observers** are called after each local write commits and after a sync or merge
//! brought changes, on the thread that made the call, with no lock held (an observer may
//! call back into the store).

use std::sync::{Arc, Mutex, MutexGuard};

use xiuhua_core as core;
use xiuhua_core::Store;

use crate::error::{Result, XiuhuaError};
use crate::types::*;

/// Where a change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ChangeOrigin {
    /// A write made on this device through this store.
    Local,
    /// Changes that a sync brought or that were merged from elsewhere.
    Remote,
}

/// One document that changed.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ChangedDoc {
    pub id: String,
    /// `household`, `record` or `task`.
    pub kind: String,
}

/// What an observer is told.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ChangeEvent {
    pub origin: ChangeOrigin,
    /// The documents that changed (may be empty when `everything` is set).
    pub docs: Vec<ChangedDoc>,
    /// Anything may have changed (a sync pulled changes or purged a grid): refresh every
    /// screen.
    pub everything: bool,
}

/// Implemented by the app (Kotlin, Swift, Python) to hear about changes.
#[uniffi::export(with_foreign)]
pub trait StoreObserver: Send + Sync {
    /// Called after a write committed or a sync or merge brought changes. Keep it short:
    /// post to the UI thread and return. An exception thrown here is ignored.
    fn on_change(&self, event: ChangeEvent) -> Result<()>;
}

/// A change of one document, as exchanged between devices (tests, diagnostics).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RemoteChange {
    pub doc: String,
    /// One Automerge change in its binary encoding.
    pub change: Vec<u8>,
}

/// What a merge did.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct MergeSummary {
    pub changed: Vec<ChangedDoc>,
    pub applied: u64,
    pub duplicates: u64,
    /// Changes waiting for the changes they depend on.
    pub waiting: u64,
    /// Household fields that gained concurrent values (ids of their documents).
    pub new_conflicts: Vec<String>,
    /// Task events the fold now rejects: `task: event: reason`.
    pub newly_rejected: Vec<String>,
}

/// One device's store. Open it once per process and share it.
#[derive(uniffi::Object)]
pub struct XiuhuaStore {
    pub(crate) inner: Mutex<Store>,
    observers: Mutex<Vec<(u64, Arc<dyn StoreObserver>)>>,
    next_observer: Mutex<u64>,
    /// Held for the whole of a sync or an enrollment: one at a time.
    pub(crate) sync_lock: Mutex<()>,
    /// Set by `cancel_sync`: the running sync stops at its next request boundary.
    pub(crate) cancel: core::sync::CancelFlag,
    /// The app's transport settings: timeouts, a pinned station certificate, the LAN
    /// addresses plain http:// may go to (set each launch, like the timeouts).
    pub(crate) transport_policy: Mutex<core::sync::http::TransportPolicy>,
}

impl std::fmt::Debug for XiuhuaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XiuhuaStore").finish_non_exhaustive()
    }
}

pub(crate) fn kind_of(id: &str) -> String {
    let kind = if id.starts_with("hh-") {
        core::DocKind::Household
    } else if id.starts_with("rec-") {
        core::DocKind::Record
    } else if id.starts_with("task-") {
        core::DocKind::Task
    } else {
        return "unknown".to_string();
    };
    kind.as_str().to_string()
}

fn changed(id: &str) -> ChangedDoc {
    ChangedDoc {
        id: id.to_string(),
        kind: kind_of(id),
    }
}

fn non_empty(field: &str, s: &str) -> Result<()> {
    if s.trim().is_empty() {
        return Err(XiuhuaError::invalid(field, "is empty"));
    }
    Ok(())
}

impl XiuhuaStore {
    fn new(store: Store) -> Arc<Self> {
        Arc::new(XiuhuaStore {
            inner: Mutex::new(store),
            observers: Mutex::new(Vec::new()),
            next_observer: Mutex::new(1),
            sync_lock: Mutex::new(()),
            cancel: core::sync::CancelFlag::new(),
            transport_policy: Mutex::new(core::sync::http::TransportPolicy::default()),
        })
    }

    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, Store>> {
        self.inner.lock().map_err(|_| {
            XiuhuaError::internal(
                "the store is unusable after an earlier failure in this process; reopen it",
            )
        })
    }

    /// Runs `f` on the store.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Store) -> core::Result<R>) -> Result<R> {
        let mut store = self.lock()?;
        Ok(f(&mut store)?)
    }

    /// Runs a local write on document `doc` and tells the observers once it committed.
    fn write<R>(&self, doc: &str, f: impl FnOnce(&mut Store) -> core::Result<R>) -> Result<R> {
        let r = self.with(f)?;
        self.notify_local(doc);
        Ok(r)
    }

    fn notify_local(&self, doc: &str) {
        self.notify(ChangeEvent {
            origin: ChangeOrigin::Local,
            docs: vec![changed(doc)],
            everything: false,
        });
    }

    /// Tells the observers that anything may have changed (an enrollment or a sign-out
    /// that erased the store, a sync that does not list what it changed).
    pub(crate) fn notify_all(&self) {
        self.notify(ChangeEvent {
            origin: ChangeOrigin::Remote,
            docs: Vec::new(),
            everything: true,
        });
    }

    pub(crate) fn notify(&self, event: ChangeEvent) {
        let observers: Vec<Arc<dyn StoreObserver>> = match self.observers.lock() {
            Ok(o) => o.iter().map(|(_, o)| Arc::clone(o)).collect(),
            Err(_) => return,
        };
        for o in observers {
            // An observer's failure must not undo or fail the write that already committed.
            let _ = o.on_change(event.clone());
        }
    }
}

#[uniffi::export]
impl XiuhuaStore {
    // ----- opening -----

    /// Opens (creating if absent) the store at `path`. With a `key` (from the Android
    /// Keystore / iOS Keychain) the file is encrypted at rest with SQLCipher; a wrong key is
    /// [`XiuhuaError::WrongKey`] and the file is left untouched. `actor` is who acts on this
    /// device before enrollment (any device id); an enrolled store acts as the device and
    /// user it was enrolled as, whatever `actor` says.
    #[uniffi::constructor]
    pub fn open(path: String, key: Option<String>, actor: Actor) -> Result<Arc<Self>> {
        non_empty("path", &path)?;
        let actor = actor.to_core()?;
        let mut store = match key {
            Some(key) => Store::open_encrypted(&path, &key, actor)?,
            None => Store::open(&path, actor)?,
        };
        store.adopt_enrolled_identity()?;
        Ok(Self::new(store))
    }

    /// A store that lives in memory only (tests, previews).
    #[uniffi::constructor]
    pub fn open_in_memory(actor: Actor) -> Result<Arc<Self>> {
        let store = Store::open_in_memory(actor.to_core()?)?;
        Ok(Self::new(store))
    }

    /// Who acts on this store.
    pub fn actor(&self) -> Result<Actor> {
        Ok(Actor::from(self.lock()?.actor()))
    }

    /// The clock-anchored "now" (ms since the epoch) that deadlines are measured against.
    pub fn now_ms(&self) -> Result<i64> {
        Ok(self.lock()?.now_ms())
    }

    // ----- observers -----

    /// Registers an observer; returns a handle for [`XiuhuaStore::remove_observer`].
    pub fn add_observer(&self, observer: Arc<dyn StoreObserver>) -> Result<u64> {
        let mut next = self
            .next_observer
            .lock()
            .map_err(|_| XiuhuaError::internal("observer registry unusable"))?;
        let id = *next;
        *next += 1;
        self.observers
            .lock()
            .map_err(|_| XiuhuaError::internal("observer registry unusable"))?
            .push((id, observer));
        Ok(id)
    }

    /// Removes an observer; unknown handles are ignored.
    pub fn remove_observer(&self, handle: u64) -> Result<()> {
        self.observers
            .lock()
            .map_err(|_| XiuhuaError::internal("observer registry unusable"))?
            .retain(|(id, _)| *id != handle);
        Ok(())
    }

    // ----- households -----

    /// Registers a household; returns its id.
    pub fn create_household(&self, household: NewHousehold) -> Result<String> {
        let new = household.to_core()?;
        let id = self.with(|s| s.create_household(new))?;
        self.notify_local(&id);
        Ok(id)
    }

    /// Adds a member; returns the member's id.
    pub fn add_member(&self, household: String, member: NewMember) -> Result<String> {
        let m = member.to_core()?;
        self.write(&household, |s| s.add_member(&household, m))
    }

    /// Replaces a member's fields.
    pub fn update_member(
        &self,
        household: String,
        member_id: String,
        member: NewMember,
    ) -> Result<()> {
        let m = member.to_core()?;
        self.write(&household, |s| s.update_member(&household, &member_id, m))
    }

    /// Sets (or, with none or an empty string, clears) a member's phone number.
    pub fn set_member_phone(
        &self,
        household: String,
        member_id: String,
        phone: Option<String>,
    ) -> Result<()> {
        self.write(&household, |s| {
            s.set_member_phone(&household, &member_id, phone.as_deref())
        })
    }

    /// Removes a member entered by mistake. A member who moved out or died is marked with
    /// `set_member_status` instead, and stays on record.
    pub fn remove_member(&self, household: String, member_id: String) -> Result<()> {
        self.write(&household, |s| s.remove_member(&household, &member_id))
    }

    /// Marks a member 迁出 (moved out), 去世 (deceased) or 在册 (living here again).
    pub fn set_member_status(
        &self,
        household: String,
        member_id: String,
        status: String,
    ) -> Result<()> {
        let status = parse::<core::MemberStatus>(&status)?;
        self.write(&household, |s| {
            s.set_member_status(&household, &member_id, status)
        })
    }

    /// Marks the household as moved out of the grid (`true`) or back (`false`); it leaves
    /// the building lists and stays on record.
    pub fn set_household_moved_out(&self, household: String, moved_out: bool) -> Result<()> {
        self.write(&household, |s| {
            s.set_household_moved_out(&household, moved_out)
        })
    }

    /// Moves a household to another address of its grid (moved within the grid, or a
    /// wrongly recorded building, unit or room). A 楼门长's phone scoped to the old building
    /// loses it, with the records and tasks that follow it, at its next sync.
    pub fn move_household(
        &self,
        household: String,
        building: String,
        unit: String,
        room: String,
    ) -> Result<()> {
        self.write(&household, |s| {
            s.move_household(&household, &building, &unit, &room)
        })
    }

    /// Replaces the household's tags.
    pub fn set_household_tags(&self, household: String, tags: Vec<String>) -> Result<()> {
        let tags = parse_tags(&tags)?;
        self.write(&household, |s| s.set_household_tags(&household, &tags))
    }

    /// Edits the household's note (concurrent edits interleave).
    pub fn set_household_note(&self, household: String, note: String) -> Result<()> {
        self.write(&household, |s| s.set_household_note(&household, &note))
    }

    /// Logs a door-to-door visit by this device's user; returns the visit's id.
    pub fn add_visit(&self, household: String, visit: NewVisit) -> Result<String> {
        self.write(&household, |s| s.add_visit(&household, visit.into()))
    }

    /// Corrects a visit this device's user made (purpose, note, follow-up); a visit by
    /// someone else is refused.
    pub fn update_visit(&self, household: String, visit_id: String, visit: NewVisit) -> Result<()> {
        self.write(&household, |s| {
            s.update_visit(&household, &visit_id, visit.into())
        })
    }

    /// A household with its members (ID numbers whole), tags, note and visits.
    pub fn household(&self, id: String) -> Result<Household> {
        self.with(|s| s.household(&id)).map(Household::from)
    }

    /// Buildings of a grid with their household counts, in natural order.
    pub fn buildings(&self, grid: String) -> Result<Vec<Building>> {
        let rows = self.with(|s| s.buildings(&grid))?;
        Ok(rows
            .into_iter()
            .map(|(name, households)| Building { name, households })
            .collect())
    }

    /// The units (单元) of a building, in natural order.
    pub fn units(&self, grid: String, building: String) -> Result<Vec<String>> {
        let rows = self.with(|s| s.households_in(&grid, &building, None))?;
        let mut units: Vec<String> = Vec::new();
        for h in rows {
            if !units.contains(&h.unit) {
                units.push(h.unit);
            }
        }
        Ok(units)
    }

    /// Households of a building, or of one unit of it, by unit and room.
    pub fn households_in(
        &self,
        grid: String,
        building: String,
        unit: Option<String>,
    ) -> Result<Vec<HouseholdSummary>> {
        let rows = self.with(|s| s.households_in(&grid, &building, unit.as_deref()))?;
        Ok(rows.into_iter().map(HouseholdSummary::from).collect())
    }

    /// Residents by name (张), full pinyin (zhangsan), initials (zs) or phone suffix (4+
    /// digits); ID numbers masked.
    pub fn search_residents(&self, query: String, limit: u32) -> Result<Vec<ResidentHit>> {
        let limit = to_usize("limit", limit)?;
        let rows = self.with(|s| s.search_residents(&query, limit))?;
        Ok(rows.into_iter().map(ResidentHit::from).collect())
    }

    /// A household's timeline: visits, records and tasks about it and every change, newest
    /// first.
    pub fn household_history(&self, id: String) -> Result<Vec<TimelineEntry>> {
        let rows = self.with(|s| s.household_history(&id))?;
        Ok(rows.into_iter().map(TimelineEntry::from).collect())
    }

    // ----- 民情 records -----

    /// Logs a 民情 record (offline); returns its id.
    pub fn create_record(&self, record: NewRecord) -> Result<String> {
        let new = record.to_core()?;
        let id = self.with(|s| s.create_record(new))?;
        self.notify_local(&id);
        Ok(id)
    }

    /// Moves a record in the ledger: 待处理 → 处理中 → 已办结 → 已回访.
    pub fn set_record_status(&self, record: String, status: String) -> Result<()> {
        let status: core::RecordStatus = parse(&status)?;
        self.write(&record, |s| s.set_record_status(&record, status))
    }

    /// Edits a record's description.
    pub fn set_record_description(&self, record: String, description: String) -> Result<()> {
        self.write(&record, |s| s.set_record_description(&record, &description))
    }

    /// Corrects a record's category (one of the vocabulary's categories).
    pub fn set_record_category(&self, record: String, category: String) -> Result<()> {
        let category: core::Category = parse(&category)?;
        self.write(&record, |s| s.set_record_category(&record, category))
    }

    /// Corrects where a record's concern is.
    pub fn set_record_place(&self, record: String, place: String) -> Result<()> {
        self.write(&record, |s| s.set_record_place(&record, &place))
    }

    /// A 民情 record, whole.
    pub fn record(&self, id: String) -> Result<RecordDetail> {
        self.with(|s| s.record_detail(&id)).map(RecordDetail::from)
    }

    /// 点单 from a 民情 record in one action: a task of the record's grid, category and
    /// household, linked to it, assigned at once when an assignee is named. The record then
    /// shows the task's progress (`record`, `records`). Returns the task's id.
    pub fn order_from_record(&self, record: String, order: OrderFromRecord) -> Result<String> {
        let order = order.to_core()?;
        let id = self.with(|s| s.order_from_record(&record, order))?;
        self.notify(ChangeEvent {
            origin: ChangeOrigin::Local,
            docs: vec![changed(&id), changed(&record)],
            everything: false,
        });
        Ok(id)
    }

    /// Records of a grid, filtered by status and/or category, newest first.
    pub fn records(
        &self,
        grid: String,
        status: Option<String>,
        category: Option<String>,
        limit: u32,
    ) -> Result<Vec<RecordSummary>> {
        parse_opt::<core::RecordStatus>(status.as_deref())?;
        parse_opt::<core::Category>(category.as_deref())?;
        let limit = to_usize("limit", limit)?;
        let rows =
            self.with(|s| s.records(&grid, status.as_deref(), category.as_deref(), limit))?;
        Ok(rows.into_iter().map(RecordSummary::from).collect())
    }

    // ----- 代办 tasks -----

    /// Places a 代办 order (点单), assigned at once when an assignee is named; returns the
    /// task's id.
    pub fn create_task(&self, task: NewTask) -> Result<String> {
        let new = task.to_core()?;
        let id = self.with(|s| s.create_task(new))?;
        self.notify_local(&id);
        Ok(id)
    }

    /// Records one five-order action; an action that does not apply to the task as it
    /// stands is [`XiuhuaError::Refused`] and nothing is written. An escalation is also
    /// queued for the server's check at the next sync. Returns the new state.
    pub fn task_action(&self, task: String, action: TaskAction) -> Result<TaskDetail> {
        let action = action.to_core()?;
        let detail = self.write(&task, |s| match action {
            core::TaskAction::Escalate { tier, unit } => {
                s.escalate_task(&task, tier, unit.as_deref())
            }
            other => s.task_action(&task, other),
        })?;
        Ok(TaskDetail::from(detail))
    }

    /// A task with its folded state, its events and their outcomes.
    pub fn task(&self, id: String) -> Result<TaskDetail> {
        self.with(|s| s.task(&id)).map(TaskDetail::from)
    }

    /// Open tasks assigned to `user`, soonest deadline first.
    pub fn my_tasks(&self, user: String) -> Result<Vec<TaskSummary>> {
        let rows = self.with(|s| s.my_tasks(&user))?;
        Ok(rows.into_iter().map(TaskSummary::from).collect())
    }

    /// Open tasks of a grid past their deadline, most overdue first.
    pub fn overdue_tasks(&self, grid: String) -> Result<Vec<TaskSummary>> {
        let rows = self.with(|s| s.overdue_tasks(&grid))?;
        Ok(rows.into_iter().map(TaskSummary::from).collect())
    }

    /// Tasks of a grid filtered by level (党群办 …) and/or status (`in_progress` …).
    pub fn tasks(
        &self,
        grid: String,
        level: Option<String>,
        status: Option<String>,
        limit: u32,
    ) -> Result<Vec<TaskSummary>> {
        parse_opt::<core::Level>(level.as_deref())?;
        parse_opt::<core::TaskStatus>(status.as_deref())?;
        let limit = to_usize("limit", limit)?;
        let rows = self.with(|s| s.tasks(&grid, level.as_deref(), status.as_deref(), limit))?;
        Ok(rows.into_iter().map(TaskSummary::from).collect())
    }

    /// The grid's ledger counts.
    pub fn ledger(&self, grid: String) -> Result<Ledger> {
        self.with(|s| s.ledger(&grid)).map(Ledger::from)
    }

    // ----- conflicts and history -----

    /// Households of a grid with fields holding concurrent values.
    pub fn households_with_conflicts(&self, grid: String) -> Result<Vec<HouseholdSummary>> {
        let rows = self.with(|s| s.households_with_conflicts(&grid))?;
        Ok(rows.into_iter().map(HouseholdSummary::from).collect())
    }

    /// 民情 records of a grid with fields holding concurrent values (settled like a
    /// household's, with `conflicts` and `resolve_conflict`).
    pub fn records_with_conflicts(&self, grid: String) -> Result<Vec<RecordSummary>> {
        let rows = self.with(|s| s.records_with_conflicts(&grid))?;
        Ok(rows.into_iter().map(RecordSummary::from).collect())
    }

    /// Tasks of a grid with rejected events (concurrent transitions that lost).
    pub fn tasks_with_conflicts(&self, grid: String) -> Result<Vec<TaskSummary>> {
        let rows = self.with(|s| s.tasks_with_conflicts(&grid))?;
        Ok(rows.into_iter().map(TaskSummary::from).collect())
    }

    /// The conflicting fields of a document.
    pub fn conflicts(&self, doc: String) -> Result<Vec<FieldConflict>> {
        let rows = self.with(|s| s.conflicts(&doc))?;
        Ok(rows.into_iter().map(FieldConflict::from).collect())
    }

    /// Settles a conflict by choosing one of its values (index into `values`); the choice
    /// syncs like any other change.
    pub fn resolve_conflict(&self, doc: String, path: String, choice: u32) -> Result<()> {
        let choice = to_usize("choice", choice)?;
        self.write(&doc, |s| s.resolve_conflict(&doc, &path, choice))
    }

    /// Who changed a document, when and what (the audit trail), oldest first.
    pub fn history(&self, doc: String) -> Result<Vec<HistoryEntry>> {
        let rows = self.with(|s| s.history(&doc))?;
        Ok(rows.into_iter().map(HistoryEntry::from).collect())
    }

    // ----- exchange without a server (tests, diagnostics) -----

    /// Every change of every document (for a peer that has nothing: tests, repair).
    pub fn export_all_changes(&self) -> Result<Vec<RemoteChange>> {
        let rows = self.with(|s| s.export_all())?;
        Ok(rows
            .into_iter()
            .map(|c| RemoteChange {
                doc: c.doc,
                change: c.change,
            })
            .collect())
    }

    /// Merges changes from elsewhere (any order, duplicates included) and tells the
    /// observers what changed.
    pub fn apply_changes(&self, changes: Vec<RemoteChange>) -> Result<MergeSummary> {
        let changes: Vec<core::RemoteChange> = changes
            .into_iter()
            .map(|c| core::RemoteChange {
                doc: c.doc,
                change: c.change,
            })
            .collect();
        let report = self.with(|s| s.apply_remote(&changes))?;
        let docs: Vec<ChangedDoc> = report
            .changed
            .iter()
            .map(|(id, kind)| ChangedDoc {
                id: id.clone(),
                kind: kind.as_str().to_string(),
            })
            .collect();
        if !docs.is_empty() {
            self.notify(ChangeEvent {
                origin: ChangeOrigin::Remote,
                docs: docs.clone(),
                everything: false,
            });
        }
        let n = |x: usize| u64::try_from(x).unwrap_or(u64::MAX);
        Ok(MergeSummary {
            changed: docs,
            applied: n(report.applied),
            duplicates: n(report.duplicates),
            waiting: n(report.waiting),
            new_conflicts: report.new_conflicts.into_iter().map(|(id, _)| id).collect(),
            newly_rejected: report
                .newly_rejected
                .into_iter()
                .map(|(task, event, reason)| format!("{task}: {event}: {reason}"))
                .collect(),
        })
    }
}
