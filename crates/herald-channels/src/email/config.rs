//! The `[smtp]` section of `herald.toml`: where and how to connect, with
//! the defaults that make a local relay work without configuration. Kept
//! apart from the sender so config parsing is reviewable on its own.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text; only sensible for a relay on the same host.
    None,
    /// Plain connect, then a mandatory `STARTTLS` upgrade.
    Starttls,
    /// TLS from the first byte ("SMTPS", usually port 465).
    Tls,
}

/// The `[smtp]` section of `herald.toml`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Server host name (also the name its TLS certificate must carry).
    pub host: String,
    /// Server port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Login, if the server wants one.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for `username`; never printed by `Debug`.
    #[serde(default)]
    pub password: Option<String>,
    /// Sender mailbox, e.g. `Herald <herald@example.com>`.
    pub from: String,
    /// Connection security; `None` picks [`SmtpConfig::effective_tls`].
    #[serde(default)]
    pub tls: Option<SmtpTls>,
    /// Limit for each network operation of a send.
    #[serde(default = "default_timeout", deserialize_with = "deserialize_timeout")]
    pub timeout: Duration,
}

fn default_port() -> u16 {
    25
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl SmtpConfig {
    /// The TLS mode to use: the configured one, else plain text for a relay
    /// on this host (where TLS buys nothing and usually is not offered) and
    /// mandatory STARTTLS for anything remote.
    pub fn effective_tls(&self) -> SmtpTls {
        let local = matches!(self.host.as_str(), "localhost" | "127.0.0.1" | "::1");
        match self.tls {
            Some(mode) => mode,
            None if local => SmtpTls::None,
            None => SmtpTls::Starttls,
        }
    }
}

// Hand-written so the password never reaches a log line.
impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("from", &self.from)
            .field("tls", &self.tls)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Accepts seconds as a number (`timeout = 10`, `timeout = 2.5`) or a
/// duration string jiff understands (`"10s"`, `"1m 30s"`, `"PT10S"`).
fn deserialize_timeout<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(u64),
        Float(f64),
        Text(String),
    }
    let bad = |what: &dyn fmt::Display| {
        serde::de::Error::custom(format!(
            "invalid smtp timeout {what}: expected seconds or e.g. \"10s\""
        ))
    };
    match Raw::deserialize(de)? {
        Raw::Int(secs) => Ok(Duration::from_secs(secs)),
        Raw::Float(secs) => Duration::try_from_secs_f64(secs).map_err(|_| bad(&secs)),
        Raw::Text(text) => text
            .parse::<jiff::SignedDuration>()
            .ok()
            .and_then(|d| Duration::try_from(d).ok())
            .ok_or_else(|| bad(&format!("{text:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> Result<SmtpConfig, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn config_defaults() -> Result<(), serde_json::Error> {
        let cfg = config(r#"{"host": "localhost", "from": "h@example.com"}"#)?;
        assert_eq!(cfg.port, 25);
        assert_eq!(cfg.timeout, Duration::from_secs(10));
        assert_eq!(cfg.effective_tls(), SmtpTls::None);
        let cfg = config(r#"{"host": "127.0.0.1", "from": "h@example.com"}"#)?;
        assert_eq!(cfg.effective_tls(), SmtpTls::None);
        let cfg = config(r#"{"host": "mail.example.com", "from": "h@example.com"}"#)?;
        assert_eq!(cfg.effective_tls(), SmtpTls::Starttls);
        let cfg = config(r#"{"host": "localhost", "from": "h@x.org", "tls": "tls"}"#)?;
        assert_eq!(cfg.effective_tls(), SmtpTls::Tls);
        Ok(())
    }

    #[test]
    fn config_timeout_forms() -> Result<(), serde_json::Error> {
        let with = |t: &str| config(&format!(r#"{{"host": "h", "from": "f", "timeout": {t}}}"#));
        assert_eq!(with("3")?.timeout, Duration::from_secs(3));
        assert_eq!(with("2.5")?.timeout, Duration::from_millis(2500));
        assert_eq!(with(r#""1m 30s""#)?.timeout, Duration::from_secs(90));
        assert!(with(r#""soon""#).is_err());
        assert!(with("-1").is_err());
        Ok(())
    }

    #[test]
    fn config_rejects_unknown_keys_and_tls_modes() {
        assert!(config(r#"{"host": "h", "from": "f", "tls": "ssl"}"#).is_err());
        assert!(config(r#"{"host": "h", "from": "f", "prot": 2}"#).is_err());
    }

    #[test]
    fn debug_hides_the_password() -> Result<(), serde_json::Error> {
        let cfg = config(r#"{"host": "h", "from": "f", "username": "u", "password": "hunter2"}"#)?;
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        Ok(())
    }
}
