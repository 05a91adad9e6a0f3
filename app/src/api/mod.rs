//! Server functions and the data they return. They live under `/rpc/…`, apart from the REST
//! API under `/api/v1`. Each one authenticates and authorizes on the server, then calls the
//! `server` crate; none of them trusts what the page chose to show.

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

mod access;
mod audit;
mod auth;
mod certificates;
mod connections;
mod credentials;
mod integrations;
mod outbox;
mod people;
mod promotion;
mod webhooks;
mod sign_in;

pub use access::*;
pub use audit::*;
pub use auth::*;
pub use certificates::*;
pub use connections::*;
pub use credentials::*;
pub use integrations::*;
pub use outbox::*;
pub use people::*;
pub use promotion::*;
pub use webhooks::*;
pub use sign_in::*;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentItem {
    pub name: String,
    pub position: i64,
}

/// One field's message, next to the field it is about (`name`, `settings.base_url`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldMessage {
    pub field: String,
    pub message: String,
    /// A page the message points to (the connection that already has the name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
}

/// What a server function says when it fails: a sentence, and the fields to fix. It travels as
/// JSON, and in the URL (`__err`) when a form was posted before the page hydrated, so the
/// messages appear either way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppError {
    pub message: String,
    #[serde(default)]
    pub fields: Vec<FieldMessage>,
    /// What the form sent, secrets left out: a form posted before the page hydrated comes back
    /// with the error in the URL, and with these it comes back filled in as it was sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<(String, String)>,
}

impl AppError {
    pub fn new(message: impl Into<String>) -> Self {
        AppError { message: message.into(), fields: Vec::new(), values: Vec::new() }
    }

    /// A value the form sent (see `values`).
    pub fn value(&self, name: &str) -> Option<String> {
        self.values.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    /// The message for one field, if any.
    pub fn field(&self, name: &str) -> Option<String> {
        self.fields.iter().find(|f| f.field == name).map(|f| f.message.clone())
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        let message = match value {
            ServerFnErrorErr::Request(_) | ServerFnErrorErr::Response(_) => "connvault could not be reached; check your network and try again".to_string(),
            ServerFnErrorErr::ServerError(m) => m,
            other => other.to_string(),
        };
        AppError::new(message)
    }
}

/// The result every server function returns.
pub type Fallible<T> = Result<T, AppError>;

/// The message of a server function error, without the framework's prefix.
pub fn error_text(e: &AppError) -> String {
    e.message.clone()
}

/// The message every page shows (and redirects on) when nobody is signed in.
pub const SIGN_IN_REQUIRED: &str = "sign in required";

#[cfg(feature = "ssr")]
mod ssr {
    use super::{AppError, FieldMessage};
    use leptos::prelude::*;
    use server::access::{Access, Resource};

    pub fn services() -> Result<server::Services, AppError> {
        use_context::<server::Services>().ok_or_else(|| AppError::new("server state is missing"))
    }

    /// The error for the browser, with the HTTP status the REST API would give (401, 403, 404,
    /// 409, 422, 429 with Retry-After, 500), so logs and proxies see what happened.
    pub fn fail(e: server::Error) -> AppError {
        // Only for calls made by the page's code: during server-side rendering the response is
        // the page's, and a form posted before hydration (it accepts HTML) is answered with a
        // redirect back carrying the error, which a status here would replace.
        let over_http = use_context::<axum::http::request::Parts>().is_some_and(|p| {
            let html = p.headers.get(axum::http::header::ACCEPT).and_then(|a| a.to_str().ok()).is_some_and(|a| a.contains("text/html"));
            p.uri.path().starts_with("/rpc/") && !html
        });
        if let Some(r) = use_context::<leptos_axum::ResponseOptions>().filter(|_| over_http) {
            r.set_status(e.status());
            if let Some(secs) = e.retry_after_secs().filter(|_| e.status() == axum::http::StatusCode::TOO_MANY_REQUESTS) {
                r.insert_header(axum::http::header::RETRY_AFTER, secs.into());
            }
        }
        if e.status().is_server_error() {
            tracing::error!(error = %e, "server function failed");
        }
        let fields = e.details().into_iter().map(|d| FieldMessage { field: d.field, message: d.message, href: None }).collect();
        AppError { message: e.public_message(), fields, values: Vec::new() }
    }

    /// The client's address: the peer's, or `X-Forwarded-For`'s when the peer is a trusted
    /// proxy (CONNVAULT_TRUSTED_PROXIES).
    pub async fn client_addr() -> Option<std::net::IpAddr> {
        let peer = leptos_axum::extract::<axum::extract::ConnectInfo<std::net::SocketAddr>>().await.ok().map(|c| c.0.ip());
        let headers: axum::http::HeaderMap = leptos_axum::extract().await.unwrap_or_default();
        let trusted = services().map(|s| s.config.trusted_proxies.clone()).unwrap_or_default();
        server::ratelimit::client_addr(peer, &headers, &trusted)
    }

    pub async fn session_token() -> Option<String> {
        let headers: axum::http::HeaderMap = leptos_axum::extract().await.ok()?;
        server::sessions::token_from_headers(&headers).map(str::to_string)
    }

    /// The signed-in user, if any.
    pub async fn current_user() -> Result<Option<(server::Services, server::users::User)>, AppError> {
        let s = services()?;
        let Some(token) = session_token().await else { return Ok(None) };
        Ok(server::sessions::user_for(&s.db, &token).await.map_err(fail)?.map(|user| (s, user)))
    }

    /// The signed-in user, or the error (401) every page turns into a redirect to /sign-in.
    pub async fn require_user() -> Result<(server::Services, server::users::User), AppError> {
        current_user().await?.ok_or_else(|| fail(server::Error::Unauthorized(super::SIGN_IN_REQUIRED.into())))
    }

    /// The signed-in user as the audit trail records them, with their address.
    pub async fn actor_of(user: &server::users::User) -> server::audit::Actor {
        user.actor(client_addr().await.map(|a| a.to_string()))
    }

    /// The environment, if the user's role there allows `access` to `resource` (else 403).
    pub async fn require_in(
        s: &server::Services,
        user: &server::users::User,
        environment: &str,
        resource: Resource,
        access: Access,
    ) -> Result<server::environments::Environment, AppError> {
        let env = server::environments::find(&s.db, environment).await.map_err(fail)?;
        if !server::access::user_allows(user, &env.name, env.allow_dev_api_keys, resource, access) {
            let what = match (user.role_in(&env.name), access) {
                (None, _) => format!("you have no role in {}; ask an administrator of {} for access", env.name, env.name),
                (Some(role), Access::Read) => format!("your role in {} ({}) cannot see {}", env.name, role.as_str(), resource.as_str().replace('_', " ")),
                (Some(role), Access::Write) => format!("your role in {} ({}) cannot change {}", env.name, role.as_str(), resource.as_str().replace('_', " ")),
            };
            return Err(fail(server::Error::Forbidden(what)));
        }
        Ok(env)
    }

    /// Owners only (people and environments).
    pub fn require_owner(user: &server::users::User) -> Result<(), AppError> {
        if user.is_owner {
            Ok(())
        } else {
            Err(fail(server::Error::Forbidden("only owners manage people and environments".into())))
        }
    }

    pub fn set_cookie(value: String) {
        if let (Some(r), Ok(v)) = (use_context::<leptos_axum::ResponseOptions>(), axum::http::HeaderValue::from_str(&value)) {
            r.append_header(axum::http::header::SET_COOKIE, v);
        }
    }

    pub fn secure(s: &server::Services) -> bool {
        s.config.public_url.starts_with("https://")
    }
}
