//! Running the server: logging, binding, graceful shutdown.
//!
//! TLS: this build serves plain HTTP. Terminate TLS in front of it (a reverse proxy such as
//! nginx or Caddy on the station's machine, forwarding to `XIUHUA_LISTEN` on loopback);
//! setting `XIUHUA_TLS_CERT`/`XIUHUA_TLS_KEY` is refused with that advice rather than
//! silently serving plain text.

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::auth::Secret;
use crate::config::{Backend, Config};
use crate::http::{AppState, Limits, Notifier, router};
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
    let storage = SqliteStorage::open(&cfg.data_dir).map_err(|e| e.to_string())?;
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
            let s = PgStorage::open(&url, &cfg.pg_options())
                .await
                .map_err(|e| e.to_string())?;
            let mut fresh = [0u8; 32];
            getrandom::fill(&mut fresh).map_err(|e| format!("server secret: {e}"))?;
            let secret = s
                .shared_secret(&fresh)
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
    let app = router(state);
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on http://{addr}");
    {
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }
    tracing::info!(%addr, data_dir = %cfg.data_dir.display(), "serving");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
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
