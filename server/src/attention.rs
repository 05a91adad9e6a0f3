//! "What needs attention" in each environment, for the home page: failing connections,
//! certificates expiring within 30 days, admin requests waiting for an answer, integrations
//! without a connection, and webhooks that fail or were disabled. Each item says what it is,
//! what is wrong, and the page where it is fixed.

use serde::Serialize;
use sqlx::Row;

use crate::db::Db;
use crate::error::Result;

/// One thing to look at.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Item {
    pub environment: String,
    /// `failing`, `expiring`, `waiting_for_admin`, `needs_connection`, `webhook_failing`.
    pub kind: &'static str,
    /// The connection, integration or webhook URL.
    pub object: String,
    /// What is wrong, in words.
    pub detail: String,
    /// The page where it is fixed.
    pub path: String,
}

fn connection_path(env: &str, name: &str) -> String {
    format!("/env/{}/connections/{}", crate::links::url_part(env), crate::links::url_part(name))
}

/// Everything that needs attention in these environments (ids the caller may read): the most
/// urgent kinds first, each kind in promotion order.
pub async fn items(db: &Db, environment_ids: &[i64]) -> Result<Vec<Item>> {
    if environment_ids.is_empty() {
        return Ok(Vec::new());
    }
    // `list` is integers the caller read from the database.
    let list = crate::db::id_list(environment_ids.iter().copied());
    let mut out = Vec::new();
    let q = |sql: String| sqlx::query(sqlx::AssertSqlSafe(sql));

    for r in q(format!(
        "SELECT e.name AS env, c.name, h.detail, h.advice, h.failing_since FROM connection_health h JOIN connections c ON c.id = h.connection_id \
         JOIN environments e ON e.id = c.environment_id WHERE h.ok = 0 AND c.environment_id IN ({list}) ORDER BY e.position, c.name"
    ))
    .fetch_all(db.pool())
    .await?
    {
        let (env, name, detail, advice, since): (String, String, String, Option<String>, Option<String>) =
            (r.try_get("env")?, r.try_get("name")?, r.try_get("detail")?, r.try_get("advice")?, r.try_get("failing_since")?);
        let since = since.map(|s| format!(" (failing since {} UTC)", s.get(..16).unwrap_or(&s).replace('T', " "))).unwrap_or_default();
        let advice = advice.map(|a| format!(": {a}")).unwrap_or_default();
        out.push(Item { path: connection_path(&env, &name), environment: env, kind: "failing", object: name, detail: format!("{detail}{since}{advice}") });
    }
    for e in crate::signing::expiring(db, environment_ids).await? {
        let when = e.not_after.get(..10).unwrap_or(&e.not_after).to_string();
        out.push(Item {
            path: connection_path(&e.environment, &e.connection),
            environment: e.environment,
            kind: "expiring",
            object: e.connection,
            detail: format!("its certificate expires on {when}: renew it (issue a new certificate and send the admin request)"),
        });
    }
    for r in q(format!(
        "SELECT e.name AS env, c.name, r.admin_email, r.created_at, o.delivery FROM admin_requests r JOIN connections c ON c.id = r.connection_id \
         JOIN environments e ON e.id = c.environment_id LEFT JOIN outbox o ON o.id = r.outbox_id \
         WHERE r.state = 'open' AND c.environment_id IN ({list}) ORDER BY e.position, c.name"
    ))
    .fetch_all(db.pool())
    .await?
    {
        let (env, name, to, at, delivery): (String, String, String, String, Option<String>) =
            (r.try_get("env")?, r.try_get("name")?, r.try_get("admin_email")?, r.try_get("created_at")?, r.try_get("delivery")?);
        let mail = match delivery.as_deref() {
            Some("outbox") => "; the email is not sent (no mail server): pass it on from the Outbox",
            Some("failed") => "; the email could not be delivered: send the request again",
            Some("queued") => "; the email is not delivered yet",
            _ => "",
        };
        out.push(Item {
            path: connection_path(&env, &name),
            environment: env,
            kind: "waiting_for_admin",
            object: name,
            detail: format!("waiting for {to}, asked on {}{mail}", at.get(..10).unwrap_or(&at)),
        });
    }
    for r in q(format!(
        "SELECT e.name AS env, i.name FROM integrations i JOIN environments e ON e.id = i.environment_id \
         WHERE i.connection_id IS NULL AND i.environment_id IN ({list}) ORDER BY e.position, i.name"
    ))
    .fetch_all(db.pool())
    .await?
    {
        let (env, name): (String, String) = (r.try_get("env")?, r.try_get("name")?);
        out.push(Item {
            path: format!("/env/{}/integrations", crate::links::url_part(&env)),
            environment: env,
            kind: "needs_connection",
            object: name,
            detail: "no connection is bound: apps get no token for it here".into(),
        });
    }
    for r in q(format!(
        "SELECT e.name AS env, w.url, w.failing_since, w.enabled, w.disabled_reason FROM webhooks w JOIN environments e ON e.id = w.environment_id \
         WHERE (w.failing_since IS NOT NULL OR (w.enabled = 0 AND w.disabled_reason IS NOT NULL)) AND w.environment_id IN ({list}) ORDER BY e.position, w.id"
    ))
    .fetch_all(db.pool())
    .await?
    {
        let (env, url, since, enabled, reason): (String, String, Option<String>, i64, Option<String>) =
            (r.try_get("env")?, r.try_get("url")?, r.try_get("failing_since")?, r.try_get("enabled")?, r.try_get("disabled_reason")?);
        let detail = match (enabled, reason, since) {
            (0, Some(reason), _) => reason,
            (_, _, Some(since)) => format!("every delivery fails since {} UTC", since.get(..16).unwrap_or(&since).replace('T', " ")),
            _ => continue,
        };
        out.push(Item { path: format!("/env/{}/webhooks", crate::links::url_part(&env)), environment: env, kind: "webhook_failing", object: url, detail });
    }
    Ok(out)
}
