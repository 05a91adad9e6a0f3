//! The generic `http` provider: a base URL plus a bearer token, basic auth, or an API key
//! sent in a header of the caller's choosing.

use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};

use super::{AuthMode, CredentialHelp, FieldKind, FieldSpec, FormHints, ProviderDef, Secrets, TestFuture, TestResult};
use crate::credential::{Credential, Unusable};
use crate::error::FieldError;
use crate::outbound::{self, Outbound, OutboundResponse};

const AUTH: &[&str] = &["bearer", "basic", "header"];

pub static HTTP: ProviderDef = ProviderDef {
    id: "http",
    label: "Generic HTTP",
    auth_modes: &[AuthMode::Static],
    auth_mode: |_| AuthMode::Static,
    fields: &[
        FieldSpec {
            name: "base_url",
            label: "Base URL",
            help: "Where the API lives, e.g. https://api.example.com/v2",
            kind: FieldKind::Url,
            choices: &[],
            secret: false,
            when: None,
            required: true,
        },
        FieldSpec {
            name: "auth",
            label: "Authentication",
            help: "bearer: Authorization: Bearer TOKEN; basic: user name and password; header: TOKEN in a header you name",
            kind: FieldKind::Choice,
            choices: AUTH,
            secret: false,
            when: None,
            required: true,
        },
        FieldSpec {
            name: "username",
            label: "User name",
            help: "For basic authentication",
            kind: FieldKind::Text,
            choices: &[],
            secret: false,
            when: Some(("auth", &["basic"])),
            required: true,
        },
        FieldSpec {
            name: "header_name",
            label: "Header name",
            help: "The header that carries the key, e.g. X-API-Key",
            kind: FieldKind::Text,
            choices: &[],
            secret: false,
            when: Some(("auth", &["header"])),
            required: true,
        },
        FieldSpec {
            name: "token",
            label: "Token",
            help: "The bearer token or API key",
            kind: FieldKind::Text,
            choices: &[],
            secret: true,
            when: Some(("auth", &["bearer", "header"])),
            // Not needed to save the connection: its admin may enter it (Request credentials).
            required: false,
        },
        FieldSpec {
            name: "password",
            label: "Password",
            help: "For basic authentication",
            kind: FieldKind::Text,
            choices: &[],
            secret: true,
            when: Some(("auth", &["basic"])),
            required: false,
        },
    ],
    check,
    test: Some(test),
    managed_secrets: &[],
    cached_secrets: &[],
    destination_settings: &["base_url"],
    // The API's shape (the auth scheme, the header's name) is shared; where it is and who logs on are not.
    environment_settings: &["base_url", "username"],
    schema,
    minting: None,
    credential: Some(credential),
    admin_help: None,
    credential_help: Some(&CREDENTIAL_HELP),
    details: None,
    authorization: None,
    session: None,
    secret_expiry: None,
    form: FormHints::NONE,
};

/// Asking the API's admin for the credential: what to create for this base URL and scheme.
static CREDENTIAL_HELP: CredentialHelp = CredentialHelp { admin: "API's admin", owned_settings: &["username"], steps: credential_steps };

fn credential_steps(settings: &Map<String, Value>) -> Vec<String> {
    let setting = |name: &str| settings.get(name).and_then(Value::as_str).unwrap_or_default();
    let base = setting("base_url");
    let what = match setting("auth") {
        "basic" => format!("a user for connvault (enter its user name here, or keep {:?}) and its password", setting("username")),
        "header" => format!("an API key that the API accepts in the {} header", setting("header_name")),
        _ => "an API token (sent as Authorization: Bearer TOKEN)".to_string(),
    };
    vec![
        format!("Create {what} for the API at {base}, with only the access the integration needs."),
        "Enter it on the page this link opens: connvault seals it at once and tests it against the API, and the developer never sees it.".into(),
    ]
}

/// The settings' schemas (see [`ProviderDef::schema`]): what `check_value`, `check_url` and
/// `check` accept.
fn schema() -> Value {
    use super::patterns::{any_case, CONTROL, HOST, PORT, WS};
    let reserved: Vec<String> = RESERVED_HEADERS.iter().map(|h| any_case(h)).collect();
    json!({
        "base_url": {
            "type": "string",
            "maxLength": super::MAX_SETTING_LEN,
            "pattern": format!("^{}://{HOST}(?::{PORT})?(?:/[^?#{WS}{CONTROL}]*)?$", any_case("http") + "[Ss]?"),
            "description": "An absolute http(s) URL without user name, password, query or fragment, e.g. https://api.example.com/v2"
        },
        "auth": {
            "type": "string",
            "enum": AUTH,
            "description": "bearer: Authorization: Bearer TOKEN; basic: user name and password; header: TOKEN in a header you name"
        },
        "username": {
            "type": "string",
            "maxLength": super::MAX_SETTING_LEN,
            "pattern": format!("^[^{CONTROL}]*[^{WS}{CONTROL}][^{CONTROL}]*$"),
            "description": "For basic authentication (only then)"
        },
        "header_name": {
            "type": "string",
            "pattern": "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$",
            "not": {"pattern": format!("^(?:{})$", reserved.join("|"))},
            "maxLength": super::MAX_SETTING_LEN,
            "description": "For header authentication (only then): an HTTP header name, e.g. X-API-Key; not Host, Content-Length, Content-Type, Transfer-Encoding, Connection or Cookie"
        }
    })
}

/// Headers that a credential must not replace: they would break or hijack the request.
const RESERVED_HEADERS: &[&str] = &["host", "content-length", "content-type", "transfer-encoding", "connection", "cookie"];

fn check(settings: &Map<String, Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(name) = settings.get("header_name").and_then(Value::as_str) {
        let is_token = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !is_token {
            errors.push(FieldError::new("settings.header_name", "a header name uses only letters, digits and - _ . (e.g. X-API-Key)"));
        } else if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            errors.push(FieldError::new("settings.header_name", format!("{name} cannot carry a credential; use e.g. X-API-Key or Authorization")));
        }
    }
    if let Some(base) = settings.get("base_url").and_then(Value::as_str) {
        if base.contains('?') || base.contains('#') {
            errors.push(FieldError::new("settings.base_url", "the base URL must not contain a query (?…) or fragment (#…)"));
        }
    }
    errors
}

/// How much of an error answer's body a test result may quote.
const SNIPPET_CHARS: usize = 200;

fn test<'a>(out: &'a Outbound, settings: &'a Map<String, Value>, secrets: &'a Secrets) -> TestFuture<'a> {
    Box::pin(run_test(out, settings, secrets))
}

/// The stored secret as the `auth` setting sends it.
fn credential(settings: &Map<String, Value>, secrets: &Secrets) -> Result<Credential, Unusable> {
    let setting = |name: &str| settings.get(name).and_then(Value::as_str).unwrap_or_default();
    let auth = setting("auth");
    let field = if auth == "basic" { "password" } else { "token" };
    let Some(secret) = secrets.get(field) else {
        return Err(Unusable { detail: format!("the {field} is not set"), advice: format!("set the {field} on this connection, or ask the API's admin for it with Request credentials, then test again") });
    };
    let credential = match auth {
        "bearer" => Credential::bearer(secret.clone()),
        "basic" => Credential::basic(setting("username"), secret),
        "header" => Credential::header(setting("header_name"), secret.clone()),
        other => return Err(Unusable { detail: format!("unknown authentication {other:?}"), advice: "set auth to bearer, basic or header".into() }),
    };
    Ok(credential.with_base_url(setting("base_url")))
}

/// GET `base_url` with the configured credentials, and say in plain words what the answer means.
async fn run_test(out: &Outbound, settings: &Map<String, Value>, secrets: &Secrets) -> TestResult {
    let setting = |name: &str| settings.get(name).and_then(Value::as_str).unwrap_or_default();
    let base = setting("base_url");
    let url = match out.parse_url(base) {
        Ok(url) => url,
        Err(e) => return e.into(),
    };
    let credential = match credential(settings, secrets) {
        Ok(c) => c,
        Err(u) => return TestResult::failed(u.detail, u.advice),
    };
    let mut request = reqwest::Request::new(Method::GET, url);
    if let Err(u) = credential.apply(&mut request) {
        return TestResult::failed(u.detail, u.advice);
    }
    let sensitive = credential.sensitive();
    let sensitive: Vec<&str> = sensitive.iter().map(String::as_str).chain(secrets.values().map(|s| s.expose_secret())).collect();
    match out.send(request).await {
        Ok(response) => explain_status(base, setting("auth"), setting("header_name"), &response, &sensitive),
        Err(e) => e.into(),
    }
}

fn explain_status(base: &str, auth: &str, header_name: &str, response: &OutboundResponse, secrets: &[&str]) -> TestResult {
    let status = response.status;
    let looks_like_html = response.body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<');
    let quote =
        if response.body.is_empty() || looks_like_html { String::new() } else { format!(": {}", outbound::snippet(&response.body, SNIPPET_CHARS, secrets)) };
    if status.is_success() {
        return TestResult::passed(format!("{base} answered {status} with these credentials"));
    }
    if status.is_redirection() {
        let Some(target) = response.location() else {
            return TestResult::passed(format!("{base} answered {status} with these credentials"));
        };
        let origin = target.origin().ascii_serialization();
        return TestResult {
            ok: true,
            detail: format!(
                "{base} answered {status}, redirecting to {origin}; connvault does not follow redirects to another address, so the credentials \
                 were sent only to the one configured"
            ),
            advice: Some(format!("if the API lives at {origin}, change the base URL to that address")),
        };
    }
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            let advice = match auth {
                "basic" => "check the user name and replace the password with the current one".to_string(),
                "header" => format!(
                    "replace the token with a valid one (it may be wrong, expired or revoked), and check that {header_name} is the header this API expects"
                ),
                _ => "replace the token with a valid one (it may be wrong, expired or revoked) that grants access to this API".to_string(),
            };
            TestResult::failed(format!("the server refused the credentials ({status}){quote}"), advice)
        }
        StatusCode::NOT_FOUND => TestResult::failed(
            format!("{base} answered {status}: there is nothing at that address{quote}"),
            "check the base URL's path (for example a missing or extra /v1)",
        ),
        StatusCode::TOO_MANY_REQUESTS => TestResult::failed(format!("the server is limiting requests ({status}){quote}"), "wait a little, then test again"),
        s if s.is_server_error() => TestResult::failed(
            format!("the remote server is failing ({status}){quote}"),
            "the credentials could not be checked: test again later, or ask the service's operators",
        ),
        _ => TestResult::failed(
            format!("the server did not accept the request ({status}){quote}"),
            "check the base URL: the server was reached, but it does not accept a GET of that address",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeSet;

    fn validate(settings: Value, secrets: &[&str]) -> Vec<String> {
        let settings = settings.as_object().unwrap().clone();
        let secrets: BTreeSet<String> = secrets.iter().map(|s| s.to_string()).collect();
        HTTP.validate(&settings, &secrets).into_iter().map(|e| format!("{}: {}", e.field, e.message)).collect()
    }

    #[test]
    fn valid_configurations() {
        // Without its secret (the admin may enter it through a credential request).
        assert!(validate(json!({"base_url": "https://api.example.com/v1", "auth": "bearer"}), &[]).is_empty());
        assert!(validate(json!({"base_url": "https://api.example.com/v1", "auth": "bearer"}), &["token"]).is_empty());
        assert!(validate(json!({"base_url": "https://api.example.com", "auth": "basic", "username": "svc"}), &["password"]).is_empty());
        assert!(validate(json!({"base_url": "http://10.1.2.3:8080", "auth": "header", "header_name": "X-API-Key"}), &["token"]).is_empty());
    }

    #[test]
    fn each_mistake_names_its_field() {
        let cases: Vec<(Value, &[&str], &str)> = vec![
            (json!({"auth": "bearer"}), &["token"], "settings.base_url: Base URL is required"),
            (json!({"base_url": "api.example.com", "auth": "bearer"}), &["token"], "settings.base_url: not a valid URL"),
            (json!({"base_url": "ftp://x.example.com", "auth": "bearer"}), &["token"], "settings.base_url: must start with https://"),
            (json!({"base_url": "https://u:p@x.example.com", "auth": "bearer"}), &["token"], "settings.base_url: must not contain a user name"),
            (json!({"base_url": "https://x.example.com?a=1", "auth": "bearer"}), &["token"], "settings.base_url: the base URL must not contain a query"),
            (json!({"base_url": "https://x.example.com", "auth": "oauth"}), &["token"], "settings.auth: Authentication must be one of: bearer, basic, header"),
            (json!({"base_url": "https://x.example.com", "auth": "basic"}), &["password"], "settings.username: User name is required when auth is basic"),
            (
                json!({"base_url": "https://x.example.com", "auth": "basic", "username": "u"}),
                &["token", "password"],
                "secrets.token: token only applies when auth is bearer or header",
            ),
            (
                json!({"base_url": "https://x.example.com", "auth": "header", "header_name": "Bad Header"}),
                &["token"],
                "settings.header_name: a header name uses only",
            ),
            (
                json!({"base_url": "https://x.example.com", "auth": "header", "header_name": "Host"}),
                &["token"],
                "settings.header_name: Host cannot carry a credential",
            ),
            (json!({"base_url": "https://x.example.com", "auth": "bearer", "token": "x"}), &[], "settings.token: token is a secret: send it in secrets"),
            (
                json!({"base_url": "https://x.example.com", "auth": "bearer", "colour": "red"}),
                &["token"],
                "settings.colour: Generic HTTP connections have no setting",
            ),
            (json!({"base_url": "https://x.example.com", "auth": "bearer"}), &["token", "pin"], "secrets.pin: Generic HTTP connections have no secret"),
            (json!({"base_url": 42, "auth": "bearer"}), &["token"], "settings.base_url: Base URL must be text"),
            (json!({"base_url": "  ", "auth": "bearer"}), &["token"], "settings.base_url: Base URL must not be empty"),
        ];
        for (settings, secrets, expected) in cases {
            let errors = validate(settings.clone(), secrets);
            assert!(errors.iter().any(|e| e.starts_with(expected)), "{settings} {secrets:?}: expected {expected:?}, got {errors:?}");
        }
    }

    #[test]
    fn switching_auth_makes_the_old_secret_obsolete() {
        let settings = json!({"base_url": "https://x.example.com", "auth": "basic", "username": "u"});
        let stored = ["token".to_string(), "password".to_string()];
        assert_eq!(HTTP.obsolete_secrets(settings.as_object().unwrap(), stored.iter()), vec!["token".to_string()]);
    }
}
