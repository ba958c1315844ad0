//! Outbound delivery for Herald's `email` and `webhook` steps.
//!
//! Each send function makes exactly one attempt and reports an [`Attempt`]:
//! delivered, or failed with a verdict on whether retrying can help and the
//! receiver's `Retry-After` hint. The engine owns the loop around it and asks
//! a [`RetryPolicy`] how long to wait, so this crate holds no queues, timers
//! or state beyond the configured [`Mailer`].
//!
//! - [`webhook`]: HTTP POST signed per Standard Webhooks ([`signing`]).
//! - [`email`]: SMTP via lettre, configured from `herald.toml` `[smtp]`.
//! - [`retry`]: the pure back-off schedule.

pub mod attempt;
pub mod email;
pub mod retry;
pub mod signing;
pub mod webhook;

pub use attempt::{Attempt, ChannelError};
pub use email::{EmailRequest, Mailer, SmtpConfig, SmtpTls};
pub use retry::{RetryPolicy, parse_retry_after};
pub use signing::{SigningError, sign, verify};
pub use webhook::{WebhookRequest, send_webhook};
