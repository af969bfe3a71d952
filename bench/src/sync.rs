//! `xiuhua-bench sync`: the sync figures with the server and the devices as separate
//! processes on loopback, and wire bytes counted at the TCP level by a relay in this process.
//!
//! - The server is the release `xiuhua-server` next to this executable, on a temporary data
//!   folder (SQLite) or a fresh PostgreSQL database (`--backend postgres`, dropped at the
//!   end). The directory, the user and the enrollment codes are seeded with its admin
//!   subcommands.
//! - Devices connect to a [`Proxy`]: one listening thread, two copying threads per
//!   connection, counting the bytes relayed each way.
//! - Each device is this binary re-run as `__sync-device ROLE …`; it prints one JSON line.
//!
//! Upload path: the server pins every change's actor to the pushing device, and the
//! reference documents are built with fixed actors, so the uploading device (A) rebuilds
//! every document of the mapped workload with its own device id as actor (one change per
//! document, as `mapping::build` does) and pushes them to `/v1/push` in batches shaped like
//! the sync engine's (≤ 2,000 changes, ≤ 4 MiB of changes per request). A then holds nothing
//! locally; the edits are made on devices that bootstrapped the grid.

mod png;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_bytes::ByteBuf;
use serde_json::{Value, json};
use xiuhua_core::hlc::Hlc;
use xiuhua_core::sync::http::HttpTransport;
use xiuhua_core::sync::proto::{self, DocChanges, PushRequest, PushResponse};
use xiuhua_core::sync::{SyncReport, Transport};
use xiuhua_core::{Actor, Category, NewRecord, NewVisit, RecordStatus, Role, Store, doc};

use crate::error::{Context, Result, msg};
use crate::{mapping, sys, workload};

/// The hidden subcommand a device process runs.
pub const DEVICE_CHILD: &str = "__sync-device";

pub const USAGE: &str =
    "  xiuhua-bench sync --scale K --json FILE [--backend sqlite|postgres] [--runs N]
                    [--devices N] [--workload-dir DIR]
  xiuhua-bench sync-chart --json F1 F4 F16 … --png OUT.png";

pub(crate) const USER: &str = "u-bench";
pub(crate) const USER_NAME: &str = "基准测试员";
pub(crate) const ROLE: &str = "社区工作者";

/// Goals at scale 1: (figure, limit, unit, at most?).
const GOALS: &[(&str, f64, &str, bool)] = &[
    ("bootstrap_s", 0.5, "s", true),
    ("bootstrap_wire_bytes", 2_000_000.0, "B", true),
    ("bootstrap_client_rss_bytes", 80_000_000.0, "B", true),
    ("upload_s", 1.5, "s", true),
    ("upload_wire_bytes", 2_000_000.0, "B", true),
    ("edits100_s", 0.1, "s", true),
    ("edits100_wire_bytes", 20_000.0, "B", true),
    ("ingest_changes_per_s", 5_000.0, "/s", false),
];

// ----- options -----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct Opts {
    scale: usize,
    json: PathBuf,
    backend: Backend,
    runs: usize,
    devices: usize,
    workload_dir: Option<PathBuf>,
}

pub fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        scale: 0,
        json: PathBuf::new(),
        backend: Backend::Sqlite,
        runs: 3,
        devices: 50,
        workload_dir: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .context_with(|| format!("{name} needs a value\n\n{USAGE}"))
        };
        let mut number = |name: &str| -> Result<usize> {
            let v = value(name)?;
            let n: usize = v
                .parse()
                .context_with(|| format!("{name} {v:?} is not a whole number"))?;
            if n == 0 {
                return Err(msg(format!("{name} must be at least 1")));
            }
            Ok(n)
        };
        match a.as_str() {
            "--scale" => o.scale = number("--scale")?,
            "--runs" => o.runs = number("--runs")?,
            "--devices" => o.devices = number("--devices")?,
            "--json" => o.json = PathBuf::from(value("--json")?),
            "--workload-dir" => o.workload_dir = Some(PathBuf::from(value("--workload-dir")?)),
            "--backend" => {
                o.backend = match value("--backend")?.as_str() {
                    "sqlite" => Backend::Sqlite,
                    "postgres" => Backend::Postgres,
                    other => return Err(msg(format!("unknown backend {other:?}"))),
                }
            }
            other => return Err(msg(format!("unknown option {other:?}\n\n{USAGE}"))),
        }
    }
    if o.scale == 0 {
        return Err(msg(format!("--scale is required\n\n{USAGE}")));
    }
    if o.json.as_os_str().is_empty() {
        return Err(msg(format!("--json is required\n\n{USAGE}")));
    }
    Ok(o)
}

// ----- the TCP relay -----

/// A relay on 127.0.0.1 to one server, counting bytes both ways.
pub(crate) struct Proxy {
    pub(crate) url: String,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
}

impl Proxy {
    fn start(target: SocketAddr) -> Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the relay")?;
        let addr = listener.local_addr()?;
        let up = Arc::new(AtomicU64::new(0));
        let down = Arc::new(AtomicU64::new(0));
        let (u, d) = (up.clone(), down.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                let (u, d) = (u.clone(), d.clone());
                std::thread::spawn(move || relay(client, server, &u));
                std::thread::spawn(move || relay(s2, c2, &d));
            }
        });
        Ok(Proxy {
            url: format!("http://{addr}"),
            up,
            down,
        })
    }

    /// Bytes relayed so far, both directions.
    fn total(&self) -> u64 {
        self.up.load(Ordering::SeqCst) + self.down.load(Ordering::SeqCst)
    }
}

fn relay(mut from: TcpStream, mut to: TcpStream, count: &AtomicU64) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                count.fetch_add(n as u64, Ordering::SeqCst);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

// ----- the server processes -----

fn server_bin() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let bin = exe
        .parent()
        .context("this executable has no folder")?
        .join(format!("xiuhua-server{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        return Err(msg(format!(
            "no server binary at {}: build it with `cargo build --release -p xiuhua-server`",
            bin.display()
        )));
    }
    Ok(bin)
}

/// Where the server keeps its data: the same for every process of a run.
pub(crate) struct Station {
    bin: PathBuf,
    env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
    database: Option<String>,
}

fn psql(sql: &str) -> Result<()> {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()
        .context("running psql (is PostgreSQL on 127.0.0.1:5432?)")?;
    if !out.status.success() {
        return Err(msg(format!(
            "psql -c {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

impl Station {
    pub(crate) fn new(backend: Backend) -> Result<Station> {
        let dir = tempfile::tempdir().context("creating the server's data folder")?;
        let mut env = vec![
            (
                "XIUHUA_DATA_DIR".to_string(),
                dir.path().display().to_string(),
            ),
            ("XIUHUA_LOG".to_string(), "warn".to_string()),
            // Every simulated phone connects from loopback (through the relay): the
            // per-address cap is for one real client, not for all of them.
            (
                "XIUHUA_MAX_CONNECTIONS_PER_IP".to_string(),
                "4096".to_string(),
            ),
            ("XIUHUA_MAX_CONNECTIONS".to_string(), "4096".to_string()),
        ];
        let mut database = None;
        if backend == Backend::Postgres {
            let name = format!(
                "xiuhua_bench_{}_{}",
                std::process::id(),
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            );
            psql(&format!("CREATE DATABASE {name}"))?;
            env.push((
                "XIUHUA_DATABASE_URL".to_string(),
                format!("postgres://postgres@127.0.0.1:5432/{name}"),
            ));
            // Every process and admin command of the station shares one signing secret.
            env.push((
                "XIUHUA_SECRET".to_string(),
                format!("bench-station-secret-{name}-0123456789abcdef"),
            ));
            database = Some(name);
        }
        Ok(Station {
            bin: server_bin()?,
            env,
            _dir: dir,
            database,
        })
    }

    pub(crate) fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env_remove("XIUHUA_CONFIG");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    pub(crate) fn admin(&self, args: &[&str]) -> Result<String> {
        let out = self
            .command()
            .args(args)
            .output()
            .context("running xiuhua-server")?;
        if !out.status.success() {
            return Err(msg(format!(
                "xiuhua-server {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub(crate) fn enroll_code(&self) -> Result<String> {
        let out = self.admin(&["enroll-code", USER])?;
        Ok(out.lines().next().context("no code printed")?.trim().into())
    }

    pub(crate) fn serve(&self) -> Result<Server> {
        self.serve_with(&[])
    }

    /// [`Station::serve`] with more environment (e.g. the console on).
    pub(crate) fn serve_with(&self, env: &[(&str, &str)]) -> Result<Server> {
        let mut child = self
            .command()
            .envs(env.iter().copied())
            .arg("serve")
            .env("XIUHUA_LISTEN", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting xiuhua-server serve")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(a) = line.trim().strip_prefix("listening on http://") {
                        break a.to_string();
                    }
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(msg("the server exited before printing its address"));
                }
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let target: SocketAddr = addr
            .parse()
            .context_with(|| format!("server address {addr:?}"))?;
        let proxy = Proxy::start(target)?;
        Ok(Server {
            child,
            proxy,
            addr: target,
        })
    }
}

impl Drop for Station {
    fn drop(&mut self) {
        if let Some(db) = &self.database
            && let Err(e) = psql(&format!("DROP DATABASE IF EXISTS {db}"))
        {
            eprintln!("xiuhua-bench: could not drop database {db}: {e}");
        }
    }
}

pub(crate) struct Server {
    child: Child,
    pub(crate) proxy: Proxy,
    /// The server itself (not through the relay).
    pub(crate) addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ----- device processes -----

fn device_cmd(role: &str, args: &[String]) -> Result<Command> {
    let mut cmd = Command::new(std::env::current_exe().context("finding this executable")?);
    cmd.arg(DEVICE_CHILD).arg(role).args(args);
    Ok(cmd)
}

/// Runs a device to its end; its JSON line.
pub(crate) fn device(role: &str, args: &[String]) -> Result<Value> {
    let out = device_cmd(role, args)?
        .stderr(Stdio::inherit())
        .output()
        .context("running a device process")?;
    if !out.status.success() {
        return Err(msg(format!("device {role} {args:?} failed")));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context_with(|| format!("device {role} printed no JSON: {text}"))?;
    Ok(serde_json::from_str(line)?)
}

pub(crate) fn s(v: impl ToString) -> String {
    v.to_string()
}

fn f64_of(v: &Value, k: &str) -> Result<f64> {
    v.get(k)
        .and_then(Value::as_f64)
        .context_with(|| format!("{k} missing in {v}"))
}

fn median(v: &[f64]) -> f64 {
    crate::median(v)
}

fn epoch_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

// ----- the run -----

pub fn run(o: &Opts) -> Result<()> {
    let k = o.scale;
    let cache = o
        .workload_dir
        .clone()
        .unwrap_or_else(workload::default_cache_dir);
    let (h, r, t) = (
        workload::BASE_H * k,
        workload::BASE_R * k,
        workload::BASE_T * k,
    );
    eprintln!(
        "xiuhua-bench sync: scale {k} ({h} households, {r} records, {t} tasks), {:?}",
        o.backend
    );
    let wpath = workload::generate(&cache, h, r, t)?;
    let grid = {
        let w = workload::read(&wpath)?;
        w.households
            .first()
            .map(|h| h.grid_id.clone())
            .context("the workload has no households")?
    };

    let station = Station::new(o.backend)?;
    station.admin(&["district", "add", "bd", "基准片区"])?;
    station.admin(&["community", "add", "bc", "基准社区", "--district", "bd"])?;
    station.admin(&["grid", "add", &grid, "基准网格", "--community", "bc"])?;
    station.admin(&["user", "add", USER, USER_NAME])?;
    station.admin(&["grant", USER, "--grid", &grid, "--role", ROLE])?;
    let server = station.serve()?;
    let proxy = &server.proxy;
    let tmp = tempfile::tempdir().context("creating the devices' folder")?;
    let store = |name: &str| tmp.path().join(format!("{name}.db")).display().to_string();

    // Upload: device A pushes the whole grid (one run: a second would only find duplicates).
    let a = store("a");
    device(
        "enroll",
        &[s(&proxy.url), a.clone(), station.enroll_code()?],
    )?;
    let before = proxy.total();
    let up = device(
        "upload",
        &[s(&proxy.url), a, s(k), cache.display().to_string()],
    )?;
    let upload_wire = proxy.total() - before;
    let upload_s = f64_of(&up, "seconds")?;
    eprintln!(
        "  upload: {:.3} s, {} wire bytes, {} changes stored",
        upload_s,
        upload_wire,
        up.get("stored").unwrap_or(&Value::Null)
    );

    // Bootstrap: fresh devices B1..Bn, each its own process.
    let mut boots = Vec::new();
    let mut bstores = Vec::new();
    for run in 0..o.runs.max(2) {
        let b = store(&format!("b{run}"));
        device(
            "enroll",
            &[s(&proxy.url), b.clone(), station.enroll_code()?],
        )?;
        let before = proxy.total();
        let v = device("sync", &[s(&proxy.url), b.clone()])?;
        let wire = proxy.total() - before;
        eprintln!(
            "  bootstrap run {}: {:.3} s, {} wire bytes, peak RSS {:.1} MB, {} docs",
            run + 1,
            f64_of(&v, "seconds")?,
            wire,
            f64_of(&v, "vm_hwm_bytes")? / 1e6,
            v.get("bootstrapped_docs").unwrap_or(&Value::Null)
        );
        boots.push((v, wire));
        bstores.push(b);
    }
    let boot_s: Vec<f64> = boots
        .iter()
        .map(|(v, _)| f64_of(v, "seconds"))
        .collect::<Result<_>>()?;
    let boot_wire: Vec<f64> = boots.iter().map(|(_, w)| *w as f64).collect();
    let boot_rss: Vec<f64> = boots
        .iter()
        .map(|(v, _)| f64_of(v, "vm_hwm_bytes"))
        .collect::<Result<_>>()?;

    // 100 edits on one device, its sync, then the other device's sync.
    let mut edits = Vec::new();
    for run in 0..o.runs {
        let before = proxy.total();
        let e = device(
            "edit",
            &[
                s(&proxy.url),
                bstores[0].clone(),
                s(k),
                cache.display().to_string(),
                s(run),
            ],
        )?;
        let p = device("sync", &[s(&proxy.url), bstores[1].clone()])?;
        let wire = proxy.total() - before;
        let secs = f64_of(&e, "seconds")? + f64_of(&p, "seconds")?;
        eprintln!(
            "  edits100 run {}: {:.3} s (A sync {:.3} s + B sync {:.3} s), {} wire bytes, B pulled {}",
            run + 1,
            secs,
            f64_of(&e, "seconds")?,
            f64_of(&p, "seconds")?,
            wire,
            p.get("pulled").unwrap_or(&Value::Null)
        );
        edits.push((secs, wire as f64));
    }

    // Ingest: N devices pushing at once (2 server processes for PostgreSQL).
    let second = match o.backend {
        Backend::Postgres => Some(station.serve()?),
        Backend::Sqlite => None,
    };
    let ingest = ingest(&station, &server, second.as_ref(), &grid, o.devices, &tmp)?;
    drop(second);

    let figures = json!({
        "scale": k,
        "backend": match o.backend { Backend::Sqlite => "sqlite", Backend::Postgres => "postgres" },
        "docs": h + r + t,
        "upload_s": upload_s,
        "upload_wire_bytes": upload_wire,
        "upload_runs": 1,
        "upload_changes_stored": up.get("stored"),
        "upload_body_bytes_sent": up.get("bytes_sent"),
        "upload_body_bytes_received": up.get("bytes_received"),
        "upload_requests": up.get("requests"),
        "bootstrap_s": median(&boot_s),
        "bootstrap_s_runs": boot_s,
        "bootstrap_wire_bytes": median(&boot_wire),
        "bootstrap_body_bytes_received": boots[0].0.get("bytes_received"),
        "bootstrap_client_rss_bytes": boot_rss.iter().copied().fold(0.0, f64::max),
        "bootstrap_runs": boots.len(),
        "edits100_s": median(&edits.iter().map(|e| e.0).collect::<Vec<_>>()),
        "edits100_s_runs": edits.iter().map(|e| e.0).collect::<Vec<_>>(),
        "edits100_wire_bytes": median(&edits.iter().map(|e| e.1).collect::<Vec<_>>()),
        "edits100_runs": edits.len(),
        "edits100_note": "sum of device A's sync (push of 100 edits) and device B's sync (pull), each timed inside its process; process start-up excluded",
        "ingest_changes_per_s": ingest.get("changes_per_s"),
        "ingest": ingest,
        "ingest_runs": 1,
        "goals_at_scale_1": GOALS.iter().map(|(n, v, _, _)| (n.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "pouchdb": {"download_s": 3.1, "download_bytes": 2_700_000, "edits100_s": 0.31, "edits100_bytes": 200_000},
        "wire_bytes": "TCP payload bytes relayed both ways by a proxy in the bench process (HTTP headers included)",
        "machine": sys::machine(),
    });
    std::fs::write(&o.json, serde_json::to_string_pretty(&figures)? + "\n")
        .context_with(|| format!("writing {}", o.json.display()))?;
    print_table(&figures);
    println!("figures written to {}", o.json.display());
    drop(server);
    drop(station);
    Ok(())
}

fn ingest(
    station: &Station,
    first: &Server,
    second: Option<&Server>,
    grid: &str,
    n: usize,
    tmp: &tempfile::TempDir,
) -> Result<Value> {
    const PER_DEVICE: usize = 100;
    let mut children = Vec::new();
    for i in 0..n {
        let server = match (second, i % 2) {
            (Some(s2), 1) => s2,
            _ => first,
        };
        let store = tmp.path().join(format!("ingest-{i}.db"));
        let child = device_cmd(
            "ingest",
            &[
                s(&server.proxy.url),
                store.display().to_string(),
                station.enroll_code()?,
                grid.to_string(),
                s(PER_DEVICE),
            ],
        )?
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting an ingest device")?;
        children.push(child);
    }
    // Barrier: every device has its changes ready.
    let mut readers = Vec::new();
    for c in &mut children {
        let out = c.stdout.take().context("device stdout")?;
        let mut r = BufReader::new(out);
        let mut line = String::new();
        r.read_line(&mut line)?;
        if line.trim() != "ready" {
            return Err(msg(format!("an ingest device said {line:?}")));
        }
        readers.push(r);
    }
    for c in &mut children {
        c.stdin.take().context("device stdin")?.write_all(b"go\n")?;
    }
    let mut results = Vec::new();
    for (c, mut r) in children.iter_mut().zip(readers) {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let status = c.wait()?;
        if !status.success() {
            return Err(msg("an ingest device failed"));
        }
        results.push(serde_json::from_str::<Value>(line.trim())?);
    }
    let start = results
        .iter()
        .map(|v| f64_of(v, "start_epoch_s"))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .fold(f64::INFINITY, f64::min);
    let end = results
        .iter()
        .map(|v| f64_of(v, "end_epoch_s"))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .fold(0.0, f64::max);
    let stored: f64 = results
        .iter()
        .map(|v| f64_of(v, "stored"))
        .sum::<Result<f64>>()?;
    let span = end - start;
    let per_s = stored / span;
    eprintln!(
        "  ingest: {n} device processes × {PER_DEVICE} changes on {} server process(es): {stored} stored in {span:.3} s = {per_s:.0}/s",
        if second.is_some() { 2 } else { 1 }
    );
    Ok(json!({
        "changes_per_s": per_s,
        "devices": n,
        "device_processes": n,
        "server_processes": if second.is_some() { 2 } else { 1 },
        "changes_per_device": PER_DEVICE,
        "changes_stored": stored,
        "span_s": span,
        "method": "each device process enrolls and creates its records (one change each) through the Store API, waits at a barrier (stdin), then pushes its whole outbox in one /v1/push; span from the first push start to the last push end",
    }))
}

fn print_table(f: &Value) {
    let scale = f.get("scale").and_then(Value::as_u64).unwrap_or(0);
    println!(
        "\nxiuhua-bench sync, scale {scale}, backend {}",
        f.get("backend").and_then(Value::as_str).unwrap_or("?")
    );
    let goal_note = if scale == 1 { "goal" } else { "goal (at 1×)" };
    println!(
        "{:<28} {:>14}   {:<22} PouchDB",
        "figure", "value", goal_note
    );
    let pouch = [
        ("bootstrap_s", "3.1 s"),
        ("bootstrap_wire_bytes", "2.7 MB"),
        ("edits100_s", "0.31 s"),
        ("edits100_wire_bytes", "0.20 MB"),
    ];
    for (key, limit, unit, at_most) in GOALS {
        let v = f.get(*key).and_then(Value::as_f64);
        let text = match (v, *unit) {
            (None, _) => "—".to_string(),
            (Some(x), "B") if *key == "edits100_wire_bytes" => format!("{:.1} KB", x / 1e3),
            (Some(x), "B") => format!("{:.2} MB", x / 1e6),
            (Some(x), "s") => format!("{x:.3} s"),
            (Some(x), _) => format!("{x:.0} /s"),
        };
        let limit_text = match *unit {
            "B" if *key == "edits100_wire_bytes" => format!("{:.0} KB", limit / 1e3),
            "B" => format!("{:.0} MB", limit / 1e6),
            "s" => format!("{limit} s"),
            _ => format!("{limit:.0} /s"),
        };
        let verdict = match v {
            Some(x) if scale == 1 => {
                if (*at_most && x <= *limit) || (!*at_most && x >= *limit) {
                    "  met"
                } else {
                    "  MISSED"
                }
            }
            _ => "",
        };
        let goal = format!("{} {limit_text}{verdict}", if *at_most { "≤" } else { "≥" });
        let p = pouch.iter().find(|(n, _)| n == key).map_or("", |(_, t)| t);
        println!("{key:<28} {text:>14}   {goal:<22} {p}");
    }
}

// ----- the device side -----

fn actor(device: &str) -> Result<Actor> {
    Ok(Actor::new(USER, USER_NAME, Role::CommunityStaff, device)?)
}

fn open_enrolled(path: &str) -> Result<Store> {
    // The device id is only known from the credentials: open once to read them.
    let device = {
        let probe = Store::open(path, actor("probe")?).context("opening the device store")?;
        probe
            .credentials()?
            .context("the device is not enrolled")?
            .device
    };
    Ok(Store::open(path, actor(&device)?)?)
}

fn report_json(r: &SyncReport, seconds: f64) -> Value {
    json!({
        "seconds": seconds,
        "pushed": r.pushed,
        "pulled": r.pulled,
        "duplicates": r.duplicates,
        "rejected": r.rejected.len(),
        "bytes_sent": r.bytes_sent,
        "bytes_received": r.bytes_received,
        "bootstrapped_docs": r.bootstrapped_docs,
        "vm_hwm_bytes": sys::status_bytes("VmHWM"),
    })
}

fn sync_store(store: &mut Store, url: &str) -> Result<(SyncReport, f64)> {
    let mut t = HttpTransport::new(url)?;
    let t0 = Instant::now();
    let r = xiuhua_core::sync::sync(store, &mut t, None).context("syncing")?;
    Ok((r, t0.elapsed().as_secs_f64()))
}

fn push(
    t: &mut HttpTransport,
    token: &str,
    docs: Vec<DocChanges>,
    sent: &mut u64,
    received: &mut u64,
) -> Result<u64> {
    let body = proto::encode(&PushRequest { docs });
    *sent += body.len() as u64;
    let (status, reply) = t.post("/v1/push", body, Some(token))?;
    *received += reply.len() as u64;
    if status != 200 {
        return Err(msg(format!(
            "push refused: HTTP {status}: {}",
            String::from_utf8_lossy(&reply)
                .chars()
                .take(300)
                .collect::<String>()
        )));
    }
    let r: PushResponse = proto::decode(&reply).context("decoding the push reply")?;
    Ok(r.stored)
}

/// `__sync-device ROLE URL STORE …`
pub fn device_child(args: &[String]) -> Result<()> {
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .context_with(|| format!("device: argument {i} missing in {args:?}"))
    };
    let role = arg(0)?;
    let url = arg(1)?;
    let path = arg(2)?;
    let out = match role.as_str() {
        "enroll" => {
            let code = arg(3)?;
            let mut t = HttpTransport::new(&url)?;
            let resp = xiuhua_core::sync::enroll(&mut t, &code, "bench phone")?;
            let mut store = Store::open(&path, actor(&resp.device)?)?;
            store.save_enrollment(&url, &resp)?;
            json!({"device": resp.device})
        }
        "sync" => {
            let mut store = open_enrolled(&path)?;
            let (r, secs) = sync_store(&mut store, &url)?;
            report_json(&r, secs)
        }
        "upload" => {
            let k: usize = arg(3)?.parse()?;
            let cache = PathBuf::from(arg(4)?);
            upload(&url, &path, k, &cache)?
        }
        "edit" => {
            let k: usize = arg(3)?.parse()?;
            let cache = PathBuf::from(arg(4)?);
            let run: usize = arg(5)?.parse()?;
            let m = mapped(k, &cache)?;
            let mut store = open_enrolled(&path)?;
            edits(&mut store, &m, run, 100)?;
            let (r, secs) = sync_store(&mut store, &url)?;
            report_json(&r, secs)
        }
        "ingest" => {
            let code = arg(3)?;
            let grid = arg(4)?;
            let n: usize = arg(5)?.parse()?;
            ingest_device(&url, &path, &code, &grid, n)?
        }
        other => return Err(msg(format!("unknown device role {other}"))),
    };
    println!("{out}");
    Ok(())
}

fn mapped(k: usize, cache: &Path) -> Result<mapping::Mapped> {
    let p = workload::generate(
        cache,
        workload::BASE_H * k,
        workload::BASE_R * k,
        workload::BASE_T * k,
    )?;
    let w = workload::read(&p)?;
    mapping::map(&w)
}

fn hlc_of(ms: i64) -> Hlc {
    Hlc::new(u64::try_from(ms).unwrap_or(0), 0)
}

/// Device A: rebuilds every document with its own actor, then pushes them (timed).
fn upload(url: &str, path: &str, k: usize, cache: &Path) -> Result<Value> {
    let m = mapped(k, cache)?;
    let store = open_enrolled(path)?;
    let creds = store.credentials()?.context("not enrolled")?;
    let me = store.actor().clone();
    drop(store);
    let mut changes: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |id: &str, mut d: automerge::AutoCommit| {
        for c in d.get_changes(&[]) {
            changes.push((id.to_string(), c.raw_bytes().to_vec()));
        }
    };
    // The server checks that whoever a document says acted is the caller: the uploader
    // signs the mapped workload as its own (creator, visitors, every task event).
    for h in &m.households {
        let mut h = h.clone();
        h.created_by = me.user.clone();
        for v in &mut h.visits {
            v.by = me.user.clone();
            v.by_name = me.name.clone();
        }
        add(
            &h.id,
            doc::build_document(&h, &me, hlc_of(h.created_at), "register household")?,
        );
    }
    for r in &m.records {
        let mut r = r.clone();
        r.created_by = me.user.clone();
        add(
            &r.id,
            doc::build_document(&r, &me, hlc_of(r.reported_at), "log record")?,
        );
    }
    for t in &m.tasks {
        let mut t = t.clone();
        t.created_by = me.user.clone();
        for e in t.events.values_mut() {
            e.author = me.user.clone();
            e.author_name = me.name.clone();
            e.role = me.role.as_str().to_string();
            e.device = me.device.clone();
        }
        add(
            &t.id,
            doc::build_document(&t, &me, hlc_of(t.created_at), "order task")?,
        );
    }
    let change_bytes: usize = changes.iter().map(|(_, c)| c.len()).sum();
    // Batches like the engine's: ≤ 2,000 changes and ≤ 4 MiB of changes per request.
    let mut batches: Vec<Vec<DocChanges>> = vec![Vec::new()];
    let (mut n, mut bytes) = (0usize, 0usize);
    for (id, c) in changes {
        if n >= 2_000 || bytes + c.len() > 4 * 1024 * 1024 {
            batches.push(Vec::new());
            n = 0;
            bytes = 0;
        }
        n += 1;
        bytes += c.len();
        if let Some(b) = batches.last_mut() {
            b.push(DocChanges {
                doc: id,
                changes: vec![ByteBuf::from(c)],
            });
        }
    }
    let requests = batches.len();
    let mut t = HttpTransport::new(url)?;
    let (mut sent, mut received, mut stored) = (0, 0, 0);
    let t0 = Instant::now();
    for b in batches {
        stored += push(&mut t, &creds.access_token, b, &mut sent, &mut received)?;
    }
    let secs = t0.elapsed().as_secs_f64();
    Ok(json!({
        "seconds": secs,
        "stored": stored,
        "requests": requests,
        "change_bytes": change_bytes,
        "bytes_sent": sent,
        "bytes_received": received,
        "vm_hwm_bytes": sys::status_bytes("VmHWM"),
    }))
}

/// `n` edits: household visits, record status changes and member phones in turn.
fn edits(store: &mut Store, m: &mapping::Mapped, run: usize, n: usize) -> Result<()> {
    let pick = |i: usize, len: usize, salt: usize| {
        (i.wrapping_mul(7919)
            .wrapping_add(salt)
            .wrapping_add(run * 104_729))
            % len.max(1)
    };
    for i in 0..n {
        match i % 3 {
            0 => {
                let h = &m.households[pick(i, m.households.len(), 1)];
                store.add_visit(
                    &h.id,
                    NewVisit {
                        purpose: "入户走访".into(),
                        note: format!("第{run}-{i}次走访：了解近况，居民无新诉求"),
                        follow_up: None,
                    },
                )?;
            }
            1 => {
                let r = &m.records[pick(i, m.records.len(), 3)];
                let all = RecordStatus::ALL;
                let cur = store.record(&r.id)?.status;
                let pos = all.iter().position(|s| *s == cur).unwrap_or(0);
                store.set_record_status(&r.id, all[(pos + 1) % all.len()])?;
            }
            _ => {
                let h = &m.households[pick(i, m.households.len(), 4)];
                let Some(member) = h.members.get(i % h.members.len().max(1)) else {
                    continue;
                };
                let phone = format!("13{:09}", pick(i, 1_000_000_000, 12345));
                store.set_member_phone(&h.id, &member.id, Some(&phone))?;
            }
        }
    }
    Ok(())
}

/// An ingest device: enroll, create `n` records, say `ready`, wait for `go`, push.
fn ingest_device(url: &str, path: &str, code: &str, grid: &str, n: usize) -> Result<Value> {
    let mut t = HttpTransport::new(url)?;
    let resp = xiuhua_core::sync::enroll(&mut t, code, "ingest phone")?;
    let mut store = Store::open(path, actor(&resp.device)?)?;
    store.save_enrollment(url, &resp)?;
    for i in 0..n {
        store.create_record(NewRecord {
            grid: grid.to_string(),
            category: Category::Service,
            description: format!("居民反映第{i}号问题，需要上门核实"),
            reporter: "居民".into(),
            household: None,
            building: None,
            place: "小区南门".into(),
        })?;
    }
    let mut docs: Vec<DocChanges> = Vec::new();
    for e in store.outbox(1_000_000)? {
        match docs.iter_mut().find(|d| d.doc == e.doc) {
            Some(d) => d.changes.push(ByteBuf::from(e.change)),
            None => docs.push(DocChanges {
                doc: e.doc,
                changes: vec![ByteBuf::from(e.change)],
            }),
        }
    }
    println!("ready");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let start = epoch_s();
    let (mut sent, mut received) = (0, 0);
    let stored = push(
        &mut t,
        &resp.tokens.access_token,
        docs,
        &mut sent,
        &mut received,
    )?;
    let end = epoch_s();
    Ok(json!({
        "start_epoch_s": start,
        "end_epoch_s": end,
        "stored": stored,
        "bytes_sent": sent,
        "bytes_received": received,
    }))
}

// ----- the chart -----

pub fn chart(args: &[String]) -> Result<()> {
    let mut files = Vec::new();
    let mut out = None;
    let mut it = args.iter();
    let mut in_json = false;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => in_json = true,
            "--png" => {
                out = Some(PathBuf::from(it.next().context("--png needs a value")?));
                in_json = false;
            }
            f if in_json => files.push(PathBuf::from(f)),
            other => return Err(msg(format!("unknown option {other:?}\n\n{USAGE}"))),
        }
    }
    let out = out.context_with(|| format!("--png is required\n\n{USAGE}"))?;
    if files.is_empty() {
        return Err(msg(format!("--json needs at least one file\n\n{USAGE}")));
    }
    let mut points: Vec<(f64, [Option<f64>; 3])> = Vec::new();
    for f in &files {
        let v: Value = serde_json::from_str(
            &std::fs::read_to_string(f).context_with(|| format!("reading {}", f.display()))?,
        )
        .context_with(|| format!("parsing {}", f.display()))?;
        let k = f64_of(&v, "scale")?;
        let get = |n: &str| v.get(n).and_then(Value::as_f64);
        points.push((k, [get("bootstrap_s"), get("upload_s"), get("edits100_s")]));
    }
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let series: Vec<Vec<(f64, f64)>> = (0..3)
        .map(|i| {
            points
                .iter()
                .filter_map(|(k, v)| v[i].map(|y| (*k, y)))
                .collect()
        })
        .collect();
    let bytes = png::line_chart(&series, 800, 500)?;
    std::fs::write(&out, bytes).context_with(|| format!("writing {}", out.display()))?;
    println!(
        "wrote {}: time (s, y) against scale K (x); blue bootstrap_s, red upload_s, green edits100_s; x ticks at each K, y ticks every 1, 2 or 5 × 10^n s; legend bars top right in that order",
        out.display()
    );
    Ok(())
}
