//! The outcome of one delivery attempt and the crate's error type. An
//! attempt never returns `Err`: every failure is classified as retryable or
//! permanent right where the transport-specific knowledge lives, so the
//! engine's retry loop needs no knowledge of HTTP or SMTP.

use std::time::Duration;

/// What happened to one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver accepted the message.
    Delivered,
    /// The receiver did not accept it.
    Failed {
        /// Human-readable cause, fit for logs and the step's error record.
        error: String,
        /// The receiver's own hint about when to retry, if it gave one.
        retry_after: Option<Duration>,
        /// `true` when retrying cannot help (bad address, 4xx, bad config).
        permanent: bool,
    },
}

impl Attempt {
    /// A failure worth retrying later.
    pub fn retryable(error: impl Into<String>, retry_after: Option<Duration>) -> Self {
        Self::Failed {
            error: error.into(),
            retry_after,
            permanent: false,
        }
    }

    /// A failure that will recur however often it is retried.
    pub fn permanent(error: impl Into<String>) -> Self {
        Self::Failed {
            error: error.into(),
            retry_after: None,
            permanent: true,
        }
    }

    /// Whether the message was delivered.
    pub fn is_delivered(&self) -> bool {
        matches!(self, Self::Delivered)
    }

    /// Whether a retry may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Failed {
                permanent: false,
                ..
            }
        )
    }
}

/// Errors setting up a channel (as opposed to delivering through it, which
/// reports an [`Attempt`]).
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The configured sender is not a valid mailbox.
    #[error("invalid smtp `from` address {from:?}: {source}")]
    InvalidFrom {
        /// The configured value.
        from: String,
        /// Why it did not parse.
        source: lettre::address::AddressError,
    },
    /// TLS parameters for the SMTP server could not be built.
    #[error("cannot set up TLS for smtp host {host:?}: {source}")]
    Tls {
        /// The configured host.
        host: String,
        /// The underlying failure.
        source: lettre::transport::smtp::Error,
    },
}

/// The error's message followed by its sources. HTTP and SMTP clients keep
/// the useful part ("connection refused") in the source chain behind a
/// generic top-level message; operators need both.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // Some wrappers already repeat their source's text; say it once.
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}
