//! Errors: [`Refusal`] (a request the server refuses, with a reason for a person) and
//! [`ApiError`] (what an HTTP handler answers).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use xiuhua_core::sync::proto::{self, ErrorBody};

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// 400: malformed body, garbage changes, invalid document.
    BadRequest,
    /// 401: bad, expired or revoked credentials.
    Unauthorized,
    /// 403: outside grants, actor of another device, moving a document.
    Forbidden,
    /// 404: unknown document.
    NotFound,
    /// 409: missing dependencies, or a concurrent update of the same thing.
    Conflict,
    /// 413: oversized body or batch.
    TooLarge,
    /// 429 `quota_exceeded`: the device's daily push quota is used up.
    QuotaExceeded,
    /// 409 `quarantined`: the document's stored state is broken and set aside.
    Quarantined,
}

/// A refused request: nothing was stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub kind: RefusalKind,
    pub message: String,
}

impl Refusal {
    pub fn new(kind: RefusalKind, message: impl Into<String>) -> Refusal {
        Refusal {
            kind,
            message: message.into(),
        }
    }
    pub fn bad(message: impl Into<String>) -> Refusal {
        Refusal::new(RefusalKind::BadRequest, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Refusal {
        Refusal::new(RefusalKind::Forbidden, message)
    }
    pub fn conflict(message: impl Into<String>) -> Refusal {
        Refusal::new(RefusalKind::Conflict, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Refusal {
        Refusal::new(RefusalKind::Unauthorized, message)
    }
    pub fn not_found(message: impl Into<String>) -> Refusal {
        Refusal::new(RefusalKind::NotFound, message)
    }
    pub fn too_large(message: impl Into<String>) -> Refusal {
        Refusal::new(RefusalKind::TooLarge, message)
    }
}

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The request is refused (nothing stored).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// An admin command named something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// An admin command would create something that exists already.
    #[error("{0}")]
    Duplicate(String),
    /// An admin command's input is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error("storage: {0}")]
    Backend(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

/// An HTTP error answer: status plus [`ErrorBody`].
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                code: code.into(),
                message: message.into(),
                purge_grids: Vec::new(),
            },
        }
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    /// Adds the grids the device must purge.
    pub fn with_purge(mut self, grids: &[String]) -> ApiError {
        if self.body.purge_grids.is_empty() {
            self.body.purge_grids = grids.to_vec();
        }
        self
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let (status, code) = match r.kind {
            RefusalKind::BadRequest => (StatusCode::BAD_REQUEST, "bad_request"),
            RefusalKind::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            RefusalKind::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            RefusalKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            RefusalKind::Conflict => (StatusCode::CONFLICT, "conflict"),
            RefusalKind::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            RefusalKind::QuotaExceeded => (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded"),
            RefusalKind::Quarantined => (StatusCode::CONFLICT, "quarantined"),
        };
        ApiError::new(status, code, r.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Refused(r) => r.into(),
            StoreError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "not_found", m),
            StoreError::Duplicate(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::Invalid(m) => ApiError::bad_request(m),
            StoreError::Backend(m) => {
                tracing::error!(error = %m, "storage failure");
                ApiError::internal("storage failure; see the server log")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let bytes = proto::encode(&self.body);
        let mut resp = (self.status, bytes).into_response();
        let h = resp.headers_mut();
        h.insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static(proto::CONTENT_TYPE),
        );
        if let Ok(v) = axum::http::HeaderValue::from_str(&proto::PROTOCOL_VERSION.to_string()) {
            h.insert(proto::PROTOCOL_HEADER, v);
        }
        if !self.body.purge_grids.is_empty()
            && let Ok(v) = axum::http::HeaderValue::from_str(&self.body.purge_grids.join(","))
        {
            h.insert(crate::http::PURGE_HEADER, v);
        }
        resp
    }
}
