//! Signed webhooks, as the Standard Webhooks specification (standardwebhooks.com) says:
//! subscriptions per environment (URL, event types, description, enabled), each with a signing
//! secret `whsec_…` shown once and sealed at rest; deliveries signed with
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">` (with the old and the
//! new secret for 24 hours after a rotation), sent through the outbound guard with a 10 second
//! limit and no redirects, retried with growing pauses for more than 24 hours, every attempt
//! logged. A subscription that has failed for 3 days is disabled and its creator emailed.
//!
//! Which changes make events, and their queuing in the change's transaction, is
//! `crate::events`'; this module sends them ([`deliver`], the job's handler) and manages the
//! subscriptions.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;
use sqlx::Row;

use crate::audit::{self, Actor, Event};
use crate::db::{format_time, now, Db};
use crate::environments::{self, Environment};
use crate::error::{Error, FieldError, Result};
use crate::events::{self, DELIVERY_JOB, EVENT_TYPES};
use crate::jobs::{self, JobError};
use crate::mail::{Email, Mailer};
use crate::outbound::Outbound;
use crate::seal::{Place, Vault};
use crate::secret::SecretString;

pub const TABLE: &str = "webhooks";
/// How long one delivery attempt may take, answer included.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// The pauses between attempts: eleven attempts over about 25.7 hours.
pub const BACKOFF: [Duration; 10] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
    Duration::from_secs(1800),
    Duration::from_secs(3600),
    Duration::from_secs(7200),
    Duration::from_secs(14400),
    Duration::from_secs(28800),
    Duration::from_secs(36000),
];
/// A subscription whose deliveries have all failed for this long is disabled.
pub const DISABLE_AFTER: chrono::Duration = chrono::Duration::days(3);
/// After a rotation the previous secret signs too, for this long.
pub const ROTATION_OVERLAP: chrono::Duration = chrono::Duration::hours(24);
/// How much of a receiver's answer the log keeps.
pub const LOGGED_BODY: usize = 1024;
const MAX_DESCRIPTION: usize = 500;
const MAX_URL: usize = 2000;

/// A subscription (never its secret).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Webhook {
    pub id: i64,
    pub environment: String,
    pub url: String,
    pub description: String,
    /// Event types, or `["*"]` for all.
    pub events: Vec<String>,
    pub enabled: bool,
    /// Why connvault disabled it, if it did.
    pub disabled_reason: Option<String>,
    /// Since when every delivery fails (none succeeded since).
    pub failing_since: Option<String>,
    /// Until when the previous secret still signs, after a rotation.
    pub previous_secret_until: Option<String>,
    pub created_by: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// A subscription with its signing secret: the answer of creating one or rotating its secret,
/// the only time the secret is shown.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WithSecret {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// `whsec_` and the base64 key: verify `webhook-signature` with it.
    pub secret: String,
}

/// A new subscription.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// Where events are POSTed (https; http only to loopback when CONNVAULT_ALLOW_LOOPBACK=1).
    #[schema(schema_with = url_schema)]
    pub url: String,
    /// Event types, or `["*"]` for all.
    #[schema(schema_with = events_schema)]
    pub events: Vec<String>,
    #[serde(default)]
    #[schema(schema_with = description_schema)]
    pub description: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// A change to a subscription: only the fields given change. Enabling a disabled one clears
/// its failure state.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    #[schema(schema_with = url_schema)]
    pub url: Option<String>,
    #[schema(schema_with = events_schema)]
    pub events: Option<Vec<String>>,
    #[schema(schema_with = description_schema)]
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// What [`check_url`] accepts, as far as a schema can say: an https URL to a host name.
fn url_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use crate::providers::patterns::{any_case, CONTROL, HOST, PORT, WS};
    crate::schema::json_schema(json!({
        "type": "string",
        "maxLength": MAX_URL,
        "pattern": format!("^{}://{HOST}(?::{PORT})?(?:/[^?#{WS}{CONTROL}]*)?$", any_case("http") + "[Ss]?"),
        "description": "An https URL, e.g. https://ops.example.com/connvault-events (http only to this machine, when CONNVAULT_ALLOW_LOOPBACK=1)"
    }))
}

fn events_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    let mut types: Vec<&str> = vec!["*"];
    types.extend(EVENT_TYPES);
    crate::schema::json_schema(
        json!({"type": "array", "minItems": 1, "items": {"type": "string", "enum": types}, "description": "Event types, or [\"*\"] for all"}),
    )
}

fn description_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    crate::schema::json_schema(json!({"type": "string", "maxLength": MAX_DESCRIPTION}))
}

/// One delivery of one event to one subscription, with its attempts.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: i64,
    /// `webhook-id`: the same on every attempt.
    pub message_id: String,
    pub event_type: String,
    /// `pending` (waiting, being sent or retried), `delivered` or `failed`.
    pub state: String,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub payload: Value,
    #[schema(format = DateTime)]
    pub enqueued_at: String,
    pub delivered_at: Option<String>,
    pub log: Vec<Attempt>,
}

/// One attempt of a delivery.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Attempt {
    #[schema(format = DateTime)]
    pub started_at: String,
    pub latency_ms: i64,
    /// The receiver's HTTP status, if it answered.
    pub status: Option<i64>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// The start of the receiver's answer (at most 1 KiB).
    pub response_body: Option<String>,
}

/// Where a subscription's secret is sealed (`secret`, or `previous` during a rotation).
pub(crate) fn place(id: i64, field: &str, environment: i64) -> Place<'_> {
    Place { table: TABLE, row: id, field, environment }
}

/// A new signing secret: `whsec_` and 32 random bytes in base64.
fn new_secret() -> SecretString {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).expect("the operating system's random source works");
    SecretString::new(format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(key)))
}

/// The key bytes of a `whsec_…` secret.
fn key_of(secret: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(secret.trim_start_matches("whsec_")).unwrap_or_default()
}

/// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` with each secret, space-separated.
pub fn signature(secrets: &[&str], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|secret| {
            let mut mac = Hmac::<Sha256>::new_from_slice(&key_of(secret)).expect("HMAC takes a key of any length");
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn check_events(events: &[String], errors: &mut Vec<FieldError>) -> Vec<String> {
    if events.is_empty() {
        errors.push(FieldError::new("events", "name at least one event type, or [\"*\"] for all"));
    }
    let mut out: Vec<String> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let e = e.trim();
        if e != "*" && !EVENT_TYPES.contains(&e) {
            errors.push(FieldError::new(format!("events[{i}]"), format!("{e:?} is not an event type; use * or one of {}", EVENT_TYPES.join(", "))));
        } else if !out.iter().any(|o| o == e) {
            out.push(e.to_string());
        }
    }
    out
}

fn check_url(outbound: &Outbound, url: &str, errors: &mut Vec<FieldError>) -> String {
    let url = url.trim();
    if url.len() > MAX_URL {
        errors.push(FieldError::new("url", format!("at most {MAX_URL} characters")));
        return url.to_string();
    }
    if let Err(why) = url_shape(url) {
        errors.push(FieldError::new("url", format!("{url:?} is not a receiver URL: {why}; write e.g. https://ops.example.com/connvault-events")));
        return url.to_string();
    }
    match outbound.parse_url(url) {
        Ok(u) if u.scheme() == "https" || (u.scheme() == "http" && outbound.options().allow_loopback) => {}
        Ok(_) => errors.push(FieldError::new("url", "use an https:// URL: events are signed, not encrypted")),
        Err(e) => errors.push(FieldError::new("url", format!("{url:?} cannot receive events: {e}"))),
    }
    url.to_string()
}

/// What [`url_schema`]'s pattern says: http(s), a host name of dot-separated labels of letters
/// and digits (the last starting with a letter), an optional port, a path without query,
/// fragment, spaces or control characters.
fn url_shape(url: &str) -> std::result::Result<(), &'static str> {
    let lower = url.to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &url[8..]
    } else if lower.starts_with("http://") {
        &url[7..]
    } else {
        return Err("it must start with https://");
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    let labels: Vec<&str> = host.split('.').collect();
    let label_ok = |l: &&str| (1..=63).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_alphanumeric());
    // An IPv4 address is left to the outbound guard (loopback for tests and local demos).
    let ipv4 = host.parse::<std::net::Ipv4Addr>().is_ok();
    if !ipv4 && (!labels.iter().all(label_ok) || !labels.last().is_some_and(|l| l.as_bytes()[0].is_ascii_alphabetic())) {
        return Err("the host must be a name of letters and digits separated by dots, such as hooks.example.com");
    }
    if let Some(p) = port {
        if p.is_empty() || p.parse::<u16>().is_err() || (p.len() > 1 && p.starts_with('0')) {
            return Err("the port must be a number from 0 to 65535");
        }
    }
    if path.chars().any(|c| c == '?' || c == '#' || c.is_whitespace() || c.is_control()) {
        return Err("the path must not hold a query, a fragment, spaces or control characters");
    }
    Ok(())
}

fn check_description(d: &str, errors: &mut Vec<FieldError>) {
    if d.chars().count() > MAX_DESCRIPTION {
        errors.push(FieldError::new("description", format!("at most {MAX_DESCRIPTION} characters")));
    }
}

const COLUMNS: &str = "w.id, e.name AS environment, w.url, w.description, w.event_types, w.enabled, w.disabled_reason, w.failing_since, w.previous_until, \
                       w.created_by, w.created_at, w.updated_at";

fn webhook_of(r: &sqlx::any::AnyRow) -> Result<Webhook> {
    let types: String = r.try_get("event_types")?;
    let previous: Option<String> = r.try_get("previous_until")?;
    Ok(Webhook {
        id: r.try_get("id")?,
        environment: r.try_get("environment")?,
        url: r.try_get("url")?,
        description: r.try_get("description")?,
        events: serde_json::from_str(&types).unwrap_or_default(),
        enabled: r.try_get::<i64, _>("enabled")? != 0,
        disabled_reason: r.try_get("disabled_reason")?,
        failing_since: r.try_get("failing_since")?,
        previous_secret_until: previous.filter(|p| p.as_str() > now().as_str()),
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// The environment's subscriptions, oldest first.
pub async fn list(db: &Db, env: &Environment) -> Result<Vec<Webhook>> {
    let sql = format!("SELECT {COLUMNS} FROM webhooks w JOIN environments e ON e.id = w.environment_id WHERE w.environment_id = $1 ORDER BY w.id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(env.id).fetch_all(db.pool()).await?;
    rows.iter().map(webhook_of).collect()
}

/// One subscription of the environment.
pub async fn get(db: &Db, env: &Environment, id: i64) -> Result<Webhook> {
    let sql = format!("SELECT {COLUMNS} FROM webhooks w JOIN environments e ON e.id = w.environment_id WHERE w.environment_id = $1 AND w.id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(env.id).bind(id).fetch_optional(db.pool()).await?;
    webhook_of(&row.ok_or_else(|| Error::NotFound(format!("{} has no webhook {id}", env.name)))?)
}

/// Creates a subscription; the answer holds its secret, the only time it is shown.
pub async fn create(db: &Db, vault: &Vault, outbound: &Outbound, actor: &Actor, env: &Environment, new: &NewWebhook) -> Result<WithSecret> {
    let mut errors = Vec::new();
    let url = check_url(outbound, &new.url, &mut errors);
    let types = check_events(&new.events, &mut errors);
    let description = new.description.clone().unwrap_or_default();
    check_description(&description, &mut errors);
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let secret = new_secret();
    let t = now();
    let mut tx = db.begin().await?;
    let id: i64 = sqlx::query(
        "INSERT INTO webhooks (environment_id, url, description, event_types, enabled, sealed_secret, key_id, created_by, created_by_user, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, '', $7, $8, $9, $9) RETURNING id",
    )
    .bind(env.id)
    .bind(&url)
    .bind(&description)
    .bind(json!(types).to_string())
    .bind(new.enabled.unwrap_or(true) as i64)
    .bind(Vec::<u8>::new())
    .bind(&actor.label)
    .bind(actor.id.filter(|_| actor.kind == audit::ActorKind::User))
    .bind(&t)
    .fetch_one(&mut *tx)
    .await?
    .try_get("id")?;
    let keyring = vault.keyring();
    let key = keyring.current();
    sqlx::query("UPDATE webhooks SET sealed_secret = $1, key_id = $2 WHERE id = $3")
        .bind(crate::seal::seal_with(key, &place(id, "secret", env.id), secret.expose_secret().as_bytes()))
        .bind(key.id().to_string())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        actor,
        Event::new("webhook.create").environment(env.id, &env.name).object("webhook", &url).detail(json!({"id": id, "events": types})),
    )
    .await?;
    tx.commit().await?;
    Ok(WithSecret { webhook: get(db, env, id).await?, secret: secret.expose_secret().to_string() })
}

/// Changes a subscription. Enabling it again clears its failure state.
pub async fn update(db: &Db, outbound: &Outbound, actor: &Actor, env: &Environment, id: i64, patch: &WebhookPatch) -> Result<Webhook> {
    let current = get(db, env, id).await?;
    let mut errors = Vec::new();
    let url = patch.url.as_deref().map(|u| check_url(outbound, u, &mut errors)).unwrap_or(current.url.clone());
    let types = patch.events.as_deref().map(|e| check_events(e, &mut errors)).unwrap_or(current.events.clone());
    let description = patch.description.clone().unwrap_or(current.description.clone());
    check_description(&description, &mut errors);
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let enabled = patch.enabled.unwrap_or(current.enabled);
    let re_enabled = enabled && !current.enabled;
    let mut tx = db.begin().await?;
    sqlx::query(
        "UPDATE webhooks SET url = $1, event_types = $2, description = $3, enabled = $4, \
         disabled_reason = CASE WHEN $4 = 1 THEN NULL ELSE disabled_reason END, failing_since = CASE WHEN $5 = 1 THEN NULL ELSE failing_since END, \
         updated_at = $6 WHERE id = $7",
    )
    .bind(&url)
    .bind(json!(types).to_string())
    .bind(&description)
    .bind(enabled as i64)
    .bind(re_enabled as i64)
    .bind(now())
    .bind(id)
    .execute(&mut *tx)
    .await?;
    let changed: Vec<&str> = [
        ("url", url != current.url),
        ("events", types != current.events),
        ("description", description != current.description),
        ("enabled", enabled != current.enabled),
    ]
    .into_iter()
    .filter_map(|(f, c)| c.then_some(f))
    .collect();
    audit::record(
        &mut tx,
        actor,
        Event::new("webhook.update").environment(env.id, &env.name).object("webhook", &url).detail(json!({"id": id, "changed": changed, "enabled": enabled})),
    )
    .await?;
    tx.commit().await?;
    get(db, env, id).await
}

/// Deletes a subscription and its delivery log.
pub async fn delete(db: &Db, actor: &Actor, env: &Environment, id: i64) -> Result<()> {
    let current = get(db, env, id).await?;
    let mut tx = db.begin().await?;
    sqlx::query("DELETE FROM webhooks WHERE id = $1").bind(id).execute(&mut *tx).await?;
    audit::record(&mut tx, actor, Event::new("webhook.delete").environment(env.id, &env.name).object("webhook", &current.url).detail(json!({"id": id})))
        .await?;
    tx.commit().await?;
    Ok(())
}

/// A new secret; the previous one keeps signing beside it for [`ROTATION_OVERLAP`], so
/// receivers can switch without losing an event.
pub async fn rotate_secret(db: &Db, vault: &Vault, actor: &Actor, env: &Environment, id: i64) -> Result<WithSecret> {
    let current = get(db, env, id).await?;
    let row = sqlx::query("SELECT sealed_secret FROM webhooks WHERE id = $1").bind(id).fetch_one(db.pool()).await?;
    let old = vault.open(&place(id, "secret", env.id), &row.try_get::<Vec<u8>, _>("sealed_secret")?)?;
    let secret = new_secret();
    let keyring = vault.keyring();
    let key = keyring.current();
    let until = format_time(chrono::Utc::now() + ROTATION_OVERLAP);
    let mut tx = db.begin().await?;
    sqlx::query("UPDATE webhooks SET sealed_secret = $1, sealed_previous = $2, previous_until = $3, key_id = $4, updated_at = $5 WHERE id = $6")
        .bind(crate::seal::seal_with(key, &place(id, "secret", env.id), secret.expose_secret().as_bytes()))
        .bind(crate::seal::seal_with(key, &place(id, "previous", env.id), &old))
        .bind(&until)
        .bind(key.id().to_string())
        .bind(now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        actor,
        Event::new("webhook.rotate_secret")
            .environment(env.id, &env.name)
            .object("webhook", &current.url)
            .detail(json!({"id": id, "previous_signs_until": until})),
    )
    .await?;
    tx.commit().await?;
    Ok(WithSecret { webhook: get(db, env, id).await?, secret: secret.expose_secret().to_string() })
}

const DELIVERY_COLUMNS: &str = "id, message_id, event_type, state, attempts, last_status, last_error, payload, enqueued_at, delivered_at";

fn delivery_of(r: &sqlx::any::AnyRow, log: Vec<Attempt>) -> Result<Delivery> {
    let payload: String = r.try_get("payload")?;
    Ok(Delivery {
        id: r.try_get("id")?,
        message_id: r.try_get("message_id")?,
        event_type: r.try_get("event_type")?,
        state: r.try_get("state")?,
        attempts: r.try_get("attempts")?,
        last_status: r.try_get("last_status")?,
        last_error: r.try_get("last_error")?,
        payload: serde_json::from_str(&payload).unwrap_or(Value::String(payload)),
        enqueued_at: r.try_get("enqueued_at")?,
        delivered_at: r.try_get("delivered_at")?,
        log,
    })
}

/// The subscription's newest deliveries (at most `limit`), each with its attempts.
pub async fn deliveries(db: &Db, env: &Environment, id: i64, limit: i64) -> Result<Vec<Delivery>> {
    get(db, env, id).await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY id DESC LIMIT $2")))
        .bind(id)
        .bind(limit.clamp(1, 500))
        .fetch_all(db.pool())
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let delivery: i64 = r.try_get("id")?;
        let attempts = sqlx::query("SELECT started_at, latency_ms, status, error, response_body FROM webhook_attempts WHERE delivery_id = $1 ORDER BY id")
            .bind(delivery)
            .fetch_all(db.pool())
            .await?
            .iter()
            .map(|a| {
                Ok(Attempt {
                    started_at: a.try_get("started_at")?,
                    latency_ms: a.try_get("latency_ms")?,
                    status: a.try_get("status")?,
                    error: a.try_get("error")?,
                    response_body: a.try_get("response_body")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.push(delivery_of(r, attempts)?);
    }
    Ok(out)
}

/// "Send again": the delivery is sent once more (same `webhook-id`), with a fresh set of
/// attempts, whatever became of it.
pub async fn retry(db: &Db, actor: &Actor, env: &Environment, id: i64, delivery_id: i64) -> Result<Delivery> {
    let hook = get(db, env, id).await?;
    let mut tx = db.begin().await?;
    let done = sqlx::query("UPDATE webhook_deliveries SET state = 'pending', attempts = 0, updated_at = $1 WHERE id = $2 AND webhook_id = $3")
        .bind(now())
        .bind(delivery_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(Error::NotFound(format!("webhook {id} has no delivery {delivery_id}")));
    }
    jobs::enqueue(&mut tx, DELIVERY_JOB, &json!({ "delivery_id": delivery_id })).await?;
    audit::record(
        &mut tx,
        actor,
        Event::new("webhook.retry").environment(env.id, &env.name).object("webhook", &hook.url).detail(json!({"id": id, "delivery_id": delivery_id})),
    )
    .await?;
    tx.commit().await?;
    jobs::wake(DELIVERY_JOB);
    deliveries_one(db, delivery_id).await
}

async fn deliveries_one(db: &Db, delivery_id: i64) -> Result<Delivery> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1")))
        .bind(delivery_id)
        .fetch_one(db.pool())
        .await?;
    delivery_of(&r, Vec::new())
}

/// Sends a `webhook.test` event to this one subscription (the page's "Send test event").
pub async fn send_test(db: &Db, actor: &Actor, env: &Environment, id: i64) -> Result<Delivery> {
    let hook = get(db, env, id).await?;
    let t = now();
    let detail = json!({"webhook_id": id, "note": "a test event sent from connvault"});
    let happened = events::Happened {
        action: "webhook.test",
        outcome: "success",
        environment: Some((env.id, &env.name)),
        object_kind: Some("webhook"),
        object_name: Some(&hook.url),
        actor_kind: actor.kind.as_str(),
        actor_label: &actor.label,
        detail: &detail,
    };
    let mut tx = db.begin().await?;
    let delivery: i64 = sqlx::query(
        "INSERT INTO webhook_deliveries (webhook_id, message_id, event_type, payload, enqueued_at, created_at, updated_at) VALUES ($1, $2, 'webhook.test', $3, $4, $4, $4) RETURNING id",
    )
    .bind(id)
    .bind(events::message_id())
    .bind(events::payload("webhook.test", &t, &happened).to_string())
    .bind(&t)
    .fetch_one(&mut *tx)
    .await?
    .try_get("id")?;
    jobs::enqueue(&mut tx, DELIVERY_JOB, &json!({ "delivery_id": delivery })).await?;
    tx.commit().await?;
    jobs::wake(DELIVERY_JOB);
    deliveries_one(db, delivery).await
}

/// The handles a delivery needs.
#[derive(Clone, Copy)]
pub struct Handles<'a> {
    pub db: &'a Db,
    pub vault: &'a Vault,
    pub outbound: &'a Outbound,
    pub mailer: &'a Mailer,
    pub public_url: &'a str,
}

/// The [`DELIVERY_JOB`] handler, over a batch of jobs: signs and POSTs every pending delivery
/// they name at once, then, in one commit with the jobs' outcomes, logs each attempt and its
/// outcome. A failed one is tried again after [`BACKOFF`]; a subscription that has failed for
/// [`DISABLE_AFTER`] is disabled.
pub async fn deliver(s: Handles<'_>, batch: &mut jobs::Batch) -> Result<()> {
    let mut outcomes: HashMap<i64, std::result::Result<(), JobError>> = HashMap::new();
    let mut wanted: HashMap<i64, i64> = HashMap::new();
    for job in &batch.jobs {
        match job.payload.get("delivery_id").and_then(Value::as_i64) {
            Some(delivery) => {
                wanted.insert(delivery, job.id);
            }
            None => {
                outcomes.insert(job.id, Err(JobError::Fatal("the job's payload has no delivery_id".into())));
            }
        }
    }
    let in_list = crate::db::id_list(wanted.keys().copied());
    let rows = if wanted.is_empty() {
        Vec::new()
    } else {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT d.id, d.message_id, d.payload, d.state, d.attempts, w.id AS hook, w.url, w.enabled, w.environment_id, w.sealed_secret, \
             w.sealed_previous, w.previous_until, w.failing_since, w.created_by_user, w.description, e.name AS environment FROM webhook_deliveries d \
             JOIN webhooks w ON w.id = d.webhook_id JOIN environments e ON e.id = w.environment_id WHERE d.id IN ({in_list}) ORDER BY d.id"
        )))
        .fetch_all(s.db.pool())
        .await?
    };
    // A delivery deleted with its subscription has nothing to send.
    for (delivery, job) in &wanted {
        if !rows.iter().any(|r| r.try_get::<i64, _>("id").ok() == Some(*delivery)) {
            outcomes.insert(*job, Ok(()));
        }
    }
    let mut secrets: HashMap<i64, Vec<String>> = HashMap::new();
    let mut sends = Vec::new();
    let mut disabled = Vec::new();
    for row in &rows {
        let delivery: i64 = row.try_get("id")?;
        let job = wanted[&delivery];
        if row.try_get::<String, _>("state")? != "pending" {
            outcomes.insert(job, Ok(()));
            continue;
        }
        if row.try_get::<i64, _>("enabled")? == 0 {
            disabled.push(delivery);
            outcomes.insert(job, Ok(()));
            continue;
        }
        let hook: i64 = row.try_get("hook")?;
        let keys = match secrets.get(&hook) {
            Some(keys) => keys,
            None => match signing_secrets(s.vault, row) {
                Ok(keys) => secrets.entry(hook).or_insert(keys),
                Err(e) => {
                    outcomes.insert(job, Err(JobError::Retry(e.to_string())));
                    continue;
                }
            },
        };
        let message_id: String = row.try_get("message_id")?;
        let payload: String = row.try_get("payload")?;
        let url: String = row.try_get("url")?;
        let timestamp = chrono::Utc::now().timestamp();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let signed = signature(&refs, &message_id, timestamp, payload.as_bytes());
        sends.push(async move {
            let started_at = now();
            let started = Instant::now();
            let outcome = post(s.outbound, &url, &message_id, timestamp, &signed, payload.into_bytes()).await;
            (row, job, delivery, started_at, started.elapsed().as_millis() as i64, outcome)
        });
    }
    drop(secrets);
    let sent = futures_util::future::join_all(sends).await;

    let tx = batch.transaction().await?;
    if !disabled.is_empty() {
        let list = crate::db::id_list(disabled.iter().copied());
        sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE webhook_deliveries SET state = 'failed', last_error = $1, updated_at = $2 WHERE id IN ({list})")))
            .bind("not sent: the subscription is disabled")
            .bind(now())
            .execute(&mut **tx)
            .await?;
    }
    // The attempts in one statement, the deliveries that worked in one per status code; a
    // failure, rarer, is written row by row.
    let mut attempts_log = Vec::new();
    let mut delivered: HashMap<i64, Vec<i64>> = HashMap::new();
    let mut working_hooks: Vec<i64> = Vec::new();
    let mut recovered_hooks: Vec<i64> = Vec::new();
    let mut failures = Vec::new();
    for (row, job, delivery, started_at, latency_ms, outcome) in sent {
        let (status, error, body) = match outcome {
            Ok((status, body)) if (200..300).contains(&status) => (Some(status as i64), None, body),
            Ok((status, body)) => (Some(status as i64), Some(status_error(status)), body),
            Err(e) => (None, Some(e), None),
        };
        attempts_log.push((delivery, started_at, latency_ms, status, error.clone(), body));
        match error {
            None => {
                delivered.entry(status.unwrap_or_default()).or_default().push(delivery);
                let hook: i64 = row.try_get("hook")?;
                if !working_hooks.contains(&hook) {
                    working_hooks.push(hook);
                    // Only one marked failing when the batch read it needs the mark cleared (one
                    // marked since is cleared by its next delivery that works).
                    if row.try_get::<Option<String>, _>("failing_since")?.is_some() {
                        recovered_hooks.push(hook);
                    }
                }
                outcomes.insert(job, Ok(()));
            }
            Some(error) => failures.push((row, job, delivery, status, error)),
        }
    }
    const ATTEMPT_COLUMNS: [&str; 6] = ["delivery_id", "started_at", "latency_ms", "status", "error", "response_body"];
    for chunk in attempts_log.chunks(crate::db::INSERT_BATCH / 2) {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(crate::db::multi_row_insert("webhook_attempts", &ATTEMPT_COLUMNS, chunk.len())));
        for (delivery, started_at, latency_ms, status, error, body) in chunk {
            q = q.bind(*delivery).bind(started_at.clone()).bind(*latency_ms).bind(*status).bind(error.clone()).bind(body.clone());
        }
        q.execute(&mut **tx).await?;
    }
    let t = now();
    for (status, ids) in &delivered {
        let list = crate::db::id_list(ids.iter().copied());
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE webhook_deliveries SET state = 'delivered', attempts = attempts + 1, last_status = $1, last_error = NULL, delivered_at = $2, updated_at = $2 \
             WHERE id IN ({list})"
        )))
        .bind(*status)
        .bind(&t)
        .execute(&mut **tx)
        .await?;
    }
    if !recovered_hooks.is_empty() {
        let list = crate::db::id_list(recovered_hooks.iter().copied());
        sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE webhooks SET failing_since = NULL WHERE id IN ({list}) AND failing_since IS NOT NULL")))
            .execute(&mut **tx)
            .await?;
    }
    let mut stopped: Vec<i64> = Vec::new();
    for (row, job, delivery, status, error) in failures {
        let hook: i64 = row.try_get("hook")?;
        let url: String = row.try_get("url")?;
        let attempts: i64 = row.try_get::<i64, _>("attempts")? + 1;
        // A subscription disabled by an earlier delivery of this batch sends nothing more.
        let last = attempts as usize > BACKOFF.len() || stopped.contains(&hook);
        sqlx::query("UPDATE webhook_deliveries SET state = $1, attempts = $2, last_status = $3, last_error = $4, updated_at = $5 WHERE id = $6")
            .bind(if last { "failed" } else { "pending" })
            .bind(attempts)
            .bind(status)
            .bind(&error)
            .bind(&t)
            .bind(delivery)
            .execute(&mut **tx)
            .await?;
        if stopped.contains(&hook) {
            outcomes.insert(job, Ok(()));
            continue;
        }
        // One that worked in this batch shows the receiver is up: not failing, try again.
        if working_hooks.contains(&hook) {
            outcomes.insert(job, Err(JobError::Retry(format!("{url}: {error}"))));
            continue;
        }
        sqlx::query("UPDATE webhooks SET failing_since = $1 WHERE id = $2 AND failing_since IS NULL").bind(&t).bind(hook).execute(&mut **tx).await?;
        let failing_since: Option<String> = row.try_get("failing_since")?;
        if failing_since.is_some_and(|since| since < format_time(chrono::Utc::now() - DISABLE_AFTER)) {
            disable(s, tx, row, hook, &url, &error).await?;
            stopped.push(hook);
            outcomes.insert(job, Ok(()));
            continue;
        }
        outcomes.insert(job, Err(JobError::Retry(format!("{url}: {error}"))));
    }
    batch.finish(outcomes).await?;
    if !stopped.is_empty() {
        jobs::wake(crate::mail::MAIL_JOB);
    }
    Ok(())
}

/// The secrets a subscription signs with now: its own, and for [`ROTATION_OVERLAP`] after a
/// rotation the previous one.
fn signing_secrets(vault: &Vault, row: &sqlx::any::AnyRow) -> Result<Vec<String>> {
    let hook: i64 = row.try_get("hook")?;
    let env_id: i64 = row.try_get("environment_id")?;
    let secret = vault.open(&place(hook, "secret", env_id), &row.try_get::<Vec<u8>, _>("sealed_secret")?)?;
    let mut secrets = vec![String::from_utf8_lossy(&secret).into_owned()];
    let previous_until: Option<String> = row.try_get("previous_until")?;
    if let (Some(sealed), Some(until)) = (row.try_get::<Option<Vec<u8>>, _>("sealed_previous")?, previous_until) {
        if until > now() {
            let old = vault.open(&place(hook, "previous", env_id), &sealed)?;
            secrets.push(String::from_utf8_lossy(&old).into_owned());
        }
    }
    Ok(secrets)
}

/// Disables a subscription that has failed for [`DISABLE_AFTER`], records it, and emails its
/// creator (when a person created it).
async fn disable(s: Handles<'_>, tx: &mut crate::db::Tx<'_>, row: &sqlx::any::AnyRow, hook: i64, url: &str, error: &str) -> Result<()> {
    let env_id: i64 = row.try_get("environment_id")?;
    let env: String = row.try_get("environment")?;
    let reason = format!("disabled by connvault on {}: every delivery failed for 3 days (last: {error})", &now()[..10]);
    sqlx::query("UPDATE webhooks SET enabled = 0, disabled_reason = $1, updated_at = $2 WHERE id = $3")
        .bind(&reason)
        .bind(now())
        .bind(hook)
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE webhook_deliveries SET state = 'failed', last_error = $1 WHERE webhook_id = $2 AND state = 'pending'")
        .bind("not sent: the subscription was disabled")
        .bind(hook)
        .execute(&mut **tx)
        .await?;
    audit::record(
        tx,
        &Actor::system("webhooks"),
        Event::new("webhook.disable").environment(env_id, &env).object("webhook", url).detail(json!({"id": hook, "reason": reason})),
    )
    .await?;
    let creator: Option<i64> = row.try_get("created_by_user")?;
    if let Some(user) = creator {
        let email: Option<String> = sqlx::query_scalar("SELECT email FROM users WHERE id = $1").bind(user).fetch_optional(&mut **tx).await?;
        if let Some(to) = email {
            let page = format!("{}/env/{}/webhooks", s.public_url.trim_end_matches('/'), crate::links::url_part(&env));
            let text = format!(
                "connvault disabled the webhook to {url} in {env}: every delivery to it failed for 3 days.\n\nLast failure: {error}\n\n\
                 Fix the receiver, then enable the webhook again on {page} (and send the failed deliveries again from its log).\n"
            );
            let html = format!("<p>{}</p>", crate::mail::escape_html(&text).replace("\n\n", "</p><p>"));
            let email = Email { to, subject: format!("connvault: webhook to {url} disabled in {env}"), text, html, attachments: Vec::new() };
            s.mailer.queue(tx, s.vault, &email).await?;
        }
    }
    Ok(())
}

fn status_error(status: u16) -> String {
    match status {
        300..=399 => format!("the receiver answered {status} (a redirect): webhooks do not follow redirects; subscribe the final URL"),
        401 | 403 => format!("the receiver answered {status}: check that it verifies with this subscription's current secret"),
        _ => format!("the receiver answered {status}"),
    }
}

/// POSTs one signed event; `Ok((status, start of the answer))` when the receiver answered.
async fn post(outbound: &Outbound, url: &str, id: &str, timestamp: i64, signature: &str, body: Vec<u8>) -> std::result::Result<(u16, Option<String>), String> {
    let parsed = outbound.parse_url(url).map_err(|e| e.to_string())?;
    let mut request = reqwest::Request::new(reqwest::Method::POST, parsed);
    let h = request.headers_mut();
    let header = |v: &str| reqwest::header::HeaderValue::from_str(v).map_err(|e| e.to_string());
    h.insert(reqwest::header::CONTENT_TYPE, header("application/json")?);
    h.insert(reqwest::header::USER_AGENT, header("connvault-webhooks")?);
    h.insert("webhook-id", header(id)?);
    h.insert("webhook-timestamp", header(&timestamp.to_string())?);
    h.insert("webhook-signature", header(signature)?);
    *request.body_mut() = Some(body.into());
    *request.timeout_mut() = Some(TIMEOUT);
    let attempt = async {
        let mut response = outbound.stream(request).await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while body.len() < LOGGED_BODY {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
        body.truncate(LOGGED_BODY);
        Ok((status, (!body.is_empty()).then(|| String::from_utf8_lossy(&body).into_owned())))
    };
    match tokio::time::timeout(TIMEOUT, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} seconds", TIMEOUT.as_secs())),
    }
}

/// The environment a webhook route names, for the API.
pub async fn environment(db: &Db, name: &str) -> Result<Environment> {
    environments::find(db, name).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification.
    #[test]
    fn signature_matches_the_specification_example() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(signature(&[secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body), "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn receiver_urls_have_the_shape_the_schema_states() {
        for good in ["https://hooks.example.com", "HTTPS://a0.B/x/y", "http://ops.example.com:8443/in", "https://x", "http://127.0.0.1:3223/hook"] {
            assert_eq!(url_shape(good), Ok(()), "{good}");
        }
        for bad in [
            "ftp://x.com",
            "https://x.com*",
            "https://x.com/?a=1",
            "https://x.com/#f",
            "https://a b.com",
            "https://x.com:99999",
            "https://1.2.3",
            "https://-x.com",
        ] {
            assert!(url_shape(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_rotation_signs_with_both() {
        let sig = signature(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_AAAA"], "msg_1", 1, b"{}");
        assert_eq!(sig.split(' ').count(), 2);
        assert!(sig.split(' ').all(|s| s.starts_with("v1,")));
    }
}
