//! Two real `xiuhua-server serve` processes on one PostgreSQL database (a fresh one on
//! `XIUHUA_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`): devices
//! enrolled and pushing through one process converge with devices pulling through the other;
//! a long poll waiting on one process wakes when the other stores a change (LISTEN/NOTIFY);
//! one process is SIGKILLed mid-run and restarted, and nothing is lost.
//!
//! Fails (does not skip) when the PostgreSQL of `XIUHUA_TEST_POSTGRES_URL` is unreachable;
//! skipped with a notice when the variable is unset and nothing answers on the default
//! (`support/pg.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/pg.rs"]
mod pg;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use xiuhua_core::Store;
use xiuhua_core::model::*;
use xiuhua_core::sync::http::HttpTransport;
use xiuhua_core::sync::proto::{self, PullRequest, PullResponse};
use xiuhua_core::sync::{self, Transport};

const BIN: &str = env!("CARGO_BIN_EXE_xiuhua-server");

fn command(db: &str, data: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.env("XIUHUA_DATABASE_URL", db)
        .env(
            "XIUHUA_SECRET",
            "multiprocess-test-signing-secret-0123456789",
        )
        .env("XIUHUA_DATA_DIR", data)
        .env("XIUHUA_LOG", "warn")
        .env_remove("XIUHUA_CONFIG")
        .env_remove("XIUHUA_LISTEN");
    c
}

/// Runs an admin subcommand with the servers' configuration; returns its stdout.
fn admin(db: &str, data: &Path, args: &[&str]) -> String {
    let out = command(db, data).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "xiuhua-server {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(db: &str, data: &Path) -> Server {
        let mut child = command(db, data)
            .arg("serve")
            .env("XIUHUA_LISTEN", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Server { child, url }
    }

    /// SIGKILL: no graceful shutdown, requests in flight cut.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn enroll(db: &str, data: &Path, server: &str, user: &str, name: &str) -> Store {
    let out = admin(db, data, &["enroll-code", user]);
    let code = out.lines().next().unwrap().trim().to_string();
    let mut t = HttpTransport::new(server).unwrap();
    let e = sync::enroll(&mut t, &code, &format!("{user}'s phone")).unwrap();
    let actor = Actor::new(user, name, Role::GridMember, &e.device).unwrap();
    let mut store = Store::open_in_memory(actor).unwrap();
    store.save_enrollment(server, &e).unwrap();
    store
}

fn record(n: usize) -> NewRecord {
    NewRecord {
        grid: "g1".into(),
        category: Category::Environment,
        description: format!("楼道堆放杂物 #{n}"),
        reporter: "张阿姨".into(),
        household: None,
        building: None,
        place: "楼道".into(),
    }
}

fn sync_via(store: &mut Store, url: &str) -> xiuhua_core::Result<sync::SyncReport> {
    let mut t = HttpTransport::new(url).unwrap();
    sync::sync(store, &mut t, None)
}

fn record_count(store: &Store) -> i64 {
    store
        .ledger("g1")
        .unwrap()
        .records
        .iter()
        .map(|r| r.2)
        .sum()
}

fn raw_pull(url: &str, token: &str, since: u64, limit: u32, wait_ms: u32) -> PullResponse {
    let mut t = HttpTransport::new(url).unwrap();
    let body = proto::encode(&PullRequest {
        grid: "g1".into(),
        since,
        limit,
        wait_ms,
    });
    let (status, reply) = t.post("/v1/pull", body, Some(token)).unwrap();
    assert_eq!(status, 200, "pull: {}", String::from_utf8_lossy(&reply));
    proto::decode(&reply).unwrap()
}

fn access_token(store: &Store) -> String {
    store.credentials().unwrap().unwrap().access_token
}

#[test]
fn two_processes_share_one_database() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some(db) = rt.block_on(pg::TestDb::create()) else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let (url, dir) = (db.url.as_str(), data.path());
    for args in [
        &["district", "add", "rd", "容东片区"][..],
        &["community", "add", "c1", "金湖社区", "--district", "rd"],
        &["grid", "add", "g1", "第一网格", "--community", "c1"],
        &["user", "add", "u-a", "王伟"],
        &["user", "add", "u-b", "李娜"],
        &["grant", "u-a", "--grid", "g1", "--role", "网格员"],
        &["grant", "u-b", "--grid", "g1", "--role", "网格员"],
    ] {
        admin(url, dir, args);
    }
    let mut a = Server::start(url, dir);
    let b = Server::start(url, dir);
    // Enrolled through different processes: tokens of one are good on the other (the signing
    // secret lives in the database).
    let mut dev_a = enroll(url, dir, &a.url, "u-a", "王伟");
    let mut dev_b = enroll(url, dir, &b.url, "u-b", "李娜");

    // Push through A, pull through B.
    for i in 0..20 {
        dev_a.create_record(record(i)).unwrap();
    }
    let r = sync_via(&mut dev_a, &a.url).unwrap();
    assert_eq!(r.pushed, 20);
    let r = sync_via(&mut dev_b, &b.url).unwrap();
    assert_eq!(r.pulled + r.bootstrapped_docs, 20, "{r:?}");
    assert_eq!(record_count(&dev_b), 20);
    // Tokens cross processes: B's device syncs through A too.
    sync_via(&mut dev_b, &a.url).unwrap();

    // A long poll on B wakes when A stores a change.
    let since = dev_b.sync_cursor("g1").unwrap();
    let token = access_token(&dev_b);
    let b_url = b.url.clone();
    let waiter = std::thread::spawn(move || {
        let start = Instant::now();
        let page = raw_pull(&b_url, &token, since, 100, 20_000);
        (start.elapsed(), page)
    });
    std::thread::sleep(Duration::from_millis(500));
    dev_a.create_record(record(100)).unwrap();
    let pushed_at = Instant::now();
    sync_via(&mut dev_a, &a.url).unwrap();
    let (waited, page) = waiter.join().unwrap();
    assert_eq!(page.changes.len(), 1, "the waiting pull got the new change");
    assert!(
        waited < Duration::from_secs(10),
        "woken by the other process's NOTIFY, not by the 20 s timeout: waited {waited:?}"
    );
    eprintln!(
        "long poll on B woke {:?} after A's sync started",
        pushed_at.elapsed()
    );

    // A is SIGKILLed while device A keeps syncing through it, then restarted (on a new port).
    let current = Arc::new(Mutex::new(a.url.clone()));
    let rounds_ok = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    const ROUNDS: usize = 12;
    const PER_ROUND: usize = 10;
    let writer = {
        let (current, rounds_ok, done) = (current.clone(), rounds_ok.clone(), done.clone());
        std::thread::spawn(move || {
            let mut failures = 0;
            for round in 0..ROUNDS {
                for i in 0..PER_ROUND {
                    dev_a.create_record(record(1000 + round * 100 + i)).unwrap();
                }
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    let url = current.lock().unwrap().clone();
                    match sync_via(&mut dev_a, &url) {
                        Ok(_) if dev_a.outbox_len().unwrap() == 0 => break,
                        Ok(_) => {}
                        Err(_) => failures += 1,
                    }
                    assert!(Instant::now() < deadline, "device A never got through");
                    std::thread::sleep(Duration::from_millis(50));
                }
                rounds_ok.fetch_add(1, Ordering::SeqCst);
            }
            done.store(true, Ordering::SeqCst);
            (dev_a, failures)
        })
    };
    while rounds_ok.load(Ordering::SeqCst) < 3 {
        std::thread::sleep(Duration::from_millis(10));
    }
    a.kill();
    std::thread::sleep(Duration::from_millis(300));
    // Meanwhile B keeps serving.
    sync_via(&mut dev_b, &b.url).unwrap();
    let a2 = Server::start(url, dir);
    *current.lock().unwrap() = a2.url.clone();
    let (mut dev_a, failures) = writer.join().unwrap();
    assert!(done.load(Ordering::SeqCst));
    eprintln!("device A saw {failures} failed syncs while its server was down");
    assert_eq!(dev_a.outbox_len().unwrap(), 0);

    // Nothing lost: B (through process B) has every record A made, and the feed is 1..N.
    let total = 21 + ROUNDS * PER_ROUND;
    sync_via(&mut dev_b, &b.url).unwrap();
    assert_eq!(record_count(&dev_b) as usize, total);
    sync_via(&mut dev_a, &a2.url).unwrap();
    assert_eq!(record_count(&dev_a) as usize, total);
    let token = access_token(&dev_b);
    let mut since = 0;
    let mut seqs = Vec::new();
    loop {
        let p = raw_pull(&a2.url, &token, since, 50, 0);
        seqs.extend(p.changes.iter().map(|c| c.seq));
        since = p.next;
        if !p.more {
            break;
        }
    }
    assert_eq!(seqs, (1..=since).collect::<Vec<_>>(), "no gap, no repeat");
    assert_eq!(seqs.len(), total, "one change per record");
    // Both processes report healthy.
    for u in [&a2.url, &b.url] {
        let body = reqwest::blocking::get(format!("{u}/healthz"))
            .unwrap()
            .text()
            .unwrap();
        assert_eq!(body.trim(), "ok");
    }
    drop((a2, b));
}

#[test]
fn unreachable_database_fails_at_start() {
    let data = tempfile::tempdir().unwrap();
    let out = command("postgres://postgres:hunter2@127.0.0.1:1/none", data.path())
        .env("XIUHUA_DB_CONNECT_TIMEOUT_MS", "1000")
        .arg("serve")
        .env("XIUHUA_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot connect to the database"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}
