//! A router that records what it serves: every route is added with its method and what its
//! body must be, so the table the tests walk (every route, every malformed body) is the router
//! itself, and a new route is covered by them without anyone remembering to list it.

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, on};

use crate::AppState;

/// What a route reads from the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takes {
    /// Nothing: the body is ignored.
    Nothing,
    /// A JSON body under the rule of [`crate::json`].
    Json,
    /// A JSON object or a form, or nothing (pushback activation).
    JsonOrForm,
    /// A platform's body, read only after its signature is verified (integration webhooks):
    /// malformed JSON from a sender that cannot sign is 401, not 400.
    Raw,
}

/// One route: `method path`, and what its body must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub method: Method,
    pub path: &'static str,
    pub takes: Takes,
}

/// A [`Router`] being built, with the table of its routes.
pub struct Routes {
    router: Router<AppState>,
    table: Vec<RouteInfo>,
}

impl Default for Routes {
    fn default() -> Self {
        Self::new()
    }
}

impl Routes {
    pub fn new() -> Self {
        Self {
            router: Router::new(),
            table: Vec::new(),
        }
    }

    /// Serves `method path` with `handler`.
    pub fn add<H, T>(mut self, method: Method, path: &'static str, takes: Takes, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone())
            .unwrap_or_else(|_| panic!("{method} is not a method a route can take"));
        self.router = self.router.route(path, on(filter, handler));
        self.table.push(RouteInfo {
            method,
            path,
            takes,
        });
        self
    }

    /// Applies `f` to the routes added so far (a `route_layer` for a group, say).
    pub fn map(mut self, f: impl FnOnce(Router<AppState>) -> Router<AppState>) -> Self {
        self.router = f(self.router);
        self
    }

    pub fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.table.extend(other.table);
        self
    }

    pub fn into_parts(self) -> (Router<AppState>, Vec<RouteInfo>) {
        (self.router, self.table)
    }
}
