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
    /// How far the bound connection is: `not_set_up`, `not_tested`, `works` or `failing`.
    pub connection_state: Option<String>,
    pub failing_since: Option<String>,
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

/// One integration in one environment of the overview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    pub status: String,
    pub connection_state: Option<String>,
    pub reason: Option<String>,
    pub connection: Option<String>,
    pub failing_since: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overview {
    /// Each environment and how many things need attention there (the start page lists them).
    pub environments: Vec<(String, usize)>,
    /// Integration name, provider, and a cell per environment (`None`: not published there).
    pub rows: Vec<(String, String, Vec<Option<Cell>>)>,
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
            connection_state: i.connection_state,
            failing_since: i.failing_since,
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
    let rows = server::integrations::overview(&s.db, &envs)
        .await
        .map_err(fail)?
        .into_iter()
        .map(|r| {
            let cells = r
                .cells
                .into_iter()
                .map(|c| {
                    c.map(|c| Cell { status: c.status, connection_state: c.connection_state, reason: c.reason, connection: c.connection, failing_since: c.failing_since })
                })
                .collect();
            (r.name, r.provider, cells)
        })
        .collect();
    // The same count as the start page's "What needs attention" for each environment.
    let ids: Vec<i64> = envs.iter().map(|e| e.id).collect();
    let items = server::attention::items(&s.db, &ids).await.map_err(fail)?;
    let environments = envs.into_iter().map(|e| (items.iter().filter(|i| i.environment == e.name).count(), e.name)).map(|(n, e)| (e, n)).collect();
    Ok(Overview { environments, rows })
}
