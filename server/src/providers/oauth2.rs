//! The `oauth2` provider: any OAuth 2.0 API whose users authorize connvault in the browser
//! (authorization code with PKCE). People type the client's settings and its secret; someone
//! signs in (`crate::connect`), and connvault keeps the refresh token and refreshes the access
//! token with it.

use serde_json::{json, Map, Value};

use super::{
    AuthMode, Authorization, AuthorizeRequest, FieldKind, FieldSpec, FormHints, Identity, Key, MintFuture, Minted, Minting, ProviderDef, Refusal, RevokeFuture, Secrets,
    TestResult, VerifyFuture,
};
use crate::error::FieldError;
use crate::oauth::{self, ClientAuth, Grant};
use crate::outbound::Outbound;
use crate::secret::SecretString;

pub const REFRESH_TOKEN: &str = "refresh_token";
pub const ACCESS_TOKEN: &str = "access_token";
/// An access token lifetime when the token answer gives none.
pub const DEFAULT_LIFETIME_MINUTES: i64 = 60;
pub const KEEP_ALIVE_DAYS: std::ops::RangeInclusive<i64> = 1..=365;
/// Parameters connvault sets on the authorize request itself.
const RESERVED: &[&str] = &["response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge", "code_challenge_method"];

const fn text(name: &'static str, label: &'static str, help: &'static str, kind: FieldKind, required: bool) -> FieldSpec {
    FieldSpec { name, label, help, kind, choices: &[], secret: false, when: None, required }
}

pub static OAUTH2: ProviderDef = ProviderDef {
    id: "oauth2",
    label: "OAuth 2.0 (sign in)",
    auth_modes: &[AuthMode::AuthorizationCode],
    auth_mode: |_| AuthMode::AuthorizationCode,
    fields: &[
        text("authorize_url", "Authorize URL", "Where people sign in and approve, e.g. https://auth.example.com/oauth/authorize", FieldKind::Url, true),
        text("token_url", "Token URL", "The token endpoint, e.g. https://auth.example.com/oauth/token", FieldKind::Url, true),
        text("client_id", "Client ID", "The client (app) registered with the provider", FieldKind::Text, true),
        text("scopes", "Scopes", "Space separated, as the provider names them, e.g. read write offline_access", FieldKind::Text, false),
        text("revoke_url", "Revocation URL", "Optional (RFC 7009): Disconnect revokes the refresh token there", FieldKind::Url, false),
        text("userinfo_url", "Userinfo URL", "Optional: called with the new token to say whom it acts as", FieldKind::Url, false),
        text("base_url", "API base URL", "Optional: where the API lives (the proxy forwards there)", FieldKind::Url, false),
        FieldSpec {
            name: "token_auth",
            label: "Client authentication",
            help: "basic: HTTP Basic with the client ID and secret (client_secret_basic, the default); body: both in the form (client_secret_post)",
            kind: FieldKind::Choice,
            choices: &["basic", "body"],
            secret: false,
            when: None,
            required: false,
        },
        text("authorize_params", "Extra authorize parameters", "Optional JSON object, e.g. {\"prompt\": \"consent\", \"access_type\": \"offline\"}", FieldKind::Object, false),
        text(
            "keep_alive_days",
            "Keep alive (days)",
            "Optional: refresh at least this often even when unused, for providers whose refresh tokens expire when idle",
            FieldKind::Integer,
            false,
        ),
        FieldSpec {
            name: "client_secret",
            label: "Client secret",
            help: "The client's secret, as the provider shows it",
            kind: FieldKind::Text,
            choices: &[],
            secret: true,
            when: None,
            required: true,
        },
    ],
    check,
    test: None,
    managed_secrets: &[REFRESH_TOKEN, ACCESS_TOKEN],
    cached_secrets: &[ACCESS_TOKEN],
    destination_settings: &["token_url", "authorize_url", "revoke_url", "userinfo_url", "base_url"],
    environment_settings: &["token_url", "authorize_url", "revoke_url", "userinfo_url", "base_url", "client_id"],
    schema,
    minting: Some(&MINTING),
    credential: None,
    admin_help: None,
    credential_help: None,
    details: None,
    session: None,
    secret_expiry: None,
    authorization: Some(&AUTHORIZATION),
    form: FormHints { presets: &[], advanced: &["token_auth", "authorize_params", "keep_alive_days"] },
};

static MINTING: Minting = Minting {
    not_ready: |_| None,
    exchange,
    verify,
    default_lifetime: |_| chrono::Duration::minutes(DEFAULT_LIFETIME_MINUTES),
    key_field: "",
    pending_key_field: "",
    token_field: ACCESS_TOKEN,
};

static AUTHORIZATION: Authorization = Authorization {
    button: "Connect (sign in)",
    refresh_field: REFRESH_TOKEN,
    request: |settings| {
        let s = Settings::from_map(settings);
        AuthorizeRequest { authorize_url: s.authorize_url, client_id: s.client_id, scopes: s.scopes, extra: s.authorize_params }
    },
    redeem,
    explain,
    revoke,
    keep_alive: |settings| settings.get("keep_alive_days").and_then(Value::as_i64).map(chrono::Duration::days),
};

/// The settings of a connection, read once.
#[derive(Debug, Clone)]
pub struct Settings {
    pub authorize_url: String,
    pub token_url: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub revoke_url: Option<String>,
    pub userinfo_url: Option<String>,
    pub base_url: Option<String>,
    pub basic: bool,
    pub authorize_params: Vec<(String, String)>,
}

impl Settings {
    pub fn from_map(settings: &Map<String, Value>) -> Settings {
        let text = |name: &str| settings.get(name).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
        Settings {
            authorize_url: text("authorize_url").unwrap_or_default(),
            token_url: text("token_url").unwrap_or_default(),
            client_id: text("client_id").unwrap_or_default(),
            scopes: text("scopes").map(|s| s.split_whitespace().map(str::to_string).collect()).unwrap_or_default(),
            revoke_url: text("revoke_url"),
            userinfo_url: text("userinfo_url"),
            base_url: text("base_url").map(|u| u.trim_end_matches('/').to_string()),
            basic: text("token_auth").as_deref() != Some("body"),
            authorize_params: settings
                .get("authorize_params")
                .and_then(Value::as_object)
                .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
                .unwrap_or_default(),
        }
    }

    fn auth<'a>(&self, secret: &'a SecretString) -> ClientAuth<'a> {
        if self.basic {
            ClientAuth::SecretBasic(secret)
        } else {
            ClientAuth::SecretInBody(secret)
        }
    }

    /// Where the credential is used: the API base URL, else the origin of the userinfo or token URL.
    fn instance_url(&self) -> String {
        let origin = |u: &str| url::Url::parse(u).map(|u| u.origin().ascii_serialization()).unwrap_or_default();
        self.base_url.clone().unwrap_or_else(|| origin(self.userinfo_url.as_deref().unwrap_or(&self.token_url)))
    }

    fn host(&self) -> String {
        url::Url::parse(&self.token_url).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_else(|| self.token_url.clone())
    }
}

fn check(settings: &Map<String, Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(params) = settings.get("authorize_params").and_then(Value::as_object) {
        for k in params.keys().filter(|k| RESERVED.contains(&k.to_ascii_lowercase().as_str())) {
            errors.push(FieldError::new("settings.authorize_params", format!("{k} is set by connvault itself; remove it (scopes go in Scopes)")));
        }
    }
    if let Some(days) = settings.get("keep_alive_days").and_then(Value::as_i64) {
        if !KEEP_ALIVE_DAYS.contains(&days) {
            errors.push(FieldError::new("settings.keep_alive_days", format!("choose between {} and {} days", KEEP_ALIVE_DAYS.start(), KEEP_ALIVE_DAYS.end())));
        }
    }
    if let Some(client_id) = settings.get("client_id").and_then(Value::as_str) {
        if client_id.chars().any(char::is_whitespace) {
            errors.push(FieldError::new("settings.client_id", "paste the client ID exactly as the provider shows it: one word, no spaces"));
        }
    }
    for name in ["authorize_url", "token_url", "revoke_url", "userinfo_url"] {
        if let Some(u) = settings.get(name).and_then(Value::as_str).and_then(|u| url::Url::parse(u).ok()) {
            if u.fragment().is_some() {
                errors.push(FieldError::new(format!("settings.{name}"), "remove the #… part: OAuth endpoints take no fragment"));
            }
        }
    }
    errors
}

fn schema() -> Value {
    use super::patterns::{any_case, CONTROL, HOST, PORT, WS};
    let url = |d: &str| {
        json!({
            "type": "string",
            "maxLength": super::MAX_SETTING_LEN,
            "pattern": format!("^{}://{HOST}(?::{PORT})?(?:/[^?#{WS}{CONTROL}]*)?(?:\\?[^#{WS}{CONTROL}]*)?$", any_case("http") + "[Ss]?"),
            "description": d
        })
    };
    let text = format!("^[^{CONTROL}]*[^{WS}{CONTROL}][^{CONTROL}]*$");
    let reserved = RESERVED.iter().map(|r| any_case(r)).collect::<Vec<_>>().join("|");
    json!({
        "authorize_url": url("Where people sign in: an absolute http(s) URL without user name, password or fragment"),
        "token_url": url("The token endpoint"),
        "client_id": {"type": "string", "maxLength": super::MAX_SETTING_LEN, "pattern": format!("^[^{WS}{CONTROL}]+$")},
        "scopes": {"type": "string", "maxLength": super::MAX_SETTING_LEN, "pattern": text, "description": "Space separated"},
        "revoke_url": url("RFC 7009 revocation endpoint"),
        "userinfo_url": url("Called with the new token to say whom it acts as"),
        "base_url": url("Where the API lives"),
        "token_auth": {"type": "string", "enum": ["basic", "body"], "default": "basic"},
        "authorize_params": {
            "type": "object",
            "maxProperties": super::MAX_OBJECT_ENTRIES,
            "additionalProperties": {"type": "string", "maxLength": super::MAX_SETTING_LEN, "pattern": format!("^[^{CONTROL}]*$")},
            "propertyNames": {"pattern": format!("^[^{WS}{CONTROL}]{{1,100}}$"), "not": {"pattern": format!("^(?:{reserved})$")}},
            "description": "Extra authorize parameters (OAuth's own are set by connvault)"
        },
        "keep_alive_days": {"type": "integer", "minimum": KEEP_ALIVE_DAYS.start(), "maximum": KEEP_ALIVE_DAYS.end()}
    })
}

fn secret_of<'a>(secrets: &'a Secrets) -> Result<&'a SecretString, Refusal> {
    secrets.get("client_secret").ok_or_else(|| Refusal { transient: false, result: TestResult::failed("no client secret set", "set the Client secret of this connection") })
}

fn minted(token: oauth::Token, s: &Settings) -> Minted {
    Minted {
        access_token: token.access_token,
        token_type: if token.token_type.is_empty() { "Bearer".into() } else { token.token_type },
        instance_url: s.instance_url(),
        expires_in: token.expires_in.and_then(|d| chrono::Duration::from_std(d).ok()),
        scope: token.scope,
        org_id: None,
        user_id: None,
        refresh_token: token.refresh_token,
    }
}

/// A refusal of the token endpoint in words, with what to do.
fn refusal(f: oauth::Failure, s: &Settings) -> Refusal {
    let transient = f.is_transient();
    let host = s.host();
    let result = match f {
        oauth::Failure::Refused { error, description, .. } => advice(s, &error, &description, ""),
        oauth::Failure::Unavailable { status, attempts } => {
            TestResult::failed(format!("{host} answered {status} to {attempts} attempts"), "the provider is unavailable; connvault tries again later")
        }
        oauth::Failure::Unreachable { error, attempts } => TestResult::failed(
            if error.is_refused() { error.to_string() } else { format!("{error} ({attempts} attempts)") },
            error.advice().unwrap_or_else(|| format!("check the Token URL {}", s.token_url)),
        ),
        oauth::Failure::Unexpected(what) => {
            TestResult::failed(format!("the answer of {host} is not an OAuth token answer ({what})"), format!("check the Token URL {}", s.token_url))
        }
    };
    Refusal { result, transient }
}

fn explain(settings: &Map<String, Value>, error: &str, description: &str, callback_url: &str) -> TestResult {
    advice(&Settings::from_map(settings), error, description, callback_url)
}

/// RFC 6749's error codes (5.2 at the token endpoint, 4.1.2.1 at the callback) in words.
fn advice(s: &Settings, error: &str, description: &str, callback_url: &str) -> TestResult {
    let host = s.host();
    let said = if description.is_empty() { format!("{host} refused: {error}") } else { format!("{host} refused: {error}: {description}") };
    let advice = match error {
        "invalid_grant" => "The refresh token or sign-in is no longer valid (revoked, expired or used already): sign in again (Connect on the connection page).".to_string(),
        "invalid_client" | "unauthorized_client" => format!(
            "The provider does not accept the client {} with this secret: check the Client ID, the Client secret and Client authentication (basic or body).",
            s.client_id
        ),
        "access_denied" => "The sign-in was cancelled or refused at the provider: connect again and approve.".to_string(),
        "invalid_scope" => format!("The provider does not offer the scopes {:?}: change Scopes to ones the client may ask for.", s.scopes.join(" ")),
        "redirect_uri_mismatch" | "invalid_redirect_uri" => format!(
            "Register exactly {} as the client's redirect (callback) URL at the provider, then connect again.",
            if callback_url.is_empty() { "connvault's PUBLIC_URL/oauth/callback" } else { callback_url }
        ),
        "unsupported_response_type" | "unsupported_grant_type" => {
            format!("{host} does not offer the authorization code flow to this client: enable it for the client, or check the Authorize and Token URLs.")
        }
        "temporarily_unavailable" | "server_error" => "The provider had a problem: connect again in a moment.".to_string(),
        _ => "The provider's words above name what it objects to; fix that at the provider or in the settings, then connect again.".to_string(),
    };
    TestResult::failed(said, advice)
}

fn exchange<'a>(out: &'a Outbound, settings: &'a Map<String, Value>, secrets: &'a Secrets, _key: Option<Key<'a>>) -> MintFuture<'a> {
    Box::pin(async move {
        let s = Settings::from_map(settings);
        let secret = secret_of(secrets)?;
        let Some(refresh_token) = secrets.get(REFRESH_TOKEN) else {
            return Err(Refusal { transient: false, result: TestResult::failed("nobody has signed in for this connection yet", "choose Connect on the connection page and sign in") });
        };
        match oauth::request_token(out, &s.token_url, &s.client_id, Grant::Refresh { refresh_token }, || Ok(s.auth(secret))).await {
            Ok(token) => Ok(minted(token, &s)),
            Err(f) => Err(refusal(f, &s)),
        }
    })
}

fn redeem<'a>(out: &'a Outbound, settings: &'a Map<String, Value>, secrets: &'a Secrets, code: &'a str, verifier: &'a SecretString, redirect_uri: &'a str) -> MintFuture<'a> {
    Box::pin(async move {
        let s = Settings::from_map(settings);
        let secret = secret_of(secrets)?;
        match oauth::request_token(out, &s.token_url, &s.client_id, Grant::Code { code, verifier, redirect_uri }, || Ok(s.auth(secret))).await {
            Ok(token) if token.refresh_token.is_none() => Err(Refusal {
                transient: false,
                result: TestResult::failed(
                    format!("{} gave an access token but no refresh token", s.host()),
                    "ask for offline access: add the provider's scope for it (often offline_access) to Scopes, or its parameter (e.g. access_type=offline) \
                     to the extra authorize parameters, then connect again",
                ),
            }),
            Ok(token) => Ok(minted(token, &s)),
            Err(f) => Err(refusal(f, &s)),
        }
    })
}

/// The userinfo URL with the new token, when there is one; else the token answer is the proof.
fn verify<'a>(out: &'a Outbound, settings: &'a Map<String, Value>, minted: &'a Minted) -> VerifyFuture<'a> {
    Box::pin(async move {
        let s = Settings::from_map(settings);
        let Some(userinfo) = &s.userinfo_url else {
            return Ok(Identity { summary: format!("connected to {} (token obtained; no userinfo URL to say as whom)", s.host()), ..Identity::default() });
        };
        let fail = |detail: String, advice: String| Refusal { transient: false, result: TestResult::failed(detail, advice) };
        let url = out.parse_url(userinfo).map_err(|e| fail(e.to_string(), e.advice().unwrap_or_else(|| "check the Userinfo URL".into())))?;
        let header = format!("{} {}", if minted.token_type.eq_ignore_ascii_case("bearer") { "Bearer" } else { minted.token_type.as_str() }, minted.access_token.expose_secret());
        let response = oauth::send_with_retries(out, || {
            let mut r = reqwest::Request::new(reqwest::Method::GET, url.clone());
            if let Ok(mut v) = reqwest::header::HeaderValue::from_str(&header) {
                v.set_sensitive(true);
                r.headers_mut().insert(reqwest::header::AUTHORIZATION, v);
            }
            r.headers_mut().insert(reqwest::header::ACCEPT, reqwest::header::HeaderValue::from_static("application/json"));
            r
        })
        .await
        .map_err(|e| Refusal { transient: true, result: TestResult::failed(format!("the userinfo URL could not be read ({e:?})"), "try again in a moment") })?;
        if !response.status.is_success() {
            return Err(fail(format!("the userinfo URL answered HTTP {} to the new token", response.status.as_u16()), "check the Userinfo URL and that Scopes allow reading it".into()));
        }
        let info: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        let pick = |names: &[&str]| names.iter().find_map(|n| info.get(*n).and_then(Value::as_str).map(str::to_string));
        let username = pick(&["preferred_username", "email", "login", "name", "sub"]);
        let user_id = pick(&["sub", "id", "user_id"]);
        Ok(Identity {
            summary: format!("connected to {} as {}", s.host(), username.as_deref().unwrap_or("(the userinfo answer names nobody)")),
            org_id: None,
            user_id,
            username,
        })
    })
}

fn revoke<'a>(out: &'a Outbound, settings: &'a Map<String, Value>, secrets: &'a Secrets, token: &'a SecretString) -> RevokeFuture<'a> {
    Box::pin(async move {
        let s = Settings::from_map(settings);
        let url = s.revoke_url.clone()?;
        let secret = secrets.get("client_secret")?;
        Some(oauth::revoke(out, &url, &s.client_id, &s.auth(secret), token, "refresh_token").await)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_with_reasons() {
        let base = json!({"authorize_url": "https://a.example.com/authorize", "token_url": "https://a.example.com/token", "client_id": "abc"});
        let with = |extra: Value| {
            let mut m = base.as_object().unwrap().clone();
            m.extend(extra.as_object().unwrap().clone());
            OAUTH2.validate(&m, &["client_secret".to_string()].into_iter().collect()).into_iter().map(|e| e.field).collect::<Vec<_>>()
        };
        assert!(with(json!({})).is_empty());
        assert!(with(json!({"authorize_params": {"prompt": "consent"}, "token_auth": "body", "keep_alive_days": 30})).is_empty());
        assert_eq!(with(json!({"authorize_params": {"state": "x"}})), ["settings.authorize_params"]);
        assert_eq!(with(json!({"authorize_params": "prompt=consent"})), ["settings.authorize_params"]);
        assert_eq!(with(json!({"authorize_params": {"prompt": 1}})), ["settings.authorize_params"]);
        assert_eq!(with(json!({"keep_alive_days": 0})), ["settings.keep_alive_days"]);
        assert_eq!(with(json!({"token_auth": "jwt"})), ["settings.token_auth"]);
        assert_eq!(with(json!({"client_id": "a b"})), ["settings.client_id"]);
        let none = OAUTH2.validate(base.as_object().unwrap(), &Default::default());
        assert_eq!(none.into_iter().map(|e| e.field).collect::<Vec<_>>(), ["secrets.client_secret"]);
    }

    #[test]
    fn every_endpoint_is_a_destination() {
        let old = json!({"token_url": "https://a.example.com/token", "authorize_url": "https://a.example.com/authorize"});
        let moved = json!({"token_url": "https://evil.example.com/token", "authorize_url": "https://a.example.com/authorize", "userinfo_url": "https://x.example.com/me"});
        assert_eq!(OAUTH2.destination_changes(old.as_object().unwrap(), moved.as_object().unwrap()), ["token_url", "userinfo_url"]);
    }
}
