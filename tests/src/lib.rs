//! The end-to-end harness: the real `xiuhua-server` binary on loopback with a temporary data
//! folder, its admin commands run as subprocesses on the same folder, and devices that are
//! core [`Store`]s syncing through the reqwest transport.
//!
//! The binary is built once per test process (`cargo build -p xiuhua-server --bin
//! xiuhua-server --message-format=json`, which is quick when it is up to date) and found
//! through the artifact cargo reports. Set `XIUHUA_SERVER_BIN` to use a given binary.
//!
//! [`Server::with_directory`] seeds the directory every test uses:
//!
//! | grid | community | buildings |
//! |---|---|---|
//! | g1 第一网格 | c1 金湖社区 | 1号楼 2号楼 3号楼 |
//! | g2 第二网格 | c1 金湖社区 | 1号楼 |
//! | g3 第三网格 | c2 银湖社区 | 1号楼 |
//!
//! | user | name | grant |
//! |---|---|---|
//! | u-wang | 王伟 | 网格员 on g1 |
//! | u-li | 李强 | 楼门长 on g1, 3号楼 |
//! | u-zhao | 赵敏 | 社区工作者 on community c1 (g1, g2) |
//! | u-chen | 陈红 | 社区书记 on community c1 (g1, g2) |
//! | u-seed | 周静 | 社区工作者 on c1 and c2 (g1, g2, g3): puts the seed data in |

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use serde_bytes::ByteBuf;
use xiuhua_core::model::*;
use xiuhua_core::sync::http::HttpTransport;
use xiuhua_core::sync::proto::{self, DocChanges, ErrorBody, PushRequest};
use xiuhua_core::sync::{SyncOptions, SyncReport, Transport};
use xiuhua_core::{Result as CoreResult, Store};

pub use xiuhua_core;

/// Where cargo's workspace is.
fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate lives in the workspace")
        .to_path_buf()
}

/// The server binary, built on first use.
pub fn server_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("XIUHUA_SERVER_BIN") {
            return PathBuf::from(p);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args([
                "build",
                "-p",
                "xiuhua-server",
                "--bin",
                "xiuhua-server",
                "--message-format=json-render-diagnostics",
            ])
            .current_dir(workspace_dir())
            .stderr(Stdio::inherit())
            .output()
            .expect("cargo runs");
        assert!(
            out.status.success(),
            "cargo build -p xiuhua-server failed (see above)"
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let from_cargo = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| {
                v["reason"] == "compiler-artifact" && v["target"]["name"] == "xiuhua-server"
            })
            .filter_map(|v| v["executable"].as_str().map(PathBuf::from))
            .next_back();
        let path = from_cargo.unwrap_or_else(|| {
            // Next to this test executable: target/<profile>/deps/<test> → target/<profile>.
            let exe = std::env::current_exe().expect("current exe");
            exe.ancestors()
                .nth(2)
                .expect("target/<profile>")
                .join(format!("xiuhua-server{}", std::env::consts::EXE_SUFFIX))
        });
        assert!(path.exists(), "no server binary at {}", path.display());
        path
    })
}

/// One server process on 127.0.0.1 with its own data folder.
pub struct Server {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// `http://127.0.0.1:PORT` of the running process.
    pub url: String,
    env: Vec<(String, String)>,
}

impl Server {
    /// A server with an empty data folder.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// A server with extra `XIUHUA_*` variables (limits).
    pub fn start_with(env: &[(&str, &str)]) -> Server {
        let mut s = Server {
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
            url: String::new(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        };
        s.spawn();
        s
    }

    /// A server with the directory of this crate's docs.
    pub fn with_directory() -> Server {
        let s = Server::start();
        s.seed_directory();
        s
    }

    /// [`Server::with_directory`] with extra variables.
    pub fn with_directory_and(env: &[(&str, &str)]) -> Server {
        let s = Server::start_with(env);
        s.seed_directory();
        s
    }

    /// The data folder.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "the server already runs");
        let mut cmd = Command::new(server_bin());
        cmd.arg("serve")
            .env("XIUHUA_DATA_DIR", self.dir.path())
            .env("XIUHUA_LISTEN", "127.0.0.1:0")
            .env("XIUHUA_LOG", "warn")
            .env_remove("XIUHUA_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("the server starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.trim().strip_prefix("listening on ")
                    && let Some(t) = tx.take()
                {
                    let _ = t.send(addr.to_string());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => self.url = url,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                panic!("the server did not print its address (exit: {status:?})");
            }
        }
        self.child = Some(child);
    }

    /// Kills the process (SIGKILL: no graceful shutdown) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the process again on the same data folder (on a new port: see [`Server::url`]).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Runs an admin command on the data folder; its stdout, or its stderr as the error.
    pub fn try_admin(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(server_bin())
            .args(args)
            .env("XIUHUA_DATA_DIR", self.dir.path())
            .env("XIUHUA_LOG", "warn")
            .env_remove("XIUHUA_CONFIG")
            .output()
            .expect("the admin command runs");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Gives `user` a console password through `xiuhua-server set-password`, which reads it
    /// from standard input when that is not a terminal.
    pub fn set_password(&self, user: &str, password: &str) {
        use std::io::Write;
        let mut child = Command::new(server_bin())
            .args(["set-password", user])
            .env("XIUHUA_DATA_DIR", self.dir.path())
            .env("XIUHUA_LOG", "warn")
            .env_remove("XIUHUA_CONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("set-password runs");
        if let Some(mut stdin) = child.stdin.take() {
            writeln!(stdin, "{password}").expect("the password is written");
        }
        let out = child.wait_with_output().expect("set-password ends");
        assert!(
            out.status.success(),
            "set-password {user}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs an admin command that must succeed.
    pub fn admin(&self, args: &[&str]) -> String {
        self.try_admin(args)
            .unwrap_or_else(|e| panic!("xiuhua-server {}: {e}", args.join(" ")))
    }

    /// Seeds the directory described in the crate docs.
    pub fn seed_directory(&self) {
        self.admin(&["district", "add", "rd", "容东片区"]);
        self.admin(&["community", "add", "c1", "金湖社区", "--district", "rd"]);
        self.admin(&["community", "add", "c2", "银湖社区", "--district", "rd"]);
        for (g, name, c) in [
            ("g1", "第一网格", "c1"),
            ("g2", "第二网格", "c1"),
            ("g3", "第三网格", "c2"),
        ] {
            self.admin(&["grid", "add", g, name, "--community", c]);
        }
        for (g, b) in [
            ("g1", "1号楼"),
            ("g1", "2号楼"),
            ("g1", "3号楼"),
            ("g2", "1号楼"),
            ("g3", "1号楼"),
        ] {
            self.admin(&["building", "add", g, b]);
        }
        for (u, n) in [
            ("u-wang", "王伟"),
            ("u-li", "李强"),
            ("u-zhao", "赵敏"),
            ("u-chen", "陈红"),
            ("u-seed", "周静"),
        ] {
            self.admin(&["user", "add", u, n]);
        }
        self.admin(&["grant", "u-wang", "--grid", "g1", "--role", "网格员"]);
        self.admin(&[
            "grant",
            "u-li",
            "--grid",
            "g1",
            "--role",
            "楼门长",
            "--building",
            "3号楼",
        ]);
        self.admin(&[
            "grant",
            "u-zhao",
            "--community",
            "c1",
            "--role",
            "社区工作者",
        ]);
        self.admin(&["grant", "u-chen", "--community", "c1", "--role", "社区书记"]);
        self.admin(&[
            "grant",
            "u-seed",
            "--community",
            "c1",
            "--role",
            "社区工作者",
        ]);
        self.admin(&[
            "grant",
            "u-seed",
            "--community",
            "c2",
            "--role",
            "社区工作者",
        ]);
    }

    /// The feed position of a grid (`list grids`).
    pub fn grid_seq(&self, grid: &str) -> u64 {
        let out = self.admin(&["list", "grids"]);
        out.lines()
            .skip(1)
            .map(|l| l.split('\t').collect::<Vec<_>>())
            .find(|cols| cols.first() == Some(&grid))
            .and_then(|cols| cols.get(4).and_then(|s| s.parse().ok()))
            .unwrap_or_else(|| panic!("grid {grid} not listed:\n{out}"))
    }

    /// Every grid's feed position.
    pub fn grid_seqs(&self) -> BTreeMap<String, u64> {
        let out = self.admin(&["list", "grids"]);
        out.lines()
            .skip(1)
            .filter_map(|l| {
                let cols: Vec<&str> = l.split('\t').collect();
                Some((cols.first()?.to_string(), cols.get(4)?.parse().ok()?))
            })
            .collect()
    }

    /// A one-time enrollment code for `user`.
    pub fn enroll_code(&self, user: &str) -> String {
        let out = self.admin(&["enroll-code", user]);
        out.lines().next().expect("a code").trim().to_string()
    }

    /// A transport to the running process.
    pub fn transport(&self) -> HttpTransport {
        HttpTransport::new(&self.url).expect("transport")
    }

    /// Enrolls a new device of `user` over HTTP; its store is a file in its own folder.
    pub fn enroll(&self, user: &str) -> Device {
        let code = self.enroll_code(user);
        let mut t = self.transport();
        let resp = xiuhua_core::sync::enroll(&mut t, &code, &format!("{user}'s phone"))
            .expect("enrollment");
        assert_eq!(resp.user, user);
        let role = resp
            .grants
            .first()
            .map_or(Ok(Role::GridMember), |g| Role::parse(&g.role))
            .expect("a known role");
        let actor = Actor::new(user, &resp.user_name, role, &resp.device).expect("actor");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = Store::open(dir.path().join("device.db"), actor).expect("store");
        store.save_enrollment(&self.url, &resp).expect("saved");
        Device {
            store,
            id: resp.device,
            user: user.to_string(),
            url: self.url.clone(),
            _dir: dir,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A phone: a store on disk enrolled with the server.
pub struct Device {
    pub store: Store,
    /// The device id the server assigned.
    pub id: String,
    pub user: String,
    /// Where it syncs (update it after a [`Server::restart`]).
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Device {
    /// One whole sync through the HTTP transport.
    pub fn sync(&mut self) -> CoreResult<SyncReport> {
        let mut t = HttpTransport::new(&self.url)?;
        xiuhua_core::sync::sync(&mut self.store, &mut t, None)
    }

    /// One sync through a given transport and options.
    pub fn sync_via(
        &mut self,
        t: &mut dyn Transport,
        options: SyncOptions,
    ) -> CoreResult<SyncReport> {
        let creds = self.store.credentials()?.expect("enrolled");
        xiuhua_core::sync::sync_with(&mut self.store, t, None, &creds, options)
    }

    /// The current access token.
    pub fn token(&self) -> String {
        self.store
            .credentials()
            .expect("credentials")
            .expect("enrolled")
            .access_token
    }

    /// The outbox as one push request, grouped per document (oldest first).
    pub fn outbox_push(&self) -> PushRequest {
        outbox_push(&self.store)
    }

    /// Acknowledges the whole outbox (after a raw push the server accepted).
    pub fn ack_all(&mut self) {
        let ids: Vec<i64> = self
            .store
            .outbox(1_000_000)
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        self.store.ack_outbox(&ids).unwrap();
    }

    /// Drops the outbox (after a raw push the server refused: keeps later tests clean).
    pub fn drop_outbox(&mut self) {
        self.ack_all();
    }

    /// Sends a raw request with this device's token.
    pub fn call<Q: serde::Serialize, R: for<'de> serde::Deserialize<'de>>(
        &self,
        path: &str,
        body: &Q,
    ) -> Reply<R> {
        call(&self.url, path, Some(&self.token()), body)
    }
}

/// The outbox of a store as one push request.
pub fn outbox_push(store: &Store) -> PushRequest {
    let mut docs: Vec<DocChanges> = Vec::new();
    for e in store.outbox(1_000_000).unwrap() {
        match docs.iter_mut().find(|d| d.doc == e.doc) {
            Some(d) => d.changes.push(ByteBuf::from(e.change)),
            None => docs.push(DocChanges {
                doc: e.doc,
                changes: vec![ByteBuf::from(e.change)],
            }),
        }
    }
    PushRequest { docs }
}

/// A decoded reply.
#[derive(Debug)]
pub struct Reply<R> {
    pub status: u16,
    pub ok: Option<R>,
    pub err: Option<ErrorBody>,
}

impl<R: std::fmt::Debug> Reply<R> {
    /// The success body; panics with the error otherwise.
    pub fn ok(self) -> R {
        match self.ok {
            Some(r) => r,
            None => panic!("HTTP {}: {:?}", self.status, self.err),
        }
    }
    /// The error body of a refusal with this status; panics otherwise.
    pub fn refused(self, status: u16) -> ErrorBody {
        assert_eq!(
            self.status, status,
            "expected HTTP {status}, got {} ({:?} / {:?})",
            self.status, self.err, self.ok
        );
        self.err.expect("an error body")
    }
}

/// Posts raw bytes; the status and body.
pub fn post_raw(url: &str, path: &str, token: Option<&str>, body: Vec<u8>) -> (u16, Vec<u8>) {
    let mut t = HttpTransport::new(url).expect("transport");
    t.post(path, body, token).expect("the server answers")
}

/// Posts an encoded body and decodes the answer.
pub fn call<Q: serde::Serialize, R: for<'de> serde::Deserialize<'de>>(
    url: &str,
    path: &str,
    token: Option<&str>,
    body: &Q,
) -> Reply<R> {
    decode_reply(post_raw(url, path, token, proto::encode(body)))
}

/// Decodes a raw answer.
pub fn decode_reply<R: for<'de> serde::Deserialize<'de>>(
    (status, bytes): (u16, Vec<u8>),
) -> Reply<R> {
    if (200..300).contains(&status) {
        Reply {
            status,
            ok: Some(proto::decode(&bytes).expect("a success body")),
            err: None,
        }
    } else {
        Reply {
            status,
            ok: None,
            err: Some(proto::decode(&bytes).expect("an error body")),
        }
    }
}

// ----- the domain's inputs -----

/// A household of one member at `grid`/`building`/1单元/`room`.
pub fn household(grid: &str, building: &str, room: &str, name: &str) -> NewHousehold {
    NewHousehold {
        address: Address::new(grid, building, "1单元", room).expect("address"),
        members: vec![NewMember {
            name: name.into(),
            gender: Gender::Female,
            birth_year: 1952,
            phone: Some("13800138000".into()),
            id_number: None,
            relation: Relation::Head,
            tags: vec![Tag::LivingAlone],
        }],
        tags: vec![],
        note: String::new(),
    }
}

/// A 民情 record of `grid`, in `building` when given.
pub fn record(grid: &str, building: Option<&str>, text: &str) -> NewRecord {
    NewRecord {
        grid: grid.into(),
        category: Category::Environment,
        description: text.into(),
        reporter: "张阿姨".into(),
        household: None,
        building: building.map(str::to_string),
        place: "楼道".into(),
    }
}

/// A 代办 task of `grid` about `household` (when given).
pub fn task(grid: &str, household: Option<&str>, title: &str) -> NewTask {
    NewTask {
        grid: grid.into(),
        level: Level::Doorstep,
        category: Category::Service,
        title: title.into(),
        description: String::new(),
        household: household.map(str::to_string),
        source_record: None,
        assignee: None,
        deadline: None,
    }
}

/// The document ids of a store's grid (households, records, tasks).
pub fn doc_ids(store: &Store, grid: &str) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for (b, _) in store.buildings(grid).unwrap() {
        ids.extend(
            store
                .households_in(grid, &b, None)
                .unwrap()
                .into_iter()
                .map(|h| h.id),
        );
    }
    ids.extend(
        store
            .records(grid, None, None, 10_000)
            .unwrap()
            .into_iter()
            .map(|r| r.id),
    );
    ids.extend(
        store
            .tasks(grid, None, None, 10_000)
            .unwrap()
            .into_iter()
            .map(|t| t.id),
    );
    ids.sort();
    ids
}

/// The document ids a device may pull from a grid's feed (all pages from 0), or the refusal.
pub fn pull_docs(
    d: &Device,
    grid: &str,
) -> Result<std::collections::BTreeSet<String>, (u16, ErrorBody)> {
    let mut docs = std::collections::BTreeSet::new();
    let mut since = 0;
    loop {
        let r: Reply<proto::PullResponse> = d.call(
            "/v1/pull",
            &proto::PullRequest {
                grid: grid.into(),
                since,
                limit: 50,
                wait_ms: 0,
            },
        );
        let Some(page) = r.ok else {
            return Err((r.status, r.err.expect("an error body")));
        };
        docs.extend(page.changes.into_iter().map(|c| c.doc));
        since = page.next;
        if !page.more {
            return Ok(docs);
        }
    }
}

/// The document ids of a grid's bootstrap bundle for a device, or the refusal.
pub fn bootstrap_docs(
    d: &Device,
    grid: &str,
) -> Result<std::collections::BTreeSet<String>, (u16, ErrorBody)> {
    let r: Reply<proto::Bundle> = d.call(
        "/v1/bootstrap",
        &proto::BootstrapRequest {
            grid: grid.into(),
            after: None,
            limit: 0,
            buildings: Vec::new(),
        },
    );
    match r.ok {
        Some(b) => Ok(b.docs.into_iter().map(|d| d.id).collect()),
        None => Err((r.status, r.err.expect("an error body"))),
    }
}

/// The push of one document's outbox entries.
pub fn push_of(store: &Store, doc: &str) -> PushRequest {
    let mut req = outbox_push(store);
    req.docs.retain(|d| d.doc == doc);
    assert!(!req.docs.is_empty(), "no outbox entries for {doc}");
    req
}

// ----- hostile input (tests/attack_*.rs) -----

/// The status of `GET /healthz`, by hand over TCP (the transport only posts); 0 when the
/// server does not answer within 2 s.
pub fn healthz(url: &str) -> u16 {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    let mut head = [0u8; 12];
    if s.read_exact(&mut head).is_err() {
        return 0;
    }
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The changes of a document built from `value` as one change signed by `actor` at `at_ms`
/// (a note naming the actor's user and device), bypassing every check of a store.
pub fn signed<T: autosurgeon::Reconcile>(value: &T, actor: &Actor, at_ms: i64) -> Vec<ByteBuf> {
    let hlc = xiuhua_core::hlc::Hlc::new(u64::try_from(at_ms).expect("a time after 1970"), 0);
    let mut doc =
        xiuhua_core::doc::build_document(value, actor, hlc, "hostile").expect("a document");
    doc.get_changes(&[])
        .iter()
        .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
        .collect()
}

fn uleb(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn read_uleb(b: &[u8], at: &mut usize) -> u64 {
    let (mut v, mut shift) = (0u64, 0);
    loop {
        let x = b[*at];
        *at += 1;
        v |= u64::from(x & 0x7f) << shift;
        if x & 0x80 == 0 {
            return v;
        }
        shift += 7;
    }
}

/// An Automerge chunk of type `kind` around `body`, with a valid checksum.
pub fn automerge_chunk(kind: u8, body: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    let mut hashed = vec![kind];
    uleb(body.len() as u64, &mut hashed);
    hashed.extend_from_slice(body);
    let sum = sha2::Sha256::digest(&hashed);
    let mut out = vec![0x85, 0x6f, 0x4a, 0x83];
    out.extend_from_slice(&sum[..4]);
    out.extend(hashed);
    out
}

/// A plain change whose operations are all on the root, re-written with an explicit run of
/// `n_ops` nulls in its object-actor column (which the canonical encoding leaves out):
/// Automerge decodes and applies it, but a document saved with it no longer loads.
pub fn with_null_column(change: &[u8], n_ops: u64) -> Vec<u8> {
    let mut at = 9;
    let len = usize::try_from(read_uleb(change, &mut at)).expect("a length");
    let body = &change[at..at + len];
    let mut i = 0;
    let skip = |i: &mut usize| {
        let l = usize::try_from(read_uleb(body, i)).expect("a length");
        *i += l;
    };
    let deps = usize::try_from(read_uleb(body, &mut i)).expect("a count");
    i += 32 * deps;
    skip(&mut i); // actor
    read_uleb(body, &mut i); // seq
    read_uleb(body, &mut i); // start op
    read_uleb(body, &mut i); // time (its bytes skip the same way)
    skip(&mut i); // message
    let others = read_uleb(body, &mut i);
    for _ in 0..others {
        skip(&mut i);
    }
    let cols_at = i;
    let ncols = read_uleb(body, &mut i);
    let mut cols = Vec::new();
    for _ in 0..ncols {
        let spec = read_uleb(body, &mut i);
        let l = read_uleb(body, &mut i);
        cols.push((spec, l));
    }
    assert!(cols.iter().all(|(s, _)| *s > 1), "not a root-only change");
    let mut out = body[..cols_at].to_vec();
    uleb(ncols + 1, &mut out);
    let mut nulls = vec![0u8];
    uleb(n_ops, &mut nulls);
    out.push(0x01);
    uleb(nulls.len() as u64, &mut out);
    for (s, l) in &cols {
        uleb(*s, &mut out);
        uleb(*l, &mut out);
    }
    out.extend(nulls);
    out.extend_from_slice(&body[i..]);
    automerge_chunk(1, &out)
}

// ----- the server's edge (attack_edge.rs) -----

impl Server {
    /// The server process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server runs").id()
    }

    /// The server process's peak resident memory so far (VmHWM), in KiB (Linux).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("/proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }

    /// Runs an admin command with the variables the server was started with (a database
    /// key, say); its stdout, or its stderr as the error.
    pub fn try_admin_with_env(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new(server_bin());
        cmd.args(args)
            .env("XIUHUA_DATA_DIR", self.dir.path())
            .env("XIUHUA_LOG", "warn")
            .env_remove("XIUHUA_CONFIG");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("the admin command runs");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// `host:port` of the running process.
    pub fn addr(&self) -> String {
        self.url.trim_start_matches("http://").to_string()
    }
}

/// Asks `GET /healthz` over a fresh connection from 127.0.0.1; the time the whole answer
/// took, or `None` when it did not come within `within`.
pub fn healthz_time(addr: &str, within: Duration) -> Option<Duration> {
    use std::io::{Read, Write};
    let start = std::time::Instant::now();
    let sa: std::net::SocketAddr = addr.parse().expect("an address");
    let mut s = std::net::TcpStream::connect_timeout(&sa, within).ok()?;
    s.set_read_timeout(Some(within)).ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out);
    (text.starts_with("HTTP/1.1 200") && text.ends_with("ok\n") && start.elapsed() <= within)
        .then(|| start.elapsed())
}

/// A TCP connection to `addr` from the loopback address `from` (127.0.0.2, say: another
/// client than the tests' 127.0.0.1).
pub fn connect_from(from: [u8; 4], addr: &str) -> std::io::Result<std::net::TcpStream> {
    use socket2::{Domain, Socket, Type};
    let to: std::net::SocketAddr = addr.parse().map_err(std::io::Error::other)?;
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.bind(&std::net::SocketAddr::from((from, 0)).into())?;
    s.connect_timeout(&to.into(), Duration::from_secs(5))?;
    Ok(s.into())
}

// ----- the fault suite's helpers (tests/faults.rs) -----

pub mod proxy;

impl Device {
    /// Enrolls this phone's store again with `code`, with the core's identity rules
    /// (`enroll_store`: same user keeps the work, another user is a handover).
    pub fn enroll_again(&mut self, code: &str) -> CoreResult<xiuhua_core::sync::Enrolled> {
        let mut t = HttpTransport::new(&self.url)?;
        let url = self.url.clone();
        let store = &mut self.store;
        let done = xiuhua_core::sync::enroll_store(
            &mut |step| step(store),
            &mut t,
            &url,
            code,
            "the same phone",
        )?;
        self.id = done.answer.device.clone();
        self.user = done.answer.user.clone();
        Ok(done)
    }

    /// The store's file.
    pub fn db_path(&self) -> PathBuf {
        self._dir.path().join("device.db")
    }

    /// Closes the store's file (an in-memory store stands in) so that another process can
    /// use it; [`Device::reopen_store`] opens it again.
    pub fn close_store(&mut self) {
        let actor = self.store.actor().clone();
        self.store = Store::open_in_memory(actor).expect("an in-memory store");
    }

    /// Opens the store's file again (after [`Device::close_store`], or to see what a
    /// restarted app sees).
    pub fn reopen_store(&mut self) {
        let actor = self.store.actor().clone();
        self.close_store();
        self.store = Store::open(self.db_path(), actor).expect("the store reopens");
    }
}

/// The phone binary of the fault suite: one sync of a store file in its own process, so
/// that a test can kill it mid-sync (`CARGO_BIN_EXE_fault-phone`).
///
/// Arguments: store path, server URL, user, user name, role, device id.
pub fn phone_args(d: &Device) -> Vec<String> {
    let a = d.store.actor();
    vec![
        d.db_path().display().to_string(),
        d.url.clone(),
        a.user.clone(),
        a.name.clone(),
        a.role.as_str().to_string(),
        a.device.clone(),
    ]
}
