//! An in-process stand-in for Microsoft: Entra ID's v2.0 token endpoint (client credentials with
//! a certificate assertion or a client secret), a SharePoint Online host (`/_api/web`) and a
//! Dataverse environment (`/api/data/v9.2/WhoAmI`).
//!
//! Why it exists: connvault's Entra client must be tested against something that answers like
//! Microsoft does (status, error shapes, the AADSTS codes of `shared/reference/providers.md`),
//! or the tests prove nothing. It is also what `connvault dev-microsoft` serves for local demos
//! ([`run_demo`]), with a page where a person plays the Entra admin.
//!
//! What it models: tenants ([`Tenant`]: GUID and domain; the first is the home tenant, where
//! the SharePoint host and the Dataverse environment live), app registrations
//! ([`AppRegistration`]: client id, certificates, client secrets with optional expiry, admin
//! consent), SharePoint sites with the apps granted on them ([`Site`]), Dataverse application
//! users, and the access tokens it issued (opaque, remembered with tenant, app, audience, how
//! the app authenticated, expiry). The token endpoint, SharePoint and Dataverse listen on three
//! ports of 127.0.0.1, so their origins (and token audiences) differ as on the real thing.
//!
//! Check order of the token endpoint: tenant (90002), grant type, client (700016), credential
//! (assertion: format, algorithm, `iss`/`sub`, certificate by `x5t#S256` or `x5t` and signature
//! 700027, `aud`, time range 700024; secret: value 7000215, expiry 7000222), scope (500011),
//! consent for SharePoint (65001). Where Entra's behaviour is not documented, the choice made is
//! written next to the code. Bad input never panics and never answers 500.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State as Shared};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use serde_json::{json, Value};

use crate::assertion::{x5t, x5t_s256};
use crate::oauth::JWT_BEARER_ASSERTION_TYPE;
use crate::standin::{ct_eq, html, parse_jwt, random_chars};

/// Default access-token lifetime (Entra's is 60–90 minutes; `expires_in` 3599 is typical).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3599);
/// Clock skew Entra tolerates on an assertion's `nbf` and `exp` (5 minutes).
pub const CLOCK_SKEW_SECS: i64 = 300;
const JSON: &str = "application/json; charset=utf-8";

/// A directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant {
    /// Directory (tenant) ID, a GUID.
    pub id: String,
    /// Its initial domain, e.g. `contoso.onmicrosoft.com`.
    pub domain: String,
}

/// A client secret as Entra keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientSecret {
    pub value: String,
    /// Seconds since the epoch; `None` never expires.
    pub expires_at: Option<i64>,
}

/// An app registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppRegistration {
    /// Application (client) ID, a GUID.
    pub client_id: String,
    pub display_name: String,
    /// Certificates uploaded under Certificates & secrets (DER; RSA, at least 2048 bits).
    pub certificates: Vec<Vec<u8>>,
    pub secrets: Vec<ClientSecret>,
    /// "Grant admin consent" was clicked for its API permissions.
    pub consent_granted: bool,
}

impl AppRegistration {
    /// A new registration with a random client id, no credentials, no consent.
    pub fn new(display_name: &str) -> AppRegistration {
        AppRegistration { client_id: guid(), display_name: display_name.to_string(), certificates: Vec::new(), secrets: Vec::new(), consent_granted: false }
    }
}

/// A SharePoint site of the home tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// Server-relative path, e.g. `/sites/Sales`.
    pub path: String,
    pub title: String,
    /// Client ids granted a role on the site (Sites.Selected's site permission).
    pub granted: BTreeSet<String>,
}

/// Where a spawned stand-in answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Urls {
    /// The `authority_url`: the token endpoint is `{authority_url}/{tenant}/oauth2/v2.0/token`.
    pub authority_url: String,
    /// The SharePoint host's base; sites are under it (`{sharepoint_url}/sites/Sales`).
    pub sharepoint_url: String,
    /// The Dataverse environment URL.
    pub dataverse_url: String,
}

/// How a token was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Secret,
    Certificate,
}

struct Registered {
    tenant_id: String,
    app: AppRegistration,
    /// Per certificate: `x5t`, `x5t#S256`, the PKCS#1 public key.
    keys: Vec<(String, String, Vec<u8>)>,
}

struct Issued {
    tenant_id: String,
    client_id: String,
    /// The resource origin the token is for (`http://127.0.0.1:PORT`).
    audience: String,
    via: Via,
    expires: Instant,
}

struct State {
    tenants: Vec<Tenant>,
    apps: Vec<Registered>,
    sites: Vec<Site>,
    /// client id → Dataverse user id of its application user.
    app_users: HashMap<String, String>,
    business_unit_id: String,
    organization_id: String,
    urls: Option<Urls>,
    tokens: HashMap<String, Issued>,
    token_lifetime: Duration,
    clock_offset: i64,
    fail: Option<(usize, u16)>,
    token_requests: usize,
    sharepoint_calls: usize,
    dataverse_calls: usize,
    assertions: Vec<Value>,
}

/// The stand-in. Cheap to clone (shared state), so a test keeps a handle while it serves.
#[derive(Clone)]
pub struct StandIn {
    state: Arc<Mutex<State>>,
}

impl Default for StandIn {
    fn default() -> Self {
        Self::new()
    }
}

impl StandIn {
    /// A stand-in with one (home) tenant, `contoso.onmicrosoft.com` with a random id, and no
    /// apps, sites or application users.
    pub fn new() -> StandIn {
        StandIn {
            state: Arc::new(Mutex::new(State {
                tenants: vec![Tenant { id: guid(), domain: "contoso.onmicrosoft.com".into() }],
                apps: Vec::new(),
                sites: Vec::new(),
                app_users: HashMap::new(),
                business_unit_id: guid(),
                organization_id: guid(),
                urls: None,
                tokens: HashMap::new(),
                token_lifetime: DEFAULT_TOKEN_LIFETIME,
                clock_offset: 0,
                fail: None,
                token_requests: 0,
                sharepoint_calls: 0,
                dataverse_calls: 0,
                assertions: Vec::new(),
            })),
        }
    }

    /// A poisoned lock only means another handler panicked; the state is still usable.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The tenant that holds the SharePoint host and the Dataverse environment.
    pub fn home_tenant(&self) -> Tenant {
        self.lock().tenants[0].clone()
    }

    /// Another tenant (random id), without SharePoint or Dataverse.
    pub fn add_tenant(&self, domain: &str) -> Tenant {
        let tenant = Tenant { id: guid(), domain: domain.to_string() };
        self.lock().tenants.push(tenant.clone());
        tenant
    }

    /// Registers an app in `tenant` (id or domain). Refused, with the reason, for an unknown
    /// tenant, a client id in use, or a certificate that is not an RSA X.509 certificate of at
    /// least 2048 bits.
    pub fn add_app(&self, tenant: &str, app: AppRegistration) -> Result<(), String> {
        let mut st = self.lock();
        let tenant_id = find_tenant(&st.tenants, tenant).ok_or_else(|| format!("no tenant {tenant}"))?.id.clone();
        if app.client_id.trim().is_empty() || st.apps.iter().any(|a| a.app.client_id.eq_ignore_ascii_case(&app.client_id)) {
            return Err(format!("the client id {:?} is empty or taken", app.client_id));
        }
        let keys = keys_of(&app)?;
        st.apps.push(Registered { tenant_id, app, keys });
        Ok(())
    }

    /// Changes a registration in place (certificates, secrets, consent), as an admin would.
    pub fn update_app(&self, client_id: &str, change: impl FnOnce(&mut AppRegistration)) -> Result<(), String> {
        let mut st = self.lock();
        let slot = st.apps.iter_mut().find(|a| a.app.client_id == client_id).ok_or_else(|| format!("no app {client_id}"))?;
        let mut app = slot.app.clone();
        change(&mut app);
        if app.client_id != client_id {
            return Err("the client id of an app cannot change".into());
        }
        slot.keys = keys_of(&app)?;
        slot.app = app;
        Ok(())
    }

    /// The registrations, in order.
    pub fn apps(&self) -> Vec<AppRegistration> {
        self.lock().apps.iter().map(|a| a.app.clone()).collect()
    }

    /// Adds a site (path like `/sites/Sales`) to the SharePoint host.
    pub fn add_site(&self, path: &str, title: &str) {
        let path = format!("/{}", path.trim_matches('/'));
        self.lock().sites.push(Site { path, title: title.to_string(), granted: BTreeSet::new() });
    }

    /// Grants the app a role on the site (Graph's `POST /sites/{id}/permissions`). Returns
    /// whether the site exists.
    pub fn grant_site(&self, path: &str, client_id: &str) -> bool {
        let path = format!("/{}", path.trim_matches('/'));
        let mut st = self.lock();
        match st.sites.iter_mut().find(|s| s.path.eq_ignore_ascii_case(&path)) {
            Some(site) => {
                site.granted.insert(client_id.to_string());
                true
            }
            None => false,
        }
    }

    /// Creates the Dataverse application user of an app; returns its user id.
    pub fn add_application_user(&self, client_id: &str) -> String {
        self.lock().app_users.entry(client_id.to_string()).or_insert_with(guid).clone()
    }

    /// The environment's `BusinessUnitId` and `OrganizationId`.
    pub fn dataverse_ids(&self) -> (String, String) {
        let st = self.lock();
        (st.business_unit_id.clone(), st.organization_id.clone())
    }

    /// The URLs once [`spawn`](Self::spawn)ed.
    pub fn urls(&self) -> Option<Urls> {
        self.lock().urls.clone()
    }

    /// The next `n` requests (to any of the three listeners) answer `status` without looking
    /// at the request.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.lock().fail = (n > 0).then_some((n, status));
    }

    /// Lifetime of the tokens issued from now on (`expires_in`).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.lock().token_lifetime = lifetime;
    }

    /// Shifts the stand-in's clock for assertion checks by `seconds` (to provoke 700024).
    pub fn set_clock_offset(&self, seconds: i64) {
        self.lock().clock_offset = seconds;
    }

    /// Forgets every issued token: SharePoint and Dataverse then answer 401.
    pub fn revoke_all_tokens(&self) {
        self.lock().tokens.clear();
    }

    /// POSTs that reached a token endpoint, failed ones included.
    pub fn token_requests(&self) -> usize {
        self.lock().token_requests
    }

    /// Requests that reached SharePoint or Dataverse.
    pub fn resource_calls(&self) -> usize {
        let st = self.lock();
        st.sharepoint_calls + st.dataverse_calls
    }

    pub fn sharepoint_calls(&self) -> usize {
        self.lock().sharepoint_calls
    }

    pub fn dataverse_calls(&self) -> usize {
        self.lock().dataverse_calls
    }

    /// Every client assertion that parsed as a JWT (whatever the outcome, forced failures
    /// included), oldest first, as `{"header": {...}, "claims": {...}}`.
    pub fn assertions(&self) -> Vec<Value> {
        self.lock().assertions.clone()
    }

    fn authority_routes() -> Router<StandIn> {
        Router::new().route("/{tenant}/oauth2/v2.0/token", post(token_endpoint))
    }

    /// The three routers: authority, SharePoint, Dataverse.
    fn routers(&self) -> (Router, Router, Router) {
        (
            Self::authority_routes().with_state(self.clone()),
            Router::new().fallback(sharepoint_endpoint).with_state(self.clone()),
            Router::new().route("/api/data/v9.2/WhoAmI", get(whoami_endpoint)).with_state(self.clone()),
        )
    }

    /// Binds three ports of 127.0.0.1, serves in tokio tasks and returns the URLs.
    pub async fn spawn(&self) -> std::io::Result<Urls> {
        let (authority, sharepoint, dataverse) = self.routers();
        self.serve_all(std::net::Ipv4Addr::LOCALHOST.into(), tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?, authority, sharepoint, dataverse).await
    }

    /// Adopts `authority` (and two more ports on `ip`) and serves the three routers in tasks.
    async fn serve_all(&self, ip: std::net::IpAddr, authority: tokio::net::TcpListener, a: Router, sp: Router, dv: Router) -> std::io::Result<Urls> {
        let sharepoint = tokio::net::TcpListener::bind((ip, 0)).await?;
        let dataverse = tokio::net::TcpListener::bind((ip, 0)).await?;
        let url = |l: &tokio::net::TcpListener| -> std::io::Result<String> {
            let mut addr = l.local_addr()?;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            Ok(format!("http://{addr}"))
        };
        let urls = Urls { authority_url: url(&authority)?, sharepoint_url: url(&sharepoint)?, dataverse_url: url(&dataverse)? };
        self.lock().urls = Some(urls.clone());
        for (listener, router) in [(authority, a), (sharepoint, sp), (dataverse, dv)] {
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, router).await {
                    tracing::warn!("Microsoft stand-in stopped: {e}");
                }
            });
        }
        Ok(urls)
    }

    /// The token exchange, in the check order of the module documentation.
    fn exchange(&self, tenant: &str, headers: &HeaderMap, form: &[u8]) -> Result<Value, EntraError> {
        let mut p: HashMap<String, String> = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(form) {
            // The first value of each parameter counts.
            p.entry(k.into_owned()).or_insert_with(|| v.into_owned());
        }
        let mut st = self.lock();
        let now = chrono::Utc::now().timestamp() + st.clock_offset;
        let authority = st.urls.as_ref().map(|u| u.authority_url.clone()).unwrap_or_default();
        let Some(t) = find_tenant(&st.tenants, tenant).cloned() else {
            return Err(EntraError::new(
                "invalid_request",
                90002,
                format!(
                    "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with \
                     your subscription administrator, this may happen if there are no active subscriptions for the tenant."
                ),
            ));
        };
        if p.get("grant_type").map(String::as_str) != Some("client_credentials") {
            return Err(EntraError::new("unsupported_grant_type", 70003, "The app requested an unsupported grant type.".into()));
        }
        // client_secret_basic: `Basic base64(urlencode(id):urlencode(secret))`.
        let basic = headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok()).and_then(|h| {
            let (scheme, value) = h.trim().split_once(' ')?;
            if !scheme.eq_ignore_ascii_case("basic") {
                return None;
            }
            let decoded = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(value.trim()).ok()?).ok()?;
            let (id, secret) = decoded.split_once(':')?;
            let unescape = |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
            Some((unescape(id)?, unescape(secret)?))
        });
        let client_id = p.get("client_id").cloned().or_else(|| basic.as_ref().map(|(id, _)| id.clone()));
        let Some(client_id) = client_id.filter(|c| !c.is_empty()) else {
            return Err(EntraError::new("invalid_request", 900144, "The request body must contain the following parameter: 'client_id'.".into()));
        };
        let found = st.apps.iter().find(|a| a.tenant_id == t.id && a.app.client_id.eq_ignore_ascii_case(&client_id));
        let Some((app, keys)) = found.map(|a| (a.app.clone(), a.keys.clone())) else {
            return Err(EntraError::new(
                "unauthorized_client",
                700016,
                format!(
                    "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been \
                     installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication \
                     request to the wrong tenant.",
                    t.domain
                ),
            ));
        };
        let secret = p.get("client_secret").cloned().or_else(|| basic.map(|(_, s)| s));
        let via = match (p.get("client_assertion"), secret) {
            (Some(_), Some(_)) => {
                return Err(EntraError::new("invalid_request", 90014, "Send either client_assertion or client_secret, not both.".into()));
            }
            (None, None) => {
                return Err(EntraError::new(
                    "invalid_client",
                    7000218,
                    "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.".into(),
                ));
            }
            (None, Some(secret)) => {
                let client = &app.client_id;
                // A secret with the right value counts; Entra checks the value first, then
                // that one: an expired secret is named as expired.
                match app.secrets.iter().find(|s| !s.value.is_empty() && ct_eq(&s.value, &secret)) {
                    None => {
                        return Err(EntraError::new(
                            "invalid_client",
                            7000215,
                            format!(
                                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the \
                                 client secret ID, for a secret added to app '{client}'."
                            ),
                        ));
                    }
                    Some(s) if s.expires_at.is_some_and(|e| e <= now) => {
                        return Err(EntraError::new(
                            "invalid_client",
                            7000222,
                            format!(
                                "The provided client secret keys for app '{client}' are expired. Visit the Azure portal to create new keys for your \
                                 app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: \
                                 https://aka.ms/certCreds."
                            ),
                        ));
                    }
                    Some(_) => Via::Secret,
                }
            }
            (Some(assertion), None) => {
                if p.get("client_assertion_type").map(String::as_str) != Some(JWT_BEARER_ASSERTION_TYPE) {
                    return Err(EntraError::new(
                        "invalid_request",
                        50027,
                        format!("Invalid JWT token. 'client_assertion_type' must be '{JWT_BEARER_ASSERTION_TYPE}'."),
                    ));
                }
                let jwt = parse_jwt(assertion).ok_or_else(|| EntraError::new("invalid_client", 50027, "JWT token is invalid or malformed.".into()))?;
                let (header, claims) = (jwt.header.clone(), jwt.claims.clone());
                let reg_client = app.client_id.clone();
                let alg = match header.get("alg").and_then(Value::as_str) {
                    Some("PS256") => jsonwebtoken::Algorithm::PS256,
                    Some("RS256") => jsonwebtoken::Algorithm::RS256,
                    other => {
                        return Err(EntraError::new(
                            "invalid_client",
                            5002738,
                            format!("Invalid JWT token. '{}' is not a supported signature algorithm.", other.unwrap_or("(none)")),
                        ));
                    }
                };
                let str_claim = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or_default().to_string();
                if !str_claim("iss").eq_ignore_ascii_case(&reg_client) || !str_claim("sub").eq_ignore_ascii_case(&reg_client) {
                    return Err(EntraError::new(
                        "invalid_client",
                        700021,
                        "Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at \
                         https://docs.microsoft.com/en-us/azure/active-directory/develop/active-directory-certificate-credentials ."
                            .into(),
                    ));
                }
                // The certificate: by `x5t#S256` when present, else by `x5t`.
                let s256 = header.get("x5t#S256").and_then(Value::as_str);
                let sha1 = header.get("x5t").and_then(Value::as_str);
                let key = match (s256, sha1) {
                    (Some(t), _) => keys.iter().find(|k| k.1 == t),
                    (None, Some(t)) => keys.iter().find(|k| k.0 == t),
                    (None, None) => None,
                };
                let shown = s256.or(sha1).unwrap_or("(none)");
                let Some((_, _, public_key)) = key else {
                    return Err(EntraError::new(
                        "invalid_client",
                        700027,
                        format!(
                            "Client assertion failed signature validation. [Reason - The key was not found., Thumbprint of key used by client: \
                             '{shown}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id \
                             '{reg_client}'.]"
                        ),
                    ));
                };
                let key = jsonwebtoken::DecodingKey::from_rsa_der(public_key);
                if !matches!(jsonwebtoken::crypto::verify(jwt.signature, jwt.signing_input.as_bytes(), &key, alg), Ok(true)) {
                    return Err(EntraError::new(
                        "invalid_client",
                        700027,
                        format!("Client assertion contains an invalid signature. [Reason - The provided signature value did not match the expected signature value., Thumbprint of key used by client: '{shown}']"),
                    ));
                }
                // `aud`: this token endpoint, with the tenant as in the request, or its id or
                // domain (a documented choice: Entra accepts the tenant in either form).
                let aud = str_claim("aud");
                let accepted = [tenant, t.id.as_str(), t.domain.as_str()].map(|x| format!("{authority}/{x}/oauth2/v2.0/token"));
                if !accepted.iter().any(|a| a.eq_ignore_ascii_case(&aud)) {
                    return Err(EntraError::new(
                        "invalid_client",
                        50027,
                        format!("Invalid JWT token. The audience '{aud}' of the client assertion is not this token endpoint ({}).", accepted[0]),
                    ));
                }
                let (Some(exp), nbf) = (claims.get("exp").and_then(Value::as_i64), claims.get("nbf").and_then(Value::as_i64)) else {
                    return Err(EntraError::new("invalid_client", 50027, "Invalid JWT token. The client assertion has no 'exp' claim.".into()));
                };
                if exp + CLOCK_SKEW_SECS <= now || nbf.is_some_and(|n| n - CLOCK_SKEW_SECS > now) {
                    return Err(EntraError::new(
                        "invalid_client",
                        700024,
                        format!(
                            "Client assertion is not within its valid time range. Current time: {}, assertion valid from {}, expiry time of \
                             assertion {}. Review the documentation at https://docs.microsoft.com/en-us/azure/active-directory/develop/active-directory-certificate-credentials .",
                            iso(now),
                            nbf.map(iso).unwrap_or_else(|| "(not set)".into()),
                            iso(exp)
                        ),
                    ));
                }
                Via::Certificate
            }
        };
        // One resource, as `{origin}/.default`.
        let scope = p.get("scope").map(|s| s.trim().to_string()).unwrap_or_default();
        if scope.is_empty() {
            return Err(EntraError::new("invalid_request", 900144, "The request body must contain the following parameter: 'scope'.".into()));
        }
        let Some(resource) = scope.strip_suffix("/.default").filter(|r| !r.contains(' ')) else {
            return Err(EntraError::new(
                "invalid_scope",
                1002012,
                format!("The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."),
            ));
        };
        let resource = resource.trim_end_matches('/').to_string();
        let (sp, dv) = st.urls.as_ref().map(|u| (u.sharepoint_url.clone(), u.dataverse_url.clone())).unwrap_or_default();
        let home = t.id == st.tenants[0].id;
        let is_sp = resource.eq_ignore_ascii_case(&sp);
        if !home || !(is_sp || resource.eq_ignore_ascii_case(&dv)) {
            return Err(EntraError::new(
                "invalid_resource",
                500011,
                format!(
                    "The resource principal named {resource} was not found in the tenant named {}. This can happen if the application has not been \
                     installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication \
                     request to the wrong tenant.",
                    t.domain
                ),
            ));
        }
        // Dataverse needs no API permission (the application user authorises); SharePoint does.
        if is_sp && !app.consent_granted {
            return Err(EntraError::new(
                "invalid_grant",
                65001,
                format!(
                    "The user or administrator has not consented to use the application with ID '{}' named '{}'. Send an interactive authorization \
                     request for this user and resource.",
                    app.client_id, app.display_name
                ),
            ));
        }
        let issued = Issued { tenant_id: t.id.clone(), client_id: app.client_id.clone(), audience: resource, via, expires: Instant::now() + st.token_lifetime };
        let lifetime = st.token_lifetime.as_secs();
        let access_token = random_token();
        st.tokens.insert(access_token.clone(), issued);
        Ok(json!({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": access_token}))
    }

    /// The token behind `Authorization: Bearer …`, if known and not expired.
    fn bearer(&self, headers: &HeaderMap) -> Result<(String, String, String, Via), &'static str> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.trim().split_once(' ').filter(|(s, _)| s.eq_ignore_ascii_case("bearer")).map(|(_, t)| t.trim().to_string()))
            .ok_or("Invalid JWT token. No token in the Authorization header.")?;
        let mut st = self.lock();
        let issued = st.tokens.get(&token).ok_or("Invalid JWT token. Could not parse the token.")?;
        if issued.expires <= Instant::now() {
            st.tokens.remove(&token);
            return Err("Invalid JWT token. The token is expired.");
        }
        Ok((issued.tenant_id.clone(), issued.client_id.clone(), issued.audience.clone(), issued.via))
    }
}

/// An Entra refusal: `error`, AADSTS code and message.
#[derive(Debug)]
struct EntraError {
    error: &'static str,
    code: u32,
    message: String,
}

impl EntraError {
    fn new(error: &'static str, code: u32, message: String) -> EntraError {
        EntraError { error, code, message }
    }

    /// Entra's body: `error_description` = "AADSTSnnnn: message" + trace block, and the same
    /// ids and time as separate fields.
    fn response(&self, authority: &str) -> Response {
        let (trace, correlation) = (guid(), guid());
        let timestamp = chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string();
        let body = json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {timestamp}",
                self.code, self.message
            ).replace(" Trace ID:", "\r\nTrace ID:").replace(" Correlation ID:", "\r\nCorrelation ID:").replace(" Timestamp:", "\r\nTimestamp:"),
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": format!("{authority}/error?code={}", self.code),
        });
        json_response(StatusCode::BAD_REQUEST, body.to_string())
    }
}

fn find_tenant<'a>(tenants: &'a [Tenant], name: &str) -> Option<&'a Tenant> {
    tenants.iter().find(|t| t.id.eq_ignore_ascii_case(name) || t.domain.eq_ignore_ascii_case(name))
}

fn keys_of(app: &AppRegistration) -> Result<Vec<(String, String, Vec<u8>)>, String> {
    use x509_parser::public_key::PublicKey;
    app.certificates
        .iter()
        .map(|der| {
            let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| format!("a certificate does not parse as X.509: {e}"))?;
            match cert.public_key().parsed() {
                Ok(PublicKey::RSA(rsa)) if rsa.key_size() >= 2048 => {}
                Ok(PublicKey::RSA(rsa)) => return Err(format!("the certificate's RSA key has {} bits; at least 2048 are needed", rsa.key_size())),
                _ => return Err("the certificate's key is not RSA".into()),
            }
            Ok((x5t(der), x5t_s256(der), cert.public_key().subject_public_key.data.to_vec()))
        })
        .collect()
}

fn iso(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0).map(|t| t.format("%m/%d/%Y %H:%M:%S").to_string()).unwrap_or_else(|| unix.to_string())
}

/// A random version 4 GUID.
pub fn guid() -> String {
    let mut b = [0u8; 16];
    rand::fill(&mut b);
    super::uuid_string(b)
}

fn random_token() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    format!("eyJ0eXAiOiJKV1Qi.{}", random_chars(300, ALPHABET))
}

/// A forced failure: 503/500 with Entra's transient-error body, anything else a short text.
fn json_response(status: StatusCode, body: String) -> Response {
    crate::standin::json_response(status, JSON, body)
}

fn forced(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    if code.is_server_error() {
        let body = json!({"error": "temporarily_unavailable", "error_description": "AADSTS90033: A transient error has occurred. Please try again.", "error_codes": [90033]});
        return json_response(code, body.to_string());
    }
    (code, code.canonical_reason().unwrap_or("error")).into_response()
}

/// Counts the request and takes one forced failure, if any are left.
fn arrive(standin: &StandIn, counter: fn(&mut State) -> &mut usize) -> Option<u16> {
    let mut st = standin.lock();
    *counter(&mut *st) += 1;
    let (n, status) = st.fail?;
    st.fail = (n > 1).then_some((n - 1, status));
    Some(status)
}

/// The body is read as form fields whatever the Content-Type says.
async fn token_endpoint(Shared(standin): Shared<StandIn>, Path(tenant): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    // Every assertion that arrives is recorded, forced failures included, so that tests see
    // what a client sends on each attempt.
    let assertion = url::form_urlencoded::parse(&body).find(|(k, _)| k == "client_assertion").map(|(_, v)| v.into_owned());
    if let Some(jwt) = assertion.as_deref().and_then(parse_jwt) {
        let mut st = standin.lock();
        if st.assertions.len() < 10_000 {
            st.assertions.push(json!({"header": jwt.header, "claims": jwt.claims}));
        }
    }
    if let Some(status) = arrive(&standin, |s| &mut s.token_requests) {
        return forced(status);
    }
    let authority = standin.urls().map(|u| u.authority_url).unwrap_or_default();
    match standin.exchange(&tenant, &headers, &body) {
        Ok(answer) => json_response(StatusCode::OK, answer.to_string()),
        Err(e) => e.response(&authority),
    }
}

/// SharePoint's 401: the reason in `error_description` and a `WWW-Authenticate` challenge.
fn sharepoint_401(tenant: &str, reason: &str) -> Response {
    let mut r = json_response(StatusCode::UNAUTHORIZED, json!({"error_description": reason}).to_string());
    let challenge = format!(
        "Bearer realm=\"{tenant}\",client_id=\"00000003-0000-0ff1-ce00-000000000000\",trusted_issuers=\"00000001-0000-0000-c000-000000000000@*\",authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\""
    );
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

fn odata_error(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(status, json!({"odata.error": {"code": code, "message": {"lang": "en-US", "value": message}}}).to_string())
}

/// `GET {site}/_api/web`: the site's title, after the checks in the module documentation.
async fn sharepoint_endpoint(Shared(standin): Shared<StandIn>, uri: Uri, headers: HeaderMap) -> Response {
    if let Some(status) = arrive(&standin, |s| &mut s.sharepoint_calls) {
        return forced(status);
    }
    let home = standin.home_tenant().id;
    let Some(site_path) = uri.path().strip_suffix("/_api/web").map(|p| if p.is_empty() { "/".to_string() } else { p.to_string() }) else {
        return odata_error(StatusCode::NOT_FOUND, "-2147024894, System.IO.FileNotFoundException", "File Not Found.");
    };
    let (_, client_id, audience, via) = match standin.bearer(&headers) {
        Ok(t) => t,
        Err(reason) => return sharepoint_401(&home, reason),
    };
    let own = standin.urls().map(|u| u.sharepoint_url).unwrap_or_default();
    if !audience.eq_ignore_ascii_case(&own) {
        return sharepoint_401(&home, "Invalid issuer or signature.");
    }
    if via == Via::Secret {
        return sharepoint_401(&home, "Unsupported app only token.");
    }
    let st = standin.lock();
    let Some(site) = st.sites.iter().find(|s| s.path.eq_ignore_ascii_case(site_path.trim_end_matches('/'))) else {
        return odata_error(StatusCode::NOT_FOUND, "-2147024894, System.IO.FileNotFoundException", "File Not Found.");
    };
    if !site.granted.iter().any(|c| c.eq_ignore_ascii_case(&client_id)) {
        return odata_error(
            StatusCode::FORBIDDEN,
            "-2147024891, System.UnauthorizedAccessException",
            "Access denied. You do not have permission to perform this action or access this resource.",
        );
    }
    json_response(StatusCode::OK, json!({"Title": site.title}).to_string())
}

/// `GET /api/data/v9.2/WhoAmI`: 401 (empty body, as Dataverse) for a token that is unknown,
/// expired or for another audience; 403 0x80072560 without an application user.
async fn whoami_endpoint(Shared(standin): Shared<StandIn>, headers: HeaderMap) -> Response {
    if let Some(status) = arrive(&standin, |s| &mut s.dataverse_calls) {
        return forced(status);
    }
    let own = standin.urls().map(|u| u.dataverse_url).unwrap_or_default();
    let unauthorized = || {
        let mut r = StatusCode::UNAUTHORIZED.into_response();
        let challenge = format!("Bearer authorization_uri=https://login.microsoftonline.com/{}/oauth2/authorize, resource_id={own}/", standin.home_tenant().id);
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        r
    };
    let client_id = match standin.bearer(&headers) {
        Ok((_, client_id, audience, _)) if audience.eq_ignore_ascii_case(&own) => client_id,
        _ => return unauthorized(),
    };
    let st = standin.lock();
    let Some(user_id) = st.app_users.iter().find(|(c, _)| c.eq_ignore_ascii_case(&client_id)).map(|(_, u)| u.clone()) else {
        return json_response(
            StatusCode::FORBIDDEN,
            json!({"error": {"code": "0x80072560", "message": "The user is not a member of the organization."}}).to_string(),
        );
    };
    let body = json!({
        "@odata.context": format!("{own}/api/data/v9.2/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse"),
        "BusinessUnitId": st.business_unit_id,
        "UserId": user_id,
        "OrganizationId": st.organization_id,
    });
    json_response(StatusCode::OK, body.to_string())
}

// ---------------------------------------------------------------- demo admin page

const DEMO_TITLE: &str = "connvault Microsoft stand-in — for local demos, not Microsoft";
/// The site every demo app is granted on.
pub const DEMO_SITE: &str = "/sites/Demo";

/// Serves the stand-in with its admin page on `addr` (SharePoint and Dataverse on two more
/// ports of the same address) until the process ends, printing the URLs to stdout: what
/// `connvault dev-microsoft` runs for local demos.
pub async fn run_demo(addr: SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let standin = StandIn::new();
    standin.add_site(DEMO_SITE, "Demo");
    let (_, sharepoint, dataverse) = standin.routers();
    let demo = StandIn::authority_routes().route("/", get(demo_page)).route("/apps", post(demo_add_app)).with_state(standin.clone());
    let urls = standin.serve_all(addr.ip(), listener, demo, sharepoint, dataverse).await?;
    let tenant = standin.home_tenant();
    println!("connvault Microsoft stand-in (for local demos, not Microsoft): {}/", urls.authority_url);
    println!("  authority URL: {}   tenant: {} ({})", urls.authority_url, tenant.id, tenant.domain);
    println!("  SharePoint site URL: {}{DEMO_SITE}   Dataverse environment URL: {}", urls.sharepoint_url, urls.dataverse_url);
    std::future::pending::<()>().await;
    Ok(())
}

async fn demo_page(Shared(standin): Shared<StandIn>) -> Response {
    html(StatusCode::OK, render_demo(&standin, None))
}

/// The admin's "New registration" + "Upload certificate" + consent + site grant + application
/// user, in one form; the answer shows the tenant ID and the new client ID.
async fn demo_add_app(Shared(standin): Shared<StandIn>, body: Bytes) -> Response {
    let mut name = String::new();
    let mut certificate = String::new();
    for (k, v) in url::form_urlencoded::parse(&body) {
        match k.as_ref() {
            "name" => name = v.trim().to_string(),
            "certificate" => certificate = v.into_owned(),
            _ => {}
        }
    }
    if name.is_empty() {
        return html(StatusCode::BAD_REQUEST, render_demo(&standin, Some(Err("Enter a name for the app.".into()))));
    }
    let der = match crate::assertion::certificate_der_from_pem(&certificate) {
        Ok(der) => der,
        Err(e) => return html(StatusCode::BAD_REQUEST, render_demo(&standin, Some(Err(format!("The certificate was refused: {e}"))))),
    };
    let mut app = AppRegistration::new(&name);
    app.certificates.push(der);
    app.consent_granted = true;
    let client_id = app.client_id.clone();
    let tenant = standin.home_tenant().id;
    if let Err(e) = standin.add_app(&tenant, app) {
        return html(StatusCode::BAD_REQUEST, render_demo(&standin, Some(Err(format!("The certificate was refused: {e}")))));
    }
    standin.grant_site(DEMO_SITE, &client_id);
    standin.add_application_user(&client_id);
    html(StatusCode::OK, render_demo(&standin, Some(Ok(client_id))))
}

fn render_demo(standin: &StandIn, outcome: Option<Result<String, String>>) -> String {
    let e = crate::standin::escape_html;
    let tenant = standin.home_tenant();
    let urls = standin.urls().unwrap_or(Urls { authority_url: String::new(), sharepoint_url: String::new(), dataverse_url: String::new() });
    let mut page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}\
         code,textarea{{word-break:break-all}} textarea{{width:100%}} table{{border-collapse:collapse}}\
         td,th{{border:1px solid #999;padding:.3rem;vertical-align:top}} .ok{{background:#e6ffe6;padding:1rem}}\
         .err{{background:#ffe6e6;padding:1rem}}</style></head><body>\n<h1>{title}</h1>\n\
         <p>This page plays the Entra ID admin of one made-up tenant, <code>{domain}</code>. Directory (tenant) ID: \
         <code id=\"tenant-id\">{tenant}</code>. Authority URL: <code>{authority}</code>; token endpoint: \
         <code>{authority}/{tenant}/oauth2/v2.0/token</code>. SharePoint site URL: <code>{sp}{site}</code>. \
         Dataverse environment URL: <code>{dv}</code>.</p>\n",
        title = e(DEMO_TITLE),
        domain = e(&tenant.domain),
        tenant = e(&tenant.id),
        authority = e(&urls.authority_url),
        sp = e(&urls.sharepoint_url),
        site = e(DEMO_SITE),
        dv = e(&urls.dataverse_url),
    );
    match outcome {
        Some(Ok(client_id)) => page.push_str(&format!(
            "<div class=\"ok\" role=\"status\"><p>App registered, certificate uploaded, admin consent granted, the app granted on {site} and \
             added as a Dataverse application user.</p><p>Directory (tenant) ID: <code>{tenant}</code><br>Application (client) ID: \
             <code id=\"client-id\">{client}</code></p><p>Give both to connvault.</p></div>\n",
            site = e(DEMO_SITE),
            tenant = e(&tenant.id),
            client = e(&client_id)
        )),
        Some(Err(msg)) => page.push_str(&format!("<div class=\"err\" role=\"alert\"><p>{}</p></div>\n", e(&msg))),
        None => {}
    }
    page.push_str(
        "<h2>New app registration</h2>\n<form method=\"post\" action=\"/apps\">\n\
         <p><label for=\"name\">Name</label><br><input id=\"name\" name=\"name\" type=\"text\" size=\"50\" required \
         placeholder=\"connvault integration\"></p>\n\
         <p><label for=\"certificate\">Certificate (PEM, from connvault's request)</label><br>\
         <textarea id=\"certificate\" name=\"certificate\" rows=\"12\" required \
         placeholder=\"-----BEGIN CERTIFICATE-----\"></textarea></p>\n\
         <p><button type=\"submit\">Register and show the client ID</button></p>\n</form>\n",
    );
    let st = standin.lock();
    page.push_str("<h2>App registrations</h2>\n");
    if st.apps.is_empty() {
        page.push_str("<p>None yet.</p>\n");
    } else {
        page.push_str("<table><tr><th>Name</th><th>Application (client) ID</th><th>Certificate thumbprints (SHA-1)</th></tr>\n");
        for a in &st.apps {
            let prints: Vec<String> = a.app.certificates.iter().map(|d| e(&crate::assertion::thumbprint_sha1_hex(d))).collect();
            page.push_str(&format!(
                "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>\n",
                e(&a.app.display_name),
                e(&a.app.client_id),
                prints.join("<br>")
            ));
        }
        page.push_str("</table>\n");
    }
    page.push_str("</body></html>\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entra_errors_carry_the_code_twice_and_a_trace_block() {
        let r = EntraError::new("invalid_client", 7000215, "Invalid client secret provided.".into()).response("http://127.0.0.1:1");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(r.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("application/json"));
        let body: Value = serde_json::from_slice(&axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap()).unwrap();
        assert_eq!(body["error"], "invalid_client");
        assert_eq!(body["error_codes"], json!([7000215]));
        let d = body["error_description"].as_str().unwrap();
        assert!(d.starts_with("AADSTS7000215: Invalid client secret provided.\r\nTrace ID: "), "{d}");
        assert!(d.contains(body["trace_id"].as_str().unwrap()) && d.contains(body["correlation_id"].as_str().unwrap()));
        assert!(d.contains(&format!("Timestamp: {}", body["timestamp"].as_str().unwrap())));
        assert_eq!(body["error_uri"], "http://127.0.0.1:1/error?code=7000215");
    }

    #[test]
    fn guids_are_version_4() {
        let g = guid();
        assert_eq!(g.len(), 36);
        assert_eq!(g.matches('-').count(), 4);
        assert_eq!(&g[14..15], "4");
        assert_ne!(guid(), g);
    }

    #[test]
    fn the_demo_page_escapes_what_people_type() {
        let s = StandIn::new();
        let mut app = AppRegistration::new("<script>alert(1)</script>");
        app.client_id = "c\"><b>".into();
        s.add_app(&s.home_tenant().id, app).unwrap();
        let page = render_demo(&s, Some(Err("<img src=x>".into())));
        assert!(!page.contains("<script>alert") && !page.contains("<img src=x>") && !page.contains("c\"><b>"), "{page}");
        assert!(page.contains("&lt;script&gt;") && page.contains("&lt;img src=x&gt;"));
    }

    #[tokio::test]
    async fn the_demo_registers_an_app_ready_for_sharepoint_and_dataverse() {
        use tower::ServiceExt;
        let s = StandIn::new();
        s.add_site(DEMO_SITE, "Demo");
        let router = StandIn::authority_routes().route("/", get(demo_page)).route("/apps", post(demo_add_app)).with_state(s.clone());
        let issued = crate::certs::issue(2048, "Demo", "DEV", time::OffsetDateTime::now_utc()).unwrap();
        let form =
            url::form_urlencoded::Serializer::new(String::new()).append_pair("name", "Demo <app>").append_pair("certificate", &issued.certificate_pem).finish();
        let post_form = |body: String| {
            axum::http::Request::post("/apps").header(header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(axum::body::Body::from(body)).unwrap()
        };
        let r = router.clone().oneshot(post_form(form)).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let page = String::from_utf8(axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap();
        let apps = s.apps();
        assert_eq!(apps.len(), 1);
        let app = &apps[0];
        assert!(page.contains(&format!("<code id=\"client-id\">{}</code>", app.client_id)) && page.contains(&s.home_tenant().id), "{page}");
        assert!(page.contains("Demo &lt;app&gt;"), "the name is escaped: {page}");
        assert!(app.consent_granted && app.certificates.len() == 1);
        assert!(s.lock().sites[0].granted.contains(&app.client_id));
        assert!(s.lock().app_users.contains_key(&app.client_id));

        let bad = url::form_urlencoded::Serializer::new(String::new()).append_pair("name", "x").append_pair("certificate", "<b>not a cert</b>").finish();
        let r = router.oneshot(post_form(bad)).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let page = String::from_utf8(axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap();
        assert!(page.contains("The certificate was refused") && !page.contains("<b>not"), "{page}");
        assert_eq!(s.apps().len(), 1);
    }
}
