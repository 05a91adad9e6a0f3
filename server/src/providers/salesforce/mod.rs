//! The `salesforce` provider: a connected app used through the OAuth 2.0 JWT-bearer flow. People
//! type only non-secret settings; the private key is generated (or uploaded) through
//! `/certificate` and kept by connvault, as is the session token the flow produces. The
//! certificate lifecycle, the admin request and the mint run in `crate::signing` on what this
//! module declares: the exchange (`client`), userinfo, the admin's email (`request`).

pub mod client;
pub mod jwt;
pub mod web;
pub mod request;
pub mod standin;

use serde_json::{json, Map, Value};

use super::{AdminHelp, AuthMode, FieldKind, FieldSpec, FormHints, Identity, Key, MintFuture, Minted, Minting, Presets, ProviderDef, Refusal, Secrets, VerifyFuture};
use crate::error::FieldError;
use crate::outbound::Outbound;

pub const PRODUCTION: &str = "https://login.salesforce.com";
pub const SANDBOX: &str = "https://test.salesforce.com";
pub const DEFAULT_SESSION_MINUTES: i64 = 120;
/// Salesforce's own session timeouts range from 15 minutes to 24 hours; a shorter "stale" time
/// than 5 minutes would mint on nearly every call.
pub const SESSION_MINUTES: std::ops::RangeInclusive<i64> = 5..=1440;

/// The managed secret holding the private key (PKCS#8 PEM) of the certificate in use.
pub const PRIVATE_KEY: &str = "private_key";
/// The key of a rotated certificate that has not worked yet.
pub const PENDING_PRIVATE_KEY: &str = "pending_private_key";
/// The latest session token (a cache; dropped when a setting changes).
pub const ACCESS_TOKEN: &str = "access_token";
/// The refresh token of the web server flow (kept sealed; never a form field).
pub const REFRESH_TOKEN: &str = "refresh_token";
/// What the web server flow asks for: the REST API, and a refresh token that lasts.
pub const WEB_SERVER_SCOPES: [&str; 3] = ["api", "refresh_token", "offline_access"];

/// Which flow a connection's settings choose (`auth`; the JWT bearer flow when left out).
fn web_server(settings: &Map<String, Value>) -> bool {
    settings.get("auth").and_then(Value::as_str) == Some("web_server")
}

pub static SALESFORCE: ProviderDef = ProviderDef {
    id: "salesforce",
    label: "Salesforce",
    auth_modes: &[AuthMode::JwtBearer, AuthMode::AuthorizationCode],
    auth_mode: |settings| if web_server(settings) { AuthMode::AuthorizationCode } else { AuthMode::JwtBearer },
    fields: &[
        FieldSpec {
            name: "auth",
            label: "Flow",
            help: "jwt_bearer: connvault signs in as the integration user with a certificate (an admin registers it); web_server: someone signs in \
                   to Salesforce in the browser (Connect with Salesforce) and connvault keeps the refresh token",
            kind: FieldKind::Choice,
            choices: &["jwt_bearer", "web_server"],
            secret: false,
            when: None,
            required: false,
        },
        FieldSpec {
            name: "login_url",
            label: "Login URL",
            help: "https://login.salesforce.com (production), https://test.salesforce.com (sandbox), or your My Domain URL",
            kind: FieldKind::Url,
            choices: &[],
            secret: false,
            when: None,
            required: true,
        },
        FieldSpec {
            name: "username",
            label: "Integration username",
            help: "The Salesforce user the app acts as, e.g. integration@acme.com (sandboxes add a suffix: integration@acme.com.qa); with web_server, the user who signs in",
            kind: FieldKind::Text,
            choices: &[],
            secret: false,
            when: None,
            required: true,
        },
        FieldSpec {
            name: "consumer_key",
            label: "Consumer key",
            help: "From the connected app in Salesforce; the admin can also send it through the request link",
            kind: FieldKind::Text,
            choices: &[],
            secret: false,
            when: None,
            required: false,
        },
        FieldSpec {
            name: "consumer_secret",
            label: "Consumer secret",
            help: "From the connected app (App Manager → the app → View → Manage Consumer Details); only for the web_server flow",
            kind: FieldKind::Text,
            choices: &[],
            secret: true,
            when: Some(("auth", &["web_server"])),
            required: true,
        },
        FieldSpec {
            name: "admin_email",
            label: "Salesforce admin's email",
            help: "Who receives the request to create the connected app",
            kind: FieldKind::Email,
            choices: &[],
            secret: false,
            when: None,
            required: false,
        },
        FieldSpec {
            name: "audience",
            label: "Audience (advanced)",
            help: "The aud claim; leave empty to derive it from the login URL",
            kind: FieldKind::Url,
            choices: &[],
            secret: false,
            when: None,
            required: false,
        },
        FieldSpec {
            name: "session_lifetime_minutes",
            label: "Session lifetime in minutes (advanced)",
            help: "The org's session timeout; a token older than this (less a safety margin) is replaced. Default 120",
            kind: FieldKind::Integer,
            choices: &[],
            secret: false,
            when: None,
            required: false,
        },
    ],
    check,
    test: None,
    managed_secrets: &[PRIVATE_KEY, PENDING_PRIVATE_KEY, ACCESS_TOKEN, REFRESH_TOKEN],
    cached_secrets: &[ACCESS_TOKEN],
    destination_settings: &["login_url", "audience"],
    // The org, its user, its connected app and its admin; only the session lifetime is shared.
    environment_settings: &["login_url", "username", "consumer_key", "admin_email", "audience"],
    schema,
    minting: Some(&MINTING),
    credential: None,
    admin_help: Some(&ADMIN_HELP),
    credential_help: None,
    details: None,
    authorization: Some(&web::AUTHORIZATION),
    session: None,
    secret_expiry: None,
    form: FormHints {
        presets: &[Presets {
            field: "login_url",
            values: &[("Production", "https://login.salesforce.com"), ("Sandbox", "https://test.salesforce.com")],
            other: "My Domain or another URL…",
        }],
        advanced: &["audience", "session_lifetime_minutes"],
    },
};

static MINTING: Minting = Minting {
    not_ready,
    exchange,
    verify,
    default_lifetime: |settings| chrono::Duration::minutes(Settings::from_map(settings).session_lifetime_minutes),
    key_field: PRIVATE_KEY,
    pending_key_field: PENDING_PRIVATE_KEY,
    token_field: ACCESS_TOKEN,
};

static ADMIN_HELP: AdminHelp = AdminHelp {
    admin: "Salesforce admin",
    answer_fields: &["consumer_key"],
    answered_state: "consumer_key_received",
    email: request::email,
    link_facts: |settings| {
        let s = Settings::from_map(settings);
        vec![("Integration user", s.username), ("Login URL", s.login_url)]
    },
};

fn not_ready(settings: &Map<String, Value>) -> Option<(String, String)> {
    Settings::from_map(settings).consumer_key.is_none().then(|| {
        (
            "no consumer key yet".to_string(),
            "paste the connected app's Consumer Key into this connection, or wait for the Salesforce admin to send it through the request link".to_string(),
        )
    })
}

fn refusal(failure: client::Failure, settings: &Settings) -> Refusal {
    Refusal { transient: failure.is_transient(), result: failure.explain(settings) }
}

/// One JWT-bearer exchange: an RS256 assertion for the integration user, signed with `key`;
/// with the web server flow, a refresh (`web::refresh`).
fn exchange<'a>(out: &'a Outbound, settings: &'a Map<String, Value>, secrets: &'a Secrets, key: Option<Key<'a>>) -> MintFuture<'a> {
    if web_server(settings) {
        return web::refresh(out, settings, secrets);
    }
    Box::pin(async move {
        let s = Settings::from_map(settings);
        let Some(key) = key else { return Err(refusal(client::Failure::Unexpected("no key to sign with".into()), &s)) };
        let consumer_key = s.consumer_key.clone().unwrap_or_default();
        let claims = jwt::Claims::new(&consumer_key, &s.username, &s.audience, chrono::Utc::now().timestamp());
        let assertion = key.signer.assertion(&claims).map_err(|e| refusal(client::Failure::Unexpected(e.public_message()), &s))?;
        match client::request_token(out, &s.login_url, &assertion).await {
            Ok(session) => Ok(Minted {
                access_token: session.access_token,
                token_type: "Bearer".into(),
                instance_url: session.instance_url,
                expires_in: None,
                scope: None,
                org_id: session.org_id,
                user_id: session.user_id,
                refresh_token: None,
            }),
            Err(f) => Err(refusal(f, &s)),
        }
    })
}

/// userinfo with the new token: whom the session acts as.
fn verify<'a>(out: &'a Outbound, settings: &'a Map<String, Value>, minted: &'a Minted) -> VerifyFuture<'a> {
    Box::pin(async move {
        let s = Settings::from_map(settings);
        match client::userinfo(out, &minted.instance_url, &minted.access_token).await {
            Ok(info) if web_server(settings) && !info.preferred_username.eq_ignore_ascii_case(&s.username) => Err(Refusal {
                transient: false,
                result: crate::providers::TestResult::failed(
                    format!("signed in to Salesforce as {}, but this connection is for {}", info.preferred_username, s.username),
                    format!(
                        "sign in as {} (sign out of Salesforce first, or use a private window), or change the Integration username to {} and connect again",
                        s.username, info.preferred_username
                    ),
                ),
            }),
            Ok(info) => Ok(Identity {
                summary: format!("connected to org {} as {} ({})", info.organization_id, info.preferred_username, minted.instance_url),
                org_id: Some(info.organization_id),
                user_id: Some(info.user_id),
                username: Some(info.preferred_username),
            }),
            Err(f) => Err(refusal(f, &s)),
        }
    })
}


/// The hosts whose token endpoint is Salesforce's own: the issuer that accepts an assertion
/// signed with the connection's key. Production and sandbox logins, My Domain (with its
/// sandbox, developer and scratch forms, all under `.my.salesforce.com`), and Experience Cloud
/// sites on Salesforce's domains (`.my.site.com`, and the older `.force.com`). An Experience
/// Cloud site on a custom domain cannot be told from any other host and is refused; use the
/// site's `.my.site.com` address.
pub fn is_salesforce_host(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let under = |suffix: &str| host.len() > suffix.len() && host.ends_with(suffix) && !host[..host.len() - suffix.len()].ends_with('.');
    host == "login.salesforce.com" || host == "test.salesforce.com" || under(".my.salesforce.com") || under(".my.site.com") || under(".force.com")
}

/// The settings' schemas (see [`ProviderDef::schema`]): what `check_value` and `check` accept.
fn schema() -> Value {
    use super::patterns::{email, CONTROL, WS};
    let login = || {
        json!({
            "type": "string",
            "maxLength": super::MAX_SETTING_LEN,
            "pattern": login_url_pattern(),
            "description": "Only the address, without a path: https://login.salesforce.com, https://test.salesforce.com or a My Domain (http:// only for a local stand-in on 127.0.0.1 or localhost)"
        })
    };
    let mut admin_email = email("");
    admin_email["description"] =
        json!("An email address such as admin@acme.com: ASCII, the part before @ at most 64 characters, the domain (two or more labels) at most 254");
    json!({
        "auth": {"type": "string", "enum": ["jwt_bearer", "web_server"], "default": "jwt_bearer"},
        "login_url": login(),
        "username": {
            "type": "string",
            "maxLength": super::MAX_SETTING_LEN,
            "pattern": format!("^[^@{WS}{CONTROL}]+@[^{WS}{CONTROL}]*\\.[^{WS}{CONTROL}]*$"),
            "description": "The integration user, e.g. integration@acme.com"
        },
        "consumer_key": {
            "type": "string",
            "maxLength": 256,
            "pattern": format!("^[^{WS}{CONTROL}]+$"),
            "description": "As the connected app shows it; usually filled in by the admin through the request link"
        },
        "admin_email": admin_email,
        "audience": login(),
        "session_lifetime_minutes": {
            "type": "integer",
            "minimum": SESSION_MINUTES.start(),
            "maximum": SESSION_MINUTES.end(),
            "default": DEFAULT_SESSION_MINUTES
        }
    })
}

/// A Salesforce login URL or audience as `check` accepts it: https to a Salesforce login host
/// (`is_salesforce_host`), or http(s) to a local stand-in on loopback; no path.
pub fn login_url_pattern() -> String {
    use super::patterns::{any_case, PORT};
    // `is_salesforce_host`, spelled as a pattern (host names in any case, dots literal).
    let word = |w: &str| any_case(w).replace('.', "\\.");
    let salesforce = format!(
        "(?:{}|{}|(?:[A-Za-z0-9-]{{1,63}}\\.)+(?:{}|{}|{}))",
        word("login.salesforce.com"),
        word("test.salesforce.com"),
        word("my.salesforce.com"),
        word("my.site.com"),
        word("force.com")
    );
    format!("^(?:{}://{salesforce}|(?:{}|{})://(?:localhost|127\\.0\\.0\\.1))(?::{PORT})?/*$", any_case("https"), any_case("https"), any_case("http"))
}

fn check(settings: &Map<String, Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let text = |name: &str| settings.get(name).and_then(Value::as_str);
    for name in ["login_url", "audience"] {
        let Some(value) = text(name) else { continue };
        if let Ok(url) = url::Url::parse(value) {
            if url.scheme() != "https" && !is_loopback_host(&url) {
                errors.push(FieldError::new(
                    format!("settings.{name}"),
                    "Salesforce is reached over https:// only (http:// is accepted for a local stand-in on 127.0.0.1)",
                ));
            } else if url.query().is_some() || url.fragment().is_some() || !url.path().trim_end_matches('/').is_empty() {
                errors.push(FieldError::new(
                    format!("settings.{name}"),
                    format!("give only the address, without a path, e.g. {} (connvault adds /services/oauth2/token)", url.origin().ascii_serialization()),
                ));
            } else if !is_loopback_host(&url) && !url.host_str().is_some_and(is_salesforce_host) {
                errors.push(FieldError::new(
                    format!("settings.{name}"),
                    format!(
                        "{} is not a Salesforce login host: use https://login.salesforce.com, https://test.salesforce.com, your My Domain \
                         (https://NAME.my.salesforce.com, https://NAME--SANDBOX.sandbox.my.salesforce.com) or an Experience Cloud site on \
                         .my.site.com; the connection's signed assertions go nowhere else",
                        url.host_str().unwrap_or_default()
                    ),
                ));
            }
        }
    }
    if let Some(user) = text("username") {
        let ok = user.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.')) && !user.chars().any(char::is_whitespace);
        if !ok {
            errors.push(FieldError::new("settings.username", "a Salesforce username looks like an email address, e.g. integration@acme.com"));
        }
    }
    if let Some(key) = text("consumer_key") {
        if key.chars().any(|c| c.is_whitespace()) || key.chars().count() > 256 {
            errors.push(FieldError::new("settings.consumer_key", "paste the consumer key exactly as Salesforce shows it: one word, no spaces"));
        }
    }
    if let Some(minutes) = settings.get("session_lifetime_minutes").and_then(Value::as_i64) {
        if !SESSION_MINUTES.contains(&minutes) {
            errors.push(FieldError::new(
                "settings.session_lifetime_minutes",
                format!("choose between {} and {} minutes (Salesforce's session timeout setting)", SESSION_MINUTES.start(), SESSION_MINUTES.end()),
            ));
        }
    }
    errors
}

fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// The settings of a Salesforce connection, read once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Where the token endpoint lives, without a trailing slash.
    pub login_url: String,
    pub username: String,
    pub consumer_key: Option<String>,
    pub admin_email: Option<String>,
    pub audience: String,
    pub session_lifetime_minutes: i64,
}

impl Settings {
    pub fn from_map(settings: &Map<String, Value>) -> Settings {
        let text = |name: &str| settings.get(name).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
        let login_url = text("login_url").unwrap_or_else(|| PRODUCTION.to_string()).trim_end_matches('/').to_string();
        let audience = text("audience").map(|a| a.trim_end_matches('/').to_string()).unwrap_or_else(|| default_audience(&login_url));
        Settings {
            username: text("username").unwrap_or_default(),
            consumer_key: text("consumer_key"),
            admin_email: text("admin_email"),
            session_lifetime_minutes: settings.get("session_lifetime_minutes").and_then(Value::as_i64).unwrap_or(DEFAULT_SESSION_MINUTES),
            login_url,
            audience,
        }
    }
}

/// The `aud` claim Salesforce expects for a login URL: production and My Domain logins use
/// login.salesforce.com, sandboxes (test.salesforce.com or a `.sandbox.my.salesforce.com` My
/// Domain) use test.salesforce.com, and any other site (an Experience Cloud site, a local
/// stand-in) is its own audience.
pub fn default_audience(login_url: &str) -> String {
    let host = url::Url::parse(login_url).ok().and_then(|u| u.host_str().map(str::to_ascii_lowercase)).unwrap_or_default();
    if host == "test.salesforce.com" || host.ends_with(".sandbox.my.salesforce.com") || host.contains("--") && host.ends_with(".my.salesforce.com") {
        SANDBOX.to_string()
    } else if host == "login.salesforce.com" || host.ends_with(".my.salesforce.com") {
        PRODUCTION.to_string()
    } else {
        login_url.trim_end_matches('/').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn audience_follows_the_login_type() {
        assert_eq!(default_audience("https://login.salesforce.com"), PRODUCTION);
        assert_eq!(default_audience("https://test.salesforce.com/"), SANDBOX);
        assert_eq!(default_audience("https://acme.my.salesforce.com"), PRODUCTION);
        assert_eq!(default_audience("https://acme--qa.sandbox.my.salesforce.com"), SANDBOX);
        assert_eq!(default_audience("https://acme.force.com"), "https://acme.force.com");
        assert_eq!(default_audience("http://127.0.0.1:9999"), "http://127.0.0.1:9999");
    }

    #[test]
    fn settings_are_checked_with_reasons() {
        let errors = |v: Value| check(v.as_object().unwrap()).into_iter().map(|e| e.field).collect::<Vec<_>>();
        assert!(errors(json!({"login_url": "https://login.salesforce.com", "username": "a+b@acme.com"})).is_empty());
        assert_eq!(errors(json!({"login_url": "http://login.salesforce.com"})), ["settings.login_url"]);
        assert!(errors(json!({"login_url": "http://127.0.0.1:8080"})).is_empty());
        assert_eq!(errors(json!({"login_url": "https://login.salesforce.com/services/oauth2/token"})), ["settings.login_url"]);
        assert_eq!(errors(json!({"username": "integration"})), ["settings.username"]);
        assert_eq!(errors(json!({"consumer_key": "3MVG9 abc"})), ["settings.consumer_key"]);
        assert_eq!(errors(json!({"session_lifetime_minutes": 2})), ["settings.session_lifetime_minutes"]);
        // Only Salesforce's own hosts (and a local stand-in) receive assertions.
        for ok in ["https://acme.my.salesforce.com", "https://acme--qa.sandbox.my.salesforce.com", "https://acme.my.site.com", "https://test.salesforce.com"] {
            assert!(errors(json!({"login_url": ok, "audience": ok})).is_empty(), "{ok}");
        }
        for bad in ["https://evil.example.com", "https://my.salesforce.com", "https://login.salesforce.com.evil.io", "https://evilmy.salesforce.com"] {
            assert_eq!(errors(json!({"login_url": bad})), ["settings.login_url"], "{bad}");
            assert_eq!(errors(json!({"audience": bad})), ["settings.audience"], "{bad}");
        }
    }

    #[test]
    fn login_url_and_audience_are_destinations() {
        let old = json!({"login_url": "https://login.salesforce.com", "username": "u@x.io"});
        let same = json!({"login_url": "HTTPS://Login.Salesforce.com/", "username": "other@x.io"});
        let moved = json!({"login_url": "https://acme.my.salesforce.com", "username": "u@x.io", "audience": "https://login.salesforce.com"});
        assert!(SALESFORCE.destination_changes(old.as_object().unwrap(), same.as_object().unwrap()).is_empty());
        assert_eq!(SALESFORCE.destination_changes(old.as_object().unwrap(), moved.as_object().unwrap()), ["login_url", "audience"]);
    }

    #[test]
    fn settings_have_defaults() {
        let s = Settings::from_map(json!({"login_url": "https://test.salesforce.com/", "username": "u@x.io"}).as_object().unwrap());
        assert_eq!(s.login_url, SANDBOX);
        assert_eq!(s.audience, SANDBOX);
        assert_eq!(s.session_lifetime_minutes, 120);
        assert_eq!(s.consumer_key, None);
    }
}
