//! `/api/v1/environments/{env}/integrations`: publish, unpublish, list with binding status, bind
//! and unbind (see the API contract).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::doc::{params_doc, query, BadRequest, Conflict, EnvPath, Forbidden, IntegrationPath, Invalid, NotFound, TooLarge, TooManyRequests, Unauthorized};
use super::principal::{self, Principal};
use super::v1::{env_for, Body, Path, Query};
use crate::access::{Access, Resource};
use crate::error::Result;
use crate::feed::{FeedParams, Page};
use crate::integrations::{self, Change, Integration, Publish};
use crate::services::Services;

pub fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(read, publish, unpublish)).routes(routes!(bind, unbind)).routes(routes!(token))
}

#[utoipa::path(
    get, path = "/environments/{env}/integrations", operation_id = "listIntegrations",
    summary = "Integrations by name (default), or a change feed, with binding status",
    params(EnvPath, FeedParams),
    responses(
        (status = 200, description = "A page of integrations", body = inline(Page<Integration>)),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 422, response = Invalid), (status = 429, response = TooManyRequests),
    )
)]
async fn list(State(s): State<Services>, p: Principal, Path(env): Path<String>, Query(q): Query<FeedParams>) -> Result<Json<Page<Integration>>> {
    let (feed, limit) = q.parse()?;
    let env = env_for(&s, &p, &env, Resource::Integrations, Access::Read).await?;
    Ok(Json(integrations::list(&s.db, &env.name, &feed, limit).await?))
}

#[utoipa::path(
    get, path = "/environments/{env}/integrations/{name}", operation_id = "getIntegration",
    summary = "One integration, with its binding status",
    params(IntegrationPath),
    responses(
        (status = 200, description = "The integration", body = Integration),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 429, response = TooManyRequests),
    )
)]
async fn read(State(s): State<Services>, p: Principal, Path((env, name)): Path<(String, String)>) -> Result<Json<Integration>> {
    let env = env_for(&s, &p, &env, Resource::Integrations, Access::Read).await?;
    Ok(Json(integrations::get(&s.db, &env.name, &name).await?))
}

#[utoipa::path(
    put, path = "/environments/{env}/integrations/{name}", operation_id = "publishIntegration",
    summary = "Publish or update; the same body twice changes nothing ('change': 'unchanged')",
    params(PublishPath),
    request_body = Publish,
    responses(
        (status = 200, description = "Updated, or unchanged", body = Integration),
        (status = 201, description = "Published (created)", body = Integration),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 409, response = Conflict),
        (status = 413, response = TooLarge), (status = 422, response = Invalid), (status = 429, response = TooManyRequests),
    )
)]
/// 201 when created, 200 when changed or already so (`"change"` says which).
async fn publish(State(s): State<Services>, p: Principal, Path((env, name)): Path<(String, String)>, Body(input): Body<Publish>) -> Result<Response> {
    let env = env_for(&s, &p, &env, Resource::Integrations, Access::Write).await?;
    let (integration, change) = integrations::publish(&s.db, &p.actor(), &env.name, &name, &input).await?;
    let mut body = serde_json::to_value(&integration).map_err(|e| crate::Error::Internal(e.to_string()))?;
    body["change"] = json!(change);
    let status = if change == Change::Created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(body)).into_response())
}

#[utoipa::path(
    delete, path = "/environments/{env}/integrations/{name}", operation_id = "unpublishIntegration",
    summary = "Unpublish an integration (and drop its binding)",
    params(IntegrationPath),
    responses(
        (status = 204, description = "Unpublished"),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 429, response = TooManyRequests),
    )
)]
async fn unpublish(State(s): State<Services>, p: Principal, Path((env, name)): Path<(String, String)>) -> Result<StatusCode> {
    let env = env_for(&s, &p, &env, Resource::Integrations, Access::Write).await?;
    integrations::unpublish(&s.db, &p.actor(), &env.name, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `{env}` and the `{name}` of the integration to publish (a new name must be valid).
struct PublishPath;

params_doc!(PublishPath, || {
    use utoipa::openapi::path::ParameterIn;
    let mut params = <EnvPath as utoipa::IntoParams>::into_params(|| None);
    params.push(super::doc::param(
        "name",
        ParameterIn::Path,
        true,
        crate::connections::name_schema(),
        Some("Integration name: 1 to 100 letters, digits, _ - or ., starting with a letter or digit (else 422)"),
    ));
    params
});

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Binding {
    connection: String,
}

#[utoipa::path(
    put, path = "/environments/{env}/integrations/{name}/binding", operation_id = "bindIntegration",
    summary = "Bind to a connection of the same environment and provider (else 422)",
    params(IntegrationPath),
    request_body = inline(Binding),
    responses(
        (status = 200, description = "Bound", body = Integration),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 413, response = TooLarge),
        (status = 422, response = Invalid), (status = 429, response = TooManyRequests),
    )
)]
async fn bind(State(s): State<Services>, p: Principal, Path((env, name)): Path<(String, String)>, Body(b): Body<Binding>) -> Result<Json<Integration>> {
    let env = env_for(&s, &p, &env, Resource::Bindings, Access::Write).await?;
    Ok(Json(integrations::bind(&s.db, &p.actor(), &env.name, &name, &b.connection).await?))
}

#[utoipa::path(
    delete, path = "/environments/{env}/integrations/{name}/binding", operation_id = "unbindIntegration",
    summary = "Unbind: the integration then needs a connection",
    params(IntegrationPath),
    responses(
        (status = 200, description = "Unbound: the integration needs a connection", body = Integration),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 429, response = TooManyRequests),
    )
)]
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

params_doc!(TokenQuery, || {
    vec![query(
    "force_refresh",
    serde_json::json!({"type": "boolean", "default": false}),
    "Mint a new session even if the cached one is young enough (after the caller saw INVALID_SESSION_ID or a 401), and fetch the provider's session fields again (SAP OData: after a 403 with X-CSRF-Token: Required)"
)]
});

/// 200 of `token`: the credentials, never cached.
struct TokenIssued;

impl<'r> utoipa::ToResponse<'r> for TokenIssued {
    fn response() -> (&'r str, utoipa::openapi::RefOr<utoipa::openapi::Response>) {
        let mut body = json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["access_token", "token_type", "instance_url", "expires_at", "connection", "cached"],
            "properties": {
                "access_token": {"type": "string"},
                "token_type": {
                    "type": "string",
                    "description": "Bearer (Salesforce, Microsoft, SAP OData client credentials, http bearer), Basic (http and SAP OData basic: base64 of user:password) or Header (http header, SAP OData api_key: send access_token in header_name)"
                },
                "instance_url": {"type": ["string", "null"], "description": "Salesforce: where to send API calls; http: the base URL; SAP OData: the service root"},
                "expires_at": {"type": ["string", "null"], "format": "date-time", "description": "When to treat the token as stale; null for credentials that do not expire"},
                "connection": {"type": "string"},
                "header_name": {"type": "string"},
                "cached": {"type": "boolean"}
            }
        });
        // The fields a provider's session adds (`ProviderDef::session`), each optional.
        for (name, description) in crate::providers::REGISTRY.iter().filter_map(|p| p.session).flat_map(|x| x.fields) {
            body["properties"][*name] = json!({"type": "string", "description": description});
        }
        let body = super::doc::json_schema(body);
        let response = utoipa::openapi::ResponseBuilder::new()
            .description("Credentials (Cache-Control: no-store)")
            .content("application/json", utoipa::openapi::Content::new(Some(body)))
            .header("Cache-Control", super::doc::no_store())
            .build();
        ("Token", response.into())
    }
}

/// 424 of `token`: the bound connection could not give credentials.
struct DependencyFailed;

impl<'r> utoipa::ToResponse<'r> for DependencyFailed {
    fn response() -> (&'r str, utoipa::openapi::RefOr<utoipa::openapi::Response>) {
        let response = super::doc::error_response(
            "The bound connection failed to give credentials (Salesforce refused, or could not be reached): `message` says why; Retry-After when it is backing off",
        )
        .header("Retry-After", super::doc::header(json!({"type": "integer", "minimum": 1}), None, false))
        .build();
        ("DependencyFailed", response.into())
    }
}

#[utoipa::path(
    post, path = "/environments/{env}/integrations/{name}/token", operation_id = "integrationToken",
    summary = "Run-time credentials for the integration's bound connection (API key with tokens:read)",
    description = "Salesforce: a cached session while younger than the connection's session lifetime less a safety margin (no database write, no outbound call); otherwise, or with force_refresh=true (after the caller saw INVALID_SESSION_ID), one new JWT-bearer mint per connection at a time, across processes sharing PostgreSQL. A failing connection answers 424 with Salesforce's reason and Retry-After, backing off. Generic connections answer their stored credential. SAP OData connections add csrf_token and cookies for writes, fetched with the credential and cached per connection; force_refresh=true fetches them again (after SAP's 403 X-CSRF-Token: Required). 409 when the integration has no connection.",
    params(IntegrationPath, TokenQuery),
    responses(
        (status = 200, response = inline(TokenIssued)),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 409, response = Conflict), (status = 422, response = Invalid),
        (status = 424, response = inline(DependencyFailed)), (status = 429, response = TooManyRequests),
    )
)]
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
        Some(key) => {
            let addr = principal::client_addr(&parts, &s);
            s.broker
                .for_key(s.keys(), s.signing(), key, addr, &env, &name, crate::broker::Refresh::forced(q.force_refresh), crate::broker::Use::Token)
                .await?
                .token
        }
        None => {
            let mut parts = parts;
            let p = <Principal as axum::extract::FromRequestParts<Services>>::from_request_parts(&mut parts, &s).await?;
            let env = env_for(&s, &p, &env, Resource::Tokens, Access::Read).await?;
            s.broker.token(s.signing(), &p.actor(), &env, &name, crate::broker::Refresh::forced(q.force_refresh)).await?
        }
    };
    Ok(([(axum::http::header::CACHE_CONTROL, "no-store")], Json(token.body())).into_response())
}
