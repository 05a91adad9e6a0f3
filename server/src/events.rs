//! Which changes other systems hear of, and the queuing of them. Every audited change passes
//! through [`fan_out`] in its own transaction (`audit::record_all` calls it): when the action
//! is one of the [`EVENT_TYPES`] and the environment has enabled webhook subscriptions for it,
//! one delivery per subscription is stored and its job enqueued, in that same transaction, so
//! an event is delivered exactly when its change committed. Payloads are built from the audit
//! event, whose details never carry a secret value.
//!
//! Sending, signing and the subscriptions themselves are `crate::webhooks`'.

use std::collections::HashMap;

use serde_json::{json, Value};
use sqlx::Row;

use crate::db::{now, Tx};
use crate::error::Result;

/// The job that sends one webhook delivery (payload `{"delivery_id": N}`).
pub const DELIVERY_JOB: &str = "webhook.deliver";

/// Every event type a subscription may ask for.
pub const EVENT_TYPES: &[&str] = &[
    "connection.created",
    "connection.updated",
    "connection.deleted",
    "connection.failing",
    "connection.recovered",
    "certificate.expiring",
    "certificate.rotated",
    "secret.expiring",
    "admin_request.sent",
    "admin_request.answered",
    "integration.published",
    "integration.unpublished",
    "binding.changed",
    "promotion.applied",
    "token.mint_failed",
    "webhook.test",
];

/// The event type of an audit action with its outcome, if other systems hear of it.
pub fn event_type(action: &str, outcome: &str) -> Option<&'static str> {
    let ok = outcome == "success";
    Some(match action {
        "connection.create" if ok => "connection.created",
        "connection.update" | "connection.secret_replace" | "connection.details" if ok => "connection.updated",
        "connection.delete" if ok => "connection.deleted",
        "connection.failing" => "connection.failing",
        "connection.recovered" => "connection.recovered",
        "certificate.expiring" => "certificate.expiring",
        "certificate.activate" if ok => "certificate.rotated",
        "secret.expiring" => "secret.expiring",
        "admin_request.send" | "credential_request.send" if ok => "admin_request.sent",
        "admin_request.answer" | "credential_request.answer" if ok => "admin_request.answered",
        "integration.publish" if ok => "integration.published",
        "integration.unpublish" if ok => "integration.unpublished",
        "binding.set" | "binding.remove" if ok => "binding.changed",
        "promotion.import" if ok => "promotion.applied",
        "token.mint" | "token.session" if !ok => "token.mint_failed",
        "webhook.test" => "webhook.test",
        _ => return None,
    })
}

/// Whether a subscription's list of types (`["*"]` for all) takes `event_type`.
pub fn wants(types: &[String], event_type: &str) -> bool {
    types.iter().any(|t| t == "*" || t == event_type)
}

/// A new, random `webhook-id` (`msg_` and 24 hex digits): the same on every attempt of a
/// delivery, so receivers can drop repeats.
pub fn message_id() -> String {
    let mut random = [0u8; 12];
    getrandom::fill(&mut random).expect("the operating system's random source works");
    format!("msg_{}", hex::encode(random))
}

/// What happened, as the audit trail records it (`audit::record_all` passes each event).
#[derive(Debug, Clone, Copy)]
pub struct Happened<'a> {
    pub action: &'a str,
    pub outcome: &'a str,
    pub environment: Option<(i64, &'a str)>,
    pub object_kind: Option<&'a str>,
    pub object_name: Option<&'a str>,
    pub actor_kind: &'a str,
    pub actor_label: &'a str,
    pub detail: &'a Value,
}

/// The JSON body of an event (Standard Webhooks' `type`, `timestamp`, `data`).
pub fn payload(event_type: &str, at: &str, event: &Happened<'_>) -> Value {
    json!({
        "type": event_type,
        "timestamp": at,
        "data": {
            "environment": event.environment.map(|e| e.1),
            "object": event.object_kind.map(|kind| json!({"kind": kind, "name": event.object_name})),
            "actor": {"kind": event.actor_kind, "label": event.actor_label},
            "action": event.action,
            "outcome": event.outcome,
            "detail": event.detail,
        }
    })
}

/// Stores a delivery (and enqueues its job) for each enabled subscription of each event's
/// environment that wants it. Called by `audit::record_all` in the change's transaction.
pub async fn fan_out(tx: &mut Tx<'_>, events: &[Happened<'_>]) -> Result<()> {
    let mut hooks: Vec<(i64, Vec<(i64, Vec<String>)>)> = Vec::new();
    let t = now();
    // (subscription, message id, type, body) of every delivery to make.
    let mut deliveries: Vec<(i64, String, &'static str, String)> = Vec::new();
    for event in events {
        let (Some((env_id, _)), Some(kind)) = (event.environment, event_type(event.action, event.outcome)) else { continue };
        if !hooks.iter().any(|(e, _)| *e == env_id) {
            let rows = sqlx::query("SELECT id, event_types FROM webhooks WHERE environment_id = $1 AND enabled = 1").bind(env_id).fetch_all(&mut **tx).await?;
            let subs = rows
                .iter()
                .map(|r| Ok((r.try_get("id")?, serde_json::from_str(&r.try_get::<String, _>("event_types")?).unwrap_or_default())))
                .collect::<Result<Vec<_>>>()?;
            hooks.push((env_id, subs));
        }
        let subs = &hooks.iter().find(|(e, _)| *e == env_id).expect("just added").1;
        for (hook, _) in subs.iter().filter(|(_, types)| wants(types, kind)) {
            deliveries.push((*hook, message_id(), kind, payload(kind, &t, event).to_string()));
        }
    }
    if deliveries.is_empty() {
        return Ok(());
    }
    // One statement for the deliveries and one for their jobs (per chunk), matched by message id.
    const COLUMNS: [&str; 7] = ["webhook_id", "message_id", "event_type", "payload", "enqueued_at", "created_at", "updated_at"];
    for chunk in deliveries.chunks(crate::db::INSERT_BATCH / 2) {
        let sql = format!("{} RETURNING id, message_id", crate::db::multi_row_insert("webhook_deliveries", &COLUMNS, chunk.len()));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (hook, id, kind, body) in chunk {
            q = q.bind(*hook).bind(id.clone()).bind(*kind).bind(body.clone()).bind(t.clone()).bind(t.clone()).bind(t.clone());
        }
        let rows = q.fetch_all(&mut **tx).await?;
        let mut ids = HashMap::new();
        for r in &rows {
            ids.insert(r.try_get::<String, _>("message_id")?, r.try_get::<i64, _>("id")?);
        }
        let payloads: Vec<Value> = chunk.iter().map(|(_, m, _, _)| json!({ "delivery_id": ids[m] })).collect();
        crate::jobs::enqueue_many(tx, DELIVERY_JOB, &payloads).await?;
    }
    crate::jobs::wake_after_commit(DELIVERY_JOB);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mapped_type_is_offered_and_failures_only_where_named() {
        for (action, outcome) in [
            ("connection.create", "success"),
            ("connection.update", "success"),
            ("binding.remove", "success"),
            ("token.mint", "failure"),
            ("credential_request.answer", "success"),
        ] {
            let t = event_type(action, outcome).unwrap();
            assert!(EVENT_TYPES.contains(&t), "{t}");
        }
        assert_eq!(event_type("connection.create", "failure"), None);
        assert_eq!(event_type("token.mint", "success"), None);
        assert_eq!(event_type("auth.sign_in", "success"), None);
        assert!(wants(&["*".into()], "binding.changed"));
        assert!(!wants(&["connection.created".into()], "binding.changed"));
        assert_ne!(message_id(), message_id());
    }
}
