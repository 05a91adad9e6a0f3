//! Connecting by signing in (OAuth 2.0 authorization code with PKCE S256, RFC 6749 4.1 and
//! RFC 7636), for every provider with an `Authorization`; nothing here names one.
//!
//! - `GET /connect/{env}/{name}` ([`start`]): a signed-in person who may change the connection
//!   is sent to the provider's authorize URL with a fresh `state` and PKCE challenge. The state
//!   is bound to that person's browser session and to the connection (its id and version),
//!   is single use, and ends after [`STATE_MINUTES`]; only its digest is stored, and the PKCE
//!   verifier is sealed.
//! - `GET /oauth/callback` ([`finish`]): the state is checked (same session, not used, not
//!   expired, connection unchanged) and spent, the code redeemed with the verifier, whom the
//!   token acts as checked (the provider's verify call), and only then the refresh token is
//!   sealed, in one transaction with the access token, the connection's latest check and the
//!   audit record. The person lands back on the connection page, which shows the outcome.
//! - Refresh runs in the broker's mint (`signing::mint`, under its per-connection lock); a
//!   rotated refresh token replaces the stored one only if the stored one is still the one
//!   that was used ([`rotate_refresh`], a compare-and-swap on the sealed value), so a
//!   superseded refresh never overwrites a newer sign-in or rotation.
//! - [`disconnect`] revokes the refresh token at the provider (RFC 7009) where it has an
//!   endpoint, and forgets the tokens.

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row;
use subtle::ConstantTimeEq;

use crate::access::{self, Access, Resource};
use crate::audit::{self, Actor, Event};
use crate::config::Config;
use crate::connections::{self, Connection};
pub use crate::connections::{open_refresh, rotate_refresh};
use crate::db::{format_time, now, Db};
use crate::environments::{self, Environment};
use crate::error::{Error, Result};
use crate::oauth;
use crate::providers::{self, Authorization, ProviderDef, TestResult};
use crate::seal::Place;
use crate::sessions;
use crate::signing::Handles;
use crate::tokens;
use crate::users::User;

/// A sign-in must come back within this many minutes.
pub const STATE_MINUTES: i64 = 10;
const STATES_TABLE: &str = "oauth_states";

/// `PUBLIC_URL/oauth/callback`: what the provider's app must name as its redirect URI.
pub fn callback_url(config: &Config) -> String {
    format!("{}/oauth/callback", config.public_url.trim_end_matches('/'))
}

/// The connection page a person lands on after signing in.
pub fn connection_page(env: &str, name: &str) -> String {
    format!("/env/{}/connections/{}", url_part(env), url_part(name))
}

/// A path segment: everything but RFC 3986's unreserved characters escaped.
fn url_part(text: &str) -> String {
    const PART: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    percent_encoding::utf8_percent_encode(text, PART).to_string()
}

/// The provider and its sign-in of a connection whose settings choose it (409 otherwise).
pub fn authorization_of(c: &Connection) -> Result<(&'static ProviderDef, &'static Authorization)> {
    let def = providers::get(&c.provider).ok_or_else(|| Error::Internal(format!("unknown provider {}", c.provider)))?;
    match def.authorization.filter(|_| (def.auth_mode)(&c.settings).signs_in()) {
        Some(a) => Ok((def, a)),
        None => {
            let why = if def.authorization.is_some() {
                format!("{} uses another flow (its auth setting); set auth to the sign-in flow first", c.name)
            } else {
                format!("{} is a {} connection, which does not connect by signing in", c.name, def.label)
            };
            let which: Vec<&str> = providers::REGISTRY.iter().filter(|d| d.authorization.is_some()).map(|d| d.label).collect();
            Err(Error::Conflict { code: "not_sign_in", message: format!("{why}; signing in connects {} connections", providers::and_list(&which)) })
        }
    }
}

fn verifier_place(c: &Connection, env: &Environment) -> Place<'static> {
    Place { table: STATES_TABLE, row: c.id, field: "code_verifier", environment: env.id }
}

/// What a connection still needs before someone can sign in: its settings, its typed secrets,
/// what the provider wants first (a consumer key).
fn not_ready_to_sign_in(def: &ProviderDef, c: &Connection, env: &Environment, auth: &Authorization) -> Option<String> {
    let set: std::collections::BTreeSet<String> = c.secrets_set.keys().cloned().collect();
    let mut missing = def.setup_missing(&c.settings, &set);
    let unset: Vec<_> =
        def.typed_secrets(&c.settings).into_iter().filter(|f| f.required && !set.contains(f.name) && !missing.iter().any(|m| m.name == f.name)).collect();
    missing.extend(unset);
    if !missing.is_empty() {
        return Some(format!("{} in {} is not set up yet: {}, then choose {}", c.name, env.name, providers::setup_advice(&missing), auth.button));
    }
    let ready = def.minting_for(&c.settings).and_then(|m| (m.not_ready)(&c.settings));
    ready.map(|(detail, advice)| format!("{} in {} cannot sign in yet: {detail}; {advice}", c.name, env.name))
}

/// `GET /connect/{env}/{name}`: the authorize URL to send the person to, with the sign-in
/// remembered for the callback. `session` is the person's session cookie value.
pub async fn start(s: Handles<'_>, user: &User, session: &str, env_name: &str, name: &str) -> Result<String> {
    let env = environments::find(s.db, env_name).await?;
    if !access::user_allows(user, &env.name, env.allow_dev_api_keys, Resource::Connections, Access::Write) {
        return Err(Error::Forbidden(format!(
            "you may not change connections in {}, and connecting stores a credential in {name}: ask someone who may to connect it",
            env.name
        )));
    }
    let c = connections::get(s.db, &env.name, name).await?;
    let (def, auth) = authorization_of(&c)?;
    if let Some(why) = not_ready_to_sign_in(def, &c, &env, auth) {
        return Err(Error::Conflict { code: "not_ready", message: why });
    }
    let request = (auth.request)(&c.settings);
    let state = tokens::generate();
    let verifier = oauth::new_verifier();
    let redirect_uri = callback_url(s.config);
    let location =
        oauth::authorize_url(&request.authorize_url, &request.client_id, &redirect_uri, &request.scopes, state.expose_secret(), &verifier, &request.extra)
            .map_err(|e| Error::Conflict { code: "not_ready", message: format!("{name} cannot sign in: {e}") })?;
    let t = now();
    let mut tx = s.db.begin().await?;
    // Sign-ins that ended a day ago are of no further use.
    sqlx::query("DELETE FROM oauth_states WHERE expires_at < $1").bind(format_time(chrono::Utc::now() - chrono::Duration::days(1))).execute(&mut *tx).await?;
    sqlx::query(
        "INSERT INTO oauth_states (state_hash, connection_id, connection_stamp, session_hash, user_id, verifier, redirect_uri, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(tokens::digest(state.expose_secret()))
    .bind(c.id)
    .bind(&c.updated_at)
    .bind(tokens::digest(session))
    .bind(user.id)
    .bind(s.vault.seal(&verifier_place(&c, &env), verifier.expose_secret().as_bytes()))
    .bind(&redirect_uri)
    .bind(format_time(chrono::Utc::now() + chrono::Duration::minutes(STATE_MINUTES)))
    .bind(&t)
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        &user.actor(None),
        Event::new("connection.sign_in_start").environment(env.id, &env.name).object("connection", &c.name).detail(json!({
            "provider": c.provider, "authorize_url": request.authorize_url, "scopes": request.scopes
        })),
    )
    .await?;
    tx.commit().await?;
    Ok(location)
}

/// What the provider sent to the callback.
#[derive(Debug, Default, Deserialize)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// Where a callback ends.
#[derive(Debug)]
pub enum Finished {
    /// Back to the connection page (`location`), which shows the outcome of sign-in `id`.
    Back { location: String, result: TestResult },
    /// A refusal before the sign-in is known to be this person's: a page of its own, with the
    /// status and the reason.
    Refused { status: u16, message: String },
}

/// `GET /oauth/callback`: finishes the sign-in whose `state` came back, for the person whose
/// session cookie is `session`.
pub async fn finish(s: Handles<'_>, session: Option<&str>, q: &CallbackQuery, addr: Option<String>) -> Result<Finished> {
    let refused = |status: u16, message: &str| Ok(Finished::Refused { status, message: message.to_string() });
    let Some(state) = q.state.as_deref().filter(|s| !s.is_empty() && s.len() <= 512) else {
        return refused(
            400,
            "This is where a sign-in comes back to connvault, but the address has no state: start from the connection page (Connect), not from a bookmark.",
        );
    };
    let row = sqlx::query(
        "SELECT o.id, o.connection_id, o.connection_stamp, o.session_hash, o.user_id, o.verifier, o.redirect_uri, o.expires_at, o.used_at, \
         c.name AS connection, e.name AS environment FROM oauth_states o JOIN connections c ON c.id = o.connection_id \
         JOIN environments e ON e.id = c.environment_id WHERE o.state_hash = $1",
    )
    .bind(tokens::digest(state))
    .fetch_optional(s.db.pool())
    .await?;
    let Some(row) = row else {
        return refused(
            400,
            "connvault does not know this sign-in (it was not started here, or its connection was deleted): start again from the connection page.",
        );
    };
    let id: i64 = row.try_get("id")?;
    let (env_name, name): (String, String) = (row.try_get("environment")?, row.try_get("connection")?);
    let expected: String = row.try_get("session_hash")?;
    let presented = session.map(tokens::digest).unwrap_or_default();
    let user_id: i64 = row.try_get("user_id")?;
    let actor = Actor { kind: audit::ActorKind::User, id: Some(user_id), label: format!("user #{user_id}"), client_addr: addr };
    let env = environments::find(s.db, &env_name).await?;
    if !bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
        let event = Event::new("connection.sign_in").outcome("failure").environment(env.id, &env.name).object("connection", &name);
        audit::record_alone(s.db, &actor, event.detail(json!({"reason": "another session's state"}))).await?;
        return refused(
            403,
            "This sign-in was started in another browser session. Start it again from the connection page, in this browser, signed in to connvault.",
        );
    }
    // The session must still be signed in, and its person still allowed to change the
    // connection (a role may have been taken away meanwhile).
    let user = match session {
        Some(token) => sessions::user_for(s.db, token).await?.filter(|u| u.id == user_id),
        None => None,
    };
    let Some(user) = user else {
        return refused(401, "Your connvault session has ended since the sign-in started. Sign in to connvault, then connect again.");
    };
    let actor = user.actor(actor.client_addr.clone());
    if !access::user_allows(&user, &env.name, env.allow_dev_api_keys, Resource::Connections, Access::Write) {
        return refused(403, &format!("You may no longer change connections in {}: ask someone who may to connect {name}.", env.name));
    }
    let t = now();
    let used: Option<String> = row.try_get("used_at")?;
    let expires_at: String = row.try_get("expires_at")?;
    let spent = sqlx::query("UPDATE oauth_states SET used_at = $1 WHERE id = $2 AND used_at IS NULL AND expires_at > $1")
        .bind(&t)
        .bind(id)
        .execute(s.db.pool())
        .await?;
    if used.is_some() || spent.rows_affected() != 1 {
        let why = if used.is_some() || expires_at > t { "has been used already" } else { "is older than 10 minutes" };
        return refused(400, &format!("This sign-in {why}. Start again from the connection page (Connect)."));
    }
    let c = connections::get(s.db, &env.name, &name).await?;
    let location = format!("{}?sign_in={id}", connection_page(&env.name, &c.name));
    let result = match redeem(s, &actor, &env, &c, &row, q).await {
        Ok(result) => result,
        Err(e) => {
            TestResult::failed(format!("the sign-in could not be finished: {}", e.public_message()), "connect again; if it keeps failing, see the server log")
        }
    };
    sqlx::query("UPDATE oauth_states SET result_ok = $1, result_detail = $2, result_advice = $3 WHERE id = $4")
        .bind(result.ok as i64)
        .bind(&result.detail)
        .bind(&result.advice)
        .bind(id)
        .execute(s.db.pool())
        .await?;
    Ok(Finished::Back { location, result })
}

/// The callback's work once the state is this person's and spent: the outcome in words.
async fn redeem(s: Handles<'_>, actor: &Actor, env: &Environment, c: &Connection, row: &sqlx::any::AnyRow, q: &CallbackQuery) -> Result<TestResult> {
    let (def, auth) = match authorization_of(c) {
        Ok(found) => found,
        Err(e) => return Ok(TestResult::failed(e.public_message(), "set the connection back to the sign-in flow, then connect again")),
    };
    let stamp: String = row.try_get("connection_stamp")?;
    let failed = |result: TestResult, reason: &'static str| async move {
        let event = Event::new("connection.sign_in").outcome("failure").environment(env.id, &env.name).object("connection", &c.name);
        audit::record_alone(s.db, actor, event.detail(json!({"provider": c.provider, "reason": reason, "detail": result.detail}))).await?;
        Ok::<TestResult, Error>(result)
    };
    if c.updated_at != stamp {
        return failed(
            TestResult::failed(
                format!("{} changed while the sign-in was under way", c.name),
                "connect again, so that the sign-in is for its settings as they are now",
            ),
            "connection changed",
        )
        .await;
    }
    let redirect_uri: String = row.try_get("redirect_uri")?;
    if let Some(error) = q.error.as_deref() {
        let result = (auth.explain)(&c.settings, error, q.error_description.as_deref().unwrap_or_default(), &redirect_uri);
        return failed(result, "refused at the provider").await;
    }
    let Some(code) = q.code.as_deref().filter(|c| !c.is_empty()) else {
        return failed(
            TestResult::failed("the provider sent neither a code nor an error", "connect again; if it keeps happening, check the Authorize URL"),
            "no code",
        )
        .await;
    };
    let blob: Vec<u8> = row.try_get("verifier")?;
    let verifier = s.vault.open_text(&verifier_place(c, env), &blob).map_err(Error::Seal)?;
    let secrets = connections::open_applicable_secrets(s.db, s.vault, &env.name, c, def).await?;
    let mut values: Vec<String> = secrets.values().map(|v| v.expose_secret().to_string()).collect();
    values.push(code.to_string());
    let scrub = |r: TestResult| r.scrubbed(&values.iter().map(String::as_str).collect::<Vec<_>>());
    let mut minted = match (auth.redeem)(s.outbound, &c.settings, &secrets, code, &verifier, &redirect_uri).await {
        Ok(m) => m,
        Err(refusal) => return failed(scrub(refusal.result), "code refused").await,
    };
    let Some(refresh) = minted.refresh_token.take() else {
        return failed(
            TestResult::failed("the provider gave no refresh token", "ask for offline access (the provider's scope or parameter for it), then connect again"),
            "no refresh token",
        )
        .await;
    };
    let minting = def.minting_for(&c.settings).ok_or_else(|| Error::Internal(format!("{} sign-in without minting", def.label)))?;
    let identity = match (minting.verify)(s.outbound, &c.settings, &minted).await {
        Ok(identity) => identity,
        Err(refusal) => {
            let secret = [minted.access_token.expose_secret(), refresh.expose_secret()];
            return failed(refusal.result.scrubbed(&secret), "identity refused").await;
        }
    };
    let obtained = chrono::Utc::now();
    let expires = obtained + minted.expires_in.unwrap_or_else(|| (minting.default_lifetime)(&c.settings));
    let t = format_time(obtained);
    let who = actor.label.clone();
    let mut tx = s.db.begin().await?;
    // The connection is marked changed (its cached tokens elsewhere end), unless it changed
    // since it was read: then nothing is stored.
    let bumped = sqlx::query("UPDATE connections SET updated_at = $1, updated_by = $2 WHERE id = $3 AND updated_at = $4")
        .bind(now())
        .bind(&who)
        .bind(c.id)
        .bind(&c.updated_at)
        .execute(&mut *tx)
        .await?;
    if bumped.rows_affected() != 1 {
        tx.rollback().await?;
        return failed(TestResult::failed(format!("{} changed while the sign-in was under way", c.name), "connect again"), "connection changed").await;
    }
    connections::put_secret(&mut tx, s.vault, env, c.id, auth.refresh_field, &refresh, &who).await?;
    connections::put_secret(&mut tx, s.vault, env, c.id, minting.token_field, &minted.access_token, &who).await?;
    sqlx::query(
        "INSERT INTO tokens (connection_id, instance_url, org_id, user_id, username, obtained_at, expires_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $6) \
         ON CONFLICT (connection_id) DO UPDATE SET instance_url = excluded.instance_url, org_id = excluded.org_id, user_id = excluded.user_id, \
         username = excluded.username, obtained_at = excluded.obtained_at, expires_at = excluded.expires_at, updated_at = excluded.updated_at",
    )
    .bind(c.id)
    .bind(&minted.instance_url)
    .bind(identity.org_id.clone().or(minted.org_id.clone()))
    .bind(identity.user_id.clone().or(minted.user_id.clone()))
    .bind(&identity.username)
    .bind(&t)
    .bind(format_time(expires))
    .execute(&mut *tx)
    .await?;
    let result = TestResult::passed(identity.summary.clone());
    connections::record_health(&mut tx, c.id, &result, "sign_in").await?;
    audit::record(
        &mut tx,
        actor,
        Event::new("connection.sign_in").environment(env.id, &env.name).object("connection", &c.name).detail(json!({
            "provider": c.provider, "instance_url": minted.instance_url, "username": identity.username, "org_id": identity.org_id
        })),
    )
    .await?;
    tx.commit().await?;
    Ok(result)
}

/// Where a connection that signs in stands, in the words the connection page uses.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct SignInStatus {
    /// not_set_up, needs_sign_in, connected or failing.
    pub state: String,
    pub summary: String,
    pub advice: Option<String>,
    /// What the button says ("Connect with Salesforce").
    pub button: String,
    /// The callback URL the provider's app must name.
    pub callback_url: String,
    /// Who the stored sign-in acts as.
    pub username: Option<String>,
    pub instance_url: Option<String>,
    pub checked_at: Option<String>,
}

/// The outcome of one sign-in, for the person who made it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SignInResult {
    pub ok: bool,
    pub detail: String,
    pub advice: Option<String>,
}

/// Where the connection `c` stands.
pub async fn status(db: &Db, config: &Config, c: &Connection) -> Result<SignInStatus> {
    let (def, auth) = authorization_of(c)?;
    let set: std::collections::BTreeSet<String> = c.secrets_set.keys().cloned().collect();
    let health = connections::health_of(db, &[c.id]).await?.remove(&c.id);
    let session = sqlx::query("SELECT instance_url, username FROM tokens WHERE connection_id = $1").bind(c.id).fetch_optional(db.pool()).await?;
    let (instance_url, username) = match &session {
        Some(r) => (r.try_get::<Option<String>, _>("instance_url")?, r.try_get::<Option<String>, _>("username")?),
        None => (None, None),
    };
    let missing = def.setup_missing(&c.settings, &set);
    let has_refresh = set.contains(auth.refresh_field);
    let (state, summary, advice) = if !missing.is_empty() {
        (
            "not_set_up",
            format!("not set up in {} yet; then it needs someone to sign in", c.environment),
            Some(format!("{} here, then choose {}", providers::setup_advice(&missing), auth.button)),
        )
    } else if !has_refresh {
        ("needs_sign_in", "needs someone to sign in".to_string(), Some(format!("choose {} and sign in", auth.button)))
    } else {
        match &health {
            Some(h) if !h.ok => ("failing", h.detail.clone(), h.advice.clone()),
            Some(h) => ("connected", h.detail.clone(), None),
            None => ("connected", "signed in".to_string(), None),
        }
    };
    Ok(SignInStatus {
        state: state.into(),
        summary,
        advice,
        button: auth.button.into(),
        callback_url: callback_url(config),
        username: username.filter(|_| has_refresh),
        instance_url: instance_url.filter(|_| has_refresh),
        checked_at: health.map(|h| h.checked_at),
    })
}

/// The outcome of sign-in `id` of connection `c`, if `user` made it.
pub async fn result_of(db: &Db, c: &Connection, user: &User, id: i64) -> Result<Option<SignInResult>> {
    let row = sqlx::query("SELECT result_ok, result_detail, result_advice FROM oauth_states WHERE id = $1 AND connection_id = $2 AND user_id = $3")
        .bind(id)
        .bind(c.id)
        .bind(user.id)
        .fetch_optional(db.pool())
        .await?;
    let Some(row) = row else { return Ok(None) };
    let Some(ok) = row.try_get::<Option<i64>, _>("result_ok")? else { return Ok(None) };
    Ok(Some(SignInResult {
        ok: ok != 0,
        detail: row.try_get::<Option<String>, _>("result_detail")?.unwrap_or_default(),
        advice: row.try_get("result_advice")?,
    }))
}

/// Disconnects `name`: revokes its refresh token at the provider where it has a revocation
/// endpoint, and forgets the refresh and access tokens. The answer says what happened at the
/// provider.
pub async fn disconnect(s: Handles<'_>, actor: &Actor, env_name: &str, name: &str) -> Result<TestResult> {
    let env = environments::find(s.db, env_name).await?;
    let c = connections::get(s.db, &env.name, name).await?;
    let (def, auth) = authorization_of(&c)?;
    let Some((refresh, _)) = open_refresh(s.db, s.vault, &env, &c, auth.refresh_field).await? else {
        return Ok(TestResult::passed(format!("{} was not connected: nobody has signed in", c.name)));
    };
    let secrets = connections::open_applicable_secrets(s.db, s.vault, &env.name, &c, def).await?;
    let revoked = (auth.revoke)(s.outbound, &c.settings, &secrets, &refresh).await;
    let mut values: Vec<&str> = secrets.values().map(|v| v.expose_secret()).collect();
    values.push(refresh.expose_secret());
    let at_provider = match &revoked {
        Some(Ok(())) => "the provider revoked the refresh token".to_string(),
        Some(Err(e)) => {
            format!("the provider did not confirm the revocation ({}): revoke connvault's access there by hand", crate::outbound::scrub(e, &values))
        }
        None => "the provider has no revocation URL set: revoke connvault's access there by hand if it should end at once".to_string(),
    };
    let minting = def.minting_for(&c.settings);
    let mut tx = s.db.begin().await?;
    connections::remove_secret(&mut tx, c.id, auth.refresh_field).await?;
    if let Some(m) = minting {
        connections::remove_secret(&mut tx, c.id, m.token_field).await?;
    }
    sqlx::query("DELETE FROM tokens WHERE connection_id = $1").bind(c.id).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM connection_health WHERE connection_id = $1").bind(c.id).execute(&mut *tx).await?;
    sqlx::query("UPDATE connections SET updated_at = $1, updated_by = $2 WHERE id = $3").bind(now()).bind(&actor.label).bind(c.id).execute(&mut *tx).await?;
    audit::record(
        &mut tx,
        actor,
        Event::new("connection.disconnect").environment(env.id, &env.name).object("connection", &c.name).detail(json!({
            "provider": c.provider, "revoked": matches!(revoked, Some(Ok(()))), "revocation_url": revoked.is_some()
        })),
    )
    .await?;
    tx.commit().await?;
    Ok(TestResult::passed(format!("disconnected {}; {at_provider}", c.name)))
}

/// How often `connvault serve` looks for connections to keep alive.
pub const KEEP_ALIVE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// The keep-alive of `connvault serve`: [`keep_alive`] every [`KEEP_ALIVE_EVERY`], the first a
/// minute after start. Only the serving process runs it (a command-line process sharing the
/// database must not refresh beside the server's broker).
pub fn spawn_keep_alive(services: crate::services::Services) {
    tokio::spawn(async move {
        let first = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut tick = tokio::time::interval_at(first, KEEP_ALIVE_EVERY);
        loop {
            tick.tick().await;
            if services.db.pool().is_closed() {
                break;
            }
            match keep_alive(&services).await {
                Ok(0) => {}
                Ok(n) => tracing::info!("keep-alive refreshed {n} signed-in connection(s)"),
                Err(e) => tracing::warn!("keep-alive of signed-in connections: {e}"),
            }
        }
    });
}

/// Keep-alive: refreshes every signed-in connection whose settings ask for it
/// (`Authorization::keep_alive`) and whose last token is older than that (the broker's locks
/// make it one refresh across servers). How many were refreshed.
pub async fn keep_alive(services: &crate::services::Services) -> Result<usize> {
    let actor = Actor::system("keep-alive");
    let mut refreshed = 0;
    for def in providers::REGISTRY.iter().filter(|d| d.authorization.is_some()) {
        let field = def.authorization.map(|a| a.refresh_field).unwrap_or_default();
        let rows = sqlx::query(
            "SELECT e.name AS environment, c.name FROM connections c JOIN environments e ON e.id = c.environment_id \
             WHERE c.provider = $1 AND EXISTS (SELECT 1 FROM connection_secrets s WHERE s.connection_id = c.id AND s.field = $2)",
        )
        .bind(def.id)
        .bind(field)
        .fetch_all(services.db.pool())
        .await?;
        for row in rows {
            let (env_name, name): (String, String) = (row.try_get("environment")?, row.try_get("name")?);
            let c = connections::get(&services.db, &env_name, &name).await?;
            let Ok((_, auth)) = authorization_of(&c) else { continue };
            let Some(idle) = (auth.keep_alive)(&c.settings) else { continue };
            let env = environments::find(&services.db, &env_name).await?;
            if services.broker.keep_alive(services.signing(), &actor, &env, &c, idle).await? {
                refreshed += 1;
            }
        }
    }
    Ok(refreshed)
}
