//! The HTTP API: `/health` and the versioned REST API under `/api/v1`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::error::Error;
use crate::startup::Services;

mod integrations;
mod outbox;
pub mod principal;
mod promotion;
mod salesforce;
pub mod v1;

/// Routes that do not need a session: `/health` and the API's JSON 404.
pub fn router(services: Services) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/salesforce/callback", get(salesforce::callback))
        .nest(
            "/api/v1",
            v1::router()
                .merge(integrations::router())
                .merge(promotion::router())
                .merge(salesforce::router())
                .merge(outbox::router())
                .route("/openapi.json", get(openapi))
                .fallback(api_not_found),
        )
        .with_state(services)
}

/// 200 `{"status":"ok"}` once the database answers and the keyring is open; 503 otherwise.
async fn health(State(s): State<Services>) -> Response {
    match s.db.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ok"}))).into_response(),
        Err(e) => {
            tracing::error!("health check: database unreachable: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unavailable", "reason": "database unreachable"}))).into_response()
        }
    }
}

/// The OpenAPI 3.1 document of everything under `/api/v1` (kept beside the handlers; a test
/// checks that every route is in it).
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn api_not_found() -> Error {
    Error::NotFound("no such API route; see /api/v1/openapi.json".into())
}

/// Wraps `router` (the REST API and the app's pages and server functions) in the CSRF guard.
pub fn with_csrf_guard(router: Router, public_url: &str) -> Router {
    router.layer(axum::middleware::from_fn_with_state(std::sync::Arc::new(public_url.to_string()), csrf_guard))
}

/// CSRF protection for everything a browser can change: a state-changing request (anything but
/// GET, HEAD, OPTIONS) that carries the session cookie, or that calls a server function under
/// `/rpc/` (sign-in included, against login CSRF), must come from this site, as its `Origin`
/// (or, failing that, `Referer`) header shows. API-key requests carry no cookie and are not
/// affected.
pub async fn csrf_guard(State(public_url): State<std::sync::Arc<String>>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use axum::http::{header, Method};
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let has_session = crate::sessions::token_from_headers(req.headers()).is_some();
    let server_function = req.uri().path().starts_with("/rpc/");
    if changes && (has_session || server_function) {
        let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .or_else(|| req.headers().get(header::REFERER))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| url::Url::parse(v).ok());
        let same_site = origin.is_some_and(|o| {
            let authority = match o.port() {
                Some(p) => format!("{}:{p}", o.host_str().unwrap_or("")),
                None => o.host_str().unwrap_or("").to_string(),
            };
            authority.eq_ignore_ascii_case(host) || o.origin().ascii_serialization().eq_ignore_ascii_case(public_url.trim_end_matches('/'))
        });
        if !same_site {
            tracing::warn!(method = %req.method(), path = %req.uri().path(), "refused a cross-site request carrying a session cookie");
            return Error::Forbidden("this request did not come from connvault's own pages (cross-site request refused); reload the page and try again".into())
                .into_response();
        }
    }
    next.run(req).await
}
