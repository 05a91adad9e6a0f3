//! Live checks: "Test connection" for a connection of any provider, and an admin's answer to
//! a request, tested at once. Above the certificate lifecycle (`signing`), which makes the
//! minted providers' checks, and the connections, whose static providers check themselves.

use serde_json::json;
use sqlx::Row;

use crate::audit::{self, Actor, Event};
use crate::connections;
use crate::environments;
use crate::error::Result;
use crate::outcome::TestResult;
use crate::secret::SecretString;
use crate::signing::{self, AdminAnswer, Handles};

/// "Test connection": runs the provider's live check with the stored settings and secrets, and
/// audits it (`connection.test`, outcome `ok` or `failed`). The secrets are opened only in
/// memory; the result and the audit record are scrubbed of them. A check that ran and failed
/// is `Ok` with `ok: false`; an unknown connection is `NotFound`. If the audit record cannot be
/// written, the result is withheld and this fails (fail closed).
pub async fn test(s: Handles<'_>, actor: &Actor, env_name: &str, name: &str) -> Result<TestResult> {
    let env = environments::find(s.db, env_name).await?;
    let c = connections::get(s.db, &env.name, name).await?;
    let (result, used) = run(s, actor, &env, &c).await?;
    let mut tx = s.db.begin().await?;
    connections::record_health(&mut tx, c.id, &result, "test").await?;
    audit::record(
        &mut tx,
        actor,
        Event::new("connection.test")
            .outcome(if result.ok { "ok" } else { "failed" })
            .environment(env.id, &env.name)
            .object("connection", &c.name)
            .detail(json!({"provider": c.provider, "ok": result.ok, "detail": result.detail, "secrets_used": used})),
    )
    .await?;
    tx.commit().await?;
    Ok(result)
}

/// The scheduled check of connection `connection_id` (the health job): the same live check as
/// "Test connection", remembered as the connection's health; only a change between working and
/// failing is an event (see `connections::record_health`). A connection deleted meanwhile is
/// no error.
pub async fn scheduled(s: Handles<'_>, connection_id: i64) -> Result<Option<TestResult>> {
    let row = sqlx::query("SELECT c.name, e.name AS env FROM connections c JOIN environments e ON e.id = c.environment_id WHERE c.id = $1")
        .bind(connection_id)
        .fetch_optional(s.db.pool())
        .await?;
    let Some(row) = row else { return Ok(None) };
    let (name, env_name): (String, String) = (row.try_get("name")?, row.try_get("env")?);
    let env = environments::find(s.db, &env_name).await?;
    let c = connections::get(s.db, &env.name, &name).await?;
    // Not set up yet (a placeholder): not failing, waiting for its people; not checked.
    if !connections::provider(&c.provider)?.setup_missing(&c.settings, &c.secrets_set.keys().cloned().collect()).is_empty() {
        return Ok(None);
    }
    let (result, _) = run(s, &Actor::system("scheduled check"), &env, &c).await?;
    let mut tx = s.db.begin().await?;
    connections::record_health(&mut tx, c.id, &result, "schedule").await?;
    tx.commit().await?;
    Ok(Some(result))
}

/// Runs the provider's live check with the stored settings and secrets: the result, scrubbed
/// of the secrets (opened only in memory), and the names of the secrets used.
async fn run(s: Handles<'_>, actor: &Actor, env: &environments::Environment, c: &connections::Connection) -> Result<(TestResult, Vec<String>)> {
    let (db, vault, outbound) = (s.db, s.vault, s.outbound);
    let def = connections::provider(&c.provider)?;
    let secrets = connections::open_applicable_secrets(db, vault, &env.name, c, def).await?;
    let missing = def.setup_missing(&c.settings, &c.secrets_set.keys().cloned().collect());
    let result = match def.test {
        // Nothing to call yet (a placeholder promotion created): say what it lacks.
        _ if !missing.is_empty() => TestResult {
            ok: false,
            detail: format!("{} is not set up in {} yet", c.name, env.name),
            advice: Some(format!("{} on the connection's page, then test again", crate::providers::setup_advice(&missing))),
        },
        _ if def.minting_for(&c.settings).is_some() => signing::live_check(s, actor, env, c, &secrets).await?,
        Some(check) => check(outbound, &c.settings, &secrets).await,
        None => TestResult { ok: false, detail: format!("{} connections have no live check yet", def.label), advice: None },
    };
    let values: Vec<&str> = secrets.values().map(SecretString::expose_secret).collect();
    Ok((result.scrubbed(&values), secrets.keys().cloned().collect()))
}

/// The admin's answer through the one-time link (see [`signing::take_answer`]), tested at once,
/// so the admin learns whether it works; the test decides whether the link is used up
/// ([`signing::settle`]).
pub async fn answer(s: Handles<'_>, env_name: &str, name: &str, answer: &AdminAnswer, addr: Option<std::net::IpAddr>) -> Result<TestResult> {
    let taken = signing::take_answer(s, env_name, name, answer, addr).await?;
    let result = test(s, &taken.actor, &taken.environment, &taken.connection).await?;
    signing::settle(s, &taken, &answer.token, result).await
}

/// The admin's credentials through the one-time link (see
/// [`crate::credential_requests::take_answer`]), tested at once, so the admin learns whether
/// they work; the test decides whether the link is used up ([`signing::settle`]).
pub async fn answer_credentials(
    s: Handles<'_>,
    env_name: &str,
    name: &str,
    answer: &crate::credential_requests::CredentialAnswer,
    addr: Option<std::net::IpAddr>,
) -> Result<TestResult> {
    let taken = crate::credential_requests::take_answer(s, env_name, name, answer, addr).await?;
    let result = test(s, &taken.actor, &taken.environment, &taken.connection).await?;
    signing::settle(s, &taken, &answer.token, result).await
}

/// What the provider shows about the other side (`ProviderDef::details`: Workato's
/// collaborators), read with the stored credential: the table, or why it cannot be read (in
/// the provider's words, scrubbed of the secrets). Each read is audited (`connection.details`),
/// like a test. 409 for a provider that shows nothing.
pub async fn details(s: Handles<'_>, actor: &Actor, env_name: &str, name: &str) -> Result<std::result::Result<crate::providers::Details, TestResult>> {
    let env = environments::find(s.db, env_name).await?;
    let c = connections::get(s.db, &env.name, name).await?;
    let def = connections::provider(&c.provider)?;
    let read = def.details.ok_or_else(|| crate::error::Error::Conflict { code: "no_details", message: format!("{} connections show no details", def.label) })?;
    let secrets = connections::open_applicable_secrets(s.db, s.vault, &env.name, &c, def).await?;
    let values: Vec<&str> = secrets.values().map(SecretString::expose_secret).collect();
    let outcome = read(s.outbound, &c.settings, &secrets).await.map_err(|r| r.scrubbed(&values));
    audit::record_alone(
        s.db,
        actor,
        Event::new("connection.details")
            .outcome(if outcome.is_ok() { "ok" } else { "failed" })
            .environment(env.id, &env.name)
            .object("connection", &c.name)
            .detail(json!({"provider": def.id, "rows": outcome.as_ref().map(|d| d.rows.len()).ok()})),
    )
    .await?;
    Ok(outcome)
}
