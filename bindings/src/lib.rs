//! uniffi bindings of the Xiuhua core for Kotlin, Swift and Python.
//!
//! The only crate that knows uniffi (proc-macros, no UDL). A thin layer over `xiuhua-core`:
//! [`XiuhuaStore`] (one device's store, behind a mutex), records and enums mirroring the
//! core's types, [`XiuhuaError`], and the foreign traits [`StoreObserver`] and
//! [`SyncProgressListener`].
//!
//! **Architecture invariant:** nothing here panics across the FFI. No `unwrap`/`expect` on
//! anything that came through it; a poisoned lock is an error; bad input of every kind is a
//! [`XiuhuaError`] (see `tests/bad_input.rs`).

mod error;
mod lists;
mod status;
mod store;
mod sync;
mod types;

pub use error::XiuhuaError;
pub use lists::*;
pub use status::{LastSync, RefusedChange, TimeSource};
pub use store::{
    ChangeEvent, ChangeOrigin, ChangedDoc, MergeSummary, RemoteChange, StoreObserver, XiuhuaStore,
};
pub use sync::{
    Enrollment, Grant, Refusal, SyncPhase, SyncProgressListener, SyncReport, SyncStatus,
};
pub use types::*;

uniffi::setup_scaffolding!();
