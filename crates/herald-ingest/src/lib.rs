//! Inbound webhooks of integrations (SPEC §7), as pure functions of a request and its
//! definition: [`verify`] proves where a request comes from (each platform preset's own recipe,
//! constant-time comparisons, timestamps within tolerance, any active secret), [`handshake`]
//! answers the platforms' subscription checks once verified, and [`map`] turns a verified
//! request into typed events: the delivery id, the first event whose `when` matches, its
//! payload, its schema errors, and its route. No I/O: the server reads the request and the
//! store keeps what comes out.

pub mod handshake;
pub mod map;
pub mod verify;

use std::collections::BTreeMap;

use jiff::Timestamp;

/// A request to `/integrations/{name}/webhook`, as the checks need it.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The URL the platform called: Herald's public URL, the path and the query string.
    pub url: &'a str,
    /// Header names in lower case; a repeated header keeps its first value.
    pub headers: &'a BTreeMap<String, String>,
    /// Query parameters, decoded, in order.
    pub query: &'a [(String, String)],
    pub body: &'a [u8],
    pub now: Timestamp,
}

impl Request<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the body is a form (`application/x-www-form-urlencoded`).
    pub fn is_form(&self) -> bool {
        self.header("content-type").is_some_and(|ct| {
            ct.split(';').next().is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        })
    }
}

/// Why a request was rejected: a stable code for the request log and the answer, and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// `signature`, `stale`, `missing_header`, `malformed_header`, `token`, `malformed_body`.
    pub reason: &'static str,
    pub message: String,
}

impl Rejection {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    pub fn missing(header: &str) -> Self {
        Self::new(
            "missing_header",
            format!("the `{header}` header is missing"),
        )
    }

    pub fn malformed(header: &str, why: &str) -> Self {
        Self::new(
            "malformed_header",
            format!("the `{header}` header is malformed: {why}"),
        )
    }

    pub fn signature() -> Self {
        Self::new("signature", "the signature does not match")
    }
}
