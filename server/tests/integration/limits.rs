//! Promises 19 and 20: failure limits that hold under concurrency and never lock out a valid
//! credential; untrusted input bounded before it is stored; connections that cannot be held
//! open without sending; and the related limits (last owner, mail, secret release). On every
//! backend.

use crate::common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::{backends, key, session, Api, Kind, TestDb, Who};
use serde_json::json;
use server::audit::Actor;
use server::error::Error;
use server::secret::SecretString;
use server::sessions;
use server::startup::{self, Services};
use server::users;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn pw(s: &str) -> SecretString {
    SecretString::from(s)
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

async fn sign_in_failures(s: &Services) -> usize {
    server::audit::recent(&s.db, 1000).await.unwrap().iter().filter(|e| e.action == "auth.sign_in" && e.outcome == "failure").count()
}

/// 40 wrong passwords for one account from one address, all at once: the limit (10) are checked
/// (each checked one is audited), the other 30 get 429 without any Argon2 work. Before the fix
/// the limiter was asked before and told after the check, and some 28 were checked.
#[tokio::test]
async fn promise_19_parallel_wrong_passwords_check_at_most_the_limit() {
    for db in backends().await {
        let s = db.open().await;
        users::create(&s.db, &Actor::operator(), "a@example.com", &pw("the right password"), false).await.unwrap();
        let attempts = (0..40).map(|_| {
            let s = s.clone();
            tokio::spawn(async move { sessions::sign_in(s.sessions(), "a@example.com", &pw("guess guess guess"), ip("203.0.113.66")).await })
        });
        let results: Vec<_> = futures::future::join_all(attempts).await.into_iter().map(|r| r.unwrap()).collect();
        let refused = results.iter().filter(|r| matches!(r, Err(Error::TooManyRequests { .. }))).count();
        let wrong = results.iter().filter(|r| matches!(r, Err(Error::Unauthorized(_)))).count();
        assert_eq!((wrong, refused), (10, 30), "{:?}", db.kind);
        assert_eq!(sign_in_failures(&s).await, 10, "only the checked attempts were audited");
    }
}

/// A sign-in that succeeds gives its reservation back: nine failures and a success leave room
/// for more attempts, and the right password then still works.
#[tokio::test]
async fn a_successful_sign_in_does_not_count_against_the_limit() {
    let db = backends().await.remove(0);
    let s = db.open().await;
    users::create(&s.db, &Actor::operator(), "a@example.com", &pw("the right password"), false).await.unwrap();
    let from = ip("198.51.100.20");
    for _ in 0..9 {
        assert!(matches!(sessions::sign_in(s.sessions(), "a@example.com", &pw("guess guess guess"), from).await, Err(Error::Unauthorized(_))));
    }
    for _ in 0..5 {
        sessions::sign_in(s.sessions(), "a@example.com", &pw("the right password"), from).await.unwrap();
    }
    assert!(matches!(sessions::sign_in(s.sessions(), "a@example.com", &pw("guess guess guess"), from).await, Err(Error::Unauthorized(_))), "the tenth failure");
    assert!(matches!(sessions::sign_in(s.sessions(), "a@example.com", &pw("the right password"), from).await, Err(Error::TooManyRequests { .. })));
}

/// Failed sign-ins to one account are limited across addresses (CONNVAULT_ACCOUNT_FAILURE_LIMIT):
/// an attacker with many addresses gets the same number of guesses; other accounts, and
/// the same addresses for other accounts, are unaffected.
#[tokio::test]
async fn sign_in_failures_are_limited_per_account_across_addresses() {
    for db in backends().await {
        let s = startup::open(db.config_with(&[("CONNVAULT_ACCOUNT_FAILURE_LIMIT", "4")])).await.unwrap();
        users::create(&s.db, &Actor::operator(), "a@example.com", &pw("the right password"), false).await.unwrap();
        users::create(&s.db, &Actor::operator(), "b@example.com", &pw("the other password"), false).await.unwrap();
        for i in 0..4 {
            let from = ip(&format!("203.0.113.{}", i + 1));
            assert!(matches!(sessions::sign_in(s.sessions(), "A@example.com", &pw("guess guess guess"), from).await, Err(Error::Unauthorized(_))), "{i}");
        }
        let e = sessions::sign_in(s.sessions(), "a@example.com", &pw("guess guess guess"), ip("203.0.113.99")).await.unwrap_err();
        assert!(matches!(&e, Error::Limited { retry_after_secs, .. } if *retry_after_secs > 0), "{e:?}");
        assert_eq!(e.status().as_u16(), 429);
        assert!(e.public_message().contains("this account"), "{}", e.public_message());
        assert!(sessions::sign_in(s.sessions(), "b@example.com", &pw("the other password"), ip("203.0.113.1")).await.is_ok(), "other accounts unaffected");
        assert_eq!(sign_in_failures(&s).await, 4);
    }
}

/// After another client's 30 bad keys from the same address (behind a proxy, everyone's), a
/// valid key still answers 200 on every route: a key that verifies is never refused by the
/// failure limiter. Bad keys from there still get 429.
#[tokio::test]
async fn promise_19_a_valid_key_is_never_refused_by_the_failure_limiter() {
    for db in backends().await {
        let api = Api::new(db.open().await);
        let good = key(&api.s, &["*:*:read", "DEV:tokens:read"]).await;
        let shared = "192.0.2.50:4000";
        for _ in 0..30 {
            let st = api.call_from(Who::Key("cvk_deadbeef_guess"), "GET", "/api/v1/environments", None, shared).await.0;
            assert!(st == 401 || st == 429, "{st}");
        }
        assert_eq!(api.call_from(Who::Key("cvk_deadbeef_guess"), "GET", "/api/v1/environments", None, shared).await.0, 429);
        for path in ["/api/v1/environments", "/api/v1/environments/DEV/connections", "/api/v1/audit", "/api/v1/api-keys"] {
            let (st, body, _) = api.call_from(Who::Key(&good), "GET", path, None, shared).await;
            assert_eq!(st, 200, "{path}: {body}");
        }
        // The token route checks keys on its own path.
        let (st, body, _) = api.call_from(Who::Key(&good), "POST", "/api/v1/environments/DEV/integrations/Nope/token", None, shared).await;
        assert_eq!(st, 404, "{body}");
    }
}

/// IPv6 clients are limited per /64: addresses that differ only in their last 64 bits share one
/// bucket, the next /64 has its own.
#[tokio::test]
async fn ipv6_addresses_in_one_64_share_a_bucket() {
    let db = backends().await.remove(0);
    let api = Api::new(db.open().await);
    for i in 0..10 {
        let from = format!("[2001:db8:aa:bb:{i:x}::{:x}]:443", i * 7 + 1);
        assert_eq!(api.call_from(Who::Key("cvk_deadbeef_guess"), "GET", "/api/v1/environments", None, &from).await.0, 401, "{from}");
    }
    let from = "[2001:db8:aa:bb:ffff:ffff:ffff:fffe]:443";
    assert_eq!(api.call_from(Who::Key("cvk_deadbeef_guess"), "GET", "/api/v1/environments", None, from).await.0, 429);
    let other = "[2001:db8:aa:bc::1]:443";
    assert_eq!(api.call_from(Who::Key("cvk_deadbeef_guess"), "GET", "/api/v1/environments", None, other).await.0, 401);
}

/// `X-Forwarded-For` decides the client only when the peer is a trusted proxy
/// (CONNVAULT_TRUSTED_PROXIES): then clients behind the proxy have their own buckets and the
/// audit trail their own address; from anyone else the header changes nothing.
#[tokio::test]
async fn forwarded_for_is_honoured_only_from_a_trusted_proxy() {
    for db in backends().await {
        let api = Api::new(startup::open(db.config_with(&[("CONNVAULT_TRUSTED_PROXIES", "10.0.0.0/8")])).await.unwrap());
        let owner = session(&api.s, "owner@example.com", None, true).await;
        let call = |xff: String, peer: &'static str| {
            let router = api.router.clone();
            async move {
                use tower::ServiceExt;
                let mut req = axum::http::Request::builder()
                    .uri("/api/v1/environments")
                    .header("Authorization", "Bearer cvk_deadbeef_guess")
                    .header("X-Forwarded-For", xff)
                    .body(axum::body::Body::empty())
                    .unwrap();
                req.extensions_mut().insert(axum::extract::ConnectInfo(peer.parse::<std::net::SocketAddr>().unwrap()));
                router.oneshot(req).await.unwrap().status().as_u16()
            }
        };
        // Through the proxy, ten clients fail ten times each: nobody is limited.
        for client in 1..=10 {
            for _ in 0..10 {
                assert_eq!(call(format!("198.51.100.{client}"), "10.0.0.2:5000").await, 401);
            }
        }
        // The eleventh failure of one of them is.
        assert_eq!(call("198.51.100.3".into(), "10.0.0.2:5000").await, 429);
        // An untrusted peer cannot pick a fresh address with the header: its own counts.
        for _ in 0..10 {
            assert_eq!(call("203.0.113.1".into(), "192.0.2.77:5000").await, 401);
        }
        assert_eq!(call("203.0.113.2".into(), "192.0.2.77:5000").await, 429);

        // The audit trail records the client behind the proxy, not the proxy.
        let mut req = axum::http::Request::builder()
            .method("POST")
            .uri("/api/v1/api-keys")
            .header("Cookie", format!("cv_session={owner}"))
            .header("Origin", "http://127.0.0.1:3000")
            .header("Content-Type", "application/json")
            .header("X-Forwarded-For", "198.51.100.200")
            .body(axum::body::Body::from(json!({"name": "k", "grants": [{"environment": "DEV", "resource": "tokens", "access": "read"}]}).to_string()))
            .unwrap();
        req.extensions_mut().insert(axum::extract::ConnectInfo("10.9.9.9:1".parse::<std::net::SocketAddr>().unwrap()));
        use tower::ServiceExt;
        assert_eq!(api.router.clone().oneshot(req).await.unwrap().status(), 201);
        let events = server::audit::recent(&api.s.db, 5).await.unwrap();
        let created = events.iter().find(|e| e.action == "api_key.create").unwrap();
        assert_eq!(created.client_addr.as_deref(), Some("198.51.100.200"));
    }
}

/// A 200 kB "email" at sign-in is refused with a field error before anything is recorded: it
/// is not in the audit trail (before the fix it was written there twice). An unknown account's
/// identifier is recorded as a digest, never as typed.
#[tokio::test]
async fn promise_20_a_huge_identifier_is_refused_and_not_recorded() {
    for db in backends().await {
        let s = db.open().await;
        let huge = format!("{}@example.com", "m".repeat(200_000));
        let before = server::audit::recent(&s.db, 1000).await.unwrap().len();
        let e = sessions::sign_in(s.sessions(), &huge, &pw("whatever whatever"), ip("192.0.2.1")).await.unwrap_err();
        assert!(matches!(&e, Error::Validation(f) if f[0].field == "email"), "{e:?}");
        assert_eq!(e.status().as_u16(), 422);
        assert_eq!(server::audit::recent(&s.db, 1000).await.unwrap().len(), before, "nothing recorded");
        assert!(!db.all_text().await.contains("mmmmmmmmmmmmmmmmmmmm"));
        for bad in ["a\u{0}b@example.com", "two words@example.com", "no-at-sign"] {
            assert!(matches!(sessions::sign_in(s.sessions(), bad, &pw("whatever whatever"), None).await, Err(Error::Validation(_))), "{bad:?}");
        }

        // A well-formed address without an account: recorded as a digest.
        let typed = "my-password-by-mistake@example.com";
        assert!(matches!(sessions::sign_in(s.sessions(), typed, &pw("whatever whatever"), None).await, Err(Error::Unauthorized(_))));
        let stored = db.all_text().await;
        assert!(!stored.contains("my-password-by-mistake"), "the unknown identifier is stored as typed");
        assert!(stored.contains(&sessions::unknown_account_label(typed)));
    }
}

/// The 404 for an unknown environment names only environments the caller may use: a key for
/// DEV tokens learns of DEV alone (before the fix it listed every environment).
#[tokio::test]
async fn the_unknown_environment_404_names_only_what_the_caller_may_see() {
    for db in backends().await {
        let api = Api::new(db.open().await);
        server::environments::add(&api.s.db, &Actor::operator(), "SECRET_PROJECT", None).await.unwrap();
        let dev_tokens = key(&api.s, &["DEV:tokens:read"]).await;
        for (method, path) in [("GET", "/api/v1/environments/NOPE/connections"), ("POST", "/api/v1/environments/NOPE/integrations/X/token")] {
            let (st, body, text) = api.call(Who::Key(&dev_tokens), method, path, None).await;
            assert_eq!(st, 404, "{path}: {text}");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.starts_with("No environment named NOPE"), "{message}");
            for hidden in ["QA", "PROD", "SECRET_PROJECT"] {
                assert!(!message.contains(hidden), "{path}: {message}");
            }
        }
        let (_, body, _) = api.call(Who::Key(&dev_tokens), "POST", "/api/v1/environments/NOPE/integrations/X/token", None).await;
        assert!(body["error"]["message"].as_str().unwrap().ends_with("DEV"), "{body}");
        // An owner sees them all.
        let owner = session(&api.s, "owner@example.com", None, true).await;
        let (_, body, _) = api.call(Who::Session(&owner), "GET", "/api/v1/environments/NOPE/connections", None).await;
        assert!(body["error"]["message"].as_str().unwrap().contains("SECRET_PROJECT"), "{body}");
    }
}

/// Two owners deactivating each other at the same moment leave one active owner: the check and
/// the change are one step. Many pairs at once, on PostgreSQL especially (SQLite serialises its
/// writers anyway).
#[tokio::test]
async fn mutual_deactivation_of_the_last_two_owners_leaves_one() {
    for db in backends().await {
        let s = startup::open(db.config_with(&[("CONNVAULT_DB_MAX_CONNECTIONS", "8")])).await.unwrap();
        let op = Actor::operator();
        let rounds = if db.kind == Kind::Postgres { 30 } else { 10 };
        for round in 0..rounds {
            let a = users::create(&s.db, &op, &format!("a{round}@example.com"), &pw("owner password 123"), true).await.unwrap();
            let b = users::create(&s.db, &op, &format!("b{round}@example.com"), &pw("owner password 123"), true).await.unwrap();
            if round > 0 {
                // Only these two are active owners this round.
                db.exec(&format!("UPDATE users SET status = 'deactivated' WHERE is_owner = 1 AND id NOT IN ({}, {})", a.id, b.id)).await;
            }
            let (s1, s2) = (s.clone(), s.clone());
            let (aa, ba) = (a.actor(None), b.actor(None));
            let (r1, r2) = tokio::join!(
                tokio::spawn(async move { users::deactivate(&s1.db, &aa, b.id).await }),
                tokio::spawn(async move { users::deactivate(&s2.db, &ba, a.id).await }),
            );
            let (r1, r2) = (r1.unwrap(), r2.unwrap());
            let active = users::list(&s.db).await.unwrap().iter().filter(|u| u.is_owner && u.status == "active").count();
            assert_eq!(active, 1, "{:?} round {round}: {r1:?} {r2:?}", db.kind);
            assert!(r1.is_ok() != r2.is_ok(), "one succeeds, one is refused: {r1:?} {r2:?}");
            let refused = if r1.is_err() { r1 } else { r2 };
            assert!(matches!(refused, Err(Error::Conflict { code: "last_owner", .. })), "{refused:?}");
        }
    }
}

async fn salesforce_connection(api: &Api, k: &str, name: &str) {
    let settings = json!({"login_url": "https://login.salesforce.com", "username": "int@acme.com", "admin_email": "sf-admin@acme.com"});
    let (st, _, text) = api
        .call(Who::Key(k), "POST", "/api/v1/environments/DEV/connections", Some(json!({"name": name, "provider": "salesforce", "settings": settings})))
        .await;
    assert_eq!(st, 201, "{text}");
    let (st, _, text) = api.call(Who::Key(k), "POST", &format!("/api/v1/environments/DEV/connections/{name}/certificate"), Some(json!({}))).await;
    assert_eq!(st, 201, "{text}");
}

/// "Request admin help" and "Send again" are limited per connection and per person per hour:
/// the next one is a 429 that says which limit and when to try again, and sends nothing.
#[tokio::test]
async fn admin_request_emails_are_limited_per_connection_and_per_person() {
    for db in backends().await {
        let vars = [("CONNVAULT_MAIL_PER_CONNECTION_PER_HOUR", "3"), ("CONNVAULT_MAIL_PER_PERSON_PER_HOUR", "5")];
        let api = Api::new(startup::open(db.config_with(&vars)).await.unwrap());
        let k = key(&api.s, &["DEV:connections:rw"]).await;
        for name in ["One", "Two", "Three"] {
            salesforce_connection(&api, &k, name).await;
        }
        let outbox = || async { server::mail::list(&api.s.db, &Default::default(), Some(100)).await.unwrap().items.len() };
        for _ in 0..3 {
            assert_eq!(api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections/One/admin-request", None).await.0, 201);
        }
        let (st, body, text) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections/One/admin-request", None).await;
        assert_eq!(st, 429, "{text}");
        assert_eq!(body["error"]["code"], "too_many_requests");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("One has had 3 admin requests in the past hour") && message.contains("CONNVAULT_MAIL_PER_CONNECTION_PER_HOUR"), "{message}");
        // Issuing a certificate with the request is refused before anything is made.
        let (st, _, text) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections/One/certificate", Some(json!({"send_request": true}))).await;
        assert_eq!(st, 429, "{text}");
        assert_eq!(outbox().await, 3);

        // The same key, other connections: two more, then its own limit.
        for name in ["Two", "Two"] {
            assert_eq!(api.call(Who::Key(&k), "POST", &format!("/api/v1/environments/DEV/connections/{name}/admin-request"), None).await.0, 201);
        }
        let (st, body, _) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/connections/Three/admin-request", None).await;
        assert_eq!(st, 429);
        assert!(body["error"]["message"].as_str().unwrap().contains("CONNVAULT_MAIL_PER_PERSON_PER_HOUR"), "{body}");
        assert_eq!(outbox().await, 5);
        // Someone else may still ask about Three.
        let other = key(&api.s, &["DEV:connections:rw"]).await;
        assert_eq!(api.call(Who::Key(&other), "POST", "/api/v1/environments/DEV/connections/Three/admin-request", None).await.0, 201);
    }
}

fn http_connection() -> server::connections::NewConnection {
    server::connections::NewConnection {
        name: "Billing".into(),
        provider: "http".into(),
        settings: serde_json::from_value(json!({"base_url": "https://billing.example.com", "auth": "bearer"})).unwrap(),
        secrets: [("token".to_string(), SecretString::from("release-marker-42"))].into(),
    }
}

async fn audit_down(db: &TestDb) {
    match db.kind {
        Kind::Sqlite => db.exec("CREATE TRIGGER audit_down BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'audit store down'); END").await,
        Kind::Postgres => {
            db.exec("CREATE FUNCTION audit_down() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit store down'; END $$").await;
            db.exec("CREATE TRIGGER audit_down BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_down()").await;
        }
    }
}

/// Handing out an `http` connection's stored secret is audited durably, each time, like a
/// mint (before the fix it was only counted in memory); and when the audit record cannot be
/// written, no secret is released (promise 11).
#[tokio::test]
async fn releasing_a_stored_secret_is_audited_durably_or_not_done() {
    for db in backends().await {
        let api = Api::new(db.open().await);
        let op = Actor::operator();
        server::connections::create(&api.s.db, &api.s.vault, &op, "DEV", http_connection()).await.unwrap();
        let k = key(&api.s, &["DEV:integrations:rw", "DEV:bindings:rw", "DEV:tokens:read"]).await;
        let (st, _, text) = api.call(Who::Key(&k), "PUT", "/api/v1/environments/DEV/integrations/Billing_Sync", Some(json!({"provider": "http"}))).await;
        assert!(st.is_success(), "{text}");
        let (st, _, text) =
            api.call(Who::Key(&k), "PUT", "/api/v1/environments/DEV/integrations/Billing_Sync/binding", Some(json!({"connection": "Billing"}))).await;
        assert!(st.is_success(), "{text}");
        for _ in 0..2 {
            let (st, body, text) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/integrations/Billing_Sync/token", None).await;
            assert_eq!(st, 200, "{text}");
            assert_eq!(body["access_token"], "release-marker-42");
        }
        let releases: Vec<_> = server::audit::recent(&api.s.db, 50).await.unwrap().into_iter().filter(|e| e.action == "connection.secret_release").collect();
        assert_eq!(releases.len(), 2, "each release is in the audit trail at once");
        assert!(releases.iter().all(|e| e.environment.as_deref() == Some("DEV") && e.object_name.as_deref() == Some("Billing")), "{releases:?}");
        assert!(!db.all_text().await.contains("release-marker-42"), "the audit trail holds no secret");

        audit_down(&db).await;
        let (st, _, text) = api.call(Who::Key(&k), "POST", "/api/v1/environments/DEV/integrations/Billing_Sync/token", None).await;
        assert_eq!(st, 500, "{text}");
        assert!(!text.contains("release-marker-42"), "released without its audit record: {text}");
    }
}

/// A client that sends half a request header is closed within the header timeout, through the
/// serving function the binary uses; an idle kept-alive connection too; a whole request is
/// answered.
#[tokio::test]
async fn promise_20_a_half_sent_header_is_closed_within_the_header_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = axum::Router::new().route("/hello", axum::routing::get(|| async { "hello" }));
    let limits = server::serve::Limits { header_timeout: Duration::from_secs(1), request_timeout: Duration::from_secs(5), max_connections: 16 };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(server::serve::serve(listener, router, limits, async {
        let _ = stopped.await;
    }));

    let mut half = tokio::net::TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), half.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "still open after 5 s");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(3), "closed after {took:?}");

    let mut whole = tokio::net::TcpStream::connect(addr).await.unwrap();
    whole.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut answer = [0u8; 512];
    let n = whole.read(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 200") && text.ends_with("hello"), "{text}");
    // Kept alive, then idle: closed too.
    let started = Instant::now();
    let rest = tokio::time::timeout(Duration::from_secs(5), whole.read_to_end(&mut buf)).await;
    assert!(rest.is_ok() && started.elapsed() < Duration::from_secs(3), "an idle connection stayed open");

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), served).await.expect("serve stops when told").unwrap().unwrap();
}

/// No more than CONNVAULT_MAX_CONNECTIONS connections are served at once: the next waits until
/// one closes. And a request that takes longer than the request timeout gets 408.
#[tokio::test]
async fn connections_are_limited_and_slow_requests_time_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = axum::Router::new()
        .route("/hello", axum::routing::get(|| async { "hello" }))
        .route("/slow", axum::routing::get(|| async { tokio::time::sleep(Duration::from_secs(30)).await }));
    let limits = server::serve::Limits { header_timeout: Duration::from_secs(10), request_timeout: Duration::from_secs(1), max_connections: 2 };
    tokio::spawn(server::serve::serve(listener, router, limits, std::future::pending()));

    async fn get(stream: &mut tokio::net::TcpStream, path: &str) -> String {
        stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
        let mut answer = [0u8; 512];
        let n = stream.read(&mut answer).await.unwrap();
        String::from_utf8_lossy(&answer[..n]).into_owned()
    }
    let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(get(&mut first, "/hello").await.starts_with("HTTP/1.1 200"));
    assert!(get(&mut second, "/hello").await.starts_with("HTTP/1.1 200"));
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap(); // in the listen queue
    third.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut answer = [0u8; 512];
    assert!(tokio::time::timeout(Duration::from_millis(500), third.read(&mut answer)).await.is_err(), "a third connection was served");
    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(3), third.read(&mut answer)).await.expect("served once one closed").unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));

    let started = Instant::now();
    assert!(get(&mut second, "/slow").await.starts_with("HTTP/1.1 408"));
    assert!(started.elapsed() < Duration::from_secs(3));
}
