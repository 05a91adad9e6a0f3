//! Expiry warnings: a certificate in use that expires within 30 days is announced at 30, 14, 7
//! and 1 days before, once each (table `expiry_warnings`, so several servers or a scan run
//! again after a crash send nothing twice): an email to whoever set the connection up and to
//! the environment's administrators (owners included), and a `certificate.expiring` event
//! (which webhooks carry). The scan is a job ([`SCAN_JOB`]) the scheduler enqueues hourly.

use serde_json::json;
use sqlx::Row;

use crate::audit::{self, Actor, Event};
use crate::db::{format_time, now, Db};
use crate::error::Result;
use crate::mail::{escape_html, Email, Mailer};
use crate::seal::Vault;

pub const SCAN_JOB: &str = "expiry.scan";
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

/// One scan: every warning now due is recorded, emailed and announced; returns how many.
pub async fn scan(db: &Db, vault: &Vault, mailer: &Mailer, public_url: &str) -> Result<usize> {
    let t = chrono::Utc::now();
    let rows = sqlx::query(
        "SELECT s.id, s.not_after, c.name AS connection, c.created_by, e.id AS env_id, e.name AS env FROM certificates s \
         JOIN connections c ON c.id = s.connection_id JOIN environments e ON e.id = c.environment_id \
         WHERE s.state = 'active' AND s.not_after > $1 AND s.not_after <= $2 ORDER BY s.not_after",
    )
    .bind(format_time(t))
    .bind(format_time(t + chrono::Duration::days(THRESHOLDS[0])))
    .fetch_all(db.pool())
    .await?;
    let mut sent = 0;
    for r in &rows {
        let (id, not_after, connection, created_by, env_id, env): (i64, String, String, String, i64, String) =
            (r.try_get("id")?, r.try_get("not_after")?, r.try_get("connection")?, r.try_get("created_by")?, r.try_get("env_id")?, r.try_get("env")?);
        let Ok(expires) = chrono::DateTime::parse_from_rfc3339(&not_after) else { continue };
        let seconds = (expires.with_timezone(&chrono::Utc) - t).num_seconds();
        let days_left = (seconds + 86_399) / 86_400;
        let Some(days) = threshold(days_left) else { continue };
        let mut tx = db.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO expiry_warnings (object_kind, object_id, expires_at, days, created_at) VALUES ('certificate', $1, $2, $3, $4) \
             ON CONFLICT (object_kind, object_id, expires_at, days) DO NOTHING",
        )
        .bind(id)
        .bind(&not_after)
        .bind(days)
        .bind(now())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            continue;
        }
        let mut to: Vec<String> = sqlx::query_scalar(
            "SELECT u.email FROM users u WHERE u.status = 'active' AND (u.is_owner = 1 OR EXISTS \
             (SELECT 1 FROM user_roles r WHERE r.user_id = u.id AND r.environment_id = $1 AND r.role = 'administrator')) ORDER BY u.email",
        )
        .bind(env_id)
        .fetch_all(&mut *tx)
        .await?;
        if is_address(&created_by) && !to.iter().any(|a| a.eq_ignore_ascii_case(&created_by)) {
            to.insert(0, created_by.clone());
        }
        let page = format!("{}/env/{}/connections/{}", public_url.trim_end_matches('/'), crate::links::url_part(&env), crate::links::url_part(&connection));
        let day_word = if days_left == 1 { "day" } else { "days" };
        let text = format!(
            "The certificate of the connection {connection} in {env} expires on {} UTC, in {days_left} {day_word}.\n\n\
             After that, the system refuses connvault's tokens for {connection} and the apps bound to it stop working.\n\n\
             Renew it on {page}: issue a new certificate and send the admin request. The current certificate keeps working until the new one has.\n",
            &not_after[..16].replace('T', " "),
        );
        let html = format!("<p>{}</p>", escape_html(&text).replace("\n\n", "</p><p>"));
        for address in &to {
            let email = Email {
                to: address.clone(),
                subject: format!("connvault: the certificate of {connection} in {env} expires in {days_left} {day_word}"),
                text: text.clone(),
                html: html.clone(),
                attachments: Vec::new(),
            };
            mailer.queue(&mut tx, vault, &email).await?;
        }
        audit::record(
            &mut tx,
            &Actor::system("expiry warnings"),
            Event::new("certificate.expiring")
                .environment(env_id, &env)
                .object("connection", &connection)
                .detail(json!({"not_after": not_after, "days_left": days_left, "warning": days, "emailed": to})),
        )
        .await?;
        tx.commit().await?;
        sent += 1;
    }
    if sent > 0 {
        crate::jobs::wake(crate::mail::MAIL_JOB);
    }
    Ok(sent)
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
