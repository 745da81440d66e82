//! The error type of the crate.

use std::time::Duration;

/// Everything that can go wrong in this crate.
///
/// The variants are stable (the Rust twin of the TypeScript library's error codes, see
/// [`Error::code`]); new ones may be added, so the enum is `#[non_exhaustive]`.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value was rejected by [`crate::ClientConfigBuilder::build`].
    #[error("invalid option `{option}`: {reason}")]
    InvalidConfig {
        /// The option's name.
        option: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// [`crate::SidecarClient::start`] was called outside a tokio runtime.
    #[error("no tokio runtime: SidecarClient::start must be called from within a tokio runtime")]
    NoRuntime,
    /// [`crate::WorkerReader::ready`] timed out before the first snapshot arrived.
    #[error("no worker snapshot within {waited:?}{}", last_error.as_ref().map(|e| format!(" (last error: {e})")).unwrap_or_default())]
    ReadyTimeout {
        /// How long it waited.
        waited: Duration,
        /// The last poll error seen meanwhile, if any.
        last_error: Option<Box<Error>>,
    },
    /// The client was closed (or dropped) before the operation could complete.
    #[error("the sidecar client is closed")]
    Closed,
    /// The sidecar could not be reached or the connection broke (connect refused, reset, ...).
    #[error("sidecar unreachable: {0}")]
    Unreachable(String),
    /// The sidecar did not answer within the wait plus a grace period.
    #[error("sidecar request timed out after {0:?}")]
    RequestTimeout(Duration),
    /// The sidecar answered with a status this client does not expect (the body's message, if any).
    #[error("sidecar answered HTTP {status}: {message}")]
    UnexpectedStatus {
        /// The HTTP status code.
        status: u16,
        /// The `error` field of the JSON body, or the start of the body.
        message: String,
    },
    /// The sidecar's answer could not be decoded.
    #[error("cannot decode the sidecar's answer: {0}")]
    Decode(String),
}

impl Error {
    /// A stable, machine-readable code, matching the TypeScript library's `ERR_*` codes where one exists.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidConfig { .. } => "ERR_INVALID_OPTION",
            Error::NoRuntime => "ERR_NO_RUNTIME",
            Error::ReadyTimeout { .. } => "ERR_READY_TIMEOUT",
            Error::Closed => "ERR_CLOSED",
            Error::Unreachable(_) => "ERR_SIDECAR_UNREACHABLE",
            Error::RequestTimeout(_) => "ERR_SIDECAR_TIMEOUT",
            Error::UnexpectedStatus { .. } => "ERR_SIDECAR_STATUS",
            Error::Decode(_) => "ERR_SIDECAR_DECODE",
        }
    }

    pub(crate) fn invalid(option: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidConfig {
            option,
            reason: reason.into(),
        }
    }
}
