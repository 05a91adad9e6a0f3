//! Salesforce connections: the certificate (issue, download, upload), the request to the admin
//! (send again, cancel), the admin's answer through the one-time link, and the status.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::principal::Principal;
use super::v1::{env_for, Body, Path, Query};
use crate::access::{Access, Resource};
use crate::error::Result;
use crate::providers::TestResult;
use crate::salesforce::{self, AdminAnswer, AdminRequest, CertificateInfo, IssueRequest, Issued, LinkView, Status, Upload};
use crate::secret::SecretString;
use crate::startup::Services;

pub fn router() -> Router<Services> {
    Router::new()
        .route("/environments/{env}/connections/{name}/certificate", post(issue).get(download).put(upload))
        .route("/environments/{env}/connections/{name}/status", get(status))
        .route("/environments/{env}/connections/{name}/admin-request", post(resend).delete(cancel))
        .route("/environments/{env}/connections/{name}/admin-response", get(link_view).post(answer))
}

/// 201 with the new certificate (and the request, when `send_request`).
async fn issue(State(s): State<Services>, p: Principal, Path((env, name)): Path<(String, String)>, body: RawBody) -> Result<(StatusCode, Json<Issued>)> {
    let env = env_for(&s, &p, &env, Resource::Connections, Access::Write).await?;
    let input: IssueRequest = optional_json(body)?;
    Ok((StatusCode::CREATED, Json(salesforce::issue_certificate(&s, &p.actor(), &env.name, &name, input).await?)))
}

/// The certificate as a `.crt` download; never the key.
async fn download(State(s): State<Services>, p: Principal, Path((env, name)): Path<(String, String)>) -> Result<Response> {
    let env = env_for(&s, &p, &env, Resource::Connections, Access::Read).await?;
    let (pem, file) = salesforce::certificate_pem(&s.db, &env.name, &name).await?;
    let disposition = format!("attachment; filename=\"{}\"", file.replace(['"', '\\', '\r', '\n'], "_"));
    Ok(([(header::CONTENT_TYPE, "application/x-pem-file".to_string()), (header::CONTENT_DISPOSITION, disposition)], pem).into_response())
}

async fn upload(State(s): State<Services>, p: Principal, Path((env, name)): Path<(String, String)>, Body(u): Body<Upload>) -> Result<Json<CertificateInfo>> {
    let env = env_for(&s, &p, &env, Resource::Connections, Access::Write).await?;
    Ok(Json(salesforce::upload_certificate(&s, &p.actor(), &env.name, &name, &u).await?))
}

async fn status(State(s): State<Services>, p: Principal, Path((env, name)): Path<(String, String)>) -> Result<Json<Status>> {
    let env = env_for(&s, &p, &env, Resource::Connections, Access::Read).await?;
    Ok(Json(salesforce::status_of(&s.db, &env.name, &name).await?))
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Resend {
    #[serde(default)]
    admin_email: Option<String>,
}

/// Sends the request again (a new link; the old one stops working).
async fn resend(State(s): State<Services>, p: Principal, Path((env, name)): Path<(String, String)>, body: RawBody) -> Result<(StatusCode, Json<AdminRequest>)> {
    let env = env_for(&s, &p, &env, Resource::Connections, Access::Write).await?;
    let to = optional_json::<Resend>(body)?.admin_email;
    Ok((StatusCode::CREATED, Json(salesforce::request_admin_help(&s, &p.actor(), &env.name, &name, to.as_deref()).await?)))
}

async fn cancel(State(s): State<Services>, p: Principal, Path((env, name)): Path<(String, String)>) -> Result<StatusCode> {
    let env = env_for(&s, &p, &env, Resource::Connections, Access::Write).await?;
    salesforce::cancel_request(&s, &p.actor(), &env.name, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct LinkQuery {
    token: SecretString,
}

/// For the admin, without an account: the link itself is the permission.
async fn link_view(State(s): State<Services>, Path((env, name)): Path<(String, String)>, Query(q): Query<LinkQuery>) -> Result<Json<LinkView>> {
    Ok(Json(salesforce::link_view(&s.db, &env, &name, q.token.expose_secret()).await?))
}

/// The admin's answer: the consumer key (and possibly their own certificate and key). Answers
/// with the connection test that follows at once.
async fn answer(
    State(s): State<Services>,
    connect: Option<axum::Extension<ConnectInfo<std::net::SocketAddr>>>,
    headers: axum::http::HeaderMap,
    Path((env, name)): Path<(String, String)>,
    Body(a): Body<AdminAnswer>,
) -> Result<Json<TestResult>> {
    let addr = crate::ratelimit::client_addr(connect.map(|c| c.0 .0.ip()), &headers, &s.config.trusted_proxies);
    Ok(Json(salesforce::answer_request(&s, &env, &name, &a, addr).await?))
}

/// A body as sent, or why it could not be read.
type RawBody = std::result::Result<Bytes, BytesRejection>;

/// A JSON body that may be left out (an empty body means the defaults).
fn optional_json<T: serde::de::DeserializeOwned + Default>(body: RawBody) -> Result<T> {
    let body = super::v1::read_body(body)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    super::v1::json_object(&body)?;
    // As for every JSON body: 400 when it is not JSON at all, 422 when it is not the JSON expected.
    serde_json::from_slice(&body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => crate::Error::field("body", format!("the body is not the JSON expected: {e}")),
        _ => crate::Error::BadRequest(format!("the body is not valid JSON: {e}")),
    })
}

/// The callback URL Salesforce requires on every connected app; the JWT-bearer flow never
/// calls it.
pub async fn callback() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "connvault uses the OAuth 2.0 JWT bearer flow: Salesforce requires a callback URL on the connected app, but this flow never calls it.\n",
    )
}
