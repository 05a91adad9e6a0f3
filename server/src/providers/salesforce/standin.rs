//! An in-process stand-in for Salesforce's OAuth 2.0 JWT-bearer token endpoint
//! (`POST /services/oauth2/token`) and its userinfo endpoint (`GET /services/oauth2/userinfo`).
//!
//! Why it exists: connvault's Salesforce client must be tested against something that answers
//! exactly like Salesforce does (same check order, same HTTP status, headers and error bodies as
//! in `shared/reference/salesforce-jwt.md`), otherwise the tests prove nothing about the real
//! thing. It is also what `connvault dev-salesforce` serves for local demos ([`run_demo`]), with a
//! small page where a person plays the Salesforce admin.
//!
//! What it models: one org (random `00D…` id), connected apps ([`ConnectedApp`]: consumer key,
//! the uploaded certificate, Permitted Users policy, the users whose permission set includes the
//! app, IP restrictions), users (active or not), and the access tokens it issued (opaque, expiring
//! after a period of inactivity like a Salesforce session, revocable). Knobs for client tests
//! ([`StandIn::fail_next`], [`StandIn::delay_next`], counters) provoke the failures a client must
//! survive.
//!
//! Where Salesforce's behaviour is not documented, the choice made is written next to the code.
//! Bad input never panics and never answers 500: it gets Salesforce's own error.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State as Shared;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::standin::{escape_html, html, random_chars, Jwt};

/// The only `grant_type` this endpoint serves.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Production login host, accepted as an audience by default.
pub const PRODUCTION_LOGIN: &str = "https://login.salesforce.com";
/// Sandbox login host, accepted as an audience by default.
pub const SANDBOX_LOGIN: &str = "https://test.salesforce.com";
/// How far ahead `exp` may be: Salesforce documents "at most 3 minutes".
pub const MAX_EXP_AHEAD: Duration = Duration::from_secs(180);
/// Clock skew tolerated on top of [`MAX_EXP_AHEAD`], so that a client sending exactly
/// `now + 180` from a clock a little ahead is not refused.
pub const EXP_SKEW: Duration = Duration::from_secs(10);
/// Salesforce's default session timeout (2 hours of inactivity).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(2 * 60 * 60);
/// The `scope` a token answer carries (as in the reference's example).
pub const SCOPE: &str = "web openid api id";
/// The 401 body of userinfo (and every Salesforce REST call) for an unknown, expired or
/// revoked token: a JSON array, not an object.
pub const INVALID_SESSION_BODY: &str = r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#;
/// Content type of every JSON answer, byte for byte as Salesforce sends it.
pub const JSON_UTF8: &str = "application/json;charset=UTF-8";

/// A connected app as a Salesforce admin configures it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectedApp {
    /// The consumer key: the `iss` of assertions.
    pub consumer_key: String,
    /// The certificate uploaded under "Use digital signatures" (PEM, RSA).
    pub certificate_pem: String,
    /// Permitted Users: "Admin approved users are pre-authorized" (`true`) or "All users may
    /// self-authorize" (`false`; the JWT flow then fails, as no one can approve interactively).
    pub admin_approved: bool,
    /// Usernames whose profile or permission set includes the app (compared case-insensitively,
    /// as Salesforce usernames are).
    pub assigned_users: BTreeSet<String>,
    /// IP Relaxation "Enforce IP restrictions" with the caller outside the ranges (or outside
    /// login hours): every token request for the app is refused.
    pub ip_restricted: bool,
}

/// A token-endpoint refusal: each variant is one row of the reference's error table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// `grant_type` missing or not [`JWT_BEARER_GRANT`].
    UnsupportedGrantType,
    /// `iss` is not a known consumer key (or missing).
    InvalidClientId,
    /// Malformed assertion, algorithm other than RS256, bad signature, certificate not the
    /// uploaded one, missing or unreadable `exp`.
    InvalidAssertion,
    /// `aud` not a single accepted string.
    AudienceInvalid,
    /// `exp` in the past, or (a documented choice) more than [`MAX_EXP_AHEAD`] + [`EXP_SKEW`]
    /// ahead.
    Expired,
    /// The user has not approved the app: self-authorize policy, or unknown `sub`.
    NotApproved,
    /// Admin-approved policy but the user is not assigned the app.
    NotAdminApproved,
    /// The user is deactivated.
    InactiveUser,
    /// IP ranges or login hours.
    IpRestricted,
}

impl TokenError {
    /// The `error` field.
    pub fn error(self) -> &'static str {
        match self {
            TokenError::UnsupportedGrantType => "unsupported_grant_type",
            TokenError::InvalidClientId => "invalid_client_id",
            TokenError::NotAdminApproved => "invalid_app_access",
            TokenError::InactiveUser => "inactive_user",
            TokenError::InvalidAssertion | TokenError::AudienceInvalid | TokenError::Expired | TokenError::NotApproved | TokenError::IpRestricted => {
                "invalid_grant"
            }
        }
    }

    /// The `error_description` field, exactly as Salesforce words it.
    pub fn description(self) -> &'static str {
        match self {
            TokenError::UnsupportedGrantType => "grant type not supported",
            TokenError::InvalidClientId => "client identifier invalid",
            TokenError::InvalidAssertion => "invalid assertion",
            TokenError::AudienceInvalid => "audience is invalid",
            TokenError::Expired => "expired authorization code",
            TokenError::NotApproved => "user hasn't approved this consumer",
            TokenError::NotAdminApproved => "user is not admin approved to access this app",
            TokenError::InactiveUser => "user is inactive",
            TokenError::IpRestricted => "ip restricted or invalid login hours",
        }
    }

    /// The whole 400 body, e.g. `{"error":"invalid_grant","error_description":"invalid assertion"}`.
    pub fn body(self) -> String {
        json!({"error": self.error(), "error_description": self.description()}).to_string()
    }
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        json_response(StatusCode::BAD_REQUEST, self.body())
    }
}

/// A successful token answer, fields in Salesforce's order.
#[derive(Clone, Debug, Serialize)]
struct Granted {
    access_token: String,
    signature: String,
    scope: &'static str,
    instance_url: String,
    id: String,
    token_type: &'static str,
    issued_at: String,
}

struct RegisteredApp {
    app: ConnectedApp,
    /// PKCS#1 `RSAPublicKey` DER of the certificate's key, what the RS256 verifier takes.
    public_key: Vec<u8>,
    /// For the demo page only.
    subject: String,
    not_after: String,
    /// Salesforce's `signature` field is an HMAC-SHA256 of `id` + `issued_at` keyed with the
    /// app's consumer secret; the stand-in keeps a random one per app.
    secret: [u8; 32],
}

struct User {
    id: String,
    username: String,
    active: bool,
}

struct Session {
    /// Lower-cased username.
    user: String,
    last_used: Instant,
}

struct State {
    org_id: String,
    base: Option<String>,
    apps: Vec<RegisteredApp>,
    /// Keyed by lower-cased username.
    users: BTreeMap<String, User>,
    sessions: HashMap<String, Session>,
    audiences: Option<Vec<String>>,
    token_lifetime: Duration,
    fail: Option<(usize, u16)>,
    delay: Option<(usize, Duration)>,
    token_requests: usize,
    userinfo_requests: usize,
    query_requests: usize,
    /// How long a REST API query takes to answer.
    api_latency: Duration,
    assertions: Vec<Value>,
}

/// The stand-in: one Salesforce org with its connected apps, users and sessions. Cheap to clone
/// (shared state), so a test keeps a handle while the router serves.
#[derive(Clone)]
pub struct StandIn {
    state: Arc<Mutex<State>>,
    /// The web server flow (authorization code with PKCE): its connected apps (consumer key and
    /// secret, callback URL), users with passwords, codes and refresh tokens.
    web: crate::oauth_standin::AuthServer,
}

impl Default for StandIn {
    fn default() -> Self {
        Self::new()
    }
}

impl StandIn {
    /// A new, empty org with a random 18-character org id (`00D…`).
    pub fn new() -> StandIn {
        let state = Arc::new(Mutex::new(State {
            org_id: salesforce_id("00D"),
            base: None,
            apps: Vec::new(),
            users: BTreeMap::new(),
            sessions: HashMap::new(),
            audiences: None,
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
            fail: None,
            delay: None,
            token_requests: 0,
            userinfo_requests: 0,
            query_requests: 0,
            api_latency: Duration::ZERO,
            assertions: Vec::new(),
        }));
        let options = crate::oauth_standin::Options {
            title: "Salesforce stand-in".into(),
            unknown_client: "invalid_client_id",
            blocked: ("OAUTH_APP_BLOCKED", "this app is blocked by admin"),
            not_approved: ("OAUTH_APP_ACCESS_DENIED", "user is not admin approved to access this app"),
            bad_refresh: "expired access/refresh token",
            access_lifetime: DEFAULT_TOKEN_LIFETIME,
            rotate: false,
            content_type: JSON_UTF8,
        };
        // Salesforce answers the web server flow's tokens as it does the JWT flow's (with
        // instance_url, id, issued_at and signature), and they are sessions of the org.
        let (for_extras, for_sessions) = (state.clone(), state.clone());
        let extras: crate::oauth_standin::Extras = Arc::new(move |user: &str, base: &str| {
            let st = for_extras.lock().unwrap_or_else(|e| e.into_inner());
            let base = st.base.clone().unwrap_or_else(|| base.to_string());
            let uid = st.users.get(user).map(|u| u.id.clone()).unwrap_or_default();
            let id = format!("{base}/id/{}/{uid}", st.org_id);
            let issued_at = chrono::Utc::now().timestamp_millis().to_string();
            let signature = hmac_signature(&[7u8; 32], &format!("{id}{issued_at}"));
            let mut m = Map::new();
            m.insert("instance_url".into(), json!(base));
            m.insert("id".into(), json!(id));
            m.insert("issued_at".into(), json!(issued_at));
            m.insert("signature".into(), json!(signature));
            m
        });
        let on_issue: crate::oauth_standin::OnIssue = Arc::new(move |user: &str, token: &str| {
            let mut st = for_sessions.lock().unwrap_or_else(|e| e.into_inner());
            st.sessions.insert(token.to_string(), Session { user: user.to_string(), last_used: Instant::now() });
        });
        StandIn { state, web: crate::oauth_standin::AuthServer::new(options).with_hooks(extras, on_issue) }
    }

    /// The web server flow's side of the org: register apps with a consumer secret and
    /// callback URL, and users with passwords.
    pub fn web(&self) -> &crate::oauth_standin::AuthServer {
        &self.web
    }

    /// A connected app for the web server flow with `callback_url`, usable by `username`
    /// (created active, with `password`): its consumer key and consumer secret.
    pub fn add_web_app(&self, callback_url: &str, username: &str, password: &str) -> (String, String) {
        self.add_user(username, true);
        self.web.add_user(username, password);
        let key = format!("3MVG9{}", random_chars(80, TOKEN_ALPHABET));
        let secret = random_chars(64, b"0123456789ABCDEF");
        self.web.add_client(crate::oauth_standin::Client {
            client_id: key.clone(),
            client_secret: secret.clone(),
            redirect_uris: vec![callback_url.to_string()],
            blocked: false,
            allowed_users: Some(vec![username.to_lowercase()]),
        });
        (key, secret)
    }

    /// A poisoned lock only means another handler panicked; the state is still usable, and the
    /// stand-in must keep answering.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The org id (18 characters), as in the `id` URL and userinfo's `organization_id`.
    pub fn org_id(&self) -> String {
        self.lock().org_id.clone()
    }

    /// The base URL the stand-in serves at, once [`spawn`](Self::spawn)ed or
    /// [`serve`](Self::serve)d (or set with [`set_base_url`](Self::set_base_url)).
    pub fn base_url(&self) -> Option<String> {
        self.lock().base.clone()
    }

    /// Sets the URL the stand-in is reached at (e.g. behind a proxy): `instance_url`, the `id`
    /// URL and the default audience derive from it. No trailing slash.
    pub fn set_base_url(&self, base: impl Into<String>) {
        self.lock().base = Some(base.into().trim_end_matches('/').to_string());
    }

    /// Registers a connected app. Refused (with the reason) when the certificate is not an
    /// X.509 PEM, its key is not RSA (RS256 needs RSA) or shorter than 2048 bits (the RS256
    /// verifier would refuse every signature), or the consumer key is empty or already taken.
    pub fn add_app(&self, app: ConnectedApp) -> Result<(), String> {
        if app.consumer_key.trim().is_empty() {
            return Err("the consumer key is empty".into());
        }
        let registered = register(app, random_secret())?;
        let mut st = self.lock();
        if st.apps.iter().any(|a| a.app.consumer_key == registered.app.consumer_key) {
            return Err(format!("a connected app with consumer key {} exists already", registered.app.consumer_key));
        }
        st.apps.push(registered);
        Ok(())
    }

    /// Changes a registered app in place (policy, assignments, IP restrictions, even the
    /// certificate, as an admin would). Refused, leaving the app unchanged, when the key is
    /// unknown or the changed certificate is unusable.
    pub fn update_app(&self, consumer_key: &str, change: impl FnOnce(&mut ConnectedApp)) -> Result<(), String> {
        let mut st = self.lock();
        let Some(slot) = st.apps.iter_mut().find(|a| a.app.consumer_key == consumer_key) else {
            return Err(format!("no connected app with consumer key {consumer_key}"));
        };
        let mut app = slot.app.clone();
        change(&mut app);
        if app.consumer_key != consumer_key {
            return Err("the consumer key of a connected app cannot change".into());
        }
        *slot = register(app, slot.secret)?;
        Ok(())
    }

    /// Removes an app; its consumer key is then unknown (`invalid_client_id`). Returns whether
    /// it existed.
    pub fn remove_app(&self, consumer_key: &str) -> bool {
        let mut st = self.lock();
        let before = st.apps.len();
        st.apps.retain(|a| a.app.consumer_key != consumer_key);
        st.apps.len() != before
    }

    /// The registered apps, in registration order.
    pub fn apps(&self) -> Vec<ConnectedApp> {
        self.lock().apps.iter().map(|a| a.app.clone()).collect()
    }

    /// Creates the user (or, when the username exists, compared case-insensitively, sets its
    /// active flag) and returns its 18-character user id (`005…`).
    pub fn add_user(&self, username: &str, active: bool) -> String {
        let mut st = self.lock();
        let key = username.to_lowercase();
        let user = st.users.entry(key).or_insert_with(|| User { id: salesforce_id("005"), username: username.to_string(), active });
        user.active = active;
        user.id.clone()
    }

    /// Activates or deactivates a user; deactivation also ends the user's sessions, as it does
    /// in Salesforce. Returns whether the user exists.
    pub fn set_user_active(&self, username: &str, active: bool) -> bool {
        let mut st = self.lock();
        let key = username.to_lowercase();
        let Some(user) = st.users.get_mut(&key) else { return false };
        user.active = active;
        if !active {
            st.sessions.retain(|_, s| s.user != key);
        }
        true
    }

    /// The user id of a username, if it exists.
    pub fn user_id(&self, username: &str) -> Option<String> {
        self.lock().users.get(&username.to_lowercase()).map(|u| u.id.clone())
    }

    /// The next `n` token requests answer `status` (a 5xx, normally) without looking at the
    /// request: 503 with Salesforce's HTML maintenance page, 500 with its JSON
    /// `unknown_error`, anything else with a short HTML page. Replaces a previous setting.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.lock().fail = (n > 0).then_some((n, status));
    }

    /// The next `n` token requests wait `delay` before answering (to provoke client timeouts).
    /// The request is counted on arrival, so a request the client gave up on still counts.
    pub fn delay_next(&self, n: usize, delay: Duration) {
        self.lock().delay = (n > 0).then_some((n, delay));
    }

    /// How many POSTs reached `/services/oauth2/token`, failed ones included.
    pub fn token_requests(&self) -> usize {
        self.lock().token_requests
    }

    /// How many requests reached `/services/oauth2/userinfo`, refused ones included.
    /// Every REST API query answers after `latency` (a real org's query takes tens of
    /// milliseconds or more).
    pub fn set_api_latency(&self, latency: Duration) {
        self.lock().api_latency = latency;
    }

    /// REST API queries received (`GET /services/data/…/query`), answered or refused.
    pub fn query_requests(&self) -> usize {
        self.lock().query_requests
    }

    pub fn userinfo_requests(&self) -> usize {
        self.lock().userinfo_requests
    }

    /// The header and claims of every assertion that parsed as a JWT (whatever the outcome),
    /// oldest first, as `{"header": {...}, "claims": {...}}`: lets client tests check what the
    /// client sends (e.g. `exp` is an integer, `jti` unique).
    pub fn assertions(&self) -> Vec<Value> {
        self.lock().assertions.clone()
    }

    /// Ends every session: userinfo then answers 401 `INVALID_SESSION_ID`.
    pub fn revoke_all_tokens(&self) {
        self.lock().sessions.clear();
    }

    /// The session timeout: a token unused for longer than this is expired (401 on
    /// userinfo). Like Salesforce's, it counts from the last use, not from issue.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.lock().token_lifetime = lifetime;
    }

    /// Replaces the accepted `aud` values (exact, case-sensitive string match). Default: the
    /// stand-in's own base URL, [`PRODUCTION_LOGIN`] and [`SANDBOX_LOGIN`].
    pub fn set_audiences(&self, audiences: Vec<String>) {
        self.lock().audiences = Some(audiences);
    }

    /// The token and userinfo endpoints.
    pub fn router(&self) -> Router {
        api_routes().with_state(self.clone())
    }

    /// [`router`](Self::router) plus the admin page of the local demo (`GET /`, `POST /apps`).
    pub fn demo_router(&self) -> Router {
        api_routes()
            .route("/", get(demo_page))
            .route("/apps", post(demo_add_app))
            .route("/web-apps", post(demo_add_web_app))
            .route("/sessions/expire", post(demo_expire_sessions))
            .with_state(self.clone())
    }

    /// Binds 127.0.0.1 on a free port, serves [`router`](Self::router) in a tokio task and
    /// returns the stand-in's base URL: `http://127.0.0.1:PORT`, unless one was set with
    /// [`set_base_url`](Self::set_base_url).
    pub async fn spawn(&self) -> std::io::Result<String> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let base = self.adopt(&listener)?;
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.serve(listener).await {
                tracing::warn!("Salesforce stand-in stopped: {e}");
            }
        });
        Ok(base)
    }

    /// Serves [`router`](Self::router) on `listener` until the process ends. Unless a base URL
    /// was set, it becomes `http://` + the listener's address (127.0.0.1 for an unspecified
    /// address).
    pub async fn serve(&self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        self.adopt(&listener)?;
        axum::serve(listener, self.router()).await
    }

    /// Like [`serve`](Self::serve), with the demo's admin page.
    pub async fn serve_demo(&self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        self.adopt(&listener)?;
        axum::serve(listener, self.demo_router()).await
    }

    fn adopt(&self, listener: &tokio::net::TcpListener) -> std::io::Result<String> {
        let mut addr = listener.local_addr()?;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let mut st = self.lock();
        Ok(st.base.get_or_insert_with(|| format!("http://{addr}")).clone())
    }

    /// The base URL for answers: the one set, or else the request's Host (the router can be
    /// used without serving it, e.g. with `tower::ServiceExt::oneshot`).
    fn base_for(&self, headers: &HeaderMap) -> String {
        if let Some(base) = self.base_url() {
            return base;
        }
        match headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
            Some(host) if !host.is_empty() => format!("http://{host}"),
            _ => "http://localhost".to_string(),
        }
    }

    /// The token exchange proper, in the reference's check order: grant_type, parse (header:
    /// RS256 only, `typ` optional; claims a JSON object) + `iss` lookup, signature, `aud`,
    /// `exp`, user, approval policy, IP.
    fn exchange(&self, form: &[u8], base: &str) -> Result<Granted, TokenError> {
        // The first value of each parameter counts; others (client_id, scope…) are ignored.
        let mut grant_type = None;
        let mut assertion = None;
        for (k, v) in url::form_urlencoded::parse(form) {
            match k.as_ref() {
                "grant_type" if grant_type.is_none() => grant_type = Some(v.into_owned()),
                "assertion" if assertion.is_none() => assertion = Some(v.into_owned()),
                _ => {}
            }
        }
        if grant_type.as_deref() != Some(JWT_BEARER_GRANT) {
            return Err(TokenError::UnsupportedGrantType);
        }
        let jwt = parse_jwt(assertion.as_deref().unwrap_or("")).ok_or(TokenError::InvalidAssertion)?;

        let mut st = self.lock();
        if st.assertions.len() < 10_000 {
            st.assertions.push(json!({"header": jwt.header, "claims": jwt.claims}));
        }
        // Missing or non-string `iss` cannot name an app: same answer as an unknown key.
        let iss = jwt.claims.get("iss").and_then(Value::as_str).ok_or(TokenError::InvalidClientId)?;
        let app = st.apps.iter().find(|a| a.app.consumer_key == iss).ok_or(TokenError::InvalidClientId)?;

        let key = jsonwebtoken::DecodingKey::from_rsa_der(&app.public_key);
        match jsonwebtoken::crypto::verify(jwt.signature, jwt.signing_input.as_bytes(), &key, jsonwebtoken::Algorithm::RS256) {
            Ok(true) => {}
            _ => return Err(TokenError::InvalidAssertion),
        }

        // An array `aud` (even holding an accepted value) is a wrong audience: the reference
        // says an array is rejected and files wrong audiences under "audience is invalid".
        let audience_ok = match jwt.claims.get("aud").and_then(Value::as_str) {
            Some(aud) => match &st.audiences {
                Some(list) => list.iter().any(|a| a == aud),
                None => aud == base || aud == PRODUCTION_LOGIN || aud == SANDBOX_LOGIN,
            },
            None => false,
        };
        if !audience_ok {
            return Err(TokenError::AudienceInvalid);
        }

        // `exp` missing or not a number (nor a numeric string) makes the assertion unreadable.
        // An `exp` beyond the 3-minute window (plus skew) gets the same answer as a past one,
        // "expired authorization code": both mean the assertion's validity window is wrong,
        // that message is the one Salesforce gives for `exp` problems, and its remedy (mint
        // with exp = now + up to 3 minutes, check the clock) fits both.
        let exp = jwt.claims.get("exp").and_then(numeric_date).ok_or(TokenError::InvalidAssertion)?;
        let now = chrono::Utc::now().timestamp();
        let ahead = (MAX_EXP_AHEAD + EXP_SKEW).as_secs() as i64;
        if exp <= now || exp > now.saturating_add(ahead) {
            return Err(TokenError::Expired);
        }

        // An unknown (or missing) `sub` answers like an unapproved user: Salesforce does not
        // reveal whether a username exists.
        let username = jwt.claims.get("sub").and_then(Value::as_str).ok_or(TokenError::NotApproved)?.to_lowercase();
        let user = st.users.get(&username).ok_or(TokenError::NotApproved)?;
        if !user.active {
            return Err(TokenError::InactiveUser);
        }
        // Self-authorize: the JWT flow has no screen to approve on, so (as for a user who never
        // approved in a web flow) the answer is "hasn't approved".
        if !app.app.admin_approved {
            return Err(TokenError::NotApproved);
        }
        if !app.app.assigned_users.iter().any(|u| u.to_lowercase() == username) {
            return Err(TokenError::NotAdminApproved);
        }
        if app.app.ip_restricted {
            return Err(TokenError::IpRestricted);
        }

        let id = format!("{base}/id/{}/{}", st.org_id, user.id);
        let issued_at = chrono::Utc::now().timestamp_millis().to_string();
        let signature = hmac_signature(&app.secret, &format!("{id}{issued_at}"));
        let access_token = format!("{}!AQ{}", &st.org_id[..15], random_chars(94, TOKEN_ALPHABET));
        st.sessions.insert(access_token.clone(), Session { user: username, last_used: Instant::now() });
        Ok(Granted { access_token, signature, scope: SCOPE, instance_url: base.to_string(), id, token_type: "Bearer", issued_at })
    }

    /// The userinfo answer for `token`, or `None` (401) when it is unknown, expired, revoked
    /// or its user is gone. A use refreshes the session's inactivity clock.
    fn userinfo(&self, token: &str, base: &str) -> Option<Value> {
        let mut st = self.lock();
        let lifetime = st.token_lifetime;
        let session = st.sessions.get_mut(token)?;
        if session.last_used.elapsed() > lifetime {
            st.sessions.remove(token);
            return None;
        }
        session.last_used = Instant::now();
        let key = session.user.clone();
        let user = st.users.get(&key)?;
        let org = &st.org_id;
        let uid = &user.id;
        let nickname = user.username.split('@').next().unwrap_or(&user.username);
        Some(json!({
            "sub": format!("{base}/id/{org}/{uid}"),
            "user_id": uid,
            "organization_id": org,
            "preferred_username": user.username,
            "nickname": nickname,
            "name": nickname,
            "email": user.username,
            "email_verified": true,
            "zoneinfo": "Europe/Berlin",
            "active": user.active,
            "user_type": "STANDARD",
            "language": "en_US",
            "locale": "en_US",
            "utcOffset": 3_600_000,
            "is_app_installed": true,
            // Salesforce sends the literal "{version}" placeholder in these URLs.
            "urls": {
                "enterprise": format!("{base}/services/Soap/c/{{version}}/{}", &org[..15]),
                "metadata": format!("{base}/services/Soap/m/{{version}}/{}", &org[..15]),
                "partner": format!("{base}/services/Soap/u/{{version}}/{}", &org[..15]),
                "rest": format!("{base}/services/data/v{{version}}/"),
                "sobjects": format!("{base}/services/data/v{{version}}/sobjects/"),
                "search": format!("{base}/services/data/v{{version}}/search/"),
                "query": format!("{base}/services/data/v{{version}}/query/"),
                "recent": format!("{base}/services/data/v{{version}}/recent/"),
                "tooling_soap": format!("{base}/services/Soap/T/{{version}}/{}", &org[..15]),
                "tooling_rest": format!("{base}/services/data/v{{version}}/tooling/"),
                "profile": format!("{base}/{uid}"),
                "feeds": format!("{base}/services/data/v{{version}}/chatter/feeds"),
                "groups": format!("{base}/services/data/v{{version}}/chatter/groups"),
                "users": format!("{base}/services/data/v{{version}}/chatter/users"),
                "feed_items": format!("{base}/services/data/v{{version}}/chatter/feed-items"),
                "custom_domain": base,
            },
        }))
    }
}

/// Serves the stand-in with its admin page on `addr` until the process ends, printing the URL
/// to stdout: what `connvault dev-salesforce` runs for local demos.
pub async fn run_demo(addr: SocketAddr, api_latency: Duration) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let standin = StandIn::new();
    standin.set_api_latency(api_latency);
    let base = standin.adopt(&listener)?;
    println!("connvault Salesforce stand-in (for local demos, not Salesforce): {base}/");
    println!("  token endpoint: {base}/services/oauth2/token   audience: {base}");
    standin.serve_demo(listener).await
}

fn api_routes() -> Router<StandIn> {
    Router::new()
        .route("/services/oauth2/authorize", get(authorize_page).post(authorize_answer))
        .route("/services/oauth2/revoke", post(revoke_endpoint))
        .route("/services/oauth2/token", post(token_endpoint))
        .route("/services/oauth2/userinfo", get(userinfo_endpoint).post(userinfo_endpoint))
        .route("/services/data/{version}/query", get(query_endpoint))
}

/// The org's accounts, as the REST API's query answers them: Id, Name, Industry.
pub const ACCOUNTS: &[(&str, &str, &str)] = &[
    ("001Dn00000A1bCdIAJ", "Edge Communications", "Electronics"),
    ("001Dn00000A1bCeIAJ", "Burlington Textiles Corp of America", "Apparel"),
    ("001Dn00000A1bCfIAJ", "Pyramid Construction Inc.", "Construction"),
];

/// `GET /services/data/vNN.N/query?q=SELECT … FROM Account [LIMIT n]`: the REST API's query,
/// for `Account` only, with Salesforce's answer shapes (records with `attributes`, `totalSize`,
/// `done`) and errors (`INVALID_SESSION_ID` 401, `MALFORMED_QUERY` and `INVALID_TYPE` 400).
async fn query_endpoint(
    Shared(standin): Shared<StandIn>,
    axum::extract::Path(version): axum::extract::Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let latency = {
        let mut st = standin.lock();
        st.query_requests += 1;
        st.api_latency
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let token = headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok()).and_then(|h| {
        let (scheme, token) = h.trim().split_once(' ')?;
        (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("oauth")).then(|| token.trim())
    });
    let base = standin.base_for(&headers);
    if token.and_then(|t| standin.userinfo(t, &base)).is_none() {
        return json_response(StatusCode::UNAUTHORIZED, INVALID_SESSION_BODY.to_string());
    }
    let error = |code: &str, message: String| json_response(StatusCode::BAD_REQUEST, json!([{"message": message, "errorCode": code}]).to_string());
    let q = url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).find(|(k, _)| k == "q").map(|(_, v)| v.into_owned());
    let Some(q) = q else { return error("MALFORMED_QUERY", "The query parameter q is required".into()) };
    let words: Vec<&str> = q.split_whitespace().collect();
    let from = words.iter().position(|w| w.eq_ignore_ascii_case("FROM"));
    let (Some(select), Some(from)) = (words.first().filter(|w| w.eq_ignore_ascii_case("SELECT")), from) else {
        return error("MALFORMED_QUERY", format!("unexpected token: '{}'", words.first().unwrap_or(&"")));
    };
    let _ = select;
    let fields: Vec<String> = words[1..from].join(" ").split(',').map(|f| f.trim().to_string()).filter(|f| !f.is_empty()).collect();
    let object = words.get(from + 1).copied().unwrap_or_default();
    if !object.eq_ignore_ascii_case("Account") {
        return error("INVALID_TYPE", format!("sObject type '{object}' is not supported."));
    }
    if let Some(bad) = fields.iter().find(|f| !["id", "name", "industry"].contains(&f.to_ascii_lowercase().as_str())) {
        return error("INVALID_FIELD", format!("No such column '{bad}' on entity 'Account'."));
    }
    let limit = words.iter().position(|w| w.eq_ignore_ascii_case("LIMIT")).and_then(|i| words.get(i + 1)?.parse::<usize>().ok()).unwrap_or(usize::MAX);
    let records: Vec<Value> = ACCOUNTS
        .iter()
        .take(limit)
        .map(|(id, name, industry)| {
            let mut r = Map::new();
            r.insert("attributes".into(), json!({"type": "Account", "url": format!("/services/data/{version}/sobjects/Account/{id}")}));
            for f in &fields {
                let v = match f.to_ascii_lowercase().as_str() {
                    "id" => id,
                    "name" => name,
                    _ => industry,
                };
                r.insert(f.clone(), json!(v));
            }
            Value::Object(r)
        })
        .collect();
    json_response(StatusCode::OK, json!({"totalSize": records.len(), "done": true, "records": records}).to_string())
}

/// The body is read as form fields whatever the Content-Type says, so that a JSON body or a
/// missing Content-Type gets Salesforce's `unsupported_grant_type` rather than a framework 415.
async fn token_endpoint(Shared(standin): Shared<StandIn>, headers: HeaderMap, body: Bytes) -> Response {
    let (delay, fail) = {
        let mut st = standin.lock();
        st.token_requests += 1;
        (take_one(&mut st.delay), take_one(&mut st.fail))
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    if let Some(status) = fail {
        return failure(status);
    }
    let base = standin.base_for(&headers);
    let grant = url::form_urlencoded::parse(&body).find(|(k, _)| k == "grant_type").map(|(_, v)| v.into_owned());
    if matches!(grant.as_deref(), Some("authorization_code" | "refresh_token")) {
        return standin.web.token(&headers, &body, &base).await;
    }
    match standin.exchange(&body, &base) {
        Ok(granted) => json_response(StatusCode::OK, serde_json::to_string(&granted).unwrap_or_default()),
        Err(e) => e.into_response(),
    }
}

/// The web server flow's login and approval page (`GET`), and the person's answer (`POST`).
async fn authorize_page(Shared(standin): Shared<StandIn>, axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>) -> Response {
    standin.web.login_page(&q, None)
}

async fn authorize_answer(Shared(standin): Shared<StandIn>, body: Bytes) -> Response {
    standin.web.login_answer(&body)
}

/// `POST /services/oauth2/revoke` (RFC 7009).
async fn revoke_endpoint(Shared(standin): Shared<StandIn>, headers: HeaderMap, body: Bytes) -> Response {
    standin.web.revoke(&headers, &body)
}

/// Accepts `Authorization: Bearer TOKEN` (and Salesforce's older `OAuth TOKEN`); anything else,
/// a missing header included, is an invalid session.
async fn userinfo_endpoint(Shared(standin): Shared<StandIn>, headers: HeaderMap) -> Response {
    standin.lock().userinfo_requests += 1;
    let token = headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok()).and_then(|h| {
        let (scheme, token) = h.trim().split_once(' ')?;
        (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("oauth")).then(|| token.trim())
    });
    let base = standin.base_for(&headers);
    match token.and_then(|t| standin.userinfo(t, &base)) {
        Some(info) => json_response(StatusCode::OK, info.to_string()),
        None => json_response(StatusCode::UNAUTHORIZED, INVALID_SESSION_BODY.to_string()),
    }
}

/// An assertion as Salesforce takes it: RS256 only.
fn parse_jwt(token: &str) -> Option<Jwt<'_>> {
    crate::standin::parse_jwt(token).filter(|jwt| jwt.header.get("alg").and_then(Value::as_str) == Some("RS256"))
}

fn json_response(status: StatusCode, body: String) -> Response {
    crate::standin::json_response(status, JSON_UTF8, body)
}

fn take_one<T: Copy>(slot: &mut Option<(usize, T)>) -> Option<T> {
    let (n, value) = (*slot)?;
    *slot = (n > 1).then_some((n - 1, value));
    Some(value)
}

/// A forced failure, shaped like what Salesforce's edge sends.
fn failure(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    if code == StatusCode::INTERNAL_SERVER_ERROR {
        return json_response(code, json!({"error": "unknown_error", "error_description": "retry your request"}).to_string());
    }
    let body = if code == StatusCode::SERVICE_UNAVAILABLE {
        "<html><head><title>Maintenance</title></head><body><h1>Down For Maintenance</h1>\
         <p>Salesforce is down for maintenance. Please check back soon.</p></body></html>"
            .to_string()
    } else {
        format!("<html><head><title>Error {0}</title></head><body><h1>{0} {1}</h1></body></html>", code.as_u16(), code.canonical_reason().unwrap_or("Error"))
    };
    let mut response = (code, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html;charset=UTF-8"));
    response
}

/// `exp` as seconds since the epoch: a JSON number (fractions dropped) or a string of digits,
/// the form Salesforce's documentation shows.
fn numeric_date(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_u64().map(|_| i64::MAX)).or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f.floor() as i64)),
        Value::String(s) => s.parse::<i64>().ok(),
        _ => None,
    }
}

/// Checks an app's certificate and keeps what verification needs.
fn register(app: ConnectedApp, secret: [u8; 32]) -> Result<RegisteredApp, String> {
    use x509_parser::public_key::PublicKey;
    let (_, pem) = x509_parser::pem::parse_x509_pem(app.certificate_pem.trim().as_bytes()).map_err(|_| "the certificate is not PEM".to_string())?;
    if pem.label != "CERTIFICATE" {
        return Err(format!("this PEM holds a {}, not a CERTIFICATE", pem.label));
    }
    let cert = pem.parse_x509().map_err(|e| format!("the certificate does not parse as X.509: {e}"))?;
    match cert.public_key().parsed() {
        Ok(PublicKey::RSA(rsa)) if rsa.key_size() >= 2048 => {}
        Ok(PublicKey::RSA(rsa)) => return Err(format!("the certificate's RSA key has {} bits; RS256 needs at least 2048", rsa.key_size())),
        Ok(_) => return Err("the certificate's key is not RSA; the JWT bearer flow signs with RS256".into()),
        Err(e) => return Err(format!("the certificate's public key does not parse: {e}")),
    }
    let public_key = cert.public_key().subject_public_key.data.to_vec();
    let subject = cert.subject().to_string();
    let not_after = cert.validity().not_after.to_string();
    Ok(RegisteredApp { app, public_key, subject, not_after, secret })
}

fn hmac_signature(secret: &[u8], message: &str) -> String {
    use hmac::{Hmac, Mac};
    match Hmac::<sha2::Sha256>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(message.as_bytes());
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

fn random_secret() -> [u8; 32] {
    let mut secret = [0u8; 32];
    rand::fill(&mut secret);
    secret
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const TOKEN_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._";

/// A random 18-character Salesforce id with the given key prefix (`00D` org, `005` user): the
/// 15-character id plus its real case-safe checksum.
fn salesforce_id(prefix: &str) -> String {
    let id15 = format!("{prefix}{}", random_chars(15 - prefix.len(), ALNUM));
    format!("{id15}{}", id_checksum(&id15))
}

/// Salesforce's 15→18 suffix: for each 5-character chunk, a bit per uppercase letter (first
/// character lowest), mapped into `A-Z0-5`.
pub fn id_checksum(id15: &str) -> String {
    const MAP: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    id15.as_bytes()
        .chunks(5)
        .take(3)
        .map(|chunk| {
            let bits = chunk.iter().enumerate().fold(0usize, |acc, (i, c)| if c.is_ascii_uppercase() { acc | (1 << i) } else { acc });
            MAP[bits] as char
        })
        .collect()
}

// ---------------------------------------------------------------- demo admin page

const DEMO_TITLE: &str = "connvault Salesforce stand-in — for local demos, not Salesforce";

async fn demo_page(Shared(standin): Shared<StandIn>, headers: HeaderMap) -> Response {
    let base = standin.base_for(&headers);
    html(StatusCode::OK, render_demo(&standin, &base, None))
}

/// The admin's "New Connected App": certificate, integration username, Permitted Users. The
/// user is created active and assigned the app; the answer shows the new consumer key.
/// `POST /sessions/expire` (demo only): every session ends, as when they time out, so that a
/// local demo or a browser test can see connvault renew them.
async fn demo_expire_sessions(Shared(standin): Shared<StandIn>) -> Response {
    standin.revoke_all_tokens();
    json_response(StatusCode::OK, json!({"expired": true}).to_string())
}

async fn demo_add_app(Shared(standin): Shared<StandIn>, headers: HeaderMap, body: Bytes) -> Response {
    let base = standin.base_for(&headers);
    let mut certificate = String::new();
    let mut username = String::new();
    let mut admin_approved = true;
    for (k, v) in url::form_urlencoded::parse(&body) {
        match k.as_ref() {
            "certificate" => certificate = v.into_owned(),
            "username" => username = v.trim().to_string(),
            "permitted_users" => admin_approved = v != "self_authorize",
            _ => {}
        }
    }
    if username.is_empty() {
        return html(StatusCode::BAD_REQUEST, render_demo(&standin, &base, Some(Err("Enter the integration user's username.".into()))));
    }
    let consumer_key = format!("3MVG9{}", random_chars(80, TOKEN_ALPHABET));
    let app = ConnectedApp {
        consumer_key: consumer_key.clone(),
        certificate_pem: certificate,
        admin_approved,
        assigned_users: BTreeSet::from([username.clone()]),
        ip_restricted: false,
    };
    match standin.add_app(app) {
        Ok(()) => {
            standin.add_user(&username, true);
            html(StatusCode::OK, render_demo(&standin, &base, Some(Ok(consumer_key))))
        }
        Err(e) => html(StatusCode::BAD_REQUEST, render_demo(&standin, &base, Some(Err(format!("The certificate was refused: {e}"))))),
    }
}

/// The admin's connected app for the web server flow: its callback URL and the user who signs
/// in (created with that password); the answer shows the consumer key and secret.
async fn demo_add_web_app(Shared(standin): Shared<StandIn>, headers: HeaderMap, body: Bytes) -> Response {
    let base = standin.base_for(&headers);
    let f: HashMap<String, String> = url::form_urlencoded::parse(&body).map(|(k, v)| (k.into_owned(), v.trim().to_string())).collect();
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let (callback, username, password) = (get("callback_url"), get("username"), get("password"));
    if url::Url::parse(&callback).is_err() || username.is_empty() || password.is_empty() {
        return html(
            StatusCode::BAD_REQUEST,
            render_demo(&standin, &base, Some(Err("Enter the callback URL (a URL), the user's username and a password.".into()))),
        );
    }
    let (key, secret) = standin.add_web_app(&callback, &username, &password);
    let mut page = render_demo(&standin, &base, None);
    let shown = format!(
        "<div class=\"ok\" role=\"status\"><p>Consumer Key: <code id=\"web-consumer-key\">{}</code></p><p>Consumer Secret: <code id=\"web-consumer-secret\">{}</code></p></div>",
        escape_html(&key),
        escape_html(&secret)
    );
    if let Some(at) = page.find("<h2>") {
        page.insert_str(at, &shown);
    }
    html(StatusCode::OK, page)
}

fn render_demo(standin: &StandIn, base: &str, outcome: Option<Result<String, String>>) -> String {
    let e = escape_html;
    let mut page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}\
         code,textarea{{word-break:break-all}} textarea{{width:100%}} table{{border-collapse:collapse}}\
         td,th{{border:1px solid #999;padding:.3rem;vertical-align:top}} .ok{{background:#e6ffe6;padding:1rem}}\
         .err{{background:#ffe6e6;padding:1rem}}</style></head><body>\n<h1>{title}</h1>\n\
         <p>This page plays the Salesforce admin of one made-up org (<code>{org}</code>). Token host and \
         audience: <code>{base}</code> (<code>{prod}</code> and <code>{sandbox}</code> are accepted as audiences too). \
         Token endpoint: <code>{base}/services/oauth2/token</code>.</p>\n",
        title = e(DEMO_TITLE),
        org = e(&standin.org_id()),
        base = e(base),
        prod = PRODUCTION_LOGIN,
        sandbox = SANDBOX_LOGIN,
    );
    match outcome {
        Some(Ok(key)) => page.push_str(&format!(
            "<div class=\"ok\" role=\"status\"><p>Connected app created. Consumer Key:</p><p><code id=\"consumer-key\">{}</code></p>\
             <p>Give this key to connvault.</p></div>\n",
            e(&key)
        )),
        Some(Err(msg)) => page.push_str(&format!("<div class=\"err\" role=\"alert\"><p>{}</p></div>\n", e(&msg))),
        None => {}
    }
    page.push_str(
        "<h2>New connected app</h2>\n<form method=\"post\" action=\"/apps\">\n\
         <p><label for=\"certificate\">Certificate (PEM, from connvault's request)</label><br>\
         <textarea id=\"certificate\" name=\"certificate\" rows=\"12\" required \
         placeholder=\"-----BEGIN CERTIFICATE-----\"></textarea></p>\n\
         <p><label for=\"username\">Integration user's username</label><br>\
         <input id=\"username\" name=\"username\" type=\"text\" size=\"50\" required placeholder=\"integration@example.com\"></p>\n\
         <fieldset><legend>Permitted Users</legend>\
         <label><input type=\"radio\" name=\"permitted_users\" value=\"admin_approved\" checked> Admin approved users are pre-authorized</label><br>\
         <label><input type=\"radio\" name=\"permitted_users\" value=\"self_authorize\"> All users may self-authorize</label></fieldset>\n\
         <p><button type=\"submit\">Save and show the Consumer Key</button></p>\n</form>\n\
         <h2>New connected app for the web server flow</h2>\n<form method=\"post\" action=\"/web-apps\">\n\
         <p><label for=\"callback_url\">Callback URL</label><br><input id=\"callback_url\" name=\"callback_url\" type=\"url\" size=\"60\" required></p>\n\
         <p><label for=\"web_username\">User who signs in</label><br><input id=\"web_username\" name=\"username\" type=\"text\" size=\"50\" required></p>\n\
         <p><label for=\"web_password\">That user's password</label><br><input id=\"web_password\" name=\"password\" type=\"text\" size=\"30\" required></p>\n\
         <p><button type=\"submit\">Create the web server app</button></p>\n</form>\n",
    );
    let st = standin.lock();
    page.push_str("<h2>Connected apps</h2>\n");
    if st.apps.is_empty() {
        page.push_str("<p>None yet.</p>\n");
    } else {
        page.push_str("<table><tr><th>Consumer Key</th><th>Permitted Users</th><th>Assigned users</th><th>Certificate</th></tr>\n");
        for a in &st.apps {
            let users: Vec<String> = a.app.assigned_users.iter().map(|u| e(u)).collect();
            page.push_str(&format!(
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}<br>valid until {}</td></tr>\n",
                e(&a.app.consumer_key),
                if a.app.admin_approved { "Admin approved users are pre-authorized" } else { "All users may self-authorize" },
                users.join("<br>"),
                e(&a.subject),
                e(&a.not_after),
            ));
        }
        page.push_str("</table>\n");
    }
    page.push_str("<h2>Users</h2>\n<ul>\n");
    for u in st.users.values() {
        page.push_str(&format!("<li>{} <code>{}</code> {}</li>\n", e(&u.username), e(&u.id), if u.active { "active" } else { "inactive" }));
    }
    page.push_str("</ul>\n</body></html>\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_salesforce_checksums() {
        // Known pair from Salesforce's documentation of 15/18-character ids.
        assert_eq!(id_checksum("a0D30000001n7Pi"), "EAI");
        assert_eq!(id_checksum("000000000000000"), "AAA");
        assert_eq!(id_checksum("AAAAAAAAAAAAAAA"), "555");
        for prefix in ["00D", "005"] {
            let id = salesforce_id(prefix);
            assert_eq!(id.len(), 18);
            assert!(id.starts_with(prefix));
            assert!(id.chars().all(|c| c.is_ascii_alphanumeric()));
            assert_eq!(&id[15..], id_checksum(&id[..15]));
        }
    }

    #[test]
    fn exp_is_a_number_or_a_numeric_string() {
        assert_eq!(numeric_date(&json!(1_700_000_000)), Some(1_700_000_000));
        assert_eq!(numeric_date(&json!("1700000000")), Some(1_700_000_000));
        assert_eq!(numeric_date(&json!(1_700_000_000.7)), Some(1_700_000_000));
        assert_eq!(numeric_date(&json!(u64::MAX)), Some(i64::MAX));
        for bad in [json!("soon"), json!(""), json!(" 17"), json!(null), json!([1]), json!({"a": 1}), json!(true)] {
            assert_eq!(numeric_date(&bad), None, "{bad}");
        }
    }

    /// The shape is `crate::standin::parse_jwt`'s (tested there); Salesforce takes RS256 only.
    #[test]
    fn only_rs256_assertions_parse() {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let claims = b64(r#"{"iss":"x"}"#);
        assert!(parse_jwt(&format!("{}.{claims}.c2ln", b64(r#"{"alg":"RS256"}"#))).is_some());
        for header in [r#"{"alg":"HS256","typ":"JWT"}"#, r#"{"alg":"none"}"#, r#"{"typ":"JWT"}"#, r#"{"alg":"PS256"}"#] {
            assert!(parse_jwt(&format!("{}.{claims}.c2ln", b64(header))).is_none(), "{header}");
        }
        assert!(parse_jwt("a.b.c").is_none());
    }

    #[test]
    fn forced_failures_count_down() {
        let mut slot = Some((2usize, 503u16));
        assert_eq!(take_one(&mut slot), Some(503));
        assert_eq!(take_one(&mut slot), Some(503));
        assert_eq!(take_one(&mut slot), None);
    }
}
