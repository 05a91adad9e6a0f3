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
    /// Every action name recorded so far (for the filter).
    pub actions: Vec<String>,
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
    let environment_id = if environment.trim().is_empty() {
        if !user.is_owner {
            return Err(fail(server::Error::Forbidden("the audit trail of all environments is for owners; choose an environment".into())));
        }
        None
    } else {
        Some(require_in(&s, &user, &environment, Resource::Audit, Access::Read).await?.id)
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
    let items = page
        .items
        .into_iter()
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
    Ok(AuditPage { items, older: page.next_cursor, actions: server::audit::actions(&s.db).await.map_err(fail)? })
}
