//! Connections: per-environment credentials for one provider. Non-secret settings are stored as
//! JSON; each secret field is sealed on its own (see `seal`) in `connection_secrets`, bound to
//! the connection's id, the field name and the environment. Every write is one transaction that
//! includes its audit event: it happens completely or not at all.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sqlx::{AssertSqlSafe, Row};

use crate::audit::{self, Actor, Event};
use crate::db::{now, Db, Tx};
use crate::environments::{self, Environment};
use crate::error::{Error, FieldError, Result};
pub use crate::feed::Page;
use crate::feed::{self, contains_pattern, Feed, Filter, Listing, SortKey};
use crate::providers::{self, ProviderDef, Secrets, TestResult, MAX_SECRET_LEN};
use crate::seal::{Place, SealError, Vault};
use crate::secret::SecretString;

pub const SECRETS_TABLE: &str = "connection_secrets";
pub const MAX_NAME_LEN: usize = 100;

/// A connection as every reader sees it: settings, and which secrets are set and when, never
/// their values.
/// (`deny_unknown_fields` only for its schema: an answer holds these fields and nothing else.)
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    pub id: i64,
    pub environment: String,
    pub name: String,
    #[schema(schema_with = crate::providers::id_schema)]
    pub provider: String,
    #[schema(value_type = Object)]
    pub settings: Map<String, Value>,
    /// Secret field → when it was last set (RFC 3339 UTC).
    #[schema(schema_with = secrets_set_schema)]
    pub secrets_set: BTreeMap<String, String>,
    /// Secret field → who set it.
    pub secrets_set_by: BTreeMap<String, String>,
    pub created_by: String,
    pub updated_by: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

fn secrets_set_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    crate::schema::json_schema(json!({
        "type": "object",
        "additionalProperties": {"type": "string", "format": "date-time"},
        "description": "Secret field → when it was set"
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewConnection {
    pub name: String,
    pub provider: String,
    #[serde(default)]
    pub settings: Map<String, Value>,
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretString>,
}

// A new connection: one schema per provider (each provider's `schema`), told apart by `provider`.
crate::schema::hand_schema!(NewConnection, "NewConnection", || json!({
    "type": "object",
    "description": "A connection: its provider decides its settings and secrets (the private key of a Salesforce connection is issued or uploaded through /certificate, never sent here)",
    "oneOf": providers::REGISTRY.iter().map(|p| {
        let mut schema = p.connection_schema();
        schema["title"] = json!(p.id);
        schema["type"] = json!("object");
        schema["additionalProperties"] = json!(false);
        schema["properties"]["name"] = name_schema();
        schema["properties"]["provider"] = json!({"const": p.id});
        schema
    }).collect::<Vec<_>>(),
    "discriminator": {"propertyName": "provider"}
}));

/// The schema of a connection or integration name ([`is_valid_name`]).
pub fn name_schema() -> Value {
    json!({"type": "string", "pattern": format!("^[A-Za-z0-9][A-Za-z0-9_.-]{{0,{}}}$", MAX_NAME_LEN - 1)})
}

/// A partial change: settings given replace (a `null` removes one), secrets given are replaced,
/// a new `name` renames.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionPatch {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub settings: Map<String, Value>,
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretString>,
}

crate::schema::hand_schema!(ConnectionPatch, "ConnectionPatch", || {
    let mut name = name_schema();
    name["description"] = json!("A new name (a rename)");
    json!({
        "type": "object",
        "additionalProperties": false,
        "description": "A partial change. Which settings and secrets are valid depends on the stored connection's provider and settings (see NewConnection): the result must be a valid connection, else 422 naming each field",
        "properties": {
            "name": name,
            "settings": {"type": "object", "description": "Given keys replace; null removes", "additionalProperties": {"type": ["string", "integer", "object", "null"]}},
            "secrets": {"type": "object", "additionalProperties": crate::providers::secret_value_schema(), "writeOnly": true, "description": "Given secrets are replaced"}
        }
    })
});

/// Which connections to list.
#[derive(Debug, Default, Clone)]
pub struct ListQuery {
    pub provider: Option<String>,
    /// Case-insensitive substring of the name.
    pub search: Option<String>,
    /// Max rows (1..=1000; default 100).
    pub limit: Option<i64>,
    /// By name (the default), or a change feed; with the cursor of a previous page.
    pub feed: Feed,
}

/// The rule for connection and integration names: 1 to 100 letters, digits, `_`, `-` or `.`,
/// starting with a letter or digit (they appear in URLs and in promotion bundles).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

pub fn validate_name(name: &str) -> Result<()> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(Error::field("name", format!("a connection name is 1 to {MAX_NAME_LEN} letters, digits, _ - or ., starting with a letter or digit (e.g. SF_Main)")))
    }
}

pub(crate) fn provider(id: &str) -> Result<&'static ProviderDef> {
    providers::get(id).ok_or_else(|| Error::field("provider", format!("unknown provider {id:?}; known providers: {}", providers::ids().join(", "))))
}

fn check_secret_values(secrets: &BTreeMap<String, SecretString>) -> Vec<FieldError> {
    secrets
        .iter()
        .filter_map(|(name, value)| {
            if value.expose_secret().trim().is_empty() {
                Some(FieldError::new(format!("secrets.{name}"), "must not be empty"))
            } else if value.len() > MAX_SECRET_LEN {
                Some(FieldError::new(format!("secrets.{name}"), format!("is longer than {MAX_SECRET_LEN} bytes")))
            } else {
                None
            }
        })
        .collect()
}

/// Where a connection's secret field lives (the associated data of its blob).
pub(crate) fn place<'a>(connection_id: i64, field: &'a str, environment_id: i64) -> Place<'a> {
    Place { table: SECRETS_TABLE, row: connection_id, field, environment: environment_id }
}

/// Who wrote something, and when.
pub(crate) struct Stamp<'a> {
    pub(crate) by: &'a str,
    pub(crate) at: &'a str,
}

/// Seals `value` under the current key for its place and stores it (inserted or replaced).
pub(crate) async fn store_secret(
    tx: &mut Tx<'_>,
    vault: &Vault,
    env: &Environment,
    connection_id: i64,
    field: &str,
    value: &SecretString,
    stamp: &Stamp<'_>,
) -> Result<()> {
    let blob = vault.seal(&place(connection_id, field, env.id), value.expose_secret().as_bytes());
    sqlx::query(
        "INSERT INTO connection_secrets (connection_id, field, blob, key_id, set_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6) \
         ON CONFLICT (connection_id, field) DO UPDATE SET blob = excluded.blob, key_id = excluded.key_id, set_by = excluded.set_by, updated_at = excluded.updated_at",
    )
    .bind(connection_id)
    .bind(field)
    .bind(blob)
    .bind(vault.current_key_id().to_string())
    .bind(stamp.by)
    .bind(stamp.at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Seals and stores one secret field (for secrets connvault manages itself, e.g. a Salesforce
/// private key or session token), inside the caller's transaction.
pub(crate) async fn put_secret(
    tx: &mut Tx<'_>,
    vault: &Vault,
    env: &Environment,
    connection_id: i64,
    field: &str,
    value: &SecretString,
    by: &str,
) -> Result<()> {
    store_secret(tx, vault, env, connection_id, field, value, &Stamp { by, at: &now() }).await
}

pub(crate) async fn remove_secret(tx: &mut Tx<'_>, connection_id: i64, field: &str) -> Result<()> {
    sqlx::query("DELETE FROM connection_secrets WHERE connection_id = $1 AND field = $2").bind(connection_id).bind(field).execute(&mut **tx).await?;
    Ok(())
}

fn unique_conflict(env: &str, name: &str) -> Error {
    Error::Conflict { code: "connection_exists", message: format!("a connection named {name} already exists in {env}; choose another name or edit that one") }
}

pub async fn create(db: &Db, vault: &Vault, actor: &Actor, env_name: &str, mut input: NewConnection) -> Result<Connection> {
    // Every mistake at once: the name's with the settings' and secrets'.
    let mut errors: Vec<FieldError> = match validate_name(&input.name) {
        Err(Error::Validation(e)) => e,
        _ => Vec::new(),
    };
    let def = match provider(&input.provider) {
        Ok(def) => def,
        Err(Error::Validation(e)) => {
            errors.extend(e);
            return Err(Error::Validation(errors));
        }
        Err(e) => return Err(e),
    };
    def.normalize(&mut input.settings);
    errors.extend(def.validate(&input.settings, &providers::names(&input.secrets)));
    errors.extend(def.refuse_managed(&input.secrets));
    errors.extend(check_secret_values(&input.secrets));
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let mut tx = db.begin().await?;
    let env = environments::find_in(&mut tx, env_name).await?;
    let exists = sqlx::query("SELECT id FROM connections WHERE environment_id = $1 AND name_key = $2")
        .bind(env.id)
        .bind(input.name.to_lowercase())
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_some() {
        return Err(unique_conflict(&env.name, &input.name));
    }
    let t = now();
    let id: i64 = sqlx::query(
        "INSERT INTO connections (environment_id, name, name_key, provider, settings, created_by, updated_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $7) RETURNING id",
    )
    .bind(env.id)
    .bind(&input.name)
    .bind(input.name.to_lowercase())
    .bind(def.id)
    .bind(Value::Object(input.settings.clone()).to_string())
    .bind(&actor.label)
    .bind(&t)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| map_unique(e.into(), &env.name, &input.name))?
    .try_get("id")?;
    for (field, value) in &input.secrets {
        store_secret(&mut tx, vault, &env, id, field, value, &Stamp { by: &actor.label, at: &t }).await?;
    }
    let secret_names: Vec<&String> = input.secrets.keys().collect();
    audit::record(
        &mut tx,
        actor,
        Event::new("connection.create")
            .environment(env.id, &env.name)
            .object("connection", &input.name)
            .detail(json!({"provider": def.id, "secrets_set": secret_names})),
    )
    .await?;
    tx.commit().await?;
    get(db, &env.name, &input.name).await
}

fn map_unique(e: Error, env: &str, name: &str) -> Error {
    if e.is_unique_violation() {
        unique_conflict(env, name)
    } else {
        e
    }
}

const SELECT: &str = "SELECT c.id, c.name, c.provider, c.settings, c.created_by, c.updated_by, c.created_at, c.updated_at, \
                      s.field AS secret_field, s.updated_at AS secret_at, s.set_by AS secret_by \
                      FROM connections c LEFT JOIN connection_secrets s ON s.connection_id = c.id";

/// Folds joined rows (one per secret field) into connections, keeping row order.
fn fold(rows: Vec<sqlx::any::AnyRow>, env: &str) -> Result<Vec<Connection>> {
    let mut out: Vec<Connection> = Vec::new();
    for r in rows {
        let id: i64 = r.try_get("id")?;
        if out.last().is_none_or(|c| c.id != id) {
            let settings: String = r.try_get("settings")?;
            let settings = match serde_json::from_str(&settings) {
                Ok(Value::Object(m)) => m,
                _ => return Err(Error::Internal(format!("connection {id} has unreadable settings"))),
            };
            out.push(Connection {
                id,
                environment: env.to_string(),
                name: r.try_get("name")?,
                provider: r.try_get("provider")?,
                settings,
                secrets_set: BTreeMap::new(),
                secrets_set_by: BTreeMap::new(),
                created_by: r.try_get("created_by")?,
                updated_by: r.try_get("updated_by")?,
                created_at: r.try_get("created_at")?,
                updated_at: r.try_get("updated_at")?,
            });
        }
        if let Some(field) = r.try_get::<Option<String>, _>("secret_field")? {
            let c = out.last_mut().expect("pushed above");
            c.secrets_set.insert(field.clone(), r.try_get("secret_at")?);
            c.secrets_set_by.insert(field, r.try_get("secret_by")?);
        }
    }
    Ok(out)
}

pub async fn get(db: &Db, env_name: &str, name: &str) -> Result<Connection> {
    let env = environments::find(db, env_name).await?;
    let rows = sqlx::query(AssertSqlSafe(format!("{SELECT} WHERE c.environment_id = $1 AND c.name_key = $2 ORDER BY c.id, s.field")))
        .bind(env.id)
        .bind(name.to_lowercase())
        .fetch_all(db.pool())
        .await?;
    fold(rows, &env.name)?.into_iter().next().ok_or_else(|| Error::NotFound(format!("No connection named {name} in {}", env.name)))
}

/// The connections with these ids (`list`: integers read from the database, comma-separated),
/// in id order, as of `env`.
async fn by_ids(db: &Db, list: &str, env: &str) -> Result<Vec<Connection>> {
    let rows = sqlx::query(AssertSqlSafe(format!("{SELECT} WHERE c.id IN ({list}) ORDER BY c.id, s.field"))).fetch_all(db.pool()).await?;
    fold(rows, env)
}

/// Connections in the order the list pages over them.
const LISTING: Listing =
    Listing { name: "connections", columns: "id, name_key, updated_at", table: "connections", order: SortKey::Text("name_key"), descending: false };

/// Lists an environment's connections a page at a time: by name, or as a change feed.
pub async fn list(db: &Db, env_name: &str, q: &ListQuery) -> Result<Page<Connection>> {
    let env = environments::find(db, env_name).await?;
    let mut filter = Filter::new();
    filter.and("environment_id = ?", [env.id.into()]);
    if let Some(p) = &q.provider {
        filter.and("provider = ?", [p.as_str().into()]);
    }
    if let Some(s) = q.search.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        filter.and("name_key LIKE ? ESCAPE '\\'", [contains_pattern(s).into()]);
    }
    // Page over connection ids first (so LIMIT counts connections, not joined rows).
    feed::page_then_load(db, &LISTING, filter, &q.feed, q.limit, |list| async move {
        Ok(by_ids(db, &list, &env.name).await?.into_iter().map(|c| (c.id, c)).collect())
    })
    .await
}

/// Where a connection stands before it can be used, from its settings and which secrets are
/// set; `None` once it is set up (it may still never have been checked):
/// `not_set_up` (a required setting is missing, as in a promotion's placeholder, or none of
/// the secrets a person types is set), `no_certificate` / `waiting_for_admin` (it signs with a
/// key connvault keeps: none issued yet / the system's admin has not answered),
/// `needs_sign_in` (it connects by signing in, and nobody has).
pub fn setup_stage(c: &Connection) -> Option<&'static str> {
    let def = providers::get(&c.provider)?;
    let set: BTreeSet<String> = c.secrets_set.keys().cloned().collect();
    if !def.setup_missing(&c.settings, &set).is_empty() {
        return Some("not_set_up");
    }
    if let Some(m) = def.signing(&c.settings) {
        return if !set.contains(m.key_field) && !set.contains(m.pending_key_field) {
            Some("no_certificate")
        } else {
            (m.not_ready)(&c.settings).map(|_| "waiting_for_admin")
        };
    }
    if let Some(a) = def.authorization.filter(|_| (def.auth_mode)(&c.settings).signs_in()) {
        return (!set.contains(a.refresh_field)).then_some("needs_sign_in");
    }
    let typed = def.typed_secrets(&c.settings);
    (!typed.is_empty() && !typed.iter().any(|f| set.contains(f.name))).then_some("not_set_up")
}

/// [`setup_stage`] of these connections (ids the caller read from the database), by id; those
/// that are set up are absent.
pub async fn stages_of(db: &Db, ids: &[i64]) -> Result<BTreeMap<i64, &'static str>> {
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let list = crate::db::id_list(ids.iter().copied());
    // The environment's name plays no part in the stage.
    Ok(by_ids(db, &list, "").await?.iter().filter_map(|c| setup_stage(c).map(|s| (c.id, s))).collect())
}

/// How the connections page sorts: by name, by status (failing, then not tested, then
/// working), or by last change (newest first).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Sort {
    #[default]
    Name,
    Status,
    Changed,
}

impl Sort {
    pub fn parse(text: &str) -> Result<Sort> {
        match text {
            "" | "name" => Ok(Sort::Name),
            "status" => Ok(Sort::Status),
            "changed" => Ok(Sort::Changed),
            other => Err(Error::field("sort", format!("sort by name, status or changed, not {other:?}"))),
        }
    }
}

/// Which connections by their latest check: failing, never checked, or working.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckFilter {
    Failing,
    NotTested,
    Works,
}

impl CheckFilter {
    pub fn parse(text: &str) -> Result<Option<CheckFilter>> {
        match text {
            "" | "all" => Ok(None),
            "failing" => Ok(Some(CheckFilter::Failing)),
            "not_tested" => Ok(Some(CheckFilter::NotTested)),
            "works" => Ok(Some(CheckFilter::Works)),
            other => Err(Error::field("status", format!("status is failing, not_tested or works, not {other:?}"))),
        }
    }
}

/// A page of the connections page: filters, a sort and a page number (from 1).
#[derive(Debug, Clone, Default)]
pub struct BrowseQuery {
    pub provider: Option<String>,
    /// Case-insensitive substring of the name.
    pub search: Option<String>,
    pub check: Option<CheckFilter>,
    pub sort: Sort,
    /// From 1; past the last page means the last page.
    pub page: i64,
    /// Rows per page (1..=1000).
    pub per_page: i64,
}

/// One page of connections with how many match in all.
#[derive(Debug, Clone)]
pub struct Browse {
    pub items: Vec<Connection>,
    /// Connections matching the filters, on every page.
    pub total: i64,
    /// The page shown (from 1) and how many there are (at least 1).
    pub page: i64,
    pub pages: i64,
    pub per_page: i64,
}

/// An environment's connections for the connections page: filtered, sorted, a numbered page
/// at a time, with the total.
pub async fn browse(db: &Db, env_name: &str, q: &BrowseQuery) -> Result<Browse> {
    let per_page = q.per_page;
    if !(1..=feed::MAX_LIMIT).contains(&per_page) {
        return Err(Error::field("per_page", format!("per_page is 1 to {}", feed::MAX_LIMIT)));
    }
    let env = environments::find(db, env_name).await?;
    // Constant SQL with numbered placeholders; every value is bound.
    let mut clauses = vec!["c.environment_id = $1".to_string()];
    let mut binds: Vec<String> = Vec::new();
    if let Some(p) = q.provider.as_deref().filter(|p| !p.is_empty()) {
        binds.push(p.to_string());
        clauses.push(format!("c.provider = ${}", binds.len() + 1));
    }
    if let Some(s) = q.search.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        binds.push(contains_pattern(s));
        clauses.push(format!("c.name_key LIKE ${} ESCAPE '\\'", binds.len() + 1));
    }
    match q.check {
        Some(CheckFilter::Failing) => clauses.push("h.ok = 0".into()),
        Some(CheckFilter::NotTested) => clauses.push("h.connection_id IS NULL".into()),
        Some(CheckFilter::Works) => clauses.push("h.ok <> 0".into()),
        None => {}
    }
    let from = format!("FROM connections c LEFT JOIN connection_health h ON h.connection_id = c.id WHERE {}", clauses.join(" AND "));
    let order = match q.sort {
        Sort::Name => "c.name_key, c.id",
        Sort::Status => "CASE WHEN h.ok = 0 THEN 0 WHEN h.ok IS NULL THEN 1 ELSE 2 END, c.name_key, c.id",
        Sort::Changed => "c.updated_at DESC, c.id DESC",
    };
    let bound = |sql: String| {
        let mut query = sqlx::query(AssertSqlSafe(sql)).bind(env.id);
        for b in &binds {
            query = query.bind(b.clone());
        }
        query
    };
    let total: i64 = bound(format!("SELECT COUNT(*) AS n {from}")).fetch_one(db.pool()).await?.try_get("n")?;
    let pages = ((total + per_page - 1) / per_page).max(1);
    let page = q.page.clamp(1, pages);
    let ids: Vec<i64> = bound(format!("SELECT c.id {from} ORDER BY {order} LIMIT {per_page} OFFSET {}", (page - 1) * per_page))
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|r| r.try_get("id"))
        .collect::<Result<_, _>>()?;
    let mut items = Vec::with_capacity(ids.len());
    if !ids.is_empty() {
        let list = crate::db::id_list(ids.iter().copied());
        let mut by_id: BTreeMap<i64, Connection> = by_ids(db, &list, &env.name).await?.into_iter().map(|c| (c.id, c)).collect();
        items.extend(ids.iter().filter_map(|id| by_id.remove(id)));
    }
    Ok(Browse { items, total, page, pages, per_page })
}

struct Stored {
    id: i64,
    name: String,
    provider: String,
    settings: Map<String, Value>,
    secret_fields: BTreeSet<String>,
}

async fn load_for_change(tx: &mut Tx<'_>, env: &Environment, name: &str) -> Result<Stored> {
    let row = sqlx::query("SELECT id, name, provider, settings FROM connections WHERE environment_id = $1 AND name_key = $2")
        .bind(env.id)
        .bind(name.to_lowercase())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| Error::NotFound(format!("No connection named {name} in {}", env.name)))?;
    let id: i64 = row.try_get("id")?;
    let settings: String = row.try_get("settings")?;
    let secret_fields = sqlx::query("SELECT field FROM connection_secrets WHERE connection_id = $1")
        .bind(id)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| r.try_get("field"))
        .collect::<Result<_, _>>()?;
    Ok(Stored {
        id,
        name: row.try_get("name")?,
        provider: row.try_get("provider")?,
        settings: serde_json::from_str(&settings).map_err(|_| Error::Internal(format!("connection {id} has unreadable settings")))?,
        secret_fields,
    })
}

pub async fn update(db: &Db, vault: &Vault, actor: &Actor, env_name: &str, name: &str, patch: ConnectionPatch) -> Result<Connection> {
    // A bad new name is reported with the settings' mistakes, all at once.
    let name_errors = match patch.name.as_deref().map(validate_name) {
        Some(Err(Error::Validation(e))) => e,
        _ => Vec::new(),
    };
    let mut tx = db.begin().await?;
    let env = environments::find_in(&mut tx, env_name).await?;
    let stored = load_for_change(&mut tx, &env, name).await?;
    let def = provider(&stored.provider)?;

    let mut settings = stored.settings.clone();
    let mut changed_settings = Vec::new();
    for (key, value) in &patch.settings {
        if value.is_null() {
            if settings.remove(key).is_some() {
                changed_settings.push(key.clone());
            }
        } else if settings.get(key) != Some(value) {
            settings.insert(key.clone(), value.clone());
            changed_settings.push(key.clone());
        }
    }
    def.normalize(&mut settings);
    let mut obsolete = def.obsolete_secrets(&settings, stored.secret_fields.iter());
    if !changed_settings.is_empty() {
        obsolete.extend(stored.secret_fields.iter().filter(|f| def.cached_secrets.contains(&f.as_str())).cloned());
    }
    let mut will_have: BTreeSet<String> = stored.secret_fields.iter().filter(|f| !obsolete.contains(f)).cloned().collect();
    will_have.extend(patch.secrets.keys().cloned());
    // Promise 17: a credential only goes where it went when it was stored. A new destination
    // drops every stored secret this change does not bring anew (a provider's managed key too).
    // The connection stays valid as it was (the secrets it needs are asked for again).
    let moved = def.destination_changes(&stored.settings, &settings);
    let dropped: Vec<String> = if moved.is_empty() {
        Vec::new()
    } else {
        stored.secret_fields.iter().filter(|f| !obsolete.contains(f) && !patch.secrets.contains_key(*f)).cloned().collect()
    };
    // A secret a destination change drops (now, or by an earlier change) is to be set again:
    // it does not make this change invalid. Secrets that a change newly calls for still must
    // come with it.
    let mut judged = will_have.clone();
    judged.extend(dropped.iter().cloned());
    judged.extend(def.fields.iter().filter(|f| f.secret && f.required && f.applies(&stored.settings) && f.applies(&settings)).map(|f| f.name.to_string()));
    let mut errors = name_errors;
    errors.extend(def.validate(&settings, &judged));
    errors.extend(def.refuse_managed(&patch.secrets));
    errors.extend(check_secret_values(&patch.secrets));
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let new_name = patch.name.clone().unwrap_or_else(|| stored.name.clone());
    if !new_name.eq_ignore_ascii_case(&stored.name) {
        let taken = sqlx::query("SELECT id FROM connections WHERE environment_id = $1 AND name_key = $2")
            .bind(env.id)
            .bind(new_name.to_lowercase())
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            return Err(unique_conflict(&env.name, &new_name));
        }
    }
    let t = now();
    // Settings are never secret: the audit keeps what each was and is now.
    let settings_change: Map<String, Value> = changed_settings
        .iter()
        .map(|k| (k.clone(), json!({"before": stored.settings.get(k), "after": settings.get(k)})))
        .collect();
    sqlx::query("UPDATE connections SET name = $1, name_key = $2, settings = $3, updated_by = $4, updated_at = $5 WHERE id = $6")
        .bind(&new_name)
        .bind(new_name.to_lowercase())
        .bind(Value::Object(settings).to_string())
        .bind(&actor.label)
        .bind(&t)
        .bind(stored.id)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_unique(e.into(), &env.name, &new_name))?;
    for field in obsolete.iter().chain(&dropped) {
        remove_secret(&mut tx, stored.id, field).await?;
    }
    if !moved.is_empty() {
        // Whatever was minted or signed for the old place ends with it: certificates, open
        // admin requests and their links, tokens (the key went with the other secrets above).
        if def.minting.is_some() {
            crate::certs::retire(&mut tx, stored.id).await?;
        }
    }
    if !changed_settings.is_empty() || !patch.secrets.is_empty() {
        // The latest check was of other settings: it no longer says anything about these.
        sqlx::query("DELETE FROM connection_health WHERE connection_id = $1").bind(stored.id).execute(&mut *tx).await?;
    }
    for (field, value) in &patch.secrets {
        store_secret(&mut tx, vault, &env, stored.id, field, value, &Stamp { by: &actor.label, at: &t }).await?;
    }
    let replaced: Vec<&String> = patch.secrets.keys().collect();
    let mut detail = json!({"changed_settings": changed_settings, "settings": settings_change, "replaced_secrets": replaced, "removed_secrets": obsolete});
    if new_name != stored.name {
        detail["renamed_from"] = json!(stored.name);
    }
    if !moved.is_empty() {
        // Which secrets ended because the connection now sends its credential elsewhere.
        detail["destination_changed"] = json!(moved);
        detail["dropped_secrets"] = json!(dropped);
        detail["retired_signing_key"] = json!(dropped.iter().any(|f| def.is_managed(f) && !def.cached_secrets.contains(&f.as_str())));
    }
    audit::record(&mut tx, actor, Event::new("connection.update").environment(env.id, &env.name).object("connection", &new_name).detail(detail)).await?;
    if !patch.secrets.is_empty() {
        audit::record(
            &mut tx,
            actor,
            Event::new("connection.secret_replace").environment(env.id, &env.name).object("connection", &new_name).detail(json!({"fields": replaced})),
        )
        .await?;
    }
    tx.commit().await?;
    get(db, &env.name, &new_name).await
}

/// Deletes a connection. While integrations are bound to it the delete is refused (409, naming
/// them) unless `force`: then they are unbound first, each unbinding audited, and will show as
/// needing a connection.
pub async fn delete(db: &Db, actor: &Actor, env_name: &str, name: &str, force: bool) -> Result<()> {
    let mut tx = db.begin().await?;
    let env = environments::find_in(&mut tx, env_name).await?;
    let stored = load_for_change(&mut tx, &env, name).await?;
    let bound: Vec<String> = sqlx::query("SELECT name FROM integrations WHERE connection_id = $1 ORDER BY name_key")
        .bind(stored.id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get("name"))
        .collect::<Result<_, _>>()?;
    if !bound.is_empty() && !force {
        return Err(Error::Conflict {
            code: "connection_in_use",
            message: format!(
                "{} is bound to {} in {}: {}. Bind those to another connection first, or delete with force (they will then need a connection)",
                stored.name,
                if bound.len() == 1 { "an integration".to_string() } else { format!("{} integrations", bound.len()) },
                env.name,
                bound.join(", ")
            ),
        });
    }
    if !bound.is_empty() {
        sqlx::query(
            "UPDATE integrations SET connection_id = NULL, bound_by = NULL, bound_at = NULL, updated_by = $1, updated_at = $2 WHERE connection_id = $3",
        )
        .bind(&actor.label)
        .bind(now())
        .bind(stored.id)
        .execute(&mut *tx)
        .await?;
        for integration in &bound {
            let event = Event::new("binding.remove").environment(env.id, &env.name).object("integration", integration);
            audit::record(&mut tx, actor, event.detail(json!({"connection": stored.name, "reason": "connection deleted with force"}))).await?;
        }
    }
    sqlx::query("DELETE FROM connection_secrets WHERE connection_id = $1").bind(stored.id).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM connections WHERE id = $1").bind(stored.id).execute(&mut *tx).await?;
    audit::record(
        &mut tx,
        actor,
        Event::new("connection.delete").environment(env.id, &env.name).object("connection", &stored.name).detail(json!({"provider": stored.provider})),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A secret as stored (a refresh token), with its sealed form: the version a rotation
/// compares against ([`rotate_refresh`]).
pub async fn open_refresh(db: &Db, vault: &Vault, env: &Environment, c: &Connection, field: &str) -> Result<Option<(SecretString, Vec<u8>)>> {
    let blob: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT blob FROM connection_secrets WHERE connection_id = $1 AND field = $2").bind(c.id).bind(field).fetch_optional(db.pool()).await?;
    let Some(blob) = blob else { return Ok(None) };
    match vault.open_text(&place(c.id, field, env.id), &blob) {
        Ok(value) => Ok(Some((value, blob))),
        Err(e) => {
            integrity_failure(db, (env.id, &env.name), &c.name, field, &e).await?;
            Err(Error::Seal(e))
        }
    }
}

/// Stores `new` in place of the refresh token `used` (stored as `used_blob` when it was read):
/// only if the stored one is still that one. A re-wrap under a new master key changes the blob
/// but not the value, and is followed. `false`: something newer is stored (another rotation,
/// a new sign-in) or the connection was disconnected; it stays as it is.
pub async fn rotate_refresh(
    db: &Db,
    vault: &Vault,
    env: &Environment,
    c: &Connection,
    field: &str,
    used: &SecretString,
    used_blob: &[u8],
    new: &SecretString,
    by: &str,
) -> Result<bool> {
    let place = place(c.id, field, env.id);
    let mut expected = used_blob.to_vec();
    for _ in 0..3 {
        let sealed = vault.seal(&place, new.expose_secret().as_bytes());
        let swapped = sqlx::query(
            "UPDATE connection_secrets SET blob = $1, key_id = $2, set_by = $3, updated_at = $4 WHERE connection_id = $5 AND field = $6 AND blob = $7",
        )
        .bind(sealed)
        .bind(vault.current_key_id().to_string())
        .bind(by)
        .bind(now())
        .bind(c.id)
        .bind(field)
        .bind(&expected)
        .execute(db.pool())
        .await?;
        if swapped.rows_affected() == 1 {
            return Ok(true);
        }
        match open_refresh(db, vault, env, c, field).await? {
            Some((current, blob)) if current.ct_eq(used) => expected = blob,
            _ => return Ok(false),
        }
    }
    Ok(false)
}

/// Opens one stored secret, for server-side use only (signing, the token broker, a live test).
/// A blob that fails its integrity check is audited and reported, never guessed at.
pub async fn open_secret(db: &Db, vault: &Vault, env_name: &str, name: &str, field: &str) -> Result<SecretString> {
    let env = environments::find(db, env_name).await?;
    let row = sqlx::query("SELECT c.id, s.blob FROM connections c JOIN connection_secrets s ON s.connection_id = c.id WHERE c.environment_id = $1 AND c.name_key = $2 AND s.field = $3")
        .bind(env.id)
        .bind(name.to_lowercase())
        .bind(field)
        .fetch_optional(db.pool())
        .await?
        .ok_or_else(|| Error::NotFound(format!("connection {name} in {} has no secret {field} set", env.name)))?;
    let id: i64 = row.try_get("id")?;
    let blob: Vec<u8> = row.try_get("blob")?;
    match vault.open_text(&place(id, field, env.id), &blob) {
        Ok(secret) => Ok(secret),
        Err(e) => {
            integrity_failure(db, (env.id, &env.name), name, field, &e).await?;
            Err(Error::Seal(e))
        }
    }
}

/// Logs and audits a stored secret that failed to open (in a transaction of its own).
pub(crate) async fn integrity_failure(db: &Db, (env_id, env_name): (i64, &str), name: &str, field: &str, e: &SealError) -> Result<()> {
    tracing::error!(environment = %env_name, connection = name, field, "stored secret failed to open: {e}");
    audit::record_alone(
        db,
        &Actor::system("integrity check"),
        Event::new("secret.integrity_failure")
            .outcome("failure")
            .environment(env_id, env_name)
            .object("connection", name)
            .detail(json!({"field": field, "error": e.to_string()})),
    )
    .await
}

/// The secrets people typed for `c` that apply to its settings, opened (in memory only).
pub(crate) async fn open_applicable_secrets(db: &Db, vault: &Vault, env_name: &str, c: &Connection, def: &ProviderDef) -> Result<Secrets> {
    let mut secrets = Secrets::new();
    for field in c.secrets_set.keys().filter(|f| def.field(f).is_some_and(|s| s.secret && s.applies(&c.settings))) {
        secrets.insert(field.clone(), open_secret(db, vault, env_name, &c.name, field).await?);
    }
    Ok(secrets)
}

/// Remembers the outcome of the latest live check of a connection (a test, a token mint, a
/// proxied call or a scheduled check). A change between working and failing is an event
/// (`connection.failing` with the reason and advice, `connection.recovered` with how long it
/// failed); a check that finds what the last one found is not.
pub(crate) async fn record_health(tx: &mut Tx<'_>, connection_id: i64, result: &TestResult, source: &str) -> Result<()> {
    let t = now();
    let before = sqlx::query("SELECT ok, failing_since FROM connection_health WHERE connection_id = $1").bind(connection_id).fetch_optional(&mut **tx).await?;
    let (was_ok, was_failing_since): (Option<bool>, Option<String>) = match &before {
        Some(r) => (Some(r.try_get::<i64, _>("ok")? != 0), r.try_get("failing_since")?),
        None => (None, None),
    };
    let failing_since = match (result.ok, was_ok) {
        (true, _) => None,
        (false, Some(false)) => was_failing_since.clone().or_else(|| Some(t.clone())),
        (false, _) => Some(t.clone()),
    };
    sqlx::query(
        "INSERT INTO connection_health (connection_id, ok, detail, advice, source, checked_at, failing_since) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (connection_id) DO UPDATE SET ok = excluded.ok, detail = excluded.detail, advice = excluded.advice, source = excluded.source, \
         checked_at = excluded.checked_at, failing_since = excluded.failing_since",
    )
    .bind(connection_id)
    .bind(result.ok as i64)
    .bind(&result.detail)
    .bind(&result.advice)
    .bind(source)
    .bind(&t)
    .bind(&failing_since)
    .execute(&mut **tx)
    .await?;
    let transition = match (was_ok, result.ok) {
        (Some(true) | None, false) => "connection.failing",
        (Some(false), true) => "connection.recovered",
        _ => return Ok(()),
    };
    let row = sqlx::query("SELECT c.name, c.provider, e.id AS env_id, e.name AS env FROM connections c JOIN environments e ON e.id = c.environment_id WHERE c.id = $1")
        .bind(connection_id)
        .fetch_one(&mut **tx)
        .await?;
    let (name, provider, env_id, env): (String, String, i64, String) = (row.try_get("name")?, row.try_get("provider")?, row.try_get("env_id")?, row.try_get("env")?);
    let detail = if result.ok {
        json!({"provider": provider, "source": source, "detail": result.detail, "failing_since": was_failing_since})
    } else {
        json!({"provider": provider, "source": source, "reason": result.detail, "advice": result.advice, "failing_since": failing_since})
    };
    crate::audit::record(tx, &crate::audit::Actor::system("health"), crate::audit::Event::new(transition).environment(env_id, &env).object("connection", &name).detail(detail))
        .await
}

/// The latest live check of a connection.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub ok: bool,
    pub detail: String,
    pub advice: Option<String>,
    pub checked_at: String,
    /// Since when the checks fail (none while it works).
    pub failing_since: Option<String>,
}

/// The latest live check of each of these connections (those never checked are absent).
pub async fn health_of(db: &Db, ids: &[i64]) -> Result<BTreeMap<i64, Health>> {
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let list = crate::db::id_list(ids.iter().copied());
    // `list` is integers the caller read from the database.
    let rows =
        sqlx::query(AssertSqlSafe(format!("SELECT connection_id, ok, detail, advice, checked_at, failing_since FROM connection_health WHERE connection_id IN ({list})")))
            .fetch_all(db.pool())
            .await?;
    rows.iter()
        .map(|r| {
            let health = Health {
                ok: r.try_get::<i64, _>("ok")? != 0,
                detail: r.try_get("detail")?,
                advice: r.try_get("advice")?,
                checked_at: r.try_get("checked_at")?,
                failing_since: r.try_get("failing_since")?,
            };
            Ok((r.try_get("connection_id")?, health))
        })
        .collect()
}
