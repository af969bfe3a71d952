//! A fresh PostgreSQL database per test, dropped afterwards.
//!
//! The server is `XIUHUA_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`,
//! which `scripts/ensure-postgres.sh` provides). A test FAILS when it cannot be reached: CI
//! guarantees a PostgreSQL, and a silently skipped suite proves nothing.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

/// The server the tests use.
pub fn admin_url() -> String {
    std::env::var("XIUHUA_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into())
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

async fn admin_client() -> tokio_postgres::Client {
    let url = admin_url();
    let (client, conn) = match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        Ok(c) => c,
        Err(e) => panic!(
            "PostgreSQL is not reachable at {url} ({e}); start it with scripts/ensure-postgres.sh \
             or set XIUHUA_TEST_POSTGRES_URL"
        ),
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

impl TestDb {
    pub async fn create() -> TestDb {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "xiuhua_test_{}_{}_{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let c = admin_client().await;
        c.batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        TestDb {
            url: with_database(&admin_url(), &name),
            name,
        }
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
