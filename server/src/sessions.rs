//! Sign-in, sessions and the one-time setup link.
//!
//! A session is a random 256-bit token in an HttpOnly, SameSite=Lax cookie (Secure when the
//! public URL is https); the database keeps only its SHA-256. Sign-in failures are rate limited
//! per client address and audited, successes too.

use std::net::IpAddr;

use chrono::Duration;
use serde_json::json;
use sqlx::Row;

use crate::audit::{self, Actor, ActorKind, Event};
use crate::config::Config;
use crate::db::{format_time, now, Db, Tx};
use crate::error::{Error, Result};
use crate::links::{consume_link, create_link};
use crate::ratelimit::{Bucket, Limiter};
use crate::secret::SecretString;
use crate::tokens;
use crate::users::{self, User};

/// What sign-in, first-run setup and invitations use: the database, the failed-sign-in limits
/// (per client address and per account) and the configuration (the public URL the links point
/// at). Built by `Services::sessions`.
#[derive(Clone, Copy)]
pub struct Handles<'a> {
    pub db: &'a Db,
    pub limiter: &'a Limiter,
    pub account_limiter: &'a Limiter,
    pub config: &'a Config,
}

pub const COOKIE: &str = "cv_session";
pub const LIFETIME_HOURS: i64 = 12;
pub const SETUP_LINK_HOURS: i64 = 24;

fn anonymous(addr: Option<IpAddr>, label: &str) -> Actor {
    Actor { kind: ActorKind::User, id: None, label: label.to_string(), client_addr: addr.map(|a| a.to_string()) }
}

async fn start_session(tx: &mut Tx<'_>, user_id: i64, addr: Option<IpAddr>) -> Result<SecretString> {
    let token = tokens::generate();
    let t = now();
    sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, client_addr, expires_at, last_seen_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5, $5)",
    )
    .bind(tokens::digest(token.expose_secret()))
    .bind(user_id)
    .bind(addr.map(|a| a.to_string()))
    .bind(format_time(chrono::Utc::now() + Duration::hours(LIFETIME_HOURS)))
    .bind(&t)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE users SET last_sign_in_at = $1, updated_at = $1 WHERE id = $2").bind(&t).bind(user_id).execute(&mut **tx).await?;
    Ok(token)
}

/// How an identifier that belongs to no account is written to the audit trail: a digest, never
/// the text as typed (people type their password into the email field; and what an attacker
/// sends is theirs to choose).
pub fn unknown_account_label(email: &str) -> String {
    format!("unknown account {}", &tokens::digest(&email.trim().to_lowercase())[..16])
}

/// Signs in with email and password. Returns the user and the session token for the cookie.
///
/// The email is checked (an address of at most 254 characters) before anything is recorded.
/// Each attempt then reserves its place under the client address's and the account's failure
/// limits before Argon2 runs, so that however many arrive at once, at most the limit are
/// checked; a sign-in that succeeds gives its place back.
pub async fn sign_in(s: Handles<'_>, email: &str, password: &SecretString, addr: Option<IpAddr>) -> Result<(User, SecretString)> {
    let email = email.trim();
    if users::validate_email(email).is_err() {
        return Err(Error::field("email", "enter the email address of your account, such as alex@example.com (at most 254 characters, no spaces)"));
    }
    if password.len() > users::MAX_PASSWORD_LEN {
        return Err(Error::field("password", format!("a password has at most {} bytes", users::MAX_PASSWORD_LEN)));
    }
    let by_addr = s.limiter.reserve_addr(addr)?;
    let by_account = match s.account_limiter.reserve(&[Bucket::account(email)]) {
        Ok(r) => r,
        Err(_) => {
            by_addr.release();
            return Err(Error::Limited {
                message: format!(
                    "too many failed sign-ins to this account within 5 minutes; try again in a few minutes (at most {} are checked)",
                    s.account_limiter.max_failures()
                ),
                retry_after_secs: 300,
            });
        }
    };
    let checked = match users::check_password(&s.db, email, password).await {
        Ok(c) => c,
        Err(e) => {
            // Not a wrong password: the attempt does not count.
            by_addr.release();
            by_account.release();
            return Err(e);
        }
    };
    match checked {
        Some(user) => {
            by_addr.release();
            by_account.release();
            let mut tx = s.db.begin().await?;
            let token = start_session(&mut tx, user.id, addr).await?;
            audit::record(&mut tx, &user.actor(addr.map(|a| a.to_string())), Event::new("auth.sign_in").object("user", &user.email)).await?;
            tx.commit().await?;
            Ok((user, token))
        }
        None => {
            // The reservations stay: they are this failure.
            let known = sqlx::query("SELECT id FROM users WHERE email_key = $1").bind(email.to_lowercase()).fetch_optional(s.db.pool()).await?.is_some();
            let label = if known { email.to_string() } else { unknown_account_label(email) };
            audit::record_alone(
                &s.db,
                &anonymous(addr, &label),
                Event::new("auth.sign_in")
                    .outcome("failure")
                    .object("user", &label)
                    .detail(json!({"reason": "wrong email or password, or account deactivated"})),
            )
            .await?;
            Err(Error::Unauthorized("the email or password is not right".into()))
        }
    }
}

/// The signed-in user behind a session token, if the session is current and the account active.
pub async fn user_for(db: &Db, token: &str) -> Result<Option<User>> {
    let row =
        sqlx::query("SELECT s.user_id FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.status = 'active'")
            .bind(tokens::digest(token))
            .bind(now())
            .fetch_optional(db.pool())
            .await?;
    match row {
        Some(r) => Ok(Some(users::get(db, r.try_get("user_id")?).await?)),
        None => Ok(None),
    }
}

pub async fn sign_out(db: &Db, token: &str) -> Result<()> {
    let user = user_for(db, token).await?;
    let mut tx = db.begin().await?;
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(tokens::digest(token)).execute(&mut *tx).await?;
    if let Some(u) = user {
        audit::record(&mut tx, &u.actor(None), Event::new("auth.sign_out").object("user", &u.email)).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The `Set-Cookie` value for a new session.
pub fn cookie(token: &SecretString, secure: bool) -> String {
    format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}", token.expose_secret(), LIFETIME_HOURS * 3600, if secure { "; Secure" } else { "" })
}

pub fn clear_cookie(secure: bool) -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}", if secure { "; Secure" } else { "" })
}

/// The session token from a `Cookie` header.
pub fn token_from_cookie_header(header: &str) -> Option<&str> {
    header.split(';').map(str::trim).find_map(|kv| kv.strip_prefix(COOKIE).and_then(|rest| rest.strip_prefix('='))).filter(|v| !v.is_empty())
}

/// The session token from a request's `Cookie` headers.
pub fn token_from_headers(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers.get_all(axum::http::header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(token_from_cookie_header)
}

/// On a server with no accounts: a fresh one-time setup link (older unused ones stop working).
pub async fn setup_link_if_needed(s: Handles<'_>) -> Result<Option<String>> {
    if users::count(&s.db).await? > 0 {
        return Ok(None);
    }
    let mut tx = s.db.begin().await?;
    let token = create_link(&mut tx, "setup", None, SETUP_LINK_HOURS, "connvault (first start)").await?;
    tx.commit().await?;
    Ok(Some(format!("{}/setup?token={}", s.config.public_url, token.expose_secret())))
}

/// Completes first-run setup: the link is used, the owner account created and signed in.
pub async fn complete_setup(s: Handles<'_>, token: &str, email: &str, password: &SecretString, addr: Option<IpAddr>) -> Result<(User, SecretString)> {
    // Checked before anything is written: on SQLite a transaction dropped after a write holds
    // the write lock until its connection is used again, and the next attempt (on another
    // pooled connection) waited for it until "database is locked".
    users::validate_password("password", password)?;
    let mut tx = s.db.begin().await?;
    consume_link(&mut tx, "setup", token, None).await?;
    let existing: i64 = sqlx::query("SELECT COUNT(*) AS n FROM users").fetch_one(&mut *tx).await?.try_get("n")?;
    if existing > 0 {
        return Err(Error::Forbidden("setup is already complete; sign in instead".into()));
    }
    let actor = anonymous(addr, "setup link");
    let id = users::insert(&mut tx, &actor, email.trim(), Some(password), true).await?;
    let session = start_session(&mut tx, id, addr).await?;
    tx.commit().await?;
    Ok((users::get(&s.db, id).await?, session))
}

pub const INVITE_LINK_HOURS: i64 = 72;

/// Invites someone: an account without a password (status `invited`) and a one-time link,
/// valid for 72 hours, with which they choose their password and are signed in. Roles are set
/// separately. Returns the account and the link (shown once to whoever invited them).
pub async fn invite(s: Handles<'_>, actor: &Actor, email: &str) -> Result<(User, String)> {
    let mut tx = s.db.begin().await?;
    let id = users::insert(&mut tx, actor, email.trim(), None, false).await?;
    let token = create_link(&mut tx, "invite", Some(("user", id)), INVITE_LINK_HOURS, &actor.label).await?;
    tx.commit().await?;
    Ok((users::get(&s.db, id).await?, invite_url(s, &token)))
}

/// A fresh invitation link for an account that has not chosen a password yet (the older link
/// stops working).
pub async fn reinvite(s: Handles<'_>, actor: &Actor, user_id: i64) -> Result<String> {
    let user = users::get(&s.db, user_id).await?;
    if user.status != "invited" {
        return Err(Error::Conflict { code: "not_invited", message: format!("{} has already chosen a password; they sign in as usual", user.email) });
    }
    let mut tx = s.db.begin().await?;
    let token = create_link(&mut tx, "invite", Some(("user", user_id)), INVITE_LINK_HOURS, &actor.label).await?;
    audit::record(&mut tx, actor, Event::new("user.reinvite").object("user", &user.email)).await?;
    tx.commit().await?;
    Ok(invite_url(s, &token))
}

fn invite_url(s: Handles<'_>, token: &SecretString) -> String {
    format!("{}/welcome?token={}", s.config.public_url, token.expose_secret())
}

/// Accepts an invitation: the link is used, the password set, and the person signed in.
pub async fn accept_invite(s: Handles<'_>, token: &str, password: &SecretString, addr: Option<IpAddr>) -> Result<(User, SecretString)> {
    users::validate_password("password", password)?;
    let mut tx = s.db.begin().await?;
    let id = consume_link(&mut tx, "invite", token, None).await?.ok_or_else(|| Error::Internal("an invitation link without its account".into()))?;
    let email = users::set_first_password(&mut tx, id, password).await?;
    let actor = Actor { kind: ActorKind::User, id: Some(id), label: email.clone(), client_addr: addr.map(|a| a.to_string()) };
    audit::record(&mut tx, &actor, Event::new("user.invite_accept").object("user", &email)).await?;
    let session = start_session(&mut tx, id, addr).await?;
    tx.commit().await?;
    Ok((users::get(&s.db, id).await?, session))
}
