//! Environments: the switcher's list, what the signed-in user may do in one, and the owner's
//! environment settings (add, rename, order, "Allow developers to manage API keys").

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
use super::ssr::*;
use super::{EnvironmentItem, Fallible};

/// What the signed-in user may do in one environment (for showing the right buttons; every
/// server function checks again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvAccess {
    pub environment: String,
    /// `administrator`, `developer`, `viewer`, or empty.
    pub role: String,
    pub write_connections: bool,
    pub manage_api_keys: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvSettings {
    pub name: String,
    pub position: i64,
    pub allow_dev_api_keys: bool,
    /// Hours between scheduled checks (0 = never).
    pub check_every_hours: i64,
    /// Days before expiry a certificate's renewal starts by itself (0 = never).
    pub renew_days_before: i64,
}

/// The environments the signed-in user has a role in, in promotion order.
#[server(prefix = "/rpc", endpoint = "list_environments")]
pub async fn list_environments() -> Fallible<Vec<EnvironmentItem>> {
    let (s, user) = require_user().await?;
    let envs = server::environments::list(&s.db).await.map_err(fail)?;
    Ok(envs.into_iter().filter(|e| user.role_in(&e.name).is_some()).map(|e| EnvironmentItem { name: e.name, position: e.position }).collect())
}

#[server(prefix = "/rpc", endpoint = "my_access")]
pub async fn my_access(environment: String) -> Fallible<EnvAccess> {
    use server::access::{user_allows, Access, Resource};
    let (s, user) = require_user().await?;
    let env = server::environments::find(&s.db, &environment).await.map_err(fail)?;
    Ok(EnvAccess {
        role: user.role_in(&env.name).map(|r| r.as_str().to_string()).unwrap_or_default(),
        write_connections: user_allows(&user, &env.name, env.allow_dev_api_keys, Resource::Connections, Access::Write),
        manage_api_keys: user_allows(&user, &env.name, env.allow_dev_api_keys, Resource::ApiKeys, Access::Write),
        environment: env.name,
    })
}

/// Every environment with its settings (owners).
#[server(prefix = "/rpc", endpoint = "environment_settings")]
pub async fn environment_settings() -> Fallible<Vec<EnvSettings>> {
    let (s, user) = require_user().await?;
    require_owner(&user)?;
    let mut out = Vec::new();
    for e in server::environments::list(&s.db).await.map_err(fail)? {
        let schedule = server::environments::schedule(&s.db, &e.name).await.map_err(fail)?;
        out.push(EnvSettings {
            name: e.name,
            position: e.position,
            allow_dev_api_keys: e.allow_dev_api_keys,
            check_every_hours: schedule.check_every_hours,
            renew_days_before: schedule.renew_days_before,
        });
    }
    Ok(out)
}

/// Sets how often an environment's connections are checked and how many days before expiry
/// its certificates are renewed by themselves (owners).
#[server(prefix = "/rpc", endpoint = "set_environment_schedule")]
pub async fn set_environment_schedule(name: String, check_every_hours: String, renew_days_before: String) -> Fallible<()> {
    let (s, user) = require_user().await?;
    require_owner(&user)?;
    let mut errors = Vec::new();
    let mut number = |field: &'static str, text: &str, what: &str| match text.trim().parse::<i64>() {
        Ok(n) => n,
        Err(_) => {
            errors.push(server::error::FieldError::new(field, format!("{what} must be a whole number (0 for never)")));
            -1
        }
    };
    let check_every_hours = number("check_every_hours", &check_every_hours, "Check every … hours");
    let renew_days_before = number("renew_days_before", &renew_days_before, "Renew … days before expiry");
    if !errors.is_empty() {
        return Err(fail(server::Error::Validation(errors)));
    }
    let schedule = server::environments::Schedule { check_every_hours, renew_days_before };
    server::environments::set_schedule(&s.db, &actor_of(&user).await, &name, schedule).await.map_err(fail)?;
    Ok(())
}

/// Adds an environment at the end of the promotion order (owners).
#[server(prefix = "/rpc", endpoint = "add_environment")]
pub async fn add_environment(name: String) -> Fallible<()> {
    let (s, user) = require_user().await?;
    require_owner(&user)?;
    server::environments::add(&s.db, &actor_of(&user).await, name.trim(), None).await.map_err(fail)?;
    Ok(())
}

/// Renames an environment (owners). Its connections, roles and keys follow it.
#[server(prefix = "/rpc", endpoint = "rename_environment")]
pub async fn rename_environment(name: String, new_name: String) -> Fallible<()> {
    let (s, user) = require_user().await?;
    require_owner(&user)?;
    server::environments::rename(&s.db, &actor_of(&user).await, &name, new_name.trim()).await.map_err(fail)?;
    Ok(())
}

/// Moves an environment one step earlier (`up`) or later in the promotion order (owners).
#[server(prefix = "/rpc", endpoint = "move_environment")]
pub async fn move_environment(name: String, direction: String) -> Fallible<()> {
    let (s, user) = require_user().await?;
    require_owner(&user)?;
    let env = server::environments::find(&s.db, &name).await.map_err(fail)?;
    let count = server::environments::list(&s.db).await.map_err(fail)?.len() as i64;
    let to = match direction.as_str() {
        "up" => env.position - 1,
        "down" => env.position + 1,
        _ => return Err(fail(server::Error::field("direction", "direction must be up or down"))),
    };
    if (1..=count).contains(&to) {
        server::environments::move_to(&s.db, &actor_of(&user).await, &env.name, to as usize).await.map_err(fail)?;
    }
    Ok(())
}

/// Turns "Allow developers to manage API keys" on or off for one environment (owners).
#[server(prefix = "/rpc", endpoint = "set_developer_api_keys")]
pub async fn set_developer_api_keys(name: String, allow: String) -> Fallible<()> {
    let (s, user) = require_user().await?;
    require_owner(&user)?;
    let allow = match allow.as_str() {
        "on" | "true" => true,
        "off" | "false" => false,
        _ => return Err(fail(server::Error::field("allow", "allow must be on or off"))),
    };
    server::environments::set_allow_dev_api_keys(&s.db, &actor_of(&user).await, &name, allow).await.map_err(fail)?;
    Ok(())
}
