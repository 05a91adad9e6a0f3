//! `/api/v1`: environments, connections, API keys, audit and users (see the API contract).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::doc::{
    hand_schema, params_doc, query, BadRequest, Conflict, ConnectionPath, EnvPath, ErrorResponse, Forbidden, IdPath, Invalid, NotFound, TooLarge,
    TooManyRequests, Unauthorized,
};
use super::principal::Principal;
use crate::access::{Access, Resource};
use crate::api_keys::{self, Creator, NewApiKey};
use crate::audit::AuditQuery;
use crate::checks;
use crate::connections::{self, ConnectionPatch, ListQuery, NewConnection};
use crate::environments::{self, Environment};
use crate::error::{Error, Result};
use crate::feed::{self, FeedParams, Page};
use crate::services::Services;
use crate::{audit, users};

/// JSON bodies whose rejections use the API's error format: 400 when the body is not JSON (or
/// not sent as JSON), 422 when it is JSON but not the object expected, 413 past the limit.
pub struct Body<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = Error;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Error> {
        if !is_json(req.headers()) {
            return Err(Error::BadRequest("send the body as JSON with Content-Type: application/json".into()));
        }
        let bytes = read_body(Bytes::from_request(req, state).await)?;
        json_object(&bytes)?;
        match Json::<T>::from_bytes(&bytes) {
            Ok(Json(v)) => Ok(Body(v)),
            Err(JsonRejection::JsonDataError(e)) => Err(Error::field("body", e.body_text())),
            Err(e) => Err(Error::BadRequest(format!("the body is not valid JSON: {}", e.body_text()))),
        }
    }
}

/// Whether the request says its body is JSON (`application/json`, or a `+json` type).
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Every JSON body of the API is an object: another JSON value is 422 (serde would otherwise
/// read an array as a struct's fields in order), text that is not JSON 400.
pub(super) fn json_object(bytes: &[u8]) -> Result<()> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        return Ok(());
    }
    match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        Ok(_) => Err(Error::field("body", "the body must be a JSON object ({...}); see /api/v1/openapi.json for what this operation takes")),
        Err(e) => Err(Error::BadRequest(format!("the body is not valid JSON: {e}"))),
    }
}

/// A body as read, or why it could not be: 413 past the limit (2 MB; an import has its own),
/// 400 otherwise.
pub(super) fn read_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes> {
    match body {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(Error::TooLarge("the body is larger than 2 MB, the most this operation accepts".into())),
        Err(e) => Err(Error::BadRequest(format!("the body could not be read: {}", e.body_text()))),
    }
}

/// Path parameters whose rejections use the API's error format: a segment that cannot be what
/// the route expects (an id that is not a whole number) names nothing, so 404.
pub struct Path<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(Error::NotFound(format!("nothing at this address: {}", e.body_text()))),
            Err(e) => Err(Error::Internal(format!("path parameters: {}", e.body_text()))),
        }
    }
}

/// Query parameters whose rejections use the API's error format: 422 naming the parameter
/// (an unknown option, a value of the wrong type, one given twice).
pub struct Query<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                let text = e.body_text();
                let message = text.strip_prefix("Failed to deserialize query string: ").unwrap_or(&text);
                Err(Error::field("query", format!("{message} (see /api/v1/openapi.json for this operation's parameters)")))
            }
            Err(e) => Err(Error::BadRequest(e.body_text())),
        }
    }
}

pub fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(list_environments))
        .routes(routes!(list_connections, create_connection))
        .routes(routes!(get_connection, update_connection, delete_connection))
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
        .routes(routes!(list_audit))
        .routes(routes!(export_audit))
        .routes(routes!(list_users))
        .routes(routes!(test_connection))
}

pub(super) async fn env_for(s: &Services, p: &Principal, name: &str, resource: Resource, access: Access) -> Result<Environment> {
    let env = environments::find_for(&s.db, name, |e| p.allows(e, resource, access)).await?;
    p.require(&env, resource, access)?;
    Ok(env)
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Environment)]
struct EnvironmentItem {
    id: i64,
    name: String,
    position: i64,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

#[utoipa::path(
    get, path = "/environments", operation_id = "listEnvironments",
    summary = "Environments the caller may read, in promotion order (default), or a change feed",
    params(FeedParams),
    responses(
        (status = 200, description = "Environments", body = inline(Page<EnvironmentItem>)),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 422, response = Invalid), (status = 429, response = TooManyRequests),
    )
)]
async fn list_environments(State(s): State<Services>, p: Principal, Query(q): Query<FeedParams>) -> Result<Json<Page<EnvironmentItem>>> {
    let (feed, limit) = q.parse()?;
    let readable: Vec<i64> = environments::list(&s.db).await?.into_iter().filter(|e| p.allows(e, Resource::Environments, Access::Read)).map(|e| e.id).collect();
    let page = environments::page(&s.db, Some(&readable), &feed, limit).await?;
    Ok(Json(page.map(|e| EnvironmentItem { id: e.id, name: e.name, position: e.position, created_at: e.created_at, updated_at: e.updated_at })))
}

#[derive(Deserialize)]
struct ListParams {
    provider: Option<String>,
    q: Option<String>,
    #[serde(flatten)]
    feed: FeedParams,
}

params_doc!(ListParams, || {
    let mut params = vec![
        query("provider", json!({"type": "string"}), "Only connections of this provider"),
        query("q", json!({"type": "string"}), "Name contains (case-insensitive)"),
    ];
    params.extend(<FeedParams as utoipa::IntoParams>::into_params(|| None));
    params
});

#[utoipa::path(
    get, path = "/environments/{env}/connections", operation_id = "listConnections",
    summary = "Connections by name (default), or a change feed",
    params(EnvPath, ListParams),
    responses(
        (status = 200, description = "A page of connections", body = inline(Page<connections::Connection>)),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 422, response = Invalid), (status = 429, response = TooManyRequests),
    )
)]
async fn list_connections(
    State(s): State<Services>,
    p: Principal,
    Path(env): Path<String>,
    Query(q): Query<ListParams>,
) -> Result<Json<Page<connections::Connection>>> {
    let (feed, limit) = q.feed.parse()?;
    let env = env_for(&s, &p, &env, Resource::Connections, Access::Read).await?;
    Ok(Json(connections::list(&s.db, &env.name, &ListQuery { provider: q.provider, search: q.q, limit, feed }).await?))
}

#[utoipa::path(
    post, path = "/environments/{env}/connections", operation_id = "createConnection",
    summary = "Create a connection: its provider decides its settings and secrets",
    params(EnvPath),
    request_body = NewConnection,
    responses(
        (status = 201, description = "Created", body = connections::Connection),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 409, response = Conflict),
        (status = 413, response = TooLarge), (status = 422, response = Invalid), (status = 429, response = TooManyRequests),
    )
)]
async fn create_connection(State(s): State<Services>, p: Principal, Path(env): Path<String>, Body(input): Body<NewConnection>) -> Result<Response> {
    let env = env_for(&s, &p, &env, Resource::Connections, Access::Write).await?;
    let c = connections::create(&s.db, &s.vault, &p.actor(), &env.name, input).await?;
    Ok((StatusCode::CREATED, Json(c)).into_response())
}

#[utoipa::path(
    get, path = "/environments/{env}/connections/{name}", operation_id = "getConnection",
    summary = "One connection: its settings, and which secrets are set (never their values)",
    params(ConnectionPath),
    responses(
        (status = 200, description = "The connection (no secret values)", body = connections::Connection),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 429, response = TooManyRequests),
    )
)]
async fn get_connection(State(s): State<Services>, p: Principal, Path((env, name)): Path<(String, String)>) -> Result<Json<connections::Connection>> {
    let env = env_for(&s, &p, &env, Resource::Connections, Access::Read).await?;
    Ok(Json(connections::get(&s.db, &env.name, &name).await?))
}

#[utoipa::path(
    patch, path = "/environments/{env}/connections/{name}", operation_id = "updateConnection",
    summary = "Change settings, replace secrets, or rename",
    params(ConnectionPath),
    request_body = ConnectionPatch,
    responses(
        (status = 200, description = "Changed", body = connections::Connection),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 409, response = Conflict),
        (status = 413, response = TooLarge), (status = 422, response = Invalid), (status = 429, response = TooManyRequests),
    )
)]
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

params_doc!(DeleteParams, || vec![query(
    "force",
    json!({"type": "boolean", "default": false}),
    "Delete even when integrations are bound to it (they then need a connection); without it, that is a 409"
)]);

#[utoipa::path(
    delete, path = "/environments/{env}/connections/{name}", operation_id = "deleteConnection",
    summary = "Delete a connection and its secrets",
    params(ConnectionPath, DeleteParams),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 409, response = Conflict), (status = 422, response = Invalid),
        (status = 429, response = TooManyRequests),
    )
)]
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

#[utoipa::path(
    get, path = "/api-keys", operation_id = "listApiKeys",
    summary = "API keys by id (default), or a change feed",
    params(FeedParams),
    responses(
        (status = 200, description = "Keys (never their values)", body = inline(Page<api_keys::ApiKeyView>)),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 422, response = Invalid), (status = 429, response = TooManyRequests),
    )
)]
async fn list_keys(State(s): State<Services>, p: Principal, Query(q): Query<FeedParams>) -> Result<Json<Page<api_keys::ApiKeyView>>> {
    let (feed, limit) = q.parse()?;
    p.require_global(&s, Resource::ApiKeys, Access::Read).await?;
    let envs = environments::list(&s.db).await?;
    Ok(Json(api_keys::page(&s.db, &feed, limit).await?.map(|k| k.view(&envs))))
}

/// 201 of `create_key`: the key, its value shown this once, never cached.
struct KeyCreated;

impl<'r> utoipa::ToResponse<'r> for KeyCreated {
    fn response() -> (&'r str, utoipa::openapi::RefOr<utoipa::openapi::Response>) {
        let body = super::doc::json_schema(json!({
            "allOf": [
                super::doc::schema_ref::<api_keys::ApiKeyView>(),
                {"type": "object", "required": ["key"], "properties": {"key": {"type": "string", "pattern": "^cvk_"}}}
            ]
        }));
        let response = utoipa::openapi::ResponseBuilder::new()
            .description("Created; `key` is shown this once")
            .content("application/json", utoipa::openapi::Content::new(Some(body)))
            .header("Cache-Control", super::doc::no_store())
            .build();
        ("KeyCreated", response.into())
    }
}

#[utoipa::path(
    post, path = "/api-keys", operation_id = "createApiKey",
    summary = "Create an API key; its value is in this answer only",
    request_body = NewApiKey,
    responses(
        (status = 201, response = inline(KeyCreated)),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 413, response = TooLarge), (status = 422, response = Invalid),
        (status = 429, response = TooManyRequests),
    )
)]
async fn create_key(State(s): State<Services>, p: Principal, Body(input): Body<NewApiKey>) -> Result<Response> {
    let creator = match &p {
        Principal::User(u, _) => Creator::User(u),
        // A key may mint keys only with api_keys write on every environment; the new key stays
        // within its grants, addresses and expiry, and ends with it.
        Principal::Key(k, _) => {
            p.require_global(&s, Resource::ApiKeys, Access::Write).await?;
            Creator::Key(k)
        }
    };
    let (key, value) = api_keys::create(&s.db, &p.actor(), creator, input).await?;
    let view = key.view(&environments::list(&s.db).await?);
    let mut body = serde_json::to_value(&view).map_err(|e| Error::Internal(e.to_string()))?;
    body["key"] = json!(value.expose_secret());
    Ok((StatusCode::CREATED, [(axum::http::header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}

#[utoipa::path(
    delete, path = "/api-keys/{id}", operation_id = "revokeApiKey",
    summary = "Revoke an API key: it stops working at once",
    params(IdPath),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 429, response = TooManyRequests),
    )
)]
async fn revoke_key(State(s): State<Services>, p: Principal, Path(id): Path<i64>) -> Result<StatusCode> {
    let key = api_keys::get(&s.db, id).await?;
    match &p {
        Principal::User(u, _) => {
            if !api_keys::user_may_revoke(u, &key, &environments::list(&s.db).await?) {
                return Err(Error::Forbidden("you may revoke keys you created, or keys whose environments you manage API keys in".into()));
            }
        }
        Principal::Key(..) => p.require_global(&s, Resource::ApiKeys, Access::Write).await?,
    }
    api_keys::revoke(&s.db, &p.actor(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct AuditParams {
    environment: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    from: Option<String>,
    to: Option<String>,
    #[serde(flatten)]
    feed: FeedParams,
}

params_doc!(AuditParams, || {
    let mut params = vec![
        query(
            "environment",
            json!({"type": "string"}),
            "Events of this environment (needs audit read there); without it, all events (needs audit read on every environment)",
        ),
        query(
            "actor",
            json!({"type": "string"}),
            "Case-insensitive substring of the actor label (a person's email, `API key NAME (cvk_…)`, `operator (…)`, `connvault (…)`)",
        ),
        query("action", json!({"type": "string"}), "Exact action name, e.g. `connection.create`"),
        query("from", json!({"type": "string", "format": "date-time"}), "Events at or after this instant (RFC 3339)"),
        query("to", json!({"type": "string", "format": "date-time"}), "Events before this instant (RFC 3339)"),
    ];
    params.extend(<FeedParams as utoipa::IntoParams>::into_params(|| None));
    params
});

#[utoipa::path(
    get, path = "/audit", operation_id = "listAudit",
    summary = "Audit events, newest first (default), or a change feed",
    params(AuditParams),
    responses(
        (status = 200, description = "Newest first; in id order with since_id; in (updated_at, id) order with updated_since", body = inline(Page<audit::AuditEvent>)),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 422, response = Invalid), (status = 429, response = TooManyRequests),
    )
)]
async fn list_audit(State(s): State<Services>, p: Principal, Query(q): Query<AuditParams>) -> Result<Json<Page<audit::AuditEvent>>> {
    let mut errors = Vec::new();
    let (feed, limit) = q.feed.read(&mut errors);
    let query = audit_query(&s, &p, q.environment, q.actor, q.action, (q.from, q.to), errors).await?;
    Ok(Json(audit::search(&s.db, &AuditQuery { feed, limit, ..query }).await?))
}

/// The audit query the filters ask for, once the caller may read it: every bad parameter (these
/// and `errors` found before) at once as 422.
async fn audit_query(
    s: &Services,
    p: &Principal,
    environment: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    (from, to): (Option<String>, Option<String>),
    mut errors: Vec<crate::error::FieldError>,
) -> Result<AuditQuery> {
    let mut time = |field: &str, value: &Option<String>| value.as_deref().and_then(|v| feed::parse_time(field, v).map_err(|e| errors.push(e)).ok());
    let (from, to) = (time("from", &from), time("to", &to));
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let environment_id = match environment.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
        Some(name) => Some(env_for(s, p, name, Resource::Audit, Access::Read).await?.id),
        None => {
            p.require_global(s, Resource::Audit, Access::Read).await?;
            None
        }
    };
    Ok(AuditQuery { environment_id, actor, action, from, to, ..Default::default() })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportParams {
    environment: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

params_doc!(ExportParams, || {
    let mut params = <AuditParams as utoipa::IntoParams>::into_params(|| None);
    params.truncate(5);
    params
});

/// 200 of `export_audit`: the events as CSV.
struct AuditCsv;

impl<'r> utoipa::ToResponse<'r> for AuditCsv {
    fn response() -> (&'r str, utoipa::openapi::RefOr<utoipa::openapi::Response>) {
        let response = utoipa::openapi::ResponseBuilder::new()
            .description("CSV (RFC 4180, CRLF): id, time_utc, actor, action, what (the action in words), outcome, environment, object_kind, object, change (before → after), client_addr, detail (JSON). A field a spreadsheet would read as a formula (starting with =, +, -, @, a tab or a carriage return) starts with '")
            .content("text/csv", utoipa::openapi::Content::new(Some(super::doc::json_schema(json!({"type": "string"})))))
            .header("Content-Disposition", super::doc::header(json!({"type": "string", "pattern": "^attachment; filename=\""}), None, true))
            .build();
        ("AuditCsv", response.into())
    }
}

#[utoipa::path(
    get, path = "/audit/export", operation_id = "exportAudit",
    summary = "The audit events the filters match, newest first, as a CSV download (at most 100,000)",
    params(ExportParams),
    responses(
        (status = 200, response = inline(AuditCsv)),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 422, response = Invalid), (status = 429, response = TooManyRequests),
    )
)]
async fn export_audit(State(s): State<Services>, p: Principal, Query(q): Query<ExportParams>) -> Result<Response> {
    let name = q.environment.as_deref().map(str::trim).filter(|e| !e.is_empty()).unwrap_or("all").to_string();
    let query = audit_query(&s, &p, q.environment, q.actor, q.action, (q.from, q.to), Vec::new()).await?;
    let body = audit::csv(&audit::export(&s.db, &query).await?);
    let file = format!("audit-{}.csv", name.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_', "_"));
    Ok((
        [(axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()), (axum::http::header::CONTENT_DISPOSITION, format!("attachment; filename=\"{file}\""))],
        body,
    )
        .into_response())
}

/// A user as `list_users` answers it.
struct UserItem;

hand_schema!(UserItem, "User", || json!({
    "type": "object",
    "required": ["id", "email", "status", "owner", "last_sign_in_at", "roles", "created_at", "updated_at"],
    "properties": {
        "id": {"type": "integer", "format": "int64"},
        "email": {"type": "string"},
        "status": {"type": "string", "enum": ["active", "invited", "deactivated"], "description": "invited: no password chosen yet"},
        "owner": {"type": "boolean"},
        "last_sign_in_at": {"type": ["string", "null"]},
        "roles": {"type": "object", "additionalProperties": {"type": "string", "enum": ["administrator", "developer", "viewer"]}},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"}
    }
}));

#[utoipa::path(
    get, path = "/users", operation_id = "listUsers",
    summary = "Accounts by email (default), or a change feed. Role changes count as changes; so does signing in (last_sign_in_at)",
    params(FeedParams),
    responses(
        (status = 200, description = "Accounts for identity governance", body = inline(Page<UserItem>)),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 422, response = Invalid), (status = 429, response = TooManyRequests),
    )
)]
async fn list_users(State(s): State<Services>, p: Principal, Query(q): Query<FeedParams>) -> Result<Json<Page<serde_json::Value>>> {
    let (feed, limit) = q.parse()?;
    p.require_global(&s, Resource::Users, Access::Read).await?;
    let page = users::page(&s.db, &feed, limit).await?;
    Ok(Json(page.map(|u| {
        json!({"id": u.id, "email": u.email, "status": u.status, "owner": u.is_owner, "last_sign_in_at": u.last_sign_in_at, "roles": u.roles, "created_at": u.created_at, "updated_at": u.updated_at})
    })))
}

#[utoipa::path(
    post, path = "/environments/{env}/connections/{name}/test", operation_id = "testConnection",
    summary = "Live check of a connection with its stored credentials",
    description = "Calls the service with the stored settings and secrets (for `http`: a GET of `base_url` with the configured authentication) and says what the answer means. A check that ran and failed is still 200, with `ok: false`. Needs connections write on the environment. Every test is audited (`connection.test`); if the audit record cannot be written, the call fails and no result is returned. Outbound calls to internal addresses are refused (see the README, \"Outbound calls\"). No body is needed.",
    params(ConnectionPath),
    responses(
        (status = 200, description = "The check ran", body = crate::providers::TestResult),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 429, response = TooManyRequests), (status = 500, response = ErrorResponse),
    )
)]
/// A live check with the stored credentials: 200 `{ok, detail, advice}` whether or not it worked.
async fn test_connection(State(s): State<Services>, p: Principal, Path((env, name)): Path<(String, String)>) -> Result<Json<crate::providers::TestResult>> {
    let env = env_for(&s, &p, &env, Resource::Connections, Access::Write).await?;
    Ok(Json(checks::test(s.signing(), &p.actor(), &env.name, &name).await?))
}
