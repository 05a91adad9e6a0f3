//! Talking to Salesforce: the token endpoint and userinfo, through the guarded outbound client,
//! and what each of Salesforce's "no"s means in plain words.
//!
//! Timeouts, connection failures and 5xx answers are retried a bounded number of times with
//! growing pauses; a 4xx is Salesforce's considered answer and is never retried.

use std::time::Duration;

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use crate::outbound::{self, Outbound, OutboundError, OutboundResponse};
use crate::providers::salesforce::Settings;
use crate::providers::TestResult;
use crate::secret::SecretString;

pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Attempts per call when Salesforce times out or answers 5xx, and the pause before each retry.
pub const RETRY_PAUSES: [Duration; 2] = [Duration::from_millis(200), Duration::from_millis(800)];

/// What the token endpoint gave.
#[derive(Debug)]
pub struct Session {
    pub access_token: SecretString,
    pub instance_url: String,
    pub org_id: Option<String>,
    pub user_id: Option<String>,
}

/// What userinfo says about the user behind a token.
#[derive(Debug, Clone, Deserialize)]
pub struct UserInfo {
    #[serde(default)]
    pub user_id: String,
    #[serde(default)]
    pub organization_id: String,
    #[serde(default)]
    pub preferred_username: String,
    #[serde(default)]
    pub active: Option<bool>,
}

/// Why there is no session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Salesforce answered with an OAuth error (`{"error", "error_description"}`).
    Refused { status: u16, error: String, description: String },
    /// userinfo said the token is not (or no longer) valid.
    InvalidSession,
    /// 5xx, after the retries.
    Unavailable { status: u16, attempts: usize },
    /// No answer (after the retries), or an address connvault refuses to call.
    Unreachable { error: OutboundError, attempts: usize },
    /// An answer that is not what Salesforce sends.
    Unexpected(String),
    /// The connection is not ready to ask (no consumer key, no certificate).
    NotReady { detail: String, advice: String },
}

impl Failure {
    /// Whether asking again later, unchanged, may work (so the broker backs off instead of
    /// calling it a configuration problem).
    pub fn is_transient(&self) -> bool {
        matches!(self, Failure::Unavailable { .. }) || matches!(self, Failure::Unreachable { error, .. } if !error.is_refused())
    }

    /// The failure in plain words: what Salesforce said, and the setting to change.
    pub fn explain(&self, s: &Settings) -> TestResult {
        let user = if s.username.is_empty() { "the integration user" } else { s.username.as_str() };
        let app = "In Salesforce, open Setup → App Manager → your connected app";
        let (detail, advice) = match self {
            Failure::Refused { error, description, .. } => {
                let said = format!("Salesforce refused the token request: {error}: {description}");
                let d = description.to_ascii_lowercase();
                let advice = match error.as_str() {
                    "invalid_grant" if d.contains("hasn't approved") || d.contains("has not approved") => format!(
                        "{app} → Manage → Edit Policies and set Permitted Users to \"Admin approved users are pre-authorized\", then assign the \
                         permission set that includes the app to {user}. Also check that {user} exists in this org (the login URL decides production or sandbox)."
                    ),
                    "invalid_app_access" => format!(
                        "{user} is not allowed to use the connected app: add the app to a permission set (Setup → Permission Sets → Assigned Connected Apps) \
                         and assign that permission set to {user}, or add {user}'s profile under the app's Manage → Profiles."
                    ),
                    "invalid_grant" if d.contains("audience") => format!(
                        "The audience {} is not what this org expects. Use https://login.salesforce.com for production and My Domain logins and \
                         https://test.salesforce.com for sandboxes: set Audience under Advanced, or leave it empty to derive it from the login URL.",
                        s.audience
                    ),
                    "invalid_grant" if d.contains("expired") => "Salesforce found the assertion already expired, so this server's clock is off. Synchronise \
                                                                 the connvault server's clock (NTP) and test again."
                        .to_string(),
                    "invalid_grant" if d.contains("ip restricted") || d.contains("login hours") => format!(
                        "{app} → Manage → Edit Policies and set IP Relaxation to \"Relax IP restrictions\" (or add connvault's address to the Login IP \
                         Ranges of {user}'s profile), and check the profile's Login Hours."
                    ),
                    "invalid_grant" if d.contains("assertion") => format!(
                        "Salesforce could not verify the assertion with the connected app's certificate. In the app's OAuth settings, under \"Use digital \
                         signatures\", upload this connection's certificate (Download certificate) and save; check that the consumer key {} is this app's. \
                         Changes take 2–10 minutes to reach Salesforce.",
                        s.consumer_key.as_deref().unwrap_or("(not set)")
                    ),
                    "invalid_client_id" | "invalid_client" => format!(
                        "Salesforce does not know the consumer key {}. Copy it again from App Manager → the app → View → Manage Consumer Details, and check \
                         that the login URL {} is the org (production or sandbox) where the app was created. A new app takes 2–10 minutes to become usable.",
                        s.consumer_key.as_deref().unwrap_or("(not set)"),
                        s.login_url
                    ),
                    "unsupported_grant_type" => format!(
                        "{} does not accept the JWT-bearer grant: check that the login URL is a Salesforce login address such as https://login.salesforce.com.",
                        s.login_url
                    ),
                    "inactive_user" => format!("{user} is inactive in Salesforce: reactivate the user (Setup → Users), or set another integration username here."),
                    "inactive_org" => "The Salesforce org is inactive or locked: ask your Salesforce administrator to reactivate it.".to_string(),
                    _ => format!("Check the connected app's policies and that {user} may use it; Salesforce's words above name what it objects to."),
                };
                (said, advice)
            }
            Failure::InvalidSession => (
                "Salesforce did not accept the session token (INVALID_SESSION_ID)".to_string(),
                "The session ended early: check the connected app's session policies (Timeout Value) and that the integration user was not frozen; \
                 test again to get a new token."
                    .to_string(),
            ),
            Failure::Unavailable { status, attempts } => (
                format!("Salesforce answered {status} to {attempts} attempts"),
                "Salesforce is unavailable or in maintenance (see status.salesforce.com); connvault will try again later, nothing needs changing here."
                    .to_string(),
            ),
            Failure::Unreachable { error, attempts } => (
                if error.is_refused() { error.to_string() } else { format!("{error} ({attempts} attempts)") },
                error.advice().unwrap_or_else(|| format!("check the login URL {}", s.login_url)),
            ),
            Failure::NotReady { detail, advice } => (detail.clone(), advice.clone()),
            Failure::Unexpected(what) => {
                (format!("the answer is not what Salesforce sends ({what})"), format!("check that the login URL {} is a Salesforce login address", s.login_url))
            }
        };
        TestResult::failed(detail, advice)
    }
}

#[derive(Deserialize)]
struct TokenBody {
    access_token: Option<String>,
    instance_url: Option<String>,
    id: Option<String>,
}

#[derive(Deserialize)]
struct OAuthError {
    error: String,
    #[serde(default)]
    error_description: String,
}

/// Sends `build()` (rebuilt for each attempt), retrying timeouts, failed connections and 5xx.
async fn with_retries(out: &Outbound, build: impl Fn() -> reqwest::Request) -> Result<OutboundResponse, Failure> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let last = attempts > RETRY_PAUSES.len();
        match out.send(build()).await {
            Ok(r) if r.status.is_server_error() && !last => {}
            Ok(r) if r.status.is_server_error() => return Err(Failure::Unavailable { status: r.status.as_u16(), attempts }),
            Ok(r) => return Ok(r),
            Err(e) if e.is_refused() => return Err(Failure::Unreachable { error: e, attempts }),
            Err(e @ (OutboundError::Timeout { .. } | OutboundError::Connect { .. } | OutboundError::ConnectionRefused { .. })) if !last => {
                tracing::debug!("Salesforce call failed, retrying: {e}");
            }
            Err(e) => return Err(Failure::Unreachable { error: e, attempts }),
        }
        tokio::time::sleep(RETRY_PAUSES[attempts - 1]).await;
    }
}

/// `POST {login_url}/services/oauth2/token` with the signed assertion.
pub async fn request_token(out: &Outbound, login_url: &str, assertion: &str) -> Result<Session, Failure> {
    let url =
        out.parse_url(&format!("{}/services/oauth2/token", login_url.trim_end_matches('/'))).map_err(|error| Failure::Unreachable { error, attempts: 0 })?;
    let body = url::form_urlencoded::Serializer::new(String::new()).append_pair("grant_type", GRANT_TYPE).append_pair("assertion", assertion).finish();
    let response = with_retries(out, || {
        let mut request = reqwest::Request::new(Method::POST, url.clone());
        request.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
        request.headers_mut().insert(ACCEPT, HeaderValue::from_static("application/json"));
        *request.body_mut() = Some(body.clone().into());
        request
    })
    .await?;
    if response.status == StatusCode::OK {
        let answer: TokenBody = response.json().map_err(|e| Failure::Unexpected(e.to_string()))?;
        let (Some(token), Some(instance_url)) = (answer.access_token, answer.instance_url) else {
            return Err(Failure::Unexpected("the token answer has no access_token or instance_url".into()));
        };
        // The org id and user id are the last two segments of `id`.
        let mut ids = answer.id.as_deref().unwrap_or_default().trim_end_matches('/').rsplit('/');
        let user_id = ids.next().filter(|s| !s.is_empty()).map(str::to_string);
        let org_id = ids.next().filter(|s| !s.is_empty()).map(str::to_string);
        return Ok(Session { access_token: SecretString::new(token), instance_url: instance_url.trim_end_matches('/').to_string(), org_id, user_id });
    }
    match response.json::<OAuthError>() {
        Ok(e) => Err(Failure::Refused { status: response.status.as_u16(), error: e.error, description: e.error_description }),
        Err(_) => Err(Failure::Unexpected(format!("HTTP {} with {}", response.status, outbound::snippet(&response.body, 120, &[assertion])))),
    }
}

/// `GET {instance_url}/services/oauth2/userinfo` with the token: who the token acts as.
pub async fn userinfo(out: &Outbound, instance_url: &str, token: &SecretString) -> Result<UserInfo, Failure> {
    let url = out
        .parse_url(&format!("{}/services/oauth2/userinfo", instance_url.trim_end_matches('/')))
        .map_err(|error| Failure::Unreachable { error, attempts: 0 })?;
    let mut auth =
        HeaderValue::from_str(&format!("Bearer {}", token.expose_secret())).map_err(|_| Failure::Unexpected("the token is not header-safe".into()))?;
    auth.set_sensitive(true);
    let response = with_retries(out, || {
        let mut request = reqwest::Request::new(Method::GET, url.clone());
        request.headers_mut().insert(AUTHORIZATION, auth.clone());
        request.headers_mut().insert(ACCEPT, HeaderValue::from_static("application/json"));
        request
    })
    .await?;
    match response.status {
        StatusCode::OK => response.json().map_err(|e| Failure::Unexpected(e.to_string())),
        StatusCode::UNAUTHORIZED => Err(Failure::InvalidSession),
        status => Err(Failure::Unexpected(format!("userinfo answered HTTP {status}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every error row of the reference, with the exact body Salesforce sends, becomes a
    /// sentence that names the Salesforce setting (or the connvault setting) to change.
    #[test]
    fn every_refusal_in_the_reference_names_what_to_change() {
        let settings = Settings::from_map(
            json!({"login_url": "https://login.salesforce.com", "username": "int@acme.com", "consumer_key": "3MVG9abc"}).as_object().unwrap(),
        );
        let rows = [
            ("invalid_grant", "user hasn't approved this consumer", "Admin approved users are pre-authorized"),
            ("invalid_app_access", "user is not admin approved to access this app", "Assigned Connected Apps"),
            ("invalid_grant", "audience is invalid", "https://test.salesforce.com for sandboxes"),
            ("invalid_grant", "expired authorization code", "clock"),
            ("invalid_grant", "invalid assertion", "Use digital signatures"),
            ("invalid_client_id", "client identifier invalid", "Manage Consumer Details"),
            ("unsupported_grant_type", "grant type not supported", "Salesforce login address"),
            ("invalid_grant", "ip restricted or invalid login hours", "Relax IP restrictions"),
            ("invalid_grant", "IP Restricted Or Invalid Login Hours", "Login Hours"),
            ("inactive_user", "user is inactive", "reactivate the user"),
        ];
        for (error, description, words) in rows {
            let failure = Failure::Refused { status: 400, error: error.into(), description: description.into() };
            let r = failure.explain(&settings);
            assert!(!r.ok);
            assert!(r.detail.contains(description), "{error}: {}", r.detail);
            let advice = r.advice.unwrap();
            assert!(advice.contains(words), "{error} {description}: {advice}");
            assert!(!failure.is_transient(), "a 400 is Salesforce's considered answer");
        }
        let gone = Failure::Unavailable { status: 503, attempts: 3 };
        assert!(gone.is_transient() && gone.explain(&settings).detail.contains("503 to 3 attempts"));
        assert!(Failure::InvalidSession.explain(&settings).detail.contains("INVALID_SESSION_ID"));
    }
}
