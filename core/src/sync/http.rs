//! The HTTP transport: reqwest's blocking client over rustls.
//!
//! Blocking on purpose: the core is synchronous and the apps call `sync` from a background
//! thread. Do not create or drop an [`HttpTransport`] inside an async runtime's thread.

use std::io::Read;
use std::time::Duration;

use super::{Transport, TransportError, proto};
use crate::error::{Error, Result};

/// Time allowed to open a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for one whole request and its reply (a bootstrap bundle included).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Posts sync requests to one server.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    base: String,
    client: reqwest::blocking::Client,
}

fn check_url(base_url: &str) -> Result<String> {
    let base = base_url.trim().trim_end_matches('/');
    if !(base.starts_with("https://") || base.starts_with("http://"))
        || base.len() <= "https://".len()
    {
        return Err(Error::invalid(
            "server_url",
            "must look like https://host[:port] (or http:// on a trusted network)",
        ));
    }
    Ok(base.to_string())
}

impl HttpTransport {
    /// A transport to the server at `base_url` (e.g. `https://station.example:8443`),
    /// trusting the platform's certificate authorities.
    pub fn new(base_url: &str) -> Result<HttpTransport> {
        let base = check_url(base_url)?;
        Self::build(base, reqwest::blocking::Client::builder())
    }

    /// A transport that trusts only the given PEM certificate(s): for a station whose
    /// server has its own self-signed certificate.
    pub fn with_root_certificates_pem(base_url: &str, pem: &[u8]) -> Result<HttpTransport> {
        let base = check_url(base_url)?;
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| Error::invalid("certificate", e.to_string()))?;
        if certs.is_empty() {
            return Err(Error::invalid("certificate", "no PEM certificate found"));
        }
        Self::build(
            base,
            reqwest::blocking::Client::builder().tls_certs_only(certs),
        )
    }

    /// A transport with its own connect and whole-request timeouts (the bindings set them
    /// from the app; zero means the default).
    pub fn with_timeouts(
        base_url: &str,
        connect: Duration,
        request: Duration,
    ) -> Result<HttpTransport> {
        let base = check_url(base_url)?;
        Self::build_with(base, reqwest::blocking::Client::builder(), connect, request)
    }

    fn build(base: String, builder: reqwest::blocking::ClientBuilder) -> Result<HttpTransport> {
        Self::build_with(base, builder, CONNECT_TIMEOUT, REQUEST_TIMEOUT)
    }

    fn build_with(
        base: String,
        builder: reqwest::blocking::ClientBuilder,
        connect: Duration,
        request: Duration,
    ) -> Result<HttpTransport> {
        let or = |d: Duration, default: Duration| if d.is_zero() { default } else { d };
        let client = builder
            .connect_timeout(or(connect, CONNECT_TIMEOUT))
            .timeout(or(request, REQUEST_TIMEOUT))
            // A redirect would carry the bearer token and the body somewhere else: the
            // station's address is configured, never learned from a reply.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("xiuhua-core/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Network(format!("cannot set up the HTTP client: {e}")))?;
        Ok(HttpTransport { base, client })
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }
}

fn classify(e: &reqwest::Error) -> TransportError {
    let text = error_chain(e);
    if e.is_timeout() {
        TransportError::Timeout(text)
    } else if e.is_connect() {
        TransportError::Connect(text)
    } else {
        TransportError::Other(text)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

impl Transport for HttpTransport {
    fn post(
        &mut self,
        path: &str,
        body: Vec<u8>,
        bearer: Option<&str>,
    ) -> Result<(u16, Vec<u8>), TransportError> {
        let mut req = self
            .client
            .post(format!("{}{}", self.base, path))
            .header(reqwest::header::CONTENT_TYPE, proto::CONTENT_TYPE)
            .header(reqwest::header::ACCEPT, proto::CONTENT_TYPE)
            .header(proto::PROTOCOL_HEADER, proto::PROTOCOL_VERSION.to_string())
            .body(body);
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        let resp = req.send().map_err(|e| classify(&e))?;
        let status = resp.status().as_u16();
        // A reply body is one zstd frame; refuse anything larger than the decompressed cap.
        let mut out = Vec::new();
        resp.take(proto::MAX_BODY_BYTES as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| {
                TransportError::Other(format!("reading the reply: {}", error_chain(&e)))
            })?;
        if out.len() > proto::MAX_BODY_BYTES {
            return Err(TransportError::Other(format!(
                "the reply is larger than {} bytes",
                proto::MAX_BODY_BYTES
            )));
        }
        Ok((status, out))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    use super::*;

    /// The request head lines and body a [`one_shot`] server received.
    type Received = std::thread::JoinHandle<(Vec<String>, Vec<u8>)>;

    /// A one-request HTTP/1.1 server on loopback that records the request head and body,
    /// and answers `status` with `reply`.
    fn one_shot(status: u16, reply: Vec<u8>) -> (String, Received) {
        one_shot_with(status, "", reply)
    }

    /// [`one_shot`] with extra header lines (each ending in `\r\n`).
    fn one_shot_with(status: u16, extra: &'static str, reply: Vec<u8>) -> (String, Received) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let line = line.trim_end().to_string();
                if line.is_empty() {
                    break;
                }
                head.push(line);
            }
            let len: usize = head
                .iter()
                .find_map(|h| {
                    h.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let mut stream = stream;
            write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n",
                reply.len()
            )
            .unwrap();
            stream.write_all(&reply).unwrap();
            (head, body)
        });
        (format!("http://{addr}"), handle)
    }

    #[test]
    fn posts_with_the_protocol_headers_and_reads_the_reply() {
        let reply = proto::encode(&proto::EscalateResponse { server_time_ms: 42 });
        let (url, server) = one_shot(200, reply.clone());
        let mut t = HttpTransport::new(&format!("{url}/")).unwrap();
        let (status, body) = t
            .post("/v1/escalate", b"abc".to_vec(), Some("tok"))
            .unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, reply);
        let (head, sent) = server.join().unwrap();
        assert_eq!(head[0], "POST /v1/escalate HTTP/1.1");
        let lower: Vec<String> = head.iter().map(|h| h.to_ascii_lowercase()).collect();
        assert!(lower.contains(&format!("content-type: {}", proto::CONTENT_TYPE)));
        assert!(lower.contains(&format!(
            "{}: {}",
            proto::PROTOCOL_HEADER,
            proto::PROTOCOL_VERSION
        )));
        assert!(lower.contains(&"authorization: bearer tok".to_string()));
        assert_eq!(sent, b"abc");
    }

    #[test]
    fn an_error_status_is_a_reply_and_no_server_is_a_connect_error() {
        let (url, server) = one_shot(403, b"nope".to_vec());
        let mut t = HttpTransport::new(&url).unwrap();
        assert_eq!(
            t.post("/v1/pull", vec![], None).unwrap(),
            (403, b"nope".to_vec())
        );
        server.join().unwrap();

        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut t = HttpTransport::new(&format!("http://127.0.0.1:{port}")).unwrap();
        assert!(matches!(
            t.post("/v1/pull", vec![], None),
            Err(TransportError::Connect(_))
        ));
    }

    #[test]
    fn redirects_are_not_followed() {
        // A second server that records whether the token was carried to it.
        let (elsewhere, hit) = one_shot(200, b"stolen".to_vec());
        let location: &'static str =
            Box::leak(format!("location: {elsewhere}/v1/pull\r\n").into_boxed_str());
        let (url, server) = one_shot_with(307, location, b"moved".to_vec());
        let mut t = HttpTransport::new(&url).unwrap();
        assert_eq!(
            t.post("/v1/pull", b"x".to_vec(), Some("tok")).unwrap(),
            (307, b"moved".to_vec())
        );
        server.join().unwrap();
        // Nothing reached the other server: the first request it sees is ours.
        let mut probe =
            std::net::TcpStream::connect(elsewhere.trim_start_matches("http://")).unwrap();
        probe.write_all(b"GET /probe HTTP/1.1\r\n\r\n").unwrap();
        let (head, _) = hit.join().unwrap();
        assert_eq!(head[0], "GET /probe HTTP/1.1", "the redirect was followed");
    }

    #[test]
    fn the_request_timeout_set_by_the_app_applies() {
        // A server that accepts and never answers.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            std::thread::sleep(std::time::Duration::from_secs(3));
            drop(conn);
        });
        let mut t =
            HttpTransport::with_timeouts(&url, Duration::from_secs(1), Duration::from_millis(300))
                .unwrap();
        let started = std::time::Instant::now();
        assert!(matches!(
            t.post("/v1/pull", vec![], None),
            Err(TransportError::Timeout(_))
        ));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        server.join().unwrap();
    }

    #[test]
    fn bad_urls_and_certificates_are_refused() {
        assert!(HttpTransport::new("ftp://x").is_err());
        assert!(HttpTransport::new("https://").is_err());
        assert!(HttpTransport::with_root_certificates_pem("https://x", b"not pem").is_err());
        assert!(HttpTransport::new("https://station.example:8443").is_ok());
    }
}
