//! The error type of the crate.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

/// The underlying error of [`Error::Unreachable`] and [`Error::Decode`], kept as their
/// [`std::error::Error::source`] (downcast it to `std::io::Error`, `serde_json::Error`, ...).
pub type Cause = Box<dyn StdError + Send + Sync + 'static>;

/// Everything that can go wrong in this crate.
///
/// The variants are stable (the Rust twin of the TypeScript library's error codes, see
/// [`Error::code`]); new ones may be added, so the enum is `#[non_exhaustive]`. Errors that
/// wrap another one keep it as their [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
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
    /// [`crate::SidecarWorkerResolver::start`] was called outside a tokio runtime.
    #[error(
        "no tokio runtime: SidecarWorkerResolver::start must be called from within a tokio runtime"
    )]
    NoRuntime,
    /// [`crate::WorkerReader::ready`] timed out before the first snapshot arrived.
    #[error("no worker snapshot within {waited:?}{}", last_error.as_ref().map(|e| format!(" (last error: {e})")).unwrap_or_default())]
    ReadyTimeout {
        /// How long it waited.
        waited: Duration,
        /// The last poll error seen meanwhile, if any.
        last_error: Option<Arc<Error>>,
    },
    /// The worker list is not known yet: the sidecar has not answered with a first snapshot
    /// (what `get_urls()` returns then, rather than an empty list, which would mean "no
    /// workers: plan locally").
    #[error("the worker list is not known yet (no answer from the sidecar; await ready() first)")]
    NotReady,
    /// The resolver was closed, or every handle that kept its refresher alive was dropped:
    /// nothing refreshes this list any more.
    #[error(
        "the sidecar worker resolver is closed: nothing refreshes the worker list any more (keep a SidecarWorkerResolver alive for as long as it is used)"
    )]
    Closed,
    /// The sidecar could not be reached or the connection broke (connect refused, reset, ...).
    #[error("sidecar unreachable: {}", chain(.0.as_ref()))]
    Unreachable(#[source] Cause),
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
    #[error("cannot decode the sidecar's answer: {}", chain(.0.as_ref()))]
    Decode(#[source] Cause),
}

impl Error {
    /// A stable, machine-readable code, matching the TypeScript library's `ERR_*` codes where one exists.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidConfig { .. } => "ERR_INVALID_OPTION",
            Error::NoRuntime => "ERR_NO_RUNTIME",
            Error::ReadyTimeout { .. } => "ERR_READY_TIMEOUT",
            Error::NotReady => "ERR_NOT_READY",
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

    pub(crate) fn unreachable(e: impl Into<Box<dyn StdError + Send + Sync + 'static>>) -> Self {
        Error::Unreachable(e.into())
    }

    pub(crate) fn decode(e: impl Into<Box<dyn StdError + Send + Sync + 'static>>) -> Self {
        Error::Decode(e.into())
    }

    /// The connection to the sidecar was refused: nothing listens on its port (it is
    /// restarting). Retrying that costs nothing, so it is retried within a second.
    pub(crate) fn is_connection_refused(&self) -> bool {
        let Error::Unreachable(cause) = self else {
            return false;
        };
        let mut cur: Option<&(dyn StdError + 'static)> = Some(cause.as_ref());
        while let Some(e) = cur {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::ConnectionRefused {
                    return true;
                }
            }
            cur = e.source();
        }
        false
    }
}

/// An error and its sources, joined by `: ` (hyper's own messages are terse, e.g.
/// "client error (Connect)"; the useful part is in the chain).
fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let next = c.to_string();
        if !s.ends_with(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_errors_keep_their_source_and_show_the_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = Error::unreachable(io);
        assert_eq!(e.code(), "ERR_SIDECAR_UNREACHABLE");
        assert!(e.is_connection_refused());
        let source = StdError::source(&e).expect("a source");
        assert!(source.downcast_ref::<std::io::Error>().is_some());
        assert_eq!(e.to_string(), "sidecar unreachable: refused");

        let json = serde_json::from_slice::<u8>(b"{").unwrap_err();
        let d = Error::decode(json);
        assert!(StdError::source(&d).unwrap().is::<serde_json::Error>());
        assert!(!d.is_connection_refused());
        let reset = Error::unreachable(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(!reset.is_connection_refused());
    }
}
