//! Server functions and the data they return. They live under `/rpc/…`, apart from the REST
//! API under `/api/v1`.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentItem {
    pub name: String,
    pub position: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretState {
    pub field: String,
    pub set_at: String,
    pub set_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionItem {
    pub name: String,
    pub provider: String,
    /// The setting that identifies the target system (e.g. the base URL).
    pub target: String,
    pub secrets: Vec<SecretState>,
    pub updated_at: String,
    pub updated_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionList {
    pub environment: String,
    pub items: Vec<ConnectionItem>,
    pub more: bool,
}

#[cfg(feature = "ssr")]
fn services() -> Result<server::Services, ServerFnError> {
    use_context::<server::Services>().ok_or_else(|| ServerFnError::new("server state is missing"))
}

#[cfg(feature = "ssr")]
fn fail(e: server::Error) -> ServerFnError {
    ServerFnError::new(e.public_message())
}

/// The environments in promotion order.
#[server(prefix = "/rpc")]
pub async fn list_environments() -> Result<Vec<EnvironmentItem>, ServerFnError> {
    let s = services()?;
    let envs = server::environments::list(&s.db).await.map_err(fail)?;
    Ok(envs.into_iter().map(|e| EnvironmentItem { name: e.name, position: e.position }).collect())
}

/// One page of an environment's connections; secrets appear only as "set on DATE by WHO".
#[server(prefix = "/rpc")]
pub async fn list_connections(environment: String, search: String) -> Result<ConnectionList, ServerFnError> {
    let s = services()?;
    let query = server::connections::ListQuery { search: Some(search), limit: Some(200), ..Default::default() };
    let page = server::connections::list(&s.db, &environment, &query).await.map_err(fail)?;
    let environment = server::environments::find(&s.db, &environment).await.map_err(fail)?.name;
    let items = page
        .items
        .into_iter()
        .map(|c| ConnectionItem {
            target: ["base_url", "login_url"].iter().find_map(|k| c.settings.get(*k).and_then(|v| v.as_str())).unwrap_or("").to_string(),
            secrets: c
                .secrets_set
                .iter()
                .map(|(field, at)| SecretState { field: field.clone(), set_at: at.clone(), set_by: c.secrets_set_by.get(field).cloned().unwrap_or_default() })
                .collect(),
            name: c.name,
            provider: c.provider,
            updated_at: c.updated_at,
            updated_by: c.updated_by,
        })
        .collect();
    Ok(ConnectionList { environment, items, more: page.next_cursor.is_some() })
}

/// The message of a server function error, without the framework's prefix.
pub fn error_text(e: &ServerFnError) -> String {
    match e {
        ServerFnError::ServerError(m) => m.clone(),
        other => other.to_string(),
    }
}
