//! `/api/v1`: environments, connections, API keys, audit and users (see the API contract).

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::principal::Principal;
use crate::access::{Access, Resource};
use crate::api_keys::{self, Creator, NewApiKey};
use crate::connections::{self, ConnectionPatch, ListQuery, NewConnection, Page};
use crate::environments::{self, Environment};
use crate::error::{Error, Result};
use crate::startup::Services;
use crate::{audit, users};

/// JSON bodies whose rejections use the API's error format.
pub struct Body<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = Error;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Error> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(JsonRejection::JsonDataError(e)) => Err(Error::Validation(vec![crate::error::FieldError::new("body", e.body_text())])),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(Error::BadRequest("send the body as JSON with Content-Type: application/json".into())),
            Err(e) => Err(Error::BadRequest(format!("the body is not valid JSON: {}", e.body_text()))),
        }
    }
}

pub fn router() -> Router<Services> {
    Router::new()
        .route("/environments", get(list_environments))
        .route("/environments/{env}/connections", get(list_connections).post(create_connection))
        .route("/environments/{env}/connections/{name}", get(get_connection).patch(update_connection).delete(delete_connection))
        .route("/api-keys", get(list_keys).post(create_key))
        .route("/api-keys/{id}", delete(revoke_key))
        .route("/audit", get(list_audit))
        .route("/users", get(list_users))
        .route("/environments/{env}/connections/{name}/test", post(test_connection))
}

async fn env_for(s: &Services, p: &Principal, name: &str, resource: Resource, access: Access) -> Result<Environment> {
    let env = environments::find(&s.db, name).await?;
    p.require(&env, resource, access)?;
    Ok(env)
}

#[derive(Serialize)]
struct EnvironmentItem {
    id: i64,
    name: String,
    position: i64,
    created_at: String,
    updated_at: String,
}

async fn list_environments(State(s): State<Services>, p: Principal) -> Result<Json<serde_json::Value>> {
    let items: Vec<EnvironmentItem> = environments::list(&s.db)
        .await?
        .into_iter()
        .filter(|e| p.allows(e, Resource::Environments, Access::Read))
        .map(|e| EnvironmentItem { id: e.id, name: e.name, position: e.position, created_at: e.created_at, updated_at: e.updated_at })
        .collect();
    Ok(Json(json!({"items": items, "next_cursor": null})))
}

#[derive(Deserialize)]
struct ListParams {
    provider: Option<String>,
    q: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn list_connections(
    State(s): State<Services>,
    p: Principal,
    Path(env): Path<String>,
    Query(q): Query<ListParams>,
) -> Result<Json<Page<connections::Connection>>> {
    let env = env_for(&s, &p, &env, Resource::Connections, Access::Read).await?;
    Ok(Json(connections::list(&s.db, &env.name, &ListQuery { provider: q.provider, search: q.q, limit: q.limit, cursor: q.cursor }).await?))
}

async fn create_connection(State(s): State<Services>, p: Principal, Path(env): Path<String>, Body(input): Body<NewConnection>) -> Result<Response> {
    let env = env_for(&s, &p, &env, Resource::Connections, Access::Write).await?;
    let c = connections::create(&s.db, &s.vault, &p.actor(), &env.name, input).await?;
    Ok((StatusCode::CREATED, Json(c)).into_response())
}

async fn get_connection(State(s): State<Services>, p: Principal, Path((env, name)): Path<(String, String)>) -> Result<Json<connections::Connection>> {
    let env = env_for(&s, &p, &env, Resource::Connections, Access::Read).await?;
    Ok(Json(connections::get(&s.db, &env.name, &name).await?))
}

async fn update_connection(
    State(s): State<Services>,
    p: Principal,
    Path((env, name)): Path<(String, String)>,
    Body(patch): Body<ConnectionPatch>,
) -> Result<Json<connections::Connection>> {
    let env = env_for(&s, &p, &env, Resource::Connections, Access::Write).await?;
    Ok(Json(connections::update(&s.db, &s.vault, &p.actor(), &env.name, &name, patch).await?))
}

#[derive(Deserialize)]
struct DeleteParams {
    #[serde(default)]
    force: bool,
}

async fn delete_connection(
    State(s): State<Services>,
    p: Principal,
    Path((env, name)): Path<(String, String)>,
    Query(q): Query<DeleteParams>,
) -> Result<StatusCode> {
    let env = env_for(&s, &p, &env, Resource::Connections, Access::Write).await?;
    connections::delete(&s.db, &p.actor(), &env.name, &name, q.force).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_keys(State(s): State<Services>, p: Principal) -> Result<Json<serde_json::Value>> {
    p.require_global(Resource::ApiKeys, Access::Read)?;
    Ok(Json(json!({"items": api_keys::list(&s.db).await?, "next_cursor": null})))
}

async fn create_key(State(s): State<Services>, p: Principal, Body(input): Body<NewApiKey>) -> Result<Response> {
    let creator = match &p {
        Principal::User(u, _) => Creator::User(u),
        // A key may mint keys only with api_keys write on every environment, and never wider
        // than its own grants.
        Principal::Key(k, _) => {
            p.require_global(Resource::ApiKeys, Access::Write)?;
            for g in &input.grants {
                let covered = k.grants.iter().any(|own| own.includes(g));
                if !covered {
                    return Err(Error::Forbidden("a key cannot create a key wider than itself".into()));
                }
            }
            Creator::Operator
        }
    };
    let (key, value) = api_keys::create(&s.db, &p.actor(), creator, input).await?;
    let mut body = serde_json::to_value(&key).map_err(|e| Error::Internal(e.to_string()))?;
    body["key"] = json!(value.expose_secret());
    Ok((StatusCode::CREATED, [(axum::http::header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}

async fn revoke_key(State(s): State<Services>, p: Principal, Path(id): Path<i64>) -> Result<StatusCode> {
    let key = api_keys::get(&s.db, id).await?;
    match &p {
        Principal::User(u, _) => {
            if !api_keys::user_may_revoke(u, &key, &environments::list(&s.db).await?) {
                return Err(Error::Forbidden("you may revoke keys you created, or keys whose environments you manage API keys in".into()));
            }
        }
        Principal::Key(..) => p.require_global(Resource::ApiKeys, Access::Write)?,
    }
    api_keys::revoke(&s.db, &p.actor(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct AuditParams {
    environment: Option<String>,
    limit: Option<i64>,
}

async fn list_audit(State(s): State<Services>, p: Principal, Query(q): Query<AuditParams>) -> Result<Json<serde_json::Value>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Error::field("limit", "limit must be from 1 to 1000"));
    }
    let events = match &q.environment {
        Some(name) => {
            let env = env_for(&s, &p, name, Resource::Audit, Access::Read).await?;
            audit::recent_in(&s.db, Some(env.id), None, limit).await?
        }
        None => {
            p.require_global(Resource::Audit, Access::Read)?;
            audit::recent(&s.db, limit).await?
        }
    };
    Ok(Json(json!({"items": events, "next_cursor": null})))
}

async fn list_users(State(s): State<Services>, p: Principal) -> Result<Json<serde_json::Value>> {
    p.require_global(Resource::Users, Access::Read)?;
    let items: Vec<serde_json::Value> = users::list(&s.db)
        .await?
        .into_iter()
        .map(|u| json!({"id": u.id, "email": u.email, "status": u.status, "owner": u.is_owner, "last_sign_in_at": u.last_sign_in_at, "roles": u.roles, "created_at": u.created_at, "updated_at": u.updated_at}))
        .collect();
    Ok(Json(json!({"items": items, "next_cursor": null})))
}

/// A live check with the stored credentials: 200 `{ok, detail, advice}` whether or not it worked.
async fn test_connection(State(s): State<Services>, p: Principal, Path((env, name)): Path<(String, String)>) -> Result<Json<crate::providers::TestResult>> {
    let env = env_for(&s, &p, &env, Resource::Connections, Access::Write).await?;
    Ok(Json(connections::test(&s.db, &s.vault, &s.outbound, &p.actor(), &env.name, &name).await?))
}
