// TEMPORARY STUB (overwritten by the real fold)
use crate::error::Result;
use crate::model::*;
pub const FOLD_VERSION: u32 = 1;
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView { pub status: TaskStatus, pub ordered: bool, pub level: Option<Level>, pub tier: Tier, pub linked_unit: Option<String>, pub assignee: Option<String>, pub deadline: Option<i64>, pub ordered_by: Option<String>, pub events: Vec<FoldedEvent>, pub last_rating: Option<Rating>, pub fold_version: u32 }
#[derive(Debug, Clone, PartialEq)]
pub struct FoldedEvent { pub event: TaskEvent, pub outcome: Outcome }
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome { Applied, Rejected { reason: String }, Held { reason: String } }
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rating { pub score: u8, pub comment: String, pub by: String, pub event_id: String, pub hlc: i64 }
pub fn fold<'a>(_events: impl IntoIterator<Item = &'a TaskEvent>) -> TaskView { todo!() }
impl TaskView {
    pub fn is_overdue(&self, _now_ms: i64) -> bool { todo!() }
    pub fn rejected(&self) -> impl Iterator<Item = &FoldedEvent> { self.events.iter() }
    pub fn heads(&self) -> Vec<String> { todo!() }
}
pub fn check(_view: &TaskView, _actor: &Actor, _action: &TaskAction) -> Result<()> { todo!() }
pub fn event_for(_action: &TaskAction, _id: String, _prev: Vec<String>, _actor: &Actor, _hlc: i64) -> TaskEvent { todo!() }
pub fn order_event(_level: Level, _deadline: Option<i64>, _text: String, _id: String, _actor: &Actor, _hlc: i64) -> TaskEvent { todo!() }
