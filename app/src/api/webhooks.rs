//! Webhook subscriptions of one environment, for the Webhooks page: list, create (the secret
//! shown once), enable or disable, delete, a test event, the delivery log and "Send again".
//! Developers read; administrators change (the `webhooks` resource).

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
use super::ssr::*;
use super::Fallible;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookView {
    pub id: i64,
    pub url: String,
    pub description: String,
    pub events: Vec<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<String>,
    pub created_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookList {
    pub environment: String,
    pub can_change: bool,
    pub items: Vec<WebhookView>,
    /// Every event type a subscription may name.
    pub event_types: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedWebhook {
    pub url: String,
    pub secret: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryView {
    pub id: i64,
    pub event_type: String,
    pub state: String,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub enqueued_at: String,
}

#[cfg(feature = "ssr")]
fn view_of(w: server::webhooks::Webhook) -> WebhookView {
    WebhookView {
        id: w.id,
        url: w.url,
        description: w.description,
        events: w.events,
        enabled: w.enabled,
        disabled_reason: w.disabled_reason,
        failing_since: w.failing_since,
        created_by: w.created_by,
    }
}

#[server(prefix = "/rpc", endpoint = "list_webhooks")]
pub async fn list_webhooks(environment: String) -> Fallible<WebhookList> {
    use server::access::{user_allows, Access, Resource};
    let (s, user) = require_user().await?;
    let env = require_in(&s, &user, &environment, Resource::Webhooks, Access::Read).await?;
    let items = server::webhooks::list(&s.db, &env).await.map_err(fail)?.into_iter().map(view_of).collect();
    Ok(WebhookList {
        can_change: user_allows(&user, &env.name, env.allow_dev_api_keys, Resource::Webhooks, Access::Write),
        environment: env.name,
        items,
        event_types: server::events::EVENT_TYPES.iter().map(|t| t.to_string()).collect(),
    })
}

/// `events`: types separated by commas or spaces; empty or `*` for all.
#[server(prefix = "/rpc", endpoint = "create_webhook")]
pub async fn create_webhook(environment: String, url: String, events: String, #[server(default)] description: String) -> Fallible<CreatedWebhook> {
    use server::access::{Access, Resource};
    let (s, user) = require_user().await?;
    let env = require_in(&s, &user, &environment, Resource::Webhooks, Access::Write).await?;
    let mut types: Vec<String> = events.split([',', ' ', '\n']).map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect();
    if types.is_empty() {
        types.push("*".into());
    }
    let new = server::webhooks::NewWebhook { url, events: types, description: Some(description).filter(|d| !d.trim().is_empty()), enabled: None };
    let created = server::webhooks::create(&s.db, &s.vault, &s.outbound, &actor_of(&user).await, &env, &new).await.map_err(fail)?;
    Ok(CreatedWebhook { url: created.webhook.url, secret: created.secret })
}

#[server(prefix = "/rpc", endpoint = "set_webhook_enabled")]
pub async fn set_webhook_enabled(environment: String, id: i64, enabled: String) -> Fallible<()> {
    use server::access::{Access, Resource};
    let (s, user) = require_user().await?;
    let env = require_in(&s, &user, &environment, Resource::Webhooks, Access::Write).await?;
    let patch = server::webhooks::WebhookPatch { enabled: Some(enabled == "on"), ..Default::default() };
    server::webhooks::update(&s.db, &s.outbound, &actor_of(&user).await, &env, id, &patch).await.map_err(fail)?;
    Ok(())
}

#[server(prefix = "/rpc", endpoint = "delete_webhook")]
pub async fn delete_webhook(environment: String, id: i64) -> Fallible<()> {
    use server::access::{Access, Resource};
    let (s, user) = require_user().await?;
    let env = require_in(&s, &user, &environment, Resource::Webhooks, Access::Write).await?;
    server::webhooks::delete(&s.db, &actor_of(&user).await, &env, id).await.map_err(fail)
}

#[server(prefix = "/rpc", endpoint = "test_webhook")]
pub async fn test_webhook(environment: String, id: i64) -> Fallible<()> {
    use server::access::{Access, Resource};
    let (s, user) = require_user().await?;
    let env = require_in(&s, &user, &environment, Resource::Webhooks, Access::Write).await?;
    server::webhooks::send_test(&s.db, &actor_of(&user).await, &env, id).await.map_err(fail)?;
    Ok(())
}

#[server(prefix = "/rpc", endpoint = "webhook_log")]
pub async fn webhook_log(environment: String, id: i64) -> Fallible<Vec<DeliveryView>> {
    use server::access::{Access, Resource};
    let (s, user) = require_user().await?;
    let env = require_in(&s, &user, &environment, Resource::Webhooks, Access::Read).await?;
    let log = server::webhooks::deliveries(&s.db, &env, id, 50).await.map_err(fail)?;
    Ok(log
        .into_iter()
        .map(|d| DeliveryView {
            id: d.id,
            event_type: d.event_type,
            state: d.state,
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error,
            enqueued_at: d.enqueued_at,
        })
        .collect())
}

#[server(prefix = "/rpc", endpoint = "retry_webhook_delivery")]
pub async fn retry_webhook_delivery(environment: String, id: i64, delivery_id: i64) -> Fallible<()> {
    use server::access::{Access, Resource};
    let (s, user) = require_user().await?;
    let env = require_in(&s, &user, &environment, Resource::Webhooks, Access::Write).await?;
    server::webhooks::retry(&s.db, &actor_of(&user).await, &env, id, delivery_id).await.map_err(fail)?;
    Ok(())
}
