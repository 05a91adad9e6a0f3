//! The HTTP API: `/health` and the versioned REST API under `/api/v1`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::Error;
use crate::services::Services;

mod certificates;
mod connect;
mod credentials;
pub mod doc;
mod integrations;
mod outbox;
pub mod principal;
mod promotion;
mod proxy;
pub mod v1;
mod webhooks;

pub use doc::openapi_json;

/// `/health`, the REST API under `/api/v1` (with its JSON 404) and the Salesforce callback.
pub fn router(services: Services) -> Router {
    api_router().split_for_parts().0.with_state(services)
}

/// Every route with its OpenAPI operation: the document (`doc::document`) is made from the same
/// declarations as the router, so a route cannot be left out of it.
fn api_router() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .route("/oauth/callback", get(connect::callback))
        .route("/salesforce/callback", get(connect::callback))
        .route("/connect/{env}/{name}", get(connect::start))
        .route("/proxy/v1/{*path}", any(proxy::forward))
        .nest(
            "/api/v1",
            v1::router()
                .merge(integrations::router())
                .merge(promotion::router())
                .merge(certificates::router())
                .merge(connect::router())
                .merge(credentials::router())
                .merge(outbox::router())
                .merge(webhooks::router())
                .routes(routes!(openapi))
                .fallback(api_not_found),
        )
}

/// The body of `/health`.
struct Health;

doc::hand_schema!(Health, "Health", || json!({"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}}));

/// 200 `{"status":"ok"}` once the database answers and the keyring is open; 503 otherwise.
#[utoipa::path(
    get, path = "/health", operation_id = "health",
    summary = "200 once the database answers and the keyring is open",
    security(),
    responses(
        (status = 200, description = "Serving", body = inline(Health)),
        (status = 503, description = "Not serving", body = inline(doc::AnyObject)),
    )
)]
async fn health(State(s): State<Services>) -> Response {
    match s.db.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ok"}))).into_response(),
        Err(e) => {
            tracing::error!("health check: database unreachable: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unavailable", "reason": "database unreachable"}))).into_response()
        }
    }
}

/// The OpenAPI 3.1 document of everything under `/api/v1` (and `/health`).
#[utoipa::path(
    get, path = "/openapi.json", operation_id = "openapi",
    security(),
    responses((status = 200, description = "This document", body = inline(doc::AnyObject)))
)]
async fn openapi() -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], openapi_json()).into_response()
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
