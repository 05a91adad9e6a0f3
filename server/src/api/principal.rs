//! Who is calling the REST API: an API key (`Authorization: Bearer cvk_…`) or a signed-in
//! browser session (whose state-changing requests the CSRF guard has already checked).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;

use crate::access::{self, Access, Resource};
use crate::api_keys::{self, Effective};
use crate::audit::Actor;
use crate::environments::{self, Environment};
use crate::error::Error;
use crate::services::Services;
use crate::sessions;
use crate::users::User;

pub enum Principal {
    User(User, Option<IpAddr>),
    /// A key with what limits it now (its chain, its creator's current rights).
    Key(Box<Effective>, Option<IpAddr>),
}

impl Principal {
    pub fn actor(&self) -> Actor {
        match self {
            Principal::User(u, addr) => u.actor(addr.map(|a| a.to_string())),
            Principal::Key(k, addr) => k.actor(*addr),
        }
    }

    pub fn allows(&self, env: &Environment, resource: Resource, access: Access) -> bool {
        match self {
            Principal::User(u, _) => access::user_allows(u, &env.name, env.allow_dev_api_keys, resource, access),
            Principal::Key(k, _) => k.allows(env, resource, access),
        }
    }

    /// `allows`, or a 403 that says what is missing.
    pub fn require(&self, env: &Environment, resource: Resource, access: Access) -> Result<(), Error> {
        if self.allows(env, resource, access) {
            return Ok(());
        }
        if let Principal::Key(k, _) = self {
            return Err(k.refusal(env, resource, access));
        }
        let what = match access {
            Access::Read => "read",
            Access::Write => "change",
        };
        Err(Error::Forbidden(format!("you may not {what} {} in {}", resource.as_str(), env.name)))
    }

    /// For resources that span environments (API keys, users, the whole audit trail): an owner,
    /// or a key granted the resource on every environment (`*`) whose creator is an owner or
    /// holds it in every environment there is now.
    pub async fn require_global(&self, s: &Services, resource: Resource, access: Access) -> Result<(), Error> {
        let ok = match self {
            Principal::User(u, _) => u.is_owner,
            Principal::Key(k, _) => k.allows_everywhere(&environments::list(&s.db).await?, resource, access),
        };
        if ok {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "{} across all environments needs an owner, or an API key granted it on * by someone who holds it in every environment",
                resource.as_str()
            )))
        }
    }
}

impl FromRequestParts<Services> for Principal {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, s: &Services) -> Result<Self, Self::Rejection> {
        let addr = client_addr(parts, s);
        if let Some(key) = bearer(&parts.headers)? {
            return Ok(Principal::Key(Box::new(api_keys::authenticate(s.keys(), key, addr).await?), addr));
        }
        let token = sessions::token_from_headers(&parts.headers).map(str::to_string);
        if let Some(token) = token {
            if let Some(user) = sessions::user_for(&s.db, &token).await? {
                return Ok(Principal::User(user, addr));
            }
        }
        Err(Error::Unauthorized("authentication required: send Authorization: Bearer <API key>".into()))
    }
}

/// The client's address: as the listener saw it, or as `X-Forwarded-For` says when the peer is
/// a trusted proxy (CONNVAULT_TRUSTED_PROXIES).
pub fn client_addr(parts: &Parts, s: &Services) -> Option<IpAddr> {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    crate::ratelimit::client_addr(peer, &parts.headers, &s.config.trusted_proxies)
}

/// The API key in `Authorization: Bearer …`, if the header is there.
pub fn bearer(headers: &axum::http::HeaderMap) -> Result<Option<&str>, Error> {
    let Some(auth) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let auth = auth.to_str().map_err(|_| Error::Unauthorized("the Authorization header is not readable".into()))?;
    let key = auth.strip_prefix("Bearer ").ok_or_else(|| Error::Unauthorized("use Authorization: Bearer <API key>".into()))?;
    Ok(Some(key.trim()))
}
