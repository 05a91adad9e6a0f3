//! The token broker: "a token for integration X in environment Y", for apps at run time.
//!
//! - A minted token (a Salesforce session, an Entra access token) is served from memory until
//!   shortly before it expires: its `expires_in`, or the connection's session lifetime for
//!   Salesforce, less a safety margin. That path reads the key and the binding in one query
//!   (on SQLite, while none of what it read has changed, not even that: see `Routes`) and
//!   writes nothing: it neither touches the database nor calls out. Hits are counted per API
//!   key and minute in memory, added to the `usage_counts` table every second
//!   ([`Broker::persist_usage`]) and written to the audit trail per finished minute by a job
//!   ([`audit_usage`]).
//! - A stale (or `force_refresh`ed) session is minted once per connection at a time: callers in
//!   this process wait on the same lock and then find the new token in the cache; on PostgreSQL
//!   the mint also holds a transaction-scoped advisory lock, so several `connvault serve`
//!   processes mint once between them (the others find the fresh token in the database).
//! - A connection whose mint failed is not hammered: calls within the back-off window get 424
//!   with the provider's reason at once; the window doubles with each failure (5 s up to 5 min),
//!   and ends early when the connection changes or a test succeeds.
//! - Providers without a mint answer with their stored credential.
//! - Providers whose callers need a session beside the credential (SAP's CSRF token and its
//!   cookies) have it fetched with the credential, cached per connection and credential (single
//!   flight, as mints), and fetched again on `force_refresh`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{AssertSqlSafe, Row};

use crate::access::{Access, Resource};
use crate::api_keys;
use crate::audit::{self, Actor, Event};
use crate::connections::{self, Connection};
use crate::credential::{Credential, Scheme};
use crate::db::{format_time, Backend, Db};
use crate::environments;
use crate::environments::Environment;
use crate::error::{Error, Result};
use crate::integrations::{self, Bound};
use crate::providers::{self, Minting, SessionExtras, TestResult};
use crate::secret::SecretString;
use crate::signing::{self, Handles};

const FIRST_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Advisory-lock namespace ("cv" in the high bytes), so connvault's locks never collide with
/// another application's on the same database.
const LOCK_NAMESPACE: i64 = 0x6376 << 48;

/// The broker's answer.
#[derive(Debug)]
pub struct Token {
    pub access_token: SecretString,
    pub token_type: String,
    pub instance_url: Option<String>,
    /// When the token should be treated as stale (RFC 3339 UTC); `null` for credentials that do
    /// not expire.
    pub expires_at: Option<String>,
    pub connection: String,
    /// For `header` credentials: the header that carries the value.
    pub header_name: Option<String>,
    /// Whether this came from the cache.
    pub cached: bool,
    /// The provider's session fields, fetched with the credential (`ProviderDef::session`).
    pub extras: Vec<(&'static str, SecretString)>,
    /// The bound connection's id and provider (set by [`Broker::for_key`] and
    /// [`Broker::token`]; never part of the answer).
    pub connection_id: i64,
    pub provider: String,
    /// The connection's settings, for providers with session extras (how the session goes on
    /// a proxied request depends on them); empty otherwise.
    pub settings: serde_json::Map<String, serde_json::Value>,
}

/// Whether a caller takes the cached credential or needs a newer one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// The cached credential while it is fresh.
    Cached,
    /// One obtained after this call began (`?force_refresh=true`: the caller saw what it held
    /// refused).
    Force,
    /// One obtained after this moment: the proxy's renewal passes when its call began, so
    /// every call refused with the same credential shares one mint however late it asks.
    After(DateTime<Utc>),
}

impl Refresh {
    /// What a cached credential must have been obtained after, for a call that began at `started`.
    fn newer_than(self, started: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Refresh::Cached => None,
            Refresh::Force => Some(started),
            Refresh::After(t) => Some(t),
        }
    }

    pub fn forced(force: bool) -> Refresh {
        if force {
            Refresh::Force
        } else {
            Refresh::Cached
        }
    }
}

/// What a caller wants the credential for: which grant it needs, and how its use is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// The token answer (`tokens:read`): the credential leaves connvault. A stored secret
    /// handed out is audited each time (`connection.secret_release`); cached hits are counted.
    Token,
    /// A call through the proxy (`proxy:read` for GET and HEAD, `proxy:write` otherwise): the
    /// credential stays here. Each call is counted by the proxy (`proxy.use`).
    Proxy(Access),
}

impl Use {
    fn grant(self) -> (Resource, Access) {
        match self {
            Use::Token => (Resource::Tokens, Access::Read),
            Use::Proxy(access) => (Resource::Proxy, access),
        }
    }
}

/// A credential served to an API key, with whom and where it was served for.
#[derive(Debug)]
pub struct Served {
    pub token: Token,
    pub actor: Actor,
    pub env: Environment,
    /// The integration's name as stored.
    pub integration: String,
}

impl Token {
    /// The answer for `credential` of connection `connection`.
    pub fn from_credential(connection: &str, credential: Credential, cached: bool) -> Token {
        Token {
            token_type: credential.token_type().to_string(),
            header_name: credential.header_name().map(str::to_string),
            instance_url: credential.base_url,
            expires_at: credential.expires_at.map(format_time),
            access_token: credential.value,
            connection: connection.to_string(),
            cached,
            extras: Vec::new(),
            connection_id: 0,
            provider: String::new(),
            settings: serde_json::Map::new(),
        }
    }

    /// The credential this answer hands out, as it goes on a request.
    pub fn credential(&self) -> Credential {
        let scheme = match (&self.header_name, self.token_type.as_str()) {
            (Some(name), _) => Scheme::Header(name.clone()),
            (None, "Basic") => Scheme::Basic,
            _ => Scheme::Bearer,
        };
        Credential { scheme, value: self.access_token.clone(), expires_at: None, base_url: self.instance_url.clone(), extra_headers: Vec::new() }
    }

    /// The response body: the one place the secret value is written out.
    pub fn body(&self) -> TokenBody<'_> {
        TokenBody {
            access_token: self.access_token.expose_secret(),
            token_type: &self.token_type,
            instance_url: self.instance_url.as_deref(),
            expires_at: self.expires_at.as_deref(),
            connection: &self.connection,
            cached: self.cached,
            header_name: self.header_name.as_deref(),
            extras: self.extras.iter().map(|(name, value)| (*name, value.expose_secret())).collect(),
        }
    }
}

/// The token answer as it is written out (serialized straight from the token, with no
/// intermediate JSON tree).
#[derive(serde::Serialize)]
pub struct TokenBody<'a> {
    pub access_token: &'a str,
    pub token_type: &'a str,
    pub instance_url: Option<&'a str>,
    pub expires_at: Option<&'a str>,
    pub connection: &'a str,
    pub cached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_name: Option<&'a str>,
    #[serde(flatten)]
    pub extras: std::collections::BTreeMap<&'static str, &'a str>,
}

#[derive(Clone)]
struct Cached {
    token: SecretString,
    token_type: String,
    instance_url: String,
    obtained_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    /// `expires_at` as the answer writes it, formatted once.
    expires_text: String,
    /// The connection's `updated_at` when the token was minted: any change invalidates it.
    stamp: String,
}

impl Cached {
    /// From here on the token is not handed out: its expiry less the safety margin.
    fn stale_at(&self) -> DateTime<Utc> {
        self.expires_at - safety_margin(self.expires_at - self.obtained_at)
    }
}

/// A provider's session fields for one connection, fetched with one credential.
#[derive(Clone)]
struct CachedSession {
    fields: Vec<(&'static str, SecretString)>,
    /// The credential they were fetched with: another credential gets its own.
    credential: SecretString,
    stamp: String,
    obtained_at: DateTime<Utc>,
    until: DateTime<Utc>,
}

struct Backoff {
    /// The connection's `updated_at` when it failed: a change to the connection ends the wait.
    stamp: String,
    /// When the wait began: a check that worked since (a test here or on another server
    /// sharing the database, or another server's mint) ends it.
    since: String,
    until: Instant,
    window: Duration,
    reason: TestResult,
}

#[derive(Default)]
struct Inner {
    cache: Mutex<HashMap<i64, Cached>>,
    flights: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
    backoff: Mutex<HashMap<i64, Backoff>>,
    sessions: Mutex<HashMap<i64, CachedSession>>,
    /// One session fetch per connection at a time (apart from the mint's, which it follows).
    session_flights: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
    usage: Mutex<HashMap<UsageKey, u64>>,
    routes: Mutex<Routes>,
}

/// At most this many routes are kept; beyond it they are all dropped and read again.
const MAX_ROUTES: usize = 4096;

/// What [`Broker::for_key`] read for a key, an environment and an integration, kept while the
/// database says the same about them ([`Db::route_epoch`], read for every call on both
/// backends): any change to a key, an account or its roles, an environment, an integration or a
/// connection, by this server or another on the same database (a revoked key, a deactivated
/// creator, a new binding), drops them all before the next call is answered. The key itself is
/// checked on every call (digest, expiry, addresses), and so is its grant.
#[derive(Default)]
struct Routes {
    version: i64,
    map: HashMap<RouteKey, Arc<Route>>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct RouteKey {
    prefix: String,
    /// Lower case, as the names are matched.
    env: String,
    integration: String,
}

struct Route {
    key_hash: String,
    key: api_keys::Effective,
    env: Environment,
    integration: String,
    bound: Option<Bound>,
}

impl Routes {
    /// The route kept for `key`, if the epoch is still `version` (else all are dropped).
    fn get(&mut self, version: i64, key: &RouteKey) -> Option<Arc<Route>> {
        if self.version != version {
            self.map.clear();
            self.version = version;
            return None;
        }
        self.map.get(key).cloned()
    }

    /// Keeps a route read at `version` (dropping the others if that is not the one kept).
    fn keep(&mut self, version: i64, key: RouteKey, route: Arc<Route>) {
        if self.version != version || self.map.len() >= MAX_ROUTES {
            self.map.clear();
            self.version = version;
        }
        self.map.insert(key, route);
    }
}

/// Cached hits and proxied calls are counted per kind, caller, environment, integration and
/// minute.
#[derive(Clone, PartialEq, Eq, Hash)]
struct UsageKey {
    /// The audit event the count becomes: `token.use` (cached token answers) or `proxy.use`.
    kind: &'static str,
    caller: String,
    env_id: i64,
    env_name: String,
    integration: String,
    /// Minutes since the Unix epoch (written out as `2026-11-24T14:07` when flushed).
    minute: i64,
}

/// Shared by every request of one server process.
#[derive(Clone, Default)]
pub struct Broker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").finish_non_exhaustive()
    }
}

/// A token is stale this long before it expires: a tenth of its lifetime, at least one minute
/// and at most ten (MSAL renews Entra tokens with five minutes left; a one-hour token here is
/// renewed with six).
pub fn safety_margin(lifetime: chrono::Duration) -> chrono::Duration {
    (lifetime / 10).clamp(chrono::Duration::minutes(1), chrono::Duration::minutes(10))
}

impl Broker {
    /// `POST …/integrations/{name}/token` for a caller already authenticated and allowed.
    pub async fn token(&self, s: Handles<'_>, actor: &Actor, env: &Environment, integration: &str, refresh: Refresh) -> Result<Token> {
        let (integration, bound) = integrations::resolve(&s.db, env, integration).await?;
        self.serve(s, actor, env, &integration, bound, refresh, Use::Token).await
    }

    /// The same for an API key, without a statement of its own while nothing it read has
    /// changed (on SQLite a look at the file's version; on PostgreSQL a share of one read of
    /// `route_epoch` that began after the call), else in one round trip: the key, the
    /// environment, the integration and its connection are read by a single query; the key is
    /// then checked exactly as [`api_keys::authenticate`] checks it, and must hold the grant of
    /// `purpose` on the environment (`tokens:read` for the token answer, `proxy` for a call).
    #[allow(clippy::too_many_arguments)]
    pub async fn for_key(
        &self,
        keys: api_keys::Handles<'_>,
        s: Handles<'_>,
        presented: &str,
        addr: Option<IpAddr>,
        env_name: &str,
        integration: &str,
        refresh: Refresh,
        purpose: Use,
    ) -> Result<Served> {
        let (resource, access) = purpose.grant();
        // Read before anything else: a route kept under this version was read no earlier.
        let version = s.db.route_epoch().await;
        let route_key = api_keys::key_prefix(presented).map(|prefix| RouteKey {
            prefix: prefix.to_string(),
            env: env_name.to_lowercase(),
            integration: integration.to_lowercase(),
        });
        if let (Some(version), Some(route_key)) = (version, route_key.as_ref()) {
            let kept = self.inner.routes.lock().unwrap_or_else(|e| e.into_inner()).get(version, route_key);
            if let Some(route) = kept {
                api_keys::check(keys, presented, addr, &route.key_hash, &route.key.key)?;
                let binding = Ok((route.integration.clone(), route.bound.clone()));
                return self.finish(keys, s, addr, &route.key, route.env.clone(), binding, refresh, purpose).await;
            }
        }
        // The statement, made once (it is the same for every call).
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "SELECT {}, e.id AS env_id, e.name AS env_name, e.position AS env_position, e.allow_dev_api_keys AS env_allow, e.created_at AS env_created_at, \
                 e.updated_at AS env_updated_at, u.email AS creator_email, u.status AS creator_status, u.is_owner AS creator_owner, ur.role AS creator_role, \
                 {} FROM api_keys k LEFT JOIN environments e ON e.name_key = $2 \
                 LEFT JOIN users u ON u.id = k.created_by_user_id LEFT JOIN user_roles ur ON ur.user_id = k.created_by_user_id AND ur.environment_id = e.id \
                 LEFT JOIN integrations i ON i.environment_id = e.id AND i.name_key = $3 LEFT JOIN connections c ON c.id = i.connection_id WHERE k.prefix = $1",
                api_keys::columns_of("k"),
                integrations::BINDING_COLUMNS
            )
        });
        let row = match &route_key {
            Some(route_key) => {
                sqlx::query(AssertSqlSafe(SQL.as_str()))
                    .bind(route_key.prefix.as_str())
                    .bind(route_key.env.as_str())
                    .bind(route_key.integration.as_str())
                    .fetch_optional(s.db.pool())
                    .await?
            }
            None => None,
        };
        let key = api_keys::verify(keys, presented, addr, row.as_ref())?;
        let row = row.expect("verified");
        // An unknown environment: the usual lookup gives the usual answer (names only the
        // environments whose tokens this key may read).
        let Some(env_id) = row.try_get::<Option<i64>, _>("env_id")? else {
            let key = api_keys::effective(keys, key, addr).await?;
            let visible = |e: &Environment| key.allows(e, resource, access);
            return Err(environments::find_for(&s.db, env_name, visible)
                .await
                .err()
                .unwrap_or_else(|| Error::NotFound(format!("no environment named {env_name}"))));
        };
        let env = Environment {
            id: env_id,
            name: row.try_get("env_name")?,
            position: row.try_get("env_position")?,
            allow_dev_api_keys: row.try_get::<i64, _>("env_allow")? != 0,
            created_at: row.try_get("env_created_at")?,
            updated_at: row.try_get("env_updated_at")?,
        };
        // Limited by the creator's current rights (read in the same query); a key made by a key
        // is checked with its whole chain (and not kept: its chain is read every time).
        let key = if key.parent_id.is_some() { api_keys::effective(keys, key, addr).await? } else { api_keys::effective_from_row(key, &row, &env)? };
        let binding = integrations::binding_from_row(&row, &env, integration);
        if let (Some(version), Some(route_key), Ok((name, bound))) = (version, route_key, binding.as_ref()) {
            if key.key.parent_id.is_none() {
                let route = Route { key_hash: row.try_get("key_hash")?, key: key.clone(), env: env.clone(), integration: name.clone(), bound: bound.clone() };
                self.inner.routes.lock().unwrap_or_else(|e| e.into_inner()).keep(version, route_key, Arc::new(route));
            }
        }
        self.finish(keys, s, addr, &key, env, binding, refresh, purpose).await
    }

    /// How many routes (key, environment, integration → binding) this process keeps now.
    pub fn kept_routes(&self) -> usize {
        self.inner.routes.lock().unwrap_or_else(|e| e.into_inner()).map.len()
    }

    /// The rest of [`Broker::for_key`] once the key is verified and the binding read: the grant
    /// (before anything about the integration is told), the key's use, and the answer.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        keys: api_keys::Handles<'_>,
        s: Handles<'_>,
        addr: Option<IpAddr>,
        key: &api_keys::Effective,
        env: Environment,
        binding: Result<(String, Option<Bound>)>,
        refresh: Refresh,
        purpose: Use,
    ) -> Result<Served> {
        let (resource, access) = purpose.grant();
        if !key.allows(&env, resource, access) {
            return Err(Error::Forbidden(match purpose {
                Use::Token => format!("you may not read tokens in {}", env.name),
                Use::Proxy(Access::Read) => format!("this API key may not call through the proxy in {} (it needs the grant {}:proxy:read)", env.name, env.name),
                Use::Proxy(Access::Write) => {
                    format!(
                        "this API key may only read through the proxy in {}: methods other than GET and HEAD need the grant {}:proxy:write",
                        env.name, env.name
                    )
                }
            }));
        }
        api_keys::touch(keys, &key.key).await?;
        let (name, bound) = binding?;
        let actor = key.actor(addr);
        let token = self.serve(s, &actor, &env, &name, bound, refresh, purpose).await?;
        Ok(Served { token, actor, env, integration: name })
    }

    #[allow(clippy::too_many_arguments)]
    async fn serve(
        &self,
        s: Handles<'_>,
        actor: &Actor,
        env: &Environment,
        integration: &str,
        bound: Option<Bound>,
        refresh: Refresh,
        purpose: Use,
    ) -> Result<Token> {
        let newer_than = refresh.newer_than(Utc::now());
        let (connection_id, provider) = bound.as_ref().map(|b| (b.id, b.provider.clone())).unwrap_or_default();
        let session = match bound.as_ref().and_then(|b| Some((providers::get(&b.provider)?.session?, b))) {
            Some((extras, b)) => Some((extras, b.id, b.name.clone(), b.settings()?, b.updated_at.clone())),
            None => None,
        };
        if let Some((_, id, name, _, stamp)) = &session {
            // While a session backs off, nothing is released or minted for it (memory only,
            // unless a wait is on).
            self.check_backoff(s.db, &Which { id: *id, name, env: &env.name, stamp }).await?;
        }
        let mut token = self.credential(s, actor, env, integration, bound, newer_than, purpose).await?;
        (token.connection_id, token.provider) = (connection_id, provider);
        if let Some((extras, id, name, settings, stamp)) = session {
            let c = Which { id, name: &name, env: &env.name, stamp: &stamp };
            token.extras = self.session(s, actor, env, extras, &c, &settings, &token, newer_than).await?;
            token.settings = settings;
        }
        Ok(token)
    }

    /// The provider's session fields for the credential in `token`: cached, or fetched once
    /// per connection at a time; with `newer_than` (a forced refresh), fetched after it. A
    /// refused fetch backs off as a refused mint does (so an app retrying a wrong password
    /// does not lock the user), and is the connection's latest check until one works again.
    /// Every fetch is a use of the credential and audited (`token.session`) before its answer
    /// goes out.
    #[allow(clippy::too_many_arguments)]
    async fn session(
        &self,
        s: Handles<'_>,
        actor: &Actor,
        env: &Environment,
        extras: &SessionExtras,
        c: &Which<'_>,
        settings: &serde_json::Map<String, serde_json::Value>,
        token: &Token,
        newer_than: Option<DateTime<Utc>>,
    ) -> Result<Vec<(&'static str, SecretString)>> {
        let credential = token.credential();
        if let Some(hit) = self.cached_session(c, &credential.value, newer_than) {
            return Ok(hit);
        }
        let flight = self.inner.session_flights.lock().expect("broker lock").entry(c.id).or_default().clone();
        let _turn = flight.lock().await;
        if let Some(hit) = self.cached_session(c, &credential.value, newer_than) {
            return Ok(hit);
        }
        self.check_backoff(s.db, c).await?;
        let obtained_at = Utc::now();
        match (extras.fetch)(s.outbound, settings, &credential).await {
            Ok(session) => {
                let until = obtained_at + session.valid_for;
                let names: Vec<&str> = session.fields.iter().map(|(name, _)| *name).collect();
                let mut tx = s.db.begin().await?;
                audit::record(
                    &mut tx,
                    actor,
                    Event::new("token.session").environment(env.id, &env.name).object("connection", c.name).detail(json!({"fields": names})),
                )
                .await?;
                let waited = self.inner.backoff.lock().expect("broker lock").get(&c.id).is_some();
                if waited {
                    let place = token.instance_url.as_deref().unwrap_or(c.name);
                    connections::record_health(&mut tx, c.id, &TestResult::passed(format!("session obtained from {place}")), "token").await?;
                }
                tx.commit().await?;
                self.inner.backoff.lock().expect("broker lock").remove(&c.id);
                let hit = CachedSession { fields: session.fields, credential: credential.value.clone(), stamp: c.stamp.to_string(), obtained_at, until };
                self.inner.sessions.lock().expect("broker lock").insert(c.id, hit.clone());
                Ok(hit.fields)
            }
            Err(refusal) => {
                let secrets = credential.sensitive();
                let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
                let reason = refusal.result.scrubbed(&secrets);
                let window = self.back_off(c, &reason);
                let mut tx = s.db.begin().await?;
                connections::record_health(&mut tx, c.id, &reason, "token").await?;
                audit::record(
                    &mut tx,
                    actor,
                    Event::new("token.session").outcome("failure").environment(env.id, &env.name).object("connection", c.name).detail(json!({
                        "detail": reason.detail, "transient": refusal.transient, "retry_in_secs": window.as_secs()
                    })),
                )
                .await?;
                tx.commit().await?;
                Err(failing(c, &reason, window))
            }
        }
    }

    fn cached_session(&self, c: &Which<'_>, credential: &SecretString, newer_than: Option<DateTime<Utc>>) -> Option<Vec<(&'static str, SecretString)>> {
        let sessions = self.inner.sessions.lock().expect("broker lock");
        let now = Utc::now();
        sessions
            .get(&c.id)
            .filter(|hit| hit.stamp == c.stamp && hit.until > now && hit.credential.ct_eq(credential) && newer_than.is_none_or(|t| hit.obtained_at > t))
            .map(|hit| hit.fields.clone())
    }

    /// The credential of the bound connection: a cached or new mint, or the stored secret.
    #[allow(clippy::too_many_arguments)]
    async fn credential(
        &self,
        s: Handles<'_>,
        actor: &Actor,
        env: &Environment,
        integration: &str,
        bound: Option<Bound>,
        newer_than: Option<DateTime<Utc>>,
        purpose: Use,
    ) -> Result<Token> {
        let integration = integration.to_string();
        // The hot path has read the binding once and writes nothing.
        let Some(b) = bound else {
            return Err(Error::Conflict {
                code: "needs_connection",
                message: format!("integration {integration} in {} needs a connection: bind one on the My integrations page or with PUT …/binding", env.name),
            });
        };
        let def = providers::get(&b.provider).ok_or_else(|| Error::Internal(format!("unknown provider {}", b.provider)))?;
        if def.minting.is_none() {
            let c = connections::get(&s.db, &env.name, &b.name).await?;
            return release(s, actor, env, &integration, &c, purpose).await;
        }
        if newer_than.is_none() {
            if let Some(hit) = self.cached(b.id, &b.updated_at, None) {
                self.count_hit(purpose, actor, env, &integration);
                return Ok(answer(&b.name, hit, true));
            }
        }
        let c = connections::get(&s.db, &env.name, &b.name).await?;
        // The cache holds only minted tokens; these settings may choose a static mode.
        let Some(minting) = def.minting_for(&c.settings) else {
            return release(s, actor, env, &integration, &c, purpose).await;
        };
        self.check_backoff(s.db, &Which::of(&c)).await?;

        // One mint per connection at a time in this process …
        let flight = self.inner.flights.lock().expect("broker lock").entry(c.id).or_default().clone();
        let _turn = flight.lock().await;
        // … and whoever waited finds the token the one before it minted.
        if let Some(hit) = self.cached(c.id, &c.updated_at, newer_than) {
            self.count_hit(purpose, actor, env, &integration);
            return Ok(answer(&c.name, hit, true));
        }
        self.check_backoff(s.db, &Which::of(&c)).await?;

        // … and across processes sharing PostgreSQL: an advisory lock held by a transaction, so a
        // dropped request releases it.
        let mut lock = None;
        if s.db.backend() == Backend::Postgres {
            let mut tx = s.db.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(LOCK_NAMESPACE | c.id).execute(&mut *tx).await?;
            lock = Some(tx);
            if let Some(hit) = self.stored(s, env, &c, minting, newer_than).await? {
                self.count_hit(purpose, actor, env, &integration);
                return Ok(answer(&c.name, hit, true));
            }
        }
        let result = self.mint_and_record(s, actor, env, &c, &integration).await;
        if let Some(tx) = lock {
            tx.rollback().await?;
        }
        result
    }

    /// One mint of `c` under the caller's locks: kept in the cache and recorded as the
    /// connection's latest check, or refused, backed off, recorded and audited.
    async fn mint_and_record(&self, s: Handles<'_>, actor: &Actor, env: &Environment, c: &Connection, integration: &str) -> Result<Token> {
        let minted = signing::mint(s, actor, env, c).await?;
        match minted {
            Ok((minted, at, expires)) => {
                let parse = |t: &str| DateTime::parse_from_rfc3339(t).map(|t| t.with_timezone(&Utc)).unwrap_or_else(|_| Utc::now());
                let hit = Cached {
                    token: minted.access_token,
                    token_type: minted.token_type,
                    instance_url: minted.instance_url,
                    obtained_at: parse(&at),
                    expires_at: parse(&expires),
                    expires_text: format_time(parse(&expires)),
                    stamp: c.updated_at.clone(),
                };
                self.inner.cache.lock().expect("broker lock").insert(c.id, hit.clone());
                self.inner.backoff.lock().expect("broker lock").remove(&c.id);
                let mut tx = s.db.begin().await?;
                connections::record_health(&mut tx, c.id, &TestResult::passed(format!("token obtained from {}", hit.instance_url)), "token").await?;
                tx.commit().await?;
                Ok(answer(&c.name, hit, false))
            }
            Err(refusal) => {
                let reason = refusal.result;
                let window = self.back_off(&Which::of(c), &reason);
                let mut tx = s.db.begin().await?;
                connections::record_health(&mut tx, c.id, &reason, "token").await?;
                audit::record(
                    &mut tx,
                    actor,
                    Event::new("token.mint").outcome("failure").environment(env.id, &env.name).object("connection", &c.name).detail(json!({
                        "provider": c.provider, "integration": integration, "detail": reason.detail, "transient": refusal.transient,
                        "retry_in_secs": window.as_secs()
                    })),
                )
                .await?;
                tx.commit().await?;
                Err(failing(&Which::of(c), &reason, window))
            }
        }
    }

    /// Keep-alive for a connection whose refresh token lapses when unused: a refresh under the
    /// same locks as the broker's, unless one happened within `idle` (here or on another
    /// server). Whether it refreshed.
    pub async fn keep_alive(&self, s: Handles<'_>, actor: &Actor, env: &Environment, c: &Connection, idle: chrono::Duration) -> Result<bool> {
        let flight = self.inner.flights.lock().expect("broker lock").entry(c.id).or_default().clone();
        let _turn = flight.lock().await;
        let mut lock = None;
        if s.db.backend() == Backend::Postgres {
            let mut tx = s.db.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(LOCK_NAMESPACE | c.id).execute(&mut *tx).await?;
            lock = Some(tx);
        }
        let last: Option<String> = sqlx::query_scalar("SELECT obtained_at FROM tokens WHERE connection_id = $1").bind(c.id).fetch_optional(s.db.pool()).await?;
        let due = last.is_none_or(|t| t <= format_time(Utc::now() - idle));
        let refreshed = due && self.mint_and_record(s, actor, env, c, "keep-alive").await.is_ok();
        if let Some(tx) = lock {
            tx.rollback().await?;
        }
        Ok(refreshed)
    }

    /// The cached token of connection `id`, if minted for its current version (`stamp`), not
    /// stale, and (when given) obtained after `newer_than`.
    fn cached(&self, id: i64, stamp: &str, newer_than: Option<DateTime<Utc>>) -> Option<Cached> {
        let cache = self.inner.cache.lock().expect("broker lock");
        let now = Utc::now();
        cache.get(&id).filter(|hit| hit.stamp == stamp && hit.stale_at() > now && newer_than.is_none_or(|t| hit.obtained_at > t)).cloned()
    }

    /// A token another process minted (under the advisory lock), if fresh enough.
    async fn stored(&self, s: Handles<'_>, env: &Environment, c: &Connection, minting: &Minting, newer_than: Option<DateTime<Utc>>) -> Result<Option<Cached>> {
        let row =
            sqlx::query("SELECT instance_url, obtained_at, expires_at FROM tokens WHERE connection_id = $1").bind(c.id).fetch_optional(s.db.pool()).await?;
        let Some(row) = row else { return Ok(None) };
        let parse = |t: Option<String>| t.and_then(|t| DateTime::parse_from_rfc3339(&t).ok()).map(|t| t.with_timezone(&Utc));
        let Some(obtained_at) = parse(row.try_get("obtained_at")?) else { return Ok(None) };
        let expires_at = parse(row.try_get("expires_at")?).unwrap_or_else(|| obtained_at + (minting.default_lifetime)(&c.settings));
        let token = match connections::open_secret(&s.db, &s.vault, &env.name, &c.name, minting.token_field).await {
            Ok(t) => t,
            Err(Error::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let hit = Cached {
            token,
            token_type: "Bearer".into(),
            instance_url: row.try_get("instance_url")?,
            obtained_at,
            expires_at,
            expires_text: format_time(expires_at),
            stamp: c.updated_at.clone(),
        };
        if hit.stale_at() <= Utc::now() || newer_than.is_some_and(|t| obtained_at <= t) {
            return Ok(None);
        }
        self.inner.cache.lock().expect("broker lock").insert(c.id, hit.clone());
        Ok(Some(hit))
    }

    /// Refuses at once while the connection backs off, unless it changed or a live check of it
    /// has worked since the wait began (read from the database, so it holds across servers;
    /// only while a wait is on).
    async fn check_backoff(&self, db: &Db, c: &Which<'_>) -> Result<()> {
        let waiting = {
            let backoff = self.inner.backoff.lock().expect("broker lock");
            match backoff.get(&c.id) {
                Some(b) if b.until > Instant::now() && b.stamp == c.stamp => Some((b.since.clone(), b.reason.clone(), b.until)),
                _ => None,
            }
        };
        let Some((since, reason, until)) = waiting else { return Ok(()) };
        let worked: Option<String> = sqlx::query_scalar("SELECT checked_at FROM connection_health WHERE connection_id = $1 AND ok = 1 AND checked_at > $2")
            .bind(c.id)
            .bind(&since)
            .fetch_optional(db.pool())
            .await?;
        if worked.is_some() {
            self.inner.backoff.lock().expect("broker lock").remove(&c.id);
            return Ok(());
        }
        Err(failing(c, &reason, until.saturating_duration_since(Instant::now())))
    }

    /// Starts or doubles the back-off window; a configuration problem starts where a transient
    /// one would, but both stop calls until the window ends (or a setting changes the token).
    fn back_off(&self, c: &Which<'_>, reason: &TestResult) -> Duration {
        let mut backoff = self.inner.backoff.lock().expect("broker lock");
        let window = match backoff.get(&c.id) {
            Some(b) if b.stamp == c.stamp => (b.window * 2).min(MAX_BACKOFF),
            _ => FIRST_BACKOFF,
        };
        backoff.insert(c.id, Backoff { stamp: c.stamp.to_string(), since: crate::db::now(), until: Instant::now() + window, window, reason: reason.clone() });
        window
    }

    /// A cached token answer counts as a use of the token; a proxied call is counted by the
    /// proxy ([`Broker::count_call`]), once, whatever the credential came from.
    fn count_hit(&self, purpose: Use, actor: &Actor, env: &Environment, integration: &str) {
        if purpose == Use::Token {
            self.count("token.use", actor, env, integration);
        }
    }

    /// One call through the proxy, for `proxy.use`.
    pub fn count_call(&self, actor: &Actor, env: &Environment, integration: &str) {
        self.count("proxy.use", actor, env, integration);
    }

    fn count(&self, kind: &'static str, actor: &Actor, env: &Environment, integration: &str) {
        let key = UsageKey {
            kind,
            caller: actor.label.clone(),
            env_id: env.id,
            env_name: env.name.clone(),
            integration: integration.to_string(),
            minute: Utc::now().timestamp().div_euclid(60),
        };
        *self.inner.usage.lock().expect("broker lock").entry(key).or_default() += 1;
    }

    /// Adds every count held in memory to the `usage_counts` table (one transaction, one
    /// statement per chunk); returns how many rows it added to. Counts that fail to write are
    /// kept for the next call. `connvault serve` calls it every second (`crate::workers`).
    pub async fn persist_usage(&self, db: &Db) -> Result<usize> {
        let due: Vec<(UsageKey, u64)> = std::mem::take(&mut *self.inner.usage.lock().expect("broker lock")).into_iter().collect();
        if due.is_empty() {
            return Ok(0);
        }
        let written = async {
            const COLUMNS: [&str; 7] = ["kind", "caller", "environment_id", "environment", "integration", "minute", "n"];
            let mut tx = db.begin().await?;
            for chunk in due.chunks(crate::db::INSERT_BATCH / 2) {
                let sql = format!(
                    "{} ON CONFLICT (kind, caller, environment_id, integration, minute) DO UPDATE SET n = usage_counts.n + excluded.n",
                    crate::db::multi_row_insert("usage_counts", &COLUMNS, chunk.len())
                );
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for (k, n) in chunk {
                    q = q
                        .bind(k.kind)
                        .bind(k.caller.clone())
                        .bind(k.env_id)
                        .bind(k.env_name.clone())
                        .bind(k.integration.clone())
                        .bind(k.minute)
                        .bind(*n as i64);
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok::<_, Error>(due.len())
        }
        .await;
        if let Err(e) = &written {
            tracing::warn!("token usage could not be written yet: {e}");
            let mut usage = self.inner.usage.lock().expect("broker lock");
            for (k, n) in due {
                *usage.entry(k).or_default() += n;
            }
        }
        written
    }

    /// [`Broker::persist_usage`], then [`audit_usage`] of every minute (tests; at shutdown a
    /// server only persists, and the next `usage.audit` job writes the events).
    pub async fn flush_usage(&self, db: &Db, all: bool) -> Result<usize> {
        self.persist_usage(db).await?;
        audit_usage(db, all).await
    }
}

/// The `usage.audit` job: turns the counts of finished minutes (every one with `all`), summed
/// over every server, into audit events (`token.use` with `cached_hits`, `proxy.use` with
/// `calls`), one per kind, caller, integration and minute, and deletes them, in one
/// transaction. A minute is finished five seconds after its end, when every server has added
/// its counts (each does every second).
pub async fn audit_usage(db: &Db, all: bool) -> Result<usize> {
    let before = if all { i64::MAX } else { (Utc::now().timestamp() - 65).div_euclid(60) + 1 };
    let mut tx = db.begin().await?;
    let rows = sqlx::query("DELETE FROM usage_counts WHERE minute < $1 RETURNING kind, caller, environment_id, environment, integration, minute, n")
        .bind(before)
        .fetch_all(&mut *tx)
        .await?;
    for r in &rows {
        let (kind, caller, env_id, env, integration, minute, n): (String, String, i64, String, String, i64, i64) = (
            r.try_get("kind")?,
            r.try_get("caller")?,
            r.try_get("environment_id")?,
            r.try_get("environment")?,
            r.try_get("integration")?,
            r.try_get("minute")?,
            r.try_get("n")?,
        );
        let actor = Actor { kind: audit::ActorKind::ApiKey, id: None, label: caller, client_addr: None };
        let count = if kind == "token.use" { "cached_hits" } else { "calls" };
        let event = Event::new(&kind).environment(env_id, &env).object("integration", &integration).detail(json!({"minute": minute_text(minute), count: n}));
        audit::record(&mut tx, &actor, event).await?;
    }
    tx.commit().await?;
    Ok(rows.len())
}

/// `2026-11-24T14:07` for a minute since the Unix epoch.
fn minute_text(minute: i64) -> String {
    DateTime::from_timestamp(minute * 60, 0).map(|t| format_time(t)[..16].to_string()).unwrap_or_default()
}

/// The connection a wait or a session is about.
struct Which<'a> {
    id: i64,
    name: &'a str,
    env: &'a str,
    /// The connection's `updated_at`: any change ends a wait and invalidates a session.
    stamp: &'a str,
}

impl<'a> Which<'a> {
    fn of(c: &'a Connection) -> Which<'a> {
        Which { id: c.id, name: &c.name, env: &c.environment, stamp: &c.updated_at }
    }
}

fn answer(connection: &str, hit: Cached, cached: bool) -> Token {
    Token {
        access_token: hit.token,
        token_type: hit.token_type,
        instance_url: Some(hit.instance_url),
        expires_at: Some(hit.expires_text),
        connection: connection.to_string(),
        header_name: None,
        cached,
        extras: Vec::new(),
        connection_id: 0,
        provider: String::new(),
        settings: serde_json::Map::new(),
    }
}

/// 424: the connection could not get a token, why, what to do, and when to ask again.
fn failing(c: &Which<'_>, reason: &TestResult, window: Duration) -> Error {
    let advice = reason.advice.as_deref().map(|a| format!(" What to do: {a}")).unwrap_or_default();
    Error::Dependency {
        code: "connection_failing",
        message: format!("connection {} in {} could not get a token: {}.{advice}", c.name, c.env, reason.detail),
        retry_after_secs: Some(window.as_secs().max(1)),
    }
}

/// What a connection whose auth mode mints nothing hands out: its stored, long-lived secret
/// itself. Each release is audited durably, like a mint, before it leaves; if the record
/// cannot be written, nothing is released.
///
/// Through the proxy the secret stays here: the call is counted instead (`proxy.use`).
async fn release(s: Handles<'_>, actor: &Actor, env: &Environment, integration: &str, c: &Connection, purpose: Use) -> Result<Token> {
    let token = generic(s, env, c).await?;
    if purpose != Use::Token {
        return Ok(token);
    }
    audit::record_alone(
        s.db,
        actor,
        Event::new("connection.secret_release")
            .environment(env.id, &env.name)
            .object("connection", &c.name)
            .detail(json!({"integration": integration, "provider": c.provider, "token_type": token.token_type})),
    )
    .await?;
    Ok(token)
}

/// A connection's stored credential, as its provider makes it from the typed secrets.
async fn generic(s: Handles<'_>, env: &Environment, c: &Connection) -> Result<Token> {
    let def = providers::get(&c.provider).ok_or_else(|| Error::Internal(format!("unknown provider {}", c.provider)))?;
    let make = def.credential.ok_or_else(|| Error::Internal(format!("{} connections hand out no credential", def.label)))?;
    let secrets = connections::open_applicable_secrets(&s.db, &s.vault, &env.name, c, def).await?;
    let credential = make(&c.settings, &secrets).map_err(|u| Error::Conflict {
        code: "connection_incomplete",
        message: format!("connection {} in {} cannot hand out a credential: {}; {}", c.name, env.name, u.detail, u.advice),
    })?;
    Ok(Token::from_credential(&c.name, credential, false))
}
