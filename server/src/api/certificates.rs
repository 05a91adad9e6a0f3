//! Connections that sign (Salesforce, SharePoint, Dataverse, Dynamics 365): the certificate
//! (issue, download, upload), the request to the admin (send again, cancel), the admin's answer
//! through the one-time link, and the status.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::doc::{
    hand_schema, operation_error, params_doc, BadRequest, Conflict, ConnectionPath, ErrorResponse, Forbidden, Invalid, NotFound, TooLarge, TooManyRequests,
    Unauthorized,
};
use super::principal::Principal;
use super::v1::{env_for, Body, Path, Query};
use crate::access::{Access, Resource};
use crate::checks;
use crate::error::Result;
use crate::providers::TestResult;
use crate::secret::SecretString;
use crate::services::Services;
use crate::signing::{self, AdminAnswer, AdminRequest, CertificateInfo, IssueRequest, Issued, LinkView, Status, Upload};

pub fn router() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(super::doc::optional_body(routes!(issue, download, upload), "issueCertificate"))
        .routes(routes!(status))
        .routes(super::doc::optional_body(routes!(resend, cancel), "resendAdminRequest"))
        .routes(routes!(link_view, answer))
}

/// 200 of `download`: the certificate file.
struct Pem;

impl<'r> utoipa::ToResponse<'r> for Pem {
    fn response() -> (&'r str, utoipa::openapi::RefOr<utoipa::openapi::Response>) {
        let response = utoipa::openapi::ResponseBuilder::new()
            .description("PEM")
            .content("application/x-pem-file", utoipa::openapi::Content::new(Some(super::doc::json_schema(serde_json::json!({"type": "string"})))))
            .header("Content-Disposition", super::doc::header(serde_json::json!({"type": "string", "pattern": "^attachment; filename=\""}), None, true))
            .build();
        ("Pem", response.into())
    }
}

// 403 of the admin's link: the link is the permission.
operation_error!(pub(super) LinkRefused, "LinkRefused", "The link is not valid (unknown, used, expired or replaced), or names another connection");

#[utoipa::path(
    post, path = "/environments/{env}/connections/{name}/certificate", operation_id = "issueCertificate",
    summary = "Issue a new key pair and self-signed certificate (a rotation if one exists)",
    description = "RSA 2048 (default) or 4096, SHA-256, random serial, two years. With an active certificate the new one is pending: the old one keeps signing until the new one has worked once. With send_request, the admin request email goes out (admin_email, or the connection's setting). Needs connections write. The private key never leaves the server.",
    params(ConnectionPath),
    request_body(content = IssueRequest, description = "Optional: an empty body takes the defaults"),
    responses(
        (status = 201, description = "Issued", body = Issued),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 409, response = Conflict),
        (status = 413, response = TooLarge), (status = 422, response = Invalid), (status = 429, response = TooManyRequests),
        (status = 502, response = ErrorResponse),
    )
)]
/// 201 with the new certificate (and the request, when `send_request`).
async fn issue(State(s): State<Services>, p: Principal, Path((env, name)): Path<(String, String)>, body: RawBody) -> Result<(StatusCode, Json<Issued>)> {
    let env = env_for(&s, &p, &env, Resource::Connections, Access::Write).await?;
    let input: IssueRequest = optional_json(body)?;
    Ok((StatusCode::CREATED, Json(signing::issue_certificate(s.signing(), &p.actor(), &env.name, &name, input).await?)))
}

#[utoipa::path(
    get, path = "/environments/{env}/connections/{name}/certificate", operation_id = "downloadCertificate",
    summary = "The certificate to register with the system (the pending one during a rotation), as NAME-ENV.crt; never the key",
    params(ConnectionPath),
    responses(
        (status = 200, response = inline(Pem)),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 409, response = Conflict), (status = 429, response = TooManyRequests),
    )
)]
/// The certificate as a `.crt` download; never the key.
async fn download(State(s): State<Services>, p: Principal, Path((env, name)): Path<(String, String)>) -> Result<Response> {
    let env = env_for(&s, &p, &env, Resource::Connections, Access::Read).await?;
    let (pem, file) = signing::certificate_pem(&s.db, &env.name, &name).await?;
    let disposition = format!("attachment; filename=\"{}\"", file.replace(['"', '\\', '\r', '\n'], "_"));
    Ok(([(header::CONTENT_TYPE, "application/x-pem-file".to_string()), (header::CONTENT_DISPOSITION, disposition)], pem).into_response())
}

#[utoipa::path(
    put, path = "/environments/{env}/connections/{name}/certificate", operation_id = "uploadCertificate",
    summary = "Upload the admin's own certificate and private key (PEM; PKCS#8 or PKCS#1)",
    description = "Refused with 422 and the reason: anything that does not parse, an encrypted key, a non-RSA or < 2048-bit key, an expired certificate, a key that does not belong to the certificate.",
    params(ConnectionPath),
    request_body = Upload,
    responses(
        (status = 200, description = "Stored", body = CertificateInfo),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 409, response = Conflict),
        (status = 413, response = TooLarge), (status = 422, response = Invalid), (status = 429, response = TooManyRequests),
    )
)]
async fn upload(State(s): State<Services>, p: Principal, Path((env, name)): Path<(String, String)>, Body(u): Body<Upload>) -> Result<Json<CertificateInfo>> {
    let env = env_for(&s, &p, &env, Resource::Connections, Access::Write).await?;
    Ok(Json(signing::upload_certificate(s.signing(), &p.actor(), &env.name, &name, &u).await?))
}

#[utoipa::path(
    get, path = "/environments/{env}/connections/{name}/status", operation_id = "signingStatus",
    summary = "A connection that signs: no certificate / waiting for admin / answer received / connected / failing, with the certificate's expiry and thumbprints",
    params(ConnectionPath),
    responses(
        (status = 200, description = "Status", body = Status),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 409, response = Conflict), (status = 429, response = TooManyRequests),
    )
)]
async fn status(State(s): State<Services>, p: Principal, Path((env, name)): Path<(String, String)>) -> Result<Json<Status>> {
    let env = env_for(&s, &p, &env, Resource::Connections, Access::Read).await?;
    Ok(Json(signing::status_of(&s.db, &env.name, &name).await?))
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Resend {
    #[serde(default)]
    pub(super) admin_email: Option<String>,
}

hand_schema!(Resend, "Resend", || serde_json::json!({
    "type": "object",
    "additionalProperties": false,
    "properties": {"admin_email": signing::admin_email_input()}
}));

#[utoipa::path(
    post, path = "/environments/{env}/connections/{name}/admin-request", operation_id = "resendAdminRequest",
    summary = "Send the admin request again (a new one-time link; the old one stops working)",
    params(ConnectionPath),
    request_body(content = Resend, description = "Optional: an empty body sends to the connection's admin_email"),
    responses(
        (status = 201, description = "Sent", body = AdminRequest),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 409, response = Conflict),
        (status = 413, response = TooLarge), (status = 422, response = Invalid), (status = 429, response = TooManyRequests),
        (status = 502, response = ErrorResponse),
    )
)]
/// Sends the request again (a new link; the old one stops working).
async fn resend(State(s): State<Services>, p: Principal, Path((env, name)): Path<(String, String)>, body: RawBody) -> Result<(StatusCode, Json<AdminRequest>)> {
    let env = env_for(&s, &p, &env, Resource::Connections, Access::Write).await?;
    let to = optional_json::<Resend>(body)?.admin_email;
    Ok((StatusCode::CREATED, Json(signing::request_admin_help(s.signing(), &p.actor(), &env.name, &name, to.as_deref()).await?)))
}

#[utoipa::path(
    delete, path = "/environments/{env}/connections/{name}/admin-request", operation_id = "cancelAdminRequest",
    summary = "Cancel the open request: its link stops working",
    params(ConnectionPath),
    responses(
        (status = 204, description = "Cancelled"),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 409, response = Conflict), (status = 429, response = TooManyRequests),
    )
)]
async fn cancel(State(s): State<Services>, p: Principal, Path((env, name)): Path<(String, String)>) -> Result<StatusCode> {
    let env = env_for(&s, &p, &env, Resource::Connections, Access::Write).await?;
    signing::cancel_request(s.signing(), &p.actor(), &env.name, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub(super) struct LinkQuery {
    pub(super) token: SecretString,
}

params_doc!(LinkQuery, || vec![super::doc::param(
    "token",
    utoipa::openapi::path::ParameterIn::Query,
    true,
    serde_json::json!({"type": "string"}),
    Some("The token of the link in the request email")
)]);

#[utoipa::path(
    get, path = "/environments/{env}/connections/{name}/admin-response", operation_id = "adminLinkView",
    summary = "For the system's admin, without an account: what the one-time link is about (the link is checked, not used)",
    security(),
    params(ConnectionPath, LinkQuery),
    responses(
        (status = 200, description = "The request", body = LinkView),
        (status = 403, response = inline(LinkRefused)), (status = 422, response = Invalid),
    )
)]
/// For the admin, without an account: the link itself is the permission.
async fn link_view(State(s): State<Services>, Path((env, name)): Path<(String, String)>, Query(q): Query<LinkQuery>) -> Result<Json<LinkView>> {
    Ok(Json(signing::link_view(&s.db, &env, &name, q.token.expose_secret()).await?))
}

#[utoipa::path(
    post, path = "/environments/{env}/connections/{name}/admin-response", operation_id = "answerAdminRequest",
    summary = "The admin's answer: Salesforce consumer_key, Entra tenant and client_id (and optionally their own certificate and key); single use, 7 days, this connection only",
    description = "Everything is checked before the link is used (a typo does not burn it). Then the connection is tested at once and the result returned.",
    security(),
    params(ConnectionPath),
    request_body = AdminAnswer,
    responses(
        (status = 200, description = "Stored and tested", body = TestResult),
        (status = 400, response = BadRequest), (status = 403, response = inline(LinkRefused)), (status = 413, response = TooLarge),
        (status = 422, response = Invalid),
    )
)]
/// The admin's answer: what the provider's admin created (and possibly their own certificate
/// and key). Answers
/// with the connection test that follows at once.
async fn answer(
    State(s): State<Services>,
    connect: Option<axum::Extension<ConnectInfo<std::net::SocketAddr>>>,
    headers: axum::http::HeaderMap,
    Path((env, name)): Path<(String, String)>,
    Body(a): Body<AdminAnswer>,
) -> Result<Json<TestResult>> {
    let addr = crate::ratelimit::client_addr(connect.map(|c| c.0 .0.ip()), &headers, &s.config.trusted_proxies);
    Ok(Json(checks::answer(s.signing(), &env, &name, &a, addr).await?))
}

/// A body as sent, or why it could not be read.
pub(super) type RawBody = std::result::Result<Bytes, BytesRejection>;

/// A JSON body that may be left out (an empty body means the defaults).
pub(super) fn optional_json<T: serde::de::DeserializeOwned + Default>(body: RawBody) -> Result<T> {
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
