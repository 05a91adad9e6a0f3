//! The browser side of connecting by signing in (`crate::connect`): `GET /connect/{env}/{name}`
//! sends a signed-in person to the provider; `GET /oauth/callback` (and its alias
//! `/salesforce/callback`) brings them back to the connection page. Refusals are pages in plain
//! words with a way back, never JSON: a person's browser is on the other end.

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::connect::{self, CallbackQuery, Finished};
use crate::error::Error;
use crate::services::Services;
use crate::sessions;

/// A small page of its own: a title, the reason, and a link.
fn page(status: StatusCode, title: &str, message: &str, back: &str) -> Response {
    let e = crate::mail::escape_html;
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} – connvault</title></head><body><main><h1>{}</h1><p role=\"alert\">{}</p><p><a href=\"{}\">Back</a></p></main></body></html>",
        e(title),
        e(title),
        e(message),
        e(back)
    );
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/html; charset=utf-8"));
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    response
}

fn redirect(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = header::HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    response
}

/// `GET /connect/{env}/{name}`: 303 to the provider's authorize URL.
pub async fn start(State(s): State<Services>, headers: HeaderMap, Path((env, name)): Path<(String, String)>) -> Response {
    let back = connect::connection_page(&env, &name);
    let token = sessions::token_from_headers(&headers).map(str::to_string);
    let user = match &token {
        Some(t) => sessions::user_for(&s.db, t).await,
        None => Ok(None),
    };
    let user = match user {
        Ok(Some(u)) => u,
        Ok(None) => {
            return page(StatusCode::UNAUTHORIZED, "Sign in first", "Sign in to connvault, then choose Connect on the connection page again.", "/sign-in")
        }
        Err(e) => return page(e.status(), "Cannot connect", &e.public_message(), &back),
    };
    match connect::start(s.signing(), &user, token.as_deref().unwrap_or_default(), &env, &name).await {
        Ok(location) => redirect(&location),
        Err(e) => {
            if matches!(e, Error::Database(_) | Error::Internal(_)) {
                tracing::error!("connect {env}/{name}: {e}");
            }
            page(e.status(), "Cannot connect", &e.public_message(), &back)
        }
    }
}

/// `GET /oauth/callback`: finishes a sign-in. Without any OAuth parameter it says what the
/// address is for (the certificate flows need a callback URL on the app but never call it).
pub async fn callback(
    State(s): State<Services>,
    connect_info: Option<axum::Extension<ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    if q.state.is_none() && q.code.is_none() && q.error.is_none() {
        return (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "This is connvault's OAuth callback: sign-ins started with Connect on a connection page come back here. The certificate flows need \
             the address on the app but never call it.\n",
        )
            .into_response();
    }
    let addr = crate::ratelimit::client_addr(connect_info.map(|c| c.0 .0.ip()), &headers, &s.config.trusted_proxies).map(|a| a.to_string());
    match connect::finish(s.signing(), sessions::token_from_headers(&headers), &q, addr).await {
        Ok(Finished::Back { location, .. }) => redirect(&location),
        Ok(Finished::Refused { status, message }) => page(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), "Sign-in refused", &message, "/"),
        Err(e) => {
            tracing::error!("OAuth callback: {e}");
            page(e.status(), "Sign-in failed", &e.public_message(), "/")
        }
    }
}

/// The REST side: where a sign-in connection stands, and Disconnect (as the connection page
/// offers them).
pub fn router() -> utoipa_axum::router::OpenApiRouter<Services> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(sign_in_status)).routes(utoipa_axum::routes!(disconnect))
}

#[utoipa::path(
    get, path = "/environments/{env}/connections/{name}/sign-in", operation_id = "signInStatus",
    summary = "A connection that connects by signing in: not set up / needs someone to sign in / connected / failing, with the callback URL its app must name",
    params(super::doc::ConnectionPath),
    responses(
        (status = 200, description = "Status", body = connect::SignInStatus),
        (status = 401, response = super::doc::Unauthorized), (status = 403, response = super::doc::Forbidden), (status = 404, response = super::doc::NotFound),
        (status = 409, response = super::doc::Conflict), (status = 429, response = super::doc::TooManyRequests),
    )
)]
async fn sign_in_status(
    State(s): State<Services>,
    p: super::principal::Principal,
    super::v1::Path((env, name)): super::v1::Path<(String, String)>,
) -> crate::error::Result<axum::Json<connect::SignInStatus>> {
    let env = super::v1::env_for(&s, &p, &env, crate::access::Resource::Connections, crate::access::Access::Read).await?;
    let c = crate::connections::get(&s.db, &env.name, &name).await?;
    Ok(axum::Json(connect::status(&s.db, &s.config, &c).await?))
}

#[utoipa::path(
    post, path = "/environments/{env}/connections/{name}/disconnect", operation_id = "disconnectConnection",
    summary = "Revoke the refresh token at the provider (RFC 7009, where it has a revocation URL) and forget the tokens",
    description = "Needs connections write. The answer says whether the provider confirmed the revocation; the tokens are forgotten either way, and the connection then needs someone to sign in. Audited (`connection.disconnect`). No body is needed.",
    params(super::doc::ConnectionPath),
    responses(
        (status = 200, description = "Disconnected", body = crate::providers::TestResult),
        (status = 401, response = super::doc::Unauthorized), (status = 403, response = super::doc::Forbidden), (status = 404, response = super::doc::NotFound),
        (status = 409, response = super::doc::Conflict), (status = 429, response = super::doc::TooManyRequests),
    )
)]
async fn disconnect(
    State(s): State<Services>,
    p: super::principal::Principal,
    super::v1::Path((env, name)): super::v1::Path<(String, String)>,
) -> crate::error::Result<axum::Json<crate::providers::TestResult>> {
    let env = super::v1::env_for(&s, &p, &env, crate::access::Resource::Connections, crate::access::Access::Write).await?;
    Ok(axum::Json(connect::disconnect(s.signing(), &p.actor(), &env.name, &name).await?))
}
