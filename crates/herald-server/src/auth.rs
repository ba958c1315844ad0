//! Bearer tokens for the management APIs: the admin token manages everything, a bot's own token
//! (`token:` in its bot.yaml) manages that bot. Tokens are compared in constant time.

use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::error::ApiError;

/// The scheme and credential of `Authorization: <scheme> <credential>` (or the
/// `Authentication` spelling some clients use).
pub fn credential(headers: &HeaderMap) -> Option<(&str, &str)> {
    let v = headers
        .get(header::AUTHORIZATION)
        .or_else(|| headers.get("authentication"))?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    Some((scheme, token.trim()))
}

/// The token from `Authorization: Bearer …`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let (scheme, token) = credential(headers)?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// Compares secrets in constant time.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Admin,
    Bot(String),
}

impl Caller {
    /// May this caller manage `bot_id`?
    pub fn may_manage(&self, bot_id: &str) -> bool {
        match self {
            Caller::Admin => true,
            Caller::Bot(b) => b == bot_id,
        }
    }
}

/// Who is calling; 401 without a valid token.
pub fn caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let token = bearer(headers).ok_or_else(ApiError::unauthorized)?;
    if same(token, &state.admin_token) {
        return Ok(Caller::Admin);
    }
    for (id, bot) in &state.engine.shared().project.bots {
        if let Some(t) = &bot.token
            && same(token, t)
        {
            return Ok(Caller::Bot(id.clone()));
        }
    }
    Err(ApiError::unauthorized())
}

/// 401 unless the caller may manage `bot_id`.
pub fn require_bot(
    state: &AppState,
    headers: &HeaderMap,
    bot_id: &str,
) -> Result<Caller, ApiError> {
    let c = caller(state, headers)?;
    if c.may_manage(bot_id) {
        Ok(c)
    } else {
        Err(ApiError::unauthorized())
    }
}

/// Route middleware: 401 unless the request carries the admin token or some bot's token.
pub async fn require_token(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match caller(&state, req.headers()) {
        Ok(_) => next.run(req).await,
        Err(e) => axum::response::IntoResponse::into_response(e),
    }
}
