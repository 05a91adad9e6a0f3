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

/// An action in words, for people: `binding.set` → "Integration bound to a connection".
/// Actions without words of their own read as their code with spaces.
pub fn action_label(action: &str) -> String {
    let words = match action {
        "admin_request.answer" => "Admin answered the request",
        "admin_request.send" => "Admin help requested",
        "api_key.create" => "API key created",
        "api_key.revoke" => "API key revoked",
        "api_key.rotate" => "API key rotated",
        "auth.sign_in" => "Signed in",
        "auth.sign_out" => "Signed out",
        "backup.create" => "Backup created",
        "backup.restore" => "Backup restored",
        "binding.remove" => "Integration unbound",
        "binding.set" => "Integration bound to a connection",
        "certificate.activate" => "Certificate put in use",
        "certificate.expiring" => "Certificate expiring",
        "certificate.issue" => "Certificate issued",
        "certificate.upload" => "Certificate uploaded",
        "connection.create" => "Connection created",
        "connection.delete" => "Connection deleted",
        "connection.details" => "Connection details read",
        "connection.disconnect" => "Connection disconnected",
        "connection.failing" => "Connection started failing",
        "connection.recovered" => "Connection works again",
        "connection.secret_release" => "Secret used",
        "connection.secret_replace" => "Secret replaced",
        "connection.sign_in" => "Signed in to the connection",
        "connection.sign_in_start" => "Sign-in to the connection started",
        "connection.test" => "Connection tested",
        "connection.update" => "Connection changed",
        "credential_request.answer" => "Credentials entered by their admin",
        "credential_request.send" => "Credentials requested",
        "environment.create" => "Environment added",
        "environment.rename" => "Environment renamed",
        "environment.reorder" => "Environments reordered",
        "environment.setting_change" => "Environment setting changed",
        "integration.publish" => "Integration published",
        "integration.unpublish" => "Integration unpublished",
        "integration.update" => "Integration updated",
        "promotion.import" => "Promotion applied",
        "proxy.failure" => "Proxied call failed",
        "secret.integrity_failure" => "Stored secret failed its integrity check",
        "token.mint" => "Token issued",
        "token.session" => "Session fetched",
        "user.create" => "Person added",
        "user.deactivate" => "Person deactivated",
        "user.invite_accept" => "Invitation accepted",
        "user.password_change" => "Password changed",
        "user.reactivate" => "Person reactivated",
        "user.reinvite" => "Invitation sent again",
        "user.role_set" => "Role changed",
        "vault.initialize" => "Vault set up",
        "vault.rotate_master_key" => "Master key rotated",
        "webhook.create" => "Webhook added",
        "webhook.delete" => "Webhook deleted",
        "webhook.disable" => "Webhook disabled",
        "webhook.retry" => "Webhook delivery sent again",
        "webhook.rotate_secret" => "Webhook secret rotated",
        "webhook.update" => "Webhook changed",
        other => {
            let text = other.replace(['.', '_'], " ");
            let mut chars = text.chars();
            return chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default();
        }
    };
    words.to_string()
}

/// One value an event changed: what, before, after (in words; "none" for nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub what: String,
    pub before: String,
    pub after: String,
}

fn words(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "none".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// What an event changed, before → after, from its detail.
pub fn changes(e: &AuditEvent) -> Vec<Change> {
    let d = &e.detail;
    let change = |what: &str, before: Option<&Value>, after: Option<&Value>| Change { what: what.into(), before: words(before), after: words(after) };
    let mut out = Vec::new();
    match e.action.as_str() {
        "binding.set" => out.push(change("connection", d.get("previous"), d.get("connection"))),
        "binding.remove" => out.push(change("connection", d.get("connection"), None)),
        "environment.rename" => out.push(change("name", d.get("from"), d.get("to"))),
        "environment.reorder" if d.get("from").is_some() => out.push(change("position", d.get("from"), d.get("to"))),
        "environment.setting_change" => {
            let after = d.get("allow_developers_to_manage_api_keys").and_then(Value::as_bool);
            out.push(change("developers manage API keys", after.map(|a| Value::Bool(!a)).as_ref(), after.map(Value::Bool).as_ref()));
        }
        "user.role_set" => out.push(change(&format!("role in {}", e.environment.as_deref().unwrap_or("?")), d.get("previous"), d.get("role"))),
        _ => {}
    }
    if let Some(from) = d.get("renamed_from") {
        out.push(change("name", Some(from), e.object_name.as_ref().map(|n| Value::String(n.clone())).as_ref()));
    }
    if let Some(Value::Object(settings)) = d.get("settings") {
        for (k, v) in settings {
            out.push(change(k, v.get("before"), v.get("after")));
        }
    }
    out
}

/// The page an event's object lives on, while it exists.
pub fn object_path(e: &AuditEvent) -> Option<String> {
    let part = crate::links::url_part;
    let env = e.environment.as_deref().map(part);
    let name = e.object_name.as_deref()?;
    if e.action.ends_with(".delete") || e.action == "integration.unpublish" {
        return None;
    }
    match (e.object_kind.as_deref()?, env) {
        ("connection", Some(env)) => Some(format!("/env/{env}/connections/{}", part(name))),
        ("integration", Some(env)) => Some(format!("/env/{env}/integrations")),
        ("webhook", Some(env)) => Some(format!("/env/{env}/webhooks")),
        ("api_key", _) => Some("/api-keys".into()),
        ("user", _) => Some("/users".into()),
        ("environment", _) => Some("/environments".into()),
        _ => None,
    }
}

/// One CSV field, safe in a spreadsheet: a value that a spreadsheet would run as a formula
/// (starting with `=`, `+`, `-`, `@`, a tab or a carriage return) gets a leading `'`; a value
/// with a comma, a quote or a line break is quoted, its quotes doubled.
pub fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{value}") } else { value.to_string() };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// The events as CSV (RFC 4180, CRLF line ends), a header line first.
pub fn csv(events: &[AuditEvent]) -> String {
    let mut out = String::from("id,time_utc,actor,action,what,outcome,environment,object_kind,object,change,client_addr,detail\r\n");
    for e in events {
        let change = changes(e).iter().map(|c| format!("{}: {} → {}", c.what, c.before, c.after)).collect::<Vec<_>>().join("; ");
        let fields = [
            e.id.to_string(),
            e.created_at.clone(),
            e.actor.clone(),
            e.action.clone(),
            action_label(&e.action),
            e.outcome.clone(),
            e.environment.clone().unwrap_or_default(),
            e.object_kind.clone().unwrap_or_default(),
            e.object_name.clone().unwrap_or_default(),
            change,
            e.client_addr.clone().unwrap_or_default(),
            e.detail.to_string(),
        ];
        out.push_str(&fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

/// At most this many events go into one export.
pub const EXPORT_LIMIT: usize = 100_000;

/// Every event matching `q` (its feed and limit aside), newest first, up to [`EXPORT_LIMIT`].
pub async fn export(db: &Db, q: &AuditQuery) -> Result<Vec<AuditEvent>> {
    let mut all = Vec::new();
    let mut feed = Feed::default();
    loop {
        let page = search(db, &AuditQuery { feed: feed.clone(), limit: Some(feed::MAX_LIMIT), ..q.clone() }).await?;
        all.extend(page.items);
        match page.next_cursor {
            Some(c) if all.len() < EXPORT_LIMIT => feed = feed.with_cursor(Some(c)),
            _ => {
                all.truncate(EXPORT_LIMIT);
                return Ok(all);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_safe_in_a_spreadsheet() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("=HYPERLINK(\"http://x\")"), "\"'=HYPERLINK(\"\"http://x\"\")\"");
        assert_eq!(csv_field("+1"), "'+1");
        assert_eq!(csv_field("-2"), "'-2");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field("\tx"), "'\tx");
    }

    #[test]
    fn actions_read_as_words() {
        assert_eq!(action_label("binding.set"), "Integration bound to a connection");
        assert_eq!(action_label("something.new_here"), "Something new here");
    }
}
