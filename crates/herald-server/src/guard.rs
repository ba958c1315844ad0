//! What every request passes through around its route (called by `ops::track`, the one
//! middleware every route has): a body whose declared length is over
//! the limit is refused before a byte of it is read; the body timeout is handed to the body
//! readers; and an error answer written as plain text by the HTTP layer (a path segment that
//! is not UTF-8, a query string that cannot be read, an upgrade without its headers) is
//! rewritten as JSON, in the shape of the route's API family (Novu's for `/v1/…`).

use std::time::Duration;

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, BodyTimeout};

#[derive(Debug, Clone, Copy)]
pub struct GuardConfig {
    pub body_limit: usize,
    pub body_timeout: Duration,
}

/// The largest plain-text error body that is carried over into the JSON answer.
const MAX_TEXT: usize = 4096;

/// Before the route: the answer to a request refused at once (a body declared over the
/// limit), else the request with its body timeout attached.
#[allow(clippy::result_large_err)]
pub fn admit(cfg: &GuardConfig, mut req: Request) -> Result<Request, Response> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // An integration's webhook has a body limit of its own, checked by its route.
    let own_limit = req.uri().path().starts_with("/integrations/");
    if !own_limit && declared.is_some_and(|n| n > cfg.body_limit as u64) {
        let e = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than {} bytes", cfg.body_limit),
        );
        return Err(answer(e, is_novu(&req)));
    }
    req.extensions_mut().insert(BodyTimeout(cfg.body_timeout));
    Ok(req)
}

/// Whether `req` belongs to the Novu-compatible API (errors in Novu's shape).
pub fn is_novu(req: &Request) -> bool {
    req.uri().path().starts_with("/v1/")
}

/// After the route: an error answer that is not JSON, rewritten as JSON.
pub async fn as_json(resp: Response, novu: bool) -> Response {
    let status = resp.status();
    if status.as_u16() < 400 {
        return resp;
    }
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if json {
        return resp;
    }
    let text = axum::body::to_bytes(resp.into_body(), MAX_TEXT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    answer(ApiError::new(status, code_of(status), message), novu)
}

fn answer(e: ApiError, novu: bool) -> Response {
    if novu {
        crate::novu::NovuError(e).into_response()
    } else {
        e.into_response()
    }
}

/// The error code Herald uses for a status the HTTP layer chose.
fn code_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "validation_failed",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_the_http_layer_chooses_get_herald_codes() {
        assert_eq!(code_of(StatusCode::PAYLOAD_TOO_LARGE), "payload_too_large");
        assert_eq!(code_of(StatusCode::BAD_GATEWAY), "internal");
        assert_eq!(code_of(StatusCode::IM_A_TEAPOT), "bad_request");
    }
}
