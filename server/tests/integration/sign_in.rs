//! Connecting by signing in (OAuth 2.0 authorization code with PKCE and refresh tokens)
//! against the stand-in authorization server and the Salesforce stand-in's web server flow, on
//! every backend: the state bound to the session and single use, codes single use, PKCE, one
//! refresh for many callers, rotation that keeps the newest refresh token, invalid_grant,
//! disconnect with revocation, re-pointing, promotion and backups.

use crate::common;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use common::{backends, key, session, Api, TestDb, Who};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use server::oauth_standin::AuthServer;
use server::providers::salesforce::standin::StandIn;
use server::secret::SecretString;
use server::startup::{self, Services};
use tower::ServiceExt;

const USER: &str = "alice@example.com";
const PASSWORD: &str = "alice's password";
const TOKEN_PATH: &str = "/api/v1/environments/DEV/integrations/Mail/token";

async fn open(db: &TestDb) -> Services {
    startup::open(db.config_with(&[("CONNVAULT_ALLOW_LOOPBACK", "1")])).await.expect("open")
}

async fn spawn(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    base
}

/// A GET through the router as a browser: status, Location, body.
async fn get(api: &Api, cookie: Option<&str>, path: &str) -> (StatusCode, String, String) {
    let mut req = Request::builder().method("GET").uri(path);
    if let Some(c) = cookie {
        req = req.header("Cookie", format!("cv_session={c}"));
    }
    let mut req = req.body(Body::empty()).unwrap();
    req.extensions_mut().insert(ConnectInfo("192.0.2.1:5000".parse::<std::net::SocketAddr>().unwrap()));
    let res = api.router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let location = res.headers().get("location").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let body = String::from_utf8_lossy(&res.into_body().collect().await.unwrap().to_bytes()).into_owned();
    (status, location, body)
}

/// Path and query of a URL the browser is sent to (the callback on connvault).
fn local(url: &str) -> String {
    let u = url::Url::parse(url).unwrap();
    format!("{}?{}", u.path(), u.query().unwrap_or_default())
}

/// The outcome of the sign-in a callback landed on (`…?sign_in=ID`), as its person sees it.
async fn outcome(api: &Api, cookie: &str, location: &str) -> server::connect::SignInResult {
    let id: i64 = location.rsplit('=').next().unwrap().parse().unwrap();
    let user = server::sessions::user_for(&api.s.db, cookie).await.unwrap().unwrap();
    let name = location.split('?').next().unwrap().rsplit('/').next().unwrap();
    let c = server::connections::get(&api.s.db, "DEV", name).await.unwrap();
    server::connect::result_of(&api.s.db, &c, &user, id).await.unwrap().expect("an outcome for this person")
}

struct World {
    api: Api,
    /// An API key that may manage DEV and read its tokens.
    k: String,
    /// The owner's browser session.
    owner: String,
    auth: AuthServer,
    base: String,
}

/// The stand-in server with a client registered for connvault's callback and a user; an owner
/// signed in to connvault; connection `Mail` (oauth2) and integration `Mail` bound to it.
async fn world(db: &TestDb) -> World {
    let api = Api::new(open(db).await);
    let auth = AuthServer::default();
    let base = spawn(auth.router()).await;
    auth.add_user(USER, PASSWORD);
    let (client_id, client_secret) = auth.new_client(vec![server::connect::callback_url(&api.s.config)], None);
    let k = key(&api.s, &["DEV:connections:rw", "DEV:integrations:rw", "DEV:bindings:rw", "DEV:tokens:read", "DEV:audit:read"]).await;
    let owner = session(&api.s, "owner@acme.com", None, true).await;
    let settings = json!({
        "authorize_url": format!("{base}/authorize"), "token_url": format!("{base}/token"), "revoke_url": format!("{base}/revoke"),
        "userinfo_url": format!("{base}/userinfo"), "client_id": client_id, "scopes": "mail.read offline_access",
        "authorize_params": {"prompt": "consent"}
    });
    let body = json!({"name": "Mail", "provider": "oauth2", "settings": settings, "secrets": {"client_secret": client_secret}});
    let (st, _, text) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections", Some(body)).await;
    assert_eq!(st, 201, "{text}");
    let (st, _, text) = api.call(Who::Key(&k), "PUT", "/api/v1/environments/DEV/integrations/Mail", Some(json!({"provider": "oauth2", "objects": []}))).await;
    assert!(st.is_success(), "{text}");
    let (st, _, text) = api.call(Who::Key(&k), "PUT", "/api/v1/environments/DEV/integrations/Mail/binding", Some(json!({"connection": "Mail"}))).await;
    assert!(st.is_success(), "{text}");
    World { api, k, owner, auth, base }
}

impl World {
    /// `GET /connect/DEV/Mail` as `cookie`: the authorize URL connvault sends the browser to.
    async fn start(&self, cookie: &str) -> String {
        let (st, location, body) = get(&self.api, Some(cookie), "/connect/DEV/Mail").await;
        assert_eq!(st, StatusCode::SEE_OTHER, "{body}");
        assert!(location.starts_with(&format!("{}/authorize?", self.base)), "{location}");
        location
    }

    /// A whole sign-in by the owner: the connection page it lands on.
    async fn sign_in(&self) -> String {
        let authorize = self.start(&self.owner).await;
        let back = self.auth.approve(&authorize, USER, PASSWORD).unwrap();
        let (st, location, body) = get(&self.api, Some(&self.owner), &local(&back)).await;
        assert_eq!(st, StatusCode::SEE_OTHER, "{body}");
        location
    }

    async fn status(&self) -> server::connect::SignInStatus {
        let c = server::connections::get(&self.api.s.db, "DEV", "Mail").await.unwrap();
        server::connect::status(&self.api.s.db, &self.api.s.config, &c).await.unwrap()
    }

    async fn stored_refresh(&self) -> Option<String> {
        server::connections::open_secret(&self.api.s.db, &self.api.s.vault, "DEV", "Mail", "refresh_token").await.ok().map(|s| s.expose_secret().to_string())
    }

    async fn token(&self, force: bool) -> (StatusCode, Value, String) {
        let path = if force { format!("{TOKEN_PATH}?force_refresh=true") } else { TOKEN_PATH.to_string() };
        self.api.call(Who::Key(&self.k), "POST", &path, None).await
    }
}

#[tokio::test]
async fn signing_in_connects_and_the_broker_refreshes_with_the_rotated_token() {
    for db in backends().await {
        let w = world(&db).await;
        assert_eq!(w.status().await.state, "needs_sign_in");
        let (st, err, _) = w.token(false).await;
        assert_eq!(st, 424, "{err}");
        assert!(err["error"]["message"].as_str().unwrap().contains("nobody has signed in"), "{err}");

        let authorize = w.start(&w.owner).await;
        let q: std::collections::HashMap<String, String> = url::Url::parse(&authorize).unwrap().query_pairs().into_owned().collect();
        assert_eq!((q["response_type"].as_str(), q["code_challenge_method"].as_str(), q["prompt"].as_str()), ("code", "S256", "consent"));
        assert_eq!(q["scope"], "mail.read offline_access");
        assert_eq!(q["redirect_uri"], server::connect::callback_url(&w.api.s.config));
        let back = w.auth.approve(&authorize, USER, PASSWORD).unwrap();
        let (st, location, body) = get(&w.api, Some(&w.owner), &local(&back)).await;
        assert_eq!(st, StatusCode::SEE_OTHER, "{body}");
        assert!(location.starts_with("/env/DEV/connections/Mail?sign_in="), "{location}");
        let status = w.status().await;
        assert_eq!(status.state, "connected", "{status:?}");
        assert!(status.summary.contains(&format!("as {USER}")), "{status:?}");
        let first = w.stored_refresh().await.unwrap();
        assert!(w.auth.refresh_token_active(&first));

        // The broker hands out an access token the server knows as Alice's.
        let (st, t, text) = w.token(false).await;
        assert_eq!(st, 200, "{text}");
        assert_eq!(w.auth.user_of(t["access_token"].as_str().unwrap()).as_deref(), Some(USER));
        // A forced refresh rotates: the old refresh token is spent, the new one stored and live.
        let refreshes = w.auth.refreshes();
        let (st, fresh, text) = w.token(true).await;
        assert_eq!(st, 200, "{text}");
        assert_ne!(fresh["access_token"], t["access_token"]);
        assert_eq!(w.auth.refreshes(), refreshes + 1);
        let second = w.stored_refresh().await.unwrap();
        assert_ne!(second, first);
        assert!(!w.auth.refresh_token_active(&first) && w.auth.refresh_token_active(&second));
        let (st, _, text) = w.token(true).await;
        assert_eq!(st, 200, "the rotated token works: {text}");

        // Nothing secret in the audit trail.
        let (_, audit, audit_text) = w.api.call(Who::Key(&w.k), "GET", "/api/v1/audit?environment=DEV", None).await;
        assert!(audit["items"].as_array().unwrap().iter().any(|e| e["action"] == "connection.sign_in" && e["outcome"] == "success"), "{audit}");
        for secret in [first.as_str(), second.as_str(), fresh["access_token"].as_str().unwrap()] {
            assert!(!audit_text.contains(secret));
        }
    }
}

#[tokio::test]
async fn a_callback_with_another_sessions_state_is_refused_and_a_state_works_once() {
    for db in backends().await {
        let w = world(&db).await;
        let mallory = session(&w.api.s, "mallory@acme.com", Some(("DEV", server::users::Role::Developer)), false).await;
        let authorize = w.start(&w.owner).await;
        let back = w.auth.approve(&authorize, USER, PASSWORD).unwrap();
        for cookie in [Some(mallory.as_str()), None] {
            let (st, _, body) = get(&w.api, cookie, &local(&back)).await;
            assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
            assert!(body.contains("another browser session"), "{body}");
        }
        assert_eq!(w.status().await.state, "needs_sign_in");
        assert_eq!(w.auth.token_requests(), 0, "the code never left connvault");
        // The owner's own callback still works (the refused ones did not spend it) …
        let (st, location, _) = get(&w.api, Some(&w.owner), &local(&back)).await;
        assert_eq!(st, StatusCode::SEE_OTHER);
        assert!(location.contains("sign_in="));
        assert_eq!(w.status().await.state, "connected");
        // … once: the same state (and code) again is refused before any token request.
        let requests = w.auth.token_requests();
        let (st, _, body) = get(&w.api, Some(&w.owner), &local(&back)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(body.contains("used already"), "{body}");
        assert_eq!(w.auth.token_requests(), requests);
        // An unknown state, and none at all.
        let (st, _, body) = get(&w.api, Some(&w.owner), "/oauth/callback?state=nope&code=x").await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(body.contains("does not know this sign-in"), "{body}");
        let (st, _, body) = get(&w.api, Some(&w.owner), "/oauth/callback?code=x").await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(body.contains("no state"), "{body}");
        // An expired state.
        let authorize = w.start(&w.owner).await;
        let back = w.auth.approve(&authorize, USER, PASSWORD).unwrap();
        db.exec("UPDATE oauth_states SET expires_at = '2020-01-01T00:00:00.000000Z' WHERE used_at IS NULL").await;
        let (st, _, body) = get(&w.api, Some(&w.owner), &local(&back)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(body.contains("older than 10 minutes"), "{body}");
    }
}

#[tokio::test]
async fn a_code_used_twice_and_a_wrong_code_verifier_are_refused() {
    for db in backends().await {
        let w = world(&db).await;
        let c = server::connections::get(&w.api.s.db, "DEV", "Mail").await.unwrap();
        let s = server::providers::oauth2::Settings::from_map(&c.settings);
        let secret = server::connections::open_secret(&w.api.s.db, &w.api.s.vault, "DEV", "Mail", "client_secret").await.unwrap();
        let redirect = server::connect::callback_url(&w.api.s.config);
        let verifier = server::oauth::new_verifier();
        let code_of = |authorize: &str| {
            let back = w.auth.approve(authorize, USER, PASSWORD).unwrap();
            url::Url::parse(&back).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned()
        };
        let url = server::oauth::authorize_url(&s.authorize_url, &s.client_id, &redirect, &s.scopes, "st", &verifier, &[]).unwrap();
        let redeem = |code: String, verifier: SecretString| {
            let (out, s, secret, redirect) = (&w.api.s.outbound, &s, &secret, &redirect);
            async move {
                let grant = server::oauth::Grant::Code { code: &code, verifier: &verifier, redirect_uri: redirect };
                server::oauth::request_token(out, &s.token_url, &s.client_id, grant, || Ok(server::oauth::ClientAuth::SecretBasic(secret))).await
            }
        };
        let code = code_of(&url);
        assert!(redeem(code.clone(), verifier.clone()).await.is_ok());
        match redeem(code, verifier.clone()).await {
            Err(server::oauth::Failure::Refused { error, description, .. }) => {
                assert_eq!((error.as_str(), description.as_str()), ("invalid_grant", "authorization code has been used already"))
            }
            other => panic!("{other:?}"),
        }
        match redeem(code_of(&url), server::oauth::new_verifier()).await {
            Err(server::oauth::Failure::Refused { error, description, .. }) => {
                assert_eq!(error, "invalid_grant");
                assert!(description.contains("code_verifier"), "{description}");
            }
            other => panic!("{other:?}"),
        }

        // Through connvault: a sign-in whose stored verifier is not the one its challenge was
        // made from lands back on the page with the refusal, and stores nothing.
        let authorize = w.start(&w.owner).await;
        let env = server::environments::find(&w.api.s.db, "DEV").await.unwrap();
        let place = server::seal::Place { table: "oauth_states", row: c.id, field: "code_verifier", environment: env.id };
        let wrong = w.api.s.vault.seal(&place, server::oauth::new_verifier().expose_secret().as_bytes());
        sqlx::query("UPDATE oauth_states SET verifier = $1 WHERE used_at IS NULL").bind(wrong).execute(w.api.s.db.pool()).await.unwrap();
        let back = w.auth.approve(&authorize, USER, PASSWORD).unwrap();
        let (st, location, _) = get(&w.api, Some(&w.owner), &local(&back)).await;
        assert_eq!(st, StatusCode::SEE_OTHER);
        let result = outcome(&w.api, &w.owner, &location).await;
        assert!(!result.ok && result.detail.contains("code_verifier does not match"), "{result:?}");
        assert!(w.stored_refresh().await.is_none());
        assert_eq!(w.status().await.state, "needs_sign_in");
    }
}

#[tokio::test]
async fn fifty_broker_calls_on_an_expired_access_token_cause_one_refresh() {
    for db in backends().await {
        let w = world(&db).await;
        w.sign_in().await;
        // The access token from the sign-in has expired.
        db.exec("UPDATE tokens SET expires_at = '2020-01-01T00:00:00.000000Z', obtained_at = '2020-01-01T00:00:00.000000Z'").await;
        w.auth.set_refresh_delay(std::time::Duration::from_millis(300));
        let before = w.auth.refreshes();
        let answers = futures::future::join_all((0..50).map(|_| w.token(false))).await;
        assert_eq!(w.auth.refreshes() - before, 1, "one refresh for 50 callers");
        let first = &answers[0].1["access_token"];
        for (st, body, text) in &answers {
            assert_eq!(*st, 200, "{text}");
            assert_eq!(&body["access_token"], first);
        }
        assert_eq!(w.auth.user_of(first.as_str().unwrap()).as_deref(), Some(USER));
    }
}

#[tokio::test]
async fn a_rotation_race_keeps_the_newest_refresh_token() {
    for db in backends().await {
        let w = world(&db).await;
        w.sign_in().await;
        let first = w.stored_refresh().await.unwrap();
        // A refresh that takes a while is under way when someone signs in again.
        w.auth.set_refresh_delay(std::time::Duration::from_millis(600));
        let refresh = w.token(true);
        let again = async {
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
            w.auth.set_refresh_delay(std::time::Duration::ZERO);
            w.sign_in().await;
            w.stored_refresh().await.unwrap()
        };
        let ((st, _, text), newest) = tokio::join!(refresh, again);
        assert_eq!(st, 200, "{text}");
        assert_ne!(newest, first);
        assert_eq!(w.stored_refresh().await.unwrap(), newest, "the slow refresh did not overwrite the newer sign-in");
        assert!(w.auth.refresh_token_active(&newest));
        let (st, _, text) = w.token(true).await;
        assert_eq!(st, 200, "{text}");

        // The compare-and-swap itself: a rotation from a superseded token is refused; a re-wrap
        // of the same value (a master-key rotation) is followed.
        let env = server::environments::find(&w.api.s.db, "DEV").await.unwrap();
        let c = server::connections::get(&w.api.s.db, "DEV", "Mail").await.unwrap();
        let (s, vault) = (&w.api.s, &w.api.s.vault);
        let (current, blob) = server::connect::open_refresh(&s.db, vault, &env, &c, "refresh_token").await.unwrap().unwrap();
        let a = SecretString::from("rotated-by-a");
        assert!(server::connect::rotate_refresh(&s.db, vault, &env, &c, "refresh_token", &current, &blob, &a, "test").await.unwrap());
        let late = SecretString::from("rotated-by-b-from-the-same-token");
        assert!(!server::connect::rotate_refresh(&s.db, vault, &env, &c, "refresh_token", &current, &blob, &late, "test").await.unwrap());
        assert_eq!(w.stored_refresh().await.unwrap(), "rotated-by-a");
        let (_, a_blob) = server::connect::open_refresh(&s.db, vault, &env, &c, "refresh_token").await.unwrap().unwrap();
        let rewrapped =
            vault.seal(&server::seal::Place { table: "connection_secrets", row: c.id, field: "refresh_token", environment: env.id }, b"rotated-by-a");
        sqlx::query("UPDATE connection_secrets SET blob = $1 WHERE connection_id = $2 AND field = 'refresh_token'")
            .bind(rewrapped)
            .bind(c.id)
            .execute(s.db.pool())
            .await
            .unwrap();
        let next = SecretString::from("rotated-after-rewrap");
        assert!(server::connect::rotate_refresh(&s.db, vault, &env, &c, "refresh_token", &a, &a_blob, &next, "test").await.unwrap());
        assert_eq!(w.stored_refresh().await.unwrap(), "rotated-after-rewrap");
    }
}

#[tokio::test]
async fn invalid_grant_marks_the_connection_failing_with_sign_in_again() {
    for db in backends().await {
        let w = world(&db).await;
        w.sign_in().await;
        w.auth.fail_next_refreshes(1);
        let (st, err, _) = w.token(true).await;
        assert_eq!(st, 424, "{err}");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains("invalid_grant") && message.contains("sign in again"), "{message}");
        let status = w.status().await;
        assert_eq!(status.state, "failing");
        assert!(status.advice.unwrap().contains("sign in again"));
        // Signing in again mends it.
        w.sign_in().await;
        assert_eq!(w.status().await.state, "connected");
        let (st, _, text) = w.token(true).await;
        assert_eq!(st, 200, "{text}");
    }
}

#[tokio::test]
async fn disconnect_revokes_at_the_provider_and_re_pointing_drops_the_refresh_token() {
    for db in backends().await {
        let w = world(&db).await;
        w.sign_in().await;
        let rt = w.stored_refresh().await.unwrap();
        let op = server::audit::Actor::operator();
        let r = server::connect::disconnect(w.api.s.signing(), &op, "DEV", "Mail").await.unwrap();
        assert!(r.detail.contains("the provider revoked the refresh token"), "{r:?}");
        assert_eq!(w.auth.revocations(), 1);
        assert!(!w.auth.refresh_token_active(&rt));
        assert!(w.stored_refresh().await.is_none());
        assert_eq!(w.status().await.state, "needs_sign_in");
        let (st, _, _) = w.token(true).await;
        assert_eq!(st, 424);

        // Re-pointing the token URL drops the refresh token (promise 17) unless the change
        // brings a new secret.
        w.sign_in().await;
        assert!(w.stored_refresh().await.is_some());
        let patch = json!({"settings": {"token_url": format!("{}/token?moved=1", w.base)}});
        let (st, c, text) = w.api.call(Who::Key(&w.k), "PATCH", "/api/v1/environments/DEV/connections/Mail", Some(patch)).await;
        assert_eq!(st, 200, "{text}");
        assert!(c["secrets_set"].get("refresh_token").is_none() && c["secrets_set"].get("client_secret").is_none(), "{c}");
        assert!(w.stored_refresh().await.is_none());

        // Only someone who may change the connection, in a browser session, starts a sign-in.
        let reader = session(&w.api.s, "reader@acme.com", Some(("DEV", server::users::Role::Viewer)), false).await;
        let (st, _, body) = get(&w.api, Some(&reader), "/connect/DEV/Mail").await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
        let (st, _, body) = get(&w.api, None, "/connect/DEV/Mail").await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
        // A connection without its secret cannot start one, and says what to set.
        let (st, _, body) = get(&w.api, Some(&w.owner), "/connect/DEV/Mail").await;
        assert_eq!(st, StatusCode::CONFLICT);
        assert!(body.contains("Client secret"), "{body}");
    }
}

#[tokio::test]
async fn promotion_carries_the_descriptor_and_a_backup_the_refresh_token() {
    for db in backends().await {
        let w = world(&db).await;
        w.sign_in().await;
        let rt = w.stored_refresh().await.unwrap();
        let op = server::audit::Actor::operator();
        let bundle = server::promotion::export(&w.api.s.db, &op, "DEV").await.unwrap();
        assert!(!bundle.to_string().contains(&rt));
        let parsed = server::promotion::check(&bundle).unwrap();
        let options = server::promotion::Options { create_placeholders: true, ..Default::default() };
        server::promotion::import(&w.api.s.db, &op, "QA", &parsed, server::promotion::Mode::Apply, options).await.unwrap();
        let qa = server::connections::get(&w.api.s.db, "QA", "Mail").await.unwrap();
        assert!(qa.settings.get("token_url").is_none() && qa.secrets_set.is_empty(), "{qa:?}");
        let status = server::connect::status(&w.api.s.db, &w.api.s.config, &qa).await.unwrap();
        assert_eq!(status.state, "not_set_up");
        assert!(status.summary.contains("needs someone to sign in"), "{status:?}");

        // A backup restored elsewhere refreshes with the same refresh token.
        let pass = SecretString::from("a long backup passphrase");
        let file = server::backup::create(w.api.s.backup(), &op, &pass).await.unwrap().file;
        let target_db = backends().await.into_iter().find(|d| d.kind == db.kind).unwrap();
        let target = open(&target_db).await;
        server::backup::restore(target.backup(), &op, file, &pass, false).await.unwrap();
        let restored = server::connections::open_secret(&target.db, &target.vault, "DEV", "Mail", "refresh_token").await.unwrap();
        assert_eq!(restored.expose_secret(), rt);
        let env = server::environments::find(&target.db, "DEV").await.unwrap();
        let c = server::connections::get(&target.db, "DEV", "Mail").await.unwrap();
        let minted = server::signing::mint(target.signing(), &op, &env, &c).await.unwrap();
        assert!(minted.is_ok(), "{:?}", minted.err());
        let _ = w.k;
    }
}

/// Salesforce's web server flow on the Salesforce stand-in: sign in, userinfo checked, the
/// broker refreshes; a sign-in as another user than the connection's is refused; a cancelled
/// sign-in says so.
#[tokio::test]
async fn salesforce_web_server_flow_connects_and_refreshes() {
    for db in backends().await {
        let api = Api::new(open(&db).await);
        let sf = StandIn::new();
        let base = sf.spawn().await.unwrap();
        let (consumer_key, consumer_secret) = sf.add_web_app(&server::connect::callback_url(&api.s.config), "admin@acme.com", PASSWORD);
        sf.add_web_app(&server::connect::callback_url(&api.s.config), "other@acme.com", PASSWORD);
        let k = key(&api.s, &["DEV:connections:rw", "DEV:integrations:rw", "DEV:bindings:rw", "DEV:tokens:read"]).await;
        let owner = session(&api.s, "owner@acme.com", None, true).await;
        let settings = json!({"auth": "web_server", "login_url": base, "username": "admin@acme.com", "consumer_key": consumer_key});
        // The consumer secret is required for the web server flow, and only for it.
        let body = json!({"name": "SF", "provider": "salesforce", "settings": settings});
        let (st, err, _) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections", Some(body)).await;
        assert_eq!(st, 422);
        assert_eq!(err["error"]["details"][0]["field"], "secrets.consumer_secret", "{err}");
        let body = json!({"name": "SF", "provider": "salesforce", "settings": settings, "secrets": {"consumer_secret": consumer_secret}});
        let (st, _, text) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections", Some(body)).await;
        assert_eq!(st, 201, "{text}");
        let (st, _, location_body) = get(&api, Some(&owner), "/connect/DEV/SF").await;
        assert_eq!(st, StatusCode::SEE_OTHER, "{location_body}");
        let (_, authorize, _) = get(&api, Some(&owner), "/connect/DEV/SF").await;
        assert!(authorize.starts_with(&format!("{base}/services/oauth2/authorize?")), "{authorize}");
        assert!(authorize.contains("scope=api+refresh_token+offline_access"), "{authorize}");

        // Signed in as someone else: refused with what to do, nothing stored.
        let back = sf.web().approve(&authorize, "other@acme.com", PASSWORD).unwrap();
        // other@ is not approved for this app: Salesforce's refusal comes back to the callback.
        assert!(back.contains("error=OAUTH_APP_ACCESS_DENIED"), "{back}");
        let (_, location, _) = get(&api, Some(&owner), &local(&back)).await;
        let result = outcome(&api, &owner, &location).await;
        assert!(!result.ok && result.advice.as_deref().unwrap().contains("Permitted Users"), "{result:?}");

        // Signed in as another user than the connection's: refused, nothing stored.
        sf.web().update_client(&consumer_key, |c| c.allowed_users = None);
        let (_, authorize, _) = get(&api, Some(&owner), "/connect/DEV/SF").await;
        let back = sf.web().approve(&authorize, "other@acme.com", PASSWORD).unwrap();
        let (_, location, _) = get(&api, Some(&owner), &local(&back)).await;
        let result = outcome(&api, &owner, &location).await;
        assert!(!result.ok && result.detail.contains("signed in to Salesforce as other@acme.com, but this connection is for admin@acme.com"), "{result:?}");
        assert!(!server::connections::get(&api.s.db, "DEV", "SF").await.unwrap().secrets_set.contains_key("refresh_token"));

        // Cancelled.
        let (_, authorize, _) = get(&api, Some(&owner), "/connect/DEV/SF").await;
        let state = url::Url::parse(&authorize).unwrap().query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
        let (_, location, _) =
            get(&api, Some(&owner), &format!("/salesforce/callback?error=access_denied&error_description=end-user+denied+authorization&state={state}")).await;
        let result = outcome(&api, &owner, &location).await;
        assert!(result.advice.as_deref().unwrap().contains("cancelled"), "{result:?}");

        // Connected.
        let (_, authorize, _) = get(&api, Some(&owner), "/connect/DEV/SF").await;
        let back = sf.web().approve(&authorize, "admin@acme.com", PASSWORD).unwrap();
        let (_, location, _) = get(&api, Some(&owner), &local(&back)).await;
        assert!(location.starts_with("/env/DEV/connections/SF?sign_in="));
        let c = server::connections::get(&api.s.db, "DEV", "SF").await.unwrap();
        let status = server::connect::status(&api.s.db, &api.s.config, &c).await.unwrap();
        assert_eq!(status.state, "connected", "{status:?}");
        assert!(status.summary.starts_with(&format!("connected to org {} as admin@acme.com", sf.org_id())), "{status:?}");
        assert!(c.secrets_set.contains_key("refresh_token"));

        let (st, _, text) = api
            .call(Who::Key(&k), "PUT", "/api/v1/environments/DEV/integrations/Accounts", Some(json!({"provider": "salesforce", "objects": ["Account"]})))
            .await;
        assert!(st.is_success(), "{text}");
        api.call(Who::Key(&k), "PUT", "/api/v1/environments/DEV/integrations/Accounts/binding", Some(json!({"connection": "SF"}))).await;
        let (st, t, text) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/integrations/Accounts/token?force_refresh=true", Some(json!({}))).await;
        assert_eq!(st, 200, "{text}");
        assert_eq!(t["instance_url"].as_str(), Some(base.as_str()));
        let (st, _, _) = api.call(Who::Key(&k), "POST", &format!("/api/v1/environments/DEV/connections/SF/test"), None).await;
        assert_eq!(st, 200);
        let (_, tested, _) = api.call(Who::Key(&k), "POST", &format!("/api/v1/environments/DEV/connections/SF/test"), None).await;
        assert_eq!(tested["ok"], true, "{tested}");
    }
}

#[tokio::test]
async fn keep_alive_refreshes_idle_connections_that_ask_for_it() {
    for db in backends().await {
        let w = world(&db).await;
        w.sign_in().await;
        // Without keep_alive_days: never refreshed in the background.
        db.exec("UPDATE tokens SET obtained_at = '2020-01-01T00:00:00.000000Z'").await;
        let before = w.auth.refreshes();
        assert_eq!(server::connect::keep_alive(&w.api.s).await.unwrap(), 0);
        assert_eq!(w.auth.refreshes(), before);
        // With it, an idle one is refreshed once, and not again while it is fresh.
        let (st, _, text) =
            w.api.call(Who::Key(&w.k), "PATCH", "/api/v1/environments/DEV/connections/Mail", Some(json!({"settings": {"keep_alive_days": 7}}))).await;
        assert_eq!(st, 200, "{text}");
        assert!(w.stored_refresh().await.is_some(), "a shared setting keeps the sign-in");
        db.exec("UPDATE tokens SET obtained_at = '2020-01-01T00:00:00.000000Z'").await;
        assert_eq!(server::connect::keep_alive(&w.api.s).await.unwrap(), 1);
        assert_eq!(w.auth.refreshes(), before + 1);
        assert_eq!(server::connect::keep_alive(&w.api.s).await.unwrap(), 0);
        assert_eq!(w.auth.refreshes(), before + 1);
        let (st, _, text) = w.token(false).await;
        assert_eq!(st, 200, "{text}");
    }
}

#[tokio::test]
async fn the_rest_api_shows_the_sign_in_status_and_disconnects() {
    for db in backends().await {
        let w = world(&db).await;
        let path = "/api/v1/environments/DEV/connections/Mail";
        let (st, status, text) = w.api.call(Who::Key(&w.k), "GET", &format!("{path}/sign-in"), None).await;
        assert_eq!(st, 200, "{text}");
        assert_eq!((status["state"].as_str(), status["summary"].as_str()), (Some("needs_sign_in"), Some("needs someone to sign in")));
        assert_eq!(status["callback_url"].as_str(), Some(server::connect::callback_url(&w.api.s.config).as_str()));
        w.sign_in().await;
        let (_, status, _) = w.api.call(Who::Key(&w.k), "GET", &format!("{path}/sign-in"), None).await;
        assert_eq!((status["state"].as_str(), status["username"].as_str()), (Some("connected"), Some(USER)));
        let reader = key(&w.api.s, &["DEV:connections:read"]).await;
        let (st, _, _) = w.api.call(Who::Key(&reader), "POST", &format!("{path}/disconnect"), None).await;
        assert_eq!(st, 403);
        let (st, r, text) = w.api.call(Who::Key(&w.k), "POST", &format!("{path}/disconnect"), None).await;
        assert_eq!(st, 200, "{text}");
        assert!(r["detail"].as_str().unwrap().contains("revoked"), "{r}");
        let (_, status, _) = w.api.call(Who::Key(&w.k), "GET", &format!("{path}/sign-in"), None).await;
        assert_eq!(status["state"], "needs_sign_in");
        // A connection of another flow: 409 naming what signs in.
        let body =
            json!({"name": "Plain", "provider": "http", "settings": {"base_url": "https://api.example.com", "auth": "bearer"}, "secrets": {"token": "t"}});
        w.api.call(Who::Key(&w.k), "POST", "/api/v1/environments/DEV/connections", Some(body)).await;
        let (st, err, _) = w.api.call(Who::Key(&w.k), "GET", "/api/v1/environments/DEV/connections/Plain/sign-in", None).await;
        assert_eq!(st, 409);
        assert_eq!(err["error"]["code"], "not_sign_in");
    }
}

#[tokio::test]
async fn a_callback_after_the_session_ended_or_the_role_was_taken_away_is_refused() {
    for db in backends().await {
        let w = world(&db).await;
        let dev = session(&w.api.s, "dev@acme.com", Some(("DEV", server::users::Role::Developer)), false).await;
        let authorize = w.start(&dev).await;
        let back = w.auth.approve(&authorize, USER, PASSWORD).unwrap();
        let user = server::sessions::user_for(&w.api.s.db, &dev).await.unwrap().unwrap();
        server::users::set_role(&w.api.s.db, &server::audit::Actor::operator(), user.id, "DEV", Some(server::users::Role::Viewer)).await.unwrap();
        let (st, _, body) = get(&w.api, Some(&dev), &local(&back)).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
        assert!(body.contains("no longer change connections"), "{body}");
        // Signed out meanwhile.
        let authorize = w.start(&w.owner).await;
        let back = w.auth.approve(&authorize, USER, PASSWORD).unwrap();
        server::sessions::sign_out(&w.api.s.db, &w.owner).await.unwrap();
        let (st, _, body) = get(&w.api, Some(&w.owner), &local(&back)).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(w.auth.token_requests(), 0);
        assert!(w.stored_refresh().await.is_none());
    }
}
