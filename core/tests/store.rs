//! Integration tests of the Xiuhua store: what a grid worker relies on when two phones work
//! offline on the same grid, when the disk fails, when a clock is wrong, and when input is bad.
//!
//! One test binary; each scenario lives in `tests/store/<scenario>.rs`.

// A test that meets an unexpected error must stop right there, with the error in the message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "store/common.rs"]
mod common;

#[path = "store/clock.rs"]
mod clock;
#[path = "store/convergence.rs"]
mod convergence;
#[path = "store/files.rs"]
mod files;
#[path = "store/history.rs"]
mod history;
#[path = "store/household_life.rs"]
mod household_life;
#[path = "store/input.rs"]
mod input;
#[path = "store/lists.rs"]
mod lists;
#[path = "store/merging.rs"]
mod merging;
#[path = "store/numbers.rs"]
mod numbers;
#[path = "store/queries.rs"]
mod queries;
#[path = "store/rebuild.rs"]
mod rebuild;
#[path = "store/record_to_task.rs"]
mod record_to_task;
#[path = "store/scope.rs"]
mod scope;
#[path = "store/text.rs"]
mod text;
#[path = "store/transaction.rs"]
mod transaction;
#[path = "store/two_devices.rs"]
mod two_devices;
