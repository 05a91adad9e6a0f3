//! The HTTP API: `/health` and the versioned REST API under `/api/v1`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::error::Error;
use crate::startup::Services;

/// Routes that do not need a session: `/health` and the API's JSON 404.
pub fn router(services: Services) -> Router {
    Router::new()
        .route("/health", get(health))
        .nest("/api/v1", Router::new().fallback(api_not_found))
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

async fn api_not_found() -> Error {
    Error::NotFound("no such API route; see /api/v1/openapi.json".into())
}
