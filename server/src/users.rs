//! People: accounts with Argon2id passwords, owners, and a role in each environment.

use std::collections::BTreeMap;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::audit::{self, Actor, ActorKind, Event};
use crate::db::{now, Db, Tx};
use crate::environments;
use crate::error::{Error, Result};
use crate::feed::{self, Feed, Filter, Listing, Page, SortKey};
use crate::secret::SecretString;

pub const MIN_PASSWORD_LEN: usize = 12;
pub const MAX_PASSWORD_LEN: usize = 1024;

/// A role in one environment, from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Developer,
    Administrator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Developer => "developer",
            Role::Administrator => "administrator",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "developer" => Some(Role::Developer),
            "administrator" => Some(Role::Administrator),
            _ => None,
        }
    }
}

/// A signed-in person as the rest of the server sees them.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub is_owner: bool,
    pub status: String,
    pub last_sign_in_at: Option<String>,
    /// Environment name → role.
    pub roles: BTreeMap<String, Role>,
    pub created_at: String,
    pub updated_at: String,
}

impl User {
    pub fn actor(&self, client_addr: Option<String>) -> Actor {
        Actor { kind: ActorKind::User, id: Some(self.id), label: self.email.clone(), client_addr }
    }

    /// The role in `environment` (owners are administrators everywhere).
    pub fn role_in(&self, environment: &str) -> Option<Role> {
        if self.is_owner {
            return Some(Role::Administrator);
        }
        self.roles.iter().find(|(env, _)| env.eq_ignore_ascii_case(environment)).map(|(_, r)| *r)
    }
}

pub fn validate_email(email: &str) -> Result<()> {
    let ok = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.rsplit_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.'));
    if ok {
        Ok(())
    } else {
        Err(Error::field("email", "enter an email address such as alex@example.com"))
    }
}

pub fn validate_password(field: &str, password: &SecretString) -> Result<()> {
    let n = password.expose_secret().chars().count();
    if n < MIN_PASSWORD_LEN {
        return Err(Error::field(field, format!("use at least {MIN_PASSWORD_LEN} characters (a few words make a good password)")));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(Error::field(field, format!("use at most {MAX_PASSWORD_LEN} bytes")));
    }
    Ok(())
}

/// Argon2id with the crate's recommended parameters (19 MiB, 2 passes), random salt.
pub fn hash_password(password: &SecretString) -> Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| Error::Internal(format!("random source: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(Argon2::default().hash_password(password.expose_secret().as_bytes(), &salt).map_err(|e| Error::Internal(e.to_string()))?.to_string())
}

fn verify_hash(hash: &str, password: &SecretString) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(password.expose_secret().as_bytes(), &parsed).is_ok())
}

/// Argon2 runs at most this many at once, on the blocking pool: a burst of sign-ins waits its
/// turn instead of occupying the async workers that serve every other request (the token
/// broker's included).
const ARGON2_AT_ONCE: usize = 2;
static ARGON2_TURNS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(ARGON2_AT_ONCE);

/// Runs `work` (Argon2) on the blocking pool, once a turn is free.
async fn run_argon2<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let _turn = ARGON2_TURNS.acquire().await.map_err(|e| Error::Internal(format!("argon2 turns: {e}")))?;
    tokio::task::spawn_blocking(work).await.map_err(|e| Error::Internal(format!("argon2 task: {e}")))
}

/// [`hash_password`] on the blocking pool.
pub async fn hash_password_blocking(password: &SecretString) -> Result<String> {
    let password = password.clone();
    run_argon2(move || hash_password(&password)).await?
}

async fn verify_blocking(hash: String, password: &SecretString) -> Result<bool> {
    let password = password.clone();
    run_argon2(move || verify_hash(&hash, &password)).await
}

/// `status` is `active`, `invited` (no password chosen yet) or `deactivated`.
const COLUMNS: &str = "id, email, email_key, is_owner, CASE WHEN status = 'active' AND password_hash IS NULL THEN 'invited' ELSE status END AS status, \
     last_sign_in_at, created_at, updated_at";

async fn from_row(db: &Db, r: &AnyRow) -> Result<User> {
    let id: i64 = r.try_get("id")?;
    Ok(User {
        id,
        email: r.try_get("email")?,
        is_owner: r.try_get::<i64, _>("is_owner")? != 0,
        status: r.try_get("status")?,
        last_sign_in_at: r.try_get("last_sign_in_at")?,
        roles: roles_of(db, id).await?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

pub async fn roles_of(db: &Db, user_id: i64) -> Result<BTreeMap<String, Role>> {
    let rows = sqlx::query("SELECT e.name, r.role FROM user_roles r JOIN environments e ON e.id = r.environment_id WHERE r.user_id = $1")
        .bind(user_id)
        .fetch_all(db.pool())
        .await?;
    rows.iter()
        .map(|r| {
            let role: String = r.try_get("role")?;
            Ok((r.try_get("name")?, Role::parse(&role).ok_or_else(|| Error::Internal(format!("unknown role {role:?}")))?))
        })
        .collect()
}

pub async fn count(db: &Db) -> Result<i64> {
    Ok(sqlx::query("SELECT COUNT(*) AS n FROM users").fetch_one(db.pool()).await?.try_get("n")?)
}

pub async fn get(db: &Db, id: i64) -> Result<User> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM users WHERE id = $1")))
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .ok_or_else(|| Error::NotFound(format!("no user with id {id}")))?;
    from_row(db, &row).await
}

pub async fn list(db: &Db) -> Result<Vec<User>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM users ORDER BY email_key"))).fetch_all(db.pool()).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(from_row(db, r).await?);
    }
    Ok(out)
}

/// Accounts a page at a time: by email, or as a change feed.
pub async fn page(db: &Db, feed: &Feed, limit: Option<i64>) -> Result<Page<User>> {
    const LISTING: Listing = Listing { name: "users", columns: COLUMNS, table: "users", order: SortKey::Text("email_key"), descending: false };
    let page = feed::page(db, &LISTING, Filter::new(), feed, limit).await?;
    let mut items = Vec::with_capacity(page.items.len());
    for r in &page.items {
        items.push(from_row(db, r).await?);
    }
    Ok(Page { items, next_cursor: page.next_cursor })
}

/// Creates an account inside `tx` (used by setup, the command line and invitations). Without a
/// password the account is `invited`: nobody can sign in to it until its invitation is used.
pub(crate) async fn insert(tx: &mut Tx<'_>, actor: &Actor, email: &str, password: Option<&SecretString>, owner: bool) -> Result<i64> {
    validate_email(email)?;
    if let Some(p) = password {
        validate_password("password", p)?;
    }
    let taken = sqlx::query("SELECT id FROM users WHERE email_key = $1").bind(email.to_lowercase()).fetch_optional(&mut **tx).await?;
    if taken.is_some() {
        return Err(Error::Conflict { code: "user_exists", message: format!("an account for {email} already exists") });
    }
    let t = now();
    let id: i64 =
        sqlx::query("INSERT INTO users (email, email_key, password_hash, is_owner, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5) RETURNING id")
            .bind(email)
            .bind(email.to_lowercase())
            .bind(match password {
                Some(p) => Some(hash_password_blocking(p).await?),
                None => None,
            })
            .bind(owner as i64)
            .bind(&t)
            .fetch_one(&mut **tx)
            .await?
            .try_get("id")?;
    audit::record(tx, actor, Event::new("user.create").object("user", email).detail(json!({"owner": owner}))).await?;
    Ok(id)
}

pub async fn create(db: &Db, actor: &Actor, email: &str, password: &SecretString, owner: bool) -> Result<User> {
    let mut tx = db.begin().await?;
    let id = insert(&mut tx, actor, email, Some(password), owner).await?;
    tx.commit().await?;
    get(db, id).await
}

async fn email_of(tx: &mut Tx<'_>, user_id: i64) -> Result<String> {
    Ok(sqlx::query("SELECT email FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no user with id {user_id}")))?
        .try_get("email")?)
}

/// Sets (or, with `None`, removes) a user's role in an environment.
pub async fn set_role(db: &Db, actor: &Actor, user_id: i64, environment: &str, role: Option<Role>) -> Result<User> {
    let mut tx = db.begin().await?;
    let env = environments::find_in(&mut tx, environment).await?;
    let email = email_of(&mut tx, user_id).await?;
    let previous: Option<String> =
        sqlx::query_scalar("SELECT role FROM user_roles WHERE user_id = $1 AND environment_id = $2").bind(user_id).bind(env.id).fetch_optional(&mut *tx).await?;
    sqlx::query("DELETE FROM user_roles WHERE user_id = $1 AND environment_id = $2").bind(user_id).bind(env.id).execute(&mut *tx).await?;
    if let Some(role) = role {
        let t = now();
        sqlx::query("INSERT INTO user_roles (user_id, environment_id, role, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)")
            .bind(user_id)
            .bind(env.id)
            .bind(role.as_str())
            .bind(&t)
            .execute(&mut *tx)
            .await?;
    }
    // The roles are part of the account as lists and feeds show it.
    sqlx::query("UPDATE users SET updated_at = $1 WHERE id = $2").bind(now()).bind(user_id).execute(&mut *tx).await?;
    audit::record(
        &mut tx,
        actor,
        Event::new("user.role_set").environment(env.id, &env.name).object("user", &email).detail(json!({"role": role.map(Role::as_str), "previous": previous})),
    )
    .await?;
    tx.commit().await?;
    get(db, user_id).await
}

/// Checks an email and password. Unknown emails cost the same Argon2 work as wrong passwords.
pub async fn check_password(db: &Db, email: &str, password: &SecretString) -> Result<Option<User>> {
    let row = sqlx::query("SELECT id, password_hash, status FROM users WHERE email_key = $1").bind(email.to_lowercase()).fetch_optional(db.pool()).await?;
    let Some(row) = row else {
        // Equalize timing with a real verification against a fixed hash.
        static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let password = password.clone();
        let _ = run_argon2(move || {
            let dummy = DUMMY.get_or_init(|| hash_password(&SecretString::from("connvault-dummy-password")).unwrap_or_default());
            verify_hash(dummy, &password)
        })
        .await?;
        return Ok(None);
    };
    let hash: Option<String> = row.try_get("password_hash")?;
    let status: String = row.try_get("status")?;
    let verified = match hash {
        Some(h) => verify_blocking(h, password).await?,
        None => false,
    };
    if !verified || status != "active" {
        return Ok(None);
    }
    Ok(Some(get(db, row.try_get("id")?).await?))
}

/// Changes a password after checking the current one; ends the user's other sessions.
pub async fn change_password(db: &Db, user: &User, current: &SecretString, new: &SecretString, keep_session: Option<&str>) -> Result<()> {
    if check_password(db, &user.email, current).await?.is_none() {
        return Err(Error::field("current_password", "the current password is not right"));
    }
    validate_password("new_password", new)?;
    let mut tx = db.begin().await?;
    sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
        .bind(hash_password_blocking(new).await?)
        .bind(now())
        .bind(user.id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2")
        .bind(user.id)
        .bind(keep_session.map(crate::tokens::digest).unwrap_or_default())
        .execute(&mut *tx)
        .await?;
    audit::record(&mut tx, &user.actor(None), Event::new("user.password_change").object("user", &user.email)).await?;
    tx.commit().await?;
    Ok(())
}

/// Sets the password of an invited account inside `tx` (its invitation link was just used).
pub(crate) async fn set_first_password(tx: &mut Tx<'_>, user_id: i64, password: &SecretString) -> Result<String> {
    validate_password("password", password)?;
    let email = email_of(tx, user_id).await?;
    let done = sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3 AND password_hash IS NULL AND status = 'active'")
        .bind(hash_password_blocking(password).await?)
        .bind(now())
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    if done.rows_affected() != 1 {
        return Err(Error::Forbidden(format!("the invitation for {email} was already accepted or the account is deactivated; sign in instead")));
    }
    Ok(email)
}

/// Deactivates an account: its sessions end at once. The last active owner cannot be
/// deactivated (nobody could manage people and environments any more).
///
/// The check and the change are one atomic step, so that two owners deactivating each other at
/// the same moment cannot leave none: on PostgreSQL the active owners' rows are locked first (in
/// id order, so two such transactions queue rather than deadlock); on SQLite the change is the
/// transaction's first statement, which takes the database's write lock. Then the account is
/// changed, and the transaction rolls back if no active owner remains.
pub async fn deactivate(db: &Db, actor: &Actor, user_id: i64) -> Result<()> {
    let mut tx = db.begin().await?;
    if db.backend() == crate::db::Backend::Postgres {
        sqlx::query("SELECT id FROM users WHERE is_owner = 1 AND status = 'active' ORDER BY id FOR UPDATE").fetch_all(&mut *tx).await?;
    }
    let done = sqlx::query("UPDATE users SET status = 'deactivated', updated_at = $1 WHERE id = $2").bind(now()).bind(user_id).execute(&mut *tx).await?;
    if done.rows_affected() == 0 {
        return Err(Error::NotFound(format!("no user with id {user_id}")));
    }
    let email = email_of(&mut tx, user_id).await?;
    let row = sqlx::query("SELECT is_owner, (SELECT COUNT(*) FROM users WHERE is_owner = 1 AND status = 'active') AS owners FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?;
    if row.try_get::<i64, _>("is_owner")? != 0 && row.try_get::<i64, _>("owners")? < 1 {
        tx.rollback().await?;
        return Err(Error::Conflict {
            code: "last_owner",
            message: format!("{email} is the only active owner; make someone else an owner before deactivating this account"),
        });
    }
    sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
    audit::record(&mut tx, actor, Event::new("user.deactivate").object("user", &email)).await?;
    tx.commit().await?;
    Ok(())
}

/// Lets a deactivated account sign in again (with its old password; sessions start fresh).
pub async fn reactivate(db: &Db, actor: &Actor, user_id: i64) -> Result<()> {
    let mut tx = db.begin().await?;
    let email = email_of(&mut tx, user_id).await?;
    sqlx::query("UPDATE users SET status = 'active', updated_at = $1 WHERE id = $2").bind(now()).bind(user_id).execute(&mut *tx).await?;
    audit::record(&mut tx, actor, Event::new("user.reactivate").object("user", &email)).await?;
    tx.commit().await?;
    Ok(())
}
