//! Expiry warnings: a certificate in use, or a typed secret whose expiry is known (the
//! provider's `secret_expiry` setting, such as an Entra client secret's date), that expires
//! within 30 days is announced at 30, 14, 7 and 1 days before, once each (table
//! `expiry_warnings`, so several servers or a scan run again after a crash send nothing twice):
//! an email to whoever set the connection up and to the environment's administrators (owners
//! included), and a `certificate.expiring` or `secret.expiring` event (which webhooks carry).
//!
//! In an environment whose `renew_days_before` is set, the scan also starts the renewal of a
//! certificate that many days before it expires, once: a [`crate::renewal`] job issues the
//! pending certificate and sends the admin request. The scan is a job ([`SCAN_JOB`]) the
//! scheduler enqueues every 10 minutes.

use serde_json::{json, Map, Value};
use sqlx::Row;

use crate::audit::{self, Actor, Event};
use crate::db::{format_time, now, Db};
use crate::error::Result;
use crate::mail::{escape_html, Email, Mailer};
use crate::seal::Vault;

pub const SCAN_JOB: &str = "expiry.scan";
/// The job that renews one certificate (payload `{"certificate_id": N}`), run by
/// `crate::renewal`.
pub const RENEW_JOB: &str = "certificate.renew";
/// Days before expiry at which a warning goes out.
pub const THRESHOLDS: [i64; 4] = [30, 14, 7, 1];

/// The warning a certificate with `days_left` is due, if any: the smallest threshold it has
/// reached.
pub fn threshold(days_left: i64) -> Option<i64> {
    THRESHOLDS.iter().copied().filter(|t| days_left <= *t).min()
}

fn is_address(label: &str) -> bool {
    label.contains('@') && !label.contains(char::is_whitespace)
}

/// Something of a connection's that runs out.
struct Expiring {
    /// `certificate` (its id is the certificate's) or `secret` (the connection's).
    kind: &'static str,
    id: i64,
    /// RFC 3339.
    expires_at: String,
    connection: String,
    created_by: String,
    env_id: i64,
    env: String,
    /// The environment's `renew_days_before` (certificates; 0 = never by itself).
    renew_days: i64,
}

/// Active certificates expiring within `days`.
async fn certificates(db: &Db, t: chrono::DateTime<chrono::Utc>, days: i64) -> Result<Vec<Expiring>> {
    let rows = sqlx::query(
        "SELECT s.id, s.not_after, c.name AS connection, c.created_by, e.id AS env_id, e.name AS env, e.renew_days_before FROM certificates s \
         JOIN connections c ON c.id = s.connection_id JOIN environments e ON e.id = c.environment_id \
         WHERE s.state = 'active' AND s.not_after > $1 AND s.not_after <= $2 ORDER BY s.not_after",
    )
    .bind(format_time(t))
    .bind(format_time(t + chrono::Duration::days(days)))
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Expiring {
                kind: "certificate",
                id: r.try_get("id")?,
                expires_at: r.try_get("not_after")?,
                connection: r.try_get("connection")?,
                created_by: r.try_get("created_by")?,
                env_id: r.try_get("env_id")?,
                env: r.try_get("env")?,
                renew_days: r.try_get("renew_days_before")?,
            })
        })
        .collect()
}

/// Typed secrets in use whose expiry date (the provider's `secret_expiry` setting) is within
/// 30 days. The date is taken as its first moment, UTC.
async fn secrets(db: &Db, t: chrono::DateTime<chrono::Utc>) -> Result<Vec<Expiring>> {
    let mut found = Vec::new();
    for def in crate::providers::REGISTRY.iter() {
        let Some(setting) = def.secret_expiry else { continue };
        let rows = sqlx::query(
            "SELECT c.id, c.name, c.settings, c.created_by, e.id AS env_id, e.name AS env FROM connections c JOIN environments e ON e.id = c.environment_id \
             WHERE c.provider = $1 ORDER BY c.id",
        )
        .bind(def.id)
        .fetch_all(db.pool())
        .await?;
        for r in &rows {
            let settings: Map<String, Value> = serde_json::from_str(&r.try_get::<String, _>("settings")?).unwrap_or_default();
            if !(def.auth_mode)(&settings).uses_typed_secret() {
                continue;
            }
            let Some(date) = settings.get(setting).and_then(Value::as_str).and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()) else {
                continue;
            };
            let at = date.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
            if at <= t || at > t + chrono::Duration::days(THRESHOLDS[0]) {
                continue;
            }
            found.push(Expiring {
                kind: "secret",
                id: r.try_get("id")?,
                expires_at: format_time(at),
                connection: r.try_get("name")?,
                created_by: r.try_get("created_by")?,
                env_id: r.try_get("env_id")?,
                env: r.try_get("env")?,
                renew_days: 0,
            });
        }
    }
    Ok(found)
}

/// One scan: every warning now due is recorded, emailed and announced, and every renewal now
/// due enqueued; returns how many warnings went out.
pub async fn scan(db: &Db, vault: &Vault, mailer: &Mailer, public_url: &str) -> Result<usize> {
    let t = chrono::Utc::now();
    let renew_window: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(renew_days_before), 0) FROM environments").fetch_one(db.pool()).await?;
    let mut items = certificates(db, t, THRESHOLDS[0].max(renew_window)).await?;
    items.extend(secrets(db, t).await?);
    let mut sent = 0;
    let mut renewals = 0;
    for item in &items {
        let Ok(expires) = chrono::DateTime::parse_from_rfc3339(&item.expires_at) else { continue };
        let seconds = (expires.with_timezone(&chrono::Utc) - t).num_seconds();
        let days_left = (seconds + 86_399) / 86_400;
        if item.renew_days > 0 && days_left <= item.renew_days && start_renewal(db, item).await? {
            renewals += 1;
        }
        let Some(days) = threshold(days_left) else { continue };
        if warn(db, vault, mailer, public_url, item, days, days_left).await? {
            sent += 1;
        }
    }
    if sent > 0 {
        crate::jobs::wake(crate::mail::MAIL_JOB);
    }
    if renewals > 0 {
        crate::jobs::wake(RENEW_JOB);
    }
    Ok(sent)
}

/// Records that `what` (a warning's kind, or `renewal`) was done for object `id` expiring at
/// `expires_at`, `days` before; false when it had been already (by this or another server).
async fn mark(tx: &mut crate::db::Tx<'_>, what: &str, id: i64, expires_at: &str, days: i64) -> Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO expiry_warnings (object_kind, object_id, expires_at, days, created_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (object_kind, object_id, expires_at, days) DO NOTHING",
    )
    .bind(what)
    .bind(id)
    .bind(expires_at)
    .bind(days)
    .bind(now())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(inserted > 0)
}

/// Enqueues the renewal of a certificate, once per certificate; whether it was enqueued now.
async fn start_renewal(db: &Db, item: &Expiring) -> Result<bool> {
    let mut tx = db.begin().await?;
    if !mark(&mut tx, "renewal", item.id, &item.expires_at, item.renew_days).await? {
        return Ok(false);
    }
    crate::jobs::enqueue_at(&mut tx, RENEW_JOB, &json!({"certificate_id": item.id}), &now(), Some(&format!("renew:{}", item.id))).await?;
    tx.commit().await?;
    Ok(true)
}

/// Records, emails and announces the warning `days` for `item`, unless it went out already.
async fn warn(db: &Db, vault: &Vault, mailer: &Mailer, public_url: &str, item: &Expiring, days: i64, days_left: i64) -> Result<bool> {
    let Expiring { kind, id, expires_at, connection, created_by, env_id, env, renew_days } = item;
    let mut tx = db.begin().await?;
    if !mark(&mut tx, kind, *id, expires_at, days).await? {
        return Ok(false);
    }
    let mut to: Vec<String> = sqlx::query_scalar(
        "SELECT u.email FROM users u WHERE u.status = 'active' AND (u.is_owner = 1 OR EXISTS \
         (SELECT 1 FROM user_roles r WHERE r.user_id = u.id AND r.environment_id = $1 AND r.role = 'administrator')) ORDER BY u.email",
    )
    .bind(env_id)
    .fetch_all(&mut *tx)
    .await?;
    if is_address(created_by) && !to.iter().any(|a| a.eq_ignore_ascii_case(created_by)) {
        to.insert(0, created_by.clone());
    }
    let page = format!("{}/env/{}/connections/{}", public_url.trim_end_matches('/'), crate::links::url_part(env), crate::links::url_part(connection));
    let day_word = if days_left == 1 { "day" } else { "days" };
    let (what, todo) = if *kind == "certificate" {
        let by_itself =
            if *renew_days > 0 { format!(" In {env}, connvault starts the renewal by itself {renew_days} days before expiry.") } else { String::new() };
        (
            "certificate",
            format!("Renew it on {page}: issue a new certificate and send the admin request. The current certificate keeps working until the new one has.{by_itself}"),
        )
    } else {
        (
            "client secret",
            format!("Ask the system's admin for a new secret before then (Request credentials on {page}), or enter a new one there with its new expiry date."),
        )
    };
    let text = format!(
        "The {what} of the connection {connection} in {env} expires on {} UTC, in {days_left} {day_word}.\n\n\
         After that, the system refuses connvault's tokens for {connection} and the apps bound to it stop working.\n\n{todo}\n",
        &expires_at[..16].replace('T', " "),
    );
    let html = format!("<p>{}</p>", escape_html(&text).replace("\n\n", "</p><p>"));
    for address in &to {
        let email = Email {
            to: address.clone(),
            subject: format!("connvault: the {what} of {connection} in {env} expires in {days_left} {day_word}"),
            text: text.clone(),
            html: html.clone(),
            attachments: Vec::new(),
        };
        mailer.queue(&mut tx, vault, &email).await?;
    }
    let action = format!("{kind}.expiring");
    audit::record(
        &mut tx,
        &Actor::system("expiry warnings"),
        Event::new(&action)
            .environment(*env_id, env)
            .object("connection", connection)
            .detail(json!({"expires_at": expires_at, "days_left": days_left, "warning": days, "emailed": to})),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_threshold_reached_is_due() {
        assert_eq!(threshold(45), None);
        assert_eq!(threshold(30), Some(30));
        assert_eq!(threshold(20), Some(30));
        assert_eq!(threshold(14), Some(14));
        assert_eq!(threshold(8), Some(14));
        assert_eq!(threshold(7), Some(7));
        assert_eq!(threshold(1), Some(1));
        assert!(is_address("dev@acme.com") && !is_address("api key release"));
    }
}
