//! The one error type that crosses the FFI.
//!
//! Every variant carries `detail`: the core's readable message (its thiserror text). It is
//! the first field so that the generated Kotlin `Exception.message` (which uniffi builds as
//! `field=value, …` for errors with fields) starts with it, and `toString()` / Swift's
//! `description` / Python's `str()` are exactly that text (`Display` is exported).
//!
//! Why `detail` and not `message`: a field named `message` does not compile in the
//! generated Kotlin (it clashes with `Throwable.message`; uniffi-rs issue 1434).

use xiuhua_core::Error as CoreError;

/// What went wrong, with the variants an app acts on differently.
#[derive(Debug, thiserror::Error, uniffi::Error)]
#[uniffi::export(Display)]
pub enum XiuhuaError {
    /// Input was refused (a form field to highlight); nothing was written.
    #[error("{detail}")]
    InvalidInput {
        detail: String,
        /// The refused field, e.g. `phone`, `id_number`, `Category`.
        field: String,
        reason: String,
    },
    /// The household, record, task, member or conflict named does not exist here.
    #[error("{detail}")]
    NotFound { detail: String },
    /// A workflow action that does not apply to the task as it stands; nothing was written.
    #[error("{detail}")]
    Refused { detail: String },
    /// The encryption key does not open this store: ask for the key again; do not delete.
    #[error("{detail}")]
    WrongKey { detail: String },
    /// The file is not a Xiuhua store; it was not modified.
    #[error("{detail}")]
    NotXiuhuaDatabase { detail: String },
    /// The store was written by a newer app: update the app.
    #[error("{detail}")]
    SchemaTooNew {
        detail: String,
        found: i64,
        supported: i64,
    },
    /// The disk or SQLite failed (full, I/O error, locked), or a document is damaged.
    #[error("{detail}")]
    Storage { detail: String },
    /// The server could not be reached or the connection broke: retry later; nothing is lost.
    #[error("{detail}")]
    Network { detail: String },
    /// This device holds no credentials: show the enrollment screen (a code from the
    /// station). Nothing was sent.
    #[error("{detail}")]
    NotEnrolled { detail: String },
    /// The server no longer accepts this device's credentials (refresh token expired or used
    /// up, device unknown): enroll again with a new code for the same user. Keep the store:
    /// its data and outbox stay and sync after re-enrollment.
    #[error("{detail}")]
    ReenrollmentNeeded { detail: String },
    /// The device was revoked (lost or stolen): delete the store (the grids the server named
    /// were purged already) and show the enrollment screen.
    #[error("{detail}")]
    Revoked { detail: String },
    /// The server speaks a newer protocol (HTTP 426): ask the user to update the app.
    /// Nothing was lost.
    #[error("{detail}")]
    UpgradeRequired { detail: String },
    /// The server refused or failed a request: `status` is the HTTP status, `code` the
    /// server's stable code (`forbidden`, `too_large`, `internal` …). A `5xx` is worth a
    /// retry later; nothing unacknowledged was deleted.
    #[error("{detail}")]
    ServerRefused {
        detail: String,
        status: u16,
        code: String,
    },
    /// The action would delete work not yet sent to the station (sign-out, or an
    /// enrollment code for another user: a handover); nothing was changed. Tell the user
    /// how much (`changes`, `documents`) and offer to sync first; a sign-out can be
    /// confirmed with `force`, which deletes that work.
    #[error("{detail}")]
    UnsyncedWork {
        detail: String,
        changes: u64,
        documents: u64,
    },
    /// The store file is already open in this app: use the open `XiuhuaStore` (a bug in
    /// the app's wiring; two stores over one file would overwrite each other).
    #[error("{detail}")]
    AlreadyOpen { detail: String },
    /// This store cannot sync now (a sync or an enrollment is already running, or an
    /// unfinished sync state): wait and try again.
    #[error("{detail}")]
    Sync { detail: String },
    /// A bug or an unusable state (e.g. an earlier call panicked while holding the store).
    #[error("{detail}")]
    Internal { detail: String },
}

impl XiuhuaError {
    pub(crate) fn invalid(field: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        XiuhuaError::InvalidInput {
            detail: format!("invalid {field}: {reason}"),
            field: field.to_string(),
            reason,
        }
    }

    pub(crate) fn internal(detail: impl Into<String>) -> Self {
        XiuhuaError::Internal {
            detail: detail.into(),
        }
    }
}

impl From<CoreError> for XiuhuaError {
    fn from(e: CoreError) -> Self {
        let detail = e.to_string();
        match e {
            CoreError::Invalid { field, reason } => XiuhuaError::InvalidInput {
                detail,
                field,
                reason,
            },
            CoreError::NotFound(_) => XiuhuaError::NotFound { detail },
            CoreError::Refused(_) => XiuhuaError::Refused { detail },
            CoreError::NotXiuhuaDatabase(_) => XiuhuaError::NotXiuhuaDatabase { detail },
            CoreError::WrongKey => XiuhuaError::WrongKey { detail },
            CoreError::SchemaTooNew { found, supported } => XiuhuaError::SchemaTooNew {
                detail,
                found,
                supported,
            },
            CoreError::Network(_) => XiuhuaError::Network { detail },
            CoreError::NotEnrolled => XiuhuaError::NotEnrolled { detail },
            CoreError::Unauthorized(_) => XiuhuaError::ReenrollmentNeeded { detail },
            CoreError::Revoked(_) => XiuhuaError::Revoked { detail },
            CoreError::UpgradeRequired(_) => XiuhuaError::UpgradeRequired { detail },
            CoreError::Sync { status, code, .. } => XiuhuaError::ServerRefused {
                detail,
                status,
                code,
            },
            CoreError::UnsyncedWork {
                changes, documents, ..
            } => XiuhuaError::UnsyncedWork {
                detail,
                changes,
                documents,
            },
            CoreError::AlreadyOpen(_) => XiuhuaError::AlreadyOpen { detail },
            CoreError::BadDocument { .. } | CoreError::Storage(_) | CoreError::Automerge(_) => {
                XiuhuaError::Storage { detail }
            }
            // The core's error is non-exhaustive: a new variant still reaches the app readably.
            _ => XiuhuaError::Internal { detail },
        }
    }
}

/// A foreign observer threw: reported as an error, never a panic.
impl From<uniffi::UnexpectedUniFFICallbackError> for XiuhuaError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        XiuhuaError::internal(format!("observer failed: {}", e.reason))
    }
}

pub type Result<T, E = XiuhuaError> = std::result::Result<T, E>;
