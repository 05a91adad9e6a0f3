//! Server functions and the data they return. They live under `/rpc/…`, apart from the REST
//! API under `/api/v1`.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentItem {
    pub name: String,
    pub position: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretState {
    pub field: String,
    pub set_at: String,
    pub set_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionItem {
    pub name: String,
    pub provider: String,
    /// The setting that identifies the target system (e.g. the base URL).
    pub target: String,
    pub secrets: Vec<SecretState>,
    pub updated_at: String,
    pub updated_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionList {
    pub environment: String,
    pub items: Vec<ConnectionItem>,
    pub more: bool,
}

/// The signed-in person, as the pages need to know them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    pub email: String,
    pub owner: bool,
}

/// The message every page shows (and redirects on) when nobody is signed in.
pub const SIGN_IN_REQUIRED: &str = "sign in required";

#[cfg(feature = "ssr")]
mod ssr {
    use leptos::prelude::*;

    pub fn services() -> Result<server::Services, ServerFnError> {
        use_context::<server::Services>().ok_or_else(|| ServerFnError::new("server state is missing"))
    }

    /// The error for the browser, with the HTTP status the REST API would give (401, 403, 404,
    /// 409, 422, 429 with Retry-After, 500), so logs and proxies see what happened.
    pub fn fail(e: server::Error) -> ServerFnError {
        // Only for calls over HTTP: during server-side rendering the response is the page's.
        let over_http = use_context::<axum::http::request::Parts>().is_some_and(|p| p.uri.path().starts_with("/rpc/"));
        if let Some(r) = use_context::<leptos_axum::ResponseOptions>().filter(|_| over_http) {
            r.set_status(e.status());
            if let server::Error::TooManyRequests { retry_after_secs } = &e {
                r.insert_header(axum::http::header::RETRY_AFTER, (*retry_after_secs).into());
            }
        }
        if e.status().is_server_error() {
            tracing::error!(error = %e, "server function failed");
        }
        ServerFnError::new(e.public_message())
    }

    pub async fn client_addr() -> Option<std::net::IpAddr> {
        leptos_axum::extract::<axum::extract::ConnectInfo<std::net::SocketAddr>>().await.ok().map(|c| c.0.ip())
    }

    pub async fn session_token() -> Option<String> {
        let headers: axum::http::HeaderMap = leptos_axum::extract().await.ok()?;
        server::sessions::token_from_headers(&headers).map(str::to_string)
    }

    /// The signed-in user, if any.
    pub async fn current_user() -> Result<Option<(server::Services, server::users::User)>, ServerFnError> {
        let s = services()?;
        let Some(token) = session_token().await else { return Ok(None) };
        Ok(server::sessions::user_for(&s.db, &token).await.map_err(fail)?.map(|user| (s, user)))
    }

    /// The signed-in user, or the error (401) every page turns into a redirect to /sign-in.
    pub async fn require_user() -> Result<(server::Services, server::users::User), ServerFnError> {
        current_user().await?.ok_or_else(|| fail(server::Error::Unauthorized(super::SIGN_IN_REQUIRED.into())))
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
#[cfg(feature = "ssr")]
use ssr::*;

/// Who is signed in, if anyone.
#[server(prefix = "/rpc", endpoint = "whoami")]
pub async fn whoami() -> Result<Option<Me>, ServerFnError> {
    Ok(current_user().await?.map(|(_, u)| Me { email: u.email, owner: u.is_owner }))
}

/// Signs in; on success the session cookie is set and the browser goes to `next` (or home).
#[server(prefix = "/rpc", endpoint = "sign_in")]
pub async fn sign_in(email: String, password: String) -> Result<(), ServerFnError> {
    let s = services()?;
    let password = server::secret::SecretString::new(password);
    let (_, token) = server::sessions::sign_in(&s, &email, &password, client_addr().await).await.map_err(fail)?;
    set_cookie(server::sessions::cookie(&token, secure(&s)));
    leptos_axum::redirect("/");
    Ok(())
}

#[server(prefix = "/rpc", endpoint = "sign_out")]
pub async fn sign_out() -> Result<(), ServerFnError> {
    let s = services()?;
    if let Some(token) = session_token().await {
        server::sessions::sign_out(&s.db, &token).await.map_err(fail)?;
    }
    set_cookie(server::sessions::clear_cookie(secure(&s)));
    leptos_axum::redirect("/sign-in");
    Ok(())
}

/// Changes the signed-in user's password; their other sessions end.
#[server(prefix = "/rpc", endpoint = "change_password")]
pub async fn change_password(current: String, new: String, confirm: String) -> Result<(), ServerFnError> {
    let (s, user) = require_user().await?;
    if new != confirm {
        return Err(fail(server::Error::field("confirm", "the two new passwords differ")));
    }
    let token = session_token().await;
    let (current, new) = (server::secret::SecretString::new(current), server::secret::SecretString::new(new));
    server::users::change_password(&s.db, &user, &current, &new, token.as_deref()).await.map_err(fail)
}

/// First-run setup through the one-time link: creates the owner account and signs it in.
#[server(prefix = "/rpc", endpoint = "complete_setup")]
pub async fn complete_setup(token: String, email: String, password: String, confirm: String) -> Result<(), ServerFnError> {
    let s = services()?;
    if password != confirm {
        return Err(ServerFnError::new("the two passwords differ; type the same password twice"));
    }
    let password = server::secret::SecretString::new(password);
    let (_, session) = server::sessions::complete_setup(&s, &token, &email, &password, client_addr().await).await.map_err(fail)?;
    set_cookie(server::sessions::cookie(&session, secure(&s)));
    leptos_axum::redirect("/");
    Ok(())
}

/// The environments the signed-in user has a role in (owners: all), in promotion order.
#[server(prefix = "/rpc", endpoint = "list_environments")]
pub async fn list_environments() -> Result<Vec<EnvironmentItem>, ServerFnError> {
    let (s, user) = require_user().await?;
    let envs = server::environments::list(&s.db).await.map_err(fail)?;
    Ok(envs.into_iter().filter(|e| user.role_in(&e.name).is_some()).map(|e| EnvironmentItem { name: e.name, position: e.position }).collect())
}

/// One page of an environment's connections; secrets appear only as "set on DATE by WHO".
#[server(prefix = "/rpc", endpoint = "list_connections")]
pub async fn list_connections(environment: String, search: String) -> Result<ConnectionList, ServerFnError> {
    let (s, user) = require_user().await?;
    let env = server::environments::find(&s.db, &environment).await.map_err(fail)?;
    if !server::access::user_allows(&user, &env.name, env.allow_dev_api_keys, server::access::Resource::Connections, server::access::Access::Read) {
        return Err(ServerFnError::new(format!("you have no role in {}; ask an administrator of {} for access", env.name, env.name)));
    }
    let query = server::connections::ListQuery { search: Some(search), limit: Some(200), ..Default::default() };
    let page = server::connections::list(&s.db, &env.name, &query).await.map_err(fail)?;
    let environment = env.name;
    let items = page
        .items
        .into_iter()
        .map(|c| ConnectionItem {
            target: ["base_url", "login_url"].iter().find_map(|k| c.settings.get(*k).and_then(|v| v.as_str())).unwrap_or("").to_string(),
            secrets: c
                .secrets_set
                .iter()
                .map(|(field, at)| SecretState { field: field.clone(), set_at: at.clone(), set_by: c.secrets_set_by.get(field).cloned().unwrap_or_default() })
                .collect(),
            name: c.name,
            provider: c.provider,
            updated_at: c.updated_at,
            updated_by: c.updated_by,
        })
        .collect();
    Ok(ConnectionList { environment, items, more: page.next_cursor.is_some() })
}

/// The message of a server function error, without the framework's prefix.
pub fn error_text(e: &ServerFnError) -> String {
    match e {
        ServerFnError::ServerError(m) => m.clone(),
        other => other.to_string(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditItem {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub outcome: String,
    pub environment: Option<String>,
    pub object: Option<String>,
    pub client_addr: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    pub items: Vec<AuditItem>,
    /// Pass as `before` to see older events.
    pub older: Option<i64>,
}

/// Audit events, newest first: of one environment (any role there may read them), or of all
/// environments and sign-ins (owners only).
#[server(prefix = "/rpc", endpoint = "list_audit")]
pub async fn list_audit(environment: String, before: Option<i64>) -> Result<AuditPage, ServerFnError> {
    use server::access::{Access, Resource};
    let (s, user) = require_user().await?;
    let env_id = if environment.trim().is_empty() {
        if !user.is_owner {
            return Err(fail(server::Error::Forbidden("the audit trail of all environments is for owners; choose an environment".into())));
        }
        None
    } else {
        let env = server::environments::find(&s.db, &environment).await.map_err(fail)?;
        if !server::access::user_allows(&user, &env.name, env.allow_dev_api_keys, Resource::Audit, Access::Read) {
            return Err(fail(server::Error::Forbidden(format!("you have no role in {}", env.name))));
        }
        Some(env.id)
    };
    const PAGE: i64 = 50;
    let events = server::audit::recent_in(&s.db, env_id, before, PAGE + 1).await.map_err(fail)?;
    let older = (events.len() as i64 > PAGE).then(|| events[PAGE as usize - 1].id);
    let items = events
        .into_iter()
        .take(PAGE as usize)
        .map(|e| AuditItem {
            id: e.id,
            at: e.created_at,
            actor: e.actor,
            action: e.action,
            outcome: e.outcome,
            environment: e.environment,
            object: e.object_name.map(|n| format!("{} {n}", e.object_kind.unwrap_or_default())),
            client_addr: e.client_addr,
        })
        .collect();
    Ok(AuditPage { items, older })
}
