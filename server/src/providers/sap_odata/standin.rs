//! An in-process stand-in for an SAP OData v2 service (`API_BUSINESS_PARTNER` under
//! `/sap/opu/odata/sap/`) and an XSUAA-style OAuth 2.0 token endpoint (`POST /oauth/token`).
//!
//! Why it exists: connvault's SAP client must be tested against something that answers as SAP
//! does (the `$metadata` EDMX, the CSRF fetch and check with its cookies, the statuses of
//! `shared/reference/providers.md`), or the tests prove nothing. It is also what
//! `connvault dev-sap` serves for local demos ([`run_demo`]).
//!
//! What it checks, for real: Basic credentials of the users it knows, the `APIKey` header,
//! Bearer tokens it issued (unexpired), the client ID and secret of a token request sent as HTTP
//! Basic (URL-encoded, as RFC 6749 says; credentials in the body are refused so that a test
//! proves connvault sends Basic), and for every POST, PUT, PATCH, MERGE and DELETE a CSRF token
//! that belongs to the session cookie sent with it and to the same user; otherwise 403 with
//! `X-CSRF-Token: Required`, as SAP answers. Check order as on SAP: authentication (401)
//! before the service lookup (404) before the service authorization (403).
//!
//! Switches for tests: a user or API key whose role lacks the service (403), single sign-on in
//! front of everything (a 200 HTML sign-in page), a proxy that drops the CSRF token from
//! answers, expiring every CSRF session
//! ([`StandIn::expire_csrf_tokens`]); it records the `sap-client` of every service request.
//! Where SAP's exact words are not documented (the 403's message), the stand-in says what it
//! means. Bad input never panics and never answers 500.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State as Shared;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::standin::{ct_eq, escape_html, html, json_response, random_chars};

/// The one service it serves.
pub const SERVICE: &str = "API_BUSINESS_PARTNER";
/// Where OData v2 services live on an SAP Gateway.
pub const ODATA_ROOT: &str = "/sap/opu/odata/sap/";
pub const TOKEN_PATH: &str = "/oauth/token";
/// `POST` ends every token and session ([`StandIn::expire_tokens`]): for demos and browser tests.
pub const EXPIRE_PATH: &str = "/stand-in/expire";
/// The session cookie of system CV1, client 100 (SAP names it `SAP_SESSIONID_<SID>_<client>`).
pub const SESSION_COOKIE: &str = "SAP_SESSIONID_CV1_100";
/// XSUAA's default access-token lifetime (12 hours less a second).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(43_199);
/// The entity sets of its `$metadata`: name, entity type, key property.
pub const ENTITY_SETS: &[(&str, &str, &str)] = &[
    ("A_BusinessPartner", "A_BusinessPartnerType", "BusinessPartner"),
    ("A_BusinessPartnerAddress", "A_BusinessPartnerAddressType", "AddressID"),
    ("A_BusinessPartnerBank", "A_BusinessPartnerBankType", "BankIdentification"),
    ("A_BusinessPartnerContact", "A_BusinessPartnerContactType", "RelationshipNumber"),
    ("A_BusinessPartnerRole", "A_BusinessPartnerRoleType", "BusinessPartnerRole"),
    ("A_Customer", "A_CustomerType", "Customer"),
    ("A_Supplier", "A_SupplierType", "Supplier"),
];
const PARTNERS: &str = "A_BusinessPartner";
const XML: &str = "application/xml; charset=utf-8";
const JSON: &str = "application/json; charset=utf-8";

/// Where a spawned stand-in answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Urls {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// The service root, with its trailing `/`.
    pub service_url: String,
    pub token_url: String,
}

struct Account {
    secret: String,
    /// Its role (or communication arrangement) includes the service.
    authorized: bool,
}

struct OAuthClient {
    secret: String,
    /// The client may use the client-credentials grant.
    client_credentials: bool,
}

struct Issued {
    client_id: String,
    expires: Instant,
}

/// A security session: who it belongs to and its CSRF token.
struct SapSession {
    principal: String,
    csrf_token: String,
}

#[derive(Default)]
struct Counters {
    token_requests: usize,
    csrf_fetches: usize,
    writes: usize,
    refused_writes: usize,
}

struct State {
    /// By upper-case user name (SAP user names are not case-sensitive).
    users: HashMap<String, Account>,
    /// API keys, in the order added (the principal is "API key N", never the key).
    api_keys: Vec<Account>,
    clients: HashMap<String, OAuthClient>,
    tokens: HashMap<String, Issued>,
    sessions: HashMap<String, SapSession>,
    partners: Vec<Map<String, Value>>,
    next_partner: u64,
    sso: bool,
    /// A proxy in front drops `X-CSRF-Token` from the answers (the check stays on).
    drop_csrf_header: bool,
    sap_clients: Vec<Option<String>>,
    token_lifetime: Duration,
    urls: Option<Urls>,
    counters: Counters,
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

/// Who a request authenticated as.
struct Principal {
    name: String,
    authorized: bool,
}

impl StandIn {
    /// A stand-in with two business partners and no users, keys or clients.
    pub fn new() -> StandIn {
        let partner = |id: &str, name: &str| {
            Map::from_iter([
                ("BusinessPartner".to_string(), json!(id)),
                ("BusinessPartnerCategory".to_string(), json!("2")),
                ("BusinessPartnerFullName".to_string(), json!(name)),
            ])
        };
        StandIn {
            state: Arc::new(Mutex::new(State {
                users: HashMap::new(),
                api_keys: Vec::new(),
                clients: HashMap::new(),
                tokens: HashMap::new(),
                sessions: HashMap::new(),
                partners: vec![partner("1000000", "Acme Corporation"), partner("1000001", "Globex GmbH")],
                next_partner: 1_000_002,
                sso: false,
                drop_csrf_header: false,
                sap_clients: Vec::new(),
                token_lifetime: DEFAULT_TOKEN_LIFETIME,
                urls: None,
                counters: Counters::default(),
            })),
        }
    }

    /// A poisoned lock only means another handler panicked; the state is still usable.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A user for Basic authentication; `authorized`: its role includes the service (else 403).
    pub fn add_user(&self, name: &str, password: &str, authorized: bool) {
        self.lock().users.insert(name.to_ascii_uppercase(), Account { secret: password.to_string(), authorized });
    }

    /// An API key for the `APIKey` header.
    pub fn add_api_key(&self, key: &str, authorized: bool) {
        self.lock().api_keys.push(Account { secret: key.to_string(), authorized });
    }

    /// An OAuth client; `client_credentials`: it may use that grant.
    pub fn add_client(&self, client_id: &str, secret: &str, client_credentials: bool) {
        self.lock().clients.insert(client_id.to_string(), OAuthClient { secret: secret.to_string(), client_credentials });
    }

    /// Single sign-on in front of the service: every service request gets a 200 HTML sign-in page.
    pub fn set_sso(&self, on: bool) {
        self.lock().sso = on;
    }

    /// A proxy in front of the service that drops the `X-CSRF-Token` header from answers: no
    /// token reaches the client, and writes are still checked (so they fail).
    pub fn set_drop_csrf_header(&self, on: bool) {
        self.lock().drop_csrf_header = on;
    }

    /// Ends every security session: the next write with an old CSRF token gets 403 Required.
    pub fn expire_csrf_tokens(&self) {
        self.lock().sessions.clear();
    }

    /// Ends every access token it issued and every security session, as when they time out:
    /// the next call with an old token gets 401.
    pub fn expire_tokens(&self) {
        let mut st = self.lock();
        st.tokens.clear();
        st.sessions.clear();
    }

    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.lock().token_lifetime = lifetime;
    }

    /// The `sap-client` query parameter of every service request so far, oldest first.
    pub fn sap_clients_seen(&self) -> Vec<Option<String>> {
        self.lock().sap_clients.clone()
    }

    pub fn token_requests(&self) -> usize {
        self.lock().counters.token_requests
    }

    /// GET or HEAD requests with `X-CSRF-Token: Fetch`.
    pub fn csrf_fetches(&self) -> usize {
        self.lock().counters.csrf_fetches
    }

    /// Writes that passed the CSRF check, and writes refused by it.
    pub fn writes(&self) -> (usize, usize) {
        let st = self.lock();
        (st.counters.writes, st.counters.refused_writes)
    }

    /// The business partners, as stored.
    pub fn partners(&self) -> Vec<Map<String, Value>> {
        self.lock().partners.clone()
    }

    pub fn urls(&self) -> Option<Urls> {
        self.lock().urls.clone()
    }

    fn router(&self) -> Router {
        Router::new().route(TOKEN_PATH, post(token_endpoint)).route(EXPIRE_PATH, post(expire_endpoint)).fallback(service_endpoint).with_state(self.clone())
    }

    /// Binds a port of 127.0.0.1, serves in a tokio task and returns the URLs.
    pub async fn spawn(&self) -> std::io::Result<Urls> {
        self.serve(tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?).await
    }

    async fn serve(&self, listener: tokio::net::TcpListener) -> std::io::Result<Urls> {
        let mut addr = listener.local_addr()?;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let base = format!("http://{addr}");
        let urls = Urls { service_url: format!("{base}{ODATA_ROOT}{SERVICE}/"), token_url: format!("{base}{TOKEN_PATH}"), base };
        self.lock().urls = Some(urls.clone());
        let router = self.router();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::warn!("SAP stand-in stopped: {e}");
            }
        });
        Ok(urls)
    }

    /// The credential of a service request, checked.
    fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, Response> {
        let mut st = self.lock();
        if let Some(key) = headers.get("apikey").and_then(|v| v.to_str().ok()) {
            return match st.api_keys.iter().position(|k| ct_eq(&k.secret, key)) {
                Some(i) => Ok(Principal { name: format!("API key {}", i + 1), authorized: st.api_keys[i].authorized }),
                None => Err(json_response(
                    StatusCode::UNAUTHORIZED,
                    JSON,
                    json!({"fault": {"faultstring": "Invalid ApiKey", "detail": {"errorcode": "oauth.v2.InvalidApiKey"}}}).to_string(),
                )),
            };
        }
        let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if let Some(token) = authorization.strip_prefix("Bearer ") {
            let now = Instant::now();
            st.tokens.retain(|_, t| t.expires > now);
            return match st.tokens.get(token.trim()) {
                Some(t) => Ok(Principal { name: format!("client {}", t.client_id), authorized: true }),
                None => Err(challenge("Bearer error=\"invalid_token\"")),
            };
        }
        if let Some((user, password)) = basic(authorization) {
            if let Some(account) = st.users.get(&user.to_ascii_uppercase()).filter(|a| ct_eq(&a.secret, &password)) {
                return Ok(Principal { name: user.to_ascii_uppercase(), authorized: account.authorized });
            }
        }
        Err(challenge("Basic realm=\"SAP NetWeaver Application Server [CV1/100]\""))
    }

    /// The session a request's cookie names, if it belongs to `principal`.
    fn session_of(&self, headers: &HeaderMap, principal: &str) -> Option<String> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let st = self.lock();
        st.sessions.get(&id).filter(|s| s.principal == principal).map(|_| id)
    }

    /// `X-CSRF-Token: Fetch`: the session's token, or a new session (and its cookies) for
    /// whoever asks without one.
    fn fetch_csrf(&self, headers: &HeaderMap, principal: &str, response: &mut Response) {
        let existing = self.session_of(headers, principal);
        let mut st = self.lock();
        st.counters.csrf_fetches += 1;
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let token = match existing.and_then(|id| st.sessions.get(&id).map(|s| s.csrf_token.clone())) {
            Some(token) => token,
            None => {
                let (id, token) = (random_chars(40, ALPHABET), format!("{}==", random_chars(22, ALPHABET)));
                st.sessions.insert(id.clone(), SapSession { principal: principal.to_string(), csrf_token: token.clone() });
                let h = response.headers_mut();
                for c in [format!("{SESSION_COOKIE}={id}; path=/; HttpOnly"), "sap-usercontext=sap-client=100; path=/".to_string()] {
                    if let Ok(v) = HeaderValue::from_str(&c) {
                        h.append(header::SET_COOKIE, v);
                    }
                }
                token
            }
        };
        if let Ok(v) = HeaderValue::from_str(&token) {
            response.headers_mut().insert("x-csrf-token", v);
        }
    }

    /// A write's CSRF check: the token must be the one of the session its cookie names.
    fn csrf_valid(&self, headers: &HeaderMap, principal: &str) -> bool {
        let sent = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let valid = self.session_of(headers, principal).is_some_and(|id| self.lock().sessions.get(&id).is_some_and(|s| ct_eq(&s.csrf_token, &sent)));
        let mut st = self.lock();
        if valid {
            st.counters.writes += 1;
        } else {
            st.counters.refused_writes += 1;
        }
        valid
    }
}

/// `Authorization: Basic` as `(user, password)`.
fn basic(authorization: &str) -> Option<(String, String)> {
    let encoded = authorization.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// 401 with a challenge, and SAP's logon-failure page.
fn challenge(scheme: &str) -> Response {
    let mut r = html(StatusCode::UNAUTHORIZED, "<html><head><title>Logon Error Message</title></head><body>Logon failed</body></html>".into());
    if let Ok(v) = HeaderValue::from_str(scheme) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// An OData v2 error in XML, as SAP Gateway answers by default.
fn odata_error(status: StatusCode, code: &str, message: &str) -> Response {
    let e = escape_html;
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><error xmlns=\"http://schemas.microsoft.com/ado/2007/08/dataservices/metadata\"><code>{}</code>\
         <message xml:lang=\"en\">{}</message></error>",
        e(code),
        e(message)
    );
    let mut r = (status, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(XML));
    r
}

fn token_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_response(status, JSON, json!({"error": error, "error_description": description}).to_string())
}

/// `POST /oauth/token`: client credentials, the client authenticated by HTTP Basic only.
async fn token_endpoint(Shared(standin): Shared<StandIn>, headers: HeaderMap, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let mut st = standin.lock();
    st.counters.token_requests += 1;
    let decode = |s: &str| url::form_urlencoded::parse(format!("v={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default();
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let client = basic(authorization).map(|(id, secret)| (decode(&id), decode(&secret)));
    let Some((client_id, _)) = client.filter(|(id, secret)| st.clients.get(id).is_some_and(|c| ct_eq(&c.secret, secret))) else {
        let mut r = token_error(StatusCode::UNAUTHORIZED, "unauthorized", "Bad credentials");
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"UAA/client\""));
        return r;
    };
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return token_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "Unsupported grant type");
    }
    if !st.clients.get(&client_id).is_some_and(|c| c.client_credentials) {
        return token_error(StatusCode::BAD_REQUEST, "unauthorized_client", "Unauthorized grant type: client_credentials");
    }
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let token = format!("eyJhbGciOiJSUzI1NiJ9.{}", random_chars(200, ALPHABET));
    let lifetime = st.token_lifetime;
    st.tokens.insert(token.clone(), Issued { client_id, expires: Instant::now() + lifetime });
    let answer =
        json!({"access_token": token, "token_type": "bearer", "expires_in": lifetime.as_secs(), "scope": "uaa.resource", "jti": random_chars(32, ALPHABET)});
    json_response(StatusCode::OK, JSON, answer.to_string())
}

/// Everything else: the OData service, in the check order of the module documentation.
async fn expire_endpoint(Shared(standin): Shared<StandIn>) -> Response {
    standin.expire_tokens();
    json_response(StatusCode::OK, JSON, json!({"expired": true}).to_string())
}

async fn service_endpoint(Shared(standin): Shared<StandIn>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let query: Vec<(String, String)> = url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
    let param = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let sso = {
        let mut st = standin.lock();
        if st.sap_clients.len() < 10_000 {
            st.sap_clients.push(param("sap-client"));
        }
        st.sso
    };
    if sso {
        return html(
            StatusCode::OK,
            "<!DOCTYPE html><html><head><title>Sign In</title></head><body><form method=\"post\" action=\"/saml2/idp/sso\">\
             <label>E-Mail or User Name <input name=\"j_username\"></label><label>Password <input name=\"j_password\" type=\"password\"></label>\
             <button>Continue</button></form></body></html>"
                .into(),
        );
    }
    let principal = match standin.authenticate(&headers) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let path = uri.path();
    let Some(rest) = path.get(..ODATA_ROOT.len()).filter(|p| p.eq_ignore_ascii_case(ODATA_ROOT)).map(|_| &path[ODATA_ROOT.len()..]) else {
        return html(StatusCode::NOT_FOUND, "<html><body>Service cannot be reached</body></html>".into());
    };
    let (service, resource) = rest.split_once('/').unwrap_or((rest, ""));
    if !service.eq_ignore_ascii_case(SERVICE) {
        return odata_error(StatusCode::NOT_FOUND, "/IWFND/MED/170", &format!("No service found for namespace '', name '{service}', version '0001'"));
    }
    if !principal.authorized {
        return odata_error(StatusCode::FORBIDDEN, "Forbidden", &format!("{} has no authorization to access service {SERVICE}", principal.name));
    }
    let method = method.as_str().to_ascii_uppercase();
    let reading = method == "GET" || method == "HEAD";
    if !reading {
        if !matches!(method.as_str(), "POST" | "PUT" | "PATCH" | "MERGE" | "DELETE") {
            return odata_error(StatusCode::METHOD_NOT_ALLOWED, "/IWFND/CM_MGW/004", &format!("Method {method} is not supported"));
        }
        if !standin.csrf_valid(&headers, &principal.name) {
            let mut r = (StatusCode::FORBIDDEN, "CSRF token validation failed").into_response();
            r.headers_mut().insert("x-csrf-token", HeaderValue::from_static("Required"));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
            return r;
        }
    }
    let json_wanted = param("$format").as_deref() == Some("json")
        || headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.to_ascii_lowercase().contains("application/json"));
    let base = standin.urls().map(|u| u.service_url).unwrap_or_default();
    let mut response = match (method.as_str(), resource) {
        (_, "") if reading => {
            let sets: Vec<&str> = ENTITY_SETS.iter().map(|(name, _, _)| *name).collect();
            json_response(StatusCode::OK, JSON, json!({"d": {"EntitySets": sets}}).to_string())
        }
        (_, "$metadata") if reading => {
            let mut r = (StatusCode::OK, metadata()).into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(XML));
            r
        }
        (_, "$metadata") => odata_error(StatusCode::METHOD_NOT_ALLOWED, "/IWFND/CM_MGW/004", "$metadata is read only"),
        _ if !json_wanted && !body.is_empty() && method != "DELETE" => odata_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "/IWFND/CM_MGW/004",
            "this stand-in reads and answers entity data in JSON only: send Accept: application/json",
        ),
        _ if !json_wanted && reading => odata_error(
            StatusCode::NOT_ACCEPTABLE,
            "/IWFND/CM_MGW/004",
            "this stand-in answers entity data in JSON only: send Accept: application/json or $format=json",
        ),
        _ => entities(&standin, &method, resource, &body, &base),
    };
    if reading && headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("fetch")) {
        standin.fetch_csrf(&headers, &principal.name, &mut response);
        if standin.lock().drop_csrf_header {
            response.headers_mut().remove("x-csrf-token");
        }
    }
    response
}

/// `A_BusinessPartner` and `A_BusinessPartner('ID')`: read, create, change, delete.
fn entities(standin: &StandIn, method: &str, resource: &str, body: &[u8], base: &str) -> Response {
    let not_found = || odata_error(StatusCode::NOT_FOUND, "/IWBEP/CM_MGW_RT/020", &format!("Resource not found for segment '{resource}'"));
    let (set, key) = match resource.split_once('(') {
        Some((set, rest)) => match rest.strip_suffix(')').map(|k| k.trim_matches('\'')) {
            Some(key) => (set, Some(key.to_string())),
            None => return not_found(),
        },
        None => (resource, None),
    };
    if set != PARTNERS {
        return match ENTITY_SETS.iter().any(|(name, _, _)| *name == set) {
            true if method == "GET" || method == "HEAD" => json_response(StatusCode::OK, JSON, json!({"d": {"results": []}}).to_string()),
            true => odata_error(StatusCode::NOT_IMPLEMENTED, "/IWBEP/CM_MGW_RT/021", &format!("{set} is read only in this stand-in")),
            false => not_found(),
        };
    }
    let with_metadata = |p: &Map<String, Value>| {
        let mut p = p.clone();
        let id = p.get("BusinessPartner").and_then(Value::as_str).unwrap_or_default().to_string();
        p.insert("__metadata".into(), json!({"uri": format!("{base}{PARTNERS}('{id}')"), "type": format!("{SERVICE}.A_BusinessPartnerType")}));
        Value::Object(p)
    };
    let mut st = standin.lock();
    let position = key.as_ref().and_then(|k| st.partners.iter().position(|p| p.get("BusinessPartner").and_then(Value::as_str) == Some(k.as_str())));
    let no_content = || StatusCode::NO_CONTENT.into_response();
    let parsed = || serde_json::from_slice::<Map<String, Value>>(body).ok();
    match (method, key.is_some(), position) {
        ("GET" | "HEAD", false, _) => {
            let results: Vec<Value> = st.partners.iter().map(with_metadata).collect();
            json_response(StatusCode::OK, JSON, json!({"d": {"results": results}}).to_string())
        }
        ("GET" | "HEAD", true, Some(i)) => json_response(StatusCode::OK, JSON, json!({"d": with_metadata(&st.partners[i])}).to_string()),
        ("POST", false, _) => {
            let Some(mut partner) = parsed() else {
                return odata_error(StatusCode::BAD_REQUEST, "/IWBEP/CM_MGW_RT/022", "The request body is not a JSON object");
            };
            partner.remove("__metadata");
            let id = st.next_partner.to_string();
            st.next_partner += 1;
            partner.insert("BusinessPartner".into(), json!(id));
            st.partners.push(partner.clone());
            let mut r = json_response(StatusCode::CREATED, JSON, json!({"d": with_metadata(&partner)}).to_string());
            if let Ok(v) = HeaderValue::from_str(&format!("{base}{PARTNERS}('{id}')")) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        ("PUT" | "PATCH" | "MERGE", true, Some(i)) => {
            let Some(change) = parsed() else {
                return odata_error(StatusCode::BAD_REQUEST, "/IWBEP/CM_MGW_RT/022", "The request body is not a JSON object");
            };
            for (k, v) in change.into_iter().filter(|(k, _)| k != "BusinessPartner" && k != "__metadata") {
                st.partners[i].insert(k, v);
            }
            no_content()
        }
        ("DELETE", true, Some(i)) => {
            st.partners.remove(i);
            no_content()
        }
        (_, true, None) => not_found(),
        _ => odata_error(StatusCode::METHOD_NOT_ALLOWED, "/IWFND/CM_MGW/004", &format!("{method} is not allowed on {resource}")),
    }
}

/// The service's EDMX (OData v2): one entity type per entity set, with its key.
pub fn metadata() -> String {
    let mut types = String::new();
    let mut sets = String::new();
    for (set, ty, key) in ENTITY_SETS {
        // The business partner's own properties, as the stand-in stores them.
        let more = if *set == PARTNERS {
            "<Property Name=\"BusinessPartnerCategory\" Type=\"Edm.String\" MaxLength=\"1\" sap:label=\"BP Category\"/>\
             <Property Name=\"BusinessPartnerFullName\" Type=\"Edm.String\" MaxLength=\"81\" sap:label=\"Name\"/>"
        } else {
            ""
        };
        types.push_str(&format!(
            "<EntityType Name=\"{ty}\" sap:content-version=\"1\"><Key><PropertyRef Name=\"{key}\"/></Key>\
             <Property Name=\"{key}\" Type=\"Edm.String\" Nullable=\"false\" MaxLength=\"10\" sap:label=\"{key}\"/>{more}</EntityType>\n"
        ));
        sets.push_str(&format!("<EntitySet Name=\"{set}\" EntityType=\"{SERVICE}.{ty}\" sap:content-version=\"1\"/>\n"));
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<edmx:Edmx Version=\"1.0\" xmlns:edmx=\"http://schemas.microsoft.com/ado/2007/06/edmx\" \
         xmlns:m=\"http://schemas.microsoft.com/ado/2007/08/dataservices/metadata\" xmlns:sap=\"http://www.sap.com/Protocols/SAPData\">\n\
         <edmx:DataServices m:DataServiceVersion=\"2.0\">\n<Schema Namespace=\"{SERVICE}\" xml:lang=\"en\" sap:schema-version=\"1\" \
         xmlns=\"http://schemas.microsoft.com/ado/2008/09/edm\">\n{types}<EntityContainer Name=\"{SERVICE}_Entities\" m:IsDefaultEntityContainer=\"true\">\n\
         {sets}</EntityContainer>\n</Schema>\n</edmx:DataServices>\n</edmx:Edmx>\n"
    )
}

/// Serves the stand-in on `addr` until the process ends, with a demo user, API key and OAuth
/// client (random secrets), printing the URLs and credentials: what `connvault dev-sap` runs.
pub async fn run_demo(addr: SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let standin = StandIn::new();
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let (password, key, secret) = (random_chars(20, ALPHABET), random_chars(32, ALPHABET), random_chars(24, ALPHABET));
    standin.add_user("CONNVAULT_DEMO", &password, true);
    standin.add_api_key(&key, true);
    standin.add_client("sb-connvault-demo!t1", &secret, true);
    let urls = standin.serve(listener).await?;
    println!("connvault SAP OData stand-in (for local demos, not SAP): {}", urls.base);
    println!("  service URL: {}   token URL: {}", urls.service_url, urls.token_url);
    println!("  basic: user CONNVAULT_DEMO, password {password}");
    println!("  api_key: {key}");
    println!("  oauth_client_credentials: client ID sb-connvault-demo!t1, client secret {secret}");
    std::future::pending::<()>().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn its_metadata_is_what_the_client_counts() {
        let counted = super::super::client::parse_edmx(metadata().as_bytes()).unwrap();
        assert_eq!((counted.version, counted.entity_sets), ("v2", ENTITY_SETS.len()));
    }

    #[test]
    fn cookies_and_basic_credentials_are_read_exactly() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; SAP_SESSIONID_CV1_100=abc; b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "SAP_SESSIONID"), None);
        assert_eq!(basic("Basic dTpwOnc="), Some(("u".into(), "p:w".into())));
        assert_eq!(basic("Basic !!"), None);
        assert_eq!(basic("Bearer x"), None);
    }
}
