//! The platforms' subscription checks, answered by Herald itself rather than raised as events:
//! Meta's `GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…` (proved by the verify
//! token, since it carries no signature), and, once the request is verified, Slack's
//! `url_verification`, Zoom's `endpoint.url_validation` and Discord's PING.

use herald_core::integration::{HmacAlgorithm, IntegrationDef, Scheme, Secret};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::verify::{encode_hex, mac};
use crate::{Rejection, Request};

/// What Herald answers instead of raising an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Json(Value),
    Text(String),
}

/// A handshake that comes before (and instead of) signature verification: Meta's GET.
pub fn unsigned(def: &IntegrationDef, req: &Request<'_>) -> Option<Result<Answer, Rejection>> {
    if def.verify.scheme != Scheme::Meta || !req.method.eq_ignore_ascii_case("GET") {
        return None;
    }
    let mode = req.query_param("hub.mode")?;
    let token = req.query_param("hub.verify_token").unwrap_or("");
    let challenge = req.query_param("hub.challenge").unwrap_or("");
    let expected = def.verify.verify_token.as_ref().map(|s| s.0.as_bytes());
    let ok = mode == "subscribe"
        && expected
            .is_some_and(|e| e.len() == token.len() && bool::from(e.ct_eq(token.as_bytes())));
    Some(if ok {
        Ok(Answer::Text(challenge.to_owned()))
    } else {
        Err(Rejection::new(
            "token",
            "the subscription's hub.verify_token does not match `verify.verifyToken`",
        ))
    })
}

/// Whether `req` is a subscription handshake (Meta's GET with `hub.mode`), whatever its token:
/// a replay of one raises nothing.
pub fn is_subscription(def: &IntegrationDef, req: &Request<'_>) -> bool {
    def.verify.scheme == Scheme::Meta
        && req.method.eq_ignore_ascii_case("GET")
        && req.query_param("hub.mode").is_some()
}

/// A handshake in a verified request's body; `verified` is the secret the request verified
/// with.
pub fn signed(def: &IntegrationDef, verified: Option<&Secret>, body: &Value) -> Option<Answer> {
    match def.verify.scheme {
        Scheme::Slack if body.get("type") == Some(&json!("url_verification")) => {
            let challenge = body.get("challenge").cloned().unwrap_or(Value::Null);
            Some(Answer::Json(json!({ "challenge": challenge })))
        }
        Scheme::Zoom if body.get("event") == Some(&json!("endpoint.url_validation")) => {
            let plain = body
                .pointer("/payload/plainToken")
                .and_then(Value::as_str)
                .unwrap_or_default();
            // Answered with the secret the request verified with: during a rotation Zoom
            // holds one of them, and that is the one it signed with.
            let secret = verified
                .or(def.secrets.first())
                .map(|s| s.0.as_bytes())
                .unwrap_or_default();
            let encrypted = encode_hex(&mac(HmacAlgorithm::Sha256, secret, &[plain.as_bytes()]));
            Some(Answer::Json(
                json!({"plainToken": plain, "encryptedToken": encrypted}),
            ))
        }
        Scheme::Discord if body.get("type") == Some(&json!(1)) => {
            Some(Answer::Json(json!({"type": 1})))
        }
        _ => None,
    }
}
