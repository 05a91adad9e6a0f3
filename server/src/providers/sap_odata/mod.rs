//! The `sap_odata` provider: one OData service of an SAP system (S/4HANA, an on-premise
//! Gateway, SAP Business Accelerator Hub's sandbox), reached with a communication user's
//! password (`basic`), an API key in the `APIKey` header (`api_key`), or an access token from an
//! OAuth 2.0 client-credentials grant (`oauth_client_credentials`, BTP/XSUAA: the client secret
//! as HTTP Basic). The first two are static credentials; the third is minted by the broker.
//!
//! Writes to an SAP OData service need a CSRF token and the session cookies it belongs to: the
//! broker fetches them with the credential and adds them to its answer (`SESSION`). The
//! protocol (the `$metadata` check, EDMX counting, the CSRF fetch, the token request and what
//! each failure means) is [`client`]; the stand-in that answers like SAP is [`standin`].

pub mod client;
pub mod standin;

use serde_json::{json, Map, Value};

use super::{AuthMode, CredentialHelp, FieldKind, FieldSpec, FormHints, Identity, Key, MintFuture, Minted, Minting, OnRequest, ProviderDef, Secrets, SessionExtras, SessionFuture, TestFuture, VerifyFuture};
use crate::credential::{Credential, Unusable};
use crate::error::FieldError;
use crate::outbound::Outbound;
use crate::secret::SecretString;

/// `auth`: a communication user, an API key, or OAuth 2.0 client credentials.
pub const AUTH: &[&str] = &[BASIC, API_KEY, OAUTH];
pub const BASIC: &str = "basic";
pub const API_KEY: &str = "api_key";
pub const OAUTH: &str = "oauth_client_credentials";
/// The header SAP Business Accelerator Hub reads the key from (not Authorization).
pub const API_KEY_HEADER: &str = "APIKey";
/// The latest access token of an `oauth_client_credentials` connection (a cache).
pub const ACCESS_TOKEN: &str = "access_token";
pub const CLIENT_SECRET: &str = "client_secret";
/// XSUAA's tokens live 12 hours by default; this is used only if an answer lacks `expires_in`.
pub const DEFAULT_LIFETIME_MINUTES: i64 = 60;

pub static SAP_ODATA: ProviderDef = ProviderDef {
    id: "sap_odata",
    label: "SAP OData",
    auth_modes: &[AuthMode::Static, AuthMode::ClientSecret],
    auth_mode,
    fields: &[
        FieldSpec {
            name: "service_url",
            label: "Service URL",
            help: "The service root, e.g. https://my300000-api.s4hana.ondemand.com/sap/opu/odata/sap/API_BUSINESS_PARTNER/ (connvault adds $metadata)",
            kind: FieldKind::Url,
            choices: &[],
            secret: false,
            when: None,
            required: true,
        },
        FieldSpec {
            name: "sap_client",
            label: "SAP client",
            help: "Three digits, e.g. 100; sent as ?sap-client=; leave empty for the system's default client",
            kind: FieldKind::Text,
            choices: &[],
            secret: false,
            when: None,
            required: false,
        },
        FieldSpec {
            name: "auth",
            label: "Authentication",
            help: "basic: a communication user and its password; api_key: SAP Business Accelerator Hub's APIKey; oauth_client_credentials: a client ID and secret for the token URL",
            kind: FieldKind::Choice,
            choices: AUTH,
            secret: false,
            when: None,
            required: true,
        },
        FieldSpec {
            name: "username",
            label: "User name",
            help: "The communication user (or technical user) the integration logs on as",
            kind: FieldKind::Text,
            choices: &[],
            secret: false,
            when: Some(("auth", &[BASIC])),
            required: true,
        },
        FieldSpec {
            name: "token_url",
            label: "Token URL",
            help: "The OAuth 2.0 token endpoint, e.g. https://SUBDOMAIN.authentication.eu10.hana.ondemand.com/oauth/token (the url of the service key, plus /oauth/token)",
            kind: FieldKind::Url,
            choices: &[],
            secret: false,
            when: Some(("auth", &[OAUTH])),
            required: true,
        },
        FieldSpec {
            name: "client_id",
            label: "Client ID",
            help: "The OAuth client's ID (clientid of the service key)",
            kind: FieldKind::Text,
            choices: &[],
            secret: false,
            when: Some(("auth", &[OAUTH])),
            required: true,
        },
        FieldSpec {
            name: "password",
            label: "Password",
            help: "The communication user's password",
            kind: FieldKind::Text,
            choices: &[],
            secret: true,
            when: Some(("auth", &[BASIC])),
            // Not needed to save the connection: the SAP admin may enter it (Request credentials).
            required: false,
        },
        FieldSpec {
            name: "api_key",
            label: "API key",
            help: "From SAP Business Accelerator Hub (your profile → Show API Key); sent in the APIKey header",
            kind: FieldKind::Text,
            choices: &[],
            secret: true,
            when: Some(("auth", &[API_KEY])),
            // Not needed to save the connection: the SAP admin may enter it (Request credentials).
            required: false,
        },
        FieldSpec {
            name: CLIENT_SECRET,
            label: "Client secret",
            help: "The OAuth client's secret (clientsecret of the service key); sent to the token URL as HTTP Basic",
            kind: FieldKind::Text,
            choices: &[],
            secret: true,
            when: Some(("auth", &[OAUTH])),
            // Not needed to save the connection: the SAP admin may enter it (Request credentials).
            required: false,
        },
    ],
    check,
    test: Some(test),
    managed_secrets: &[ACCESS_TOKEN],
    cached_secrets: &[ACCESS_TOKEN],
    destination_settings: &["service_url", "token_url"],
    // The system, its client and its users; the auth mode is shared.
    environment_settings: &["service_url", "sap_client", "username", "token_url", "client_id"],
    schema,
    minting: Some(&MINTING),
    credential: Some(credential),
    admin_help: None,
    session: Some(&SESSION),
    secret_expiry: None,
    credential_help: Some(&CREDENTIAL_HELP),
    details: None,
    authorization: None,
    form: FormHints::NONE,
};

/// Asking the SAP system's administrator for the communication user's password, the API key or
/// the OAuth client's secret.
static CREDENTIAL_HELP: CredentialHelp = CredentialHelp { admin: "SAP administrator", owned_settings: &["username", "client_id"], steps: credential_steps };

fn credential_steps(settings: &Map<String, Value>) -> Vec<String> {
    let setting = |name: &str| settings.get(name).and_then(Value::as_str).unwrap_or_default();
    let service = setting("service_url");
    let first = match setting("auth") {
        BASIC => format!(
            "Create (or choose) a communication user for connvault and a communication arrangement whose scenario contains the service {service} \
             (on-premise: activate the service in /IWFND/MAINT_SERVICE and give a technical user a role with S_SERVICE for it)."
        ),
        API_KEY => "Sign in to SAP Business Accelerator Hub and copy your API key (your profile → Show API Key).".to_string(),
        _ => format!(
            "Create a service key for the XSUAA instance that protects {service}, allowed the client_credentials grant; it holds the clientid and clientsecret (token URL {}).",
            setting("token_url")
        ),
    };
    vec![
        first,
        "Enter the secret (and the user name or client ID, if it is not the one named here) on the page this link opens: connvault seals it at once and reads the service's $metadata with it; the developer never sees it.".into(),
    ]
}

/// Client credentials with the secret as HTTP Basic. Nothing is signed: the key fields name
/// secrets this provider never keeps.
static MINTING: Minting = Minting {
    not_ready,
    exchange,
    verify,
    default_lifetime: |_| chrono::Duration::minutes(DEFAULT_LIFETIME_MINUTES),
    key_field: "private_key",
    pending_key_field: "pending_private_key",
    token_field: ACCESS_TOKEN,
};

/// The CSRF token and the cookies it belongs to, for writes.
static SESSION: SessionExtras = SessionExtras {
    fields: &[
        (client::CSRF_TOKEN, "SAP OData: send it as X-CSRF-Token with every POST, PUT, PATCH, MERGE and DELETE; absent when the service gave none"),
        (client::COOKIES, "SAP OData: the Cookie header value the CSRF token belongs to; send it with the token"),
    ],
    fetch: session,
    on_request,
    expired: csrf_required,
};

/// On a proxied call: the connection's client on every call (the credential belongs to it),
/// the CSRF token and its cookies on writes.
fn on_request(settings: &Map<String, Value>, fields: &[(&'static str, SecretString)], write: bool) -> OnRequest {
    let mut out = OnRequest::default();
    if let Some(client) = Settings::from_map(settings).sap_client {
        out.query.push(("sap-client", client));
    }
    if write {
        for (name, value) in fields {
            match *name {
                client::CSRF_TOKEN => out.headers.push((client::CSRF_HEADER, value.clone())),
                client::COOKIES => out.headers.push(("cookie", value.clone())),
                _ => {}
            }
        }
    }
    out
}

/// SAP's answer to a write whose CSRF token has expired with its session.
fn csrf_required(status: http::StatusCode, headers: &http::HeaderMap) -> bool {
    status == http::StatusCode::FORBIDDEN && headers.get(client::CSRF_HEADER).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("required"))
}

/// `oauth_client_credentials` is minted; basic and API key are static.
fn auth_mode(settings: &Map<String, Value>) -> AuthMode {
    match settings.get("auth").and_then(Value::as_str) {
        Some(OAUTH) => AuthMode::ClientSecret,
        _ => AuthMode::Static,
    }
}

/// How a connection authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Basic,
    ApiKey,
    OAuth,
}

impl Auth {
    /// In a message: what was refused.
    pub fn what(self) -> &'static str {
        match self {
            Auth::Basic => "user name or password",
            Auth::ApiKey => "API key",
            Auth::OAuth => "access token",
        }
    }
}

/// The settings of a connection, read once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The service root, always with a trailing `/` (so `$metadata` and entity sets join it).
    pub service_root: String,
    pub sap_client: Option<String>,
    pub auth: Auth,
    pub username: String,
    pub token_url: String,
    pub client_id: String,
}

impl Settings {
    pub fn from_map(settings: &Map<String, Value>) -> Settings {
        let text = |name: &str| settings.get(name).and_then(Value::as_str).map(str::trim).unwrap_or_default().to_string();
        let auth = match settings.get("auth").and_then(Value::as_str) {
            Some(API_KEY) => Auth::ApiKey,
            Some(OAUTH) => Auth::OAuth,
            _ => Auth::Basic,
        };
        Settings {
            service_root: service_root(&text("service_url")),
            sap_client: Some(text("sap_client")).filter(|c| !c.is_empty()),
            auth,
            username: text("username"),
            token_url: text("token_url"),
            client_id: text("client_id"),
        }
    }

    /// The service's name: the root's last path segment (`API_BUSINESS_PARTNER`); for an OData
    /// v4 path ending in a version (`…/businesspartner/0001/`), the name and the version.
    pub fn service_name(&self) -> String {
        let path = url::Url::parse(&self.service_root).map(|u| u.path().to_string()).unwrap_or_default();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match segments.as_slice() {
            [.., name, version] if version.bytes().all(|b| b.is_ascii_digit()) => format!("{name} {version}"),
            [.., name] => name.to_string(),
            [] => self.service_root.clone(),
        }
    }
}

/// `url` with exactly one trailing `/`.
pub fn service_root(url: &str) -> String {
    format!("{}/", url.trim().trim_end_matches('/'))
}

/// The stored secret as `auth` sends it: Basic, or the `APIKey` header. Client credentials are
/// minted by the broker, never handed out as stored.
fn credential(settings: &Map<String, Value>, secrets: &Secrets) -> Result<Credential, Unusable> {
    let s = Settings::from_map(settings);
    let missing = |field: &str| Unusable { detail: format!("the {field} is not set"), advice: format!("set the {field} on this connection, then test again") };
    let credential = match s.auth {
        Auth::Basic => Credential::basic(&s.username, secrets.get("password").ok_or_else(|| missing("password"))?),
        Auth::ApiKey => Credential::header(API_KEY_HEADER, secrets.get("api_key").ok_or_else(|| missing("API key"))?.clone()),
        Auth::OAuth => {
            return Err(Unusable {
                detail: "OAuth client credentials are exchanged for a token, not handed out".into(),
                advice: "ask the token endpoint of connvault for a token (the broker mints one)".into(),
            })
        }
    };
    Ok(credential.with_base_url(s.service_root))
}

fn test<'a>(out: &'a Outbound, settings: &'a Map<String, Value>, secrets: &'a Secrets) -> TestFuture<'a> {
    Box::pin(async move {
        let s = Settings::from_map(settings);
        match credential(settings, secrets) {
            Ok(credential) => client::check_service(out, &s, &credential).await.unwrap_or_else(|r| r.result),
            Err(u) => super::TestResult::failed(u.detail, u.advice),
        }
    })
}

fn not_ready(settings: &Map<String, Value>) -> Option<(String, String)> {
    let s = Settings::from_map(settings);
    let missing: Vec<&str> = [("token URL", &s.token_url), ("client ID", &s.client_id)].into_iter().filter(|(_, v)| v.is_empty()).map(|(n, _)| n).collect();
    (!missing.is_empty()).then(|| {
        let names = missing.join(" and ");
        (format!("no {names} yet"), format!("fill in the {names} from the OAuth client's service key (url + /oauth/token, clientid)"))
    })
}

fn exchange<'a>(out: &'a Outbound, settings: &'a Map<String, Value>, secrets: &'a Secrets, _: Option<Key<'a>>) -> MintFuture<'a> {
    Box::pin(async move { client::exchange(out, &Settings::from_map(settings), secrets.get(CLIENT_SECRET)).await })
}

/// `$metadata` with the new token, as the static modes' test does.
fn verify<'a>(out: &'a Outbound, settings: &'a Map<String, Value>, minted: &'a Minted) -> VerifyFuture<'a> {
    Box::pin(async move {
        let s = Settings::from_map(settings);
        let credential = Credential::bearer(minted.access_token.clone());
        let result = client::check_service(out, &s, &credential).await?;
        let summary = match result.advice {
            Some(advice) => format!("{}; {advice}", result.detail),
            None => result.detail,
        };
        Ok(Identity { username: Some(format!("OAuth client {}", s.client_id)), summary, ..Identity::default() })
    })
}

fn session<'a>(out: &'a Outbound, settings: &'a Map<String, Value>, credential: &'a Credential) -> SessionFuture<'a> {
    Box::pin(async move { client::fetch_session(out, &Settings::from_map(settings), credential).await })
}

/// Whether `url` is a local stand-in's address (`localhost` or `127.0.0.1`, as the schema
/// spells it), where plain http:// and no host name are allowed.
fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
        _ => false,
    }
}

fn check(settings: &Map<String, Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let text = |name: &str| settings.get(name).and_then(Value::as_str);
    for field in ["service_url", "token_url"] {
        let Some(raw) = text(field) else { continue };
        let Ok(url) = url::Url::parse(raw) else { continue };
        let what = if field == "service_url" { "the service root" } else { "the token URL" };
        if raw != raw.trim() {
            errors.push(FieldError::new(format!("settings.{field}"), format!("give {what} without spaces around it")));
        } else if url.query().is_some() || url.fragment().is_some() || raw.contains('?') || raw.contains('#') {
            let added = if field == "service_url" { "; connvault adds $metadata and sap-client itself" } else { "" };
            errors.push(FieldError::new(format!("settings.{field}"), format!("give {what} without a query (?…) or fragment (#…){added}")));
        } else if url.scheme() != "https" && !is_loopback(&url) {
            errors.push(FieldError::new(format!("settings.{field}"), format!("{what} must start with https://: the credential would travel unencrypted")));
        } else if !matches!(url.host(), Some(url::Host::Domain(_))) && !is_loopback(&url) {
            errors.push(FieldError::new(format!("settings.{field}"), format!("give {what} with the system's host name, not an IP address")));
        } else if field == "service_url" {
            let path = url.path().trim_end_matches('/');
            if path.is_empty() {
                errors.push(FieldError::new(
                    "settings.service_url",
                    "give the service root with its path, e.g. https://host/sap/opu/odata/sap/API_BUSINESS_PARTNER/ (the path names the service)",
                ));
            } else if path.ends_with("$metadata") {
                errors.push(FieldError::new("settings.service_url", "give the service root without $metadata (connvault adds it)"));
            }
        }
    }
    if let Some(c) = text("sap_client") {
        if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_digit()) {
            errors.push(FieldError::new("settings.sap_client", "the SAP client is three digits, e.g. 100 (the client you log on to); leave it out for the default"));
        }
    }
    if text("username").is_some_and(|u| u.contains(':')) {
        errors.push(FieldError::new("settings.username", "a user name for basic authentication cannot contain a colon (:)"));
    }
    errors
}

/// The settings' schemas (see [`ProviderDef::schema`]): what `check_value`, `check_url` and
/// `check` accept.
fn schema() -> Value {
    use super::patterns::{any_case, CONTROL, PORT, WS};
    let label = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
    let host = format!("(?:{label}\\.)*[A-Za-z](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?");
    let https = any_case("https");
    let loopback = format!("(?:{}|{https})://(?:{}|127\\.0\\.0\\.1)(?::{PORT})?", any_case("http"), any_case("localhost"));
    let origin = format!("(?:{https}://{host}\\.?(?::{PORT})?|{loopback})");
    let path = format!("[^?#{WS}{CONTROL}]");
    let text = format!("^[^:{CONTROL}]*[^:{WS}{CONTROL}][^:{CONTROL}]*$");
    json!({
        "service_url": {
            "type": "string",
            "maxLength": super::MAX_SETTING_LEN,
            "pattern": format!("^{origin}/+[^/?#{WS}{CONTROL}]{path}*$"),
            "not": {"pattern": "\\$metadata/*$"},
            "description": "The service root, e.g. https://host/sap/opu/odata/sap/API_BUSINESS_PARTNER/: https:// (http:// only for a local stand-in on 127.0.0.1 or localhost), a host name, a path, no query, fragment or $metadata"
        },
        "sap_client": {"type": "string", "pattern": "^[0-9]{3}$", "description": "The SAP client, three digits (e.g. 100)"},
        "auth": {
            "type": "string",
            "enum": AUTH,
            "description": "basic: username and password; api_key: the APIKey header; oauth_client_credentials: token_url, client_id and client_secret"
        },
        "username": {"type": "string", "maxLength": super::MAX_SETTING_LEN, "pattern": text, "description": "For basic authentication (only then); no colon"},
        "token_url": {
            "type": "string",
            "maxLength": super::MAX_SETTING_LEN,
            "pattern": format!("^{origin}(?:/{path}*)?$"),
            "description": "For oauth_client_credentials (only then): the token endpoint, https:// with a host name, no query or fragment"
        },
        "client_id": {
            "type": "string",
            "maxLength": super::MAX_SETTING_LEN,
            "pattern": format!("^[^{CONTROL}]*[^{WS}{CONTROL}][^{CONTROL}]*$"),
            "description": "For oauth_client_credentials (only then)"
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn validate(settings: Value, secrets: &[&str]) -> Vec<String> {
        let settings = settings.as_object().unwrap().clone();
        let secrets: BTreeSet<String> = secrets.iter().map(|s| s.to_string()).collect();
        SAP_ODATA.validate(&settings, &secrets).into_iter().map(|e| format!("{}: {}", e.field, e.message)).collect()
    }

    const ROOT: &str = "https://my300000-api.s4hana.ondemand.com/sap/opu/odata/sap/API_BUSINESS_PARTNER/";

    #[test]
    fn valid_configurations() {
        assert_eq!(validate(json!({"service_url": ROOT, "auth": "basic", "username": "CC_USER", "sap_client": "100"}), &["password"]), Vec::<String>::new());
        assert_eq!(validate(json!({"service_url": "https://sandbox.api.sap.com/s4hanacloud/sap/opu/odata/sap/API_BUSINESS_PARTNER", "auth": "api_key"}), &["api_key"]), Vec::<String>::new());
        let oauth = json!({"service_url": ROOT, "auth": "oauth_client_credentials", "token_url": "https://acme.authentication.eu10.hana.ondemand.com/oauth/token", "client_id": "sb-x!b1|it!b2"});
        assert_eq!(validate(oauth, &["client_secret"]), Vec::<String>::new());
        assert!(validate(json!({"service_url": "http://127.0.0.1:9/sap/opu/odata/sap/X/", "auth": "api_key"}), &["api_key"]).is_empty());
        assert!(validate(json!({"service_url": "http://LocalHost:9/sap/opu/odata/sap/X/", "auth": "api_key"}), &["api_key"]).is_empty());
        assert!(!validate(json!({"service_url": "http://127.0.0.2:9/sap/opu/odata/sap/X/", "auth": "api_key"}), &["api_key"]).is_empty());
    }

    #[test]
    fn the_secret_may_come_later_from_the_admin() {
        let settings = json!({"service_url": ROOT, "auth": "basic", "username": "u"});
        assert!(SAP_ODATA.validate(settings.as_object().unwrap(), &Default::default()).is_empty());
        assert_eq!(SAP_ODATA.typed_secrets(settings.as_object().unwrap()).iter().map(|f| f.name).collect::<Vec<_>>(), ["password"]);
    }

    #[test]
    fn each_mistake_names_its_field() {
        let cases: Vec<(Value, &[&str], &str)> = vec![
            (json!({"auth": "basic", "username": "u"}), &["password"], "settings.service_url: Service URL is required"),
            (json!({"service_url": format!("{ROOT}?sap-client=100"), "auth": "api_key"}), &["api_key"], "settings.service_url: give the service root without a query"),
            (json!({"service_url": format!("{ROOT}#x"), "auth": "api_key"}), &["api_key"], "settings.service_url: give the service root without a query"),
            (json!({"service_url": format!("{ROOT}$metadata"), "auth": "api_key"}), &["api_key"], "settings.service_url: give the service root without $metadata"),
            (json!({"service_url": "https://host.example.com/", "auth": "api_key"}), &["api_key"], "settings.service_url: give the service root with its path"),
            (json!({"service_url": "http://host.example.com/sap/opu/odata/sap/X/", "auth": "api_key"}), &["api_key"], "settings.service_url: the service root must start with https://"),
            (json!({"service_url": "https://203.0.113.9/sap/opu/odata/sap/X/", "auth": "api_key"}), &["api_key"], "settings.service_url: give the service root with the system's host name"),
            (json!({"service_url": ROOT, "auth": "api_key", "sap_client": "10"}), &["api_key"], "settings.sap_client: the SAP client is three digits"),
            (json!({"service_url": ROOT, "auth": "api_key", "sap_client": "1a0"}), &["api_key"], "settings.sap_client: the SAP client is three digits"),
            (json!({"service_url": ROOT, "auth": "saml"}), &[], "settings.auth: Authentication must be one of: basic, api_key, oauth_client_credentials"),
            (json!({"service_url": ROOT}), &[], "settings.auth: Authentication is required"),
            (json!({"service_url": ROOT, "auth": "basic"}), &["password"], "settings.username: User name is required when auth is basic"),
            (json!({"service_url": ROOT, "auth": "basic", "username": "a:b"}), &["password"], "settings.username: a user name for basic authentication cannot contain a colon"),
            (json!({"service_url": ROOT, "auth": "api_key"}), &["password"], "secrets.password: password only applies when auth is basic"),
            (json!({"service_url": ROOT, "auth": "oauth_client_credentials", "client_id": "c"}), &["client_secret"], "settings.token_url: Token URL is required"),
            (
                json!({"service_url": ROOT, "auth": "oauth_client_credentials", "token_url": "http://login.example.com/oauth/token", "client_id": "c"}),
                &["client_secret"],
                "settings.token_url: the token URL must start with https://",
            ),
            (json!({"service_url": ROOT, "auth": "api_key", "client_id": "c"}), &["api_key"], "settings.client_id: client_id only applies when auth is oauth_client_credentials"),
        ];
        for (settings, secrets, expected) in cases {
            let errors = validate(settings.clone(), secrets);
            assert!(errors.iter().any(|e| e.starts_with(expected)), "{settings} {secrets:?}: expected {expected:?}, got {errors:?}");
        }
    }

    #[test]
    fn settings_read_the_service_root_with_one_trailing_slash() {
        let s = Settings::from_map(json!({"service_url": "https://h.example.com/sap/opu/odata/sap/API_BUSINESS_PARTNER//", "auth": "api_key"}).as_object().unwrap());
        assert_eq!(s.service_root, "https://h.example.com/sap/opu/odata/sap/API_BUSINESS_PARTNER/");
        assert_eq!((s.service_name(), s.auth, s.sap_client), ("API_BUSINESS_PARTNER".to_string(), Auth::ApiKey, None));
        let v4 = Settings::from_map(json!({"service_url": "https://h.example.com/sap/opu/odata4/sap/api_business_partner/srvd_a2x/sap/businesspartner/0001"}).as_object().unwrap());
        assert_eq!(v4.service_name(), "businesspartner 0001");
        assert_eq!(auth_mode(json!({"auth": "oauth_client_credentials"}).as_object().unwrap()), AuthMode::ClientSecret);
        assert_eq!(auth_mode(json!({"auth": "basic"}).as_object().unwrap()), AuthMode::Static);
    }

    #[test]
    fn the_static_credential_is_basic_or_the_api_key_header() {
        let mut secrets = Secrets::new();
        secrets.insert("password".into(), crate::secret::SecretString::new("pw".into()));
        secrets.insert("api_key".into(), crate::secret::SecretString::new("k".into()));
        let basic = credential(json!({"service_url": ROOT, "auth": "basic", "username": "CC"}).as_object().unwrap(), &secrets).unwrap();
        assert_eq!((basic.token_type(), basic.base_url.as_deref()), ("Basic", Some(ROOT)));
        let key = credential(json!({"service_url": ROOT, "auth": "api_key"}).as_object().unwrap(), &secrets).unwrap();
        assert_eq!((key.header_name(), key.value.expose_secret()), (Some("APIKey"), "k"));
        assert!(credential(json!({"service_url": ROOT, "auth": "oauth_client_credentials"}).as_object().unwrap(), &secrets).is_err());
        let none = credential(json!({"service_url": ROOT, "auth": "basic", "username": "CC"}).as_object().unwrap(), &Secrets::new()).unwrap_err();
        assert!(none.detail.contains("password"), "{none:?}");
    }

    #[test]
    fn readiness_names_what_is_missing() {
        assert_eq!(not_ready(json!({"auth": OAUTH}).as_object().unwrap()).unwrap().0, "no token URL and client ID yet");
        assert_eq!(not_ready(json!({"auth": OAUTH, "token_url": "https://x.example.com/oauth/token", "client_id": "c"}).as_object().unwrap()), None);
    }
}
