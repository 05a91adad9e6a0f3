//! Integrations: what an app uses in an environment (a provider and the objects it touches),
//! published by release tooling or by hand, and the connection each is bound to there. A binding
//! joins an integration to a connection of the same environment and the same provider.
//!
//! Status, as the pages and the API show it: `bound` (bound, and the connection's latest live
//! check worked or none ran yet), `failing` (bound, and the latest check failed: the reason is
//! given), `needs_connection` (not bound). Beside it, `connection_state` says how far the bound
//! connection is: `not_set_up` (a setting, its secret, a certificate or a sign-in is still
//! missing: a promotion's placeholder), `not_tested`, `works` (its latest check passed) or
//! `failing`. Only `works` is good to go.

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::audit::{self, Actor, Event};
use crate::db::{now, Db, Tx};
use crate::environments::{self, Environment};
use crate::error::{Error, FieldError, Result};
use crate::feed::{self, Feed, Filter, Listing, Page, SortKey};
use crate::providers;

pub const MAX_OBJECTS: usize = 200;
pub const MAX_TEXT_LEN: usize = 500;

/// One object an integration uses, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ObjectUse {
    pub name: String,
    /// `read` or `read_write`.
    #[schema(schema_with = access_schema)]
    pub access: String,
}

fn access_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    crate::schema::json_schema(serde_json::json!({"type": "string", "enum": ["read", "read_write"]}))
}

/// As sent: an object name (read-only), or `{name, access}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ObjectInput {
    Name(String),
    Full {
        name: String,
        #[serde(default)]
        access: Option<String>,
    },
}

/// The body of `PUT /environments/{env}/integrations/{name}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    pub provider: String,
    #[serde(default)]
    pub objects: Vec<ObjectInput>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
}

crate::schema::hand_schema!(Publish, "Publish", || {
    let mut schema = serde_json::json!({"type": "object", "required": ["provider"], "additionalProperties": false});
    schema["properties"] = publish_properties();
    schema
});

/// The properties of a [`Publish`] body (also an integration's in a promotion bundle).
pub fn publish_properties() -> serde_json::Value {
    use crate::schema::WS;
    let name = serde_json::json!({"type": "string", "pattern": format!("^[{WS}]*[^{WS}]{{1,100}}[{WS}]*$")});
    let mut described = name.clone();
    described["description"] = "An object name: 1 to 100 characters without white space (surrounding white space is dropped), e.g. Account".into();
    let mut read_only = name;
    read_only["description"] = "An object name, read-only".into();
    let text = serde_json::json!({"type": ["string", "null"], "maxLength": MAX_TEXT_LEN, "description": "Blank means none"});
    serde_json::json!({
        "provider": {"type": "string", "enum": crate::providers::ids()},
        "objects": {
            "type": "array",
            "maxItems": MAX_OBJECTS,
            "uniqueItems": true,
            "description": "Each object once (names compared case-insensitively)",
            "items": {
                "oneOf": [
                    read_only,
                    {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": described, "access": {"type": "string", "enum": ["read", "read_write"], "default": "read"}}
                    }
                ]
            }
        },
        "description": text,
        "version": text
    })
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Integration {
    pub id: i64,
    pub environment: String,
    pub name: String,
    pub provider: String,
    pub objects: Vec<ObjectUse>,
    pub description: Option<String>,
    pub version: Option<String>,
    /// The bound connection's name, if bound.
    pub connection: Option<String>,
    pub bound_by: Option<String>,
    #[schema(schema_with = crate::schema::fields::optional_date_time)]
    pub bound_at: Option<String>,
    /// `bound`, `failing` or `needs_connection`.
    #[schema(schema_with = status_schema)]
    pub status: String,
    /// Why it is failing, or what it needs, in plain words.
    pub status_reason: Option<String>,
    /// How far the bound connection is (null when not bound): `not_set_up`, `not_tested`,
    /// `works` (its latest check passed) or `failing`.
    #[schema(schema_with = connection_state_schema)]
    pub connection_state: Option<String>,
    /// Since when the bound connection's checks fail (null unless failing).
    #[schema(schema_with = crate::schema::fields::optional_date_time)]
    pub failing_since: Option<String>,
    pub published_by: String,
    pub updated_by: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

fn connection_state_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    crate::schema::json_schema(serde_json::json!({"type": ["string", "null"], "enum": ["not_set_up", "not_tested", "works", "failing", null]}))
}

fn status_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    crate::schema::json_schema(serde_json::json!({"type": "string", "enum": ["bound", "failing", "needs_connection"]}))
}

/// Whether a publish created, changed or left alone the integration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Created,
    Updated,
    Unchanged,
}

pub fn validate_name(name: &str) -> Result<()> {
    if crate::connections::is_valid_name(name) {
        Ok(())
    } else {
        Err(Error::field("name", "an integration name is 1 to 100 letters, digits, _ - or ., starting with a letter or digit (e.g. Salesforce_Accounts)"))
    }
}

/// Checks a publish body and puts it in its stored form (objects in the order given).
pub(crate) fn normalize(input: &Publish) -> Result<(Vec<ObjectUse>, Option<String>, Option<String>)> {
    let mut errors = Vec::new();
    if providers::get(&input.provider).is_none() {
        errors.push(FieldError::new("provider", format!("unknown provider {:?}; use one of {}", input.provider, providers::ids().join(", "))));
    }
    if input.objects.len() > MAX_OBJECTS {
        errors.push(FieldError::new("objects", format!("at most {MAX_OBJECTS} objects")));
    }
    let mut objects: Vec<ObjectUse> = Vec::new();
    for (i, o) in input.objects.iter().enumerate() {
        let (name, access) = match o {
            ObjectInput::Name(n) => (n.trim().to_string(), "read".to_string()),
            ObjectInput::Full { name, access } => (name.trim().to_string(), access.clone().unwrap_or_else(|| "read".into())),
        };
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_whitespace) {
            errors.push(FieldError::new(format!("objects[{i}].name"), "an object name is 1 to 100 characters without spaces, e.g. Account"));
        }
        if !matches!(access.as_str(), "read" | "read_write") {
            errors.push(FieldError::new(format!("objects[{i}].access"), format!("access is read or read_write, not {access:?}")));
        }
        if objects.iter().any(|x| x.name.eq_ignore_ascii_case(&name)) {
            errors.push(FieldError::new(format!("objects[{i}].name"), format!("{name} is listed twice")));
        }
        objects.push(ObjectUse { name, access });
    }
    // The limit applies to the text as sent; blank means none.
    let text = |field: &str, v: &Option<String>, errors: &mut Vec<FieldError>| {
        if v.as_ref().is_some_and(|v| v.chars().count() > MAX_TEXT_LEN) {
            errors.push(FieldError::new(field, format!("at most {MAX_TEXT_LEN} characters")));
        }
        v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_string)
    };
    let description = text("description", &input.description, &mut errors);
    let version = text("version", &input.version, &mut errors);
    if errors.is_empty() {
        Ok((objects, description, version))
    } else {
        Err(Error::Validation(errors))
    }
}

const SELECT: &str =
    "SELECT i.id, i.environment_id, i.name, i.provider, i.objects, i.description, i.version, i.bound_by, i.bound_at, i.created_by, i.updated_by, \
                      i.created_at, i.updated_at, i.connection_id, c.name AS connection, h.ok AS health_ok, h.detail AS health_detail, \
                      h.advice AS health_advice, h.failing_since AS health_since \
                      FROM integrations i LEFT JOIN connections c ON c.id = i.connection_id \
                      LEFT JOIN connection_health h ON h.connection_id = i.connection_id";

/// The set-up stage of the connections these rows are bound to (see `connections::setup_stage`).
async fn stages(db: &Db, rows: &[AnyRow]) -> Result<std::collections::BTreeMap<i64, &'static str>> {
    let ids: Vec<i64> = rows.iter().map(|r| r.try_get::<Option<i64>, _>("connection_id")).collect::<Result<Vec<_>, _>>()?.into_iter().flatten().collect();
    crate::connections::stages_of(db, &ids).await
}

/// What the bound connection still needs, in words, by its set-up stage.
fn stage_words(stage: &str) -> &'static str {
    match stage {
        "no_certificate" => "has no certificate yet",
        "waiting_for_admin" => "waits for its admin's answer",
        "needs_sign_in" => "needs someone to sign in",
        _ => "is not set up yet (a setting or its secret is missing)",
    }
}

fn from_row(r: &AnyRow, env: &str, stages: &std::collections::BTreeMap<i64, &'static str>) -> Result<Integration> {
    let objects: String = r.try_get("objects")?;
    let connection: Option<String> = r.try_get("connection")?;
    let health: Option<i64> = r.try_get("health_ok")?;
    let stage = r.try_get::<Option<i64>, _>("connection_id")?.and_then(|id| stages.get(&id).copied());
    let (status, status_reason) = match (&connection, health) {
        (None, _) => ("needs_connection", Some(format!("bind a connection of provider {} in {env}", r.try_get::<String, _>("provider")?))),
        (Some(_), Some(0)) => {
            let detail: String = r.try_get("health_detail")?;
            let advice: Option<String> = r.try_get("health_advice")?;
            ("failing", Some(advice.map(|a| format!("{detail} {a}")).unwrap_or(detail)))
        }
        (Some(c), _) => match (stage, health) {
            (Some(stage), _) => ("bound", Some(format!("{c} {}: set it up before apps use it", stage_words(stage)))),
            (None, None) => ("bound", Some(format!("{c} has not been checked yet: test it"))),
            (None, Some(_)) => ("bound", None),
        },
    };
    let connection_state = match (&connection, stage, health) {
        (None, _, _) => None,
        (Some(_), Some(_), _) => Some("not_set_up"),
        (Some(_), None, Some(0)) => Some("failing"),
        (Some(_), None, Some(_)) => Some("works"),
        (Some(_), None, None) => Some("not_tested"),
    };
    let failing_since = if health == Some(0) { r.try_get("health_since")? } else { None };
    Ok(Integration {
        id: r.try_get("id")?,
        environment: env.to_string(),
        name: r.try_get("name")?,
        provider: r.try_get("provider")?,
        objects: serde_json::from_str(&objects).map_err(|e| Error::Internal(format!("stored objects: {e}")))?,
        description: r.try_get("description")?,
        version: r.try_get("version")?,
        connection,
        bound_by: r.try_get("bound_by")?,
        bound_at: r.try_get("bound_at")?,
        status: status.into(),
        status_reason,
        connection_state: connection_state.map(str::to_string),
        failing_since,
        published_by: r.try_get("created_by")?,
        updated_by: r.try_get("updated_by")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

pub async fn get(db: &Db, env_name: &str, name: &str) -> Result<Integration> {
    let env = environments::find(db, env_name).await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} WHERE i.environment_id = $1 AND i.name_key = $2")))
        .bind(env.id)
        .bind(name.to_lowercase())
        .fetch_optional(db.pool())
        .await?
        .ok_or_else(|| not_found(name, &env))?;
    let stages = stages(db, std::slice::from_ref(&row)).await?;
    from_row(&row, &env.name, &stages)
}

/// The connection an integration is bound to, as the token broker's hot path needs it.
#[derive(Debug, Clone)]
pub struct Bound {
    pub id: i64,
    pub name: String,
    pub provider: String,
    /// The settings as stored (JSON): read with [`Bound::settings`] where they are needed (the
    /// broker's cached path does not need them).
    pub settings_json: String,
    pub updated_at: String,
}

impl Bound {
    pub fn settings(&self) -> Result<serde_json::Map<String, serde_json::Value>> {
        match serde_json::from_str(&self.settings_json) {
            Ok(serde_json::Value::Object(settings)) => Ok(settings),
            _ => Err(Error::Internal(format!("connection {} has unreadable settings", self.id))),
        }
    }
}

/// The columns [`binding_from_row`] reads, for a query that joins `integrations i` (matched
/// by name, possibly not at all) and `LEFT JOIN connections c ON c.id = i.connection_id`.
pub(crate) const BINDING_COLUMNS: &str =
    "i.name AS integration, c.id AS c_id, c.name AS c_name, c.provider AS c_provider, c.settings AS c_settings, c.updated_at AS c_updated_at";

/// The integration's name (as published) and its connection, if bound, from a row selected
/// with [`BINDING_COLUMNS`]; no integration in the row means `requested` is not published.
pub(crate) fn binding_from_row(row: &AnyRow, env: &Environment, requested: &str) -> Result<(String, Option<Bound>)> {
    let Some(integration) = row.try_get::<Option<String>, _>("integration")? else { return Err(not_found(requested, env)) };
    let bound = match row.try_get::<Option<i64>, _>("c_id")? {
        Some(id) => {
            Some(Bound {
                id,
                name: row.try_get("c_name")?,
                provider: row.try_get("c_provider")?,
                settings_json: row.try_get("c_settings")?,
                updated_at: row.try_get("c_updated_at")?,
            })
        }
        None => None,
    };
    Ok((integration, bound))
}

/// An integration's name (as published) and its connection, if bound: one read.
pub async fn resolve(db: &Db, env: &Environment, name: &str) -> Result<(String, Option<Bound>)> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {BINDING_COLUMNS} FROM integrations i LEFT JOIN connections c ON c.id = i.connection_id WHERE i.environment_id = $1 AND i.name_key = $2"
    )))
    .bind(env.id)
    .bind(name.to_lowercase())
    .fetch_optional(db.pool())
    .await?
    .ok_or_else(|| not_found(name, env))?;
    binding_from_row(&row, env, name)
}

fn not_found(name: &str, env: &Environment) -> Error {
    Error::NotFound(format!("no integration named {name} is published in {}", env.name))
}

const LISTING: Listing =
    Listing { name: "integrations", columns: "id, name_key, updated_at", table: "integrations", order: SortKey::Text("name_key"), descending: false };

/// An environment's integrations, by name or as a change feed, with their binding status.
pub async fn list(db: &Db, env_name: &str, feed: &Feed, limit: Option<i64>) -> Result<Page<Integration>> {
    let env = environments::find(db, env_name).await?;
    let mut filter = Filter::new();
    filter.and("environment_id = ?", [env.id.into()]);
    feed::page_then_load(db, &LISTING, filter, feed, limit, |list| async move {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} WHERE i.id IN ({list})"))).fetch_all(db.pool()).await?;
        let stages = stages(db, &rows).await?;
        rows.iter().map(|r| from_row(r, &env.name, &stages).map(|i| (i.id, i))).collect()
    })
    .await
}

/// Publishes (creates or updates) an integration. Publishing the same thing again changes
/// nothing and writes nothing. A bound integration cannot change provider: unbind it first.
pub async fn publish(db: &Db, actor: &Actor, env_name: &str, name: &str, input: &Publish) -> Result<(Integration, Change)> {
    validate_name(name)?;
    let (objects, description, version) = normalize(input)?;
    let objects_json = serde_json::to_string(&objects).map_err(|e| Error::Internal(e.to_string()))?;
    let mut tx = db.begin().await?;
    let env = environments::find_in(&mut tx, env_name).await?;
    let existing =
        sqlx::query("SELECT id, provider, objects, description, version, connection_id FROM integrations WHERE environment_id = $1 AND name_key = $2")
            .bind(env.id)
            .bind(name.to_lowercase())
            .fetch_optional(&mut *tx)
            .await?;
    let t = now();
    let change = match existing {
        None => {
            sqlx::query(
                "INSERT INTO integrations (environment_id, name, name_key, provider, objects, description, version, created_by, updated_by, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $9)",
            )
            .bind(env.id)
            .bind(name)
            .bind(name.to_lowercase())
            .bind(&input.provider)
            .bind(&objects_json)
            .bind(&description)
            .bind(&version)
            .bind(&actor.label)
            .bind(&t)
            .execute(&mut *tx)
            .await?;
            let detail = json!({"provider": input.provider, "objects": objects, "version": version});
            audit::record(&mut tx, actor, Event::new("integration.publish").environment(env.id, &env.name).object("integration", name).detail(detail)).await?;
            Change::Created
        }
        Some(row) => {
            let id: i64 = row.try_get("id")?;
            let provider: String = row.try_get("provider")?;
            let same = provider == input.provider
                && row.try_get::<String, _>("objects")? == objects_json
                && row.try_get::<Option<String>, _>("description")? == description
                && row.try_get::<Option<String>, _>("version")? == version;
            if same {
                Change::Unchanged
            } else {
                if provider != input.provider && row.try_get::<Option<i64>, _>("connection_id")?.is_some() {
                    return Err(Error::Conflict {
                        code: "integration_bound",
                        message: format!(
                            "{name} in {} is bound to a {provider} connection; unbind it before changing its provider to {}",
                            env.name, input.provider
                        ),
                    });
                }
                sqlx::query(
                    "UPDATE integrations SET provider = $1, objects = $2, description = $3, version = $4, updated_by = $5, updated_at = $6 WHERE id = $7",
                )
                .bind(&input.provider)
                .bind(&objects_json)
                .bind(&description)
                .bind(&version)
                .bind(&actor.label)
                .bind(&t)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                let detail = json!({"provider": input.provider, "objects": objects, "version": version});
                audit::record(&mut tx, actor, Event::new("integration.update").environment(env.id, &env.name).object("integration", name).detail(detail))
                    .await?;
                Change::Updated
            }
        }
    };
    tx.commit().await?;
    Ok((get(db, &env.name, name).await?, change))
}

/// Unpublishes an integration (its binding goes with it).
pub async fn unpublish(db: &Db, actor: &Actor, env_name: &str, name: &str) -> Result<()> {
    let mut tx = db.begin().await?;
    let env = environments::find_in(&mut tx, env_name).await?;
    let (id, stored_name, _) = load(&mut tx, &env, name).await?;
    sqlx::query("DELETE FROM integrations WHERE id = $1").bind(id).execute(&mut *tx).await?;
    audit::record(&mut tx, actor, Event::new("integration.unpublish").environment(env.id, &env.name).object("integration", &stored_name)).await?;
    tx.commit().await?;
    Ok(())
}

async fn load(tx: &mut Tx<'_>, env: &Environment, name: &str) -> Result<(i64, String, String)> {
    let row = sqlx::query("SELECT id, name, provider FROM integrations WHERE environment_id = $1 AND name_key = $2")
        .bind(env.id)
        .bind(name.to_lowercase())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| not_found(name, env))?;
    Ok((row.try_get("id")?, row.try_get("name")?, row.try_get("provider")?))
}

/// The name of the connection integration `id` is bound to now, if any.
async fn bound_name(tx: &mut Tx<'_>, id: i64) -> Result<Option<String>> {
    let row = sqlx::query("SELECT c.name FROM integrations i JOIN connections c ON c.id = i.connection_id WHERE i.id = $1").bind(id).fetch_optional(&mut **tx).await?;
    Ok(row.map(|r| r.try_get("name")).transpose()?)
}

/// Binds an integration to a connection of the same environment and provider (else 422).
pub async fn bind(db: &Db, actor: &Actor, env_name: &str, name: &str, connection: &str) -> Result<Integration> {
    let mut tx = db.begin().await?;
    let env = environments::find_in(&mut tx, env_name).await?;
    let (id, stored_name, provider) = load(&mut tx, &env, name).await?;
    let row = sqlx::query("SELECT id, name, provider FROM connections WHERE environment_id = $1 AND name_key = $2")
        .bind(env.id)
        .bind(connection.to_lowercase())
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else {
        return Err(Error::field(
            "connection",
            format!("there is no connection named {connection} in {}; a binding joins things of one environment", env.name),
        ));
    };
    let (cid, cname, cprovider): (i64, String, String) = (row.try_get("id")?, row.try_get("name")?, row.try_get("provider")?);
    let previous = bound_name(&mut tx, id).await?;
    if cprovider != provider {
        return Err(Error::field("connection", format!("{cname} is a {cprovider} connection; {stored_name} needs a {provider} connection")));
    }
    let t = now();
    sqlx::query("UPDATE integrations SET connection_id = $1, bound_by = $2, bound_at = $3, updated_by = $2, updated_at = $3 WHERE id = $4")
        .bind(cid)
        .bind(&actor.label)
        .bind(&t)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let event = Event::new("binding.set").environment(env.id, &env.name).object("integration", &stored_name);
    audit::record(&mut tx, actor, event.detail(json!({"connection": cname, "previous": previous}))).await?;
    tx.commit().await?;
    get(db, &env.name, &stored_name).await
}

/// Removes an integration's binding; it then needs a connection.
pub async fn unbind(db: &Db, actor: &Actor, env_name: &str, name: &str) -> Result<Integration> {
    let mut tx = db.begin().await?;
    let env = environments::find_in(&mut tx, env_name).await?;
    let (id, stored_name, _) = load(&mut tx, &env, name).await?;
    let previous = bound_name(&mut tx, id).await?;
    let t = now();
    let done = sqlx::query(
        "UPDATE integrations SET connection_id = NULL, bound_by = NULL, bound_at = NULL, updated_by = $1, updated_at = $2 WHERE id = $3 AND connection_id IS NOT NULL",
    )
    .bind(&actor.label)
    .bind(&t)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 1 {
        let event = Event::new("binding.remove").environment(env.id, &env.name).object("integration", &stored_name);
        audit::record(&mut tx, actor, event.detail(json!({"connection": previous}))).await?;
    }
    tx.commit().await?;
    get(db, &env.name, &stored_name).await
}

/// One integration in one environment of the overview grid.
#[derive(Debug, Clone, Serialize)]
pub struct OverviewCell {
    pub status: String,
    pub connection_state: Option<String>,
    pub reason: Option<String>,
    pub connection: Option<String>,
    pub failing_since: Option<String>,
}

/// One row of the overview grid: an integration name and its status in each environment
/// (`None`: not published there).
#[derive(Debug, Clone, Serialize)]
pub struct OverviewRow {
    pub name: String,
    pub provider: String,
    pub cells: Vec<Option<OverviewCell>>,
}

/// Integrations × environments (in promotion order), each cell the binding status there.
pub async fn overview(db: &Db, envs: &[Environment]) -> Result<Vec<OverviewRow>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} ORDER BY i.name_key"))).fetch_all(db.pool()).await?;
    let stages = stages(db, &rows).await?;
    let mut out: Vec<OverviewRow> = Vec::new();
    for r in &rows {
        let env_id: i64 = r.try_get("environment_id")?;
        let Some(col) = envs.iter().position(|e| e.id == env_id) else { continue };
        let i = from_row(r, &envs[col].name, &stages)?;
        let key = i.name.to_lowercase();
        let row = match out.iter_mut().find(|o| o.name.to_lowercase() == key) {
            Some(row) => row,
            None => {
                out.push(OverviewRow { name: i.name.clone(), provider: i.provider.clone(), cells: vec![None; envs.len()] });
                out.last_mut().expect("just pushed")
            }
        };
        row.cells[col] = Some(OverviewCell {
            status: i.status,
            connection_state: i.connection_state,
            reason: i.status_reason,
            connection: i.connection,
            failing_since: i.failing_since,
        });
    }
    Ok(out)
}
