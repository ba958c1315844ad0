//! One error type for every route: client errors carry a code, a message naming the field and
//! optional details; storage and other server faults are logged and answered with an opaque 5xx.

use axum::Json;
use axum::extract::FromRequest;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<Value>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::field_error(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            field,
            message.into(),
        )
    }
    /// 422 `validation_failed`: a well-formed request whose `field` has a value we cannot use.
    /// The message always starts with `field: `.
    pub fn unprocessable(field: &str, message: impl std::fmt::Display) -> Self {
        Self::field_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            field,
            format!("{field}: {message}"),
        )
    }
    /// An error naming `field` in its message (prefixed unless already there) and details.
    fn field_error(status: StatusCode, code: &'static str, field: &str, message: String) -> Self {
        let message = if message.contains(field) {
            message
        } else {
            format!("{field}: {message}")
        };
        let mut e = Self::new(status, code, message);
        e.details = Some(json!({ "field": field }));
        e
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong token: send `Authorization: Bearer <admin or bot token>`",
        )
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": {"code": self.code, "message": self.message}});
        if let Some(d) = self.details {
            body["error"]["details"] = d;
        }
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl From<herald_engine::EngineError> for ApiError {
    fn from(e: herald_engine::EngineError) -> Self {
        match e {
            herald_engine::EngineError::ShuttingDown => {
                Self::unavailable("the server is shutting down")
            }
            herald_engine::EngineError::Busy(m) => {
                let mut e = Self::unavailable(m);
                e.retry_after = Some(1);
                e
            }
            other => Self::unavailable(format!("storage is unavailable: {other}")),
        }
    }
}

impl From<herald_store::StoreError> for ApiError {
    fn from(e: herald_store::StoreError) -> Self {
        Self::internal(e)
    }
}

/// How long a request body may take to arrive; set per request by [`crate::guard`].
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub std::time::Duration);

/// Reads the body (within the body limit and the body timeout) and maps buffering failures to
/// 413/408/400.
pub async fn read_body(mut req: axum::extract::Request) -> Result<(HeaderMap, Bytes), ApiError> {
    // The body extractor reads only the body and the size limit (an extension), so the headers
    // can be moved out rather than copied.
    let headers = std::mem::take(req.headers_mut());
    let timeout = req
        .extensions()
        .get::<BodyTimeout>()
        .map_or(std::time::Duration::from_secs(30), |t| t.0);
    let read = tokio::time::timeout(timeout, Bytes::from_request(req, &()))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request body did not arrive within {} s",
                    timeout.as_secs_f64()
                ),
            )
        })?;
    let bytes = read.map_err(|rej| {
        ApiError::new(
            rej.status(),
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                "payload_too_large"
            } else {
                "bad_request"
            },
            rej.body_text(),
        )
    })?;
    Ok((headers, bytes))
}

pub fn is_json(headers: &HeaderMap) -> bool {
    content_type(headers).is_some_and(|ct| ct == "application/json" || ct.ends_with("+json"))
}

pub fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
}

/// Parses a JSON body under the rule of [`crate::json`], naming the field (as a path) that did
/// not fit `T`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    crate::json::parse(bytes).map_err(|e| match e {
        crate::json::BodyError::Malformed(inner) => malformed_json(&inner),
        crate::json::BodyError::Field { path, error } if path == "." => {
            ApiError::bad_request(format!("body: {error}"))
        }
        crate::json::BodyError::Field { path, error } => {
            ApiError::invalid_field(&path, format!("{path}: {error}"))
        }
    })
}

/// 400 `malformed_json`: the body breaks the JSON rule of [`crate::json`].
pub fn malformed_json(e: &serde_json::Error) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "malformed_json",
        format!("body is not valid JSON: {e}"),
    )
}

/// `Query<T>` with Herald's errors: 400 naming what in the query string could not be read.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        s: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, s)
            .await
            .map(|axum::extract::Query(q)| ApiQuery(q))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// `Json<T>` with Herald's errors: 415 for another content type, 413 over the limit, 400 with
/// the field path for malformed or mistyped bodies.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, _: &S) -> Result<Self, ApiError> {
        let (headers, bytes) = read_body(req).await?;
        if !is_json(&headers) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        parse_json(&bytes).map(ApiJson)
    }
}
