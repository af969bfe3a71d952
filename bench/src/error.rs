//! The bench's error type: a boxed error with a chain of context messages.

use std::fmt;

/// Any error, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The bench's result type.
pub type Result<T, E = BoxError> = std::result::Result<T, E>;

/// An error with a message saying what was being done when it happened.
#[derive(Debug)]
pub struct ContextError {
    message: String,
    source: Option<BoxError>,
}

impl fmt::Display for ContextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ContextError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// A new error with just a message.
pub fn msg(message: impl Into<String>) -> BoxError {
    Box::new(ContextError {
        message: message.into(),
        source: None,
    })
}

/// Adds a context message to errors (and to `None`).
pub trait Context<T> {
    /// Wraps the error with the message made by `f`.
    fn context_with(self, f: impl FnOnce() -> String) -> Result<T>;

    /// Wraps the error with a fixed message.
    fn context(self, message: &str) -> Result<T>
    where
        Self: Sized,
    {
        self.context_with(|| message.to_string())
    }
}

impl<T, E: Into<BoxError>> Context<T> for std::result::Result<T, E> {
    fn context_with(self, f: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| {
            Box::new(ContextError {
                message: f(),
                source: Some(e.into()),
            }) as BoxError
        })
    }
}

impl<T> Context<T> for Option<T> {
    fn context_with(self, f: impl FnOnce() -> String) -> Result<T> {
        self.ok_or_else(|| msg(f()))
    }
}

/// The error and all its causes, one per line after the first.
pub fn report(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str("\n  caused by: ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
