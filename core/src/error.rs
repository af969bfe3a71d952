//! The one error type of the core. Every fallible public function returns [`Result`].

/// Everything that can go wrong in the core, with a message a person can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Input from a person or another system was refused; nothing was written.
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    /// The document, member, conflict … that the caller named does not exist here.
    #[error("not found: {0}")]
    NotFound(String),
    /// A workflow action that cannot apply to the task as it stands now; nothing was written.
    #[error("action refused: {0}")]
    Refused(String),
    /// The file exists but is not a Xiuhua store. It was not modified.
    #[error("not a Xiuhua database: {0}")]
    NotXiuhuaDatabase(String),
    /// The encryption key does not open this store (or the store is not encrypted). The file
    /// was not modified.
    #[error("the encryption key does not open this database")]
    WrongKey,
    /// The file is a Xiuhua store written by a newer version of the app.
    #[error(
        "the database has schema version {found}, newer than this app understands ({supported}); update the app"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    /// A document's bytes or contents do not make a valid Xiuhua document.
    #[error("document {doc}: {reason}")]
    BadDocument { doc: String, reason: String },
    /// SQLite failed (disk full, I/O error, locked …).
    #[error("storage: {0}")]
    Storage(#[from] rusqlite::Error),
    /// Automerge refused bytes or an operation.
    #[error("automerge: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    /// The sync server could not be reached, or the connection broke or timed out. Nothing
    /// was lost: what was not acknowledged is still in the outbox; sync again later.
    #[error("network: {0}")]
    Network(String),
    /// This device holds no credentials: enroll it with a code from the station. Nothing
    /// was sent.
    #[error("this device is not enrolled: enroll it with a code from the station")]
    NotEnrolled,
    /// The server no longer accepts this device's credentials (its refresh token expired or
    /// was used up, or the server does not know the device): enroll again with a new code
    /// for the same user. The store and its outbox are kept and sync after re-enrollment.
    #[error("not authorized: {0}")]
    Unauthorized(String),
    /// The device was revoked (lost or stolen): everything it held of the server's data must
    /// be deleted; the grids the server named were purged already.
    #[error("this device has been revoked: {0}")]
    Revoked(String),
    /// The server speaks a protocol version this app does not (HTTP 426): update the app.
    /// Nothing was lost.
    #[error("the server needs a newer app: {0}")]
    UpgradeRequired(String),
    /// The action would delete work made on this phone that has not reached the station
    /// (a sign-out, or an enrollment for another user: a handover). Nothing was changed.
    /// Sync first; a sign-out may be forced, which deletes that work.
    #[error("{message}")]
    UnsyncedWork {
        /// Local changes not yet acknowledged by the server (outbox and set aside).
        changes: u64,
        /// The documents they belong to.
        documents: u64,
        message: String,
    },
    /// The store file is already open in this process: use that store (two stores over one
    /// file would overwrite each other's rows). Nothing was opened.
    #[error("the store {0} is already open in this app; use the open one")]
    AlreadyOpen(String),
    /// The sync server refused or failed a request (`code` is the server's stable
    /// [`crate::sync::proto::ErrorBody`] code, `status` the HTTP status).
    #[error("sync server answered {status} {code}: {message}")]
    Sync {
        status: u16,
        code: String,
        message: String,
    },
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
    /// Whether an app should enroll this device again (with a code for the same user) to
    /// sync: not enrolled, or the server refused its credentials.
    pub fn needs_enrollment(&self) -> bool {
        matches!(self, Error::NotEnrolled | Error::Unauthorized(_))
    }

    pub(crate) fn bad_doc(doc: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Error::BadDocument {
            doc: doc.into(),
            reason: reason.to_string(),
        }
    }
}

impl From<autosurgeon::HydrateError> for Error {
    fn from(e: autosurgeon::HydrateError) -> Self {
        Error::bad_doc("?", e)
    }
}

impl From<autosurgeon::ReconcileError> for Error {
    fn from(e: autosurgeon::ReconcileError) -> Self {
        Error::bad_doc("?", e)
    }
}

/// The core's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
