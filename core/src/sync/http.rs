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

/// Which certificate authorities a transport trusts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Trust {
    /// The platform's own verifier, except on Android: there the platform verifier needs
    /// the JVM handed to it before the first request, so the bundled roots are used instead.
    #[default]
    Default,
    /// The public roots bundled in the library (Mozilla's, from `webpki-root-certs`).
    Bundled,
    /// Only these PEM certificates: a station's own certificate (self-signed, made with
    /// `basicConstraints=CA:FALSE`) or the station's own CA. Nothing else is trusted.
    Pinned(Vec<u8>),
}

/// What the app decides about a transport: whom it trusts, where plain `http://` may go
/// and how long it waits. The default is the safe one: public roots, plain HTTP only to
/// this device (loopback), the default timeouts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransportPolicy {
    pub trust: Trust,
    /// Besides loopback, where plain `http://` is allowed: host names (`station.lan`),
    /// addresses (`192.168.10.2`) and networks (`192.168.10.0/24`): a station's LAN that the
    /// app's user chose to allow. Anything else needs `https://`.
    pub plain_http: Vec<String>,
    /// Time to open a connection; zero is [`CONNECT_TIMEOUT`].
    pub connect: Duration,
    /// Time for a whole request and its reply; zero is [`REQUEST_TIMEOUT`].
    pub request: Duration,
}

/// An entry of [`TransportPolicy::plain_http`], parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PlainHost {
    Name(String),
    Net(ipnet::IpNet),
}

fn plain_host(entry: &str) -> Result<PlainHost> {
    let e = entry.trim();
    if let Ok(net) = e.parse::<ipnet::IpNet>() {
        return Ok(PlainHost::Net(net));
    }
    if let Ok(ip) = e.parse::<std::net::IpAddr>() {
        return Ok(PlainHost::Net(ipnet::IpNet::from(ip)));
    }
    let name_ok = !e.is_empty()
        && e.len() <= 253
        && e.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !name_ok {
        return Err(Error::invalid(
            "plain_http",
            format!("{e:?} is not a host name, an address or a network such as 192.168.10.0/24"),
        ));
    }
    Ok(PlainHost::Name(e.to_ascii_lowercase()))
}

impl TransportPolicy {
    /// Checks the policy's entries and certificates (what the app's settings screen calls
    /// before saving them).
    pub fn check(&self) -> Result<()> {
        for e in &self.plain_http {
            plain_host(e)?;
        }
        self.roots().map(|_| ())
    }

    /// The certificates to trust instead of the platform's, if any.
    fn roots(&self) -> Result<Option<Vec<reqwest::Certificate>>> {
        let bundled = || {
            webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .map(|c| reqwest::Certificate::from_der(c.as_ref()))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::Network(format!("the bundled roots: {e}")))
        };
        match &self.trust {
            Trust::Default if cfg!(target_os = "android") => bundled().map(Some),
            Trust::Default => Ok(None),
            Trust::Bundled => bundled().map(Some),
            Trust::Pinned(pem) => {
                use rustls::pki_types::CertificateDer;
                use rustls::pki_types::pem::PemObject;
                let bad = |e: String| Error::invalid("certificate", e);
                let ders = CertificateDer::pem_slice_iter(pem)
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| bad(format!("not a PEM certificate: {e}")))?;
                if ders.is_empty() {
                    return Err(bad("no PEM certificate found".into()));
                }
                ders.iter()
                    .map(|der| {
                        // Parsed as a trust anchor now, so that a damaged certificate is
                        // refused when it is set, not ignored at the first sync.
                        rustls::RootCertStore::empty()
                            .add(der.clone())
                            .map_err(|e| bad(format!("not an X.509 certificate: {e}")))?;
                        reqwest::Certificate::from_der(der.as_ref()).map_err(|e| bad(e.to_string()))
                    })
                    .collect::<Result<Vec<_>>>()
                    .map(Some)
            }
        }
    }

    /// The server URL without its trailing slash, if the policy lets the transport use it:
    /// `https://` anywhere, `http://` to loopback and to the allowed hosts and networks.
    pub fn check_url(&self, base_url: &str) -> Result<String> {
        let base = base_url.trim().trim_end_matches('/');
        let bad = || {
            Error::invalid(
                "server_url",
                "must look like https://host[:port] (or http:// on a trusted network)",
            )
        };
        let url = reqwest::Url::parse(base).map_err(|_| bad())?;
        let host = match url.host() {
            Some(h) if url.username().is_empty() && url.password().is_none() => h,
            _ => return Err(bad()),
        };
        match url.scheme() {
            "https" => return Ok(base.to_string()),
            "http" => {}
            _ => return Err(bad()),
        }
        let (ip, name) = match &host {
            url::Host::Ipv4(a) => (Some(std::net::IpAddr::V4(*a)), None),
            url::Host::Ipv6(a) => (Some(std::net::IpAddr::V6(*a)), None),
            url::Host::Domain(d) => (None, Some(d.to_ascii_lowercase())),
        };
        if ip.is_some_and(|a| a.is_loopback()) || name.as_deref() == Some("localhost") {
            return Ok(base.to_string());
        }
        for e in &self.plain_http {
            let allowed = match plain_host(e)? {
                PlainHost::Net(net) => ip.is_some_and(|a| net.contains(&a)),
                PlainHost::Name(n) => name.as_deref() == Some(n.as_str()),
            };
            if allowed {
                return Ok(base.to_string());
            }
        }
        Err(Error::invalid(
            "server_url",
            format!(
                "plain http:// to {host} is not allowed: use https://, or allow this address \
                 (the station's LAN) in the app's settings"
            ),
        ))
    }
}

impl HttpTransport {
    /// A transport to the server at `base_url` (e.g. `https://station.example:8443`) under
    /// the default [`TransportPolicy`].
    pub fn new(base_url: &str) -> Result<HttpTransport> {
        Self::with_policy(base_url, &TransportPolicy::default())
    }

    /// A transport that trusts only the given PEM certificate(s): for a station whose
    /// server has its own self-signed certificate.
    pub fn with_root_certificates_pem(base_url: &str, pem: &[u8]) -> Result<HttpTransport> {
        Self::with_policy(
            base_url,
            &TransportPolicy {
                trust: Trust::Pinned(pem.to_vec()),
                ..TransportPolicy::default()
            },
        )
    }

    /// A transport with its own connect and whole-request timeouts (zero means the
    /// default).
    pub fn with_timeouts(
        base_url: &str,
        connect: Duration,
        request: Duration,
    ) -> Result<HttpTransport> {
        Self::with_policy(
            base_url,
            &TransportPolicy {
                connect,
                request,
                ..TransportPolicy::default()
            },
        )
    }

    /// A transport under `policy`: the URL is refused before any connection when the policy
    /// does not allow it (plain `http://` to a host not allowed).
    pub fn with_policy(base_url: &str, policy: &TransportPolicy) -> Result<HttpTransport> {
        let base = policy.check_url(base_url)?;
        let mut builder = reqwest::blocking::Client::builder();
        if let Some(certs) = policy.roots()? {
            builder = builder.tls_certs_only(certs);
        }
        let or = |d: Duration, default: Duration| if d.is_zero() { default } else { d };
        let client = builder
            .connect_timeout(or(policy.connect, CONNECT_TIMEOUT))
            .timeout(or(policy.request, REQUEST_TIMEOUT))
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

    #[test]
    fn plain_http_goes_only_to_loopback_and_to_what_the_app_allows() {
        let default = TransportPolicy::default();
        for ok in [
            "http://127.0.0.1:8080",
            "http://127.9.9.9",
            "http://[::1]:80/",
            "http://localhost:3000",
            "https://station.example",
            "https://192.168.10.2:8443",
        ] {
            assert!(default.check_url(ok).is_ok(), "{ok}");
        }
        for refused in [
            "http://192.168.10.2:8080",
            "http://station.lan",
            "http://10.0.0.1",
            "ftp://station.example",
            "https://",
            "station.example",
            "https://user:pw@station.example",
        ] {
            let e = default.check_url(refused).unwrap_err();
            assert!(matches!(e, Error::Invalid { .. }), "{refused}: {e:?}");
        }
        let e = default.check_url("http://192.168.10.2:8080").unwrap_err();
        assert!(e.to_string().contains("https://"), "{e}");

        let lan = TransportPolicy {
            plain_http: vec![
                "192.168.10.0/24".into(),
                "Station.LAN".into(),
                "10.1.2.3".into(),
            ],
            ..TransportPolicy::default()
        };
        lan.check().unwrap();
        for ok in [
            "http://192.168.10.2:8080",
            "http://station.lan",
            "http://10.1.2.3",
        ] {
            assert!(lan.check_url(ok).is_ok(), "{ok}");
        }
        for refused in ["http://192.168.11.2", "http://10.1.2.4", "http://other.lan"] {
            assert!(lan.check_url(refused).is_err(), "{refused}");
        }
        // Refused before any connection: nothing listens at these addresses.
        assert!(HttpTransport::new("http://192.168.10.2:1").is_err());
        assert!(HttpTransport::with_policy("http://192.168.10.2:1", &lan).is_ok());
        for bad in ["", "192.168.10.0/33", "station lan", "a..b", "http://x"] {
            let p = TransportPolicy {
                plain_http: vec![bad.into()],
                ..TransportPolicy::default()
            };
            assert!(p.check().is_err(), "{bad:?}");
        }
    }

    /// A one-request HTTPS server on loopback with the station's test certificate; it
    /// answers 200 "ok" to a request, and returns whether a request arrived.
    fn tls_one_shot() -> (String, std::thread::JoinHandle<bool>) {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(include_bytes!("../../tests/fixtures/tls/station.pem"))
                .collect::<std::result::Result<_, _>>()
                .unwrap();
        let key =
            PrivateKeyDer::from_pem_slice(include_bytes!("../../tests/fixtures/tls/station.key"))
                .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let config = std::sync::Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let conn = rustls::ServerConnection::new(config).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut reader = BufReader::new(&mut tls);
            let mut line = String::new();
            // A client that refuses the certificate ends the handshake: no request line.
            if reader.read_line(&mut line).is_err() || line.is_empty() {
                return false;
            }
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l).is_err() || l.trim_end().is_empty() {
                    break;
                }
            }
            drop(reader);
            let _ = tls
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.flush();
            true
        });
        (format!("https://localhost:{port}"), handle)
    }

    #[test]
    fn a_pinned_station_certificate_is_trusted_and_nothing_else_is() {
        let pinned = TransportPolicy {
            trust: Trust::Pinned(include_bytes!("../../tests/fixtures/tls/station.pem").to_vec()),
            ..TransportPolicy::default()
        };
        pinned.check().unwrap();
        let (url, server) = tls_one_shot();
        let mut t = HttpTransport::with_policy(&url, &pinned).unwrap();
        assert_eq!(
            t.post("/v1/pull", vec![], None).unwrap(),
            (200, b"ok".to_vec())
        );
        assert!(server.join().unwrap());

        // The same self-signed server under the bundled public roots, and under another
        // pinned certificate: refused in the handshake, no request sent.
        let other = TransportPolicy {
            trust: Trust::Pinned(include_bytes!("../../tests/fixtures/tls/other.pem").to_vec()),
            ..TransportPolicy::default()
        };
        let bundled = TransportPolicy {
            trust: Trust::Bundled,
            ..TransportPolicy::default()
        };
        for policy in [bundled, other] {
            let (url, server) = tls_one_shot();
            let mut t = HttpTransport::with_policy(&url, &policy).unwrap();
            let e = t.post("/v1/pull", vec![], None).unwrap_err();
            assert!(
                format!("{e:?}").to_lowercase().contains("certificate"),
                "{e:?}"
            );
            assert!(!server.join().unwrap(), "no request reached the server");
        }

        for junk in [
            &b"not a certificate"[..],
            b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n",
            b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        ] {
            let junk = TransportPolicy {
                trust: Trust::Pinned(junk.to_vec()),
                ..TransportPolicy::default()
            };
            assert!(
                matches!(junk.check(), Err(Error::Invalid { .. })),
                "{junk:?}"
            );
            assert!(HttpTransport::with_policy("https://localhost", &junk).is_err());
        }
    }
}
