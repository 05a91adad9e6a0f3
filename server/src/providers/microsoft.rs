//! What the Microsoft providers (`sharepoint`, `dataverse`, `dynamics365`) share: Entra ID app
//! registrations used through client credentials, signed with a certificate connvault issues
//! (a PS256 client assertion with `x5t#S256`) or, for Dataverse and Dynamics 365, with a client
//! secret. Each provider module declares its resource (a SharePoint site, a Dataverse
//! environment) and reuses the fields, checks, mint, verifying call and admin email here. The
//! protocol itself (token request, errors and their advice, the resource calls) is
//! `crate::entra`.

use serde_json::{json, Map, Value};

use super::{AdminHelp, AuthMode, CredentialHelp, FieldKind, FieldSpec, FormHints, Identity, Key, MintFuture, Minted, Minting, Refusal, RequestFacts, Secrets, VerifyFuture};
use crate::entra::{self, ClientAuth};
use crate::error::FieldError;
use crate::mail::{Attachment, Email};
use crate::outbound::Outbound;

pub const PRIVATE_KEY: &str = "private_key";
pub const PENDING_PRIVATE_KEY: &str = "pending_private_key";
pub const ACCESS_TOKEN: &str = "access_token";
pub const MANAGED: &[&str] = &[PRIVATE_KEY, PENDING_PRIVATE_KEY, ACCESS_TOKEN];
pub const CLIENT_SECRET: &str = "client_secret";
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// Entra's authorities: the global cloud, US Government, and China (21Vianet).
pub const AUTHORITY_HOSTS: &[&str] = &["login.microsoftonline.com", "login.microsoftonline.us", "login.partner.microsoftonline.cn", "login.chinacloudapi.cn"];
/// `auth` of Dataverse and Dynamics 365.
pub const AUTH: &[&str] = &["certificate", "secret"];
/// The answer the admin's one-time link takes.
pub const ANSWER_FIELDS: &[&str] = &["tenant", "client_id"];
/// Entra tokens live an hour or so; this is used only if an answer lacks `expires_in`.
pub const DEFAULT_LIFETIME_MINUTES: i64 = 60;

/// The resource a Microsoft connection's token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// SharePoint REST on a site: `site_url`.
    SharePoint,
    /// The Dataverse Web API of an environment: `environment_url`.
    Dataverse,
    /// The same for Dynamics 365 (which runs on Dataverse), in its own words.
    Dynamics365,
}

/// A resource as a const generic, so that each provider's hooks are plain functions:
/// `exchange_for::<{ SHAREPOINT }>`.
pub const SHAREPOINT: u8 = 0;
pub const DATAVERSE: u8 = 1;
pub const DYNAMICS365: u8 = 2;

const fn resource_of(r: u8) -> Resource {
    match r {
        SHAREPOINT => Resource::SharePoint,
        DATAVERSE => Resource::Dataverse,
        _ => Resource::Dynamics365,
    }
}

/// How a Microsoft provider mints (with a certificate or a client secret, as its settings say).
pub const fn minting<const R: u8>() -> Minting {
    Minting {
        not_ready,
        exchange: exchange_for::<R>,
        verify: verify_for::<R>,
        default_lifetime: lifetime,
        key_field: PRIVATE_KEY,
        pending_key_field: PENDING_PRIVATE_KEY,
        token_field: ACCESS_TOKEN,
    }
}

/// The Entra admin request of a Microsoft provider.
pub const fn admin_help<const R: u8>() -> AdminHelp {
    AdminHelp {
        admin: "Microsoft Entra admin",
        answer_fields: ANSWER_FIELDS,
        answered_state: "app_ids_received",
        email: email_for::<R>,
        link_facts: link_facts_for::<R>,
    }
}

pub fn check_for<const R: u8>(settings: &Map<String, Value>) -> Vec<FieldError> {
    check(settings, resource_of(R))
}

pub fn schema_for<const R: u8>() -> Value {
    schema(resource_of(R))
}

fn exchange_for<'a, const R: u8>(out: &'a Outbound, settings: &'a Map<String, Value>, secrets: &'a Secrets, key: Option<Key<'a>>) -> MintFuture<'a> {
    Box::pin(exchange(out, settings, secrets, key, resource_of(R)))
}

fn verify_for<'a, const R: u8>(out: &'a Outbound, settings: &'a Map<String, Value>, minted: &'a Minted) -> VerifyFuture<'a> {
    Box::pin(verify(out, settings, minted, resource_of(R)))
}

fn email_for<const R: u8>(f: &RequestFacts<'_>) -> Email {
    email(f, resource_of(R))
}

fn link_facts_for<const R: u8>(settings: &Map<String, Value>) -> Vec<(&'static str, String)> {
    link_facts(settings, resource_of(R))
}

impl Resource {
    /// The setting that holds the resource's URL.
    pub fn setting(self) -> &'static str {
        match self {
            Resource::SharePoint => "site_url",
            Resource::Dataverse | Resource::Dynamics365 => "environment_url",
        }
    }

    fn kind(self) -> entra::ResourceKind {
        match self {
            Resource::SharePoint => entra::ResourceKind::SharePoint,
            Resource::Dataverse => entra::ResourceKind::Dataverse,
            Resource::Dynamics365 => entra::ResourceKind::Dynamics365,
        }
    }

    fn is_environment(self) -> bool {
        self != Resource::SharePoint
    }
}

pub const TENANT: FieldSpec = FieldSpec {
    name: "tenant",
    label: "Directory (tenant) ID",
    help: "The GUID on the app registration's Overview page, or the tenant's domain (contoso.onmicrosoft.com); the admin can send it through the request link",
    kind: FieldKind::Text,
    choices: &[],
    secret: false,
    when: None,
    required: false,
};

pub const CLIENT_ID: FieldSpec = FieldSpec {
    name: "client_id",
    label: "Application (client) ID",
    help: "The GUID on the app registration's Overview page; the admin can send it through the request link",
    kind: FieldKind::Text,
    choices: &[],
    secret: false,
    when: None,
    required: false,
};

pub const ADMIN_EMAIL: FieldSpec = FieldSpec {
    name: "admin_email",
    label: "Microsoft Entra admin's email",
    help: "Who receives the request to register the app",
    kind: FieldKind::Email,
    choices: &[],
    secret: false,
    when: None,
    required: false,
};

/// The connection form of every Entra provider: the authority folds away.
pub const FORM: FormHints = FormHints { presets: &[], advanced: &["authority_url"] };

pub const AUTHORITY_URL: FieldSpec = FieldSpec {
    name: "authority_url",
    label: "Authority (advanced)",
    help: "Entra's sign-in host; default https://login.microsoftonline.com (US Government: https://login.microsoftonline.us)",
    kind: FieldKind::Url,
    choices: &[],
    secret: false,
    when: None,
    required: false,
};

/// The settings of a Microsoft connection, read once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub tenant: Option<String>,
    pub client_id: Option<String>,
    /// The site or environment URL, without a trailing slash.
    pub resource_url: String,
    pub authority_url: String,
    /// Signs with a certificate (else a client secret).
    pub certificate: bool,
}

impl Settings {
    pub fn from_map(settings: &Map<String, Value>, resource: Resource) -> Settings {
        let text = |name: &str| settings.get(name).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
        Settings {
            tenant: text("tenant"),
            client_id: text("client_id"),
            resource_url: text(resource.setting()).unwrap_or_default().trim_end_matches('/').to_string(),
            authority_url: text("authority_url").unwrap_or_else(|| DEFAULT_AUTHORITY.to_string()).trim_end_matches('/').to_string(),
            certificate: auth_mode(settings).signs(),
        }
    }
}

/// Entra client credentials with a certificate assertion (`auth` left out or `certificate`)
/// or a client secret (`auth` = `secret`, Dataverse and Dynamics 365 only).
pub fn auth_mode(settings: &Map<String, Value>) -> AuthMode {
    match settings.get("auth").and_then(Value::as_str) {
        None | Some("certificate") => AuthMode::ClientAssertion,
        Some(_) => AuthMode::ClientSecret,
    }
}

/// Asking the Entra admin for a client secret (Dataverse and Dynamics 365 with `auth` =
/// `secret`), with the IDs of the app it belongs to.
pub static SECRET_HELP: CredentialHelp =
    CredentialHelp { admin: "Microsoft Entra admin", owned_settings: &["tenant", "client_id", "client_secret_expires_on"], steps: secret_steps };

fn secret_steps(settings: &Map<String, Value>) -> Vec<String> {
    let env_url = settings.get("environment_url").and_then(Value::as_str).unwrap_or_default();
    let app = match settings.get("client_id").and_then(Value::as_str).filter(|v| !v.trim().is_empty()) {
        Some(id) => format!("the app registration with Application (client) ID {id}"),
        None => "an app registration for connvault (App registrations → New registration; single tenant)".into(),
    };
    vec![
        format!("In the Microsoft Entra admin center, open {app}, and under Certificates & secrets create a new client secret; copy its Value (shown once, not the Secret ID) and note when it expires."),
        format!("In the Power Platform admin center, for the environment {env_url}: Settings → Users + permissions → Application users → New app user for that app, with the security role the integration needs."),
        "Enter the Directory (tenant) ID, the Application (client) ID, the secret and its expiry date on the page this link opens: connvault seals the secret at once and tests it; the developer never sees it.".into(),
    ]
}

/// Dataverse and Dynamics 365 take either.
pub const SECRET_OR_CERTIFICATE: &[AuthMode] = &[AuthMode::ClientAssertion, AuthMode::ClientSecret];

pub fn not_ready(settings: &Map<String, Value>) -> Option<(String, String)> {
    let missing: Vec<&str> = ANSWER_FIELDS.iter().copied().filter(|f| settings.get(*f).and_then(Value::as_str).is_none_or(|v| v.trim().is_empty())).collect();
    if missing.is_empty() {
        return None;
    }
    let names = missing.iter().map(|f| if *f == "tenant" { TENANT.label } else { CLIENT_ID.label }).collect::<Vec<_>>().join(" and ");
    Some((
        format!("no {names} yet"),
        format!("fill in the {names} from the app registration's Overview page in Microsoft Entra ID, or wait for the Entra admin to send them through the request link"),
    ))
}

pub fn lifetime(_: &Map<String, Value>) -> chrono::Duration {
    chrono::Duration::minutes(DEFAULT_LIFETIME_MINUTES)
}

/// Whom a failure is explained for; `thumbprint` of the certificate that signed, if one did.
fn context(s: &Settings, resource: Resource, thumbprint: Option<String>) -> entra::Context<'_> {
    entra::Context {
        resource: resource.kind(),
        resource_url: &s.resource_url,
        tenant: s.tenant.as_deref().unwrap_or_default(),
        client_id: s.client_id.as_deref().unwrap_or_default(),
        authority_url: &s.authority_url,
        credential: match thumbprint {
            Some(thumbprint_sha1) => entra::CredentialKind::Certificate { thumbprint_sha1 },
            None if s.certificate => entra::CredentialKind::Certificate { thumbprint_sha1: String::new() },
            None => entra::CredentialKind::Secret,
        },
    }
}

fn refusal(f: entra::Failure, ctx: &entra::Context<'_>) -> Refusal {
    Refusal { transient: f.is_transient(), result: f.explain(ctx) }
}

/// One client-credentials token request for `resource`: a certificate assertion with `key`, or
/// the client secret.
pub async fn exchange(out: &Outbound, settings: &Map<String, Value>, secrets: &Secrets, key: Option<Key<'_>>, resource: Resource) -> Result<Minted, Refusal> {
    let s = Settings::from_map(settings, resource);
    let thumbprint = key.as_ref().map(|k| crate::assertion::thumbprint_sha1_hex(k.certificate_der));
    let ctx = context(&s, resource, thumbprint);
    let not_ready = |detail: &str, advice: &str| entra::Failure::NotReady { detail: detail.to_string(), advice: advice.to_string() };
    let auth = match (&key, secrets.get(CLIENT_SECRET)) {
        (Some(k), _) => ClientAuth::Certificate { signer: k.signer, certificate_der: k.certificate_der },
        (None, Some(secret)) => ClientAuth::Secret(secret),
        (None, None) => return Err(refusal(not_ready("no client secret is set", "paste the client secret's Value (not its ID) into this connection, or ask the Entra admin for it with Request credentials"), &ctx)),
    };
    let label = resource.kind().url_label();
    let scope = entra::scope_for(&s.resource_url).map_err(|e| refusal(not_ready(&e, &format!("set the {label} to the address Microsoft shows")), &ctx))?;
    let (tenant, client_id) = (s.tenant.as_deref().unwrap_or_default(), s.client_id.as_deref().unwrap_or_default());
    match entra::client_credentials(out, &s.authority_url, tenant, client_id, &scope, auth).await {
        Ok(token) => Ok(Minted {
            access_token: token.access_token,
            token_type: "Bearer".into(),
            instance_url: s.resource_url.clone(),
            expires_in: token.expires_in.and_then(|d| chrono::Duration::from_std(d).ok()),
            scope: token.scope.or(Some(scope)),
            org_id: None,
            user_id: None,
            refresh_token: None,
        }),
        Err(f) => Err(refusal(f, &ctx)),
    }
}

/// The resource call from the reference with the new token: the site's title, or WhoAmI.
pub async fn verify(out: &Outbound, settings: &Map<String, Value>, minted: &Minted, resource: Resource) -> Result<Identity, Refusal> {
    let s = Settings::from_map(settings, resource);
    let ctx = context(&s, resource, None);
    let app = s.client_id.as_deref().unwrap_or_default();
    let token =
        entra::Token { access_token: minted.access_token.clone(), token_type: minted.token_type.clone(), expires_in: None, scope: minted.scope.clone(), refresh_token: None, extra: Default::default() };
    match resource {
        Resource::SharePoint => match entra::sharepoint_site(out, &s.resource_url, &token).await {
            Ok(site) => Ok(Identity { summary: format!("connected to site {} as app {app} ({})", site.title, s.resource_url), ..Identity::default() }),
            Err(f) => Err(refusal(f, &ctx)),
        },
        Resource::Dataverse | Resource::Dynamics365 => match entra::dataverse_whoami(out, &s.resource_url, &token).await {
            Ok(me) => Ok(Identity {
                summary: format!(
                    "connected to {} org {} as application user {} ({})",
                    resource.kind().service(),
                    me.organization_id,
                    me.user_id,
                    s.resource_url
                ),
                org_id: Some(me.organization_id),
                user_id: Some(me.user_id),
                username: Some(format!("app {app}")),
            }),
            Err(f) => Err(refusal(f, &ctx)),
        },
    }
}


fn is_guid(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() == 5 && parts.iter().zip([8, 4, 4, 4, 12]).all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_domain(text: &str) -> bool {
    text.len() <= 253
        && text.contains('.')
        && text
            .split('.')
            .all(|l| (1..=63).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') && !l.starts_with('-') && !l.ends_with('-'))
}

pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

const SHAREPOINT_SUFFIXES: &[&str] = &["sharepoint.com", "sharepoint.us", "sharepoint-mil.us", "sharepoint.cn", "sharepoint.de"];

/// SharePoint Online's hosts: `TENANT.sharepoint.com` and the sovereign clouds' equivalents.
pub fn is_sharepoint_host(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    SHAREPOINT_SUFFIXES
        .iter()
        .any(|suffix| host.strip_suffix(suffix).and_then(|rest| rest.strip_suffix('.')).is_some_and(|label| !label.is_empty() && !label.contains('.')))
}

/// The national clouds' Dataverse domains (`entra::is_dataverse_host`), for the schema.
const DATAVERSE_CLOUDS: &[&str] = &["dynamics.com", "dynamics.cn", "microsoftdynamics.de", "microsoftdynamics.us", "appsplatform.us"];

/// The checks every Microsoft connection shares, plus its resource URL's.
pub fn check(settings: &Map<String, Value>, resource: Resource) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let text = |name: &str| settings.get(name).and_then(Value::as_str);
    if let Some(tenant) = text("tenant") {
        if !is_guid(tenant) && !is_domain(tenant) {
            errors.push(FieldError::new(
                "settings.tenant",
                "the tenant is the Directory (tenant) ID, a GUID such as 72f988bf-86f1-41af-91ab-2d7cd011db47, or a domain such as contoso.onmicrosoft.com",
            ));
        }
    }
    if let Some(id) = text("client_id") {
        if !is_guid(id) {
            errors.push(FieldError::new(
                "settings.client_id",
                "the Application (client) ID is a GUID such as 00001111-aaaa-2222-bbbb-3333cccc4444 (the app registration's Overview page), not its name or a secret",
            ));
        }
    }
    if let Some(Ok(url)) = text("authority_url").map(url::Url::parse) {
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        if !url.path().trim_end_matches('/').is_empty() || url.query().is_some() {
            errors.push(FieldError::new(
                "settings.authority_url",
                format!("give only the address, e.g. {DEFAULT_AUTHORITY} (connvault adds /TENANT/oauth2/v2.0/token)"),
            ));
        } else if !is_loopback(&url) && (url.scheme() != "https" || !AUTHORITY_HOSTS.contains(&host.as_str())) {
            errors.push(FieldError::new(
                "settings.authority_url",
                format!(
                    "{host} is not a Microsoft Entra sign-in host: use https://{} (the client assertion and secret go nowhere else)",
                    AUTHORITY_HOSTS.join(", https://")
                ),
            ));
        }
    }
    let field = resource.setting();
    if let Some(Ok(url)) = text(field).map(url::Url::parse) {
        let host = url.host_str().unwrap_or_default().to_string();
        let loopback = is_loopback(&url);
        if url.scheme() != "https" && !loopback {
            errors.push(FieldError::new(format!("settings.{field}"), "Microsoft's services are reached over https:// only"));
        } else if url.query().is_some() || url.fragment().is_some() {
            errors.push(FieldError::new(format!("settings.{field}"), "give the URL without a query (?…) or fragment (#…)"));
        } else if !loopback {
            match resource {
                Resource::SharePoint if !is_sharepoint_host(&host) => errors.push(FieldError::new(
                    "settings.site_url",
                    format!("{host} is not a SharePoint Online host: give the site's address, e.g. https://contoso.sharepoint.com/sites/Sales"),
                )),
                Resource::Dataverse | Resource::Dynamics365 if !entra::is_dataverse_host(&host) => errors.push(FieldError::new(
                    "settings.environment_url",
                    format!("{host} is not a Dataverse environment host: give the environment URL from the Power Platform admin center, e.g. https://contoso.crm4.dynamics.com"),
                )),
                Resource::Dataverse | Resource::Dynamics365 if !url.path().trim_end_matches('/').is_empty() => errors.push(FieldError::new(
                    "settings.environment_url",
                    format!("give only the environment's address, e.g. {} (connvault adds /api/data/v9.2/…)", url.origin().ascii_serialization()),
                )),
                _ => {}
            }
        }
    }
    if let Some(date) = text("client_secret_expires_on") {
        if chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_err() {
            errors.push(FieldError::new(
                "settings.client_secret_expires_on",
                "the date the client secret expires, as YYYY-MM-DD (the Expires column under Certificates & secrets)",
            ));
        }
    }
    errors
}

/// The settings' schemas shared by the Microsoft providers (see `ProviderDef::schema`): what
/// `check_value` and `check` accept.
pub fn schema(resource: Resource) -> Value {
    use super::patterns::{any_case, email, CONTROL, PORT, WS};
    let guid = "[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}";
    let label = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
    let loopback = format!("(?:{}|{})://(?:localhost|127\\.0\\.0\\.1)(?::{PORT})?", any_case("http"), any_case("https"));
    let word = |w: &str| any_case(w).replace('.', "\\.");
    let https = any_case("https");
    let authorities: Vec<String> = AUTHORITY_HOSTS.iter().map(|h| word(h)).collect();
    let mut admin_email = email("");
    admin_email["description"] = json!("An email address such as admin@contoso.com");
    let mut props = json!({
        "tenant": {
            "type": "string", "maxLength": 253,
            "pattern": format!("^(?:{guid}|(?:{label}\\.)+{label})$"),
            "description": "Directory (tenant) ID: a GUID, or a domain such as contoso.onmicrosoft.com"
        },
        "client_id": {"type": "string", "pattern": format!("^{guid}$"), "description": "Application (client) ID: a GUID"},
        "admin_email": admin_email,
        "authority_url": {
            "type": "string", "maxLength": super::MAX_SETTING_LEN,
            "pattern": format!("^(?:{https}://(?:{})(?::{PORT})?|{loopback})/*$", authorities.join("|")),
            "description": "Default https://login.microsoftonline.com; only Entra's sign-in hosts (http:// only for a local stand-in on 127.0.0.1 or localhost)"
        }
    });
    let path = format!("(?:/[^?#{WS}{CONTROL}]*)?");
    props[resource.setting()] = match resource {
        Resource::SharePoint => {
            let suffixes: Vec<String> = SHAREPOINT_SUFFIXES.iter().map(|h| word(h)).collect();
            json!({
                "type": "string", "maxLength": super::MAX_SETTING_LEN,
                "pattern": format!("^(?:{https}://[A-Za-z0-9-]{{1,63}}\\.(?:{})(?::{PORT})?|{loopback}){path}$", suffixes.join("|")),
                "description": "The site's address, e.g. https://contoso.sharepoint.com/sites/Sales"
            })
        }
        Resource::Dataverse | Resource::Dynamics365 => {
            let clouds: Vec<String> = DATAVERSE_CLOUDS.iter().map(|h| word(h)).collect();
            json!({
                "type": "string", "maxLength": super::MAX_SETTING_LEN,
                "pattern": format!("^(?:{https}://(?:{label}\\.)+{}[0-9]*\\.(?:{})\\.?(?::{PORT})?|{loopback})/*$", any_case("crm"), clouds.join("|")),
                "description": "The environment URL from the Power Platform admin center, e.g. https://contoso.crm4.dynamics.com"
            })
        }
    };
    if resource.is_environment() {
        props["auth"] =
            json!({"type": "string", "enum": AUTH, "description": "certificate (connvault issues it; the default) or secret (a client secret you paste)"});
        props["client_secret_expires_on"] = json!({
            "type": "string",
            "pattern": "^[0-9]{4}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)$",
            "description": "When the client secret expires (YYYY-MM-DD), for the expiry warnings"
        });
    }
    props
}

/// The request email to an Entra admin: register the app, upload the certificate, grant the
/// resource its access, and answer with the tenant and client IDs.
pub fn email(f: &RequestFacts<'_>, resource: Resource) -> Email {
    let s = Settings::from_map(f.settings, resource);
    let steps = steps(f, &s, resource);
    let what = match resource {
        Resource::SharePoint => format!("the SharePoint site {}", s.resource_url),
        Resource::Dataverse | Resource::Dynamics365 => format!("the {} environment {}", resource.kind().service(), s.resource_url),
    };
    let intro = format!(
        "{} asks you, as a Microsoft Entra ID administrator, to register an app so that connvault can reach {what} for the connection {} ({}) \
         with the OAuth 2.0 client credentials flow. No password or secret is shared: connvault signs its requests with the private key that \
         belongs to the attached certificate (thumbprint {}).",
        f.requester, f.connection, f.environment, f.thumbprint_sha1
    );
    let mut text = format!("{intro}\n\nSteps:\n");
    for (i, step) in steps.iter().enumerate() {
        text.push_str(&format!("{}. {step}\n", i + 1));
    }
    text.push_str("\nIf you did not expect this request, ignore it: the link expires on its own.\n");
    let escape = crate::mail::escape_html;
    let mut html = format!("<!doctype html><html><body><p>{}</p><ol>", escape(&intro));
    for step in &steps {
        html.push_str(&format!("<li>{}</li>", escape(step)));
    }
    html.push_str(&format!(
        "</ol><p><a href=\"{}\">Send the tenant and client IDs to connvault</a> (one use, until {}).</p><p>If you did not expect this request, \
         ignore it: the link expires on its own.</p></body></html>",
        escape(f.link),
        escape(f.expires_at)
    ));
    Email {
        to: f.to.to_string(),
        subject: format!("{} requests your help to register an app in Microsoft Entra ID", f.requester),
        text,
        html,
        attachments: vec![Attachment {
            filename: f.certificate_file.to_string(),
            content_type: "application/x-x509-ca-cert".into(),
            body: f.certificate_pem.as_bytes().to_vec(),
        }],
    }
}

/// The admin's steps for this connection, each one line, with its values.
pub fn steps(f: &RequestFacts<'_>, s: &Settings, resource: Resource) -> Vec<String> {
    let mut steps = vec![
        format!(
            "In the Microsoft Entra admin center (entra.microsoft.com), go to App registrations → New registration. Name it e.g. \"connvault {} {}\", \
             Supported account types: Accounts in this organizational directory only (single tenant). Register.",
            f.connection, f.environment
        ),
        format!(
            "In the new app: Certificates & secrets → Certificates → Upload certificate, and upload the attached {}. The portal then shows its thumbprint: {}.",
            f.certificate_file, f.thumbprint_sha1
        ),
    ];
    match resource {
        Resource::SharePoint => {
            steps.push(
                "API permissions → Add a permission → SharePoint → Application permissions → Sites.Selected (or Sites.FullControl.All for every site), then \
                 Grant admin consent for your organization."
                    .into(),
            );
            steps.push(format!(
                "With Sites.Selected, consent alone grants nothing: give the app a role on {} with Microsoft Graph, POST \
                 https://graph.microsoft.com/v1.0/sites/{{site-id}}/permissions with {{\"roles\": [\"write\"], \"grantedToIdentities\": [{{\"application\": \
                 {{\"id\": \"APPLICATION (CLIENT) ID\", \"displayName\": \"connvault\"}}}}]}} (or with PnP PowerShell: Grant-PnPAzureADAppSitePermission).",
                s.resource_url
            ));
        }
        Resource::Dataverse | Resource::Dynamics365 => steps.push(format!(
            "No API permission or consent is needed for Dataverse. In the Power Platform admin center, open Environments → the environment at {} → \
             Settings → Users + permissions → Application users → New app user → choose this app, its business unit and a security role that allows \
             what the integration does. Create.",
            s.resource_url
        )),
    }
    steps.push(format!(
        "Send the Directory (tenant) ID and the Application (client) ID (both on the app's Overview page) through this one-time link (valid until {}): \
         {} — if you uploaded your own certificate instead of the attached one, upload it and its private key there too.",
        f.expires_at, f.link
    ));
    steps
}

/// What the admin's page shows of a Microsoft connection.
pub fn link_facts(settings: &Map<String, Value>, resource: Resource) -> Vec<(&'static str, String)> {
    let s = Settings::from_map(settings, resource);
    vec![(resource.kind().url_label(), s.resource_url), ("Authority", s.authority_url)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_and_client_are_checked_with_reasons() {
        let errors = |v: Value, r: Resource| check(v.as_object().unwrap(), r).into_iter().map(|e| e.field).collect::<Vec<_>>();
        let ok = json!({"tenant": "72f988bf-86f1-41af-91ab-2d7cd011db47", "client_id": "00001111-aaaa-2222-bbbb-3333cccc4444", "site_url": "https://contoso.sharepoint.com/sites/Sales"});
        assert!(errors(ok, Resource::SharePoint).is_empty());
        assert!(errors(json!({"tenant": "contoso.onmicrosoft.com"}), Resource::SharePoint).is_empty());
        assert_eq!(errors(json!({"tenant": "contoso"}), Resource::SharePoint), ["settings.tenant"]);
        assert_eq!(errors(json!({"client_id": "my app"}), Resource::SharePoint), ["settings.client_id"]);
        assert_eq!(errors(json!({"site_url": "https://evil.example.com/sites/Sales"}), Resource::SharePoint), ["settings.site_url"]);
        assert_eq!(errors(json!({"site_url": "https://a.b.sharepoint.com/"}), Resource::SharePoint), ["settings.site_url"]);
        assert!(errors(json!({"site_url": "http://127.0.0.1:9/sites/x"}), Resource::SharePoint).is_empty());
        assert_eq!(errors(json!({"site_url": "http://contoso.sharepoint.com/sites/x"}), Resource::SharePoint), ["settings.site_url"]);
        assert!(errors(json!({"environment_url": "https://contoso.crm4.dynamics.com"}), Resource::Dataverse).is_empty());
        assert_eq!(errors(json!({"environment_url": "https://contoso.crm4.dynamics.com/api/data"}), Resource::Dataverse), ["settings.environment_url"]);
        assert_eq!(errors(json!({"environment_url": "https://dynamics.com.evil.io"}), Resource::Dataverse), ["settings.environment_url"]);
        assert_eq!(errors(json!({"authority_url": "https://login.evil.io"}), Resource::Dataverse), ["settings.authority_url"]);
        assert_eq!(errors(json!({"authority_url": "https://login.microsoftonline.com/common"}), Resource::Dataverse), ["settings.authority_url"]);
        assert!(errors(json!({"authority_url": "https://login.microsoftonline.us"}), Resource::Dataverse).is_empty());
        assert_eq!(errors(json!({"client_secret_expires_on": "next year"}), Resource::Dataverse), ["settings.client_secret_expires_on"]);
    }

    #[test]
    fn readiness_names_what_is_missing() {
        let m = |v: Value| not_ready(v.as_object().unwrap()).map(|(d, _)| d);
        assert_eq!(m(json!({})).unwrap(), "no Directory (tenant) ID and Application (client) ID yet");
        assert_eq!(m(json!({"tenant": "contoso.onmicrosoft.com"})).unwrap(), "no Application (client) ID yet");
        assert_eq!(m(json!({"tenant": "t.onmicrosoft.com", "client_id": "00001111-aaaa-2222-bbbb-3333cccc4444"})), None);
        assert_eq!(auth_mode(json!({}).as_object().unwrap()), AuthMode::ClientAssertion);
        assert_eq!(auth_mode(json!({"auth": "secret"}).as_object().unwrap()), AuthMode::ClientSecret);
    }
}
