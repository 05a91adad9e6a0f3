//! People (owners invite, set roles, deactivate) and API keys (created by whoever may manage
//! keys in an environment, never wider than their creator, shown once).

use std::collections::HashMap;

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
use super::ssr::*;
use super::Fallible;

pub const ROLES: [&str; 3] = ["viewer", "developer", "administrator"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub id: i64,
    pub email: String,
    /// `active`, `invited` or `deactivated`.
    pub status: String,
    pub owner: bool,
    pub last_sign_in_at: Option<String>,
    /// Environment → role (`viewer`, `developer`, `administrator`); absent: no role.
    pub roles: Vec<(String, String)>,
}

impl Person {
    pub fn role_in(&self, env: &str) -> &str {
        self.roles.iter().find(|(e, _)| e == env).map(|(_, r)| r.as_str()).unwrap_or("")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct People {
    pub people: Vec<Person>,
    pub environments: Vec<String>,
    pub me: String,
}

/// An invitation link, shown once to the owner who made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    pub email: String,
    pub link: String,
}

#[server(prefix = "/rpc", endpoint = "list_people")]
pub async fn list_people() -> Fallible<People> {
    let (s, user) = require_user().await?;
    require_owner(&user)?;
    let environments = server::environments::list(&s.db).await.map_err(fail)?.into_iter().map(|e| e.name).collect();
    let people = server::users::list(&s.db)
        .await
        .map_err(fail)?
        .into_iter()
        .map(|u| Person {
            id: u.id,
            roles: u.roles.iter().map(|(e, r)| (e.clone(), r.as_str().to_string())).collect(),
            email: u.email,
            status: u.status,
            owner: u.is_owner,
            last_sign_in_at: u.last_sign_in_at,
        })
        .collect();
    Ok(People { people, environments, me: user.email })
}

/// Invites someone by email and returns their one-time link (72 hours). With `roles`, their
/// roles are set in the same step.
#[server(prefix = "/rpc", endpoint = "invite_person")]
pub async fn invite_person(email: String, #[server(default)] roles: HashMap<String, String>) -> Fallible<Invitation> {
    let (s, user) = require_user().await?;
    require_owner(&user)?;
    let actor = actor_of(&user).await;
    let wanted = parse_roles(&roles)?;
    let (person, link) = server::sessions::invite(s.sessions(), &actor, &email).await.map_err(fail)?;
    for (env, role) in wanted.into_iter().filter(|(_, r)| r.is_some()) {
        server::users::set_role(&s.db, &actor, person.id, &env, role).await.map_err(fail)?;
    }
    Ok(Invitation { email: person.email, link })
}

/// A new invitation link for someone who has not accepted theirs yet.
#[server(prefix = "/rpc", endpoint = "reinvite_person")]
pub async fn reinvite_person(id: i64) -> Fallible<Invitation> {
    let (s, user) = require_user().await?;
    require_owner(&user)?;
    let link = server::sessions::reinvite(s.sessions(), &actor_of(&user).await, id).await.map_err(fail)?;
    let person = server::users::get(&s.db, id).await.map_err(fail)?;
    Ok(Invitation { email: person.email, link })
}

#[cfg(feature = "ssr")]
fn parse_roles(roles: &HashMap<String, String>) -> Fallible<Vec<(String, Option<server::users::Role>)>> {
    roles
        .iter()
        .map(|(env, role)| match role.as_str() {
            "" | "none" => Ok((env.clone(), None)),
            r => server::users::Role::parse(r).map(|role| (env.clone(), Some(role))).ok_or_else(|| {
                fail(server::Error::field(format!("roles.{env}"), format!("{r:?} is not a role; choose none, viewer, developer or administrator")))
            }),
        })
        .collect()
}

/// Sets one person's role in every environment of the matrix at once (only changes are
/// written, each audited).
#[server(prefix = "/rpc", endpoint = "set_roles")]
pub async fn set_roles(id: i64, #[server(default)] roles: HashMap<String, String>) -> Fallible<()> {
    let (s, user) = require_user().await?;
    require_owner(&user)?;
    let wanted = parse_roles(&roles)?;
    let person = server::users::get(&s.db, id).await.map_err(fail)?;
    let actor = actor_of(&user).await;
    for (env, role) in wanted {
        let env = server::environments::find(&s.db, &env).await.map_err(fail)?;
        if person.role_in(&env.name) != role {
            server::users::set_role(&s.db, &actor, id, &env.name, role).await.map_err(fail)?;
        }
    }
    Ok(())
}

/// Deactivates (`active = false`; their sessions end at once) or reactivates an account.
#[server(prefix = "/rpc", endpoint = "set_active")]
pub async fn set_active(id: i64, active: bool) -> Fallible<()> {
    let (s, user) = require_user().await?;
    require_owner(&user)?;
    let actor = actor_of(&user).await;
    if active {
        server::users::reactivate(&s.db, &actor, id).await.map_err(fail)?;
    } else {
        server::users::deactivate(&s.db, &actor, id).await.map_err(fail)?;
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyItem {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    /// e.g. "DEV connections read", "* tokens read".
    pub grants: Vec<String>,
    pub allowed_addresses: Vec<String>,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
    pub created_by: String,
    pub created_at: String,
    pub may_revoke: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceChoice {
    pub name: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysPage {
    pub keys: Vec<KeyItem>,
    /// Environments the user may create keys in.
    pub environments: Vec<String>,
    /// Whether the user may manage keys in every environment (then `*` is offered).
    pub all_environments: bool,
    pub resources: Vec<ResourceChoice>,
}

/// A new key: its value appears here once and never again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedKey {
    pub name: String,
    pub key: String,
}

/// Keys the user may see: owners see all; others the keys they created and those of the
/// environments where they manage API keys.
#[server(prefix = "/rpc", endpoint = "list_keys")]
pub async fn list_keys() -> Fallible<KeysPage> {
    use server::access::{user_allows, Access, Resource, RESOURCES};
    let (s, user) = require_user().await?;
    let envs = server::environments::list(&s.db).await.map_err(fail)?;
    let manageable: Vec<String> =
        envs.iter().filter(|e| user_allows(&user, &e.name, e.allow_dev_api_keys, Resource::ApiKeys, Access::Write)).map(|e| e.name.clone()).collect();
    let all = server::feed::read_all(|feed, limit| {
        let db = s.db.clone();
        async move { server::api_keys::page(&db, &feed, limit).await }
    })
    .await
    .map_err(fail)?;
    let keys = all
        .into_iter()
        .map(|k| (server::api_keys::user_may_revoke(&user, &k, &envs), k))
        .filter(|(may, _)| user.is_owner || *may)
        .map(|(may_revoke, k)| KeyItem {
            id: k.id,
            grants: k
                .grants
                .iter()
                .map(|g| g.render(&envs))
                .map(|g| format!("{} {} {}", g.environment, g.resource, if g.access == Access::Read { "read" } else { "write" }))
                .collect(),
            name: k.name,
            prefix: k.prefix,
            allowed_addresses: k.allowed_addresses,
            expires_at: k.expires_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
            created_by: k.created_by,
            created_at: k.created_at,
            may_revoke,
        })
        .collect();
    Ok(KeysPage {
        keys,
        all_environments: !envs.is_empty() && manageable.len() == envs.len(),
        environments: manageable,
        resources: RESOURCES.iter().map(|r| ResourceChoice { name: r.as_str().to_string(), read_only: r.read_only() }).collect(),
    })
}

/// Creates a key. `scope`: environment name → "on" (or `*` for all); `access`: resource →
/// `read`, `write` or `rw` (empty: none); `addresses`: addresses/CIDRs separated by spaces,
/// commas or lines; `expires_in_days`: empty for no expiry.
#[server(prefix = "/rpc", endpoint = "create_key")]
pub async fn create_key(
    name: String,
    #[server(default)] scope: HashMap<String, String>,
    #[server(default)] access: HashMap<String, String>,
    #[server(default)] addresses: String,
    #[server(default)] expires_in_days: String,
) -> Fallible<CreatedKey> {
    use server::access::Access;
    use server::api_keys::{Creator, Grant, NewApiKey};
    let (s, user) = require_user().await?;
    let mut envs: Vec<&String> = scope.iter().filter(|(_, v)| v.as_str() == "on").map(|(k, _)| k).collect();
    envs.sort();
    if envs.is_empty() {
        return Err(fail(server::Error::field("scope", "choose at least one environment (or all environments)")));
    }
    if envs.iter().any(|e| e.as_str() == "*") {
        envs = vec![envs.into_iter().find(|e| e.as_str() == "*").expect("star")];
    }
    let mut resources: Vec<(&String, &String)> = access.iter().filter(|(_, v)| !v.is_empty()).collect();
    resources.sort();
    if resources.is_empty() {
        return Err(fail(server::Error::field("access", "give the key access to at least one resource")));
    }
    let mut grants = Vec::new();
    for (resource, level) in resources {
        let levels = match level.as_str() {
            "read" => vec![Access::Read],
            "write" => vec![Access::Write],
            "rw" => vec![Access::Read, Access::Write],
            other => {
                return Err(fail(server::Error::field(
                    format!("access.{resource}"),
                    format!("{other:?} is not an access level; choose read, write or read/write"),
                )))
            }
        };
        for env in &envs {
            for a in &levels {
                grants.push(Grant { environment: (*env).clone(), resource: resource.clone(), access: *a });
            }
        }
    }
    let expires_at = match expires_in_days.trim() {
        "" => None,
        days => {
            let days: i64 = days
                .parse()
                .ok()
                .filter(|d| (1..=3650).contains(d))
                .ok_or_else(|| fail(server::Error::field("expires_in_days", "expiry must be a whole number of days from 1 to 3650, or empty for none")))?;
            Some(server::db::days_from_now(days))
        }
    };
    let allowed_addresses = addresses.split(|c: char| c == ',' || c.is_whitespace()).filter(|a| !a.is_empty()).map(str::to_string).collect();
    let input = NewApiKey { name: name.trim().to_string(), grants, allowed_addresses, expires_at };
    let (key, value) = server::api_keys::create(&s.db, &actor_of(&user).await, Creator::User(&user), input).await.map_err(fail)?;
    if let Some(r) = use_context::<leptos_axum::ResponseOptions>() {
        r.insert_header(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    }
    Ok(CreatedKey { name: key.name, key: value.expose_secret().to_string() })
}

/// The key `id` once the signed-in person may end it (revoke or rotate).
#[cfg(feature = "ssr")]
async fn key_to_end(s: &server::Services, user: &server::users::User, id: i64) -> Fallible<server::api_keys::ApiKey> {
    let key = server::api_keys::get(&s.db, id).await.map_err(fail)?;
    let envs = server::environments::list(&s.db).await.map_err(fail)?;
    if !server::api_keys::user_may_revoke(user, &key, &envs) {
        return Err(fail(server::Error::Forbidden("you may revoke keys you created, or keys whose environments you manage API keys in".into())));
    }
    Ok(key)
}

/// Revokes a key at once, once `confirm` is its name as typed by the person (it cannot be
/// undone).
#[server(prefix = "/rpc", endpoint = "revoke_key")]
pub async fn revoke_key(id: i64, #[server(default)] confirm: String) -> Fallible<()> {
    let (s, user) = require_user().await?;
    let key = key_to_end(&s, &user, id).await?;
    if confirm.trim() != key.name.trim() {
        return Err(fail(server::Error::field("confirm", format!("type the key's name, {}, to revoke it: revoking cannot be undone", key.name))));
    }
    server::api_keys::revoke(&s.db, &actor_of(&user).await, id).await.map_err(fail)?;
    Ok(())
}

/// Rotates a key: a new one with the same name, grants, addresses and expiry, the old one
/// revoked in the same transaction. The new value appears here once.
#[server(prefix = "/rpc", endpoint = "rotate_key")]
pub async fn rotate_key(id: i64) -> Fallible<CreatedKey> {
    let (s, user) = require_user().await?;
    key_to_end(&s, &user, id).await?;
    let (key, value) = server::api_keys::rotate(&s.db, &actor_of(&user).await, &user, id).await.map_err(fail)?;
    if let Some(r) = use_context::<leptos_axum::ResponseOptions>() {
        r.insert_header(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    }
    Ok(CreatedKey { name: key.name, key: value.expose_secret().to_string() })
}
