//! The `workato` provider: Workato's developer API with an API client's token, on the data
//! center the workspace lives in (US, EU, JP, SG, AU, IL or the trial host; a Virtual Private
//! Workato or a local stand-in through `base_url`). The token is a static bearer credential;
//! the live check asks who the workspace is, and falls back to a folder listing for a client
//! whose role (or environment) may not read the workspace's details.

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{AuthMode, CredentialHelp, Details, DetailsFuture, FieldKind, FieldSpec, FormHints, ProviderDef, Secrets, TestFuture, TestResult};
use crate::credential::{Credential, Unusable};
use crate::error::FieldError;
use crate::outbound::{self, Outbound, OutboundResponse};

pub mod standin;

/// Data centers and their API base URLs (Workato's docs, "Data centers").
pub const DATA_CENTERS: &[(&str, &str, &str)] = &[
    ("us", "US", "https://www.workato.com/api/"),
    ("eu", "EU", "https://app.eu.workato.com/api/"),
    ("jp", "JP", "https://app.jp.workato.com/api/"),
    ("sg", "SG", "https://app.sg.workato.com/api/"),
    ("au", "AU", "https://app.au.workato.com/api/"),
    ("il", "IL", "https://app.il.workato.com/api/"),
    ("trial", "trial", "https://app.trial.workato.com/api/"),
];
const DATA_CENTER_IDS: &[&str] = &["us", "eu", "jp", "sg", "au", "il", "trial"];
const ENVIRONMENTS: &[&str] = &["dev", "test", "prod"];

pub static WORKATO: ProviderDef = ProviderDef {
    id: "workato",
    label: "Workato",
    auth_modes: &[AuthMode::Static],
    auth_mode: |_| AuthMode::Static,
    fields: &[
        FieldSpec {
            name: "data_center",
            label: "Data center",
            help: "Where the workspace lives: the host you sign in at (www.workato.com is us, app.eu.workato.com is eu, …); default us",
            kind: FieldKind::Choice,
            choices: DATA_CENTER_IDS,
            secret: false,
            when: None,
            required: false,
        },
        FieldSpec {
            name: "environment",
            label: "Workato environment",
            help: "The environment the API client belongs to (dev, test or prod); default dev",
            kind: FieldKind::Choice,
            choices: ENVIRONMENTS,
            secret: false,
            when: None,
            required: false,
        },
        FieldSpec {
            name: "api_token",
            label: "API client token",
            help: "Workspace admin → API platform → API clients → the client → its token (shown once when the client is created or the token regenerated)",
            kind: FieldKind::Text,
            choices: &[],
            secret: true,
            when: None,
            // Not needed to save the connection: the workspace admin may enter it (Request credentials).
            required: false,
        },
        FieldSpec {
            name: "base_url",
            label: "API base URL (override)",
            help: "Only for a Virtual Private Workato or a local stand-in: the API root, e.g. https://acme.workato.example/api/; otherwise leave empty and choose the data center",
            kind: FieldKind::Url,
            choices: &[],
            secret: false,
            when: None,
            required: false,
        },
    ],
    check,
    test: Some(test),
    managed_secrets: &[],
    cached_secrets: &[],
    // Where the token goes: the data center's host, or the override.
    destination_settings: &["data_center", "base_url"],
    // Every setting: the data center, the Workato environment of the API client, the override.
    environment_settings: &["data_center", "environment", "base_url"],
    schema,
    minting: None,
    credential: Some(credential),
    admin_help: None,
    credential_help: Some(&CREDENTIAL_HELP),
    details: Some(members),
    authorization: None,
    session: None,
    secret_expiry: None,
    form: FormHints { presets: &[], advanced: &["base_url"] },
};

/// Asking the workspace admin for an API client's token.
static CREDENTIAL_HELP: CredentialHelp = CredentialHelp { admin: "Workato workspace admin", owned_settings: &["environment"], steps: credential_steps };

fn credential_steps(settings: &Map<String, Value>) -> Vec<String> {
    let env = environment(settings).to_uppercase();
    let (_, label, _) = data_center(settings);
    let host = url::Url::parse(&api_base(settings)).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_default();
    vec![
        format!("Sign in to the workspace at {host} (data center {label}) and open Workspace admin → API platform → Client roles."),
        "Create a client role for connvault with the privileges the integration needs, and Workspace details (so connvault can name the workspace when it tests the token).".into(),
        format!("Under API clients, create a client with that role for the {env} environment, and copy its token (Workato shows it once)."),
        "Enter the token on the page this link opens (and the client's environment, if it is not the one named here): connvault seals it at once and tests it; the developer never sees it.".into(),
    ]
}

fn setting<'a>(settings: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    settings.get(name).and_then(Value::as_str).map(str::trim).filter(|v| !v.is_empty())
}

/// The data center's id and label (`us`/"US" when left out).
fn data_center(settings: &Map<String, Value>) -> (&'static str, &'static str, &'static str) {
    let id = setting(settings, "data_center").unwrap_or("us");
    DATA_CENTERS.iter().copied().find(|(d, _, _)| *d == id).unwrap_or(DATA_CENTERS[0])
}

/// The API root the token is sent to, with a trailing `/`.
pub fn api_base(settings: &Map<String, Value>) -> String {
    match setting(settings, "base_url") {
        Some(base) if base.ends_with('/') => base.to_string(),
        Some(base) => format!("{base}/"),
        None => data_center(settings).2.to_string(),
    }
}

fn environment(settings: &Map<String, Value>) -> &str {
    setting(settings, "environment").unwrap_or("dev")
}

fn check(settings: &Map<String, Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(base) = setting(settings, "base_url") {
        if base.contains('?') || base.contains('#') {
            errors.push(FieldError::new("settings.base_url", "the API base URL must not contain a query (?…) or fragment (#…)"));
        }
    }
    errors
}

fn schema() -> Value {
    use super::patterns::{any_case, CONTROL, HOST, PORT, WS};
    json!({
        "data_center": {"type": "string", "enum": DATA_CENTER_IDS, "description": "us (default), eu, jp, sg, au, il or trial"},
        "environment": {"type": "string", "enum": ENVIRONMENTS, "description": "dev (default), test or prod"},
        "base_url": {
            "type": "string",
            "maxLength": super::MAX_SETTING_LEN,
            "pattern": format!("^{}://{HOST}(?::{PORT})?(?:/[^?#{WS}{CONTROL}]*)?$", any_case("http") + "[Ss]?"),
            "description": "Only to override the data center's host (Virtual Private Workato, a local stand-in): an absolute http(s) URL without user name, password, query or fragment"
        }
    })
}

/// The API client's token as a bearer credential, for the data center's API root.
fn credential(settings: &Map<String, Value>, secrets: &Secrets) -> Result<Credential, Unusable> {
    let Some(token) = secrets.get("api_token") else {
        return Err(Unusable {
            detail: "the API client token is not set".into(),
            advice: "set the API client token on this connection, or ask the workspace admin for it with Request credentials, then test again".into(),
        });
    };
    Ok(Credential::bearer(token.clone()).with_base_url(api_base(settings)))
}

fn test<'a>(out: &'a Outbound, settings: &'a Map<String, Value>, secrets: &'a Secrets) -> TestFuture<'a> {
    Box::pin(run_test(out, settings, secrets))
}

/// What `GET /api/users/me` says about the workspace.
#[derive(Debug, Deserialize)]
struct Me {
    name: Option<String>,
    company_name: Option<String>,
}

/// How much of an error answer's body a test result may quote.
const SNIPPET_CHARS: usize = 200;

/// A short excerpt of an error answer (none for an empty or HTML body), without the secrets.
fn quote(r: &OutboundResponse, sensitive: &[&str]) -> String {
    let html = r.body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<');
    if r.body.is_empty() || html {
        String::new()
    } else {
        format!(": {}", outbound::snippet(&r.body, SNIPPET_CHARS, sensitive))
    }
}

async fn get(out: &Outbound, credential: &Credential, url: &str) -> Result<OutboundResponse, TestResult> {
    let url = out.parse_url(url).map_err(TestResult::from)?;
    let mut request = reqwest::Request::new(Method::GET, url);
    request.headers_mut().insert(reqwest::header::ACCEPT, reqwest::header::HeaderValue::from_static("application/json"));
    credential.apply(&mut request).map_err(|u| TestResult::failed(u.detail, u.advice))?;
    out.send(request).await.map_err(TestResult::from)
}

/// `GET users/me` → "workspace NAME, data center EU"; a role or environment that may not read
/// it → `GET folders?per_page=1`, which says whether the token works at all.
async fn run_test(out: &Outbound, settings: &Map<String, Value>, secrets: &Secrets) -> TestResult {
    let credential = match credential(settings, secrets) {
        Ok(c) => c,
        Err(u) => return TestResult::failed(u.detail, u.advice),
    };
    let base = api_base(settings);
    let host = url::Url::parse(&base).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_else(|| base.clone());
    let place = if setting(settings, "base_url").is_some() { format!("at {host}") } else { format!("data center {}", data_center(settings).1) };
    let sensitive = credential.sensitive();
    let sensitive: Vec<&str> = sensitive.iter().map(String::as_str).collect();
    let me = match get(out, &credential, &format!("{base}users/me")).await {
        Ok(r) => r,
        Err(result) => return result,
    };
    let quote = |r: &OutboundResponse| quote(r, &sensitive);
    match me.status {
        s if s.is_success() => match me.json::<Me>() {
            Ok(Me { name, company_name }) => {
                let name = company_name.filter(|n| !n.trim().is_empty()).or(name).unwrap_or_else(|| "(unnamed)".into());
                TestResult::passed(format!("workspace {name}, {place} ({} environment)", environment(settings)))
            }
            Err(_) => TestResult::failed(
                format!("{host} answered {s} to users/me, but not with Workato's JSON{}", quote(&me)),
                "check the data center (or the base URL): this does not look like Workato's API",
            ),
        },
        StatusCode::UNAUTHORIZED => TestResult::failed(
            format!("Workato refused the token ({}, {host} called){}", me.status, quote(&me)),
            format!(
                "the token was revoked or regenerated, or it belongs to another data center than {place}: check where the workspace lives (the host you sign in at), or copy the API client's current token"
            ),
        ),
        StatusCode::FORBIDDEN => fallback(out, &credential, settings, &base, &host, &place, &sensitive).await,
        StatusCode::NOT_FOUND => TestResult::failed(
            format!("{host} answered {} to {base}users/me: there is no Workato API there{}", me.status, quote(&me)),
            "check the base URL: it must be the API root (ending in /api/), or leave it empty and choose the data center",
        ),
        StatusCode::TOO_MANY_REQUESTS => TestResult::failed(
            format!("Workato is limiting requests ({}){}", me.status, quote(&me)),
            "Workato allows 60 API requests a minute per client: wait a minute, then test again",
        ),
        s if s.is_server_error() => TestResult::failed(
            format!("Workato is failing ({s}){}", quote(&me)),
            "the token could not be checked: test again later, or see status.workato.com",
        ),
        s => TestResult::failed(format!("{host} did not accept the request ({s}){}", quote(&me)), "check the data center or the base URL"),
    }
}

/// The token may be valid while its client may not read the workspace's details (the
/// "Workspace details" privilege, or no access to the DEV environment): a folder listing says.
async fn fallback(out: &Outbound, credential: &Credential, settings: &Map<String, Value>, base: &str, host: &str, place: &str, sensitive: &[&str]) -> TestResult {
    let env = environment(settings);
    let folders = match get(out, credential, &format!("{base}folders?per_page=1")).await {
        Ok(r) => r,
        Err(result) => return result,
    };
    let why_me = if env == "dev" {
        "the API client's role lacks the Workspace details privilege".to_string()
    } else {
        format!("the API client (a {} environment client) may not read the workspace's details, which need the Workspace details privilege and access to DEV", env.to_uppercase())
    };
    if folders.status.is_success() {
        return TestResult {
            ok: true,
            detail: format!("the token works on {place} ({host}): folders answer; {why_me}, so connvault cannot name the workspace"),
            advice: Some("to see the workspace named here, add the Workspace details privilege to the API client's role (Workspace admin → API platform → Client roles)".into()),
        };
    }
    let quote = quote(&folders, sensitive);
    TestResult::failed(
        format!("Workato accepted the token but refused users/me (403) and folders ({}){quote}", folders.status),
        format!("{why_me}, and it may not list folders either: give the API client's role the Workspace details privilege, or the Projects → Folders privilege, for the {env} environment"),
    )
}

fn members<'a>(out: &'a Outbound, settings: &'a Map<String, Value>, secrets: &'a Secrets) -> DetailsFuture<'a> {
    Box::pin(read_members(out, settings, secrets))
}

/// One collaborator, as `GET /api/members` lists them.
#[derive(Debug, Deserialize)]
struct Member {
    name: Option<String>,
    email: Option<String>,
    #[serde(default)]
    roles: Vec<MemberRole>,
    last_activity_log: Option<Activity>,
}

#[derive(Debug, Deserialize)]
struct MemberRole {
    environment_type: String,
    role_name: String,
}

#[derive(Debug, Deserialize)]
struct Activity {
    created_at: Option<String>,
}

/// The list arrives as `{"data": [...]}` (or a bare array from older workspaces).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Members {
    Wrapped { data: Vec<Member> },
    Bare(Vec<Member>),
}

/// The workspace's collaborators and their role in each environment, as governance tools
/// build that view from the same API.
async fn read_members(out: &Outbound, settings: &Map<String, Value>, secrets: &Secrets) -> Result<Details, TestResult> {
    let credential = credential(settings, secrets).map_err(|u| TestResult::failed(u.detail, u.advice))?;
    let base = api_base(settings);
    let response = get(out, &credential, &format!("{base}members")).await?;
    match response.status {
        s if s.is_success() => {}
        StatusCode::FORBIDDEN => {
            return Err(TestResult::failed(
                "Workato refused the collaborator list (403)",
                "give the API client's role the Collaborators privilege (Workspace admin → API platform → Client roles) to see who works in the workspace here",
            ))
        }
        s => return Err(TestResult::failed(format!("Workato answered {s} to members"), "test the connection: it says what is wrong with the token or the data center")),
    }
    let members = match response.json::<Members>() {
        Ok(Members::Wrapped { data }) | Ok(Members::Bare(data)) => data,
        Err(_) => return Err(TestResult::failed("the collaborator list is not Workato's JSON", "check the data center or the base URL")),
    };
    let role = |m: &Member, env: &str| m.roles.iter().filter(|r| r.environment_type == env).map(|r| r.role_name.clone()).collect::<Vec<_>>().join(", ");
    let rows = members
        .iter()
        .map(|m| {
            vec![
                m.name.clone().unwrap_or_default(),
                m.email.clone().unwrap_or_default(),
                role(m, "dev"),
                role(m, "test"),
                role(m, "prod"),
                m.last_activity_log.as_ref().and_then(|a| a.created_at.clone()).unwrap_or_default(),
            ]
        })
        .collect();
    Ok(Details {
        title: "Collaborators".into(),
        columns: ["Name", "Email", "DEV role", "TEST role", "PROD role", "Last activity"].map(String::from).to_vec(),
        rows,
        note: Some(format!("From {base}members, read with this connection's token")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn validate(settings: Value, secrets: &[&str]) -> Vec<String> {
        let settings = settings.as_object().unwrap().clone();
        let secrets: BTreeSet<String> = secrets.iter().map(|s| s.to_string()).collect();
        WORKATO.validate(&settings, &secrets).into_iter().map(|e| format!("{}: {}", e.field, e.message)).collect()
    }

    #[test]
    fn data_centers_and_the_override_decide_the_host() {
        let at = |v: Value| api_base(v.as_object().unwrap());
        assert_eq!(at(json!({})), "https://www.workato.com/api/");
        assert_eq!(at(json!({"data_center": "eu"})), "https://app.eu.workato.com/api/");
        assert_eq!(at(json!({"data_center": "trial"})), "https://app.trial.workato.com/api/");
        assert_eq!(at(json!({"data_center": "eu", "base_url": "http://127.0.0.1:9/api"})), "http://127.0.0.1:9/api/");
        assert_eq!(DATA_CENTERS.len(), DATA_CENTER_IDS.len());
        assert!(DATA_CENTERS.iter().zip(DATA_CENTER_IDS).all(|(d, id)| d.0 == *id));
    }

    #[test]
    fn each_mistake_names_its_field() {
        assert!(validate(json!({}), &["api_token"]).is_empty());
        assert!(validate(json!({}), &[]).is_empty(), "the token may come later, from the workspace admin");
        assert!(validate(json!({"data_center": "jp", "environment": "prod"}), &["api_token"]).is_empty());
        let cases: Vec<(Value, &[&str], &str)> = vec![
            (json!({"data_center": "mars"}), &["api_token"], "settings.data_center: Data center must be one of: us, eu, jp, sg, au, il, trial"),
            (json!({"environment": "staging"}), &["api_token"], "settings.environment: Workato environment must be one of: dev, test, prod"),
            (json!({"base_url": "https://x.example.com/api?x=1"}), &["api_token"], "settings.base_url: the API base URL must not contain a query"),
            (json!({"base_url": "workato.com"}), &["api_token"], "settings.base_url: not a valid URL"),
            (json!({"api_token": "x"}), &[], "settings.api_token: api_token is a secret"),
        ];
        for (settings, secrets, expected) in cases {
            let errors = validate(settings.clone(), secrets);
            assert!(errors.iter().any(|e| e.starts_with(expected)), "{settings} {secrets:?}: expected {expected:?}, got {errors:?}");
        }
    }
}
