//! A stand-in OAuth 2.0 authorization server (`connvault dev-oauth2`, and the web server flow
//! of the Salesforce stand-in): a login and consent page, authorization codes bound to the
//! client, the redirect URI and a PKCE S256 challenge, single use; refresh tokens, rotated on
//! every use (the superseded one is refused); revocation (RFC 7009); userinfo. For local demos
//! and tests only: nothing here runs in `connvault serve`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::standin::{ct_eq, escape_html, html, random_chars};

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// A code must be redeemed within this time.
pub const CODE_LIFETIME: Duration = Duration::from_secs(120);

/// A client (app) registered with the server.
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub client_secret: String,
    /// Exactly as registered; the authorize request's `redirect_uri` must be one of them.
    pub redirect_uris: Vec<String>,
    /// Blocked by the server's admin: every authorize request is refused.
    pub blocked: bool,
    /// The only users who may approve it (lower case), when set.
    pub allowed_users: Option<Vec<String>>,
}

/// How this server words its refusals and how it behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// The login page's title.
    pub title: String,
    /// `error` for an unknown client (RFC 6749: `invalid_client`; Salesforce: `invalid_client_id`).
    pub unknown_client: &'static str,
    /// `(error, error_description)` for a blocked client, and for a user it is not approved for.
    pub blocked: (&'static str, &'static str),
    pub not_approved: (&'static str, &'static str),
    /// `error_description` of a refused refresh token.
    pub bad_refresh: &'static str,
    pub access_lifetime: Duration,
    pub rotate: bool,
    /// The Content-Type of its JSON answers.
    pub content_type: &'static str,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            title: "OAuth 2.0 stand-in".into(),
            unknown_client: "invalid_client",
            blocked: ("access_denied", "the client is blocked"),
            not_approved: ("access_denied", "the user may not use this client"),
            bad_refresh: "the refresh token is invalid, expired, revoked or was rotated",
            access_lifetime: Duration::from_secs(3600),
            rotate: true,
            content_type: "application/json",
        }
    }
}

/// What a token answer adds for a user (Salesforce's `instance_url`, `id`…), and who is told
/// about each access token issued: `(username, base URL)` and `(username, access token)`.
pub type Extras = Arc<dyn Fn(&str, &str) -> Map<String, Value> + Send + Sync>;
pub type OnIssue = Arc<dyn Fn(&str, &str) + Send + Sync>;

struct Code {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    user: String,
    scope: String,
    issued: Instant,
    used: bool,
}

struct Refresh {
    client_id: String,
    user: String,
    scope: String,
    active: bool,
}

#[derive(Default)]
struct Counts {
    token_requests: usize,
    refreshes: usize,
    revocations: usize,
}

struct St {
    options: Options,
    clients: Vec<Client>,
    /// Lower-cased username → (username, password).
    users: BTreeMap<String, (String, String)>,
    codes: HashMap<String, Code>,
    refresh: HashMap<String, Refresh>,
    /// Access token → (user, until).
    access: HashMap<String, (String, Instant)>,
    counts: Counts,
    refresh_delay: Duration,
    /// The next `n` refreshes are refused with `invalid_grant` (a revoked grant, as admins do).
    fail_refreshes: usize,
}

/// The server; cheap to clone (shared state).
#[derive(Clone)]
pub struct AuthServer {
    st: Arc<Mutex<St>>,
    extras: Option<Extras>,
    on_issue: Option<OnIssue>,
}

impl Default for AuthServer {
    fn default() -> Self {
        AuthServer::new(Options::default())
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    crate::standin::json_response(status, "application/json", json!({"error": error, "error_description": description}).to_string())
}

/// An answer in the server's own JSON content type.
fn with_type(mut response: Response, content_type: &'static str) -> Response {
    response.headers_mut().insert(header::CONTENT_TYPE, axum::http::HeaderValue::from_static(content_type));
    response
}

/// `BASE64URL(SHA256(verifier))`, as RFC 7636 4.6 compares it.
pub fn s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn form(body: &[u8]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    out
}

impl AuthServer {
    pub fn new(options: Options) -> AuthServer {
        AuthServer {
            st: Arc::new(Mutex::new(St {
                options,
                clients: Vec::new(),
                users: BTreeMap::new(),
                codes: HashMap::new(),
                refresh: HashMap::new(),
                access: HashMap::new(),
                counts: Counts::default(),
                refresh_delay: Duration::ZERO,
                fail_refreshes: 0,
            })),
            extras: None,
            on_issue: None,
        }
    }

    /// With what each token answer adds, and whom to tell about each access token.
    pub fn with_hooks(mut self, extras: Extras, on_issue: OnIssue) -> AuthServer {
        self.extras = Some(extras);
        self.on_issue = Some(on_issue);
        self
    }

    fn lock(&self) -> MutexGuard<'_, St> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add_client(&self, client: Client) {
        let mut st = self.lock();
        st.clients.retain(|c| c.client_id != client.client_id);
        st.clients.push(client);
    }

    /// Registers a client with a new random id and secret: `(client_id, client_secret)`.
    pub fn new_client(&self, redirect_uris: Vec<String>, allowed_users: Option<Vec<String>>) -> (String, String) {
        let (id, secret) = (format!("client-{}", random_chars(16, ALPHABET)), random_chars(40, ALPHABET));
        self.add_client(Client { client_id: id.clone(), client_secret: secret.clone(), redirect_uris, blocked: false, allowed_users });
        (id, secret)
    }

    pub fn update_client(&self, client_id: &str, change: impl FnOnce(&mut Client)) -> bool {
        let mut st = self.lock();
        st.clients.iter_mut().find(|c| c.client_id == client_id).map(change).is_some()
    }

    pub fn add_user(&self, username: &str, password: &str) {
        self.lock().users.insert(username.to_lowercase(), (username.to_string(), password.to_string()));
    }

    /// Token requests of any grant, refresh grants that worked, revocations.
    pub fn token_requests(&self) -> usize {
        self.lock().counts.token_requests
    }
    pub fn refreshes(&self) -> usize {
        self.lock().counts.refreshes
    }
    pub fn revocations(&self) -> usize {
        self.lock().counts.revocations
    }

    /// Each refresh takes this long (so that concurrent callers overlap).
    pub fn set_refresh_delay(&self, delay: Duration) {
        self.lock().refresh_delay = delay;
    }

    pub fn set_access_lifetime(&self, lifetime: Duration) {
        self.lock().options.access_lifetime = lifetime;
    }

    /// The next `n` refreshes answer `invalid_grant`, as when the grant was revoked.
    pub fn fail_next_refreshes(&self, n: usize) {
        self.lock().fail_refreshes = n;
    }

    /// Whether `token` is a refresh token that still works.
    pub fn refresh_token_active(&self, token: &str) -> bool {
        self.lock().refresh.get(token).is_some_and(|r| r.active)
    }

    /// Every refresh token issued that still works.
    pub fn active_refresh_tokens(&self) -> Vec<String> {
        self.lock().refresh.iter().filter(|(_, r)| r.active).map(|(t, _)| t.clone()).collect()
    }

    /// The user behind an access token, while it lives.
    pub fn user_of(&self, access_token: &str) -> Option<String> {
        let st = self.lock();
        st.access.get(access_token).filter(|(_, until)| *until > Instant::now()).map(|(u, _)| u.clone())
    }

    /// Plays a person at the login page: signs in as `username` and approves, for the
    /// authorize URL `authorize` (as connvault built it). The redirect the browser would follow.
    pub fn approve(&self, authorize: &str, username: &str, password: &str) -> Result<String, String> {
        let url = url::Url::parse(authorize).map_err(|e| e.to_string())?;
        let q: HashMap<String, String> = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        self.decide(&q, Some((username, password))).map_err(|(_, page)| page)
    }

    /// Checks an authorize request: the client and redirect URI (refused on a page, never
    /// redirected), then what goes back to the client as an error redirect.
    fn check_request(&self, q: &HashMap<String, String>) -> Result<(Client, String), Result<String, String>> {
        let st = self.lock();
        let client_id = q.get("client_id").cloned().unwrap_or_default();
        let Some(client) = st.clients.iter().find(|c| c.client_id == client_id).cloned() else {
            return Err(Err(format!("error={}: client identifier invalid ({client_id})", st.options.unknown_client)));
        };
        let redirect = q.get("redirect_uri").cloned().unwrap_or_default();
        if !client.redirect_uris.contains(&redirect) {
            return Err(Err(format!("error=redirect_uri_mismatch: redirect_uri must match configuration ({redirect} is not registered)")));
        }
        let back = |error: &str, description: &str| {
            Err(Ok(redirect_with(
                &redirect,
                &[("error", error), ("error_description", description), ("state", q.get("state").map(String::as_str).unwrap_or_default())],
            )))
        };
        if q.get("response_type").map(String::as_str) != Some("code") {
            return back("unsupported_response_type", "response_type must be code");
        }
        if q.get("code_challenge").is_none_or(|c| c.len() < 43) || q.get("code_challenge_method").map(String::as_str) != Some("S256") {
            return back("invalid_request", "PKCE is required: code_challenge with code_challenge_method=S256");
        }
        if client.blocked {
            let (e, d) = st.options.blocked;
            return back(e, d);
        }
        Ok((client, redirect))
    }

    /// The person's answer on the login page: `None` denies; else sign-in and approval. The
    /// redirect to the client, or the page to show again.
    fn decide(&self, q: &HashMap<String, String>, login: Option<(&str, &str)>) -> Result<String, (StatusCode, String)> {
        let (client, redirect) = match self.check_request(q) {
            Ok(found) => found,
            Err(Ok(back)) => return Ok(back),
            Err(Err(page)) => return Err((StatusCode::BAD_REQUEST, page)),
        };
        let state = q.get("state").cloned().unwrap_or_default();
        let Some((username, password)) = login else {
            return Ok(redirect_with(&redirect, &[("error", "access_denied"), ("error_description", "end-user denied authorization"), ("state", &state)]));
        };
        let mut st = self.lock();
        let user = username.trim().to_lowercase();
        let known = st.users.get(&user).is_some_and(|(_, p)| ct_eq(p, password));
        if !known {
            return Err((StatusCode::UNAUTHORIZED, "Wrong username or password.".into()));
        }
        if client.allowed_users.as_ref().is_some_and(|users| !users.iter().any(|u| u.to_lowercase() == user)) {
            let (e, d) = st.options.not_approved;
            return Ok(redirect_with(&redirect, &[("error", e), ("error_description", d), ("state", &state)]));
        }
        let code = random_chars(48, ALPHABET);
        st.codes.insert(
            code.clone(),
            Code {
                client_id: client.client_id,
                redirect_uri: redirect.clone(),
                challenge: q.get("code_challenge").cloned().unwrap_or_default(),
                user,
                scope: q.get("scope").cloned().unwrap_or_default(),
                issued: Instant::now(),
                used: false,
            },
        );
        Ok(redirect_with(&redirect, &[("code", &code), ("state", &state)]))
    }

    /// The client of a token or revocation request (HTTP Basic, or in the form), or the refusal.
    fn client_of(&self, headers: &HeaderMap, f: &HashMap<String, String>) -> Result<Client, Response> {
        let basic = headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok()).and_then(|h| h.strip_prefix("Basic ")).and_then(|b| {
            let pair = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b.trim()).ok()?).ok()?;
            let (id, secret) = pair.split_once(':')?;
            let dec = |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
            Some((dec(id), dec(secret)))
        });
        let (id, secret) = basic.unwrap_or_else(|| (f.get("client_id").cloned().unwrap_or_default(), f.get("client_secret").cloned().unwrap_or_default()));
        let st = self.lock();
        let Some(client) = st.clients.iter().find(|c| c.client_id == id) else {
            return Err(oauth_error(StatusCode::BAD_REQUEST, st.options.unknown_client, "client identifier invalid"));
        };
        if !ct_eq(&client.client_secret, &secret) {
            return Err(oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "invalid client credentials"));
        }
        Ok(client.clone())
    }

    /// `POST {token}`: the authorization code and refresh token grants.
    pub async fn token(&self, headers: &HeaderMap, body: &[u8], base: &str) -> Response {
        let content_type = self.lock().options.content_type;
        with_type(self.token_answer(headers, body, base).await, content_type)
    }

    async fn token_answer(&self, headers: &HeaderMap, body: &[u8], base: &str) -> Response {
        self.lock().counts.token_requests += 1;
        let f = form(body);
        let client = match self.client_of(headers, &f) {
            Ok(c) => c,
            Err(refused) => return refused,
        };
        let grant = f.get("grant_type").map(String::as_str).unwrap_or_default();
        let (user, scope) = match grant {
            "authorization_code" => {
                let mut st = self.lock();
                let Some(code) = st.codes.get_mut(f.get("code").map(String::as_str).unwrap_or_default()) else {
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "invalid authorization code");
                };
                if code.used {
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "authorization code has been used already");
                }
                code.used = true;
                if code.issued.elapsed() > CODE_LIFETIME {
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "expired authorization code");
                }
                if code.client_id != client.client_id {
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "the code was issued to another client");
                }
                if f.get("redirect_uri") != Some(&code.redirect_uri) {
                    return oauth_error(StatusCode::BAD_REQUEST, "redirect_uri_mismatch", "redirect_uri must match the authorize request's");
                }
                let verifier = f.get("code_verifier").cloned().unwrap_or_default();
                if verifier.len() < 43 || !ct_eq(&s256(&verifier), &code.challenge) {
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "code_verifier does not match the code_challenge");
                }
                (code.user.clone(), code.scope.clone())
            }
            "refresh_token" => {
                let delay = self.lock().refresh_delay;
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let mut st = self.lock();
                let bad = st.options.bad_refresh;
                if st.fail_refreshes > 0 {
                    st.fail_refreshes -= 1;
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", bad);
                }
                let rotate = st.options.rotate;
                let presented = f.get("refresh_token").cloned().unwrap_or_default();
                let Some(r) = st.refresh.get_mut(&presented).filter(|r| r.active && r.client_id == client.client_id) else {
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", bad);
                };
                if rotate {
                    r.active = false;
                }
                let found = (r.user.clone(), r.scope.clone());
                st.counts.refreshes += 1;
                if !rotate {
                    return self.issue(&mut st, &found.0, &found.1, &client.client_id, base, Some(presented));
                }
                found
            }
            _ => return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "grant type not supported"),
        };
        let mut st = self.lock();
        self.issue(&mut st, &user, &scope, &client.client_id, base, None)
    }

    /// A token answer: a new access token, and a new refresh token unless `keep` (no rotation).
    fn issue(&self, st: &mut St, user: &str, scope: &str, client_id: &str, base: &str, keep: Option<String>) -> Response {
        let access = random_chars(64, ALPHABET);
        let lifetime = st.options.access_lifetime;
        st.access.insert(access.clone(), (user.to_string(), Instant::now() + lifetime));
        let refresh = match keep {
            Some(t) => t,
            None => {
                let t = random_chars(64, ALPHABET);
                st.refresh.insert(t.clone(), Refresh { client_id: client_id.to_string(), user: user.to_string(), scope: scope.to_string(), active: true });
                t
            }
        };
        if let Some(hook) = &self.on_issue {
            hook(user, &access);
        }
        let mut answer = json!({"access_token": access, "token_type": "Bearer", "expires_in": lifetime.as_secs(), "refresh_token": refresh, "scope": scope});
        if let (Some(extras), Some(map)) = (&self.extras, answer.as_object_mut()) {
            map.extend(extras(user, base));
        }
        crate::standin::json_response(StatusCode::OK, "application/json", answer.to_string())
    }

    /// `POST {revoke}` (RFC 7009): the token ends; 200 whether it was known or not.
    pub fn revoke(&self, headers: &HeaderMap, body: &[u8]) -> Response {
        let f = form(body);
        if let Err(refused) = self.client_of(headers, &f) {
            return refused;
        }
        let mut st = self.lock();
        st.counts.revocations += 1;
        let token = f.get("token").cloned().unwrap_or_default();
        if let Some(r) = st.refresh.get_mut(&token) {
            r.active = false;
        }
        st.access.remove(&token);
        StatusCode::OK.into_response()
    }

    /// The login and consent page for an authorize request.
    pub fn login_page(&self, q: &HashMap<String, String>, message: Option<&str>) -> Response {
        match self.check_request(q) {
            Err(Err(page)) => {
                return html(
                    StatusCode::BAD_REQUEST,
                    render(&self.lock().options.title, "Cannot sign in", &format!("<p role=\"alert\">{}</p>", escape_html(&page))),
                )
            }
            Err(Ok(back)) => return see_other(&back),
            Ok(_) => {}
        }
        let e = escape_html;
        let hidden: String = q.iter().map(|(k, v)| format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", e(k), e(v))).collect();
        let client = e(q.get("client_id").map(String::as_str).unwrap_or_default());
        let scope = e(q.get("scope").map(String::as_str).unwrap_or("(none)"));
        let alert = message.map(|m| format!("<p role=\"alert\">{}</p>", e(m))).unwrap_or_default();
        let body = format!(
            "{alert}<p>Sign in to allow <b>{client}</b> to access: <code>{scope}</code></p>\
             <form method=\"post\">{hidden}<label>Username <input name=\"username\" id=\"username\" autocomplete=\"username\"></label><br>\
             <label>Password <input name=\"password\" id=\"password\" type=\"password\" autocomplete=\"current-password\"></label><br>\
             <button name=\"decision\" value=\"allow\">Allow</button> <button name=\"decision\" value=\"deny\">Deny</button></form>"
        );
        let status = if message.is_some() { StatusCode::UNAUTHORIZED } else { StatusCode::OK };
        html(status, render(&self.lock().options.title, "Sign in", &body))
    }

    /// The login page's answer.
    pub fn login_answer(&self, body: &[u8]) -> Response {
        let mut f = form(body);
        let decision = f.remove("decision").unwrap_or_default();
        let (username, password) = (f.remove("username").unwrap_or_default(), f.remove("password").unwrap_or_default());
        let login = (decision == "allow").then_some((username.as_str(), password.as_str()));
        match self.decide(&f, login) {
            Ok(back) => see_other(&back),
            Err((StatusCode::UNAUTHORIZED, message)) => self.login_page(&f, Some(&message)),
            Err((status, page)) => html(status, render(&self.lock().options.title, "Cannot sign in", &format!("<p role=\"alert\">{}</p>", escape_html(&page)))),
        }
    }

    /// `GET {userinfo}` with a bearer access token.
    pub fn userinfo(&self, headers: &HeaderMap) -> Response {
        let token = headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok()).and_then(|h| h.strip_prefix("Bearer ")).unwrap_or_default();
        let Some(user) = self.user_of(token.trim()) else {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_token", "the access token is invalid or expired");
        };
        let name = self.lock().users.get(&user).map(|(n, _)| n.clone()).unwrap_or(user.clone());
        crate::standin::json_response(StatusCode::OK, "application/json", json!({"sub": user, "preferred_username": name, "email": name}).to_string())
    }

    /// The server on its own: `/authorize`, `/token`, `/revoke`, `/userinfo`, and a demo page
    /// at `/` that registers clients.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/authorize", get(authorize_get).post(authorize_post))
            .route("/token", post(token_post))
            .route("/revoke", post(revoke_post))
            .route("/userinfo", get(userinfo_get))
            .route("/", get(demo_get))
            .route("/clients", post(demo_client))
            .with_state(self.clone())
    }
}

fn render(title: &str, heading: &str, body: &str) -> String {
    let t = escape_html(title);
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>body{{font-family:sans-serif;max-width:40rem;margin:2rem auto}}</style>\
         </head><body><p><b>{t}</b> (a local stand-in, for demos and tests)</p><h1>{}</h1>{body}</body></html>",
        escape_html(heading)
    )
}

fn redirect_with(redirect: &str, params: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(redirect).unwrap_or_else(|_| url::Url::parse("http://invalid.local/").expect("a URL"));
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params.iter().filter(|(_, v)| !v.is_empty()) {
            q.append_pair(k, v);
        }
    }
    url.to_string()
}

fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = header::HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn base_of(headers: &HeaderMap) -> String {
    headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(|h| format!("http://{h}")).unwrap_or_else(|| "http://localhost".into())
}

pub async fn authorize_get(State(s): State<AuthServer>, Query(q): Query<HashMap<String, String>>) -> Response {
    s.login_page(&q, None)
}

pub async fn authorize_post(State(s): State<AuthServer>, body: Bytes) -> Response {
    s.login_answer(&body)
}

async fn token_post(State(s): State<AuthServer>, headers: HeaderMap, body: Bytes) -> Response {
    let base = base_of(&headers);
    s.token(&headers, &body, &base).await
}

pub async fn revoke_post(State(s): State<AuthServer>, headers: HeaderMap, body: Bytes) -> Response {
    s.revoke(&headers, &body)
}

async fn userinfo_get(State(s): State<AuthServer>, headers: HeaderMap) -> Response {
    s.userinfo(&headers)
}

/// The demo page: register a client (its redirect URI) and a user who may sign in.
async fn demo_get(State(s): State<AuthServer>, headers: HeaderMap) -> Response {
    html(StatusCode::OK, demo(&s, &base_of(&headers), None))
}

async fn demo_client(State(s): State<AuthServer>, headers: HeaderMap, body: Bytes) -> Response {
    let f = form(&body);
    let (redirect, user, password) =
        (f.get("redirect_uri").cloned().unwrap_or_default(), f.get("username").cloned().unwrap_or_default(), f.get("password").cloned().unwrap_or_default());
    if url::Url::parse(&redirect).is_err() || user.trim().is_empty() || password.is_empty() {
        return html(StatusCode::BAD_REQUEST, demo(&s, &base_of(&headers), Some(Err("Enter the redirect URI (a URL), a username and a password.".into()))));
    }
    s.add_user(user.trim(), &password);
    let (id, secret) = s.new_client(vec![redirect], None);
    html(StatusCode::OK, demo(&s, &base_of(&headers), Some(Ok((id, secret)))))
}

fn demo(_s: &AuthServer, base: &str, outcome: Option<Result<(String, String), String>>) -> String {
    let e = escape_html;
    let shown = match outcome {
        Some(Ok((id, secret))) => {
            format!("<p>Client ID: <code id=\"client-id\">{}</code><br>Client secret: <code id=\"client-secret\">{}</code></p>", e(&id), e(&secret))
        }
        Some(Err(m)) => format!("<p role=\"alert\">{}</p>", e(&m)),
        None => String::new(),
    };
    let b = e(base);
    render(
        "OAuth 2.0 stand-in",
        "Register a client",
        &format!(
            "<p>Authorize URL <code>{b}/authorize</code>, token URL <code>{b}/token</code>, revocation URL <code>{b}/revoke</code>, userinfo URL \
             <code>{b}/userinfo</code>.</p>{shown}<form method=\"post\" action=\"/clients\"><label>Redirect URI <input name=\"redirect_uri\" id=\"redirect_uri\"></label><br>\
             <label>Username <input name=\"username\" id=\"new-username\"></label><br><label>Password <input name=\"password\" id=\"new-password\"></label><br>\
             <button>Register</button></form>"
        ),
    )
}

/// Serves the stand-in on `addr` until the process ends, printing its URL (`connvault dev-oauth2`).
pub async fn run_demo(addr: std::net::SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let base = format!("http://{}", listener.local_addr()?);
    println!("connvault OAuth 2.0 stand-in (for local demos and tests): {base}/");
    println!("  authorize: {base}/authorize   token: {base}/token   revoke: {base}/revoke   userinfo: {base}/userinfo");
    axum::serve(listener, AuthServer::default().router()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_is_rfc_7636s_example() {
        // RFC 7636 appendix B.
        assert_eq!(s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }
}
