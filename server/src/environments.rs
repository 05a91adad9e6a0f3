//! Environments (DEV, QA, PROD, …) in promotion order. Names match case-insensitively.

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::audit::{self, Actor, Event};
use crate::db::{now, Db, Tx};
use crate::error::{Error, FieldError, Result};
use crate::feed::{self, Feed, Filter, Listing, Page, SortKey};

pub const DEFAULTS: [&str; 3] = ["DEV", "QA", "PROD"];
pub const MAX_NAME_LEN: usize = 32;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Environment {
    pub id: i64,
    pub name: String,
    pub position: i64,
    pub allow_dev_api_keys: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// Built only from constants: safe to format into SQL.
const COLUMNS: &str = "id, name, position, allow_dev_api_keys, created_at, updated_at";

fn from_row(r: &AnyRow) -> Result<Environment> {
    Ok(Environment {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        position: r.try_get("position")?,
        allow_dev_api_keys: r.try_get::<i64, _>("allow_dev_api_keys")? != 0,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// A valid environment name: 1–32 letters, digits, `_` or `-`, starting with a letter.
pub fn validate_name(field: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::field(field, format!("an environment name is 1 to {MAX_NAME_LEN} letters, digits, _ or -, starting with a letter (e.g. UAT); got {name:?}")))
    }
}

pub async fn list(db: &Db) -> Result<Vec<Environment>> {
    let rows = sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM environments ORDER BY position, id"))).fetch_all(db.pool()).await?;
    rows.iter().map(from_row).collect()
}

/// Environments a page at a time: in promotion order, or as a change feed. `only` limits the
/// list to these ids (the ones the caller may read).
pub async fn page(db: &Db, only: Option<&[i64]>, feed: &Feed, limit: Option<i64>) -> Result<Page<Environment>> {
    const LISTING: Listing = Listing { name: "environments", columns: COLUMNS, table: "environments", order: SortKey::Int("position"), descending: false };
    let mut filter = Filter::new();
    if let Some(ids) = only {
        filter.and_in("id", ids);
    }
    feed::page(db, &LISTING, filter, feed, limit).await?.try_map(|r| from_row(&r))
}

async fn list_in(tx: &mut Tx<'_>) -> Result<Vec<Environment>> {
    let rows = sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM environments ORDER BY position, id"))).fetch_all(&mut **tx).await?;
    rows.iter().map(from_row).collect()
}

fn not_found(name: &str, known: &[Environment]) -> Error {
    let names: Vec<&str> = known.iter().map(|e| e.name.as_str()).collect();
    Error::NotFound(format!("No environment named {name}; the environments are {}", names.join(", ")))
}

/// Finds an environment by name, case-insensitively. Its 404 names no other environment: the
/// caller may not be allowed to know them (callers that know who asks use [`find_for`]).
pub async fn find(db: &Db, name: &str) -> Result<Environment> {
    let row = sqlx::query(AssertSqlSafe(format!("SELECT {COLUMNS} FROM environments WHERE name_key = $1")))
        .bind(name.to_lowercase())
        .fetch_optional(db.pool())
        .await?;
    match row {
        Some(r) => from_row(&r),
        None => Err(unknown(name, &[])),
    }
}

/// [`find`], whose 404 lists the environments `visible` says the caller may use, and no other.
pub async fn find_for(db: &Db, name: &str, visible: impl Fn(&Environment) -> bool) -> Result<Environment> {
    match find(db, name).await {
        Err(Error::NotFound(_)) => {
            let seen: Vec<Environment> = list(db).await?.into_iter().filter(|e| visible(e)).collect();
            Err(unknown(name, &seen))
        }
        other => other,
    }
}

fn unknown(name: &str, visible: &[Environment]) -> Error {
    if visible.is_empty() {
        return Error::NotFound(format!("No environment named {name} that you may use"));
    }
    let names: Vec<&str> = visible.iter().map(|e| e.name.as_str()).collect();
    Error::NotFound(format!("No environment named {name}; the environments you may use here are {}", names.join(", ")))
}

pub(crate) async fn find_in(tx: &mut Tx<'_>, name: &str) -> Result<Environment> {
    let envs = list_in(tx).await?;
    envs.iter().find(|e| e.name.eq_ignore_ascii_case(name)).cloned().ok_or_else(|| not_found(name, &envs))
}

/// Creates DEV, QA and PROD on a fresh database (called once, with the keyring check value).
pub(crate) async fn seed_defaults(tx: &mut Tx<'_>) -> Result<()> {
    let t = now();
    for (i, name) in DEFAULTS.iter().enumerate() {
        sqlx::query("INSERT INTO environments (name, name_key, position, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)")
            .bind(*name)
            .bind(name.to_lowercase())
            .bind(i as i64 + 1)
            .bind(&t)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Writes positions 1..n in the given order (only rows whose position changes).
async fn write_order(tx: &mut Tx<'_>, order: &[Environment]) -> Result<()> {
    let t = now();
    for (i, env) in order.iter().enumerate() {
        let position = i as i64 + 1;
        if env.position != position {
            sqlx::query("UPDATE environments SET position = $1, updated_at = $2 WHERE id = $3").bind(position).bind(&t).bind(env.id).execute(&mut **tx).await?;
        }
    }
    Ok(())
}

fn conflict(name: &str) -> Error {
    Error::Conflict { code: "environment_exists", message: format!("an environment named {name} already exists (names are compared without case)") }
}

/// Adds an environment. `position` is 1-based; `None` appends it at the end of the order.
pub async fn add(db: &Db, actor: &Actor, name: &str, position: Option<usize>) -> Result<Environment> {
    validate_name("name", name)?;
    let mut tx = db.begin().await?;
    let mut envs = list_in(&mut tx).await?;
    if envs.iter().any(|e| e.name.eq_ignore_ascii_case(name)) {
        return Err(conflict(name));
    }
    let at = position.unwrap_or(envs.len() + 1);
    if at == 0 || at > envs.len() + 1 {
        return Err(Error::field("position", format!("position must be from 1 to {}", envs.len() + 1)));
    }
    // Make room, then insert at the requested place.
    for env in envs.iter_mut().skip(at - 1) {
        env.position = -env.position; // force a rewrite below
    }
    let t = now();
    let id: i64 = sqlx::query("INSERT INTO environments (name, name_key, position, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) RETURNING id")
        .bind(name)
        .bind(name.to_lowercase())
        .bind(at as i64)
        .bind(&t)
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?;
    let created = Environment { id, name: name.to_string(), position: at as i64, allow_dev_api_keys: false, created_at: t.clone(), updated_at: t };
    envs.insert(at - 1, created.clone());
    write_order(&mut tx, &envs).await?;
    audit::record(&mut tx, actor, Event::new("environment.create").environment(id, name).object("environment", name).detail(json!({"position": at}))).await?;
    tx.commit().await?;
    Ok(created)
}

pub async fn rename(db: &Db, actor: &Actor, old: &str, new: &str) -> Result<Environment> {
    validate_name("new_name", new)?;
    let mut tx = db.begin().await?;
    let env = find_in(&mut tx, old).await?;
    let envs = list_in(&mut tx).await?;
    if envs.iter().any(|e| e.id != env.id && e.name.eq_ignore_ascii_case(new)) {
        return Err(conflict(new));
    }
    let t = now();
    sqlx::query("UPDATE environments SET name = $1, name_key = $2, updated_at = $3 WHERE id = $4")
        .bind(new)
        .bind(new.to_lowercase())
        .bind(&t)
        .bind(env.id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        actor,
        Event::new("environment.rename").environment(env.id, new).object("environment", new).detail(json!({"from": env.name, "to": new})),
    )
    .await?;
    tx.commit().await?;
    Ok(Environment { name: new.to_string(), updated_at: t, ..env })
}

/// Moves one environment to a 1-based position in the promotion order.
pub async fn move_to(db: &Db, actor: &Actor, name: &str, position: usize) -> Result<Vec<Environment>> {
    let mut tx = db.begin().await?;
    let env = find_in(&mut tx, name).await?;
    let mut envs = list_in(&mut tx).await?;
    if position == 0 || position > envs.len() {
        return Err(Error::field("position", format!("position must be from 1 to {}", envs.len())));
    }
    let from = envs.iter().position(|e| e.id == env.id).expect("listed");
    let moved = envs.remove(from);
    envs.insert(position - 1, moved);
    write_order(&mut tx, &envs).await?;
    audit::record(
        &mut tx,
        actor,
        Event::new("environment.reorder").environment(env.id, &env.name).object("environment", &env.name).detail(json!({"from": from + 1, "to": position})),
    )
    .await?;
    tx.commit().await?;
    list(db).await
}

/// Sets the whole promotion order at once: `names` must list every environment exactly once.
pub async fn reorder(db: &Db, actor: &Actor, names: &[String]) -> Result<Vec<Environment>> {
    let mut tx = db.begin().await?;
    let envs = list_in(&mut tx).await?;
    let mut order = Vec::with_capacity(envs.len());
    for name in names {
        let env = envs.iter().find(|e| e.name.eq_ignore_ascii_case(name)).ok_or_else(|| not_found(name, &envs))?;
        if order.iter().any(|o: &Environment| o.id == env.id) {
            return Err(Error::field("order", format!("{name} is listed twice")));
        }
        order.push(env.clone());
    }
    if order.len() != envs.len() {
        let missing: Vec<&str> = envs.iter().filter(|e| !order.iter().any(|o| o.id == e.id)).map(|e| e.name.as_str()).collect();
        return Err(Error::field("order", format!("the order must list every environment; missing: {}", missing.join(", "))));
    }
    write_order(&mut tx, &order).await?;
    let names: Vec<&str> = order.iter().map(|e| e.name.as_str()).collect();
    audit::record(&mut tx, actor, Event::new("environment.reorder").detail(json!({"order": names}))).await?;
    tx.commit().await?;
    list(db).await
}

/// Records a change of the environment's settings.
async fn setting_changed(tx: &mut Tx<'_>, actor: &Actor, env: &Environment, detail: serde_json::Value) -> Result<()> {
    let event = Event::new("environment.setting_change").environment(env.id, &env.name).object("environment", &env.name).detail(detail);
    audit::record(tx, actor, event).await
}

/// Turns the environment's "Allow developers to manage API keys" setting on or off.
pub async fn set_allow_dev_api_keys(db: &Db, actor: &Actor, name: &str, allow: bool) -> Result<Environment> {
    let mut tx = db.begin().await?;
    let env = find_in(&mut tx, name).await?;
    let t = now();
    sqlx::query("UPDATE environments SET allow_dev_api_keys = $1, updated_at = $2 WHERE id = $3")
        .bind(allow as i64)
        .bind(&t)
        .bind(env.id)
        .execute(&mut *tx)
        .await?;
    setting_changed(&mut tx, actor, &env, json!({"allow_developers_to_manage_api_keys": allow})).await?;
    tx.commit().await?;
    Ok(Environment { allow_dev_api_keys: allow, updated_at: t, ..env })
}

/// When connvault looks after an environment's connections by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Every connection is checked this often (0 = never by itself).
    pub check_every_hours: i64,
    /// A certificate's renewal starts by itself this many days before it expires (0 = never).
    pub renew_days_before: i64,
}

/// The most hours between scheduled checks (a week) and the most days of renewal ahead.
pub const MAX_CHECK_HOURS: i64 = 168;
pub const MAX_RENEW_DAYS: i64 = 90;

/// The environment's [`Schedule`].
pub async fn schedule(db: &Db, name: &str) -> Result<Schedule> {
    let env = find(db, name).await?;
    let row = sqlx::query("SELECT check_every_hours, renew_days_before FROM environments WHERE id = $1").bind(env.id).fetch_one(db.pool()).await?;
    Ok(Schedule { check_every_hours: row.try_get("check_every_hours")?, renew_days_before: row.try_get("renew_days_before")? })
}

/// Sets the environment's [`Schedule`], both values checked (every error at once).
pub async fn set_schedule(db: &Db, actor: &Actor, name: &str, new: Schedule) -> Result<Schedule> {
    let mut errors = Vec::new();
    if !(0..=MAX_CHECK_HOURS).contains(&new.check_every_hours) {
        errors.push(FieldError::new("check_every_hours", format!("check every 1 to {MAX_CHECK_HOURS} hours, or 0 to check only when someone presses Test")));
    }
    if !(0..=MAX_RENEW_DAYS).contains(&new.renew_days_before) {
        errors.push(FieldError::new(
            "renew_days_before",
            format!("start renewals 1 to {MAX_RENEW_DAYS} days before expiry, or 0 to renew only when someone presses Renew"),
        ));
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let mut tx = db.begin().await?;
    let env = find_in(&mut tx, name).await?;
    let before = sqlx::query("SELECT check_every_hours, renew_days_before FROM environments WHERE id = $1").bind(env.id).fetch_one(&mut *tx).await?;
    let before = Schedule { check_every_hours: before.try_get("check_every_hours")?, renew_days_before: before.try_get("renew_days_before")? };
    sqlx::query("UPDATE environments SET check_every_hours = $1, renew_days_before = $2, updated_at = $3 WHERE id = $4")
        .bind(new.check_every_hours)
        .bind(new.renew_days_before)
        .bind(now())
        .bind(env.id)
        .execute(&mut *tx)
        .await?;
    if before.check_every_hours != new.check_every_hours {
        // The next checks are spread over the new period.
        sqlx::query("DELETE FROM health_schedule WHERE connection_id IN (SELECT id FROM connections WHERE environment_id = $1)")
            .bind(env.id)
            .execute(&mut *tx)
            .await?;
    }
    setting_changed(&mut tx, actor, &env, json!({"before": before, "after": new})).await?;
    tx.commit().await?;
    Ok(new)
}
