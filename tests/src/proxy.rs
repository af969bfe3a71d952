//! A fault-injecting HTTP/1.1 proxy on loopback, for the fault suite (`tests/faults.rs`).
//!
//! Sits between the phones and the real server. Each request is read whole (head plus
//! `Content-Length` body), and a seeded random generator picks what happens to it:
//! delivered, or one of the [`Fault`]s (dropped before the server, reply lost after the
//! server acted, reply truncated, request sent twice, connection cut mid-request, delayed).
//! Every connection to the phone gets its own connection to the server; after a fault both
//! are closed, so the phone's client cannot reuse a broken connection.
//!
//! Only what the phones' reqwest client and the axum server send is understood: requests
//! with `Content-Length` (or none), replies with `Content-Length` or chunked bodies. A
//! test tool, not a general proxy.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy may do to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// Closes the phone's connection without sending the request on: the server never
    /// sees it.
    DropRequest,
    /// The server handles the request; its reply is never delivered.
    LoseReply,
    /// The server handles the request; only part of its reply is delivered.
    TruncateReply,
    /// The request reaches the server twice (the phone sees the second reply).
    Duplicate,
    /// Half the request reaches the server, then both connections are cut.
    Reset,
    /// Delivered after a pause (100 to 600 ms), reply likewise.
    Delay,
}

impl Fault {
    /// Every fault, in a fixed order.
    pub const ALL: [Fault; 6] = [
        Fault::DropRequest,
        Fault::LoseReply,
        Fault::TruncateReply,
        Fault::Duplicate,
        Fault::Reset,
        Fault::Delay,
    ];
}

/// SplitMix64: small, seeded, good enough to pick faults and edits.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Debug, Default)]
struct Shared {
    rng: Option<Rng>,
    /// Percentage of requests that get a fault.
    rate: u64,
    /// Requests seen, and faults injected per kind.
    requests: u64,
    faults: std::collections::BTreeMap<Fault, u64>,
    /// Requests per path.
    paths: std::collections::BTreeMap<String, u64>,
}

/// The proxy: listens on 127.0.0.1, forwards to `upstream`.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT` of the proxy.
    pub url: String,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
}

impl FaultProxy {
    /// A proxy to the server at `upstream_url` (`http://127.0.0.1:PORT`) with faults picked
    /// by a generator seeded with `seed`, at `rate` percent of requests.
    pub fn start(upstream_url: &str, seed: u64, rate: u64) -> FaultProxy {
        let upstream: SocketAddr = upstream_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("upstream is http://IP:PORT");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Mutex::new(Shared {
            rng: Some(Rng::new(seed)),
            rate,
            ..Shared::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let shared = Arc::clone(&shared);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = conn else { continue };
                    let shared = Arc::clone(&shared);
                    std::thread::spawn(move || {
                        let _ = serve(client, upstream, &shared);
                    });
                }
            });
        }
        FaultProxy {
            url: format!("http://{addr}"),
            shared,
            stop,
            addr,
        }
    }

    /// Changes the share of requests that get a fault (0 = a clean network).
    pub fn set_rate(&self, percent: u64) {
        self.shared.lock().unwrap().rate = percent;
    }

    /// Requests seen so far.
    pub fn requests(&self) -> u64 {
        self.shared.lock().unwrap().requests
    }

    /// Faults injected so far, per kind.
    pub fn faults(&self) -> std::collections::BTreeMap<Fault, u64> {
        self.shared.lock().unwrap().faults.clone()
    }

    /// Requests seen so far, per path.
    pub fn paths(&self) -> std::collections::BTreeMap<String, u64> {
        self.shared.lock().unwrap().paths.clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// One HTTP message as read: its head (through the blank line) and body.
struct Message {
    head: Vec<u8>,
    body: Vec<u8>,
}

impl Message {
    fn bytes(&self) -> Vec<u8> {
        let mut out = self.head.clone();
        out.extend_from_slice(&self.body);
        out
    }
}

/// Reads up to and including `\r\n\r\n`; `None` at a clean end of stream.
fn read_head(s: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(512);
    let mut byte = [0u8; 1];
    loop {
        match s.read(&mut byte)? {
            0 if head.is_empty() => return Ok(None),
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            _ => head.push(byte[0]),
        }
        if head.ends_with(b"\r\n\r\n") {
            return Ok(Some(head));
        }
        if head.len() > 64 * 1024 {
            return Err(io::Error::other("head too long"));
        }
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn read_exact_vec(s: &mut TcpStream, n: usize) -> io::Result<Vec<u8>> {
    let mut body = vec![0u8; n];
    s.read_exact(&mut body)?;
    Ok(body)
}

fn read_line(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        line.push(byte[0]);
    }
    Ok(line)
}

/// Reads one message; `None` when the peer closed the connection between messages.
fn read_message(s: &mut TcpStream) -> io::Result<Option<Message>> {
    let Some(head) = read_head(s)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&head).into_owned();
    if let Some(len) = header(&text, "content-length") {
        let n: usize = len
            .parse()
            .map_err(|_| io::Error::other("bad content-length"))?;
        let body = read_exact_vec(s, n)?;
        return Ok(Some(Message { head, body }));
    }
    if header(&text, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        // Keep the chunked framing as it is: the phone reads it the same way.
        let mut body = Vec::new();
        loop {
            let line = read_line(s)?;
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&line)
                    .trim()
                    .split(';')
                    .next()
                    .unwrap_or("0"),
                16,
            )
            .map_err(|_| io::Error::other("bad chunk size"))?;
            body.extend_from_slice(&line);
            let chunk = read_exact_vec(s, size + 2)?;
            body.extend_from_slice(&chunk);
            if size == 0 {
                return Ok(Some(Message { head, body }));
            }
        }
    }
    Ok(Some(Message {
        head,
        body: Vec::new(),
    }))
}

fn path_of(head: &[u8]) -> String {
    String::from_utf8_lossy(head)
        .split_whitespace()
        .nth(1)
        .unwrap_or("?")
        .to_string()
}

/// What to do with the next request, and a delay in ms.
fn pick(shared: &Mutex<Shared>, path: &str) -> (Option<Fault>, u64) {
    let mut s = shared.lock().unwrap();
    s.requests += 1;
    *s.paths.entry(path.to_string()).or_insert(0) += 1;
    let rate = s.rate;
    let Some(rng) = s.rng.as_mut() else {
        return (None, 0);
    };
    let fault = if rng.chance(rate) {
        Some(Fault::ALL[rng.below(Fault::ALL.len() as u64) as usize])
    } else {
        None
    };
    let delay = 100 + rng.below(500);
    if let Some(f) = fault {
        *s.faults.entry(f).or_insert(0) += 1;
    }
    (fault, delay)
}

fn close(a: &TcpStream, b: Option<&TcpStream>) {
    let _ = a.shutdown(Shutdown::Both);
    if let Some(b) = b {
        let _ = b.shutdown(Shutdown::Both);
    }
}

fn serve(mut client: TcpStream, upstream: SocketAddr, shared: &Mutex<Shared>) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut server: Option<TcpStream> = None;
    loop {
        let Some(request) = read_message(&mut client)? else {
            close(&client, server.as_ref());
            return Ok(());
        };
        let (fault, delay) = pick(shared, &path_of(&request.head));
        if fault == Some(Fault::DropRequest) {
            close(&client, server.as_ref());
            return Ok(());
        }
        if server.is_none() {
            let s = TcpStream::connect(upstream)?;
            s.set_read_timeout(Some(Duration::from_secs(120)))?;
            s.set_nodelay(true)?;
            server = Some(s);
        }
        let Some(up) = server.as_mut() else {
            return Ok(());
        };
        let bytes = request.bytes();
        match fault {
            Some(Fault::Reset) => {
                let _ = up.write_all(&bytes[..bytes.len() / 2]);
                close(&client, server.as_ref());
                return Ok(());
            }
            Some(Fault::Delay) => std::thread::sleep(Duration::from_millis(delay)),
            _ => {}
        }
        up.write_all(&bytes)?;
        let Some(mut reply) = read_message(up)? else {
            close(&client, server.as_ref());
            return Ok(());
        };
        if fault == Some(Fault::Duplicate) {
            // The same request again on the same connection: the server acts twice.
            up.write_all(&bytes)?;
            match read_message(up)? {
                Some(second) => reply = second,
                None => {
                    close(&client, server.as_ref());
                    return Ok(());
                }
            }
        }
        match fault {
            Some(Fault::LoseReply) => {
                close(&client, server.as_ref());
                return Ok(());
            }
            Some(Fault::TruncateReply) => {
                let all = reply.bytes();
                let cut = all.len() / 2;
                let _ = client.write_all(&all[..cut]);
                close(&client, server.as_ref());
                return Ok(());
            }
            Some(Fault::Delay) => std::thread::sleep(Duration::from_millis(delay)),
            _ => {}
        }
        client.write_all(&reply.bytes())?;
        let closes = String::from_utf8_lossy(&reply.head)
            .to_ascii_lowercase()
            .contains("connection: close");
        if closes {
            close(&client, server.as_ref());
            return Ok(());
        }
    }
}
