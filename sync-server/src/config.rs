//! Configuration: a TOML file (all keys optional) overridden by environment variables.
//!
//! | key | variable | default |
//! |---|---|---|
//! | `listen` | `XIUHUA_LISTEN` | `127.0.0.1:8640` |
//! | `data_dir` | `XIUHUA_DATA_DIR` | `./xiuhua-data` |
//! | `log` | `XIUHUA_LOG` | `info` (a `tracing` filter) |
//! | `log_format` | `XIUHUA_LOG_FORMAT` | `text` (or `json`) |
//! | `tls_cert` / `tls_key` | `XIUHUA_TLS_CERT` / `XIUHUA_TLS_KEY` | none: terminate TLS in front |
//! | `max_body_bytes` | `XIUHUA_MAX_BODY_BYTES` | 16 MiB (compressed request body) |
//! | `access_ttl_secs` | `XIUHUA_ACCESS_TTL_SECS` | 900 |
//! | `max_push_changes` | `XIUHUA_MAX_PUSH_CHANGES` | 10,000 |
//! | `max_pull_limit` | `XIUHUA_MAX_PULL_LIMIT` | 5,000 |
//! | `device_daily_bytes` | `XIUHUA_DEVICE_DAILY_BYTES` | 512 MiB of new changes per device per UTC day (0: none) |
//! | `device_daily_changes` | `XIUHUA_DEVICE_DAILY_CHANGES` | 500,000 new changes per device per UTC day (0: none) |
//! | `max_change_bytes` | `XIUHUA_MAX_CHANGE_BYTES` | 1 MiB (one pushed change) |
//! | `max_change_ops` | `XIUHUA_MAX_CHANGE_OPS` | 100,000 (operations in one pushed change) |
//! | `max_doc_ops` | `XIUHUA_MAX_DOC_OPS` | 500,000 (operations in a document's history) |
//! | `max_doc_bytes` | `XIUHUA_MAX_DOC_BYTES` | 4 MiB (a document as saved) |
//! | `database_url` | `XIUHUA_DATABASE_URL` | none: embedded SQLite in `data_dir`; `postgres://…` or `postgresql://…` selects PostgreSQL |
//! | `db_max_connections` | `XIUHUA_DB_MAX_CONNECTIONS` | 16 (PostgreSQL pool size per process) |
//! | `db_statement_timeout_ms` | `XIUHUA_DB_STATEMENT_TIMEOUT_MS` | 10,000 (0: none) |
//! | `db_connect_timeout_ms` | `XIUHUA_DB_CONNECT_TIMEOUT_MS` | 5,000 (connecting, or waiting for a pooled connection) |
//! | `header_timeout_secs` | `XIUHUA_HEADER_TIMEOUT_SECS` | 10 (a request's headers; also how long a kept-alive connection may sit idle) |
//! | `body_timeout_secs` | `XIUHUA_BODY_TIMEOUT_SECS` | 30 (between two reads of a request body) |
//! | `max_connections` | `XIUHUA_MAX_CONNECTIONS` | 512 (open connections; more are closed at once) |
//! | `max_connections_per_ip` | `XIUHUA_MAX_CONNECTIONS_PER_IP` | 64 |
//! | `max_long_polls_per_device` | `XIUHUA_MAX_LONG_POLLS_PER_DEVICE` | 2 (more answer 429) |
//! | `decode_workers` | `XIUHUA_DECODE_WORKERS` | the number of cores (request bodies decoded and checked at once) |
//! | `enroll_per_ip_per_minute` | `XIUHUA_ENROLL_PER_IP_PER_MINUTE` | 10 (enrollment attempts per client address) |
//! | `enroll_per_minute` | `XIUHUA_ENROLL_PER_MINUTE` | 120 (enrollment attempts from all addresses) |
//! | `secret_file` | `XIUHUA_SECRET_FILE` (or the secret itself in `XIUHUA_SECRET`) | PostgreSQL: the token-signing secret, at least 32 bytes |
//! | `db_key_file` | `XIUHUA_DB_KEY_FILE` (or the key itself in `XIUHUA_DB_KEY`) | none: SQLite: encrypt the server database with SQLCipher |
//! | `[console] enabled` | `XIUHUA_CONSOLE` | off: `1`/`true` serves the station console under `/console/` |
//! | `[console] secure_cookie` | `XIUHUA_CONSOLE_SECURE_COOKIE` | off: set it when TLS is terminated in front (cookies get `Secure`) |
//! | `[console] idle_minutes` | `XIUHUA_CONSOLE_IDLE_MINUTES` | 30 (a session unused this long ends) |
//! | `[console] session_hours` | `XIUHUA_CONSOLE_SESSION_HOURS` | 12 (a session ends this long after the login) |
//! | `[console] public_url` | `XIUHUA_PUBLIC_URL` | none: the address phones use, put in enrollment QR codes (else the request's `Host`) |

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What the file may hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    log: Option<String>,
    log_format: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    max_body_bytes: Option<usize>,
    access_ttl_secs: Option<u64>,
    max_push_changes: Option<usize>,
    max_pull_limit: Option<u32>,
    device_daily_bytes: Option<u64>,
    device_daily_changes: Option<u64>,
    max_change_bytes: Option<u64>,
    max_change_ops: Option<u64>,
    max_doc_ops: Option<u64>,
    max_doc_bytes: Option<u64>,
    database_url: Option<String>,
    db_max_connections: Option<u64>,
    db_statement_timeout_ms: Option<u64>,
    db_connect_timeout_ms: Option<u64>,
    header_timeout_secs: Option<u64>,
    body_timeout_secs: Option<u64>,
    max_connections: Option<u64>,
    max_connections_per_ip: Option<u64>,
    max_long_polls_per_device: Option<u64>,
    decode_workers: Option<u64>,
    enroll_per_ip_per_minute: Option<u64>,
    enroll_per_minute: Option<u64>,
    secret_file: Option<PathBuf>,
    db_key_file: Option<PathBuf>,
    console: Option<ConsoleFile>,
}

/// The file's `[console]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsoleFile {
    enabled: Option<bool>,
    secure_cookie: Option<bool>,
    idle_minutes: Option<u64>,
    session_hours: Option<u64>,
    public_url: Option<String>,
}

/// The station console's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// Serve `/console/` (off by default).
    pub enabled: bool,
    /// Give cookies the `Secure` attribute: set when a TLS proxy is in front. A flag rather
    /// than `X-Forwarded-Proto`, which any client can send when no proxy strips it.
    pub secure_cookie: bool,
    pub idle_minutes: u64,
    pub session_hours: u64,
    /// The server address phones use (enrollment QR codes); `None`: from the request.
    pub public_url: Option<String>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            enabled: false,
            secure_cookie: false,
            idle_minutes: 30,
            session_hours: 12,
            public_url: None,
        }
    }
}

/// A secret value: never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Sensitive(pub String);

impl std::fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sensitive(..)")
    }
}

/// The resolved configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub log: String,
    pub log_json: bool,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub max_body_bytes: usize,
    pub access_ttl_secs: u64,
    pub max_push_changes: usize,
    pub max_pull_limit: u32,
    /// Bytes of new changes a device may store per UTC day (0: no limit).
    pub device_daily_bytes: u64,
    /// New changes a device may store per UTC day (0: no limit).
    pub device_daily_changes: u64,
    /// Largest pushed change, in bytes.
    pub max_change_bytes: usize,
    /// Most operations in one pushed change.
    pub max_change_ops: usize,
    /// Most operations in a document's history.
    pub max_doc_ops: u64,
    /// Largest document as saved, in bytes.
    pub max_doc_bytes: usize,
    /// `None`: embedded SQLite in `data_dir`; else a `postgres://` URL.
    pub database_url: Option<String>,
    pub db_max_connections: u64,
    pub db_statement_timeout_ms: u64,
    pub db_connect_timeout_ms: u64,
    pub header_timeout_secs: u64,
    pub body_timeout_secs: u64,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_long_polls_per_device: usize,
    pub decode_workers: usize,
    pub enroll_per_ip_per_minute: u32,
    pub enroll_per_minute: u32,
    /// PostgreSQL: the file holding the token-signing secret.
    pub secret_file: Option<PathBuf>,
    /// PostgreSQL: the token-signing secret itself (`XIUHUA_SECRET`).
    pub secret: Option<Sensitive>,
    /// SQLite: the file holding the SQLCipher key of the server database.
    pub db_key_file: Option<PathBuf>,
    /// SQLite: the SQLCipher key itself (`XIUHUA_DB_KEY`).
    pub db_key: Option<Sensitive>,
    /// The station console.
    pub console: ConsoleConfig,
}

/// Which storage backend a configuration selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite in this folder.
    Sqlite(PathBuf),
    /// PostgreSQL at this URL.
    Postgres(String),
}

/// Whether a database URL names PostgreSQL.
pub fn is_postgres_url(url: &str) -> bool {
    let u = url.trim();
    u.starts_with("postgres://") || u.starts_with("postgresql://")
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8640)),
            data_dir: PathBuf::from("./xiuhua-data"),
            log: "info".into(),
            log_json: false,
            tls_cert: None,
            tls_key: None,
            max_body_bytes: 16 * 1024 * 1024,
            access_ttl_secs: 15 * 60,
            max_push_changes: 10_000,
            max_pull_limit: 5_000,
            device_daily_bytes: 512 * 1024 * 1024,
            device_daily_changes: 500_000,
            max_change_bytes: crate::ingest::MAX_CHANGE_BYTES,
            max_change_ops: crate::ingest::MAX_CHANGE_OPS,
            max_doc_ops: crate::ingest::MAX_DOC_OPS,
            max_doc_bytes: crate::ingest::MAX_DOC_BYTES,
            database_url: None,
            db_max_connections: 16,
            db_statement_timeout_ms: 10_000,
            db_connect_timeout_ms: 5_000,
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            max_connections: 512,
            max_connections_per_ip: 64,
            max_long_polls_per_device: 2,
            decode_workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            enroll_per_ip_per_minute: 10,
            enroll_per_minute: 120,
            secret_file: None,
            secret: None,
            db_key_file: None,
            db_key: None,
            console: ConsoleConfig::default(),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Reads `file` (when given) and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_with(file, |k| std::env::var(k).ok())
    }

    /// Reads `file` (when given) and the variables that `env` returns.
    pub fn load_with(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let f: FileConfig = match file {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| ConfigError(format!("cannot read {}: {e}", p.display())))?;
                toml::from_str(&text).map_err(|e| ConfigError(format!("{}: {e}", p.display())))?
            }
            None => FileConfig::default(),
        };
        let d = Config::default();
        let get =
            |var: &str, file: Option<String>| env(var).filter(|v| !v.trim().is_empty()).or(file);
        let listen = match get("XIUHUA_LISTEN", f.listen) {
            Some(s) => s
                .trim()
                .parse()
                .map_err(|e| ConfigError(format!("listen address {s:?}: {e}")))?,
            None => d.listen,
        };
        let num = |var: &str, file: Option<u64>, default: u64| -> Result<u64, ConfigError> {
            match env(var).filter(|v| !v.trim().is_empty()) {
                Some(s) => s
                    .trim()
                    .parse()
                    .map_err(|e| ConfigError(format!("{var}={s:?}: {e}"))),
                None => Ok(file.unwrap_or(default)),
            }
        };
        let log_format = get("XIUHUA_LOG_FORMAT", f.log_format).unwrap_or_else(|| "text".into());
        let log_json = match log_format.trim() {
            "json" => true,
            "text" | "" => false,
            other => {
                return Err(ConfigError(format!(
                    "log format {other:?}: expected text or json"
                )));
            }
        };
        let cf = f.console.unwrap_or_default();
        let flag = |var: &str, file: Option<bool>| -> Result<bool, ConfigError> {
            match env(var).map(|v| v.trim().to_ascii_lowercase()) {
                Some(v) if v.is_empty() => Ok(file.unwrap_or(false)),
                Some(v) => match v.as_str() {
                    "1" | "true" | "yes" | "on" => Ok(true),
                    "0" | "false" | "no" | "off" => Ok(false),
                    _ => Err(ConfigError(format!("{var}={v:?}: expected 1 or 0"))),
                },
                None => Ok(file.unwrap_or(false)),
            }
        };
        let console = ConsoleConfig {
            enabled: flag("XIUHUA_CONSOLE", cf.enabled)?,
            secure_cookie: flag("XIUHUA_CONSOLE_SECURE_COOKIE", cf.secure_cookie)?,
            idle_minutes: num("XIUHUA_CONSOLE_IDLE_MINUTES", cf.idle_minutes, 30)?,
            session_hours: num("XIUHUA_CONSOLE_SESSION_HOURS", cf.session_hours, 12)?,
            public_url: get("XIUHUA_PUBLIC_URL", cf.public_url)
                .map(|u| u.trim().trim_end_matches('/').to_string()),
        };
        if console.idle_minutes == 0 || console.session_hours == 0 {
            return Err(ConfigError(
                "the console's session lifetimes must be positive".into(),
            ));
        }
        if let Some(u) = &console.public_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err(ConfigError(format!(
                "public URL {u:?}: expected http://… or https://…"
            )));
        }
        let cfg = Config {
            console,
            listen,
            data_dir: get(
                "XIUHUA_DATA_DIR",
                f.data_dir.map(|p| p.to_string_lossy().into_owned()),
            )
            .map(PathBuf::from)
            .unwrap_or(d.data_dir),
            log: get("XIUHUA_LOG", f.log).unwrap_or(d.log),
            log_json,
            tls_cert: get(
                "XIUHUA_TLS_CERT",
                f.tls_cert.map(|p| p.to_string_lossy().into_owned()),
            )
            .map(PathBuf::from),
            tls_key: get(
                "XIUHUA_TLS_KEY",
                f.tls_key.map(|p| p.to_string_lossy().into_owned()),
            )
            .map(PathBuf::from),
            max_body_bytes: usize::try_from(num(
                "XIUHUA_MAX_BODY_BYTES",
                f.max_body_bytes.map(|v| v as u64),
                d.max_body_bytes as u64,
            )?)
            .map_err(|e| ConfigError(e.to_string()))?,
            access_ttl_secs: num(
                "XIUHUA_ACCESS_TTL_SECS",
                f.access_ttl_secs,
                d.access_ttl_secs,
            )?,
            max_push_changes: usize::try_from(num(
                "XIUHUA_MAX_PUSH_CHANGES",
                f.max_push_changes.map(|v| v as u64),
                d.max_push_changes as u64,
            )?)
            .map_err(|e| ConfigError(e.to_string()))?,
            max_pull_limit: u32::try_from(num(
                "XIUHUA_MAX_PULL_LIMIT",
                f.max_pull_limit.map(u64::from),
                u64::from(d.max_pull_limit),
            )?)
            .map_err(|e| ConfigError(e.to_string()))?,
            device_daily_bytes: num(
                "XIUHUA_DEVICE_DAILY_BYTES",
                f.device_daily_bytes,
                d.device_daily_bytes,
            )?,
            device_daily_changes: num(
                "XIUHUA_DEVICE_DAILY_CHANGES",
                f.device_daily_changes,
                d.device_daily_changes,
            )?,
            max_change_bytes: to_usize(num(
                "XIUHUA_MAX_CHANGE_BYTES",
                f.max_change_bytes,
                d.max_change_bytes as u64,
            )?)?,
            max_change_ops: to_usize(num(
                "XIUHUA_MAX_CHANGE_OPS",
                f.max_change_ops,
                d.max_change_ops as u64,
            )?)?,
            max_doc_ops: num("XIUHUA_MAX_DOC_OPS", f.max_doc_ops, d.max_doc_ops)?,
            max_doc_bytes: to_usize(num(
                "XIUHUA_MAX_DOC_BYTES",
                f.max_doc_bytes,
                d.max_doc_bytes as u64,
            )?)?,
            database_url: get("XIUHUA_DATABASE_URL", f.database_url).map(|u| u.trim().to_string()),
            db_max_connections: num(
                "XIUHUA_DB_MAX_CONNECTIONS",
                f.db_max_connections,
                d.db_max_connections,
            )?,
            db_statement_timeout_ms: num(
                "XIUHUA_DB_STATEMENT_TIMEOUT_MS",
                f.db_statement_timeout_ms,
                d.db_statement_timeout_ms,
            )?,
            db_connect_timeout_ms: num(
                "XIUHUA_DB_CONNECT_TIMEOUT_MS",
                f.db_connect_timeout_ms,
                d.db_connect_timeout_ms,
            )?,
            header_timeout_secs: num(
                "XIUHUA_HEADER_TIMEOUT_SECS",
                f.header_timeout_secs,
                d.header_timeout_secs,
            )?,
            body_timeout_secs: num(
                "XIUHUA_BODY_TIMEOUT_SECS",
                f.body_timeout_secs,
                d.body_timeout_secs,
            )?,
            max_connections: to_usize(num(
                "XIUHUA_MAX_CONNECTIONS",
                f.max_connections,
                d.max_connections as u64,
            )?)?,
            max_connections_per_ip: to_usize(num(
                "XIUHUA_MAX_CONNECTIONS_PER_IP",
                f.max_connections_per_ip,
                d.max_connections_per_ip as u64,
            )?)?,
            max_long_polls_per_device: to_usize(num(
                "XIUHUA_MAX_LONG_POLLS_PER_DEVICE",
                f.max_long_polls_per_device,
                d.max_long_polls_per_device as u64,
            )?)?,
            decode_workers: to_usize(num(
                "XIUHUA_DECODE_WORKERS",
                f.decode_workers,
                d.decode_workers as u64,
            )?)?,
            enroll_per_ip_per_minute: to_u32(num(
                "XIUHUA_ENROLL_PER_IP_PER_MINUTE",
                f.enroll_per_ip_per_minute,
                u64::from(d.enroll_per_ip_per_minute),
            )?)?,
            enroll_per_minute: to_u32(num(
                "XIUHUA_ENROLL_PER_MINUTE",
                f.enroll_per_minute,
                u64::from(d.enroll_per_minute),
            )?)?,
            secret_file: get(
                "XIUHUA_SECRET_FILE",
                f.secret_file.map(|p| p.to_string_lossy().into_owned()),
            )
            .map(PathBuf::from),
            secret: env("XIUHUA_SECRET")
                .filter(|v| !v.trim().is_empty())
                .map(Sensitive),
            db_key_file: get(
                "XIUHUA_DB_KEY_FILE",
                f.db_key_file.map(|p| p.to_string_lossy().into_owned()),
            )
            .map(PathBuf::from),
            db_key: env("XIUHUA_DB_KEY")
                .filter(|v| !v.trim().is_empty())
                .map(Sensitive),
        };
        if cfg.header_timeout_secs == 0
            || cfg.body_timeout_secs == 0
            || cfg.max_connections == 0
            || cfg.max_connections_per_ip == 0
            || cfg.max_long_polls_per_device == 0
            || cfg.decode_workers == 0
            || cfg.enroll_per_ip_per_minute == 0
            || cfg.enroll_per_minute == 0
        {
            return Err(ConfigError(
                "timeouts, connection caps, decode workers and enrollment rates must be positive"
                    .into(),
            ));
        }
        if cfg.secret.is_some() && cfg.secret_file.is_some() {
            return Err(ConfigError(
                "set XIUHUA_SECRET or XIUHUA_SECRET_FILE, not both".into(),
            ));
        }
        if cfg.db_key.is_some() && cfg.db_key_file.is_some() {
            return Err(ConfigError(
                "set XIUHUA_DB_KEY or XIUHUA_DB_KEY_FILE, not both".into(),
            ));
        }
        if let Some(u) = &cfg.database_url
            && !is_postgres_url(u)
        {
            return Err(ConfigError(format!(
                "database URL {:?}: only postgres:// or postgresql:// URLs are supported; leave it unset for the embedded SQLite database in the data folder",
                crate::storage::postgres::redact(u)
            )));
        }
        if cfg.db_max_connections == 0 || cfg.db_connect_timeout_ms == 0 {
            return Err(ConfigError(
                "XIUHUA_DB_MAX_CONNECTIONS and XIUHUA_DB_CONNECT_TIMEOUT_MS must be positive"
                    .into(),
            ));
        }
        if cfg.tls_cert.is_some() != cfg.tls_key.is_some() {
            return Err(ConfigError(
                "set both XIUHUA_TLS_CERT and XIUHUA_TLS_KEY, or neither".into(),
            ));
        }
        if cfg.max_body_bytes == 0
            || cfg.access_ttl_secs == 0
            || cfg.max_push_changes == 0
            || cfg.max_pull_limit == 0
        {
            return Err(ConfigError(
                "limits and the access-token lifetime must be positive".into(),
            ));
        }
        cfg.ingest_caps()
            .validate()
            .map_err(|e| ConfigError(format!("{e} (XIUHUA_MAX_CHANGE_BYTES, XIUHUA_MAX_CHANGE_OPS, XIUHUA_MAX_DOC_OPS, XIUHUA_MAX_DOC_BYTES)")))?;
        Ok(cfg)
    }
}

fn to_usize(v: u64) -> Result<usize, ConfigError> {
    usize::try_from(v).map_err(|e| ConfigError(e.to_string()))
}

fn to_u32(v: u64) -> Result<u32, ConfigError> {
    u32::try_from(v).map_err(|e| ConfigError(e.to_string()))
}

/// Reads a key or secret file: its bytes, trailing whitespace trimmed.
fn read_key_file(path: &Path, what: &str) -> Result<Vec<u8>, ConfigError> {
    let mut b = std::fs::read(path).map_err(|e| {
        ConfigError(format!(
            "cannot read the {what} file {}: {e}",
            path.display()
        ))
    })?;
    while b.last().is_some_and(u8::is_ascii_whitespace) {
        b.pop();
    }
    Ok(b)
}

impl Config {
    /// The PostgreSQL backend's signing secret, from `XIUHUA_SECRET` or `XIUHUA_SECRET_FILE`
    /// (at least 32 bytes); `None` when neither is set.
    pub fn signing_secret(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        let b = match (&self.secret, &self.secret_file) {
            (Some(s), _) => s.0.trim().as_bytes().to_vec(),
            (None, Some(p)) => read_key_file(p, "secret")?,
            (None, None) => return Ok(None),
        };
        if b.len() < 32 {
            return Err(ConfigError(
                "the signing secret (XIUHUA_SECRET / XIUHUA_SECRET_FILE) must be at least 32 bytes"
                    .into(),
            ));
        }
        Ok(Some(b))
    }

    /// The SQLCipher key of the embedded database, from `XIUHUA_DB_KEY` or
    /// `XIUHUA_DB_KEY_FILE`; `None`: the database is not encrypted.
    pub fn database_key(&self) -> Result<Option<String>, ConfigError> {
        let k = match (&self.db_key, &self.db_key_file) {
            (Some(s), _) => s.0.trim().to_string(),
            (None, Some(p)) => String::from_utf8(read_key_file(p, "database key")?)
                .map_err(|_| ConfigError("the database key file is not UTF-8 text".into()))?,
            (None, None) => return Ok(None),
        };
        if k.chars().count() < 16 {
            return Err(ConfigError(
                "the database key (XIUHUA_DB_KEY / XIUHUA_DB_KEY_FILE) must be at least 16 characters"
                    .into(),
            ));
        }
        Ok(Some(k))
    }

    /// The storage backend this configuration selects.
    pub fn backend(&self) -> Backend {
        match &self.database_url {
            Some(u) if is_postgres_url(u) => Backend::Postgres(u.clone()),
            _ => Backend::Sqlite(self.data_dir.clone()),
        }
    }

    /// The caps of what one pushed change and one document may hold.
    pub fn ingest_caps(&self) -> crate::ingest::Caps {
        crate::ingest::Caps {
            change_bytes: self.max_change_bytes,
            change_ops: self.max_change_ops,
            doc_ops: self.max_doc_ops,
            doc_bytes: self.max_doc_bytes,
        }
    }

    /// Pool and timeout settings of the PostgreSQL backend.
    pub fn pg_options(&self) -> crate::storage::postgres::PgOptions {
        crate::storage::postgres::PgOptions {
            max_connections: usize::try_from(self.db_max_connections).unwrap_or(usize::MAX),
            statement_timeout_ms: self.db_statement_timeout_ms,
            connect_timeout_ms: self.db_connect_timeout_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.toml");
        std::fs::write(
            &p,
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/tmp/a\"\naccess_ttl_secs = 60\n",
        )
        .expect("write");
        let c = Config::load_with(Some(&p), |k| {
            (k == "XIUHUA_DATA_DIR").then(|| "/tmp/b".to_string())
        })
        .expect("config");
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/b"));
        assert_eq!(c.access_ttl_secs, 60);
        assert!(
            Config::load_with(None, |k| (k == "XIUHUA_LISTEN").then(|| "nope".to_string()))
                .is_err()
        );
        std::fs::write(&p, "bogus = 1\n").expect("write");
        assert!(Config::load_with(Some(&p), |_| None).is_err());
    }

    #[test]
    fn edge_limits_and_secrets() {
        let c = Config::load_with(None, |k| match k {
            "XIUHUA_HEADER_TIMEOUT_SECS" => Some("3".into()),
            "XIUHUA_MAX_CONNECTIONS" => Some("7".into()),
            "XIUHUA_SECRET" => Some("s".repeat(40)),
            _ => None,
        })
        .expect("config");
        assert_eq!((c.header_timeout_secs, c.max_connections), (3, 7));
        assert_eq!(c.signing_secret().unwrap(), Some(vec![b's'; 40]));
        assert!(!format!("{c:?}").contains("sssss"));
        assert!(
            Config::load_with(None, |k| (k == "XIUHUA_MAX_CONNECTIONS")
                .then(|| "0".into()))
            .is_err()
        );
        let short = Config::load_with(None, |k| (k == "XIUHUA_SECRET").then(|| "short".into()))
            .expect("config");
        assert!(short.signing_secret().is_err());
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("key");
        std::fs::write(&p, "0123456789abcdef0123\n").expect("write");
        let c = Config::load_with(None, |k| {
            (k == "XIUHUA_DB_KEY_FILE").then(|| p.to_string_lossy().into_owned())
        })
        .expect("config");
        assert_eq!(
            c.database_key().unwrap().as_deref(),
            Some("0123456789abcdef0123")
        );
        assert_eq!(Config::default().database_key().unwrap(), None);
    }

    #[test]
    fn device_quota_from_file_and_env() {
        let d = Config::load_with(None, |_| None).expect("config");
        assert_eq!(
            (d.device_daily_bytes, d.device_daily_changes),
            (512 * 1024 * 1024, 500_000)
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("q.toml");
        std::fs::write(&p, "device_daily_bytes = 1000\ndevice_daily_changes = 7\n").expect("write");
        let c = Config::load_with(Some(&p), |k| {
            (k == "XIUHUA_DEVICE_DAILY_CHANGES").then(|| "0".to_string())
        })
        .expect("config");
        assert_eq!((c.device_daily_bytes, c.device_daily_changes), (1000, 0));
        let l = crate::http::Limits::from_config(&c);
        assert_eq!(l.quota.daily_bytes, 1000);
        assert_eq!(l.quota.daily_changes, 0);
    }

    #[test]
    fn ingest_caps_from_file_and_env_are_validated() {
        let d = Config::load_with(None, |_| None).expect("config");
        assert_eq!(d.ingest_caps(), crate::ingest::Caps::DEFAULT);
        assert_eq!(
            crate::http::Limits::from_config(&d).ingest,
            crate::ingest::Caps::DEFAULT
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("caps.toml");
        std::fs::write(
            &p,
            "max_change_bytes = 2048\nmax_change_ops = 50\nmax_doc_ops = 900\nmax_doc_bytes = 8192\n",
        )
        .expect("write");
        let c = Config::load_with(Some(&p), |k| {
            (k == "XIUHUA_MAX_DOC_OPS").then(|| "1000".to_string())
        })
        .expect("config");
        let l = crate::http::Limits::from_config(&c);
        assert_eq!(
            l.ingest,
            crate::ingest::Caps {
                change_bytes: 2048,
                change_ops: 50,
                doc_ops: 1000,
                doc_bytes: 8192,
            }
        );
        // Zero, or a change larger than its document may be, is refused with the setting named.
        for (var, v) in [
            ("XIUHUA_MAX_CHANGE_BYTES", "0"),
            ("XIUHUA_MAX_DOC_OPS", "0"),
            ("XIUHUA_MAX_DOC_BYTES", "1000"),
            ("XIUHUA_MAX_CHANGE_OPS", "600000"),
        ] {
            let e = Config::load_with(None, |k| (k == var).then(|| v.to_string())).expect_err(var);
            assert!(e.to_string().contains("XIUHUA_MAX_CHANGE_BYTES"), "{e}");
        }
    }

    #[test]
    fn the_console_is_off_by_default_and_set_by_file_or_environment() {
        let d = Config::load_with(None, |_| None).expect("config");
        assert_eq!(d.console, ConsoleConfig::default());
        assert!(!d.console.enabled && !d.console.secure_cookie);
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "[console]\nenabled = true\nidle_minutes = 5\npublic_url = \"https://station.example/\"\n",
        )
        .expect("write");
        let c = Config::load_with(Some(&p), |k| {
            (k == "XIUHUA_CONSOLE_SECURE_COOKIE").then(|| "1".to_string())
        })
        .expect("config");
        assert!(c.console.enabled && c.console.secure_cookie);
        assert_eq!(c.console.idle_minutes, 5);
        assert_eq!(
            c.console.public_url.as_deref(),
            Some("https://station.example")
        );
        let off = Config::load_with(Some(&p), |k| (k == "XIUHUA_CONSOLE").then(|| "0".into()))
            .expect("config");
        assert!(!off.console.enabled);
        for (var, v) in [
            ("XIUHUA_CONSOLE", "maybe"),
            ("XIUHUA_CONSOLE_IDLE_MINUTES", "0"),
            ("XIUHUA_PUBLIC_URL", "station.example"),
        ] {
            assert!(
                Config::load_with(None, |k| (k == var).then(|| v.to_string())).is_err(),
                "{var}"
            );
        }
    }

    #[test]
    fn backend_selection() {
        let c = Config::load_with(None, |_| None).expect("config");
        assert_eq!(c.backend(), Backend::Sqlite(PathBuf::from("./xiuhua-data")));
        for url in ["postgres://u@h/db", "postgresql://u:pw@h:5433/db"] {
            let c = Config::load_with(None, |k| {
                (k == "XIUHUA_DATABASE_URL").then(|| url.to_string())
            })
            .expect("config");
            assert_eq!(c.backend(), Backend::Postgres(url.to_string()));
        }
        let err = Config::load_with(None, |k| {
            (k == "XIUHUA_DATABASE_URL").then(|| "mysql://u:secret@h/db".to_string())
        })
        .expect_err("mysql refused");
        assert!(!err.to_string().contains("secret"), "{err}");
        let c = Config::load_with(None, |k| match k {
            "XIUHUA_DB_MAX_CONNECTIONS" => Some("4".into()),
            "XIUHUA_DB_STATEMENT_TIMEOUT_MS" => Some("2500".into()),
            _ => None,
        })
        .expect("config");
        assert_eq!(c.pg_options().max_connections, 4);
        assert_eq!(c.pg_options().statement_timeout_ms, 2500);
        assert!(
            Config::load_with(None, |k| (k == "XIUHUA_DB_MAX_CONNECTIONS")
                .then(|| "0".into()))
            .is_err()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.toml");
        std::fs::write(
            &p,
            "database_url = \"postgres://postgres@127.0.0.1/test\"\n",
        )
        .expect("write");
        assert_eq!(
            Config::load_with(Some(&p), |_| None)
                .expect("config")
                .backend(),
            Backend::Postgres("postgres://postgres@127.0.0.1/test".into())
        );
    }
}
