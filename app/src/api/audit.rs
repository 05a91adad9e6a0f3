//! The audit trail, for the audit page.

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
    /// Pass as `before` to see older events.
    pub older: Option<i64>,
}

/// Audit events, newest first: of one environment (any role there may read them), or of all
/// environments and sign-ins (owners only).
#[server(prefix = "/rpc", endpoint = "list_audit")]
pub async fn list_audit(environment: String, before: Option<i64>) -> Fallible<AuditPage> {
    use server::access::{Access, Resource};
    let (s, user) = require_user().await?;
    let env_id = if environment.trim().is_empty() {
        if !user.is_owner {
            return Err(fail(server::Error::Forbidden("the audit trail of all environments is for owners; choose an environment".into())));
        }
        None
    } else {
        Some(require_in(&s, &user, &environment, Resource::Audit, Access::Read).await?.id)
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
