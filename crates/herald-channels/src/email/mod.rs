//! Outbound email over SMTP: a [`Mailer`] built once from the `[smtp]`
//! [`SmtpConfig`], and one send per attempt with the SMTP reply classified
//! into delivered / retryable (4xx, network) / permanent (5xx, bad address).

use std::fmt;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Mailboxes, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use crate::attempt::{Attempt, ChannelError, error_chain};

mod config;

pub use config::{SmtpConfig, SmtpTls};

/// One email to send, as a flow step describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailRequest {
    /// Recipient(s): one mailbox or a comma-separated list.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body (always sent, as the fallback for HTML).
    pub body: String,
    /// Optional HTML alternative of `body`.
    #[serde(default)]
    pub html: Option<String>,
}

/// An SMTP sender configured once and shared by all sends.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    host: String,
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailer")
            .field("host", &self.host)
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// Validates the config and prepares the transport. Does not connect:
    /// the SMTP server may legitimately be down at start-up.
    pub fn new(cfg: SmtpConfig) -> Result<Self, ChannelError> {
        let from = cfg
            .from
            .parse::<Mailbox>()
            .map_err(|source| ChannelError::InvalidFrom {
                from: cfg.from.clone(),
                source,
            })?;
        let tls = match cfg.effective_tls() {
            SmtpTls::None => Tls::None,
            mode => {
                let params =
                    TlsParameters::new(cfg.host.clone()).map_err(|source| ChannelError::Tls {
                        host: cfg.host.clone(),
                        source,
                    })?;
                if mode == SmtpTls::Tls {
                    Tls::Wrapper(params)
                } else {
                    // `Required`, not `Opportunistic`: a downgrade attack
                    // must not silently turn into plain-text delivery.
                    Tls::Required(params)
                }
            }
        };
        // One connection per send (lettre's `pool` feature is off): the
        // volume is modest, and no idle connection can go stale between
        // sends or require a runtime at construction.
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host)
            .port(cfg.port)
            .tls(tls)
            .timeout(Some(cfg.timeout));
        if let Some(user) = &cfg.username {
            let password = cfg.password.clone().unwrap_or_default();
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(Self {
            transport: builder.build(),
            from,
            host: cfg.host,
        })
    }

    /// Makes one delivery attempt of `msg`.
    pub async fn send(&self, msg: &EmailRequest) -> Attempt {
        let message = match self.build_message(msg) {
            Ok(message) => message,
            // The same input will fail the same way on every retry.
            Err(error) => return Attempt::permanent(error),
        };
        match self.transport.send(message).await {
            Ok(_) => Attempt::Delivered,
            Err(e) => self.classify(&e),
        }
    }

    fn build_message(&self, msg: &EmailRequest) -> Result<Message, String> {
        let to: Mailboxes = msg
            .to
            .parse()
            .map_err(|e| format!("invalid recipient address {:?}: {e}", msg.to))?;
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(msg.subject.clone());
        let mut any = false;
        for mailbox in to {
            builder = builder.to(mailbox);
            any = true;
        }
        if !any {
            return Err(format!("no recipient address in {:?}", msg.to));
        }
        let built = match &msg.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                msg.body.clone(),
                html.clone(),
            )),
            None => builder
                .header(ContentType::TEXT_PLAIN)
                .body(msg.body.clone()),
        };
        built.map_err(|e| format!("cannot build email: {e}"))
    }

    fn classify(&self, e: &lettre::transport::smtp::Error) -> Attempt {
        let error = format!("smtp via {}: {}", self.host, error_chain(e));
        // 5xx replies are the server's final word (unknown user, rejected
        // content); client errors are ours and deterministic. Everything
        // else — 4xx, refused connections, timeouts, TLS hiccups — may pass.
        if e.is_permanent() || e.is_client() {
            Attempt::permanent(error)
        } else {
            Attempt::retryable(error, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> Result<SmtpConfig, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn mailer_rejects_a_bad_sender() -> Result<(), serde_json::Error> {
        let cfg = config(r#"{"host": "localhost", "from": "not an address"}"#)?;
        assert!(matches!(
            Mailer::new(cfg),
            Err(ChannelError::InvalidFrom { .. })
        ));
        Ok(())
    }

    #[tokio::test]
    async fn bad_recipient_is_permanent_without_connecting()
    -> Result<(), Box<dyn std::error::Error>> {
        // Port 9 (discard) on loopback: if send tried to connect it would
        // yield a retryable error, not the permanent one asserted below.
        let cfg = config(r#"{"host": "127.0.0.1", "port": 9, "from": "Herald <h@example.com>"}"#)?;
        let mailer = Mailer::new(cfg)?;
        for to in ["not an address", "", "a@b@c"] {
            let msg = EmailRequest {
                to: to.to_owned(),
                subject: "s".to_owned(),
                body: "b".to_owned(),
                html: None,
            };
            match mailer.send(&msg).await {
                Attempt::Failed {
                    permanent: true,
                    error,
                    ..
                } => {
                    assert!(error.contains("recipient"), "{error}");
                }
                other => panic!("{to:?}: expected a permanent failure, got {other:?}"),
            }
        }
        Ok(())
    }
}
