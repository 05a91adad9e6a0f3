//! One-time links: a random token for one purpose (first-run setup, an invitation, an admin's
//! answer to a request) and, optionally, one target, valid for some hours and used once. Only
//! the token's digest is kept.

use chrono::Duration;
use sqlx::Row;

use crate::db::{format_time, now, Db, Tx};
use crate::error::{Error, Result};
use crate::secret::SecretString;
use crate::tokens;

/// Makes a one-time link token for `purpose` (and `target`, if given) valid for `hours`; older
/// unused links for the same purpose and target stop working. Only the token's digest is kept.
pub async fn create_link(tx: &mut Tx<'_>, purpose: &str, target: Option<(&str, i64)>, hours: i64, created_by: &str) -> Result<SecretString> {
    let token = tokens::generate();
    let (kind, id) = target.unzip();
    sqlx::query("DELETE FROM one_time_links WHERE purpose = $1 AND used_at IS NULL AND COALESCE(target_kind, '') = $2 AND COALESCE(target_id, 0) = $3")
        .bind(purpose)
        .bind(kind.unwrap_or(""))
        .bind(id.unwrap_or(0))
        .execute(&mut **tx)
        .await?;
    let t = now();
    sqlx::query(
        "INSERT INTO one_time_links (purpose, token_hash, target_kind, target_id, expires_at, created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(purpose)
    .bind(tokens::digest(token.expose_secret()))
    .bind(kind)
    .bind(id)
    .bind(format_time(chrono::Utc::now() + Duration::hours(hours)))
    .bind(created_by)
    .bind(&t)
    .execute(&mut **tx)
    .await?;
    Ok(token)
}

/// Uses a one-time link inside `tx`: it must exist, serve `purpose` (and `target`, if given),
/// be unused and unexpired. Marks it used, so a second use fails.
/// Returns the link's target id, if it has one.
pub async fn consume_link(tx: &mut Tx<'_>, purpose: &str, token: &str, target: Option<(&str, i64)>) -> Result<Option<i64>> {
    let t = now();
    let row = sqlx::query("SELECT id, purpose, target_kind, target_id, expires_at, used_at FROM one_time_links WHERE token_hash = $1")
        .bind(tokens::digest(token))
        .fetch_optional(&mut **tx)
        .await?;
    let invalid = invalid_link;
    let Some(row) = row else { return Err(invalid()) };
    let id: i64 = row.try_get("id")?;
    let ok_purpose = row.try_get::<String, _>("purpose")? == purpose;
    let ok_target = match target {
        None => true,
        Some((kind, tid)) => {
            row.try_get::<Option<String>, _>("target_kind")?.as_deref() == Some(kind) && row.try_get::<Option<i64>, _>("target_id")? == Some(tid)
        }
    };
    let unused = row.try_get::<Option<String>, _>("used_at")?.is_none();
    let current = row.try_get::<String, _>("expires_at")? > t;
    if !(ok_purpose && ok_target && unused && current) {
        return Err(invalid());
    }
    let done =
        sqlx::query("UPDATE one_time_links SET used_at = $1, updated_at = $1 WHERE id = $2 AND used_at IS NULL").bind(&t).bind(id).execute(&mut **tx).await?;
    if done.rows_affected() != 1 {
        return Err(invalid());
    }
    Ok(row.try_get("target_id")?)
}

pub fn invalid_link() -> Error {
    Error::Forbidden("this link is not valid: it may have been used already, have expired, or belong to something else. Ask for a new one".into())
}

/// Checks a one-time link without using it (to show the page it opens): it must exist, serve
/// `purpose` and `target`, be unused and unexpired.
pub async fn peek_link(db: &Db, purpose: &str, token: &str, target: (&str, i64)) -> Result<()> {
    let row = sqlx::query("SELECT purpose, target_kind, target_id, expires_at, used_at FROM one_time_links WHERE token_hash = $1")
        .bind(tokens::digest(token))
        .fetch_optional(db.pool())
        .await?;
    let valid = match row {
        Some(r) => {
            r.try_get::<String, _>("purpose")? == purpose
                && r.try_get::<Option<String>, _>("target_kind")?.as_deref() == Some(target.0)
                && r.try_get::<Option<i64>, _>("target_id")? == Some(target.1)
                && r.try_get::<Option<String>, _>("used_at")?.is_none()
                && r.try_get::<String, _>("expires_at")? > now()
        }
        None => false,
    };
    if valid {
        Ok(())
    } else {
        Err(invalid_link())
    }
}

/// Ends every unused link for `purpose` and `target` (a cancelled request).
pub async fn drop_links(tx: &mut Tx<'_>, purpose: &str, target: (&str, i64)) -> Result<()> {
    sqlx::query("DELETE FROM one_time_links WHERE purpose = $1 AND used_at IS NULL AND target_kind = $2 AND target_id = $3")
        .bind(purpose)
        .bind(target.0)
        .bind(target.1)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// How many answers that failed their test a link takes before it is used up (promise 16).
pub const MAX_FAILED_ANSWERS: i64 = 5;

/// Counts a failed answer on an unused link: returns how many more answers it takes (0: it is
/// used up now, and never works again).
pub async fn fail_answer(db: &Db, purpose: &str, token: &str) -> Result<i64> {
    let t = now();
    let mut tx = db.begin().await?;
    let row = sqlx::query(
        "UPDATE one_time_links SET failed_answers = failed_answers + 1, \
         used_at = CASE WHEN failed_answers + 1 >= $1 THEN $2 ELSE used_at END, updated_at = $2 \
         WHERE token_hash = $3 AND purpose = $4 AND used_at IS NULL RETURNING failed_answers",
    )
    .bind(MAX_FAILED_ANSWERS)
    .bind(&t)
    .bind(tokens::digest(token))
    .bind(purpose)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    let failed: i64 = match row {
        Some(r) => r.try_get("failed_answers")?,
        None => MAX_FAILED_ANSWERS,
    };
    Ok((MAX_FAILED_ANSWERS - failed).max(0))
}

/// `text` as one part of a link's path or query (form-urlencoded), for the pages links open.
pub fn url_part(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
