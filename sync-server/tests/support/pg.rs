//! A fresh PostgreSQL database per test, dropped afterwards.
//!
//! The server is `XIUHUA_TEST_POSTGRES_URL`; `scripts/test-all` always sets it (to a
//! throwaway cluster of `scripts/ensure-postgres.sh` when none is given). When it is set and
//! the server cannot be reached, the test FAILS: a silently skipped suite proves nothing.
//! When it is unset, `postgres://postgres@127.0.0.1:5432/test` is tried, and if nothing
//! answers there the PostgreSQL tests are skipped with a notice on stderr, so that
//! `cargo test` works on a machine without PostgreSQL.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Tried when `XIUHUA_TEST_POSTGRES_URL` is unset.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The server given in `XIUHUA_TEST_POSTGRES_URL`, if any.
fn given_url() -> Option<String> {
    std::env::var("XIUHUA_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
}

/// The server the tests use.
pub fn admin_url() -> String {
    given_url().unwrap_or_else(|| DEFAULT_URL.into())
}

/// `url` without its password, for messages.
pub fn redacted(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let Some(at) = rest.find('@') else {
        return url.to_string();
    };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end], &rest[at..]),
        None => url.to_string(),
    }
}

/// `url` with its database replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    format!("{host_part}/{db}{query}")
}

/// A database created for one test, dropped (with its connections) when this is dropped.
pub struct TestDb {
    pub url: String,
    pub name: String,
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let (client, conn) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_postgres::connect(url, tokio_postgres::NoTls),
    )
    .await
    .map_err(|_| "no answer within 10 s".to_string())?
    .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// A client on the test server; `None` (after a notice) when no server was given and none
/// answers at [`DEFAULT_URL`]. Panics when the given server does not answer.
async fn admin_client() -> Option<tokio_postgres::Client> {
    match given_url() {
        Some(url) => match connect(&url).await {
            Ok(c) => Some(c),
            Err(e) => panic!(
                "PostgreSQL is not reachable at XIUHUA_TEST_POSTGRES_URL = {} ({e})",
                redacted(&url)
            ),
        },
        None => match connect(DEFAULT_URL).await {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!(
                    "SKIPPED: this test needs PostgreSQL; XIUHUA_TEST_POSTGRES_URL is unset and \
                     {DEFAULT_URL} does not answer ({e}). Run scripts/test-all, or \
                     `scripts/ensure-postgres.sh cargo test ...`, or set XIUHUA_TEST_POSTGRES_URL."
                );
                None
            }
        },
    }
}

impl TestDb {
    /// A fresh database, or `None` when the PostgreSQL tests are skipped (see the module).
    pub async fn create() -> Option<TestDb> {
        static N: AtomicU32 = AtomicU32::new(0);
        let c = admin_client().await?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "xiuhua_test_{}_{}_{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        c.batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        Some(TestDb {
            url: with_database(&admin_url(), &name),
            name,
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok((c, conn)) =
                    tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls).await
                {
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    let _ = c
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}
