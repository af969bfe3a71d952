//! The Xiuhua sync server: a per-grid change feed that checks every write.
//!
//! Phones push the Automerge changes of their outbox, pull each grid's feed since a cursor,
//! bootstrap a fresh grid from a snapshot bundle and repair single documents. Every read and
//! write is checked against grants kept in relational tables (see `docs/adr/0001-sync.md`,
//! the design this crate implements; wire types live in `xiuhua_core::sync::proto`).
//!
//! Module map:
//! - [`config`]: configuration from a TOML file plus `XIUHUA_*` environment variables.
//! - [`auth`]: secrets, enrollment codes, HMAC-signed access tokens, refresh-token hashes.
//! - [`credentials`]: the refresh, enrollment and device-standing rules, pure functions
//!   both storage backends call.
//! - [`access`]: who may read or write which document (grants by grid and building) and
//!   who may escalate; pure functions.
//! - [`ingest`]: the checks of a push (decoding, actor pinning, dependencies, model
//!   validation, grid/kind fixed, grants, escalation tier), pure and backend-independent.
//! - [`storage`]: the async [`storage::Storage`] trait and its one backend so far,
//!   [`storage::sqlite::SqliteStorage`] (embedded SQLite, WAL, versioned schema).
//! - [`http`]: the axum router: `/v1/*` endpoints, `/healthz`, `/metrics`.
//! - [`metrics`]: Prometheus text counters.
//! - [`projection`]: the server's queryable projection (households, residents masked,
//!   visits, records, tasks folded, task events), one pure function over the core's.
//! - [`admin`]: the station's administration commands (directory, users, grants, devices).
//! - [`check`]: `xiuhua-server check`: verifies every stored document, quarantines broken ones.
//! - [`edge`]: enrollment attempt limits, long polls per device, connections per address.
//! - [`console`]: the station console under `/console/` (HTML, accounts, sessions, audit).
//! - [`server`]: binding, connection limits and timeouts, logging, graceful shutdown.
//!
//! **Architecture invariant:** no write reaches the change feed without passing
//! [`ingest`]; a push is one storage transaction; per-grid sequence numbers are assigned
//! under a per-grid lock held until commit, so a reader never sees seq `n + 1` before `n`.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod access;
pub mod admin;
pub mod auth;
pub mod check;
pub mod chunk;
pub mod config;
pub mod console;
pub mod credentials;
pub mod demo;
pub mod edge;
pub mod error;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod numbers;
pub mod projection;
pub mod server;
pub mod storage;

pub use config::Config;
pub use error::{ApiError, Refusal, RefusalKind};
pub use storage::{Storage, sqlite::SqliteStorage};

/// Milliseconds since the Unix epoch by the server's clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
