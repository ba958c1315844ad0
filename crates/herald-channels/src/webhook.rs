//! Outbound webhooks: one HTTP POST per attempt, signed with the Standard
//! Webhooks scheme when a secret is configured, and the response classified
//! into delivered / retryable / permanent. Scheduling retries is the
//! caller's business (see [`crate::retry`]).

use std::fmt;

use jiff::Timestamp;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use serde::Deserialize;

use crate::attempt::{Attempt, error_chain};
use crate::retry::parse_retry_after;
use crate::signing::{self, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};

/// The `User-Agent` sent with every webhook.
pub const USER_AGENT_VALUE: &str = "herald";

/// Longest response-body excerpt quoted in an error, in characters.
const EXCERPT_CHARS: usize = 200;
/// Bytes read from an error response at most: enough for the excerpt even
/// in 4-byte UTF-8, without letting a huge error page be buffered whole.
const EXCERPT_READ_BYTES: usize = EXCERPT_CHARS * 4;

/// One webhook to deliver, as a flow step describes it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookRequest {
    /// Where to POST.
    pub url: String,
    /// Standard Webhooks secret (`whsec_<base64>` or raw); unsigned if absent.
    #[serde(default)]
    pub secret: Option<String>,
    /// The request body, sent verbatim.
    pub body: String,
    /// The `Content-Type` of `body`.
    #[serde(default = "default_content_type")]
    pub content_type: String,
}

fn default_content_type() -> String {
    "application/json".to_owned()
}

// Hand-written so the secret never reaches a log line.
impl fmt::Debug for WebhookRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookRequest")
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("body", &self.body)
            .field("content_type", &self.content_type)
            .finish()
    }
}

/// Makes one delivery attempt of `req`.
///
/// `msg_id` must stay the same across retries of one delivery so receivers
/// can deduplicate; `now` becomes `webhook-timestamp`. Timeouts are the
/// `client`'s: build it with one, or a silent receiver stalls the attempt.
pub async fn send_webhook(
    client: &reqwest::Client,
    req: &WebhookRequest,
    msg_id: &str,
    now: Timestamp,
) -> Attempt {
    let ts = now.as_second();
    let mut builder = client
        .post(&req.url)
        .header(CONTENT_TYPE, &req.content_type)
        .header(USER_AGENT, USER_AGENT_VALUE)
        .header(HEADER_ID, msg_id)
        .header(HEADER_TIMESTAMP, ts.to_string());
    if let Some(secret) = &req.secret {
        match signing::sign(secret, msg_id, ts, req.body.as_bytes()) {
            Ok(signature) => builder = builder.header(HEADER_SIGNATURE, signature),
            // A broken secret stays broken; retrying would only spam logs.
            Err(e) => return Attempt::permanent(format!("webhook to {}: {e}", req.url)),
        }
    }

    let response = match builder.body(req.body.clone()).send().await {
        Ok(response) => response,
        Err(e) => return classify_transport_error(&req.url, &e),
    };
    let status = response.status();
    if status.is_success() {
        return Attempt::Delivered;
    }

    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now));
    let excerpt = body_excerpt(response).await;
    let error = if excerpt.is_empty() {
        format!("webhook to {} answered HTTP {status}", req.url)
    } else {
        format!("webhook to {} answered HTTP {status}: {excerpt}", req.url)
    };
    if is_retryable_status(status) {
        Attempt::retryable(error, retry_after)
    } else {
        Attempt::permanent(error)
    }
}

/// Whether a non-2xx status may succeed on a later attempt: server errors
/// and the few 4xx codes that mean "not now" rather than "never".
fn is_retryable_status(status: StatusCode) -> bool {
    status.is_server_error()
        || matches!(
            status,
            StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_EARLY | StatusCode::TOO_MANY_REQUESTS
        )
}

fn classify_transport_error(url: &str, e: &reqwest::Error) -> Attempt {
    let error = format!("webhook to {url} failed: {}", error_chain(e));
    // A malformed URL or an endless redirect loop is a configuration
    // problem; network trouble (refused, reset, timed out, DNS) can pass.
    if e.is_builder() || e.is_redirect() {
        Attempt::permanent(error)
    } else {
        Attempt::retryable(error, None)
    }
}

/// At most [`EXCERPT_CHARS`] characters of an error response, on one line.
/// Read errors just shorten the excerpt: the status already says enough.
async fn body_excerpt(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < EXCERPT_READ_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    excerpt(&String::from_utf8_lossy(&bytes))
}

fn excerpt(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= EXCERPT_CHARS {
        return one_line;
    }
    // Keep the ellipsis within the budget so the limit is a hard one.
    let mut cut: String = one_line.chars().take(EXCERPT_CHARS - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_deserializes_with_defaults() -> Result<(), serde_json::Error> {
        let req: WebhookRequest =
            serde_json::from_str(r#"{"url": "http://x/hook", "body": "{}"}"#)?;
        assert_eq!(req.content_type, "application/json");
        assert_eq!(req.secret, None);
        let req: WebhookRequest = serde_json::from_str(
            r#"{"url": "u", "body": "b", "secret": "s", "contentType": "text/plain"}"#,
        )?;
        assert_eq!(req.content_type, "text/plain");
        assert_eq!(req.secret.as_deref(), Some("s"));
        assert!(!format!("{req:?}").contains("\"s\""));
        Ok(())
    }

    #[test]
    fn status_classification() {
        for code in [408, 425, 429, 500, 502, 503, 504] {
            let status = StatusCode::from_u16(code).unwrap_or_default();
            assert!(is_retryable_status(status), "{code}");
        }
        for code in [301, 400, 401, 403, 404, 410, 413, 422] {
            let status = StatusCode::from_u16(code).unwrap_or_default();
            assert!(!is_retryable_status(status), "{code}");
        }
    }

    #[test]
    fn excerpt_is_short_and_on_one_line() {
        assert_eq!(excerpt("  bad\n  request \t"), "bad request");
        let long = "é".repeat(500);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), EXCERPT_CHARS);
        assert!(cut.ends_with('…'));
    }
}
