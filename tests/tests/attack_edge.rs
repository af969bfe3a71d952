//! The server's edge under attack (issue 8), against the real binary on loopback: each test
//! sends what an attacker would, checks the refusal, that `/healthz` still answers within a
//! second, and that nothing was stored.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_bytes::ByteBuf;
use xiuhua_core::sync::proto::{
    DocChanges, EnrollRequest, EnrollResponse, EscalateRequest, EscalateResponse, PullRequest,
    PullResponse, PushRequest, PushResponse, RepairRequest, RepairResponse,
};
use xiuhua_e2e::*;

fn healthy(s: &Server) {
    assert!(
        healthz_time(&s.addr(), Duration::from_secs(1)).is_some(),
        "/healthz did not answer within 1 s"
    );
}

/// An Automerge sync message whose Bloom filter claims 2^32-1 probes in 8 bytes.
fn hostile_bloom_message() -> Vec<u8> {
    let bloom = [0x01, 0x08, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
    let mut m = vec![0x42, 0x00, 0x00, 0x01, 0x00, bloom.len() as u8];
    m.extend_from_slice(&bloom);
    m.push(0x00);
    m
}

#[test]
fn repair_with_a_hostile_bloom_filter_is_answered_and_the_server_lives() {
    let server = Server::with_directory();
    let mut wang = server.enroll("u-wang");
    let hh = wang
        .store
        .create_household(household("g1", "1号楼", "101", "张三"))
        .unwrap();
    wang.sync().unwrap();
    let seqs = server.grid_seqs();
    let zhao = server.enroll("u-zhao");
    let start = Instant::now();
    let r: Reply<RepairResponse> = zhao.call(
        "/v1/repair",
        &RepairRequest {
            doc: hh,
            message: ByteBuf::from(hostile_bloom_message()),
        },
    );
    assert_eq!(r.status, 200, "{:?}", r.err);
    assert!(start.elapsed() < Duration::from_secs(2));
    healthy(&server);
    assert_eq!(server.grid_seqs(), seqs, "nothing stored");
}

#[test]
fn repair_and_escalate_answer_one_404_for_foreign_and_unknown_documents() {
    let server = Server::with_directory();
    let mut wang = server.enroll("u-wang");
    let hh = wang
        .store
        .create_household(household("g1", "1号楼", "101", "张三"))
        .unwrap();
    let t = wang
        .store
        .create_task(task("g1", Some(&hh), "代办高龄补贴"))
        .unwrap();
    wang.sync().unwrap();
    let seqs = server.grid_seqs();
    // 李强 is 楼门长 of 3号楼 only.
    let li = server.enroll("u-li");
    let repair = |doc: &str| {
        let r: Reply<RepairResponse> = li.call(
            "/v1/repair",
            &RepairRequest {
                doc: doc.into(),
                message: ByteBuf::from(vec![0x42, 0, 0, 0, 0]),
            },
        );
        let e = r.refused(404);
        (e.code, e.message.replace(doc, "X"))
    };
    assert_eq!(repair(&hh), repair("hh-does-not-exist"));
    let escalate = |doc: &str| {
        let r: Reply<EscalateResponse> = li.call(
            "/v1/escalate",
            &EscalateRequest {
                task: doc.into(),
                tier: "community".into(),
                unit: None,
            },
        );
        let e = r.refused(404);
        (e.code, e.message.replace(doc, "X"))
    };
    assert_eq!(escalate(&t), escalate("task-does-not-exist"));
    healthy(&server);
    assert_eq!(server.grid_seqs(), seqs, "nothing stored");
}

#[test]
fn a_push_inflating_to_millions_of_items_is_refused_in_bounded_memory() {
    let server = Server::with_directory();
    let wang = server.enroll("u-wang");
    let seqs = server.grid_seqs();
    let before = server.peak_rss_kib();
    // 3 million empty documents: about 9 MB of MessagePack, a few KB compressed.
    let docs: Vec<DocChanges> = (0..3_000_000)
        .map(|_| DocChanges {
            doc: String::new(),
            changes: vec![],
        })
        .collect();
    let body = xiuhua_core::sync::proto::encode(&PushRequest { docs });
    assert!(body.len() < 64 * 1024, "{}", body.len());
    for _ in 0..3 {
        let r = decode_reply::<PushResponse>(post_raw(
            &server.url,
            "/v1/push",
            Some(&wang.token()),
            body.clone(),
        ));
        r.refused(413);
    }
    let grown_mib = (server.peak_rss_kib().saturating_sub(before)) / 1024;
    eprintln!(
        "peak memory: {} MiB before, grew by {grown_mib} MiB",
        before / 1024
    );
    assert!(grown_mib < 100, "peak memory grew by {grown_mib} MiB");
    healthy(&server);
    assert_eq!(server.grid_seqs(), seqs, "nothing stored");
}

#[test]
fn enrollment_guesses_are_throttled_with_a_growing_back_off() {
    let server = Server::with_directory();
    // An outstanding code: three groups of four Crockford base32 characters.
    let code = server.enroll_code("u-wang");
    let groups: Vec<&str> = code.split('-').collect();
    assert_eq!(groups.len(), 3, "{code}");
    assert!(groups.iter().all(|g| {
        g.len() == 4
            && g.bytes()
                .all(|b| b"0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(&b))
    }));
    let guess = |c: &str| -> Reply<EnrollResponse> {
        call(
            &server.url,
            "/v1/enroll",
            None,
            &EnrollRequest {
                code: c.into(),
                device_name: "guess".into(),
                previous_device: None,
            },
        )
    };
    // The old 8-digit form is not a code any more.
    assert!(guess("1234-5678").refused(401).message.contains("12"));
    for g in [
        "0000-0000-0000",
        "0000-0000-0001",
        "0000-0000-0002",
        "0000-0000-0003",
    ] {
        guess(g).refused(401);
    }
    // The 6th failure from this address starts the back-off (2 s, then 4, 8 …).
    guess("0000-0000-0004").refused(401);
    let retry = post_raw(
        &server.url,
        "/v1/enroll",
        None,
        xiuhua_core::sync::proto::encode(&EnrollRequest {
            code: "0000-0000-0005".into(),
            device_name: "guess".into(),
            previous_device: None,
        }),
    );
    assert_eq!(retry.0, 429);
    let blocked = guess(&code);
    assert_eq!(
        blocked.status, 429,
        "the address now waits, even with the right code"
    );
    healthy(&server);
    assert!(
        !server.admin(&["devices"]).contains("guess"),
        "no device enrolled"
    );
    // The code still works (from the station's own address after the back-off, or here
    // after 2 s).
    std::thread::sleep(Duration::from_millis(2100));
    let ok = guess(&code.to_lowercase().replace('-', " "));
    assert_eq!(ok.status, 200, "{:?}", ok.err);
}

#[test]
fn a_flood_of_half_open_connections_leaves_healthz_answering() {
    let server = Server::start_with(&[
        ("XIUHUA_HEADER_TIMEOUT_SECS", "2"),
        ("XIUHUA_MAX_CONNECTIONS_PER_IP", "64"),
    ]);
    let addr = server.addr();
    let mut flood = Vec::new();
    for _ in 0..1_100 {
        let mut s = connect_from([127, 0, 0, 2], &addr).expect("connect");
        let _ = s.write_all(b"POST /v1/push HTTP/1.1\r\nhost: x\r\n");
        flood.push(s);
    }
    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let t = healthz_time(&addr, Duration::from_secs(1)).expect("/healthz within 1 s");
        worst = worst.max(t);
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("worst /healthz during the flood: {worst:?}");
    // The header timeout closes the connections that were let in.
    std::thread::sleep(Duration::from_secs(3));
    let mut open = 0;
    for s in &mut flood {
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut b = [0u8; 256];
        match s.read(&mut b) {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                open += 1
            }
            _ => {}
        }
    }
    assert_eq!(open, 0, "connections still open past the header timeout");
    healthy(&server);
}

#[test]
fn a_stalled_body_is_cut_off() {
    let server = Server::with_directory_and(&[("XIUHUA_BODY_TIMEOUT_SECS", "1")]);
    let wang = server.enroll("u-wang");
    let seqs = server.grid_seqs();
    let mut s = std::net::TcpStream::connect(server.addr()).unwrap();
    write!(
        s,
        "POST /v1/push HTTP/1.1\r\nhost: x\r\nx-xiuhua-protocol: 1\r\nauthorization: Bearer {}\r\ncontent-length: 16000000\r\n\r\n",
        wang.token()
    )
    .unwrap();
    s.write_all(&[0u8; 1024]).unwrap();
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the stalled body held for {took:?}"
    );
    let head = String::from_utf8_lossy(&out);
    assert!(
        head.is_empty() || head.starts_with("HTTP/1.1 408"),
        "{head}"
    );
    healthy(&server);
    assert_eq!(server.grid_seqs(), seqs, "nothing stored");
}

#[test]
fn an_idle_kept_alive_connection_is_closed() {
    let server = Server::start_with(&[("XIUHUA_HEADER_TIMEOUT_SECS", "1")]);
    let mut s = std::net::TcpStream::connect(server.addr()).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 512];
    while !String::from_utf8_lossy(&got).ends_with("ok\n") {
        let n = s.read(&mut b).unwrap();
        assert!(n > 0, "closed before the answer");
        got.extend_from_slice(&b[..n]);
    }
    let start = Instant::now();
    let n = s.read(&mut b).unwrap_or(0);
    assert_eq!(n, 0, "the idle connection was closed");
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    healthy(&server);
}

#[test]
fn a_long_poll_opened_before_revocation_delivers_nothing_after_it() {
    let server = Server::with_directory();
    let wang = server.enroll("u-wang");
    let mut zhao = server.enroll("u-zhao");
    let since = server.grid_seq("g1");
    let (url, token) = (server.url.clone(), wang.token());
    let poll = std::thread::spawn(move || {
        call::<_, PullResponse>(
            &url,
            "/v1/pull",
            Some(&token),
            &PullRequest {
                grid: "g1".into(),
                since,
                limit: 100,
                wait_ms: 20_000,
            },
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    server.admin(&["revoke-device", &wang.id]);
    zhao.store
        .create_household(household("g1", "1号楼", "101", "张三"))
        .unwrap();
    zhao.sync().unwrap();
    let r = poll.join().unwrap();
    assert_eq!(r.status, 401, "the revoked device got {:?}", r.ok);
    healthy(&server);
}

#[test]
fn long_polls_per_device_are_capped() {
    let server = Server::with_directory_and(&[("XIUHUA_MAX_LONG_POLLS_PER_DEVICE", "1")]);
    let wang = server.enroll("u-wang");
    let since = server.grid_seq("g1");
    let req = PullRequest {
        grid: "g1".into(),
        since,
        limit: 100,
        wait_ms: 2_000,
    };
    let (url, token, q) = (server.url.clone(), wang.token(), req.clone());
    let first = std::thread::spawn(move || {
        call::<_, PullResponse>(&url, "/v1/pull", Some(&token), &q).status
    });
    std::thread::sleep(Duration::from_millis(400));
    let second: Reply<PullResponse> = wang.call("/v1/pull", &req);
    second.refused(429);
    assert_eq!(first.join().unwrap(), 200);
    healthy(&server);
}

fn forge(secret: &[u8], payload: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    m.update(payload.as_bytes());
    let sig: String = m
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{payload}.{sig}")
}

#[test]
fn tokens_have_one_spelling_and_no_expiry_past_the_lifetime() {
    let server = Server::with_directory();
    let wang = server.enroll("u-wang");
    let pull = |token: &str| -> Reply<PullResponse> {
        call(
            &server.url,
            "/v1/pull",
            Some(token),
            &PullRequest {
                grid: "g1".into(),
                since: 0,
                limit: 1,
                wait_ms: 0,
            },
        )
    };
    let token = wang.token();
    assert_eq!(pull(&token).status, 200);
    let (payload, sig) = token.rsplit_once('.').unwrap();
    pull(&format!("{payload}.{}", sig.to_ascii_uppercase())).refused(401);
    // A token signed with the real secret but claiming a year of life.
    let secret = std::fs::read(server.data_dir().join("server.secret")).unwrap();
    let year = 365 * 24 * 3600 * 1000_i64;
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let honest = forge(&secret, &format!("{}.u-wang.{}", wang.id, now + 60_000));
    assert_eq!(
        pull(&honest).status,
        200,
        "the forging helper signs as the server does"
    );
    pull(&forge(
        &secret,
        &format!("{}.u-wang.{}", wang.id, now + year),
    ))
    .refused(401);
    healthy(&server);
}

#[test]
fn enroll_code_into_a_closed_pipe_does_not_panic() {
    let server = Server::with_directory();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(server_bin())
        .args(["enroll-code", "u-wang"])
        .env("XIUHUA_DATA_DIR", server.data_dir())
        .env("XIUHUA_LOG", "warn")
        .env_remove("XIUHUA_CONFIG")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success(), "{err}");
    healthy(&server);
}

#[cfg(unix)]
#[test]
fn the_data_folder_and_its_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let outer = tempfile::tempdir().unwrap();
    let data = outer.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = data.to_string_lossy().into_owned();
    let server = Server::start_with(&[("XIUHUA_DATA_DIR", &d)]);
    server
        .try_admin_with_env(&["user", "add", "u-x", "某人"])
        .unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    for f in [
        "xiuhua-server.sqlite3",
        "xiuhua-server.sqlite3-wal",
        "xiuhua-server.sqlite3-shm",
        "server.secret",
    ] {
        let p = data.join(f);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{f}");
        } else {
            assert!(f.ends_with("-wal") || f.ends_with("-shm"), "{f} missing");
        }
    }
    healthy(&server);
}

#[test]
fn the_server_database_can_be_encrypted_at_rest() {
    let outer = tempfile::tempdir().unwrap();
    let data = outer.path().join("data");
    let d = data.to_string_lossy().into_owned();
    let server = Server::start_with(&[
        ("XIUHUA_DATA_DIR", &d),
        ("XIUHUA_DB_KEY", "a-station-key-from-the-vault-0123"),
    ]);
    server
        .try_admin_with_env(&["user", "add", "u-x", "某人"])
        .unwrap();
    assert!(
        server
            .try_admin_with_env(&["list", "users"])
            .unwrap()
            .contains("u-x")
    );
    let mut head = [0u8; 16];
    std::fs::File::open(data.join("xiuhua-server.sqlite3"))
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    assert_ne!(&head, b"SQLite format 3\0", "the file is plain SQLite");
    // Without the key the database does not open.
    let out = std::process::Command::new(server_bin())
        .args(["list", "users"])
        .env("XIUHUA_DATA_DIR", &data)
        .env("XIUHUA_LOG", "warn")
        .env_remove("XIUHUA_CONFIG")
        .env_remove("XIUHUA_DB_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("XIUHUA_DB_KEY"));
    healthy(&server);
}
