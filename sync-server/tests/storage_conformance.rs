//! Runs the storage conformance suite (`conformance/mod.rs`) unchanged against every backend:
//! SQLite in a temporary folder, and PostgreSQL in a fresh database on the server at
//! `XIUHUA_TEST_POSTGRES_URL`. The PostgreSQL cases fail, rather than skip, when that server
//! cannot be reached; with the variable unset they try `postgres://postgres@127.0.0.1:5432/test`
//! and are skipped with a notice when nothing answers there (`support/pg.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance;
#[path = "support/pg.rs"]
mod pg;

use std::sync::Arc;

use async_trait::async_trait;
use conformance::Factory;
use xiuhua_server::SqliteStorage;
use xiuhua_server::storage::Storage;
use xiuhua_server::storage::postgres::{PgOptions, PgStorage};

/// SQLite: every handle opens the same file in one temporary folder.
struct Sqlite(tempfile::TempDir);

impl Sqlite {
    async fn new() -> Option<Sqlite> {
        Some(Sqlite(tempfile::tempdir().unwrap()))
    }
}

#[async_trait]
impl Factory for Sqlite {
    async fn open(&self) -> Arc<dyn Storage> {
        Arc::new(SqliteStorage::open(self.0.path()).unwrap())
    }
    async fn overwrite_doc_bytes(&self, doc: &str, bytes: &[u8]) {
        let c =
            rusqlite::Connection::open(self.0.path().join(xiuhua_server::storage::sqlite::DB_FILE))
                .unwrap();
        c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        let n = c
            .execute(
                "UPDATE docs SET bytes = ?2 WHERE id = ?1",
                rusqlite::params![doc, bytes],
            )
            .unwrap();
        assert_eq!(n, 1);
    }
}

/// PostgreSQL: every handle is its own pool on one fresh database.
struct Postgres(pg::TestDb);

impl Postgres {
    /// `None` when the PostgreSQL tests are skipped.
    async fn new() -> Option<Postgres> {
        Some(Postgres(pg::TestDb::create().await?))
    }
}

#[async_trait]
impl Factory for Postgres {
    async fn open(&self) -> Arc<dyn Storage> {
        let opts = PgOptions {
            max_connections: 4,
            ..PgOptions::default()
        };
        Arc::new(PgStorage::open(&self.0.url, &opts).await.unwrap())
    }
    async fn overwrite_doc_bytes(&self, doc: &str, bytes: &[u8]) {
        let (c, conn) = tokio_postgres::connect(&self.0.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let n = c
            .execute("UPDATE docs SET bytes = $2 WHERE id = $1", &[&doc, &bytes])
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
}

macro_rules! conformance {
    ($backend:ident, $factory:ty, [$($case:ident),* $(,)?]) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(f) = <$factory>::new().await else { return };
                    conformance::$case(&f).await;
                }
            )*
        }
    };
}

macro_rules! all_cases {
    ($backend:ident, $factory:ty) => {
        conformance!(
            $backend,
            $factory,
            [
                directory_and_grants,
                devices_and_tokens,
                device_succession,
                refresh_rotation_rules,
                concurrent_refreshes_of_siblings,
                ordering_dedup_paging,
                bootstrap_and_scope,
                moves_follow_the_household,
                bootstrap_pages,
                refusals_store_nothing,
                escalation_tier,
                purge_info,
                concurrent_pushes,
                concurrent_same_push,
                slow_push_does_not_stall,
                concurrent_same_document,
                pages_bounded_by_bytes,
                device_quota,
                quarantine_broken_documents,
                projection_follows_pushes,
                console_accounts_sessions_audit,
                board_and_ledger_pages_match_the_rules,
                number_blocks_never_overlap,
            ]
        );
    };
}

all_cases!(sqlite, Sqlite);
all_cases!(postgres, Postgres);

/// PostgreSQL specifics around the suite: migrations are versioned, a newer schema and an
/// unreachable server are refused at start with a clear error, and health reflects the
/// database.
mod postgres_ops {
    use super::*;
    use xiuhua_server::storage::postgres::SCHEMA_VERSION;

    async fn sql(url: &str, q: &str) {
        let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        c.batch_execute(q).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn migrations_versioned_and_newer_schema_refused() {
        let Some(db) = pg::TestDb::create().await else {
            return;
        };
        let opts = PgOptions::default();
        let s = PgStorage::open(&db.url, &opts).await.unwrap();
        s.health().await.unwrap();
        // Opening again is a no-op (the schema is current).
        let s2 = PgStorage::open(&db.url, &opts).await.unwrap();
        s2.health().await.unwrap();
        let (c, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let v: i64 = c
            .query_one("SELECT MAX(version) FROM schema_migrations", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(v, SCHEMA_VERSION);
        sql(
            &db.url,
            &format!(
                "INSERT INTO schema_migrations VALUES ({}, 'from the future', 0)",
                SCHEMA_VERSION + 1
            ),
        )
        .await;
        let e = PgStorage::open(&db.url, &opts).await.unwrap_err();
        assert!(e.to_string().contains("newer than this server"), "{e}");
        // A running process's health now fails: its schema is not the one it knows.
        assert!(s.health().await.is_err());
        drop((s, s2));
    }

    #[tokio::test]
    async fn unreachable_database_is_a_clear_error() {
        let opts = PgOptions {
            connect_timeout_ms: 1_000,
            ..PgOptions::default()
        };
        // Port 1 on loopback: nothing listens there.
        let e = PgStorage::open("postgres://postgres:pw@127.0.0.1:1/x", &opts)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot connect to the database"), "{e}");
        assert!(!e.contains(":pw@"), "the password is not shown: {e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn health_follows_the_database_and_secret_is_shared() {
        let Some(db) = pg::TestDb::create().await else {
            return;
        };
        let opts = PgOptions {
            connect_timeout_ms: 1_000,
            ..PgOptions::default()
        };
        let a = PgStorage::open(&db.url, &opts).await.unwrap();
        let b = PgStorage::open(&db.url, &opts).await.unwrap();
        // The signing secret is the configured one and never stays in the database.
        assert!(a.signing_secret(None).await.is_err(), "no secret given");
        sql(
            &db.url,
            "INSERT INTO meta (key, value) VALUES ('secret', '\\x0101'::bytea)",
        )
        .await;
        assert_eq!(a.signing_secret(Some(&[1; 32])).await.unwrap(), vec![1; 32]);
        assert_eq!(b.signing_secret(Some(&[1; 32])).await.unwrap(), vec![1; 32]);
        let c = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(c.1);
        let left: i64 =
            c.0.query_one("SELECT count(*) FROM meta WHERE key = 'secret'", &[])
                .await
                .unwrap()
                .get(0);
        assert_eq!(left, 0, "the legacy secret row is deleted");
        a.health().await.unwrap();
        // Terminate every connection and forbid new ones: health reports the outage.
        sql(
            &pg::admin_url(),
            &format!(
                "ALTER DATABASE {0} WITH ALLOW_CONNECTIONS false;
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{0}'",
                db.name
            ),
        )
        .await;
        assert!(a.health().await.is_err());
        sql(
            &pg::admin_url(),
            &format!("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true", db.name),
        )
        .await;
        // And recovers when the database is back.
        let mut ok = false;
        for _ in 0..20 {
            if a.health().await.is_ok() {
                ok = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(ok, "health recovers");
        drop((a, b));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn notify_reaches_other_processes() {
        let Some(f) = Postgres::new().await else {
            return;
        };
        let a = f.open().await;
        let b = f.open().await;
        conformance::directory(&*a).await;
        let mut rx = b.subscribe().expect("postgres publishes grid events");
        // Let b's LISTEN connection come up.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let caller = conformance::device(&*a, "u-grid", "dev-a").await;
        let mut st = conformance::store(
            "u-grid",
            "王伟",
            xiuhua_core::model::Role::GridMember,
            "dev-a",
        );
        st.create_record(conformance::record("g1", None, 1))
            .unwrap();
        let o = conformance::push(&*a, &caller, conformance::drain(&mut st))
            .await
            .unwrap();
        let ev = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .expect("notified in time")
            .unwrap();
        assert_eq!(ev.grid, "g1");
        assert_eq!(ev.seq, o.grid_seqs[0].1);
    }
}
