//! Running the server: logging, binding, the connection limits, graceful shutdown.
//!
//! Connections are served by hyper's HTTP/1 server directly (not `axum::serve`), so that
//! the edge has limits: a connection's request headers must arrive within
//! `XIUHUA_HEADER_TIMEOUT_SECS` (hyper's header read timeout, which also closes a
//! kept-alive connection idle that long), a request body may pause at most
//! `XIUHUA_BODY_TIMEOUT_SECS` between reads (tower-http, in [`crate::http::router`]), and
//! at most `XIUHUA_MAX_CONNECTIONS` connections are open at once, at most
//! `XIUHUA_MAX_CONNECTIONS_PER_IP` from one address; a connection over a cap is closed as
//! soon as it is accepted, so a flood of half-open connections never takes every file
//! descriptor and others' requests (`/healthz` included) are still answered.
//!
//! TLS: this build serves plain HTTP. Terminate TLS in front of it (a reverse proxy such as
//! nginx or Caddy on the station's machine, forwarding to `XIUHUA_LISTEN` on loopback);
//! setting `XIUHUA_TLS_CERT`/`XIUHUA_TLS_KEY` is refused with that advice rather than
//! silently serving plain text.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::auth::Secret;
use crate::config::{Backend, Config};
use crate::edge::ConnectionsPerIp;
use crate::http::{AppState, Limits, Notifier, router};
use crate::metrics::Metrics;
use crate::storage::Storage;
use crate::storage::postgres::{PgStorage, redact};
use crate::storage::sqlite::SqliteStorage;

/// Sets up `tracing` from the configuration (call once per process).
pub fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if cfg.log_json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Opens the data folder: the database and the signing secret.
pub fn open_data(cfg: &Config) -> Result<(SqliteStorage, Secret), String> {
    let key = cfg.database_key().map_err(|e| e.to_string())?;
    let storage =
        SqliteStorage::open_with_key(&cfg.data_dir, key.as_deref()).map_err(|e| e.to_string())?;
    let secret =
        Secret::load_or_create(&cfg.data_dir).map_err(|e| format!("server secret: {e}"))?;
    Ok((storage, secret))
}

/// Opens the storage the configuration selects (SQLite in the data folder by default,
/// PostgreSQL for a `postgres://` database URL) and the signing secret: in the data folder
/// for SQLite, in the database for PostgreSQL (so that every process, and the admin commands
/// wherever they run, share it).
pub async fn open_storage(cfg: &Config) -> Result<(Arc<dyn Storage>, Secret), String> {
    match cfg.backend() {
        Backend::Sqlite(_) => {
            let (s, secret) = open_data(cfg)?;
            Ok((Arc::new(s), secret))
        }
        Backend::Postgres(url) => {
            let given = cfg.signing_secret().map_err(|e| e.to_string())?;
            let s = PgStorage::open(&url, &cfg.pg_options())
                .await
                .map_err(|e| e.to_string())?;
            let secret = s
                .signing_secret(given.as_deref())
                .await
                .map_err(|e| format!("server secret: {e}"))?;
            tracing::info!(database = %redact(&url), "storage: PostgreSQL");
            Ok((Arc::new(s), Secret::from_bytes(&secret)))
        }
    }
}

/// Wakes this process's long polls when any process sharing the database stores changes.
pub fn forward_events(storage: &dyn Storage, notifier: Arc<Notifier>) {
    let Some(mut rx) = storage.subscribe() else {
        return;
    };
    tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match rx.recv().await {
                Ok(ev) => notifier.notify(&ev.grid),
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "grid events lagged; some long polls wait longer"
                    );
                }
                Err(RecvError::Closed) => break,
            }
        }
    });
}

/// The server's routes, with the station console's when the configuration enables it.
pub fn app_router(state: AppState, cfg: &Config) -> axum::Router {
    if cfg.console.enabled {
        let console = crate::console::router(&state, &cfg.console);
        router(state).merge(console)
    } else {
        router(state)
    }
}

/// Serves until SIGINT or SIGTERM, then finishes the requests in flight.
pub async fn serve(cfg: Config) -> Result<(), String> {
    if cfg.tls_cert.is_some() {
        return Err(
            "TLS is not served by this process: terminate TLS in front of it (nginx, Caddy) and \
                    unset XIUHUA_TLS_CERT / XIUHUA_TLS_KEY"
                .into(),
        );
    }
    let (storage, secret) = open_storage(&cfg).await?;
    let state = AppState::new(storage, secret, Limits::from_config(&cfg));
    forward_events(&*state.storage, state.notifier.clone());
    let metrics = state.metrics.clone();
    let app = app_router(state, &cfg);
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on http://{addr}").and_then(|()| out.flush());
        if cfg.console.enabled {
            let _ = writeln!(out, "console on http://{addr}/console/").and_then(|()| out.flush());
        }
    }
    tracing::info!(%addr, data_dir = %cfg.data_dir.display(), "serving");
    serve_connections(
        listener,
        app,
        &EdgeLimits::from_config(&cfg),
        metrics,
        shutdown_signal(),
    )
    .await;
    tracing::info!("stopped");
    Ok(())
}

/// The connection-level limits.
#[derive(Debug, Clone)]
pub struct EdgeLimits {
    pub header_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
}

impl EdgeLimits {
    pub fn from_config(cfg: &Config) -> EdgeLimits {
        EdgeLimits {
            header_timeout: Duration::from_secs(cfg.header_timeout_secs),
            max_connections: cfg.max_connections,
            max_connections_per_ip: cfg.max_connections_per_ip,
        }
    }
}

/// How long graceful shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(35);

/// Accepts and serves connections under [`EdgeLimits`] until `shutdown` completes, then
/// lets the requests in flight finish (at most [`SHUTDOWN_GRACE`]).
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    limits: &EdgeLimits,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_ip = Arc::new(ConnectionsPerIp::default());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 * 1024);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before accept: keep
                    // serving the connections already open.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            Metrics::add(&metrics.connections_refused, 1);
            drop(stream);
            continue;
        };
        let Some(slot) = ConnectionsPerIp::open(&per_ip, peer.ip(), limits.max_connections_per_ip)
        else {
            Metrics::add(&metrics.connections_refused, 1);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let svc =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                app.clone().oneshot(req)
            });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), svc));
        tokio::spawn(async move {
            let _ = conn.await;
            drop(slot);
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!("requests still in flight at shutdown were cut off");
        }
    }
}

/// Completes at SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
