//! Salesforce's web server flow (OAuth 2.0 authorization code with PKCE): someone signs in to
//! Salesforce in the browser and approves the connected app; connvault redeems the code with
//! the app's consumer key and secret, keeps the refresh token sealed, and refreshes the session
//! with it. The sign-in itself runs in `crate::connect` on what this module declares.

use serde_json::{Map, Value};

use super::{client, Settings, WEB_SERVER_SCOPES};
use crate::oauth::{self, ClientAuth, Grant};
use crate::outbound::Outbound;
use crate::providers::{Authorization, AuthorizeRequest, MintFuture, Minted, Refusal, RevokeFuture, Secrets, TestResult};
use crate::secret::SecretString;

pub static AUTHORIZATION: Authorization = Authorization {
    button: "Connect with Salesforce",
    refresh_field: super::REFRESH_TOKEN,
    request: |settings| {
        let s = Settings::from_map(settings);
        AuthorizeRequest {
            authorize_url: format!("{}/services/oauth2/authorize", s.login_url),
            client_id: s.consumer_key.unwrap_or_default(),
            scopes: WEB_SERVER_SCOPES.iter().map(|s| s.to_string()).collect(),
            extra: Vec::new(),
        }
    },
    redeem,
    explain,
    revoke,
    keep_alive: |_| None,
};

fn token_url(s: &Settings) -> String {
    format!("{}/services/oauth2/token", s.login_url)
}

/// The consumer secret, or the refusal that says to set it.
fn consumer_secret<'a>(secrets: &'a Secrets) -> Result<&'a SecretString, Refusal> {
    secrets.get("consumer_secret").ok_or_else(|| Refusal {
        transient: false,
        result: TestResult::failed("no consumer secret set", "paste the connected app's Consumer Secret (Manage Consumer Details) into this connection"),
    })
}

/// A token answer as a session: Salesforce's `instance_url`, and the org and user ids at the end
/// of its `id` URL.
fn minted(token: oauth::Token, s: &Settings) -> Minted {
    let text = |name: &str| token.extra.get(name).and_then(Value::as_str).map(str::to_string);
    let id = text("id").unwrap_or_default();
    let mut ids = id.trim_end_matches('/').rsplit('/');
    let user_id = ids.next().filter(|s| !s.is_empty()).map(str::to_string);
    let org_id = ids.next().filter(|s| !s.is_empty()).map(str::to_string);
    Minted {
        access_token: token.access_token,
        token_type: "Bearer".into(),
        instance_url: text("instance_url").map(|u| u.trim_end_matches('/').to_string()).unwrap_or_else(|| s.login_url.clone()),
        expires_in: token.expires_in.and_then(|d| chrono::Duration::from_std(d).ok()),
        scope: token.scope,
        org_id,
        user_id,
        refresh_token: token.refresh_token,
    }
}

/// An `oauth::Failure` in Salesforce's words, with the web server flow's advice.
fn refusal(f: oauth::Failure, s: &Settings, callback_url: &str) -> Refusal {
    let transient = f.is_transient();
    let result = match f {
        oauth::Failure::Refused { error, description, .. } => advice(s, &error, &description, callback_url),
        oauth::Failure::Unavailable { status, attempts } => client::Failure::Unavailable { status, attempts }.explain(s),
        oauth::Failure::Unreachable { error, attempts } => client::Failure::Unreachable { error, attempts }.explain(s),
        oauth::Failure::Unexpected(what) => client::Failure::Unexpected(what).explain(s),
    };
    Refusal { result, transient }
}

/// A refresh with the stored refresh token (the broker's mint for this flow).
pub fn refresh<'a>(out: &'a Outbound, settings: &'a Map<String, Value>, secrets: &'a Secrets) -> MintFuture<'a> {
    Box::pin(async move {
        let s = Settings::from_map(settings);
        let secret = consumer_secret(secrets)?;
        let Some(refresh_token) = secrets.get(super::REFRESH_TOKEN) else {
            return Err(Refusal {
                transient: false,
                result: TestResult::failed(
                    "nobody has signed in to Salesforce for this connection yet",
                    "choose Connect with Salesforce on the connection page",
                ),
            });
        };
        let client_id = s.consumer_key.clone().unwrap_or_default();
        match oauth::request_token(out, &token_url(&s), &client_id, Grant::Refresh { refresh_token }, || Ok(ClientAuth::SecretInBody(secret))).await {
            Ok(token) => Ok(minted(token, &s)),
            Err(f) => Err(refusal(f, &s, "")),
        }
    })
}

fn redeem<'a>(
    out: &'a Outbound,
    settings: &'a Map<String, Value>,
    secrets: &'a Secrets,
    code: &'a str,
    verifier: &'a SecretString,
    redirect_uri: &'a str,
) -> MintFuture<'a> {
    Box::pin(async move {
        let s = Settings::from_map(settings);
        let secret = consumer_secret(secrets)?;
        let client_id = s.consumer_key.clone().unwrap_or_default();
        let grant = Grant::Code { code, verifier, redirect_uri };
        match oauth::request_token(out, &token_url(&s), &client_id, grant, || Ok(ClientAuth::SecretInBody(secret))).await {
            Ok(token) => Ok(minted(token, &s)),
            Err(f) => Err(refusal(f, &s, redirect_uri)),
        }
    })
}

fn explain(settings: &Map<String, Value>, error: &str, description: &str, callback_url: &str) -> TestResult {
    advice(&Settings::from_map(settings), error, description, callback_url)
}

/// Each of Salesforce's refusals of the web server flow, and what to do about it.
fn advice(s: &Settings, error: &str, description: &str, callback_url: &str) -> TestResult {
    let app = "In Salesforce, open Setup → App Manager → your connected app";
    let key = s.consumer_key.as_deref().unwrap_or("(not set)");
    let said = if description.is_empty() { format!("Salesforce refused: {error}") } else { format!("Salesforce refused: {error}: {description}") };
    let d = description.to_ascii_lowercase();
    let advice = match error {
        "redirect_uri_mismatch" => format!(
            "{app} → Edit → API (Enable OAuth Settings) and set Callback URL to exactly {} (one line, nothing added), save, wait 2–10 minutes, then connect again.",
            if callback_url.is_empty() { "connvault's PUBLIC_URL/oauth/callback" } else { callback_url }
        ),
        "invalid_client_id" => format!(
            "Salesforce does not know the consumer key {key}: copy it again from App Manager → the app → View → Manage Consumer Details, and check that the \
             login URL {} is the org where the app was created. A new app takes 2–10 minutes to become usable.",
            s.login_url
        ),
        "invalid_client" => format!(
            "Salesforce refused the consumer secret for the consumer key {key}: copy the Consumer Secret again from Manage Consumer Details and save it in \
             this connection (Replace), then connect again."
        ),
        "access_denied" => "The sign-in was cancelled (Deny, or the window was closed before Allow). Choose Connect with Salesforce again and choose Allow.".into(),
        "OAUTH_APP_BLOCKED" | "oauth_app_blocked" => {
            format!("The connected app is blocked in this org: {app} → Manage → Unblock (Setup → Connected Apps OAuth Usage), then connect again.")
        }
        "OAUTH_APP_ACCESS_DENIED" | "OAUTH_APPROVAL_ERROR_GENERIC" | "invalid_app_access" => format!(
            "{} is not approved for this connected app: {app} → Manage → Edit Policies (Permitted Users), and assign the permission set that includes the app \
             to the user, or set Permitted Users to \"All users may self-authorize\".",
            if s.username.is_empty() { "The user" } else { s.username.as_str() }
        ),
        "invalid_grant" if d.contains("expired") || d.contains("refresh") || d.contains("revoked") || d.contains("authentication failure") => {
            "The refresh token no longer works (it was revoked, expired, or the user's password or the app's policy changed): sign in again with Connect with \
             Salesforce."
                .into()
        }
        "invalid_grant" => "Salesforce did not accept the sign-in (the code was used already or expired): sign in again with Connect with Salesforce.".into(),
        _ => format!("Check the connected app's OAuth settings and policies; Salesforce's words above name what it objects to. Then connect again."),
    };
    TestResult::failed(said, advice)
}

fn revoke<'a>(out: &'a Outbound, settings: &'a Map<String, Value>, secrets: &'a Secrets, token: &'a SecretString) -> RevokeFuture<'a> {
    Box::pin(async move {
        let s = Settings::from_map(settings);
        let client_id = s.consumer_key.clone().unwrap_or_default();
        let secret = secrets.get("consumer_secret")?;
        Some(
            oauth::revoke(out, &format!("{}/services/oauth2/revoke", s.login_url), &client_id, &ClientAuth::SecretInBody(secret), token, "refresh_token").await,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_refusal_says_what_to_do() {
        let s = Settings::from_map(
            json!({"login_url": "https://login.salesforce.com", "username": "admin@acme.com", "consumer_key": "3MVG9abc"}).as_object().unwrap(),
        );
        let cb = "https://vault.acme.com/oauth/callback";
        let rows = [
            ("redirect_uri_mismatch", "redirect_uri must match configuration", cb),
            ("invalid_client_id", "client identifier invalid", "Manage Consumer Details"),
            ("invalid_client", "invalid client credentials", "Consumer Secret"),
            ("access_denied", "end-user denied authorization", "cancelled"),
            ("OAUTH_APP_BLOCKED", "this app is blocked by admin", "Unblock"),
            ("OAUTH_APP_ACCESS_DENIED", "user is not admin approved to access this app", "Permitted Users"),
            ("invalid_grant", "expired access/refresh token", "sign in again"),
        ];
        for (error, description, words) in rows {
            let r = advice(&s, error, description, cb);
            assert!(!r.ok && r.detail.contains(description), "{error}: {}", r.detail);
            assert!(r.advice.as_deref().unwrap().contains(words), "{error}: {:?}", r.advice);
        }
    }
}
