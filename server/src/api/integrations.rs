//! `/api/v1/environments/{env}/integrations`: publish, unpublish, list with binding status, bind
//! and unbind (see the API contract).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::principal::{self, Principal};
use super::v1::{env_for, Body, Path, Query};
use crate::access::{Access, Resource};
use crate::error::Result;
use crate::feed::{FeedParams, Page};
use crate::integrations::{self, Change, Integration, Publish};
use crate::startup::Services;

pub fn router() -> Router<Services> {
    Router::new()
        .route("/environments/{env}/integrations", get(list))
        .route("/environments/{env}/integrations/{name}", get(read).put(publish).delete(unpublish))
        .route("/environments/{env}/integrations/{name}/binding", put(bind).delete(unbind))
        .route("/environments/{env}/integrations/{name}/token", axum::routing::post(token))
}

async fn list(State(s): State<Services>, p: Principal, Path(env): Path<String>, Query(q): Query<FeedParams>) -> Result<Json<Page<Integration>>> {
    let (feed, limit) = q.parse()?;
    let env = env_for(&s, &p, &env, Resource::Integrations, Access::Read).await?;
    Ok(Json(integrations::list(&s.db, &env.name, &feed, limit).await?))
}

async fn read(State(s): State<Services>, p: Principal, Path((env, name)): Path<(String, String)>) -> Result<Json<Integration>> {
    let env = env_for(&s, &p, &env, Resource::Integrations, Access::Read).await?;
    Ok(Json(integrations::get(&s.db, &env.name, &name).await?))
}

/// 201 when created, 200 when changed or already so (`"change"` says which).
async fn publish(State(s): State<Services>, p: Principal, Path((env, name)): Path<(String, String)>, Body(input): Body<Publish>) -> Result<Response> {
    let env = env_for(&s, &p, &env, Resource::Integrations, Access::Write).await?;
    let (integration, change) = integrations::publish(&s.db, &p.actor(), &env.name, &name, &input).await?;
    let mut body = serde_json::to_value(&integration).map_err(|e| crate::Error::Internal(e.to_string()))?;
    body["change"] = json!(change);
    let status = if change == Change::Created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(body)).into_response())
}

async fn unpublish(State(s): State<Services>, p: Principal, Path((env, name)): Path<(String, String)>) -> Result<StatusCode> {
    let env = env_for(&s, &p, &env, Resource::Integrations, Access::Write).await?;
    integrations::unpublish(&s.db, &p.actor(), &env.name, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Binding {
    connection: String,
}

async fn bind(State(s): State<Services>, p: Principal, Path((env, name)): Path<(String, String)>, Body(b): Body<Binding>) -> Result<Json<Integration>> {
    let env = env_for(&s, &p, &env, Resource::Bindings, Access::Write).await?;
    Ok(Json(integrations::bind(&s.db, &p.actor(), &env.name, &name, &b.connection).await?))
}

async fn unbind(State(s): State<Services>, p: Principal, Path((env, name)): Path<(String, String)>) -> Result<Json<Integration>> {
    let env = env_for(&s, &p, &env, Resource::Bindings, Access::Write).await?;
    Ok(Json(integrations::unbind(&s.db, &p.actor(), &env.name, &name).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenQuery {
    #[serde(default)]
    force_refresh: bool,
}

/// Run-time credentials for an app: `{access_token, token_type, instance_url, expires_at,
/// connection}`, never cached by intermediaries.
/// API keys take the one-round-trip path; a signed-in session (a person trying it out) the
/// usual one.
async fn token(
    State(s): State<Services>,
    parts: axum::http::request::Parts,
    Path((env, name)): Path<(String, String)>,
    Query(q): Query<TokenQuery>,
) -> Result<Response> {
    let token = match principal::bearer(&parts.headers)? {
        Some(key) => s.broker.token_for_key(&s, key, principal::client_addr(&parts, &s), &env, &name, q.force_refresh).await?,
        None => {
            let mut parts = parts;
            let p = <Principal as axum::extract::FromRequestParts<Services>>::from_request_parts(&mut parts, &s).await?;
            let env = env_for(&s, &p, &env, Resource::Tokens, Access::Read).await?;
            s.broker.token(&s, &p.actor(), &env, &name, q.force_refresh).await?
        }
    };
    Ok(([(axum::http::header::CACHE_CONTROL, "no-store")], Json(token.to_json())).into_response())
}
