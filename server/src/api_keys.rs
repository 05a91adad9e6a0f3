//! API keys for apps and release tooling.
//!
//! A key is `cvk_` + 8 hex characters (the visible prefix, which identifies it) + `_` + 256
//! random bits. Only its SHA-256 is stored; the key itself is shown once, when it is created.
//! Grants name an environment (or `*`), a resource (or `*`) and read or write; write does not
//! imply read. The API takes and shows environments by name; a grant stores the environment's
//! id, so a rename keeps the key working and a new environment with an old name inherits
//! nothing. Keys can be limited to client addresses (CIDRs), can expire, and are revoked at
//! once.
//!
//! A key is never wider than its creator is now (promise 18): at each use its grants are
//! limited by the current rights of the person who made it (owners: everything; a key made by
//! the operator at the command line has no person behind it and keeps its grants). A key made
//! by a key records its parent: it stays within the parent's grants, addresses and expiry,
//! acts for the parent's creator, and ends when the parent is revoked.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::Row;
use subtle::ConstantTimeEq;

use crate::access::{self, Access, Resource, RESOURCES};
use crate::audit::{self, Actor, ActorKind, Event};
use crate::db::{format_time, now, Db};
use crate::environments::{self, Environment};
use crate::error::{Error, FieldError, Result};
use crate::feed::{self, Feed, Filter, Listing, Page, SortKey};
use crate::ratelimit::{in_cidr, parse_cidr, Limiter};
use crate::secret::SecretString;
use crate::tokens;
use crate::users::User;

pub const KEY_PREFIX: &str = "cvk_";

/// What checking a presented key uses: the database, the failed-authentication limiter (per
/// client address) and the record of when each key's use was last written.
#[derive(Clone, Copy)]
pub struct Handles<'a> {
    pub db: &'a Db,
    pub limiter: &'a Limiter,
    pub key_use: &'a KeyUse,
}

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
crate::schema::hand_schema!(Grant, "Grant", || {
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

/// Which environments a stored grant reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `*`: every environment, including ones added later.
    All,
    /// One environment, by id (it keeps the grant through a rename).
    Env(i64),
}

/// A grant as a key holds it: the environment by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StoredGrant", into = "StoredGrant")]
pub struct KeyGrant {
    pub scope: Scope,
    /// A resource name, or `*` for all.
    pub resource: String,
    pub access: Access,
}

/// The stored JSON of a grant: `{"environment_id": 3, …}`, or `{"environment": "*", …}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredGrant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    environment_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    environment: Option<String>,
    resource: String,
    access: Access,
}

impl TryFrom<StoredGrant> for KeyGrant {
    type Error = String;
    fn try_from(g: StoredGrant) -> std::result::Result<KeyGrant, String> {
        let scope = match (g.environment_id, g.environment.as_deref()) {
            (Some(id), None) => Scope::Env(id),
            (None, Some("*")) => Scope::All,
            _ => return Err("a stored grant names an environment by id, or is for * (all)".into()),
        };
        Ok(KeyGrant { scope, resource: g.resource, access: g.access })
    }
}

impl From<KeyGrant> for StoredGrant {
    fn from(g: KeyGrant) -> StoredGrant {
        let (environment_id, environment) = match g.scope {
            Scope::All => (None, Some("*".to_string())),
            Scope::Env(id) => (Some(id), None),
        };
        StoredGrant { environment_id, environment, resource: g.resource, access: g.access }
    }
}

impl KeyGrant {
    /// Whether this grant gives at least everything `other` gives.
    pub fn includes(&self, other: &KeyGrant) -> bool {
        (self.scope == Scope::All || self.scope == other.scope) && (self.resource == "*" || self.resource == other.resource) && self.access == other.access
    }

    fn covers(&self, environment_id: i64, resource: Resource, access: Access) -> bool {
        (self.scope == Scope::All || self.scope == Scope::Env(environment_id))
            && (self.resource == "*" || self.resource == resource.as_str())
            && self.access == access
    }

    fn covers_everywhere(&self, resource: Resource, access: Access) -> bool {
        self.scope == Scope::All && (self.resource == "*" || self.resource == resource.as_str()) && self.access == access
    }

    /// The grant as the API shows it: the environment by its current name.
    pub fn render(&self, envs: &[Environment]) -> Grant {
        let environment = match self.scope {
            Scope::All => "*".to_string(),
            Scope::Env(id) => envs.iter().find(|e| e.id == id).map(|e| e.name.clone()).unwrap_or_else(|| format!("(environment {id}, gone)")),
        };
        Grant { environment, resource: self.resource.clone(), access: self.access }
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

/// A key as stored (its grants by environment id). [`ApiKey::view`] is what the API shows.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub grants: Vec<KeyGrant>,
    pub allowed_addresses: Vec<String>,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
    pub created_by: String,
    /// The person whose rights limit the key: who made it, or for a key made by a key, the
    /// person behind its parent. `None`: made by the operator at the command line.
    pub created_by_user_id: Option<i64>,
    /// The key that made this one, if a key did.
    pub parent_id: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
}

/// A key as the API shows it: grants by environment name.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = ApiKey)]
pub struct ApiKeyView {
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
    #[schema(required = true)]
    pub parent_id: Option<i64>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl ApiKey {
    /// Whether the key's own grants cover this (its creator's and parent's rights aside: see
    /// [`Effective::allows`]).
    pub fn grants_cover(&self, environment_id: i64, resource: Resource, access: Access) -> bool {
        self.grants.iter().any(|g| g.covers(environment_id, resource, access))
    }

    pub fn view(&self, envs: &[Environment]) -> ApiKeyView {
        ApiKeyView {
            id: self.id,
            name: self.name.clone(),
            prefix: self.prefix.clone(),
            grants: self.grants.iter().map(|g| g.render(envs)).collect(),
            allowed_addresses: self.allowed_addresses.clone(),
            expires_at: self.expires_at.clone(),
            last_used_at: self.last_used_at.clone(),
            revoked_at: self.revoked_at.clone(),
            created_by: self.created_by.clone(),
            parent_id: self.parent_id,
            created_at: self.created_at.clone(),
            updated_at: self.updated_at.clone(),
        }
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

crate::schema::hand_schema!(
    NewApiKey,
    "NewApiKey",
    || {
        use crate::schema::{CONTROL, WS};
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
                    "items": crate::schema::schema_ref::<Grant>(),
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

/// Stored grants (environments by id) as the API writes them (by name), for a backup; grants
/// for an environment that is gone are left out (they reach nothing).
pub fn grants_by_name(stored: &str, envs: &[Environment]) -> Result<String> {
    let grants: Vec<KeyGrant> = serde_json::from_str(stored).map_err(|e| Error::Internal(format!("stored grants: {e}")))?;
    let named: Vec<Grant> = grants
        .iter()
        .filter(|g| matches!(g.scope, Scope::Env(id) if envs.iter().any(|e| e.id == id)) || g.scope == Scope::All)
        .map(|g| g.render(envs))
        .collect();
    serde_json::to_string(&named).map_err(|e| Error::Internal(e.to_string()))
}

/// Grants by environment name (a backup's) in their stored form, by the ids `id_of` gives.
pub fn grants_by_id(named: &str, id_of: impl Fn(&str) -> Option<i64>) -> Result<String> {
    let grants: Vec<Grant> = serde_json::from_str(named).map_err(|e| Error::field("grants", format!("not a list of grants: {e}")))?;
    let mut stored = Vec::with_capacity(grants.len());
    for g in grants {
        let scope = if g.environment == "*" {
            Scope::All
        } else {
            Scope::Env(id_of(&g.environment).ok_or_else(|| Error::field("grants", format!("no environment {} for a grant", g.environment)))?)
        };
        stored.push(KeyGrant { scope, resource: g.resource, access: g.access });
    }
    serde_json::to_string(&stored).map_err(|e| Error::Internal(e.to_string()))
}

/// Who is creating a key: a person (limited by their own rights), a key (limited by its own
/// effective rights, addresses and expiry), or the operator at the server's command line.
pub enum Creator<'a> {
    User(&'a User),
    Key(&'a Effective),
    Operator,
}

/// A key as it may act now: its own grants, limited by every ancestor's (for a key made by a
/// key) and by the current rights of the person behind it.
#[derive(Debug, Clone)]
pub struct Effective {
    pub key: ApiKey,
    /// Its parent, the parent's parent, …
    pub ancestors: Vec<ApiKey>,
    /// The person behind the chain as they are now (`None`: made by the operator). For the
    /// token broker's one-query path, only their role in the request's environment is loaded.
    pub creator: Option<User>,
}

impl Effective {
    fn chain(&self) -> impl Iterator<Item = &ApiKey> {
        std::iter::once(&self.key).chain(&self.ancestors)
    }

    /// Whether the key may do `access` on `resource` in `env` now.
    pub fn allows(&self, env: &Environment, resource: Resource, access: Access) -> bool {
        self.chain().all(|k| k.grants_cover(env.id, resource, access))
            && self.creator.as_ref().is_none_or(|u| access::user_allows(u, &env.name, env.allow_dev_api_keys, resource, access))
    }

    /// For resources that span environments: every key of the chain is granted it on `*`, and
    /// the person behind it is an owner or holds it in every environment there is now.
    pub fn allows_everywhere(&self, envs: &[Environment], resource: Resource, access: Access) -> bool {
        self.chain().all(|k| k.grants.iter().any(|g| g.covers_everywhere(resource, access)))
            && self.creator.as_ref().is_none_or(|u| u.is_owner || envs.iter().all(|e| access::user_allows(u, &e.name, e.allow_dev_api_keys, resource, access)))
    }

    /// The 403 for a request [`Effective::allows`] refused, saying whether the key lacks the
    /// grant or its creator no longer holds it.
    pub fn refusal(&self, env: &Environment, resource: Resource, access: Access) -> Error {
        let what = match access {
            Access::Read => "read",
            Access::Write => "change",
        };
        let granted = self.chain().all(|k| k.grants_cover(env.id, resource, access));
        match &self.creator {
            Some(u) if granted => Error::Forbidden(format!(
                "you may not {what} {} in {}: the key grants it, but {}, who made the key, does not have it now; a key has no more rights than its creator",
                resource.as_str(),
                env.name,
                u.email
            )),
            _ => Error::Forbidden(format!("you may not {what} {} in {}", resource.as_str(), env.name)),
        }
    }

    /// Whether every key of the chain grants at least `grant`.
    fn includes(&self, grant: &KeyGrant) -> bool {
        self.chain().all(|k| k.grants.iter().any(|own| own.includes(grant)))
    }

    pub fn actor(&self, client_addr: Option<IpAddr>) -> Actor {
        self.key.actor(client_addr)
    }
}

const COLUMNS: &str =
    "id, name, prefix, grants, allowed_addresses, expires_at, last_used_at, revoked_at, created_by, created_by_user_id, parent_id, created_at, updated_at";

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
        created_by_user_id: r.try_get("created_by_user_id")?,
        parent_id: r.try_get("parent_id")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// What a valid request for a key resolves to.
struct Checked {
    envs: Vec<Environment>,
    grants: Vec<KeyGrant>,
    /// In connvault's UTC form.
    expires_at: Option<String>,
}

/// An RFC 3339 time, in UTC.
fn parse_time(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(text.trim()).ok().map(|t| t.with_timezone(&chrono::Utc))
}

async fn validate(db: &Db, input: &NewApiKey) -> Result<Checked> {
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
    let mut grants = Vec::with_capacity(input.grants.len());
    for (i, g) in input.grants.iter().enumerate() {
        // Resolved to the environment's id now: the grant follows that environment, whatever
        // it is called later.
        let scope = if g.environment == "*" {
            Some(Scope::All)
        } else {
            match envs.iter().find(|e| e.name.eq_ignore_ascii_case(&g.environment)) {
                Some(e) => Some(Scope::Env(e.id)),
                None => {
                    errors.push(FieldError::new(
                        format!("grants[{i}].environment"),
                        format!(
                            "no environment named {}; use one of {} or *",
                            g.environment,
                            envs.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                    ));
                    None
                }
            }
        };
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
        if let Some(scope) = scope {
            grants.push(KeyGrant { scope, resource: g.resource.clone(), access: g.access });
        }
    }
    for (i, a) in input.allowed_addresses.iter().enumerate() {
        if parse_cidr(a.trim()).is_none() {
            errors.push(FieldError::new(format!("allowed_addresses[{i}]"), format!("{a:?} is not an address or CIDR range such as 10.0.0.0/8")));
        }
    }
    let mut expires_at = None;
    if let Some(exp) = &input.expires_at {
        match parse_time(exp) {
            Some(t) if t > chrono::Utc::now() => expires_at = Some(format_time(t)),
            Some(_) => errors.push(FieldError::new("expires_at", "the expiry must be in the future")),
            None => errors.push(FieldError::new("expires_at", "use an RFC 3339 time such as 2027-01-31T00:00:00Z")),
        }
    }
    if errors.is_empty() {
        Ok(Checked { envs, grants, expires_at })
    } else {
        Err(Error::Validation(errors))
    }
}

fn access_word(access: Access) -> &'static str {
    match access {
        Access::Read => "read",
        Access::Write => "write",
    }
}

/// Refuses a key wider than its creator: every (environment, resource, access) the key grants
/// must be one the creator holds, and the creator must manage API keys in each environment.
fn check_not_wider(user: &User, grants: &[KeyGrant], envs: &[Environment]) -> Result<()> {
    for g in grants {
        let targets: Vec<&Environment> = envs.iter().filter(|e| g.scope == Scope::All || g.scope == Scope::Env(e.id)).collect();
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
                        access_word(g.access),
                        env.name
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Whether the range `inner` lies inside `outer` (same address family, at least as long a prefix).
fn cidr_within(inner: (IpAddr, u8), outer: (IpAddr, u8)) -> bool {
    inner.0.is_ipv4() == outer.0.is_ipv4() && inner.1 >= outer.1 && in_cidr(inner.0, outer)
}

/// A key made by a key stays inside it: no grant its parent (and every key above) lacks, its
/// addresses inside every address limit of the chain, its expiry no later than the earliest of
/// the chain's. A missing expiry becomes that earliest one; missing addresses under a limited
/// parent are refused (the caller must say which of the parent's addresses the new key gets).
fn check_within_parent(parent: &Effective, grants: &[KeyGrant], allowed: &[String], expires_at: &mut Option<String>) -> Result<()> {
    if grants.iter().any(|g| !parent.includes(g)) {
        return Err(Error::Forbidden("a key cannot create a key wider than itself".into()));
    }
    let mut errors = Vec::new();
    for k in parent.chain().filter(|k| !k.allowed_addresses.is_empty()) {
        let limits: Vec<(IpAddr, u8)> = k.allowed_addresses.iter().filter_map(|c| parse_cidr(c)).collect();
        if allowed.is_empty() {
            errors.push(FieldError::new(
                "allowed_addresses",
                format!(
                    "key {} may only be used from {}; a key it makes must be limited to those addresses or narrower ones: list them in allowed_addresses",
                    k.prefix,
                    k.allowed_addresses.join(", ")
                ),
            ));
            break;
        }
        for (i, a) in allowed.iter().enumerate() {
            if !parse_cidr(a.trim()).is_some_and(|c| limits.iter().any(|l| cidr_within(c, *l))) {
                errors.push(FieldError::new(
                    format!("allowed_addresses[{i}]"),
                    format!("{} is not within the addresses key {} may be used from ({})", a.trim(), k.prefix, k.allowed_addresses.join(", ")),
                ));
            }
        }
    }
    // The earliest expiry of the chain (one that does not read counts as now: fail closed).
    let earliest = parent.chain().filter_map(|k| k.expires_at.as_deref().map(|e| (k, parse_time(e).unwrap_or_else(chrono::Utc::now)))).min_by_key(|(_, t)| *t);
    if let Some((k, limit)) = earliest {
        match expires_at.as_deref().and_then(parse_time) {
            None => *expires_at = Some(format_time(limit)),
            Some(t) if t > limit => errors.push(FieldError::new(
                "expires_at",
                format!("must be no later than {}, when key {} expires; a key cannot outlive the key that makes it", format_time(limit), k.prefix),
            )),
            Some(_) => {}
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Validation(errors))
    }
}

/// Creates a key. Returns it with the key value, which is never shown again.
pub async fn create(db: &Db, actor: &Actor, creator: Creator<'_>, input: NewApiKey) -> Result<(ApiKey, SecretString)> {
    let Checked { envs, grants, mut expires_at } = validate(db, &input).await?;
    let (creator_id, parent_id) = match creator {
        Creator::User(user) => {
            check_not_wider(user, &grants, &envs)?;
            (Some(user.id), None)
        }
        Creator::Key(parent) => {
            check_within_parent(parent, &grants, &input.allowed_addresses, &mut expires_at)?;
            if let Some(user) = &parent.creator {
                check_not_wider(user, &grants, &envs)?;
            }
            (parent.creator.as_ref().map(|u| u.id), Some(parent.key.id))
        }
        Creator::Operator => (None, None),
    };
    let mut tx = db.begin().await?;
    let allowed: Vec<String> = input.allowed_addresses.iter().map(|a| a.trim().to_string()).collect();
    let stored = Stored { name: input.name.trim(), grants: &grants, allowed_addresses: &allowed, expires_at: expires_at.as_deref(), creator_id, parent_id };
    let (id, prefix, key) = insert(&mut tx, actor, &stored).await?;
    let mut detail = json!({"name": input.name.trim(), "grants": input.grants, "expires_at": expires_at});
    if let Some(parent) = parent_id {
        detail["parent_id"] = json!(parent);
    }
    audit::record(&mut tx, actor, Event::new("api_key.create").object("api_key", &prefix).detail(detail)).await?;
    tx.commit().await?;
    Ok((get(db, id).await?, key))
}

/// What a new key row holds besides its value.
struct Stored<'a> {
    name: &'a str,
    grants: &'a [KeyGrant],
    allowed_addresses: &'a [String],
    expires_at: Option<&'a str>,
    creator_id: Option<i64>,
    parent_id: Option<i64>,
}

/// Inserts a key with a new value: its id, its prefix and the value (shown once).
async fn insert(tx: &mut crate::db::Tx<'_>, actor: &Actor, k: &Stored<'_>) -> Result<(i64, String, SecretString)> {
    let mut id_bytes = [0u8; 4];
    getrandom::fill(&mut id_bytes).map_err(|e| Error::Internal(e.to_string()))?;
    let prefix = format!("{KEY_PREFIX}{}", hex::encode(id_bytes));
    let key = SecretString::new(format!("{prefix}_{}", tokens::generate().expose_secret()));
    let id: i64 = sqlx::query(
        "INSERT INTO api_keys (name, prefix, key_hash, grants, allowed_addresses, expires_at, created_by, created_by_user_id, parent_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING id",
    )
    .bind(k.name)
    .bind(&prefix)
    .bind(tokens::digest(key.expose_secret()))
    .bind(serde_json::to_string(k.grants).expect("grants serialize"))
    .bind(serde_json::to_string(k.allowed_addresses).expect("strings serialize"))
    .bind(k.expires_at)
    .bind(&actor.label)
    .bind(k.creator_id)
    .bind(k.parent_id)
    .bind(now())
    .fetch_one(&mut **tx)
    .await?
    .try_get("id")?;
    Ok((id, prefix, key))
}

/// Rotates a key: a new key with the same name, grants, address limits and expiry, made by
/// `user` (never wider than they are now: the same check as creating it), and the old one
/// revoked (with the keys it made) in the same transaction: both happen, or neither. The new
/// key's value is returned once.
pub async fn rotate(db: &Db, actor: &Actor, user: &User, id: i64) -> Result<(ApiKey, SecretString)> {
    let old = get(db, id).await?;
    if old.revoked_at.is_some() {
        return Err(Error::Conflict { code: "key_revoked", message: format!("{} ({}) is revoked already: create a new key instead", old.name, old.prefix) });
    }
    if old.expires_at.as_deref().is_some_and(|e| parse_time(e).is_none_or(|t| t <= chrono::Utc::now())) {
        return Err(Error::Conflict { code: "key_expired", message: format!("{} ({}) has expired: create a new key instead", old.name, old.prefix) });
    }
    let envs = environments::list(db).await?;
    check_not_wider(user, &old.grants, &envs)?;
    let mut tx = db.begin().await?;
    let stored = Stored {
        name: &old.name,
        grants: &old.grants,
        allowed_addresses: &old.allowed_addresses,
        expires_at: old.expires_at.as_deref(),
        creator_id: Some(user.id),
        parent_id: None,
    };
    let (new_id, prefix, value) = insert(&mut tx, actor, &stored).await?;
    revoke_in(&mut tx, actor, &old, json!({"rotated_to": prefix})).await?;
    let detail = json!({"name": old.name, "replaces": old.prefix, "grants": old.grants.iter().map(|g| g.render(&envs)).collect::<Vec<_>>(), "expires_at": old.expires_at});
    audit::record(&mut tx, actor, Event::new("api_key.rotate").object("api_key", &prefix).detail(detail)).await?;
    tx.commit().await?;
    Ok((get(db, new_id).await?, value))
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

/// Revokes a key at once, and every key it made (and they made), in one transaction.
pub async fn revoke(db: &Db, actor: &Actor, id: i64) -> Result<()> {
    let key = get(db, id).await?;
    let mut tx = db.begin().await?;
    revoke_in(&mut tx, actor, &key, json!({})).await?;
    tx.commit().await?;
    Ok(())
}

/// [`revoke`] inside the caller's transaction; `extra` goes into the event's detail.
async fn revoke_in(tx: &mut crate::db::Tx<'_>, actor: &Actor, key: &ApiKey, extra: serde_json::Value) -> Result<()> {
    let id = key.id;
    let t = now();
    let mut descendants = Vec::new();
    let mut frontier = vec![id];
    while let Some(parent) = frontier.pop() {
        for r in sqlx::query("SELECT id, prefix FROM api_keys WHERE parent_id = $1").bind(parent).fetch_all(&mut **tx).await? {
            frontier.push(r.try_get("id")?);
            descendants.push(r.try_get::<String, _>("prefix")?);
        }
    }
    sqlx::query("UPDATE api_keys SET revoked_at = $1, updated_at = $1 WHERE id = $2 AND revoked_at IS NULL").bind(&t).bind(id).execute(&mut **tx).await?;
    for prefix in &descendants {
        sqlx::query("UPDATE api_keys SET revoked_at = $1, updated_at = $1 WHERE prefix = $2 AND revoked_at IS NULL")
            .bind(&t)
            .bind(prefix)
            .execute(&mut **tx)
            .await?;
    }
    let mut detail = json!({"name": key.name});
    if !descendants.is_empty() {
        detail["keys_it_made"] = json!(descendants);
    }
    if let (Some(d), serde_json::Value::Object(extra)) = (detail.as_object_mut(), extra) {
        d.extend(extra);
    }
    audit::record(tx, actor, Event::new("api_key.revoke").object("api_key", &key.prefix).detail(detail)).await
}

/// Checks a presented key and what it may do now. The check is cheap (a digest), so it runs
/// before the limiter is asked: a key that verifies is never refused by it; failures of the key
/// itself count against the client address (429 after `CONNVAULT_AUTH_FAILURE_LIMIT`). A key
/// whose creator is deactivated answers 401.
pub async fn authenticate(s: Handles<'_>, presented: &str, addr: Option<IpAddr>) -> Result<Effective> {
    let prefix = key_prefix(presented).ok_or_else(|| refused(s, addr, "it is not a connvault key"))?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS}, key_hash FROM api_keys WHERE prefix = $1")))
        .bind(prefix)
        .fetch_optional(s.db.pool())
        .await?;
    let key = verify(s, presented, addr, row.as_ref())?;
    let effective = effective(s, key, addr).await?;
    touch(s, &effective.key).await?;
    Ok(effective)
}

/// A verified key with its chain and the person behind it, as they are now.
pub async fn effective(s: Handles<'_>, key: ApiKey, addr: Option<IpAddr>) -> Result<Effective> {
    let ancestors = ancestors(s, &key, addr).await?;
    let creator = match root_creator(&key, &ancestors) {
        Some(user_id) => Some(current_creator(&s.db, &key, user_id).await?),
        None => None,
    };
    Ok(Effective { key, ancestors, creator })
}

/// The same for a key without a parent, from a row that also holds its creator's account
/// (`creator_email`, `creator_status`, `creator_owner`) and role in `env` (`creator_role`), as
/// the token broker reads them in one query. The creator it gives knows only that role.
pub fn effective_from_row(key: ApiKey, row: &AnyRow, env: &Environment) -> Result<Effective> {
    debug_assert!(key.parent_id.is_none(), "a key made by a key is checked with its chain: use effective()");
    let Some(user_id) = key.created_by_user_id else { return Ok(Effective { key, ancestors: Vec::new(), creator: None }) };
    let Some(email) = row.try_get::<Option<String>, _>("creator_email")? else {
        return Err(creator_gone(&key, "the account that made it no longer exists"));
    };
    if row.try_get::<Option<String>, _>("creator_status")?.as_deref() != Some("active") {
        return Err(creator_gone(&key, &format!("{email} who made it is deactivated")));
    }
    let mut roles = std::collections::BTreeMap::new();
    if let Some(role) = row.try_get::<Option<String>, _>("creator_role")? {
        roles.insert(env.name.clone(), crate::users::Role::parse(&role).ok_or_else(|| Error::Internal(format!("unknown role {role:?}")))?);
    }
    let creator = User {
        id: user_id,
        email,
        is_owner: row.try_get::<Option<i64>, _>("creator_owner")?.unwrap_or(0) != 0,
        status: "active".into(),
        last_sign_in_at: None,
        roles,
        created_at: String::new(),
        updated_at: String::new(),
    };
    Ok(Effective { key, ancestors: Vec::new(), creator: Some(creator) })
}

/// The person behind a key chain: whoever made its first key (`None`: the operator).
fn root_creator(key: &ApiKey, ancestors: &[ApiKey]) -> Option<i64> {
    ancestors.last().unwrap_or(key).created_by_user_id
}

fn creator_gone(key: &ApiKey, who: &str) -> Error {
    Error::Unauthorized(format!(
        "the API key is not valid: {who}, and a key has no more rights than the person who made it. Ask an administrator for a new key (key {})",
        key.prefix
    ))
}

/// The creator as they are now; a deactivated (or removed) account ends its keys.
async fn current_creator(db: &Db, key: &ApiKey, user_id: i64) -> Result<User> {
    let user = match crate::users::get(db, user_id).await {
        Ok(u) => u,
        Err(Error::NotFound(_)) => return Err(creator_gone(key, "the account that made it no longer exists")),
        Err(e) => return Err(e),
    };
    if user.status != "active" {
        return Err(creator_gone(key, &format!("{} who made it is deactivated", user.email)));
    }
    Ok(user)
}

/// The keys above `key` (its parent first), each checked as the key itself is: a revoked or
/// expired parent, or an address a parent may not be used from, stops the key too.
pub async fn ancestors(s: Handles<'_>, key: &ApiKey, addr: Option<IpAddr>) -> Result<Vec<ApiKey>> {
    let mut chain: Vec<ApiKey> = Vec::new();
    let mut next = key.parent_id;
    while let Some(id) = next {
        if chain.len() >= 64 || id == key.id || chain.iter().any(|k| k.id == id) {
            return Err(Error::Internal(format!("API key {} has a parent chain that does not end", key.prefix)));
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1"))).bind(id).fetch_optional(s.db.pool()).await?;
        let Some(row) = row else {
            return Err(Error::Unauthorized(format!("the API key is not valid: the key that made it is gone (key {})", key.prefix)));
        };
        let parent = from_row(&row)?;
        usable(s, &parent, addr).map_err(|e| match e {
            Error::Unauthorized(why) => Error::Unauthorized(format!("{why} (the key that made key {}: {})", key.prefix, parent.prefix)),
            other => other,
        })?;
        next = parent.parent_id;
        chain.push(parent);
    }
    Ok(chain)
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

/// A failed key: counted against the client address; 429 once it has failed too often.
fn refused(s: Handles<'_>, addr: Option<IpAddr>, why: &str) -> Error {
    match s.limiter.record_failure(addr) {
        Err(too_many) => too_many,
        Ok(()) => Error::Unauthorized(format!("the API key is not valid: {why}")),
    }
}

/// Checks a presented key against its stored row (selected with [`columns_of`] or `COLUMNS,
/// key_hash`; `None` if no key has its prefix): digest, revocation, expiry, address limits.
/// Failures count against the client address's failure limit (and answer 429 beyond it).
pub fn verify(s: Handles<'_>, presented: &str, addr: Option<IpAddr>, row: Option<&AnyRow>) -> Result<ApiKey> {
    let row = row.ok_or_else(|| refused(s, addr, "unknown key"))?;
    let stored: String = row.try_get("key_hash")?;
    if !digest_matches(presented, &stored) {
        return Err(refused(s, addr, "unknown key"));
    }
    let key = from_row(row)?;
    usable(s, &key, addr)?;
    Ok(key)
}

/// The same check for a key read earlier (the broker keeps what it read while none of it has
/// changed): digest against `stored_hash`, then revocation, expiry (against the time now) and
/// address limits, with the same failure counting.
pub fn check(s: Handles<'_>, presented: &str, addr: Option<IpAddr>, stored_hash: &str, key: &ApiKey) -> Result<()> {
    if !digest_matches(presented, stored_hash) {
        return Err(refused(s, addr, "unknown key"));
    }
    usable(s, key, addr)
}

/// Whether `presented` digests to `stored`, compared in constant time.
fn digest_matches(presented: &str, stored: &str) -> bool {
    bool::from(stored.as_bytes().ct_eq(tokens::digest(presented).as_bytes()))
}

/// Revocation, expiry and address limits of one key. An expiry that does not read as a time
/// counts as passed (fail closed), never as "no expiry".
fn usable(s: Handles<'_>, key: &ApiKey, addr: Option<IpAddr>) -> Result<()> {
    if key.revoked_at.is_some() {
        return Err(refused(s, addr, "it was revoked"));
    }
    if let Some(expiry) = key.expires_at.as_deref() {
        match parse_time(expiry) {
            Some(t) if t > chrono::Utc::now() => {}
            Some(_) => return Err(refused(s, addr, "it has expired")),
            None => return Err(refused(s, addr, "its expiry cannot be read, so it counts as expired")),
        }
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
    Ok(())
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
pub async fn touch(s: Handles<'_>, key: &ApiKey) -> Result<()> {
    let minute = crate::db::this_minute();
    if key.last_used_at.as_deref().is_none_or(|u| u < minute.as_str()) && s.key_use.first_in(key.id, &minute) {
        sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2").bind(now()).bind(key.id).execute(s.db.pool()).await?;
    }
    Ok(())
}

/// Whether a signed-in person may revoke `key`: they are the person behind it, or they may
/// manage API keys in every environment the key reaches (all of them, for a `*` grant). A
/// grant for an environment that is gone can be revoked by owners only.
pub fn user_may_revoke(user: &User, key: &ApiKey, envs: &[Environment]) -> bool {
    let manages = |env: &Environment| access::user_allows(user, &env.name, env.allow_dev_api_keys, Resource::ApiKeys, Access::Write);
    user.is_owner
        || key.created_by_user_id == Some(user.id)
        || key.grants.iter().all(|g| match g.scope {
            Scope::All => envs.iter().all(manages),
            Scope::Env(id) => envs.iter().find(|e| e.id == id).is_some_and(manages),
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
}
