//! The generic `http` provider: a base URL plus a bearer token, basic auth, or an API key
//! sent in a header of the caller's choosing.

use serde_json::{Map, Value};

use super::{FieldKind, FieldSpec, ProviderDef};
use crate::error::FieldError;

const AUTH: &[&str] = &["bearer", "basic", "header"];

pub static HTTP: ProviderDef = ProviderDef {
    id: "http",
    label: "Generic HTTP",
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
            required: true,
        },
        FieldSpec {
            name: "password",
            label: "Password",
            help: "For basic authentication",
            kind: FieldKind::Text,
            choices: &[],
            secret: true,
            when: Some(("auth", &["basic"])),
            required: true,
        },
    ],
    check,
};

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
            (json!({"base_url": "https://x.example.com", "auth": "bearer"}), &[], "secrets.token: Token is required when auth is bearer or header"),
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
