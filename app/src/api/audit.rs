//! The audit trail, for the audit page: filters by environment, actor, action and day, newest
//! first, a page at a time.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
use super::ssr::*;
use super::Fallible;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditItem {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    /// The action in words ("Integration bound to a connection").
    pub label: String,
    /// What changed: (what, before, after).
    pub changes: Vec<(String, String, String)>,
    /// The object's page, while it exists.
    pub path: Option<String>,
    pub outcome: String,
    pub environment: Option<String>,
    pub object: Option<String>,
    pub client_addr: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    pub items: Vec<AuditItem>,
    /// Pass as `cursor` to see older events.
    pub older: Option<String>,
    /// Every action recorded so far (for the filter): its name and its words.
    pub actions: Vec<(String, String)>,
    /// The environment shown (a person who is not an owner is shown their first one when
    /// they choose none).
    pub environment: String,
    /// The same events as a CSV download (`GET /api/v1/audit/export`).
    pub csv: String,
}

/// A day (`YYYY-MM-DD`, UTC) or a full RFC 3339 time; `end` makes a day mean its last instant.
#[cfg(feature = "ssr")]
fn day_or_time(field: &str, text: &str, end: bool) -> Result<Option<chrono::DateTime<chrono::Utc>>, server::error::FieldError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let full = if text.len() == 10 { format!("{text}T{}Z", if end { "23:59:59.999999" } else { "00:00:00" }) } else { text.to_string() };
    server::feed::parse_time(field, &full)
        .map(Some)
        .map_err(|_| server::error::FieldError::new(field, format!("{field} must be a day such as 2026-11-24 (UTC); got {text:?}")))
}

/// Audit events, newest first: of one environment (any role there may read them), or of all
/// environments and sign-ins (owners only). `from` / `to` are days (UTC), both included.
#[server(prefix = "/rpc", endpoint = "list_audit")]
pub async fn list_audit(
    #[server(default)] environment: String,
    #[server(default)] actor: String,
    #[server(default)] action: String,
    #[server(default)] from: String,
    #[server(default)] to: String,
    #[server(default)] cursor: String,
) -> Fallible<AuditPage> {
    use server::access::{Access, Resource};
    let (s, user) = require_user().await?;
    let mut environment = environment.trim().to_string();
    if environment.is_empty() && !user.is_owner {
        // All environments are for owners: anyone else starts on the first one they may read.
        let envs = server::environments::list(&s.db).await.map_err(fail)?;
        let first = envs.into_iter().find(|e| server::access::user_allows(&user, &e.name, e.allow_dev_api_keys, Resource::Audit, Access::Read));
        environment = first.map(|e| e.name).ok_or_else(|| fail(server::Error::Forbidden("you have no role in any environment, so there is no audit trail to show".into())))?;
    }
    let environment_id = if environment.is_empty() {
        None
    } else {
        let env = require_in(&s, &user, &environment, Resource::Audit, Access::Read).await?;
        environment = env.name.clone();
        Some(env.id)
    };
    let mut errors = Vec::new();
    let from = day_or_time("from", &from, false).unwrap_or_else(|e| {
        errors.push(e);
        None
    });
    let to = day_or_time("to", &to, true).unwrap_or_else(|e| {
        errors.push(e);
        None
    });
    if !errors.is_empty() {
        return Err(fail(server::Error::Validation(errors)));
    }
    let query = server::audit::AuditQuery {
        environment_id,
        actor: Some(actor.trim().to_string()).filter(|a| !a.is_empty()),
        action: Some(action.trim().to_string()).filter(|a| !a.is_empty()),
        from,
        to,
        feed: server::feed::Feed::Default { cursor: Some(cursor).filter(|c| !c.is_empty()) },
        limit: Some(50),
    };
    let page = server::audit::search(&s.db, &query).await.map_err(fail)?;
    // The same filters for the REST export (its `to` is exclusive; the page's last day is included).
    let times = [("from", query.from), ("to", query.to.map(|t| t + chrono::Duration::microseconds(1)))].map(|(k, t)| (k, t.map(server::db::format_time).unwrap_or_default()));
    let texts = [("environment", environment.clone()), ("actor", query.actor.clone().unwrap_or_default()), ("action", query.action.clone().unwrap_or_default())];
    let csv: Vec<String> = texts.into_iter().chain(times).filter(|(_, v)| !v.is_empty()).map(|(k, v)| format!("{k}={}", super::urlencode(&v))).collect();
    let items = page
        .items
        .into_iter()
        .map(|e| AuditItem {
            label: server::audit::action_label(&e.action),
            changes: server::audit::changes(&e).into_iter().map(|c| (c.what, c.before, c.after)).collect(),
            path: server::audit::object_path(&e),
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
    let actions = server::audit::actions(&s.db).await.map_err(fail)?.into_iter().map(|a| (server::audit::action_label(&a), a)).map(|(l, a)| (a, l)).collect();
    Ok(AuditPage { items, older: page.next_cursor, actions, environment, csv: format!("/api/v1/audit/export?{}", csv.join("&")) })
}
