//! Xiuhua core: the offline-first store for grid households, 民情 records and 代办 tasks.
//!
//! See ARCHITECTURE.md at the repository root for the map of this crate.

pub mod access;
pub mod doc;
pub mod error;
pub mod hlc;
pub mod model;
pub mod numbers;
pub mod pinyin;
pub mod store;
pub mod sync;
pub mod task_act;
pub mod validate;
pub mod workflow;

pub use doc::{ConflictValue, DocKind, FieldChange, FieldConflict, HistoryEntry};
pub use error::{Error, Result};
pub use model::*;
pub use store::{MergeReport, OutboxEntry, RemoteChange, Store, TaskDetail};
