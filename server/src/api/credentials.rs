//! Asking a system's admin for the credentials people would otherwise type: the request (send,
//! send again, cancel, its state) and, for the admin without an account, the one-time link's
//! page and answer.

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::certificates::{optional_json, LinkQuery, LinkRefused, RawBody, Resend};
use super::doc::{BadRequest, Conflict, ConnectionPath, ErrorResponse, Forbidden, Invalid, NotFound, TooLarge, TooManyRequests, Unauthorized};
use super::principal::Principal;
use super::v1::{env_for, Body, Path, Query};
use crate::access::{Access, Resource};
use crate::checks;
use crate::credential_requests::{self, CredentialAnswer, CredentialLinkView};
use crate::error::{Error, Result};
use crate::providers::TestResult;
use crate::services::Services;
use crate::signing::AdminRequest;

pub fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(super::doc::optional_body(routes!(request, latest, cancel), "requestCredentials")).routes(routes!(link_view, answer))
}

#[utoipa::path(
    post, path = "/environments/{env}/connections/{name}/credential-request", operation_id = "requestCredentials",
    summary = "Ask the system's admin for this connection's secrets: an email with the provider's steps and a one-time link (7 days, single use); an open request is replaced",
    description = "For providers with secrets people type (http, workato, dataverse and dynamics365 with a client secret, …). The admin enters the secrets on the link's page; the caller never sees them. Needs connections write.",
    params(ConnectionPath),
    request_body(content = Resend, description = "Optional: an empty body sends to the connection's admin_email setting"),
    responses(
        (status = 201, description = "Sent", body = AdminRequest),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 409, response = Conflict),
        (status = 413, response = TooLarge), (status = 422, response = Invalid), (status = 429, response = TooManyRequests),
        (status = 502, response = ErrorResponse),
    )
)]
async fn request(
    State(s): State<Services>,
    p: Principal,
    Path((env, name)): Path<(String, String)>,
    body: RawBody,
) -> Result<(StatusCode, Json<AdminRequest>)> {
    let env = env_for(&s, &p, &env, Resource::Connections, Access::Write).await?;
    let to = optional_json::<Resend>(body)?.admin_email;
    Ok((StatusCode::CREATED, Json(credential_requests::request(s.signing(), &p.actor(), &env.name, &name, to.as_deref()).await?)))
}

#[utoipa::path(
    get, path = "/environments/{env}/connections/{name}/credential-request", operation_id = "credentialRequest",
    summary = "The latest credential request of this connection: to whom, by whom, open / answered / cancelled / replaced",
    params(ConnectionPath),
    responses(
        (status = 200, description = "The latest request", body = AdminRequest),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 409, response = Conflict), (status = 429, response = TooManyRequests),
    )
)]
async fn latest(State(s): State<Services>, p: Principal, Path((env, name)): Path<(String, String)>) -> Result<Json<AdminRequest>> {
    let env = env_for(&s, &p, &env, Resource::Connections, Access::Read).await?;
    let found = credential_requests::latest(&s.db, &env.name, &name).await?;
    found.map(Json).ok_or_else(|| Error::NotFound(format!("{name} has no credential request yet")))
}

#[utoipa::path(
    delete, path = "/environments/{env}/connections/{name}/credential-request", operation_id = "cancelCredentialRequest",
    summary = "Cancel the open credential request: its link stops working",
    params(ConnectionPath),
    responses(
        (status = 204, description = "Cancelled"),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 409, response = Conflict), (status = 429, response = TooManyRequests),
    )
)]
async fn cancel(State(s): State<Services>, p: Principal, Path((env, name)): Path<(String, String)>) -> Result<StatusCode> {
    let env = env_for(&s, &p, &env, Resource::Connections, Access::Write).await?;
    credential_requests::cancel(&s.db, &p.actor(), &env.name, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get, path = "/environments/{env}/connections/{name}/credential-response", operation_id = "credentialLinkView",
    summary = "For the system's admin, without an account: what the credential request asks for (the link is checked, not used)",
    security(),
    params(ConnectionPath, LinkQuery),
    responses(
        (status = 200, description = "The request", body = CredentialLinkView),
        (status = 403, response = inline(LinkRefused)), (status = 422, response = Invalid),
    )
)]
async fn link_view(State(s): State<Services>, Path((env, name)): Path<(String, String)>, Query(q): Query<LinkQuery>) -> Result<Json<CredentialLinkView>> {
    Ok(Json(credential_requests::link_view(&s.db, &env, &name, q.token.expose_secret()).await?))
}

#[utoipa::path(
    post, path = "/environments/{env}/connections/{name}/credential-response", operation_id = "answerCredentialRequest",
    summary = "The admin's credentials: every secret the page lists (and the settings it lists as theirs); single use, 7 days, this connection only",
    description = "Everything is checked before the link is used (a typo does not burn it). Then the secrets are sealed, the connection tested at once and the result returned.",
    security(),
    params(ConnectionPath),
    request_body = CredentialAnswer,
    responses(
        (status = 200, description = "Stored and tested", body = TestResult),
        (status = 400, response = BadRequest), (status = 403, response = inline(LinkRefused)), (status = 413, response = TooLarge),
        (status = 422, response = Invalid),
    )
)]
async fn answer(
    State(s): State<Services>,
    connect: Option<axum::Extension<ConnectInfo<std::net::SocketAddr>>>,
    headers: axum::http::HeaderMap,
    Path((env, name)): Path<(String, String)>,
    Body(a): Body<CredentialAnswer>,
) -> Result<Json<TestResult>> {
    let addr = crate::ratelimit::client_addr(connect.map(|c| c.0 .0.ip()), &headers, &s.config.trusted_proxies);
    Ok(Json(checks::answer_credentials(s.signing(), &env, &name, &a, addr).await?))
}
