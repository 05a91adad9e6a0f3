//! Renewing a certificate before it expires, in one step: a pending certificate and a new admin
//! request with its link (the current certificate keeps working until the new one has, as
//! every rotation in `crate::signing`). [`renew`] is the handler of the job the expiry scan
//! enqueues `renew_days_before` days before expiry (`crate::expiry::RENEW_JOB`); whoever
//! presses "Renew" gets the same through `signing::issue_certificate` with `send_request`.

use serde_json::json;
use sqlx::Row;

use crate::audit::{self, Actor, Event};
use crate::error::{Error, Result};
use crate::signing::{self, Handles, IssueRequest};

/// What [`renew`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Renewed {
    /// A pending certificate was issued and the admin request sent.
    Started,
    /// A pending certificate was there already without a request: the request was sent.
    RequestSent,
    /// Nothing to do: the certificate is no longer the one in use, or its renewal is under way
    /// (a pending certificate with an open request).
    Nothing,
}

/// Renews certificate `certificate_id` by itself (the actor is connvault's "automatic
/// renewal"). A renewal that cannot start (no admin's email known, the connection not set up)
/// is recorded as a failed `certificate.renew` with what to do, and the error returned.
pub async fn renew(s: Handles<'_>, certificate_id: i64) -> Result<Renewed> {
    let row = sqlx::query(
        "SELECT s.state, s.connection_id, c.name AS connection, e.id AS env_id, e.name AS env FROM certificates s \
         JOIN connections c ON c.id = s.connection_id JOIN environments e ON e.id = c.environment_id WHERE s.id = $1",
    )
    .bind(certificate_id)
    .fetch_optional(s.db.pool())
    .await?;
    let Some(row) = row else { return Ok(Renewed::Nothing) };
    let (state, connection_id, name, env_id, env): (String, i64, String, i64, String) =
        (row.try_get("state")?, row.try_get("connection_id")?, row.try_get("connection")?, row.try_get("env_id")?, row.try_get("env")?);
    if state != "active" {
        return Ok(Renewed::Nothing);
    }
    let pending = sqlx::query("SELECT id FROM certificates WHERE connection_id = $1 AND state = 'pending'")
        .bind(connection_id)
        .fetch_optional(s.db.pool())
        .await?
        .is_some();
    let open = sqlx::query("SELECT id FROM admin_requests WHERE connection_id = $1 AND state = 'open' AND kind = 'certificate'")
        .bind(connection_id)
        .fetch_optional(s.db.pool())
        .await?
        .is_some();
    let actor = Actor::system("automatic renewal");
    let done = match (pending, open) {
        (true, true) => return Ok(Renewed::Nothing),
        (true, false) => signing::request_admin_help(s, &actor, &env, &name, None).await.map(|_| Renewed::RequestSent),
        (false, _) => signing::issue_certificate(s, &actor, &env, &name, IssueRequest { key_bits: None, admin_email: None, send_request: true })
            .await
            .map(|_| Renewed::Started),
    };
    if let Err(e) = &done {
        if !transient(e) {
            let mut tx = s.db.begin().await?;
            audit::record(
                &mut tx,
                &actor,
                Event::new("certificate.renew")
                    .outcome("failure")
                    .environment(env_id, &env)
                    .object("connection", &name)
                    .detail(json!({"certificate_id": certificate_id, "reason": e.public_message()})),
            )
            .await?;
            tx.commit().await?;
        }
    }
    done
}

/// Whether trying the renewal again later can help (a mail limit, a database that was busy), as
/// opposed to a setting people must fix (recorded by [`renew`]).
pub fn transient(e: &Error) -> bool {
    matches!(e, Error::Limited { .. } | Error::Database(_) | Error::Internal(_))
}
