//! The verification schemes an integration may name, and what each platform preset brings by
//! default: its delivery id and its timestamp tolerance. The recipes themselves (what is
//! signed, how) are `herald-ingest`'s.

use std::time::Duration;

use super::{DeliveryId, Pointer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// No verification; only when written explicitly.
    None,
    /// A generic HMAC over a configurable content.
    Hmac,
    /// `Authorization: Bearer <secret>`.
    Bearer,
    /// `Authorization: Basic <user:secret>`.
    Basic,
    StandardWebhooks,
    Github,
    Stripe,
    Shopify,
    Slack,
    Twilio,
    Linear,
    Telegram,
    Meta,
    Discord,
    Paddle,
    Square,
    Sendgrid,
    Mailgun,
    Zoom,
}

/// Every scheme name, as written in `verify.scheme` (besides the `hmac-sha*` shorthands).
pub const SCHEME_NAMES: &[&str] = &[
    "none",
    "hmac",
    "hmac-sha1",
    "hmac-sha256",
    "hmac-sha512",
    "bearer",
    "basic",
    "standard-webhooks",
    "svix",
    "github",
    "stripe",
    "shopify",
    "slack",
    "twilio",
    "linear",
    "telegram",
    "meta",
    "discord",
    "paddle",
    "square",
    "sendgrid",
    "mailgun",
    "zoom",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmacAlgorithm {
    Sha1,
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
    Base64Url,
}

impl Scheme {
    /// The scheme named `name`, with the algorithm a `hmac-sha*` shorthand implies.
    pub fn parse(name: &str) -> Option<(Scheme, Option<HmacAlgorithm>)> {
        Some(match name {
            "none" => (Scheme::None, None),
            "hmac" => (Scheme::Hmac, None),
            "hmac-sha1" => (Scheme::Hmac, Some(HmacAlgorithm::Sha1)),
            "hmac-sha256" => (Scheme::Hmac, Some(HmacAlgorithm::Sha256)),
            "hmac-sha512" => (Scheme::Hmac, Some(HmacAlgorithm::Sha512)),
            "bearer" => (Scheme::Bearer, None),
            "basic" => (Scheme::Basic, None),
            "standard-webhooks" | "svix" => (Scheme::StandardWebhooks, None),
            "github" => (Scheme::Github, None),
            "stripe" => (Scheme::Stripe, None),
            "shopify" => (Scheme::Shopify, None),
            "slack" => (Scheme::Slack, None),
            "twilio" => (Scheme::Twilio, None),
            "linear" => (Scheme::Linear, None),
            "telegram" => (Scheme::Telegram, None),
            "meta" => (Scheme::Meta, None),
            "discord" => (Scheme::Discord, None),
            "paddle" => (Scheme::Paddle, None),
            "square" => (Scheme::Square, None),
            "sendgrid" => (Scheme::Sendgrid, None),
            "mailgun" => (Scheme::Mailgun, None),
            "zoom" => (Scheme::Zoom, None),
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::None => "none",
            Scheme::Hmac => "hmac",
            Scheme::Bearer => "bearer",
            Scheme::Basic => "basic",
            Scheme::StandardWebhooks => "standard-webhooks",
            Scheme::Github => "github",
            Scheme::Stripe => "stripe",
            Scheme::Shopify => "shopify",
            Scheme::Slack => "slack",
            Scheme::Twilio => "twilio",
            Scheme::Linear => "linear",
            Scheme::Telegram => "telegram",
            Scheme::Meta => "meta",
            Scheme::Discord => "discord",
            Scheme::Paddle => "paddle",
            Scheme::Square => "square",
            Scheme::Sendgrid => "sendgrid",
            Scheme::Mailgun => "mailgun",
            Scheme::Zoom => "zoom",
        }
    }

    /// What the secret is, for hints: most presets take the signing secret, two a public key.
    pub fn secret_is(self) -> &'static str {
        match self {
            Scheme::Discord => "the application's public key (hex)",
            Scheme::Sendgrid => "the verification key (base64, as SendGrid shows it)",
            Scheme::Telegram => "the secret_token given to setWebhook",
            Scheme::Bearer => "the token the platform sends",
            Scheme::Basic => "the password the platform sends",
            Scheme::Twilio => "the account's auth token",
            Scheme::Square => "the subscription's signature key",
            Scheme::Mailgun => "the HTTP webhook signing key",
            Scheme::Meta => "the app secret",
            _ => "the webhook signing secret",
        }
    }

    /// Why `secret` cannot be this scheme's key, for the schemes whose key has a format: a
    /// Standard Webhooks secret is base64 (after `whsec_`), Discord's public key 32 bytes in
    /// hex, SendGrid's verification key base64 DER. Checked when the project loads, so a
    /// mistyped key is a `herald check` error, not a 401 on every request.
    pub fn key_problem(self, secret: &str) -> Option<String> {
        use base64::Engine;
        let b64 = |s: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .ok()
        };
        match self {
            Scheme::StandardWebhooks => {
                match b64(secret.strip_prefix("whsec_").unwrap_or(secret)) {
                    None => Some("the secret is not base64 after `whsec_`".to_owned()),
                    // Standard Webhooks' secrets are 24 to 64 bytes; an empty one signs
                    // for anyone (`whsec_${UNSET}`).
                    Some(key) if key.len() < 16 => Some(format!(
                        "the secret decodes to {} bytes, too few to be a secret (at least 16)",
                        key.len()
                    )),
                    Some(_) => None,
                }
            }
            Scheme::Discord => {
                let s = secret.trim();
                (s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| {
                    format!(
                        "the public key is {} characters; Discord's is 64 hexadecimal digits",
                        s.len()
                    )
                })
            }
            Scheme::Sendgrid => match b64(secret) {
                Some(der) if der.first() == Some(&0x30) => None,
                _ => Some("the verification key is not base64 DER (`MFkwEw…`)".to_owned()),
            },
            _ => None,
        }
    }

    /// How far a signed timestamp may be from now, either way, unless `tolerance` says.
    pub fn default_tolerance(self) -> Duration {
        match self {
            // Paddle's SDK allows 5 s; Linear's docs a minute.
            Scheme::Paddle => Duration::from_secs(5),
            Scheme::Linear => Duration::from_secs(60),
            _ => Duration::from_secs(300),
        }
    }
}

pub(super) fn default_delivery_id(s: Scheme) -> Option<DeliveryId> {
    let header = |h: &str| Some(DeliveryId::Header(h.to_owned()));
    let pointer = |p: &str| Pointer::parse(p).ok().map(DeliveryId::Pointer);
    match s {
        Scheme::StandardWebhooks => Some(DeliveryId::FirstHeader(vec![
            "webhook-id".to_owned(),
            "svix-id".to_owned(),
        ])),
        Scheme::Github => header("x-github-delivery"),
        Scheme::Stripe => pointer("/id"),
        Scheme::Shopify => header("x-shopify-event-id"),
        Scheme::Slack => pointer("/event_id"),
        Scheme::Twilio => header("i-twilio-idempotency-token"),
        Scheme::Linear => header("linear-delivery"),
        Scheme::Telegram => pointer("/update_id"),
        Scheme::Discord => pointer("/id"),
        Scheme::Paddle => pointer("/event_id"),
        Scheme::Square => pointer("/event_id"),
        // The signed token, not the unsigned event id: Mailgun signs only timestamp and
        // token, so remembering the token is what stops a signature being reused with
        // another body.
        Scheme::Mailgun => pointer("/signature/token"),
        Scheme::Zoom | Scheme::Meta | Scheme::Sendgrid => None,
        Scheme::None | Scheme::Hmac | Scheme::Bearer | Scheme::Basic => None,
    }
}

impl HmacAlgorithm {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "sha1" => HmacAlgorithm::Sha1,
            "sha256" => HmacAlgorithm::Sha256,
            "sha512" => HmacAlgorithm::Sha512,
            _ => return None,
        })
    }
}

impl Encoding {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "hex" => Encoding::Hex,
            "base64" => Encoding::Base64,
            "base64url" => Encoding::Base64Url,
            _ => return None,
        })
    }
}
