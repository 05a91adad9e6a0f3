//! Microsoft Entra ID client credentials for SharePoint Online, Dataverse and Dynamics 365:
//! the token request (certificate assertion or client secret), the two test calls (SharePoint's
//! `/_api/web`, Dataverse's `WhoAmI`), and what each of Entra's and the services' "no"s means in
//! plain words (`shared/reference/providers.md`, "Microsoft Entra ID client credentials").
//!
//! Everything goes out through [`Outbound`]; retries as in [`crate::oauth`].

pub mod standin;

use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::assertion::{Alg, AssertionSigner, HeaderExtras};
use crate::oauth::{self, SendFailure};
use crate::outbound::{self, Outbound, OutboundError, OutboundResponse};
use crate::outcome::TestResult;
use crate::secret::SecretString;

/// The public cloud's authority (the `authority_url` default).
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// How long an assertion is valid (Microsoft: keep it short, 5–10 minutes).
pub const ASSERTION_LIFETIME_SECS: i64 = 300;
/// The Dataverse Web API version of the test call.
pub const DATAVERSE_API: &str = "/api/data/v9.2";
/// SharePoint's Accept header for plain JSON.
pub const SHAREPOINT_ACCEPT: &str = "application/json;odata=nometadata";

/// `{authority}/{tenant}/oauth2/v2.0/token`.
pub fn token_url(authority_url: &str, tenant: &str) -> String {
    format!("{}/{}/oauth2/v2.0/token", authority_url.trim().trim_end_matches('/'), tenant.trim())
}

/// The one scope of a resource: `{scheme}://{host[:port]}/.default` (path, query and default
/// port dropped).
pub fn scope_for(resource_url: &str) -> Result<String, String> {
    let url = url::Url::parse(resource_url.trim()).map_err(|e| format!("{resource_url} is not a URL ({e})"))?;
    if url.host_str().is_none() || !matches!(url.scheme(), "https" | "http") {
        return Err(format!("{resource_url} is not an http(s) URL with a host"));
    }
    Ok(format!("{}/.default", url.origin().ascii_serialization()))
}

/// Whether `host` has the shape of a Dataverse / Dynamics 365 environment host:
/// `{org}.crm{n}.{cloud}` where `crm{n}` is `crm` plus an optional region number and the cloud
/// is Microsoft's commercial (`dynamics.com`), China (`dynamics.cn`) or a sovereign cloud
/// (`microsoftdynamics.de`, `microsoftdynamics.us`, `appsplatform.us`). Checked by pattern:
/// new regions (`crm22`) pass without a change here.
pub fn is_dataverse_host(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    let Some(crm) = labels.iter().rposition(|l| l.strip_prefix("crm").is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))) else {
        return false;
    };
    let cloud = labels[crm + 1..].join(".");
    let org = &labels[..crm];
    let label_ok =
        |l: &&str| !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-') && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    !org.is_empty()
        && org.iter().all(label_ok)
        && matches!(cloud.as_str(), "dynamics.com" | "dynamics.cn" | "microsoftdynamics.de" | "microsoftdynamics.us" | "appsplatform.us")
}

/// The claims of an Entra client assertion.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AssertionClaims {
    pub aud: String,
    pub iss: String,
    pub sub: String,
    pub jti: String,
    pub nbf: i64,
    pub iat: i64,
    pub exp: i64,
}

impl AssertionClaims {
    /// `aud` = the token URL, `iss` = `sub` = the client id, a random `jti`, valid from now for
    /// [`ASSERTION_LIFETIME_SECS`].
    pub fn new(client_id: &str, token_url: &str, now_unix: i64) -> AssertionClaims {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).expect("the operating system's random source");
        AssertionClaims {
            aud: token_url.to_string(),
            iss: client_id.to_string(),
            sub: client_id.to_string(),
            jti: uuid_string(nonce),
            nbf: now_unix,
            iat: now_unix,
            exp: now_unix + ASSERTION_LIFETIME_SECS,
        }
    }
}

/// 16 random bytes as an RFC 4122 version 4 UUID string (what MSAL uses as `jti`).
pub(crate) fn uuid_string(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// A signed assertion for `client_id` at `token_url`: PS256, header with `x5t#S256` and `x5t`.
pub fn assertion(signer: &AssertionSigner, certificate_der: &[u8], client_id: &str, token_url: &str, now_unix: i64) -> crate::Result<String> {
    signer.jwt(Alg::Ps256, &HeaderExtras::for_certificate(certificate_der), &AssertionClaims::new(client_id, token_url, now_unix))
}

/// How the app authenticates to Entra ID.
#[derive(Debug, Clone, Copy)]
pub enum ClientAuth<'a> {
    /// A certificate registered on the app: a PS256 assertion signed with its key.
    Certificate { signer: &'a AssertionSigner, certificate_der: &'a [u8] },
    /// A client secret's value.
    Secret(&'a SecretString),
}

pub use crate::oauth::Token;

/// What SharePoint says about the site.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SiteInfo {
    #[serde(rename = "Title")]
    pub title: String,
}

/// Who a token acts as in a Dataverse environment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WhoAmI {
    #[serde(rename = "UserId")]
    pub user_id: String,
    #[serde(rename = "BusinessUnitId")]
    pub business_unit_id: String,
    #[serde(rename = "OrganizationId")]
    pub organization_id: String,
}

/// Which service a resource URL belongs to (for the words of a failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    SharePoint,
    Dataverse,
    Dynamics365,
}

impl ResourceKind {
    /// The setting's name as people see it.
    pub fn url_label(self) -> &'static str {
        match self {
            ResourceKind::SharePoint => "SharePoint site URL",
            ResourceKind::Dataverse => "Dataverse environment URL",
            ResourceKind::Dynamics365 => "Dynamics 365 environment URL",
        }
    }

    pub fn service(self) -> &'static str {
        match self {
            ResourceKind::SharePoint => "SharePoint",
            ResourceKind::Dataverse => "Dataverse",
            ResourceKind::Dynamics365 => "Dynamics 365",
        }
    }
}

/// What credential was used (for the words of a failure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialKind {
    Secret,
    /// The certificate's SHA-1 thumbprint, upper-case hex ([`crate::assertion::thumbprint_sha1_hex`]).
    Certificate {
        thumbprint_sha1: String,
    },
}

/// The connection a failure is explained for.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub resource: ResourceKind,
    /// The site URL or environment URL.
    pub resource_url: &'a str,
    pub tenant: &'a str,
    pub client_id: &'a str,
    pub authority_url: &'a str,
    pub credential: CredentialKind,
}

/// Why there is no token or no answer from the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Entra ID answered the token request with an OAuth error; `code` is the AADSTS number
    /// (from `error_codes`, else from the description).
    Refused { status: u16, error: String, description: String, code: Option<u32> },
    /// SharePoint or Dataverse refused the call: its status, its error code (Dataverse
    /// `0x80072560`, SharePoint `-2147024891, System.UnauthorizedAccessException`) and message.
    Resource { status: u16, code: Option<String>, message: String },
    /// 5xx, after the retries.
    Unavailable { status: u16, attempts: usize },
    /// No answer (after the retries), or an address connvault refuses to call.
    Unreachable { error: OutboundError, attempts: usize },
    /// An answer that is not what Microsoft sends.
    Unexpected(String),
    /// The connection is not ready to ask (no tenant, no client id, no certificate).
    NotReady { detail: String, advice: String },
}

/// The AADSTS number of an Entra error: the first of `error_codes`, else `AADSTSnnnn` at the
/// start of (or anywhere in) the description.
pub fn aadsts_code(body: &Value, description: &str) -> Option<u32> {
    if let Some(code) = body.get("error_codes").and_then(Value::as_array).and_then(|a| a.first()).and_then(Value::as_u64) {
        return u32::try_from(code).ok();
    }
    let at = description.find("AADSTS")? + "AADSTS".len();
    let digits: String = description[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

impl From<oauth::Failure> for Failure {
    fn from(f: oauth::Failure) -> Failure {
        match f {
            oauth::Failure::Refused { status, error, description, body } => {
                let code = aadsts_code(&serde_json::from_str(&body).unwrap_or(Value::Null), &description);
                Failure::Refused { status, error, description, code }
            }
            oauth::Failure::Unavailable { status, attempts } => Failure::Unavailable { status, attempts },
            oauth::Failure::Unreachable { error, attempts } => Failure::Unreachable { error, attempts },
            oauth::Failure::Unexpected(what) => Failure::Unexpected(what),
        }
    }
}

impl From<SendFailure> for Failure {
    fn from(f: SendFailure) -> Failure {
        match f {
            SendFailure::Unavailable { status, attempts } => Failure::Unavailable { status, attempts },
            SendFailure::Unreachable { error, attempts } => Failure::Unreachable { error, attempts },
        }
    }
}

/// Entra's description up to its trace block ("Trace ID: …"), which helps no one fix anything.
fn without_trace(description: &str) -> &str {
    let cut = description.find("Trace ID:").unwrap_or(description.len());
    description[..cut].trim_end()
}

const APP: &str = "In the Microsoft Entra admin center, open App registrations → the app";

impl Failure {
    /// Whether asking again later, unchanged, may work.
    pub fn is_transient(&self) -> bool {
        matches!(self, Failure::Unavailable { .. }) || matches!(self, Failure::Unreachable { error, .. } if !error.is_refused())
    }

    /// The failure in plain words: what Microsoft said (with the AADSTS code), and the setting
    /// to change.
    pub fn explain(&self, c: &Context<'_>) -> TestResult {
        let (detail, advice) = match self {
            Failure::Refused { error, description, code, .. } => {
                let said = match code {
                    Some(code) if !description.contains(&format!("AADSTS{code}")) => {
                        format!("Entra ID refused the token request (AADSTS{code}, {error}): {}", without_trace(description))
                    }
                    _ => format!("Entra ID refused the token request ({error}): {}", without_trace(description)),
                };
                (said, self.token_advice(c))
            }
            Failure::Resource { status, code, message } => {
                let code_text = code.as_deref().map(|c| format!(" {c}")).unwrap_or_default();
                let said = format!("{} answered HTTP {status}{code_text}: {message}", c.resource.service());
                (said, resource_advice(c, *status, code.as_deref(), message))
            }
            Failure::Unavailable { status, attempts } => (
                format!("Microsoft answered {status} to {attempts} attempts"),
                "Microsoft's service is unavailable right now (see status.cloud.microsoft); connvault will try again later, nothing needs changing here."
                    .to_string(),
            ),
            Failure::Unreachable { error, attempts } => (
                if error.is_refused() || *attempts <= 1 { error.to_string() } else { format!("{error} ({attempts} attempts)") },
                error.advice().unwrap_or_else(|| format!("check the authority URL {} and the {} {}", c.authority_url, c.resource.url_label(), c.resource_url)),
            ),
            Failure::Unexpected(what) => (
                format!("the answer is not what Microsoft sends ({what})"),
                format!(
                    "check that the authority URL {} is Entra ID's (https://login.microsoftonline.com for the public cloud) and that the {} {} is right",
                    c.authority_url,
                    c.resource.url_label(),
                    c.resource_url
                ),
            ),
            Failure::NotReady { detail, advice } => (detail.clone(), advice.clone()),
        };
        TestResult::failed(detail, advice)
    }

    fn token_advice(&self, c: &Context<'_>) -> String {
        let Failure::Refused { code, error, .. } = self else { return String::new() };
        let (tenant, client) = (c.tenant, c.client_id);
        let service = c.resource.service();
        match code {
            Some(700016) => format!(
                "Entra ID has no application with client ID {client} in tenant {tenant}. {APP} → Overview, copy the Application (client) ID, and check \
                 that the Directory (tenant) ID there is {tenant}: the tenant must be the one where the app is registered. A new registration can take a \
                 few minutes to become usable."
            ),
            Some(90002) => format!(
                "Entra ID has no tenant {tenant} at {authority}. Set the tenant to the Directory (tenant) ID (a GUID, Entra admin center → Overview) or \
                 the tenant's domain such as contoso.onmicrosoft.com, and check the authority URL: https://login.microsoftonline.com for the public cloud, \
                 https://login.microsoftonline.us for US Government, https://login.chinacloudapi.cn for Microsoft Azure operated by 21Vianet.",
                authority = c.authority_url
            ),
            Some(700027) => match &c.credential {
                CredentialKind::Certificate { thumbprint_sha1 } => format!(
                    "The app does not have this connection's certificate. {APP} → Certificates & secrets → Certificates → Upload certificate, and upload \
                     this connection's certificate (download it from the connection); the portal then lists it with the thumbprint {thumbprint_sha1}. If a \
                     certificate with that thumbprint is listed already, check that the client ID {client} is that app's."
                ),
                CredentialKind::Secret => format!("{APP} → Certificates & secrets and upload the certificate whose key signs for this connection."),
            },
            Some(7000215) => format!(
                "The client secret is wrong. {APP} → Certificates & secrets → Client secrets: paste the secret's Value (shown only once, right after \
                 it is created), not its Secret ID. If the Value is lost, create a new secret and paste its Value here."
            ),
            Some(7000222) => format!(
                "The client secret has expired. {APP} → Certificates & secrets → Client secrets → New client secret, paste the new secret's Value here, \
                 and delete the expired one (or switch this connection to a certificate, which connvault renews for you)."
            ),
            Some(500011) => format!(
                "Entra ID found no {service} resource for {scope} in tenant {tenant}: the {label} {url} is wrong, or {service} is not part of this tenant. \
                 Check the {label} (copy it from {where_}) and that the tenant is the one {service} belongs to.",
                scope = scope_for(c.resource_url).unwrap_or_else(|_| c.resource_url.to_string()),
                label = c.resource.url_label(),
                url = c.resource_url,
                where_ = if c.resource == ResourceKind::SharePoint {
                    "the browser's address bar on the site, such as https://contoso.sharepoint.com/sites/Sales"
                } else {
                    "the Power Platform admin center → Environments → the environment → Environment URL"
                },
            ),
            Some(65001) => format!(
                "The app's API permissions have no admin consent. {APP} → API permissions: add {perms}, then an admin clicks \"Grant admin consent for \
                 the tenant\" (status must read Granted).",
                perms = if c.resource == ResourceKind::SharePoint {
                    "SharePoint → Application permissions → Sites.Selected (plus the site grant) or Sites.FullControl.All"
                } else {
                    "the permission the call needs"
                }
            ),
            Some(700024) => "Entra ID found the assertion outside its time range (not yet valid or expired), so this server's clock is off. Synchronise \
                             the connvault server's clock (NTP) and test again."
                .to_string(),
            Some(other) => format!(
                "Check the app registration {client} in tenant {tenant}; Entra's words above name what it objects to (look up AADSTS{other} at \
                 https://login.microsoftonline.com/error?code={other})."
            ),
            None => format!("Check the app registration {client} in tenant {tenant}; Entra's answer above ({error}) names what it objects to."),
        }
    }
}

/// Advice for a refusal by SharePoint or Dataverse.
fn resource_advice(c: &Context<'_>, status: u16, code: Option<&str>, message: &str) -> String {
    let m = message.to_ascii_lowercase();
    let scope = scope_for(c.resource_url).unwrap_or_else(|_| c.resource_url.to_string());
    let label = c.resource.url_label();
    let url = c.resource_url;
    let client = c.client_id;
    match (c.resource, status) {
        (ResourceKind::SharePoint, 401) if m.contains("unsupported app only token") => format!(
            "SharePoint app-only access needs a certificate: a token obtained with a client secret is refused by SharePoint's REST API. Use this \
             connection's certificate: {APP} → Certificates & secrets → Certificates → Upload certificate{}.",
            match &c.credential {
                CredentialKind::Certificate { thumbprint_sha1 } => format!(" (thumbprint {thumbprint_sha1})"),
                CredentialKind::Secret => String::new(),
            }
        ),
        (ResourceKind::SharePoint, 401) if m.contains("issuer") || m.contains("signature") || m.contains("audience") => format!(
            "SharePoint did not accept the token's audience: a token for this site must be requested with the scope {scope} (the site's own host). \
             Check the {label} {url} (such as https://contoso.sharepoint.com/sites/Sales) and that tenant {} is the tenant this SharePoint belongs to.",
            c.tenant
        ),
        (_, 401) => format!(
            "{} did not accept the token (expired or not meant for it): test again for a new one; if it persists, check that the {label} {url} is the \
             resource the tenant {} serves (scope {scope}).",
            c.resource.service(),
            c.tenant
        ),
        (ResourceKind::SharePoint, 403) => format!(
            "The app has no permission on the site {url}. With Sites.Selected, admin consent alone grants nothing: an admin also grants the app a role \
             on this site with Microsoft Graph, POST https://graph.microsoft.com/v1.0/sites/{{site-id}}/permissions with \
             {{\"roles\":[\"write\"],\"grantedToIdentities\":[{{\"application\":{{\"id\":\"{client}\"}}}}]}} (or with PnP: Grant-PnPAzureADAppSitePermission). \
             Sites.FullControl.All with admin consent also works, for every site."
        ),
        (ResourceKind::SharePoint, 404) => format!("SharePoint has no site at {url}: check the {label} (open the site in a browser and copy its address)."),
        (_, 403) if code.is_some_and(|c| c.eq_ignore_ascii_case("0x80072560")) || m.contains("not a member of the organization") => format!(
            "The environment has no application user for the app {client}. In the Power Platform admin center: Environments → the environment → \
             Settings → Users + permissions → Application users → New app user → choose the app ({client}) and the business unit → add a security \
             role (for example Basic User plus the roles the integration needs) → Create."
        ),
        (_, 403) => format!(
            "The application user of app {client} lacks a privilege: in the Power Platform admin center → Environments → the environment → Settings → \
             Users + permissions → Application users → the app → Edit security roles, add a role that grants it."
        ),
        (_, 404) => format!(
            "{} has no Web API at {url}: check the {label} (Power Platform admin center → Environments → the environment → Environment URL).",
            c.resource.service()
        ),
        _ => format!("check the {label} {url}; {}'s words above name the problem", c.resource.service()),
    }
}

/// One client-credentials token for `scope` from `{authority_url}/{tenant}/oauth2/v2.0/token`.
/// A certificate signs a fresh PS256 assertion for every attempt.
pub async fn client_credentials(
    out: &Outbound,
    authority_url: &str,
    tenant: &str,
    client_id: &str,
    scope: &str,
    auth: ClientAuth<'_>,
) -> Result<Token, Failure> {
    let tenant = tenant.trim();
    let client_id = client_id.trim();
    if tenant.is_empty() || !tenant.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-') {
        return Err(Failure::NotReady {
            detail: if tenant.is_empty() { "no tenant is set".into() } else { format!("the tenant {tenant:?} is neither a GUID nor a domain") },
            advice:
                "set the tenant to the Directory (tenant) ID from the Entra admin center (Overview), or the tenant's domain such as contoso.onmicrosoft.com"
                    .into(),
        });
    }
    if client_id.is_empty() {
        return Err(Failure::NotReady {
            detail: "no client ID is set".into(),
            advice: "set the client ID to the app registration's Application (client) ID (Entra admin center → App registrations → the app → Overview)".into(),
        });
    }
    let url = token_url(authority_url, tenant);
    let result = oauth::client_credentials(out, &url, client_id, &[scope], || match auth {
        ClientAuth::Secret(secret) => Ok(oauth::ClientAuth::SecretInBody(secret)),
        ClientAuth::Certificate { signer, certificate_der } => assertion(signer, certificate_der, client_id, &url, chrono::Utc::now().timestamp())
            .map(oauth::ClientAuth::Assertion)
            .map_err(|e| oauth::Failure::Unexpected(format!("the assertion could not be signed: {e}"))),
    })
    .await;
    result.map_err(Failure::from)
}

/// A GET with the bearer token, retried like the token request.
async fn get_with_token(out: &Outbound, url: &str, token: &Token, headers: &[(&'static str, &'static str)]) -> Result<OutboundResponse, Failure> {
    let url = out.parse_url(url).map_err(|error| Failure::Unreachable { error, attempts: 0 })?;
    let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.access_token.expose_secret()))
        .map_err(|_| Failure::Unexpected("the access token is not header-safe".into()))?;
    auth.set_sensitive(true);
    let response = oauth::send_with_retries(out, || {
        let mut request = reqwest::Request::new(Method::GET, url.clone());
        request.headers_mut().insert(AUTHORIZATION, auth.clone());
        for (name, value) in headers {
            request.headers_mut().insert(*name, HeaderValue::from_static(*value));
        }
        request
    })
    .await?;
    Ok(response)
}

/// The service's refusal: its error code and message, from whichever shape it uses
/// (`{"error":{"code","message"}}`, `{"odata.error":{"code","message":{"value"}}}`,
/// `{"error_description"}`), else the start of the body; secrets scrubbed.
fn resource_failure(response: &OutboundResponse, token: &Token) -> Failure {
    let secret = [token.access_token.expose_secret()];
    let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    let text = |v: Option<&Value>| v.and_then(|v| v.as_str().map(str::to_string).or_else(|| v.get("value").and_then(Value::as_str).map(str::to_string)));
    let error = body.get("error").filter(|e| e.is_object()).or_else(|| body.get("odata.error"));
    let code = error.and_then(|e| text(e.get("code"))).or_else(|| body.get("error").and_then(Value::as_str).map(str::to_string));
    let mut message = error
        .and_then(|e| text(e.get("message")))
        .or_else(|| text(body.get("error_description")))
        .unwrap_or_else(|| outbound::snippet(&response.body, 200, &secret));
    if message.is_empty() {
        // Dataverse's 401 has no body; its reason is in WWW-Authenticate.
        message = response
            .headers
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|h| h.to_str().ok())
            .map(|h| format!("(no body; WWW-Authenticate: {h})"))
            .unwrap_or_else(|| "(no body)".into());
    }
    Failure::Resource { status: response.status.as_u16(), code: code.map(|c| outbound::scrub(&c, &secret)), message: outbound::scrub(&message, &secret) }
}

/// `GET {site_url}/_api/web?$select=Title`: the site's title, or why not.
pub async fn sharepoint_site(out: &Outbound, site_url: &str, token: &Token) -> Result<SiteInfo, Failure> {
    let url = format!("{}/_api/web?$select=Title", site_url.trim().trim_end_matches('/'));
    let response = get_with_token(out, &url, token, &[("accept", SHAREPOINT_ACCEPT)]).await?;
    if response.status == StatusCode::OK {
        return response.json().map_err(|e| Failure::Unexpected(format!("SharePoint's answer: {e}")));
    }
    Err(resource_failure(&response, token))
}

/// `GET {environment_url}/api/data/v9.2/WhoAmI`: the application user, or why not.
pub async fn dataverse_whoami(out: &Outbound, environment_url: &str, token: &Token) -> Result<WhoAmI, Failure> {
    let url = format!("{}{DATAVERSE_API}/WhoAmI", environment_url.trim().trim_end_matches('/'));
    let headers = [("accept", "application/json"), ("odata-maxversion", "4.0"), ("odata-version", "4.0")];
    let response = get_with_token(out, &url, token, &headers).await?;
    if response.status == StatusCode::OK {
        return response.json().map_err(|e| Failure::Unexpected(format!("Dataverse's answer: {e}")));
    }
    Err(resource_failure(&response, token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn token_url_and_scope() {
        assert_eq!(
            token_url("https://login.microsoftonline.com/", "contoso.onmicrosoft.com"),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(scope_for("https://contoso.sharepoint.com/sites/Sales").unwrap(), "https://contoso.sharepoint.com/.default");
        assert_eq!(scope_for("https://contoso.crm4.dynamics.com/").unwrap(), "https://contoso.crm4.dynamics.com/.default");
        assert_eq!(scope_for("https://contoso.crm4.dynamics.com:443/x?y").unwrap(), "https://contoso.crm4.dynamics.com/.default");
        assert_eq!(scope_for("http://127.0.0.1:8080/sites/A").unwrap(), "http://127.0.0.1:8080/.default");
        assert!(scope_for("contoso.sharepoint.com").is_err());
        assert!(scope_for("mailto:a@b.c").is_err());
    }

    #[test]
    fn dataverse_hosts_by_pattern() {
        for ok in [
            "contoso.crm.dynamics.com",
            "contoso.crm4.dynamics.com",
            "org1a2b.crm11.dynamics.com",
            "contoso.crm22.dynamics.com",
            "CONTOSO.CRM4.DYNAMICS.COM.",
            "contoso.crm9.dynamics.com",
            "contoso.crm.microsoftdynamics.us",
            "contoso.crm.appsplatform.us",
            "contoso.crm.dynamics.cn",
            "contoso.crm.microsoftdynamics.de",
            "my-org.crm4.dynamics.com",
        ] {
            assert!(is_dataverse_host(ok), "{ok}");
        }
        for bad in [
            "crm4.dynamics.com",
            "contoso.dynamics.com",
            "contoso.crmx.dynamics.com",
            "contoso.crm4.dynamics.com.evil.com",
            "contoso.crm4.evil.com",
            "evil.com",
            "contoso.sharepoint.com",
            "-x.crm4.dynamics.com",
            "a..crm4.dynamics.com",
            "a_b.crm4.dynamics.com",
            "",
        ] {
            assert!(!is_dataverse_host(bad), "{bad}");
        }
    }

    #[test]
    fn aadsts_codes_come_from_error_codes_or_the_description() {
        assert_eq!(aadsts_code(&json!({"error_codes": [7000215]}), "AADSTS1: x"), Some(7000215));
        assert_eq!(aadsts_code(&Value::Null, "AADSTS700016: Application with identifier 'x' was not found"), Some(700016));
        assert_eq!(aadsts_code(&Value::Null, "no code here"), None);
        assert_eq!(without_trace("AADSTS90002: Tenant 'x' not found.\r\nTrace ID: abc\r\nCorrelation ID: def"), "AADSTS90002: Tenant 'x' not found.");
    }

    #[test]
    fn assertion_claims_are_short_lived_and_unique() {
        let a = AssertionClaims::new("app", "https://login/t/oauth2/v2.0/token", 1000);
        let b = AssertionClaims::new("app", "https://login/t/oauth2/v2.0/token", 1000);
        assert_ne!(a.jti, b.jti);
        assert_eq!((a.iss.as_str(), a.sub.as_str(), a.nbf, a.iat, a.exp), ("app", "app", 1000, 1000, 1300));
        assert_eq!(a.jti.len(), 36);
        assert_eq!(&a.jti[14..15], "4");
    }
}
