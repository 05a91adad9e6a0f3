//! Connections that connect by signing in, in the browser: where they stand, the outcome of the
//! sign-in the person just made, and Disconnect. The sign-in itself is a plain navigation to
//! `/connect/{env}/{name}` (the provider's pages are no place for a server function).

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use super::connections::TestOutcome;
#[cfg(feature = "ssr")]
use super::ssr::*;
use super::Fallible;

/// `server::connect::SignInStatus`, for the wasm build (filled through serde).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInView {
    pub state: String,
    pub summary: String,
    pub advice: Option<String>,
    pub button: String,
    pub callback_url: String,
    pub username: Option<String>,
    pub instance_url: Option<String>,
    pub checked_at: Option<String>,
    /// The outcome of the sign-in the page was reached from (`?sign_in=ID`), if this person made it.
    #[serde(default)]
    pub result: Option<TestOutcome>,
}

#[server(prefix = "/rpc", endpoint = "sign_in_status")]
pub async fn sign_in_status(environment: String, name: String, #[server(default)] sign_in: Option<i64>) -> Fallible<SignInView> {
    use server::access::{Access, Resource};
    let (s, user) = require_user().await?;
    let env = require_in(&s, &user, &environment, Resource::Connections, Access::Read).await?;
    let c = server::connections::get(&s.db, &env.name, &name).await.map_err(fail)?;
    let mut view: SignInView = super::certificates::mirror(&server::connect::status(&s.db, &s.config, &c).await.map_err(fail)?)?;
    if let Some(id) = sign_in {
        view.result =
            server::connect::result_of(&s.db, &c, &user, id).await.map_err(fail)?.map(|r| TestOutcome { ok: r.ok, detail: r.detail, advice: r.advice });
    }
    Ok(view)
}

/// Disconnect: revoke at the provider (where it can) and forget the tokens.
#[server(prefix = "/rpc", endpoint = "disconnect_connection")]
pub async fn disconnect_connection(environment: String, name: String) -> Fallible<TestOutcome> {
    use server::access::{Access, Resource};
    let (s, user) = require_user().await?;
    let env = require_in(&s, &user, &environment, Resource::Connections, Access::Write).await?;
    let r = server::connect::disconnect(s.signing(), &actor_of(&user).await, &env.name, &name).await.map_err(fail)?;
    Ok(TestOutcome { ok: r.ok, detail: r.detail, advice: r.advice })
}
