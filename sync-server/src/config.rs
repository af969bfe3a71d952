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
        let cfg = Config {
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
        };
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
        Ok(cfg)
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
}
