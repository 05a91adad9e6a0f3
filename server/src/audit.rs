//! The audit trail. Events are written in the same transaction as the change they describe, so
//! a change whose event cannot be written does not happen (fail closed). The table is
//! append-only (database triggers refuse UPDATE and DELETE). Details carry field names, never
//! secret values.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::db::{format_time, now, Db, Tx};
use crate::error::{Error, Result};
use crate::feed::{self, contains_pattern, Feed, Filter, Listing, Page, SortKey};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    User,
    ApiKey,
    Operator,
    System,
    Link,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::ApiKey => "api_key",
            ActorKind::Operator => "operator",
            ActorKind::System => "system",
            ActorKind::Link => "link",
        }
    }
}

/// Who does something, and from where.
#[derive(Debug, Clone)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: Option<i64>,
    pub label: String,
    pub client_addr: Option<String>,
}

impl Actor {
    /// The person at the server's command line.
    pub fn operator() -> Actor {
        let who = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
        Actor { kind: ActorKind::Operator, id: None, label: format!("operator ({who}, command line)"), client_addr: None }
    }

    pub fn system(what: &str) -> Actor {
        Actor { kind: ActorKind::System, id: None, label: format!("connvault ({what})"), client_addr: None }
    }
}

/// One event to record.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub action: &'a str,
    pub outcome: &'a str,
    pub environment: Option<(i64, &'a str)>,
    pub object_kind: Option<&'a str>,
    pub object_name: Option<&'a str>,
    pub detail: Value,
}

impl<'a> Event<'a> {
    pub fn new(action: &'a str) -> Event<'a> {
        Event { action, outcome: "success", environment: None, object_kind: None, object_name: None, detail: Value::Object(Default::default()) }
    }
    pub fn environment(mut self, id: i64, name: &'a str) -> Self {
        self.environment = Some((id, name));
        self
    }
    pub fn object(mut self, kind: &'a str, name: &'a str) -> Self {
        self.object_kind = Some(kind);
        self.object_name = Some(name);
        self
    }
    pub fn detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }
    pub fn outcome(mut self, outcome: &'a str) -> Self {
        self.outcome = outcome;
        self
    }
}

/// Records `event` inside `tx`. If this fails the caller's transaction fails with it.
pub async fn record(tx: &mut Tx<'_>, actor: &Actor, event: Event<'_>) -> Result<()> {
    record_all(tx, actor, std::slice::from_ref(&event)).await
}

/// The columns an event is written to (`id` is the database's).
const EVENT_COLUMNS: [&str; 13] = [
    "actor_kind",
    "actor_id",
    "actor_label",
    "action",
    "outcome",
    "environment_id",
    "environment",
    "object_kind",
    "object_name",
    "detail",
    "client_addr",
    "created_at",
    "updated_at",
];

/// Records `events` inside `tx`, in order, a few hundred to a statement (an import of thousands
/// of items records one event per item).
pub async fn record_all(tx: &mut Tx<'_>, actor: &Actor, events: &[Event<'_>]) -> Result<()> {
    let t = now();
    for chunk in events.chunks(crate::db::INSERT_BATCH) {
        let sql = crate::db::multi_row_insert("audit_events", &EVENT_COLUMNS, chunk.len());
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for event in chunk {
            q = q
                .bind(actor.kind.as_str())
                .bind(actor.id)
                .bind(actor.label.clone())
                .bind(event.action.to_string())
                .bind(event.outcome.to_string())
                .bind(event.environment.map(|e| e.0))
                .bind(event.environment.map(|e| e.1.to_string()))
                .bind(event.object_kind.map(str::to_string))
                .bind(event.object_name.map(str::to_string))
                .bind(event.detail.to_string())
                .bind(actor.client_addr.clone())
                .bind(t.clone())
                .bind(t.clone());
        }
        q.execute(&mut **tx).await?;
    }
    let happened: Vec<crate::events::Happened<'_>> = events.iter().map(|e| crate::events::Happened {
        action: e.action,
        outcome: e.outcome,
        environment: e.environment,
        object_kind: e.object_kind,
        object_name: e.object_name,
        actor_kind: actor.kind.as_str(),
        actor_label: &actor.label,
        detail: &e.detail,
    }).collect();
    crate::events::fan_out(tx, &happened).await
}

/// Records an event in a transaction of its own (for events that accompany no change, such as a
/// failed integrity check).
pub async fn record_alone(db: &Db, actor: &Actor, event: Event<'_>) -> Result<()> {
    let mut tx = db.begin().await?;
    record(&mut tx, actor, event).await?;
    tx.commit().await?;
    Ok(())
}

/// A stored event, as the audit page and `GET /api/v1/audit` show it. Events never change:
/// `updated_at` is always `created_at`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditEvent {
    pub id: i64,
    pub actor_kind: String,
    pub actor: String,
    pub action: String,
    pub outcome: String,
    pub environment: Option<String>,
    pub object_kind: Option<String>,
    pub object_name: Option<String>,
    pub detail: Value,
    pub client_addr: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// Which audit events to show (`GET /api/v1/audit` and the audit page).
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Events of this environment (by id, so renames do not hide history); all when `None`.
    pub environment_id: Option<i64>,
    /// Case-insensitive substring of the actor label: a person's email, `API key NAME (cvk_…)`,
    /// `operator (…)` or `connvault (…)`.
    pub actor: Option<String>,
    /// Exact action name, e.g. `connection.create` (see [`actions`]).
    pub action: Option<String>,
    /// Events at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Events before this instant.
    pub to: Option<DateTime<Utc>>,
    /// Newest first (the default), or a change feed in id / time order; with a cursor.
    pub feed: Feed,
    /// 1..=1000, default 100.
    pub limit: Option<i64>,
}

const LISTING: Listing = Listing {
    name: "audit",
    columns: "id, actor_kind, actor_label, action, outcome, environment, object_kind, object_name, detail, client_addr, created_at, updated_at",
    table: "audit_events",
    order: SortKey::Id,
    descending: true,
};

/// One page of audit events matching `q`.
pub async fn search(db: &Db, q: &AuditQuery) -> Result<Page<AuditEvent>> {
    let mut filter = Filter::new();
    if let Some(id) = q.environment_id {
        filter.and("environment_id = ?", [id.into()]);
    }
    if let Some(actor) = q.actor.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        filter.and("LOWER(actor_label) LIKE ? ESCAPE '\\'", [contains_pattern(actor).into()]);
    }
    if let Some(action) = q.action.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        filter.and("action = ?", [action.into()]);
    }
    if let (Some(from), Some(to)) = (q.from, q.to) {
        if from >= to {
            return Err(Error::field("to", "to must be later than from (from is inclusive, to is exclusive)"));
        }
    }
    if let Some(from) = q.from {
        filter.and("created_at >= ?", [format_time(from).into()]);
    }
    if let Some(to) = q.to {
        filter.and("created_at < ?", [format_time(to).into()]);
    }
    feed::page(db, &LISTING, filter, &q.feed, q.limit).await?.try_map(|r| from_row(&r))
}

/// The distinct action names recorded so far, alphabetically (for a filter).
pub async fn actions(db: &Db) -> Result<Vec<String>> {
    let rows = sqlx::query("SELECT DISTINCT action FROM audit_events ORDER BY action").fetch_all(db.pool()).await?;
    Ok(rows.iter().map(|r| r.try_get("action")).collect::<Result<_, _>>()?)
}

/// The most recent events, newest first.
pub async fn recent(db: &Db, limit: i64) -> Result<Vec<AuditEvent>> {
    recent_in(db, None, None, limit).await
}

/// The most recent events of one environment (by id, so renames do not hide history), newest
/// first; all events when `environment_id` is `None`. `before_id` pages back in time.
pub async fn recent_in(db: &Db, environment_id: Option<i64>, before_id: Option<i64>, limit: i64) -> Result<Vec<AuditEvent>> {
    let feed = Feed::Default { cursor: before_id.map(|id| feed::default_cursor_after(&LISTING, id)) };
    Ok(search(db, &AuditQuery { environment_id, feed, limit: Some(limit), ..Default::default() }).await?.items)
}

fn from_row(r: &AnyRow) -> Result<AuditEvent> {
    let detail: String = r.try_get("detail")?;
    Ok(AuditEvent {
        id: r.try_get("id")?,
        actor_kind: r.try_get("actor_kind")?,
        actor: r.try_get("actor_label")?,
        action: r.try_get("action")?,
        outcome: r.try_get("outcome")?,
        environment: r.try_get("environment")?,
        object_kind: r.try_get("object_kind")?,
        object_name: r.try_get("object_name")?,
        detail: serde_json::from_str(&detail).unwrap_or(Value::Null),
        client_addr: r.try_get("client_addr")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}
