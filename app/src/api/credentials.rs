//! Asking a system's admin for a connection's typed secrets, in the browser: the request (send,
//! send again, cancel, its state) and the admin's page (no account: the one-time link is the
//! permission), where the secrets are entered and tested at once.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
use super::certificates::mirror;
use super::certificates::RequestView;
use super::connections::TestOutcome;
#[cfg(feature = "ssr")]
use super::ssr::*;
use super::Fallible;

/// One field of the admin's page (`server::credential_requests::CredentialField`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialFieldView {
    pub name: String,
    pub label: String,
    pub help: String,
    pub secret: bool,
    pub required: bool,
    pub value: Option<String>,
}

/// `server::credential_requests::CredentialLinkView`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialLinkData {
    pub environment: String,
    pub connection: String,
    pub provider: String,
    pub provider_label: String,
    pub admin: String,
    pub requested_by: String,
    #[serde(default)]
    pub requested_at: String,
    pub expires_at: String,
    pub steps: Vec<String>,
    pub fields: Vec<CredentialFieldView>,
}

/// The latest credential request of a connection, if there is one.
#[server(prefix = "/rpc", endpoint = "credential_request_state")]
pub async fn credential_request_state(environment: String, name: String) -> Fallible<Option<RequestView>> {
    use server::access::{Access, Resource};
    let (s, user) = require_user().await?;
    let env = require_in(&s, &user, &environment, Resource::Connections, Access::Read).await?;
    match server::credential_requests::latest(&s.db, &env.name, &name).await.map_err(fail)? {
        Some(r) => Ok(Some(mirror(&r)?)),
        None => Ok(None),
    }
}

/// "Request credentials" (or send it again: the old link stops working), or cancel it.
#[server(prefix = "/rpc", endpoint = "request_credentials")]
pub async fn request_credentials(environment: String, name: String, #[server(default)] admin_email: String, #[server(default)] cancel: bool) -> Fallible<()> {
    use server::access::{Access, Resource};
    let (s, user) = require_user().await?;
    let env = require_in(&s, &user, &environment, Resource::Connections, Access::Write).await?;
    let actor = actor_of(&user).await;
    if cancel {
        server::credential_requests::cancel(&s.db, &actor, &env.name, &name).await.map_err(fail)?;
    } else {
        let to = Some(admin_email.as_str()).filter(|e| !e.trim().is_empty());
        server::credential_requests::request(s.signing(), &actor, &env.name, &name, to).await.map_err(fail)?;
    }
    Ok(())
}

/// What the admin's page shows; the link is checked, not used.
#[server(prefix = "/rpc", endpoint = "credential_link_view")]
pub async fn credential_link_view(environment: String, name: String, token: String) -> Fallible<CredentialLinkData> {
    let s = services()?;
    mirror(&server::credential_requests::link_view(&s.db, &environment, &name, &token).await.map_err(fail)?)
}

/// The admin's answer: `secrets[NAME]` and `settings[NAME]`; answered with the test that follows.
#[server(prefix = "/rpc", endpoint = "answer_credential_request")]
pub async fn answer_credential_request(
    environment: String,
    name: String,
    token: String,
    #[server(default)] secrets: std::collections::BTreeMap<String, String>,
    #[server(default)] settings: std::collections::BTreeMap<String, String>,
) -> Fallible<TestOutcome> {
    use server::secret::SecretString;
    let s = services()?;
    let answer = server::credential_requests::CredentialAnswer {
        token: SecretString::new(token),
        secrets: secrets.into_iter().map(|(k, v)| (k, SecretString::new(v))).collect(),
        settings: settings.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect(),
    };
    let r = server::checks::answer_credentials(s.signing(), &environment, &name, &answer, client_addr().await).await.map_err(fail)?;
    Ok(TestOutcome { ok: r.ok, detail: r.detail, advice: r.advice })
}
