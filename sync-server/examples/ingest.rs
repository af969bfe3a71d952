//! Ingest throughput: D devices push at once to P real `xiuhua-server serve` processes that
//! share one database, and the run prints changes stored per second.
//!
//! ```text
//! cargo build --release -p xiuhua-server --bins --examples
//! target/release/examples/ingest --backend postgres --processes 2 --devices 50
//! target/release/examples/ingest --backend sqlite --processes 1 --devices 50
//! ```
//!
//! Options: `--backend sqlite|postgres`, `--processes P` (SQLite: 1), `--devices D`,
//! `--grids G` (devices spread over G grids), `--records R` (per device),
//! `--batch B` (records per push). PostgreSQL: a fresh database `xiuhua_ingest_<pid>` on
//! `XIUHUA_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`), dropped
//! afterwards. The server binary is found beside this example (`XIUHUA_SERVER_BIN` overrides).
//!
//! Every device's changes are made and encoded before the clock starts (as a phone's outbox
//! is); the clock runs from the first push to the last acknowledgement. Clients and servers
//! share this machine's cores.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_bytes::ByteBuf;
use xiuhua_core::Store;
use xiuhua_core::model::*;
use xiuhua_core::sync::proto::{self, *};
use xiuhua_server::admin::{self, GrantTarget};
use xiuhua_server::{Config, server};

struct Args {
    backend: String,
    processes: usize,
    devices: usize,
    grids: usize,
    records: usize,
    batch: usize,
}

fn args() -> Args {
    let mut a = Args {
        backend: "postgres".into(),
        processes: 2,
        devices: 50,
        grids: 10,
        records: 200,
        batch: 20,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let val = v.get(i + 1).cloned().unwrap_or_default();
        let n = || val.parse::<usize>().expect("a number");
        match v[i].as_str() {
            "--backend" => a.backend = val.clone(),
            "--processes" => a.processes = n(),
            "--devices" => a.devices = n(),
            "--grids" => a.grids = n(),
            "--records" => a.records = n(),
            "--batch" => a.batch = n(),
            other => panic!("unknown option {other}"),
        }
        i += 2;
    }
    if a.backend == "sqlite" {
        a.processes = 1;
    }
    a
}

fn server_bin() -> PathBuf {
    if let Ok(p) = std::env::var("XIUHUA_SERVER_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(Path::parent)
        .unwrap()
        .join("xiuhua-server")
}

fn pg_admin_url() -> String {
    std::env::var("XIUHUA_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into())
}

async fn pg_exec(url: &str, sql: &str) {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL reachable");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    c.batch_execute(sql).await.unwrap();
}

fn start(env: &[(String, String)]) -> (Child, String) {
    let mut cmd = Command::new(server_bin());
    cmd.arg("serve")
        .env("XIUHUA_LISTEN", "127.0.0.1:0")
        .env("XIUHUA_LOG", "warn")
        .stdout(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("server binary (build it with --bins)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().trim_start_matches("listening on ").to_string();
    (child, url)
}

fn post(
    client: &reqwest::blocking::Client,
    url: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> Vec<u8> {
    let mut r = client
        .post(url)
        .header("content-type", proto::CONTENT_TYPE)
        .header(proto::PROTOCOL_HEADER, proto::PROTOCOL_VERSION.to_string())
        .body(body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().unwrap();
    let status = resp.status();
    let bytes = resp.bytes().unwrap().to_vec();
    assert!(status.is_success(), "{url}: {status}");
    bytes
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut env = vec![(
        "XIUHUA_DATA_DIR".to_string(),
        data.path().display().to_string(),
    )];
    let mut drop_db = None;
    if a.backend == "postgres" {
        let name = format!("xiuhua_ingest_{}", std::process::id());
        rt.block_on(pg_exec(&pg_admin_url(), &format!("CREATE DATABASE {name}")));
        let base = pg_admin_url();
        let url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);
        env.push(("XIUHUA_DATABASE_URL".into(), url));
        drop_db = Some(name);
    }
    // The directory, users, grants and enrollment codes, through the library.
    let cfg = Config::load_with(None, |k| {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    })
    .unwrap();
    let mut codes = Vec::new();
    rt.block_on(async {
        let (s, secret) = server::open_storage(&cfg).await.unwrap();
        let s = &*s;
        admin::add_district(s, "rd", "容东片区").await.unwrap();
        admin::add_community(s, "c1", "金湖社区", "rd")
            .await
            .unwrap();
        for g in 0..a.grids {
            admin::add_grid(s, &format!("g{g}"), &format!("第{g}网格"), "c1")
                .await
                .unwrap();
        }
        for d in 0..a.devices {
            let user = format!("u{d}");
            admin::add_user(s, &user, "王伟").await.unwrap();
            let grid = format!("g{}", d % a.grids);
            admin::grant(s, &user, GrantTarget::Grid(grid), "网格员", &[])
                .await
                .unwrap();
            codes.push(admin::enroll_code(s, &secret, &user).await.unwrap());
        }
    });
    let servers: Vec<(Child, String)> = (0..a.processes).map(|_| start(&env)).collect();
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    // Enroll every device and make its outbox.
    let t0 = Instant::now();
    let mut devices = Vec::new();
    let mut total_changes = 0u64;
    for (d, code) in codes.into_iter().enumerate() {
        let url = &servers[d % a.processes].1;
        let e: EnrollResponse = proto::decode(&post(
            &client,
            &format!("{url}/v1/enroll"),
            None,
            proto::encode(&EnrollRequest {
                code,
                device_name: format!("phone {d}"),
                previous_device: None,
            }),
        ))
        .unwrap();
        let mut store = Store::open_in_memory(
            Actor::new(&e.user, "王伟", Role::GridMember, &e.device).unwrap(),
        )
        .unwrap();
        let grid = format!("g{}", d % a.grids);
        let mut bodies = Vec::new();
        let mut made = 0;
        while made < a.records {
            for _ in 0..a.batch.min(a.records - made) {
                store
                    .create_record(NewRecord {
                        grid: grid.clone(),
                        category: Category::Environment,
                        description: format!("楼道堆放杂物 {made}"),
                        reporter: "张阿姨".into(),
                        household: None,
                        building: None,
                        place: "楼道".into(),
                    })
                    .unwrap();
                made += 1;
            }
            let entries = store.outbox(1_000_000).unwrap();
            total_changes += entries.len() as u64;
            let mut by_doc: BTreeMap<String, Vec<ByteBuf>> = BTreeMap::new();
            for e in &entries {
                by_doc
                    .entry(e.doc.clone())
                    .or_default()
                    .push(ByteBuf::from(e.change.clone()));
            }
            store
                .ack_outbox(&entries.iter().map(|e| e.id).collect::<Vec<_>>())
                .unwrap();
            bodies.push(proto::encode(&PushRequest {
                docs: by_doc
                    .into_iter()
                    .map(|(doc, changes)| DocChanges { doc, changes })
                    .collect(),
            }));
        }
        devices.push((url.clone(), e.tokens.access_token, bodies));
    }
    eprintln!(
        "prepared {} devices, {total_changes} changes in {:.1} s",
        a.devices,
        t0.elapsed().as_secs_f64()
    );
    // All devices push at once.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(a.devices + 1));
    let mut threads = Vec::new();
    for (url, token, bodies) in devices {
        let (client, barrier) = (client.clone(), barrier.clone());
        threads.push(std::thread::spawn(move || {
            barrier.wait();
            let mut stored = 0;
            for b in bodies {
                let r: PushResponse =
                    proto::decode(&post(&client, &format!("{url}/v1/push"), Some(&token), b))
                        .unwrap();
                stored += r.stored;
            }
            stored
        }));
    }
    barrier.wait();
    let start = Instant::now();
    let stored: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(stored, total_changes, "every change stored once");
    let rate = stored as f64 / secs;
    println!(
        "{{\"backend\":\"{}\",\"processes\":{},\"devices\":{},\"grids\":{},\"records_per_device\":{},\"batch\":{},\"changes\":{stored},\"seconds\":{secs:.3},\"ingest_changes_per_s\":{rate:.0}}}",
        a.backend, a.processes, a.devices, a.grids, a.records, a.batch
    );
    for (mut c, _) in servers {
        let _ = c.kill();
        let _ = c.wait();
    }
    if let Some(name) = drop_db {
        rt.block_on(pg_exec(
            &pg_admin_url(),
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        ));
    }
}
