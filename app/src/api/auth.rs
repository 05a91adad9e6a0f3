//! Signing in and out, first-run setup, invitations, and one's own password.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
use super::ssr::*;
use super::Fallible;

/// The signed-in person, as the pages need to know them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    pub email: String,
    pub owner: bool,
}

/// Who is signed in, if anyone.
#[server(prefix = "/rpc", endpoint = "whoami")]
pub async fn whoami() -> Fallible<Option<Me>> {
    Ok(current_user().await?.map(|(_, u)| Me { email: u.email, owner: u.is_owner }))
}

/// Signs in; on success the session cookie is set and the browser goes home.
#[server(prefix = "/rpc", endpoint = "sign_in")]
pub async fn sign_in(email: String, password: String) -> Fallible<()> {
    let s = services()?;
    let password = server::secret::SecretString::new(password);
    let (_, token) = server::sessions::sign_in(s.sessions(), &email, &password, client_addr().await).await.map_err(fail)?;
    set_cookie(server::sessions::cookie(&token, secure(&s)));
    leptos_axum::redirect("/");
    Ok(())
}

#[server(prefix = "/rpc", endpoint = "sign_out")]
pub async fn sign_out() -> Fallible<()> {
    let s = services()?;
    if let Some(token) = session_token().await {
        server::sessions::sign_out(&s.db, &token).await.map_err(fail)?;
    }
    set_cookie(server::sessions::clear_cookie(secure(&s)));
    leptos_axum::redirect("/sign-in");
    Ok(())
}

/// Changes the signed-in user's password; their other sessions end. Wrong current passwords
/// count against the same per-address limit as failed sign-ins.
#[server(prefix = "/rpc", endpoint = "change_password")]
pub async fn change_password(current: String, new: String, confirm: String) -> Fallible<()> {
    let (s, user) = require_user().await?;
    if new != confirm {
        return Err(fail(server::Error::field("confirm", "the two new passwords differ; type the same password twice")));
    }
    // Reserved before the current password is checked (Argon2); kept only if it was wrong.
    let reservation = s.limiter.reserve_addr(client_addr().await).map_err(fail)?;
    let token = session_token().await;
    let (current, new) = (server::secret::SecretString::new(current), server::secret::SecretString::new(new));
    let result = server::users::change_password(&s.db, &user, &current, &new, token.as_deref()).await;
    match &result {
        Err(e) if e.details().iter().any(|d| d.field == "current_password") => drop(reservation),
        _ => reservation.release(),
    }
    result.map_err(fail)
}

#[cfg(feature = "ssr")]
fn same_twice(password: &str, confirm: &str) -> Fallible<()> {
    if password == confirm {
        Ok(())
    } else {
        Err(super::AppError {
            message: "the two passwords differ".into(),
            fields: vec![super::FieldMessage { field: "confirm".into(), message: "type the same password twice".into(), href: None }],
            values: Vec::new(),
        })
    }
}

/// First-run setup through the one-time link: creates the owner account and signs it in.
#[server(prefix = "/rpc", endpoint = "complete_setup")]
pub async fn complete_setup(token: String, email: String, password: String, confirm: String) -> Fallible<()> {
    let s = services()?;
    same_twice(&password, &confirm)?;
    let password = server::secret::SecretString::new(password);
    let (_, session) = server::sessions::complete_setup(s.sessions(), &token, &email, &password, client_addr().await).await.map_err(fail)?;
    set_cookie(server::sessions::cookie(&session, secure(&s)));
    leptos_axum::redirect("/");
    Ok(())
}

/// An invitation link: the invited person chooses a password and is signed in.
#[server(prefix = "/rpc", endpoint = "accept_invite")]
pub async fn accept_invite(token: String, password: String, confirm: String) -> Fallible<()> {
    let s = services()?;
    same_twice(&password, &confirm)?;
    let password = server::secret::SecretString::new(password);
    let (_, session) = server::sessions::accept_invite(s.sessions(), &token, &password, client_addr().await).await.map_err(fail)?;
    set_cookie(server::sessions::cookie(&session, secure(&s)));
    leptos_axum::redirect("/");
    Ok(())
}
