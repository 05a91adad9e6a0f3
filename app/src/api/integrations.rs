//! Integrations in the browser: "My integrations" per environment (bind each to a connection of
//! the same provider) and the integrations × environments overview.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
use super::ssr::*;
use super::Fallible;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntegrationRow {
    pub name: String,
    pub provider: String,
    /// "Account (read), Contact (read/write)".
    pub objects: String,
    pub version: Option<String>,
    pub description: Option<String>,
    pub connection: Option<String>,
    /// `bound`, `failing` or `needs_connection`.
    pub status: String,
    pub reason: Option<String>,
    /// The environment's connections of the same provider: the only ones it can bind to.
    pub candidates: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntegrationList {
    pub environment: String,
    pub items: Vec<IntegrationRow>,
    pub can_bind: bool,
}

/// One integration in one environment: (status, reason), or `None` when not published there.
pub type Cell = Option<(String, Option<String>)>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overview {
    pub environments: Vec<String>,
    /// Integration name, provider, and a cell per environment.
    pub rows: Vec<(String, String, Vec<Cell>)>,
}

#[server(prefix = "/rpc", endpoint = "list_integrations")]
pub async fn list_integrations(environment: String) -> Fallible<IntegrationList> {
    use server::access::{user_allows, Access, Resource};
    let (s, user) = require_user().await?;
    let env = require_in(&s, &user, &environment, Resource::Integrations, Access::Read).await?;
    let integrations = server::feed::read_all(|feed, limit| {
        let (db, env) = (s.db.clone(), env.name.clone());
        async move { server::integrations::list(&db, &env, &feed, limit).await }
    })
    .await
    .map_err(fail)?;
    let mut candidates: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for i in &integrations {
        if candidates.contains_key(&i.provider) {
            continue;
        }
        let q = server::connections::ListQuery { provider: Some(i.provider.clone()), limit: Some(1000), ..Default::default() };
        let names = server::connections::list(&s.db, &env.name, &q).await.map_err(fail)?.items.into_iter().map(|c| c.name).collect();
        candidates.insert(i.provider.clone(), names);
    }
    let items = integrations
        .into_iter()
        .map(|i| IntegrationRow {
            objects: i
                .objects
                .iter()
                .map(|o| format!("{} ({})", o.name, if o.access == "read" { "read" } else { "read/write" }))
                .collect::<Vec<_>>()
                .join(", "),
            candidates: candidates.get(&i.provider).cloned().unwrap_or_default(),
            name: i.name,
            provider: i.provider,
            version: i.version,
            description: i.description,
            connection: i.connection,
            status: i.status,
            reason: i.status_reason,
        })
        .collect();
    Ok(IntegrationList { can_bind: user_allows(&user, &env.name, env.allow_dev_api_keys, Resource::Bindings, Access::Write), environment: env.name, items })
}

/// Binds an integration to `connection`, or unbinds it when `connection` is empty.
#[server(prefix = "/rpc", endpoint = "bind_integration")]
pub async fn bind_integration(environment: String, name: String, #[server(default)] connection: String) -> Fallible<()> {
    use server::access::{Access, Resource};
    let (s, user) = require_user().await?;
    let env = require_in(&s, &user, &environment, Resource::Bindings, Access::Write).await?;
    let actor = actor_of(&user).await;
    if connection.is_empty() {
        server::integrations::unbind(&s.db, &actor, &env.name, &name).await.map_err(fail)?;
    } else {
        server::integrations::bind(&s.db, &actor, &env.name, &name, &connection).await.map_err(fail)?;
    }
    Ok(())
}

/// Integrations × the environments the user has a role in, each cell the binding status.
#[server(prefix = "/rpc", endpoint = "integrations_overview")]
pub async fn integrations_overview() -> Fallible<Overview> {
    let (s, user) = require_user().await?;
    let envs: Vec<_> = server::environments::list(&s.db).await.map_err(fail)?.into_iter().filter(|e| user.role_in(&e.name).is_some()).collect();
    let rows = server::integrations::overview(&s.db, &envs).await.map_err(fail)?.into_iter().map(|r| (r.name, r.provider, r.cells)).collect();
    Ok(Overview { environments: envs.into_iter().map(|e| e.name).collect(), rows })
}
