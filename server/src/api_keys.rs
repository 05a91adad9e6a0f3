//! API keys for apps and release tooling.
//!
//! A key is `cvk_` + 8 hex characters (the visible prefix, which identifies it) + `_` + 256
//! random bits. Only its SHA-256 is stored; the key itself is shown once, when it is created.
//! Grants name an environment (or `*`), a resource (or `*`) and read or write; write does not
//! imply read. Keys can be limited to client addresses (CIDRs), can expire, and are revoked at
//! once.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::Row;
use subtle::ConstantTimeEq;

use crate::access::{self, Access, Resource, RESOURCES};
use crate::audit::{self, Actor, ActorKind, Event};
use crate::db::{now, Db};
use crate::environments::{self, Environment};
use crate::error::{Error, FieldError, Result};
use crate::feed::{self, Feed, Filter, Listing, Page, SortKey};
use crate::secret::SecretString;
use crate::startup::Services;
use crate::tokens;
use crate::users::User;

pub const KEY_PREFIX: &str = "cvk_";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// An environment name, or `*` for all.
    pub environment: String,
    /// A resource name, or `*` for all.
    pub resource: String,
    pub access: Access,
}

// A grant: the resources from `access::RESOURCES`, the read-only ones taking read only.
crate::api::doc::hand_schema!(Grant, "Grant", || {
    use crate::access::RESOURCES;
    let resources: Vec<&str> = std::iter::once("*").chain(RESOURCES.iter().map(|r| r.as_str())).collect();
    let read_only: Vec<&str> = RESOURCES.iter().filter(|r| r.read_only()).map(|r| r.as_str()).collect();
    serde_json::json!({
        "type": "object",
        "required": ["environment", "resource", "access"],
        "properties": {
            "environment": {"type": "string", "description": "An environment name (case-insensitive) or *"},
            "resource": {"type": "string", "enum": resources},
            "access": {"type": "string", "enum": ["read", "write"]}
        },
        "additionalProperties": false,
        "description": format!("{} can only be read", read_only.join(", ")),
        "if": {"properties": {"resource": {"enum": read_only}}, "required": ["resource"]},
        "then": {"properties": {"access": {"const": "read"}}}
    })
});

impl Grant {
    /// Whether this grant gives at least everything `other` gives.
    pub fn includes(&self, other: &Grant) -> bool {
        (self.environment == "*" || self.environment.eq_ignore_ascii_case(&other.environment))
            && (self.resource == "*" || self.resource == other.resource)
            && self.access == other.access
    }

    fn covers(&self, environment: &str, resource: Resource, access: Access) -> bool {
        (self.environment == "*" || self.environment.eq_ignore_ascii_case(environment))
            && (self.resource == "*" || self.resource == resource.as_str())
            && self.access == access
    }
}

/// Parses the command line's `ENV:RESOURCE:ACCESS` (ACCESS `read`, `write` or `rw`).
pub fn parse_grant(text: &str) -> Result<Vec<Grant>> {
    let parts: Vec<&str> = text.split(':').collect();
    let [env, resource, access] = parts[..] else {
        return Err(Error::field("grant", format!("{text:?} must look like ENV:RESOURCE:ACCESS, e.g. QA:tokens:read or *:connections:rw")));
    };
    let accesses = match access {
        "read" => vec![Access::Read],
        "write" => vec![Access::Write],
        "rw" => vec![Access::Read, Access::Write],
        other => return Err(Error::field("grant", format!("access must be read, write or rw, not {other:?}"))),
    };
    Ok(accesses.into_iter().map(|access| Grant { environment: env.to_string(), resource: resource.to_string(), access }).collect())
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiKey {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub grants: Vec<Grant>,
    pub allowed_addresses: Vec<String>,
    #[schema(required = true)]
    pub expires_at: Option<String>,
    #[schema(required = true)]
    pub last_used_at: Option<String>,
    #[schema(required = true)]
    pub revoked_at: Option<String>,
    pub created_by: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl ApiKey {
    pub fn allows(&self, environment: &str, resource: Resource, access: Access) -> bool {
        self.grants.iter().any(|g| g.covers(environment, resource, access))
    }

    pub fn actor(&self, client_addr: Option<IpAddr>) -> Actor {
        Actor {
            kind: ActorKind::ApiKey,
            id: Some(self.id),
            label: format!("API key {} ({})", self.name, self.prefix),
            client_addr: client_addr.map(|a| a.to_string()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    pub name: String,
    pub grants: Vec<Grant>,
    #[serde(default)]
    pub allowed_addresses: Vec<String>,
    /// RFC 3339; must be in the future.
    #[serde(default)]
    pub expires_at: Option<String>,
}

crate::api::doc::hand_schema!(
    NewApiKey,
    "NewApiKey",
    || {
        use crate::api::doc::{CONTROL, WS};
        serde_json::json!({
            "type": "object",
            "required": ["name", "grants"],
            "additionalProperties": false,
            "properties": {
                "name": {
                    "type": "string",
                    "pattern": format!("^[{WS}]*[^{WS}{CONTROL}](?:[^{CONTROL}]{{0,98}}[^{WS}{CONTROL}])?[{WS}]*$"),
                    "description": "1 to 100 characters (surrounding white space is dropped), no control characters; e.g. the app that uses it"
                },
                "grants": {
                    "type": "array",
                    "minItems": 1,
                    "items": crate::api::doc::schema_ref::<Grant>(),
                    "description": "Read-only resources (audit, users) take read only; every environment named must exist"
                },
                "allowed_addresses": {
                    "type": "array",
                    "items": {
                        "type": "string",
                        "description": "An IPv4 or IPv6 address, or a CIDR range such as 10.0.0.0/8 (surrounding white space is dropped)",
                        "pattern": format!("^[{WS}]*(?:{IPV4}|{IPV6})[{WS}]*$")
                    },
                    "description": "Addresses or CIDR ranges (e.g. 10.0.0.0/8) the key may be used from; none: any"
                },
                "expires_at": {"type": ["string", "null"], "format": "date-time", "description": "RFC 3339, in the future"}
            }
        })
    },
    [Grant]
);

/// An IPv4 address, optionally with a prefix length (for `allowed_addresses`' schema).
const IPV4: &str = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}(?:/(?:3[0-2]|[12]?[0-9]))?";
/// An IPv6 address (every abbreviation), optionally with a prefix length.
const IPV6: &str = r"(?:(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}|(?:[0-9A-Fa-f]{1,4}:){1,7}:|(?:[0-9A-Fa-f]{1,4}:){1,6}:[0-9A-Fa-f]{1,4}|(?:[0-9A-Fa-f]{1,4}:){1,5}(?::[0-9A-Fa-f]{1,4}){1,2}|(?:[0-9A-Fa-f]{1,4}:){1,4}(?::[0-9A-Fa-f]{1,4}){1,3}|(?:[0-9A-Fa-f]{1,4}:){1,3}(?::[0-9A-Fa-f]{1,4}){1,4}|(?:[0-9A-Fa-f]{1,4}:){1,2}(?::[0-9A-Fa-f]{1,4}){1,5}|[0-9A-Fa-f]{1,4}:(?::[0-9A-Fa-f]{1,4}){1,6}|:(?:(?::[0-9A-Fa-f]{1,4}){1,7}|:))(?:/(?:12[0-8]|1[01][0-9]|[1-9]?[0-9]))?";

/// Who is creating a key: a person (limited by their own rights) or the operator at the
/// server's command line.
pub enum Creator<'a> {
    User(&'a User),
    Operator,
}

const COLUMNS: &str = "id, name, prefix, grants, allowed_addresses, expires_at, last_used_at, revoked_at, created_by, created_at, updated_at";

fn from_row(r: &AnyRow) -> Result<ApiKey> {
    let grants: String = r.try_get("grants")?;
    let allowed: String = r.try_get("allowed_addresses")?;
    Ok(ApiKey {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        prefix: r.try_get("prefix")?,
        grants: serde_json::from_str(&grants).map_err(|e| Error::Internal(format!("stored grants: {e}")))?,
        allowed_addresses: serde_json::from_str(&allowed).map_err(|e| Error::Internal(format!("stored addresses: {e}")))?,
        expires_at: r.try_get("expires_at")?,
        last_used_at: r.try_get("last_used_at")?,
        revoked_at: r.try_get("revoked_at")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// An address range in CIDR form (or a single address).
fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (addr, bits) = match text.split_once('/') {
        Some((a, b)) => (a.parse::<IpAddr>().ok()?, b.parse::<u8>().ok()?),
        None => {
            let a: IpAddr = text.parse().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((addr, bits))
}

fn in_cidr(addr: IpAddr, (net, bits): (IpAddr, u8)) -> bool {
    let addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
        v4 => v4,
    };
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

async fn validate(db: &Db, input: &NewApiKey) -> Result<Vec<Environment>> {
    let envs = environments::list(db).await?;
    let mut errors = Vec::new();
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        errors.push(FieldError::new("name", "give the key a name of 1 to 100 characters, e.g. the app that uses it"));
    }
    if input.grants.is_empty() {
        errors
            .push(FieldError::new("grants", "a key needs at least one grant, e.g. {\"environment\": \"QA\", \"resource\": \"tokens\", \"access\": \"read\"}"));
    }
    for (i, g) in input.grants.iter().enumerate() {
        if g.environment != "*" && !envs.iter().any(|e| e.name.eq_ignore_ascii_case(&g.environment)) {
            errors.push(FieldError::new(
                format!("grants[{i}].environment"),
                format!("no environment named {}; use one of {} or *", g.environment, envs.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", ")),
            ));
        }
        match Resource::parse(&g.resource) {
            Some(r) if r.read_only() && g.access == Access::Write => {
                errors.push(FieldError::new(format!("grants[{i}].access"), format!("{} can only be read", r.as_str())));
            }
            Some(_) => {}
            None if g.resource == "*" => {}
            None => errors.push(FieldError::new(
                format!("grants[{i}].resource"),
                format!("unknown resource {:?}; use one of {} or *", g.resource, RESOURCES.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")),
            )),
        }
    }
    for (i, a) in input.allowed_addresses.iter().enumerate() {
        if parse_cidr(a.trim()).is_none() {
            errors.push(FieldError::new(format!("allowed_addresses[{i}]"), format!("{a:?} is not an address or CIDR range such as 10.0.0.0/8")));
        }
    }
    if let Some(exp) = &input.expires_at {
        match chrono::DateTime::parse_from_rfc3339(exp) {
            Ok(t) if t.with_timezone(&chrono::Utc) > chrono::Utc::now() => {}
            Ok(_) => errors.push(FieldError::new("expires_at", "the expiry must be in the future")),
            Err(_) => errors.push(FieldError::new("expires_at", "use an RFC 3339 time such as 2027-01-31T00:00:00Z")),
        }
    }
    if errors.is_empty() {
        Ok(envs)
    } else {
        Err(Error::Validation(errors))
    }
}

/// Refuses a key wider than its creator: every (environment, resource, access) the key grants
/// must be one the creator holds, and the creator must manage API keys in each environment.
fn check_not_wider(user: &User, input: &NewApiKey, envs: &[Environment]) -> Result<()> {
    for g in &input.grants {
        let targets: Vec<&Environment> = envs.iter().filter(|e| g.environment == "*" || e.name.eq_ignore_ascii_case(&g.environment)).collect();
        let resources: Vec<Resource> = match Resource::parse(&g.resource) {
            Some(r) => vec![r],
            None => RESOURCES.iter().copied().filter(|r| !(r.read_only() && g.access == Access::Write)).collect(),
        };
        for env in targets {
            if !access::user_allows(user, &env.name, env.allow_dev_api_keys, Resource::ApiKeys, Access::Write) {
                return Err(Error::Forbidden(format!("you cannot manage API keys in {}; ask an administrator of {}", env.name, env.name)));
            }
            for r in &resources {
                if !access::user_allows(user, &env.name, env.allow_dev_api_keys, *r, g.access) {
                    return Err(Error::Forbidden(format!(
                        "this key would grant {} {} in {}, which you do not have yourself; a key cannot be wider than its creator",
                        r.as_str(),
                        match g.access {
                            Access::Read => "read",
                            Access::Write => "write",
                        },
                        env.name
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Creates a key. Returns it with the key value, which is never shown again.
pub async fn create(db: &Db, actor: &Actor, creator: Creator<'_>, input: NewApiKey) -> Result<(ApiKey, SecretString)> {
    let envs = validate(db, &input).await?;
    if let Creator::User(user) = creator {
        check_not_wider(user, &input, &envs)?;
    }
    let mut id_bytes = [0u8; 4];
    getrandom::fill(&mut id_bytes).map_err(|e| Error::Internal(e.to_string()))?;
    let prefix = format!("{KEY_PREFIX}{}", hex::encode(id_bytes));
    let key = SecretString::new(format!("{prefix}_{}", tokens::generate().expose_secret()));
    let t = now();
    let mut tx = db.begin().await?;
    let id: i64 = sqlx::query(
        "INSERT INTO api_keys (name, prefix, key_hash, grants, allowed_addresses, expires_at, created_by, created_by_user_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING id",
    )
    .bind(input.name.trim())
    .bind(&prefix)
    .bind(tokens::digest(key.expose_secret()))
    .bind(serde_json::to_string(&input.grants).expect("grants serialize"))
    .bind(serde_json::to_string(&input.allowed_addresses.iter().map(|a| a.trim()).collect::<Vec<_>>()).expect("strings serialize"))
    .bind(input.expires_at.as_deref())
    .bind(&actor.label)
    .bind(actor.id.filter(|_| actor.kind == ActorKind::User))
    .bind(&t)
    .fetch_one(&mut *tx)
    .await?
    .try_get("id")?;
    audit::record(&mut tx, actor, Event::new("api_key.create").object("api_key", &prefix).detail(json!({"name": input.name.trim(), "grants": input.grants})))
        .await?;
    tx.commit().await?;
    Ok((get(db, id).await?, key))
}

pub async fn get(db: &Db, id: i64) -> Result<ApiKey> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1")))
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .ok_or_else(|| Error::NotFound(format!("no API key with id {id}")))?;
    from_row(&row)
}

/// API keys a page at a time: by id, or as a change feed.
pub async fn page(db: &Db, feed: &Feed, limit: Option<i64>) -> Result<Page<ApiKey>> {
    const LISTING: Listing = Listing { name: "api_keys", columns: COLUMNS, table: "api_keys", order: SortKey::Id, descending: false };
    feed::page(db, &LISTING, Filter::new(), feed, limit).await?.try_map(|r| from_row(&r))
}

pub async fn revoke(db: &Db, actor: &Actor, id: i64) -> Result<()> {
    let key = get(db, id).await?;
    let mut tx = db.begin().await?;
    let t = now();
    sqlx::query("UPDATE api_keys SET revoked_at = $1, updated_at = $1 WHERE id = $2 AND revoked_at IS NULL").bind(&t).bind(id).execute(&mut *tx).await?;
    audit::record(&mut tx, actor, Event::new("api_key.revoke").object("api_key", &key.prefix).detail(json!({"name": key.name}))).await?;
    tx.commit().await?;
    Ok(())
}

/// Checks a presented key. Failures count against the client address (429 after 10).
pub async fn authenticate(s: &Services, presented: &str, addr: Option<IpAddr>) -> Result<ApiKey> {
    s.limiter.guard(addr)?;
    let prefix = key_prefix(presented).ok_or_else(|| refused(s, addr, "it is not a connvault key"))?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS}, key_hash FROM api_keys WHERE prefix = $1")))
        .bind(prefix)
        .fetch_optional(s.db.pool())
        .await?;
    let key = verify(s, presented, addr, row.as_ref())?;
    touch(s, &key).await?;
    Ok(key)
}

/// The visible prefix of a presented key (`cvk_` and 8 characters), if it looks like one.
pub fn key_prefix(presented: &str) -> Option<&str> {
    presented.get(..KEY_PREFIX.len() + 8).filter(|p| p.starts_with(KEY_PREFIX))
}

/// The key's columns as `alias.column`, for a query that joins other tables (the token
/// broker reads the key and the binding in one round trip).
pub fn columns_of(alias: &str) -> String {
    COLUMNS.split(", ").chain(["key_hash"]).map(|c| format!("{alias}.{c}")).collect::<Vec<_>>().join(", ")
}

fn refused(s: &Services, addr: Option<IpAddr>, why: &str) -> Error {
    if let Some(ip) = addr {
        s.limiter.record_failure(ip);
    }
    Error::Unauthorized(format!("the API key is not valid: {why}"))
}

/// Checks a presented key against its stored row (selected with [`columns_of`] or `COLUMNS,
/// key_hash`; `None` if no key has its prefix): digest, revocation, expiry, address limits.
/// The caller has checked the rate limit (`s.limiter.guard`); failures count against it.
pub fn verify(s: &Services, presented: &str, addr: Option<IpAddr>, row: Option<&AnyRow>) -> Result<ApiKey> {
    let row = row.ok_or_else(|| refused(s, addr, "unknown key"))?;
    let stored: String = row.try_get("key_hash")?;
    if !bool::from(stored.as_bytes().ct_eq(tokens::digest(presented).as_bytes())) {
        return Err(refused(s, addr, "unknown key"));
    }
    let key = from_row(row)?;
    if key.revoked_at.is_some() {
        return Err(refused(s, addr, "it was revoked"));
    }
    if key.expires_at.as_deref().and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok()).is_some_and(|e| e.with_timezone(&chrono::Utc) <= chrono::Utc::now())
    {
        return Err(refused(s, addr, "it has expired"));
    }
    if !key.allowed_addresses.is_empty() {
        let allowed = addr.is_some_and(|a| key.allowed_addresses.iter().filter_map(|c| parse_cidr(c)).any(|c| in_cidr(a, c)));
        if !allowed {
            return Err(Error::Forbidden(format!(
                "API key {} may not be used from {}",
                key.prefix,
                addr.map(|a| a.to_string()).unwrap_or_else(|| "this address".into())
            )));
        }
    }
    Ok(key)
}

/// Which minute each key's use was last recorded in, by this process: under load, only the
/// first request of a minute writes `last_used_at`, not every request in flight.
#[derive(Debug, Default, Clone)]
pub struct KeyUse(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<i64, String>>>);

impl KeyUse {
    /// True the first time `key` is seen in `minute`.
    fn first_in(&self, key: i64, minute: &str) -> bool {
        let mut seen = self.0.lock().expect("key use lock");
        if seen.get(&key).is_some_and(|m| m.as_str() >= minute) {
            return false;
        }
        seen.insert(key, minute.to_string());
        true
    }
}

/// Records the key's use: `last_used_at` at most once a minute (and per process, by one
/// request), so the hot path stays write-free.
pub async fn touch(s: &Services, key: &ApiKey) -> Result<()> {
    let t = now();
    if key.last_used_at.as_deref().is_none_or(|u| u < &t[..16]) && s.key_use.first_in(key.id, &t[..16]) {
        sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2").bind(&t).bind(key.id).execute(s.db.pool()).await?;
    }
    Ok(())
}

/// Whether a signed-in person may revoke `key`: they created it, or they may manage API keys in
/// every environment the key reaches (all of them, for a `*` grant).
pub fn user_may_revoke(user: &User, key: &ApiKey, envs: &[Environment]) -> bool {
    let manages = |env: &Environment| access::user_allows(user, &env.name, env.allow_dev_api_keys, Resource::ApiKeys, Access::Write);
    key.created_by.eq_ignore_ascii_case(&user.email)
        || key.grants.iter().all(|g| {
            if g.environment == "*" {
                envs.iter().all(manages)
            } else {
                envs.iter().filter(|e| e.name.eq_ignore_ascii_case(&g.environment)).all(manages)
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_arguments() {
        assert_eq!(parse_grant("QA:tokens:read").unwrap(), vec![Grant { environment: "QA".into(), resource: "tokens".into(), access: Access::Read }]);
        assert_eq!(parse_grant("*:*:rw").unwrap().len(), 2);
        assert!(parse_grant("QA:tokens").is_err());
        assert!(parse_grant("QA:tokens:all").is_err());
    }

    #[test]
    fn cidr_matching() {
        let net = parse_cidr("10.1.0.0/16").unwrap();
        assert!(in_cidr("10.1.200.3".parse().unwrap(), net));
        assert!(!in_cidr("10.2.0.1".parse().unwrap(), net));
        assert!(in_cidr("::ffff:10.1.0.9".parse().unwrap(), net), "IPv4-mapped IPv6");
        assert!(in_cidr("192.0.2.1".parse().unwrap(), parse_cidr("192.0.2.1").unwrap()));
        assert!(in_cidr("2001:db8::1".parse().unwrap(), parse_cidr("2001:db8::/32").unwrap()));
        assert!(parse_cidr("10.0.0.0/33").is_none());
        assert!(parse_cidr("nonsense").is_none());
    }
}
